"""Stage 03 (``notebooks/03_generate.ipynb``): every model's answers to the eval set.

Reads ``eval.jsonl`` and ``models/<model>/`` (nothing for ``base``); writes
``answers/<model>.jsonl`` ``{id, category, answer, new_tokens, truncated, model}``, appended
batch by batch so a killed run resumes.

stage: ``stage.run(cfg, study_dir, models)`` -> the answers file of each model, in order.

    stage         the stage (``run``, ``generate_answers`` for one model): picks the backend
                  (``generate.backend``), resumes, sets aside answers made under other settings or weights
    hf            the hf backend: transformers in this process, length-sorted batches with a token budget
                  per use case (``greedy``: the greedy decoding loop it runs)
    vllm_backend  the vllm backend: vLLM's offline engine in a subprocess (base once, LoRA adapters unmerged);
                  not ``vllm.py``: ``vllm_worker`` runs as a script from this folder, where a ``vllm.py``
                  would hide vLLM itself from its ``import vllm``
    vllm_worker   the script that subprocess runs, in vLLM's own environment
    server        the server backend: raw prompts to an OpenAI-compatible ``/v1/completions`` endpoint
    backend       what every backend hands the stage besides its rows: the engine note, ``GenerateError``
    slurm         ``generate.launcher: slurm``: the models as one sbatch job array, a task per model running
                  ``python -m helpers answer`` (this stage's ``run`` for one model); waits and checks the answers

Every backend ends an answer the same way (``helpers.study.prompt.cut_at_stop``).
"""
from helpers.generate.stage import generate_answers, run

__all__ = ["run", "generate_answers"]
