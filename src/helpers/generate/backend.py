"""What a generate backend hands the stage besides its rows: the note beside each answers file
(which backend, engine and version wrote it) and ``GenerateError`` when it cannot go on.

The hf, vllm and server backends and the stage (``answers``) import this module, and none of the
backends imports another or the stage.
"""
from __future__ import annotations

from pathlib import Path

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
