"""What every generate backend shares: where an answer ends, the engine note, and the stage's error.

The hf, vllm and server backends all cut a continuation at the next ``Human:`` turn the same
way, so their answers files differ only where the models' tokens differ. This module imports
nothing heavy: the vLLM worker (``helpers.generate.vllm_worker``) runs it in vLLM's own
environment, and the backends import it without importing each other.
"""
from __future__ import annotations

from pathlib import Path

from helpers.study.files import write_json
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
    and the report show it per answers file; the answers rows themselves stay the same for every backend)."""
    write_json(engine_note_path(study_dir, model), note)
