"""Answer generation for the eval set, model by model, resumable.

``generate.backend`` picks who answers: hf (``helpers.generate.hf``: transformers in this process),
vllm (``helpers.generate.vllm_backend``: vLLM's engine in a subprocess) or server
(``helpers.generate.server``: an OpenAI-compatible endpoint). Every backend writes the same rows
``{id, category, answer, new_tokens, truncated, model}`` and resumes the same way: only items
without a row are answered, and answers made under other settings or weights (another
``answers_key``) are set aside first.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from helpers.generate.backend import answers_key, engine_note_path, write_engine_note
from helpers.generate.hf import hf_answers
from helpers.study.config import StudyConfig
from helpers.study.files import read_json, read_jsonl
from helpers.study.models import usable_cores

__all__ = ["generate_answers", "run"]


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


def open_answers(cfg: StudyConfig, model_name: str, study_dir: Path) -> tuple[Path, list[dict]]:
    """The answers file of ``model_name`` and the eval items it still lacks.

    Answers written under other settings or weights (``answers_key``) go to ``answers/replaced/`` first;
    then the note is written with the current key, before any row, so a killed run resumes and a changed
    one starts over."""
    items = read_jsonl(study_dir / "eval.jsonl")
    path = study_dir / "answers" / f"{model_name}.jsonl"
    key = answers_key(cfg, model_name, study_dir)
    moved = set_aside_if_stale(study_dir, model_name, key)
    if moved:
        print(f"{model_name}: the stored answers were made with other generate settings or weights; kept as {moved}")
    done = {r["id"] for r in read_jsonl(path, tolerate_torn_tail=True)} if path.exists() else set()
    todo = [it for it in items if it["id"] not in done]
    if done:
        print(f"resuming: {len(done)} answers already in {path}, {len(todo)} to go")
    if todo:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_engine_note(study_dir, model_name, {"answers_key": key, "backend": cfg.generate.backend})
    return path, todo


def generate_answers(cfg: StudyConfig, model_name: str, study_dir: Path) -> Path:
    """Answer every eval item with ``model_name`` ("base" or a scale); returns the answers file."""
    return run(cfg, study_dir, [model_name])[0]


def run(cfg: StudyConfig, study_dir: Path, models: list[str]) -> list[Path]:
    """Answer every eval item with each of ``models``; returns their answers files.

    With the vllm backend all of them go to one call, so the base weights load once for the base model and
    every LoRA model; the other backends answer one model after the other, the hf backend loading its
    tokenizer once for all of them."""
    study_dir = Path(study_dir)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(usable_cores())  # the cores this process may use (a Slurm task's own)
    opened = {m: open_answers(cfg, m, study_dir) for m in models}
    todo = {m: items for m, (_, items) in opened.items() if items}
    if cfg.generate.backend == "vllm" and todo:
        from helpers.generate.vllm_backend import vllm_answers

        t0 = time.perf_counter()
        n_tokens = vllm_answers(cfg, todo, study_dir)
        _said(", ".join(todo), "vllm", sum(map(len, todo.values())), n_tokens, time.perf_counter() - t0)
    else:
        tokenizers: dict = {}  # the hf backend loads each tokenizer once for every model that shares it
        for m, items in todo.items():
            t0 = time.perf_counter()
            if cfg.generate.backend == "server":
                from helpers.generate.server import server_answers  # openai is imported only when it answers

                n_tokens = server_answers(cfg, m, study_dir, items, opened[m][0])
            else:
                n_tokens = hf_answers(cfg, m, study_dir, items, opened[m][0], tokenizers)
            _said(m, cfg.generate.backend, len(items), n_tokens, time.perf_counter() - t0)
    return [path for path, _ in opened.values()]


def _said(models: str, backend: str, n: int, n_tokens: int, wall: float) -> None:
    print(f"{models} ({backend}): {n} answers, {n_tokens} new tokens in {wall:.0f} s ({n_tokens / max(wall, 1e-9):.1f} tokens/s)")

