"""Shared logic of the instruction-data scaling study.

The notebooks under ``notebooks/`` stay thin and call into these modules; the
runner (``python -m helpers run``) executes those notebooks with papermill.
"""

CATEGORIES = (
    "math", "code", "cot", "classification", "extraction", "open_qa",
    "closed_qa", "generation", "brainstorming", "rewrite", "translation",
    "summarization",
)
"""The paper's 12 use cases, in its order, spelled the one canonical way."""
