"""Stage 02 (``notebooks/02_finetune.ipynb``): fine-tuning the base model on each subset.

Reads ``subsets/<model>.jsonl`` (tokenized once per strategy into ``tokenized/``); writes
``models/<model>/`` (LoRA adapter or full weights) with ``train_log.jsonl`` and
``train_summary.json``; a killed run resumes from ``models/.<run>.tmp/``; a model or checkpoint
folder of another run key is moved aside (``helpers.study.aside``), never deleted.

stage: ``stage.run(cfg, study_dir, scale=None)`` -> the published model folders (``scale`` may be None only
under ``train.schedule: prefix``).

    stage    the stage: model, Trainer arguments, resume, publish (``run``)
    tokens   prompt + response tokenization, labels on the response only
    cache    the tokenization cache: one ``datasets`` copy per strategy, each scale a prefix of it
    head     the Trainer whose output projection runs on labelled positions only
    log      the training log and the prefix schedule's snapshots
    launch   ``accelerate launch`` for several processes (DDP, DeepSpeed) and the ZeRO settings of its config
    memory   GPU memory for weights, gradients and Adam states per GPU under ZeRO, checked before training
    tiny     a tiny random Bloom with a locally trained tokenizer (tests, ``benchmarks/gpu_smoke.py``)
"""
from helpers.finetune.launch import launch_command
from helpers.finetune.stage import run

__all__ = ["run", "launch_command"]
