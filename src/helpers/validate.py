"""``python -m helpers validate --kind KIND FILE``: one loader per kind of file a study reads.

It sits above the stages because each kind belongs to one of them: train and eval files to the
data stage, seed tasks to self-instruct, judge prompts to the judge.
"""
from __future__ import annotations

from pathlib import Path

from helpers.data.loaders import load_eval, load_train
from helpers.judge.prompts import load_judge_prompts
from helpers.selfinstruct.seeds import load_seeds

LOADERS = {"train": load_train, "eval": load_eval, "seeds": load_seeds, "judge-prompts": load_judge_prompts}


def validate(kind: str, spec: str | Path, category_map: dict | None = None) -> dict:
    """Load ``spec`` as ``kind`` and return its summary; raises ``DataError`` on bad input."""
    if kind not in LOADERS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(LOADERS)}")
    _, summary = LOADERS[kind](str(spec), category_map=category_map)
    return summary
