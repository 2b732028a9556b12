"""Stage 03 (``notebooks/03_generate.ipynb``): every model's answers to the eval set.

Reads ``eval.jsonl`` and ``models/<model>/`` (nothing for ``base``); writes
``answers/<model>.jsonl`` ``{id, category, answer, new_tokens, truncated, model}``, appended
batch by batch so a killed run resumes.

    answers       the stage (``generate_models``, ``generate_answers`` for one): picks the backend
                  (``generate.backend``), resumes, sets aside answers made under other settings or weights;
                  the hf backend itself, greedy batched generation with a token budget per use case
    vllm_backend  the vllm backend: vLLM's offline engine in a subprocess (base once, LoRA adapters unmerged)
    vllm_worker   the script that subprocess runs, in vLLM's own environment
    server        the server backend: raw prompts to an OpenAI-compatible ``/v1/completions`` endpoint
    rows          what the backends share: the stop cut, the engine note and its answers key, the stage's error
"""
from helpers.generate.answers import generate_answers, generate_models

__all__ = ["generate_answers", "generate_models"]
