"""Reading instruction files record by record, and saying exactly what is wrong with them.

Every loader (train and eval files, seed tasks, judge prompts) reads its file through
``read_records`` and reports problems through ``Problems``, so a bad file stops with the file,
the record (``line 12``, ``index 3 (line 14)``, ``row 7``) and the problem, up to ``MAX_LISTED``
at once. A UTF-8 BOM is accepted (noted in the summary). Invalid UTF-8 is refused with the line
and byte offset, and a hint when the bytes decode as GB18030/GBK or carry a UTF-16 BOM. A JSON
lines file whose last line is cut off is refused as truncated, as is a JSON array that never
closes. Blank lines are skipped.
"""
from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from pathlib import Path

from helpers.study.categories import CATEGORIES, UNLABELLED, canonical_category, check_map_targets

MAX_LISTED = 20
"""Problems listed in one error message; the rest are counted."""


class DataError(ValueError):
    """Input that cannot be used; the message names the file, the record and the problem."""


class Problems:
    """Collects problems of one file and raises them together."""

    def __init__(self, source):
        self.source, self.items, self.count = str(source), [], 0

    def add(self, where: str, problem: str) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")

    def raise_if_any(self) -> None:
        if not self.count:
            return
        more = f"\n  ... and {self.count - len(self.items)} more problems" if self.count > len(self.items) else ""
        if self.count == 1:
            raise DataError(self.items[0])
        raise DataError(f"{self.count} problems:\n  " + "\n  ".join(self.items) + more)


def _encoding_hint(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "; it starts with a UTF-16 byte-order mark: save it as UTF-8"
    try:
        decoded = raw.decode("gb18030")
    except UnicodeDecodeError:
        return "; it looks like it is not UTF-8 text (a different encoding or a binary file)"
    if re.search(r"[\u4e00-\u9fff]", decoded):
        return ("; it looks like it is not UTF-8 but GBK/GB18030-encoded Chinese text: convert it, "
                "e.g. `iconv -f GB18030 -t UTF-8 FILE > FILE.utf8`")
    return "; it looks like it is not UTF-8 text"


def decode_utf8(raw: bytes, source) -> tuple[str, bool]:
    """(text, had_bom). A UTF-8 BOM is dropped; invalid UTF-8 is a ``DataError`` naming the line."""
    bom = raw.startswith(codecs.BOM_UTF8)
    if bom:
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8"), bom
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{source}: line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset "
                        f"{e.start + (3 if bom else 0)}){_encoding_hint(raw)}") from None


