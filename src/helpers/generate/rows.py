"""What every generate backend shares: where an answer ends, the engine note, and the stage's error.

The hf, vllm and server backends all cut a continuation at the next ``Human:`` turn the same
way, so their answers files differ only where the models' tokens differ. This module imports
nothing heavy: the vLLM worker (``helpers.generate.vllm_worker``) runs it in vLLM's own
environment, and the backends import it without importing each other.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from helpers.study.files import read_json, write_json
from helpers.study.prompt import STOP


class GenerateError(RuntimeError):
    """The generate stage cannot go on; the message names the setting to fix. Stored answers stay."""


def cut_at_stop(text: str) -> str:
    """The answer ends where the model starts the next ``Human:`` turn.

    >>> cut_at_stop(" 答案：3\\nHuman: 再来一个")
    '答案：3'
    """
    i = text.find(STOP.strip())
    return (text[:i] if i >= 0 else text).strip()


def engine_note_path(study_dir: Path, model: str) -> Path:
    return Path(study_dir) / "answers" / f"{model}.engine.json"


def write_engine_note(study_dir: Path, model: str, note: dict) -> None:
    """``answers/<model>.engine.json``: the backend, engine and version that wrote the answers (the manifest
    and the report show it per answers file; the answers rows themselves stay the same for every backend).

    The stage writes the note first with the answers key (``answers_key``); a backend adds its engine to it."""
    path = engine_note_path(study_dir, model)
    old = read_json(path) if path.exists() else {}
    write_json(path, {**old, **note})


def answers_key(cfg, model: str, study_dir: Path) -> str:
    """What a model's answers are made from: the generate settings (backend included), the seed, the base
    model and the model's own identity (the training run's key from ``train_summary.json``, or the mapped
    checkpoint). Resuming is only safe while this is unchanged."""
    trained = Path(study_dir) / "models" / model / "train_summary.json"
    if model == "base":
        source = "base"
    elif model in cfg.model.checkpoints:
        source = f"checkpoint {cfg.model.checkpoints[model]}"
    else:
        source = read_json(trained).get("run_key") if trained.exists() else None
    raw = {"generate": cfg.generate.model_dump(mode="json"), "seed": cfg.seed, "base": cfg.model.base, "source": source}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


def set_aside_if_stale(study_dir: Path, model: str, key: str) -> Path | None:
    """Move ``answers/<model>.jsonl`` to ``answers/replaced/`` when it was written under another answers key
    (other generate settings, backend or model weights) or under none; returns where it went.

    Why not resume it: a rerun after a changed backend or a retrained model would otherwise keep every old
    answer, since resuming answers only the items without a row. Why not delete it: nothing written is lost.
    """
    path = Path(study_dir) / "answers" / f"{model}.jsonl"
    note = engine_note_path(study_dir, model)
    if note.exists() and read_json(note).get("answers_key") == key:
        return None
    if not path.exists():
        note.unlink(missing_ok=True)  # the note of answers deleted by hand
        return None
    target = path.parent / "replaced" / f"{model}.{time.strftime('%Y%m%dT%H%M%S')}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    if note.exists():
        os.replace(note, target.with_suffix(".engine.json"))
    return target
