"""One batch run of a study at a time, and no leftovers of killed runs.

Two ``make study`` runs of the same config (a second terminal, a rerun while the first is
still training) would train into the same work folder and append to the same caches. The
runner therefore holds ``data/<study>/.study.lock`` for its whole run; a second one stops at
once and names the first.

A killed runner leaves its notebook kernel alive for up to a second (the kernel runs in its
own session and only notices that its parent is gone on its next poll), still writing; a
killed kernel leaves the ``accelerate launch`` training processes it started running to the
end of their epoch. So every kernel the runner starts, and every training process such a
kernel launches, holds a lock of its own, ``.kernels/<host>-<pid>.lock``, until it exits (named by host
too: on a cluster the training processes of several nodes hold theirs in one shared study folder, and
pids repeat across machines). A new run waits for all of them before it starts, and then removes the temporary files and folders that
killed atomic writes left behind (nothing reads them; they only pile up).

The locks are OS file locks (``filelock``): a killed process releases them, so a stale lock
never needs removing by hand. On a shared folder they are the file system's locks (NFSv4 and Lustre
with ``flock`` mounts hold them across nodes; a mount without locking makes them local to each node).
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

KERNELS = ".kernels"

HOLDER = ".study.lock.json"

KERNEL_ENV = "STUDY_KERNEL_LOCKS"
"""Set by the runner for the kernels it starts (and inherited by their training processes): the
folder of their locks."""

_held: list[FileLock] = []  # this process's lock, kept for the life of the process


class StudyBusy(RuntimeError):
    pass


def kernel_lock_name(host: str | None = None, pid: int | None = None) -> str:
    """The lock file of one process: ``<host>-<pid>.lock`` (this process by default)."""
    return f"{host or platform.node()}-{pid or os.getpid()}.lock"


def lock_owner(path: Path) -> str:
    """``pid P on H`` for a lock file named by ``kernel_lock_name``."""
    host, _, pid = path.stem.rpartition("-")
    return f"pid {pid} on {host}" if host else f"pid {pid}"


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
    from helpers.study.files import atomic_write_text

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
        wait_for_kernels(sd / KERNELS, kernel_wait_s)
        for d in (sd, *clean_dirs):
            remove_leftovers(d)
        os.environ[KERNEL_ENV] = str(sd / KERNELS)
        yield
    finally:
        os.environ.pop(KERNEL_ENV, None)
        lock.release()


def wait_for_kernels(folder: Path, timeout_s: float) -> None:
    """Wait until no process of an earlier run holds its lock in ``folder``, then remove the locks."""
    deadline = time.monotonic() + timeout_s
    for path in sorted(folder.glob("*.lock")):
        try:
            with FileLock(str(path), timeout=max(0.0, deadline - time.monotonic())):
                pass
        except Timeout:
            raise StudyBusy(f"process {lock_owner(path)} of an earlier run of this study (a notebook kernel or the "
                            f"training it launched) still holds {path} after {timeout_s:.0f} s; "
                            "wait for it or stop it, then run again") from None
        path.unlink(missing_ok=True)


def hold_in_kernel(sd: Path) -> None:
    """Called by every notebook's setup cell, and by ``python -m helpers train``.

    Under the runner: hold this process's lock until it exits. Stepped through by hand while a
    batch run holds the study: say so, since cells run here write the same files.
    """
    folder = os.environ.get(KERNEL_ENV)
    if folder:
        if not _held:
            Path(folder).mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(Path(folder) / kernel_lock_name()), timeout=0)
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

    Files ``.<name>.<random>.tmp`` (helpers.study.files, figures, the report) and
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