def read_records(path: str | Path) -> tuple[list[tuple[str, object]], dict]:
    """``([(where, value), ...], notes)`` of a JSON array or JSON lines file.

    ``where`` is ``"line N"`` (JSON lines) or ``"index I (line N)"`` (array, I from 0); values are
    whatever JSON holds there (the kind-specific loaders insist on objects). ``notes`` has
    ``format`` ("jsonl" or "json array") and ``bom``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON or JSON lines file") from None
    text, bom = decode_utf8(raw, path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty (no records)")
    first = len(text) - len(text.lstrip())
    if text[first] == "[":
        return _read_array(text, first, path), {"format": "json array", "bom": bom}
    return _read_lines(text, path), {"format": "jsonl", "bom": bom}


def _read_lines(text: str, path: Path) -> list[tuple[str, object]]:
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines, start=1):
        line = line.strip().lstrip("\ufeff")  # \r of CRLF files; a BOM left by concatenated files
        if not line:
            continue
        try:
            out.append((f"line {i}", json.loads(line)))
        except json.JSONDecodeError as e:
            last = all(not rest.strip() for rest in lines[i:])
            if last and not text.endswith("\n"):
                raise DataError(f"{path}: line {i}: truncated last line (it ends mid-record without a newline: "
                                f"{e.msg} at column {e.colno}); was the file cut off while writing or "
                                f"downloading?") from None
            hint = ""
            if i == 1 and line.startswith("{") and not line.endswith("}"):
                hint = "; a JSON object spread over several lines is not JSON lines (one object per line)"
            raise DataError(f"{path}: line {i}: not valid JSON ({e.msg} at column {e.colno}){hint}") from None
    return out


def _read_array(text: str, pos: int, path: Path) -> list[tuple[str, object]]:
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    out, index = [], 0
    line, line_pos = 1, 0

    def line_at(p: int) -> int:
        nonlocal line, line_pos
        line += text.count("\n", line_pos, p)
        line_pos = p
        return line

    closed = text.rstrip().endswith("]")
    pos = ws.match(text, pos + 1).end()
    if pos < len(text) and text[pos] == "]":
        return out
    while True:
        if pos >= len(text):
            raise DataError(f"{path}: the JSON array is not closed: the file ends after index {index - 1} "
                            f"(line {line_at(pos)}); it looks truncated")
        where = f"index {index} (line {line_at(pos)})"
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            tail = "" if closed else "; the file does not end with ']': it looks truncated"
            raise DataError(f"{path}: {where}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}){tail}") \
                from None
        out.append((where, value))
        index += 1
        pos = ws.match(text, pos).end()
        if pos < len(text) and text[pos] == ",":
            pos = ws.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == "]":
            if text[pos + 1:].strip():
                raise DataError(f"{path}: line {line_at(pos)}: unexpected text after the closing ']' of the array")
            return out
        if pos >= len(text):
            continue  # reported as not closed above
        raise DataError(f"{path}: {where}: expected ',' or ']' after the record, found {text[pos]!r} "
                        f"at line {line_at(pos)}")


def dataset_rows(spec: str, local: Path | None, revision: str | None = None):
    """Rows of a parquet file, a local data folder or a hub dataset, through ``datasets``.

    ``revision`` (``data.revision``) pins a hub dataset to a commit, tag or branch; local data has none.
    """
    import datasets

    if local is not None and local.is_file():
        ds = datasets.load_dataset("parquet", data_files=str(local), split="train")
        fmt = "parquet"
    elif local is not None:  # a local folder: the same ``load_dataset(name)`` call as a hub name
        ds = datasets.load_dataset(str(local), split="train")
        fmt = "datasets folder"
    else:
        ds = datasets.load_dataset(spec, split="train", revision=revision)
        fmt = "datasets hub" + (f" @ {revision}" if revision else "")
    def rows():
        i = 0
        for batch in ds.iter(batch_size=10000):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                yield f"row {i}", dict(zip(columns, values))
                i += 1

    return rows(), fmt, list(ds.column_names), len(ds)


def describe_value(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            str: "text"}.get(
        type(value), type(value).__name__)


def text_field(rec: dict, name: str, where: str, problems: Problems, *, required=True, allow_empty=False,
                label: str | None = None) -> str | None:
    """A string field; null and missing are problems when ``required`` (else "")."""
    label = label or name
    if name not in rec:
        if required:
            problems.add(where, f"missing field '{label}' (fields: {', '.join(map(str, rec)) or 'none'})")
            return None
        return ""
    value = rec[name]
    if value is None:
        if required:
            problems.add(where, f"'{label}' is null")
            return None
        return ""
    if not isinstance(value, str):
        problems.add(where, f"'{label}' is {describe_value(value)}, expected text")
        return None
    if not allow_empty and not value.strip():
        problems.add(where, f"empty '{label}'")
        return None
    return value


class Labels:
    """Maps the labels of one file and reports every unknown one with its count at the end."""

    def __init__(self, category_map: dict | None, allow_unlabelled: bool = False):
        self.allowed = set(CATEGORIES) | ({UNLABELLED} if allow_unlabelled else set())
        self.map = dict(category_map or {})
        try:
            check_map_targets(self.map, self.allowed)
        except ValueError as e:
            raise ValueError(f"category map: {e}") from None
        self.unknown: Counter = Counter()
        self.first: dict[str, str] = {}
        self.mapped: Counter = Counter()

    def canonical(self, label, where: str) -> str | None:
        cat = canonical_category(label, self.map)
        if cat is None or cat not in self.allowed:
            key = str(label)
            self.unknown[key] += 1
            self.first.setdefault(key, where)
            return None
        self.mapped[(str(label), cat)] += 1
        return cat

    def check(self, problems: Problems) -> None:
        if not self.unknown:
            return
        listed = ", ".join(f"{k!r} x{n} (first at {self.first[k]})" for k, n in self.unknown.most_common())
        known = ", ".join(c for c in (*CATEGORIES, UNLABELLED) if c in self.allowed)
        example = json.dumps(self.unknown.most_common(1)[0][0], ensure_ascii=False)
        problems.add("", f"{len(self.unknown)} unknown category label(s): {listed}. Known: {known} and the "
                         f"synonyms in helpers.study.categories.SYNONYMS; map others in the study config, e.g. "
                         f"data: {{category_map: {{{example}: generation}}}}")

    def summary(self) -> dict:
        """Labels that were not already canonical, with the name they were mapped to."""
        out: dict[str, str] = {}
        for (label, cat), _ in self.mapped.most_common():
            if label != cat:
                out[label] = cat
        return out


def category_counts(records: list[dict], key: str = "category") -> dict:
    counts = Counter(r[key] for r in records if r.get(key))
    order = list(CATEGORIES) + [UNLABELLED]
    return {c: counts[c] for c in order if counts[c]}


def fields_seen(rows) -> dict:
    return dict(sorted(Counter(k for r in rows if isinstance(r, dict) for k in r).items()))


def objects(rows, problems: Problems):
    for where, rec in rows:
        if not isinstance(rec, dict):
            problems.add(where, f"expected a JSON object, got {describe_value(rec)}")
            continue
        yield where, rec


def check_id(rec: dict, where: str, seen: dict, problems: Problems, required=False) -> str | None:
    if "id" not in rec or rec["id"] is None or rec["id"] == "":
        if required:
            problems.add(where, "missing field 'id'")
        return None
    if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
        problems.add(where, f"'id' is {describe_value(rec['id'])}, expected text or a number")
        return None
    rid = str(rec["id"])
    if rid in seen:
        problems.add(where, f"duplicate id {rid!r} (first at {seen[rid]})")
        return None
    seen[rid] = where
    return rid


def generated_id(rid: str, where: str, seen: dict, problems: Problems) -> str | None:
    """Claim an id we made up for a record without one; None if a given id already has it."""
    if rid in seen:
        problems.add(where, f"generated id {rid!r} collides with an id given at {seen[rid]}")
        return None
    seen[rid] = where
    return rid


def local_path(spec: str) -> Path | None:
    from helpers.study.paths import resolve

    p = resolve(spec)
    return p if p.exists() else None


def note_lines(notes: Counter) -> list[str]:
    out = []
    if notes["bom"]:
        out.append("the file starts with a UTF-8 byte-order mark (BOM): ignored")
    if notes["multi_turn"]:
        out.append(f"{notes['multi_turn']} multi-turn chat records: only the first human/assistant exchange "
                   f"was used")
    return out


def read_local(path: str | Path) -> tuple[Path, list[tuple[str, object]], dict, Counter]:
    local = local_path(str(path)) or Path(path)
    rows, file_notes = read_records(local)
    notes = Counter({"bom": int(file_notes["bom"])})
    return local, rows, file_notes, notes
