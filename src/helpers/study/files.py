"""Reading and writing the study's files without ever leaving a half-written one.

Every whole-file write goes to a temporary file in the same folder and is then
renamed over the target, so a kill mid-write leaves the old file or the new one,
never a mix. Append-only JSONL files (answers, judgments) are written one full
line at a time and flushed; a torn last line from a kill is detected on read and
dropped with a warning by ``read_jsonl(..., tolerate_torn_tail=True)`` only.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

_UMASK = os.umask(0)

os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write: renamed onto ``path`` if the block ends well, removed if not.

    So a reader never sees half a file and a kill leaves the old one whole; the temporary name
    ``.<name>.<random>.tmp`` is what a new run's clean-up removes (``helpers.study.lock``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should read like any other file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def dumps(record: dict) -> str:
    """One JSON line, UTF-8 kept readable, keys in insertion order (deterministic)."""
    return json.dumps(record, ensure_ascii=False)


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict], block: int = 10000) -> None:
    """One JSON line per record, through a temp file + rename, written ``block`` lines at a time:
    the same bytes as one ``write`` of the whole text, without holding it (gigabytes at 2M records)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        lines = []
        for r in records:
            lines.append(dumps(r) + "\n")
            if len(lines) >= block:
                f.write("".join(lines))
                lines.clear()
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())


def append_jsonl(path: str | Path, records: Iterable[dict]) -> None:
    """Append whole lines and flush, so a resumed stage sees every finished record.

    The batch goes out in one write: a kill leaves all of it or (at worst) a torn last line,
    not the first half of a batch that a resumed stage would then redo in different batches."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(dumps(r) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path, tolerate_torn_tail: bool = False) -> list[dict]:
    """Read a JSONL file; a bad line is an error naming the file and line number.

    With ``tolerate_torn_tail`` (only for our own append-only files) a last line
    without its newline that does not parse is the trace of a killed writer: it is
    dropped with a warning and the file is truncated so appends continue cleanly.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not valid UTF-8 ({e.reason})") from None
    records = []
    lines = text.split("\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            is_tail = i == len(lines) and not text.endswith("\n")
            if tolerate_torn_tail and is_tail:
                warnings.warn(f"{path}: line {i}: dropped a torn last line left by an interrupted write")
                atomic_write_text(path, text[: len(text) - len(line)])
                break
            raise ValueError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: line {i}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
