"""What a generate backend and the stage share besides the rows: the key of a model's answers, the note
beside each answers file (which backend, engine and version wrote it) and ``GenerateError`` when it
cannot go on.

The hf, vllm and server backends and the stage (``answers``) import this module, and none of the
backends imports another or the stage.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from helpers.study.config import StudyConfig
from helpers.study.files import read_json, write_json


class GenerateError(RuntimeError):
    """The generate stage cannot go on; the message names the setting to fix. Stored answers stay."""


def engine_note_path(study_dir: Path, model: str) -> Path:
    return Path(study_dir) / "answers" / f"{model}.engine.json"


def write_engine_note(study_dir: Path, model: str, note: dict) -> None:
    """``answers/<model>.engine.json``: the backend, engine and version that wrote the answers (the manifest
    and the report show it per answers file; the answers rows themselves stay the same for every backend).

    The stage writes the note first with the answers key (``answers_key``); a backend adds its engine to it."""
    path = engine_note_path(study_dir, model)
    old = read_json(path) if path.exists() else {}
    write_json(path, {**old, **note})


def answers_key(cfg: StudyConfig, model: str, study_dir: Path) -> str:
    """What a model's answers are made from: the generate settings (backend included), the seed, the base
    model and the model's own identity (the training run's key from ``train_summary.json``, or the mapped
    checkpoint), not ``generate.launcher``, ``generate.slurm`` nor ``generate.vllm.engines`` (where and over how
    many engines the answers are made; ``make test-vllm`` checks two engines answer as one). Resuming is only safe
    while this is unchanged."""
    trained = Path(study_dir) / "models" / model / "train_summary.json"
    if model == "base":
        source = "base"
    elif model in cfg.model.checkpoints:
        source = f"checkpoint {cfg.model.checkpoints[model]}"
    else:
        source = read_json(trained).get("run_key") if trained.exists() else None
    where = {"launcher": True, "slurm": True, "vllm": {"engines"}}  # where the answers are made, not what they are
    raw = {"generate": cfg.generate.model_dump(mode="json", exclude=where), "seed": cfg.seed, "base": cfg.model.base, "source": source}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
