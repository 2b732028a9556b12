"""Stage 03 (``notebooks/03_generate.ipynb``): every model's answers to the eval set.

Reads ``eval.jsonl`` and ``models/<model>/`` (nothing for ``base``); writes
``answers/<model>.jsonl`` ``{id, category, answer, new_tokens, truncated, model}``, appended
batch by batch so a killed run resumes.

    answers  greedy batched generation with a token budget per use case (``generate_answers``)
"""
from helpers.generate.answers import generate_answers

__all__ = ["generate_answers"]
