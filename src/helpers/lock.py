"""One batch run of a study at a time, and no leftovers of killed runs.

Two ``make study`` runs of the same config (a second terminal, a rerun while the first is
still training) would train into the same work folder and append to the same caches. The
runner therefore holds ``data/<study>/.study.lock`` for its whole run; a second one stops at
once and names the first.

A killed runner leaves its notebook kernel alive for up to a second (the kernel runs in its
own session and only notices that its parent is gone on its next poll), still writing. So
every kernel the runner starts holds ``.kernel.lock`` until it exits, and a new run waits for
that lock before it starts, and then removes the temporary files and folders that killed
atomic writes left behind (nothing reads them; they only pile up).

The locks are OS file locks (``filelock``): a killed process releases them, so a stale lock
never needs removing by hand.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

STUDY_LOCK = ".study.lock"
KERNEL_LOCK = ".kernel.lock"
HOLDER = ".study.lock.json"
KERNEL_ENV = "STUDY_KERNEL_LOCK"
"""Set by the runner for the kernels it starts: the path of the kernel lock they hold."""

_held: list[FileLock] = []  # the kernel's lock, kept for the life of the process


class StudyBusy(RuntimeError):
    pass


def holder(sd: Path) -> str:
    """Who holds the study lock, in words (from the note the holder wrote)."""
    try:
        h = json.loads((sd / HOLDER).read_text())
        return f"pid {h['pid']} on {h['host']}, started {h['started']}, config {h['config']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"


@contextmanager
def study_lock(sd: Path, config: str | Path, clean_dirs: tuple[Path, ...] = (), kernel_wait_s: float = 30.0):
    """Hold the study for one batch run; raises StudyBusy if another run holds it."""
    from helpers.files import atomic_write_text

    sd.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(sd / STUDY_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise StudyBusy(f"{sd} is in use by another run of this study ({holder(sd)}); "
                        "wait for it to finish or stop it, then run again") from None
    try:
        atomic_write_text(sd / HOLDER, json.dumps({
            "pid": os.getpid(), "host": platform.node(), "config": str(config),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
        try:
            with FileLock(str(sd / KERNEL_LOCK), timeout=kernel_wait_s):
                pass
        except Timeout:
            raise StudyBusy(f"{sd}: a notebook kernel of an earlier run still holds {sd / KERNEL_LOCK} "
                            f"after {kernel_wait_s:.0f} s; stop it (it is a python process with "
                            "ipykernel in its command line), then run again") from None
        for d in (sd, *clean_dirs):
            remove_leftovers(d)
        os.environ[KERNEL_ENV] = str(sd / KERNEL_LOCK)
        yield
    finally:
        os.environ.pop(KERNEL_ENV, None)
        lock.release()


def hold_in_kernel(sd: Path) -> None:
    """Called by every notebook's setup cell.

    Under the runner: hold the kernel lock until this kernel exits. Stepped through by hand
    while a batch run holds the study: say so, since cells run here write the same files.
    """
    path = os.environ.get(KERNEL_ENV)
    if path:
        if not _held:
            lock = FileLock(path, timeout=60)
            lock.acquire()
            _held.append(lock)
        return
    if (sd / STUDY_LOCK).exists():
        probe = FileLock(str(sd / STUDY_LOCK), timeout=0)
        try:
            probe.acquire()
            probe.release()
        except Timeout:
            print(f"warning: a batch run of this study is in progress ({holder(sd)}); "
                  "cells run here write the same files")


def remove_leftovers(d: Path) -> list[Path]:
    """Delete what killed atomic writes leave under ``d``; returns what was removed.

    Files ``.<name>.<random>.tmp`` (helpers.files, figures, the report) and
    ``.<label>.ipynb.tmp.ipynb`` (the runner), and ``models/.<scale>.publish/`` folders. The
    training work folders ``models/.<run>.tmp/`` are kept: a rerun resumes from them.
    """
    removed = []
    if not d.is_dir():
        return removed
    for p in sorted(d.rglob(".*")):
        if p.is_file() and not p.is_symlink() and (p.name.endswith(".tmp") or p.name.endswith(".tmp.ipynb")):
            p.unlink(missing_ok=True)
            removed.append(p)
        elif p.is_dir() and p.name.endswith(".publish"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
