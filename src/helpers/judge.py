"""Stage 04: scoring every answer 0..1, one row per item per judge run.

The default judge is offline and deterministic (``helpers.scoring``): it checks
each answer against the item's machine-checkable ``check`` and reference, so it
needs no network and gives the same numbers every time; it runs once (run 0).
"""
from __future__ import annotations

from pathlib import Path

from helpers.config import StudyConfig
from helpers.files import read_jsonl, write_jsonl

OFFLINE = "offline"


def judge_answers(cfg: StudyConfig, model_name: str, study_dir: Path) -> Path:
    """Write ``judgments/<model>.jsonl`` for the answers of ``model_name``."""
    if cfg.judge.kind != OFFLINE:
        raise NotImplementedError(
            f"judge.kind {cfg.judge.kind!r}: the LLM judge is not built yet; use judge.kind: offline")
    from helpers.scoring import score_answer

    items = {it["id"]: it for it in read_jsonl(study_dir / "eval.jsonl")}
    answers_file = study_dir / "answers" / f"{model_name}.jsonl"
    answers = read_jsonl(answers_file)
    missing = sorted(set(items) - {a["id"] for a in answers})
    if missing:
        raise ValueError(f"{answers_file}: {len(missing)} eval items have no answer, e.g. {missing[:5]}")
    rows = []
    for i, a in enumerate(answers, start=1):
        if a["id"] not in items:
            raise ValueError(f"{answers_file}: line {i}: id {a['id']!r} is not in eval.jsonl")
        score, why = score_answer(items[a["id"]], a["answer"])
        rows.append({"id": a["id"], "run": 0, "score": score, "raw": why, "judge": OFFLINE, "usage": {}})
    path = study_dir / "judgments" / f"{model_name}.jsonl"
    write_jsonl(path, rows)
    return path
