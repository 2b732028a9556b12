"""Trained folders whose key no longer matches are moved aside, never deleted by a rerun.

At paper scale a model or a checkpoint folder is days of GPU time. When a rerun finds one made with
another key (other training settings, data or training code), it renames it beside itself to
``<name>.stale-<first 12 characters of its key>-<UTC time of the move>`` (``models/640`` ->
``models/640.stale-1a2b3c4d5e6f-20261207T013000Z``), says so in one line, and goes on. Such folders are
outputs of no stage, so nothing reads them again; ``python -m helpers clean --stale`` (or ``make clean``,
which removes every study output) deletes them when the user asks.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

MARK = ".stale-"


def move_aside(folder: Path, key: str | None, why: str, name: str | None = None, out=print) -> Path:
    """Rename ``folder`` to its stale name (see the module docstring; ``name`` instead of the folder's own,
    e.g. ``prefix.checkpoints`` for the hidden work folder ``.prefix.tmp``); returns the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    stem = f"{name or folder.name}{MARK}{(key or 'unknown')[:12]}-{stamp}"
    target, n = folder.with_name(stem), 1
    while target.exists():  # two moves within a second
        n += 1
        target = folder.with_name(f"{stem}-{n}")
    os.replace(folder, target)
    out(f"moved aside: {folder.name} ({why}) -> {target}")
    return target


def stale_folders(study_dir: Path) -> list[Path]:
    """Every folder moved aside under ``study_dir/models``."""
    models = Path(study_dir) / "models"
    return sorted(p for p in models.glob(f"*{MARK}*") if p.is_dir()) if models.is_dir() else []


def remove_stale(study_dir: Path, out=print) -> list[Path]:
    """Delete every folder moved aside (``clean --stale``); returns what was removed."""
    found = stale_folders(study_dir)
    for p in found:
        shutil.rmtree(p)
        out(f"removed {p}")
    if not found:
        out(f"no folders moved aside under {Path(study_dir) / 'models'}")
    return found
