"""File hashes for the runner's fingerprints, each file read once while it stays the same.

Why: the runner hashes the inputs and outputs of every stage execution at every check, and at paper
scale those include model folders of ~14 GB each (a 7B model in bf16) and a 2M-record pool; reading
them again for every ``--dry-run`` and every stage of every run costs minutes. So, as DVC does, a
file's sha256 is remembered under its (path, size, modification time in ns, inode): a file written
again, renamed into place or touched gets hashed anew; one left alone is not read again. The memory
lives in ``<study>/.stages/file_hashes.json`` between runs (``load``/``save`` by the runner).

The digest of a folder is the runner's as before: every file under it, names included, in order.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from helpers.study.files import atomic_write_text

_known: dict[str, tuple[int, int, int, str]] = {}
"""str(path) -> (size, mtime_ns, inode, sha256) of files hashed or loaded in this process."""


def file_digest(path: Path) -> str:
    """sha256 of one file's bytes, read in 1 MiB chunks (the only place a file is read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_digest(path: Path) -> str:
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _known.get(str(path))
    if hit and hit[:3] == stamp:
        return hit[3]
    digest = file_digest(path)
    _known[str(path)] = (*stamp, digest)
    return digest


def hash_path(path: Path) -> str | None:
    """sha256 of a file, or of every file under a folder (names included); None if missing."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(cached_digest(f).encode())
    return h.hexdigest()


def load(store: Path) -> None:
    """Take the hashes remembered in ``store`` (a missing or unreadable store is an empty memory)."""
    try:
        saved = json.loads(Path(store).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for name, entry in saved.items():
        _known.setdefault(name, tuple(entry))


def save(store: Path) -> None:
    """Write what is remembered for files that still exist, atomically."""
    keep = {name: list(entry) for name, entry in _known.items() if os.path.exists(name)}
    atomic_write_text(store, json.dumps(keep, sort_keys=True))


def forget() -> None:
    _known.clear()
