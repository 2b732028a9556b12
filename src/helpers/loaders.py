"""Reading real-world instruction files: train pools, eval sets, self-instruct seeds, judge prompts.

Every loader returns ``(records, summary)``: records in the project's schema and a JSON-able
summary (records, per-category counts, fields seen, notes such as a BOM or multi-turn chats).
``python -m helpers validate --kind {train,eval,seeds,judge-prompts} FILE`` prints that summary.
Bad input raises ``DataError`` whose message names the file, the record (``line 12`` for JSON
lines, ``index 3 (line 14)`` for a JSON array, ``row 7`` for parquet and ``datasets``) and the
problem; up to 20 problems are listed at once so one run shows what to fix.

Formats
    train   Alpaca / BELLE ``{instruction, input, output}``; BELLE's Hugging Face layout
            ``{input, target}`` (the instruction and its input already merged into ``input``);
            chat records ``{conversations: [{from: human|assistant, value}]}`` (also
            ``{messages: [{role, content}]}``): the first human turn and the assistant reply
            after it become instruction and output; later turns are not used and the summary
            counts such multi-turn records. Files: a JSON array or JSON lines (``.json``,
            ``.jsonl``), parquet, a local folder of data files, or a Hugging Face dataset
            name such as ``BelleGroup/train_2M_CN``. Parquet, folders and hub names go through
            ``datasets.load_dataset`` (a folder takes exactly the hub-name path, so the hub
            code is exercised offline). An optional ``category``/``class`` label is mapped to
            a canonical name; records without one are ``unlabelled``.
    eval    ``{question, class, std_answer}`` (BELLE) or ``{id, category, question, reference,
            check?}`` (ours) -> ``{id, category, question, reference, check?}``. The reference
            may be empty only for the open-ended use cases in ``OPEN_ENDED``.
    seeds   self-instruct seed tasks ``{id, name, instruction, instances: [{input, output}],
            is_classification}``.
    judge-prompts  ``{class, prompt}`` per line -> ``{category, prompt}``, one prompt per use case.

Category labels
    Real files spell use cases in many ways ("Open QA", "open_qa", "openqa", "ｂｒａｉｎｓｔｏｒｍ",
    "数学", "chain of thought" ...). ``canonical_category`` maps them to ``helpers.CATEGORIES``
    after NFKC normalisation (full-width letters, non-breaking and ideographic spaces),
    case folding and dropping everything but letters and digits; ``SYNONYMS`` lists the known
    spellings. An unknown label is an error listing every unknown label with its count,
    unless the study maps it through ``data.category_map``.

What the reader accepts and refuses (``read_records``)
    A UTF-8 BOM is accepted (noted in the summary). Invalid UTF-8 is refused with the line and
    byte offset, and a hint when the bytes decode as GB18030/GBK or carry a UTF-16 BOM. A JSON
    lines file whose last line is cut off (no newline, not valid JSON) is refused as truncated,
    as is a JSON array that never closes. Blank lines are skipped.
"""
from __future__ import annotations

import codecs
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

from helpers import CATEGORIES

UNLABELLED = "unlabelled"
"""The category of train records whose file carries no use-case label."""

OPEN_ENDED = ("generation", "brainstorming", "rewrite")
"""Use cases whose eval items may come without a reference answer (BELLE leaves std_answer empty)."""

MAX_LISTED = 20
"""Problems listed in one error message; the rest are counted."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "math": ("mathematics", "maths", "arithmetic", "calculation", "calculate", "math problem",
             "math word problem", "math qa", "数学", "数学题", "数学问题", "数学计算", "数学运算", "计算",
             "计算题", "算术", "算数", "应用题", "数学应用题"),
    "code": ("coding", "programming", "program", "programs", "code generation", "codegen", "code gen",
             "code writing", "write code", "代码", "编程", "程序", "代码生成", "代码编写", "写代码", "编程题",
             "程序设计"),
    "cot": ("chain of thought", "chain-of-thought", "chainofthought", "cot reasoning", "reasoning",
            "step by step", "step-by-step reasoning", "logical reasoning", "思维链", "推理", "逻辑推理",
            "链式思考", "链式推理", "思维链推理", "分步推理"),
    "classification": ("classify", "classifying", "text classification", "categorization",
                       "categorisation", "categorize", "分类", "文本分类", "归类", "分类任务"),
    "extraction": ("extract", "extracting", "information extraction", "info extraction", "ie",
                   "entity extraction", "key information extraction", "抽取", "提取", "信息抽取", "信息提取",
                   "实体抽取", "关键信息抽取", "抽取任务"),
    "open_qa": ("open qa", "openqa", "open-qa", "open question answering", "open domain qa",
                "open-domain qa", "open domain question answering", "open question", "general qa",
                "general question answering", "knowledge qa", "开放问答", "开放式问答", "开放域问答",
                "开放型问答", "开放性问答", "开放问题", "知识问答", "常识问答"),
    "closed_qa": ("closed qa", "closedqa", "closed-qa", "closed question answering", "closed domain qa",
                  "closed-domain qa", "reading comprehension", "extractive qa", "context qa",
                  "封闭问答", "封闭式问答", "封闭域问答", "封闭型问答", "封闭性问答", "阅读理解", "阅读问答"),
    "generation": ("generate", "generating", "text generation", "creative writing", "writing",
                   "creation", "content generation", "生成", "文本生成", "写作", "创作", "创意写作", "内容生成",
                   "文案生成", "写作生成"),
    "brainstorming": ("brainstorm", "brain storming", "brain storm", "ideation", "idea generation",
                      "头脑风暴", "脑暴", "集思广益", "创意", "点子"),
    "rewrite": ("rewriting", "rewritten", "re-write", "paraphrase", "paraphrasing", "polish",
                "polishing", "text rewriting", "style transfer", "改写", "重写", "润色", "复述",
                "文本改写", "改写任务", "转述"),
    "translation": ("translate", "translating", "machine translation", "mt", "zh-en translation",
                    "en-zh translation", "翻译", "机器翻译", "中英翻译", "英中翻译", "英汉翻译", "汉英翻译",
                    "中译英", "英译中", "翻译任务"),
    "summarization": ("summarisation", "summary", "summaries", "summarize", "summarise", "summarizing",
                      "summarising", "text summarization", "abstract", "摘要", "总结", "文本摘要", "概括",
                      "文本总结", "摘要生成", "内容总结"),
}
"""Known spellings per canonical category, compared after ``label_key`` (the canonical name
itself always maps to itself)."""


def label_key(label) -> str:
    """The comparison key of a label: NFKC, case-folded, letters and digits only.

    >>> [label_key(x) for x in ["Open QA", "open_qa", "ＯＰＥＮ\u3000ＱＡ", " Open\u00a0QA.", "数学 "]]
    ['openqa', 'openqa', 'openqa', 'openqa', '数学']
    """
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", str(label)).casefold())


def _lookup_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for cat in CATEGORIES:
        for spelling in (cat, *SYNONYMS[cat]):
            key = label_key(spelling)
            if table.setdefault(key, cat) != cat:
                raise AssertionError(f"synonym {spelling!r} is listed for {table[key]!r} and {cat!r}")
    return table


_LOOKUP = _lookup_table()


def canonical_category(label, extra_map: dict | None = None) -> str | None:
    """The canonical use-case name of ``label`` (one of ``helpers.CATEGORIES``), or None.

    ``extra_map`` (the config's ``data.category_map``) maps further labels, compared the same
    way, and wins over the built-in table.

    >>> [canonical_category(x) for x in ["Open QA", " brainstorm", "数学", "翻译", "Closed_QA", "poetry"]]
    ['open_qa', 'brainstorming', 'math', 'translation', 'closed_qa', None]
    >>> canonical_category("poetry", {"Poetry": "generation"})
    'generation'
    """
    if label is None or isinstance(label, (bool, dict, list)):
        return None
    key = label_key(label)
    if not key:
        return None
    if extra_map:
        for raw, target in extra_map.items():
            if label_key(raw) == key:
                return target
    return _LOOKUP.get(key)


class DataError(ValueError):
    """Input that cannot be used; the message names the file, the record and the problem."""


class _Problems:
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


# ---------------------------------------------------------------------------------------
# Reading JSON / JSON lines files record by record, with precise locations
# ---------------------------------------------------------------------------------------


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


def _dataset_rows(spec: str, local: Path | None):
    """Rows of a parquet file, a local data folder or a hub dataset, through ``datasets``."""
    import datasets

    if local is not None and local.is_file():
        ds = datasets.load_dataset("parquet", data_files=str(local), split="train")
        fmt = "parquet"
    else:  # a hub name, or a local folder: the same ``load_dataset(name)`` call
        ds = datasets.load_dataset(str(local) if local is not None else spec, split="train")
        fmt = "datasets folder" if local is not None else "datasets hub"
    def rows():
        i = 0
        for batch in ds.iter(batch_size=10000):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                yield f"row {i}", dict(zip(columns, values))
                i += 1

    return rows(), fmt, list(ds.column_names), len(ds)


# ---------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------


def _describe(value) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
            str: "text"}.get(
        type(value), type(value).__name__)


def _text_field(rec: dict, name: str, where: str, problems: _Problems, *, required=True, allow_empty=False,
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
        problems.add(where, f"'{label}' is {_describe(value)}, expected text")
        return None
    if not allow_empty and not value.strip():
        problems.add(where, f"empty '{label}'")
        return None
    return value


class _Labels:
    """Maps the labels of one file and reports every unknown one with its count at the end."""

    def __init__(self, category_map: dict | None, allow_unlabelled: bool = False):
        self.allowed = set(CATEGORIES) | ({UNLABELLED} if allow_unlabelled else set())
        self.map = dict(category_map or {})
        bad = {k: v for k, v in self.map.items() if v not in self.allowed}
        if bad:
            raise ValueError(f"category map: unknown target use case(s) {bad}; "
                             f"known: {', '.join(sorted(self.allowed))}")
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

    def check(self, problems: _Problems) -> None:
        if not self.unknown:
            return
        listed = ", ".join(f"{k!r} x{n} (first at {self.first[k]})" for k, n in self.unknown.most_common())
        known = ", ".join(c for c in (*CATEGORIES, UNLABELLED) if c in self.allowed)
        example = json.dumps(self.unknown.most_common(1)[0][0], ensure_ascii=False)
        problems.add("", f"{len(self.unknown)} unknown category label(s): {listed}. Known: {known} and the "
                         f"synonyms in helpers.loaders.SYNONYMS; map others in the study config, e.g. "
                         f"data: {{category_map: {{{example}: generation}}}}")

    def summary(self) -> dict:
        """Labels that were not already canonical, with the name they were mapped to."""
        out: dict[str, str] = {}
        for (label, cat), _ in self.mapped.most_common():
            if label != cat:
                out[label] = cat
        return out


def _category_counts(records: list[dict], key: str = "category") -> dict:
    counts = Counter(r[key] for r in records if r.get(key))
    order = list(CATEGORIES) + [UNLABELLED]
    return {c: counts[c] for c in order if counts[c]}


def _fields_seen(rows) -> dict:
    return dict(sorted(Counter(k for r in rows if isinstance(r, dict) for k in r).items()))


def _objects(rows, problems: _Problems):
    for where, rec in rows:
        if not isinstance(rec, dict):
            problems.add(where, f"expected a JSON object, got {_describe(rec)}")
            continue
        yield where, rec


def _check_id(rec: dict, where: str, seen: dict, problems: _Problems, required=False) -> str | None:
    if "id" not in rec or rec["id"] is None or rec["id"] == "":
        if required:
            problems.add(where, "missing field 'id'")
        return None
    if not isinstance(rec["id"], (str, int)) or isinstance(rec["id"], bool):
        problems.add(where, f"'id' is {_describe(rec['id'])}, expected text or a number")
        return None
    rid = str(rec["id"])
    if rid in seen:
        problems.add(where, f"duplicate id {rid!r} (first at {seen[rid]})")
        return None
    seen[rid] = where
    return rid


def _generated_id(rid: str, where: str, seen: dict, problems: _Problems) -> str | None:
    """Claim an id we made up for a record without one; None if a given id already has it."""
    if rid in seen:
        problems.add(where, f"generated id {rid!r} collides with an id given at {seen[rid]}")
        return None
    seen[rid] = where
    return rid


# ---------------------------------------------------------------------------------------
# Train records
# ---------------------------------------------------------------------------------------

HUMAN_ROLES = {"human", "user", "人类", "用户", "提问者"}
ASSISTANT_ROLES = {"assistant", "gpt", "chatgpt", "bot", "model", "ai", "助手", "回答者"}
SYSTEM_ROLES = {"system", "系统"}


def _chat_pair(turns, field: str, where: str, problems: _Problems) -> tuple[str, str, bool] | None:
    """(human text, assistant reply, more turns follow) of the first exchange of a chat record."""
    role_key, text_key = ("from", "value") if field == "conversations" else ("role", "content")
    if not isinstance(turns, list) or not turns:
        problems.add(where, f"'{field}' is {_describe(turns) if turns != [] else 'an empty list'}, "
                            f"expected a list of turns")
        return None
    parsed = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            problems.add(where, f"{field}[{j}] is {_describe(turn)}, expected {{{role_key}, {text_key}}}")
            return None
        role = str(turn.get(role_key, "")).strip().casefold()
        if role in SYSTEM_ROLES:
            continue
        kind = "human" if role in HUMAN_ROLES else "assistant" if role in ASSISTANT_ROLES else None
        if kind is None:
            problems.add(where, f"{field}[{j}].{role_key} is {turn.get(role_key)!r}; expected human or assistant")
            return None
        text = _text_field(turn, text_key, where, problems, label=f"{field}[{j}].{text_key}")
        if text is None:
            return None
        parsed.append((kind, text))
    if not parsed or parsed[0][0] != "human":
        first = parsed[0][0] if parsed else "nobody"
        problems.add(where, f"'{field}': the first turn is from {first}, expected a human turn")
        return None
    if len(parsed) < 2 or parsed[1][0] != "assistant":
        problems.add(where, f"'{field}': no assistant reply after the first human turn")
        return None
    return parsed[0][1], parsed[1][1], len(parsed) > 2


def _train_record(rec: dict, where: str, problems: _Problems, notes: Counter) -> dict | None:
    """{instruction, input, output} of one raw record, whichever layout it has."""
    present = {k for k, v in rec.items() if v is not None}  # datasets fills absent columns with None
    for field in ("conversations", "messages"):
        if field in present:
            pair = _chat_pair(rec[field], field, where, problems)
            if pair is None:
                return None
            notes["layout: chat"] += 1
            if pair[2]:
                notes["multi_turn"] += 1
            return {"instruction": pair[0], "input": "", "output": pair[1]}
    # BELLE's hub layout: a target with no instruction/output values (null ones included), or a
    # target key (even null, then reported) beside no instruction/output keys at all
    if ("target" in present and not present & {"instruction", "output"}) or \
            ("target" in rec and "instruction" not in rec and "output" not in rec):
        instruction = _text_field(rec, "input", where, problems)
        output = _text_field(rec, "target", where, problems)
        notes["layout: input/target"] += 1
        if None in (instruction, output):
            return None
        return {"instruction": instruction, "input": "", "output": output}
    if "instruction" in rec or "output" in rec:
        instruction = _text_field(rec, "instruction", where, problems)
        inp = _text_field(rec, "input", where, problems, required=False, allow_empty=True)
        output = _text_field(rec, "output", where, problems)
        notes["layout: instruction/input/output"] += 1
        if None in (instruction, inp, output):
            return None
        return {"instruction": instruction, "input": inp, "output": output}
    problems.add(where, f"no instruction/output, input/target or conversations fields "
                        f"(fields: {', '.join(map(str, rec)) or 'none'})")
    return None


def _local(spec: str) -> Path | None:
    from helpers.config import resolve

    p = resolve(spec)
    return p if p.exists() else None


def load_train(spec: str, *, category_map: dict | None = None, start: int = 0,
               id_prefix: str = "pool", seen_ids: dict | None = None) -> tuple[list[dict], dict]:
    """Train records ``{id, instruction, input, output, category}`` and a summary.

    ``spec``: a local ``.json``/``.jsonl``/``.parquet`` file, a local folder of data files, or a
    Hugging Face dataset name. Records without an id get ``{id_prefix}-{start + i:07d}``.
    ``seen_ids`` (id -> where) carries ids across several files so duplicates between files
    are caught too.
    """
    local = _local(spec)
    source = str(local) if local is not None else spec
    problems, notes = _Problems(source), Counter()
    if local is not None and local.is_file() and local.suffix.lower() in (".json", ".jsonl"):
        rows, file_notes = read_records(local)
        fmt, total = file_notes["format"], len(rows)
        if file_notes["bom"]:
            notes["bom"] += 1
        fields = _fields_seen(r for _, r in rows)
    elif local is not None and local.is_file() and local.suffix.lower() != ".parquet":
        raise DataError(f"{local}: unsupported file type {local.suffix!r}; expected .json, .jsonl or .parquet")
    else:
        try:
            rows_iter, fmt, columns, total = _dataset_rows(spec, local)
        except DataError:
            raise
        except Exception as e:  # datasets raises many kinds; name the source in every case
            raise DataError(f"{source}: could not be loaded with datasets.load_dataset "
                            f"({type(e).__name__}: {e})") from None
        rows, fields = rows_iter, None
    labels = _Labels(category_map, allow_unlabelled=True)
    seen = {} if seen_ids is None else seen_ids
    out = []
    for i, (where, rec) in enumerate(_objects(rows, problems)):
        rid = _check_id(rec, where, seen, problems)
        fields_ok = _train_record(rec, where, problems, notes)
        label = rec.get("category", rec.get("class"))
        if label is None or (isinstance(label, str) and not label.strip()) or \
                label_key(label) in ("unlabelled", "unlabeled"):
            cat = UNLABELLED
        else:
            cat = labels.canonical(label, where)
        if fields_ok is None or cat is None:
            continue
        rid = rid or _generated_id(f"{id_prefix}-{start + i:07d}", where, seen, problems)
        if rid is None:
            continue
        out.append({"id": rid, **fields_ok, "category": cat})
    labels.check(problems)
    problems.raise_if_any()
    if fields is None:
        fields = {c: total for c in columns}
    summary = {
        "file": source, "kind": "train", "format": fmt, "records": len(out),
        "categories": _category_counts(out), "fields": fields,
        "layouts": {k.removeprefix("layout: "): v for k, v in notes.items() if k.startswith("layout: ")},
        "labels_mapped": labels.summary(), "notes": _notes(notes),
    }
    return out, summary


def _notes(notes: Counter) -> list[str]:
    out = []
    if notes["bom"]:
        out.append("the file starts with a UTF-8 byte-order mark (BOM): ignored")
    if notes["multi_turn"]:
        out.append(f"{notes['multi_turn']} multi-turn chat records: only the first human/assistant exchange "
                   f"was used")
    return out


# ---------------------------------------------------------------------------------------
# Eval items, seeds, judge prompts (JSON lines or a JSON array)
# ---------------------------------------------------------------------------------------


def _read_local(path: str | Path) -> tuple[Path, list[tuple[str, object]], dict, Counter]:
    local = _local(str(path)) or Path(path)
    rows, file_notes = read_records(local)
    notes = Counter({"bom": int(file_notes["bom"])})
    return local, rows, file_notes, notes


def load_eval(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Eval items ``{id, category, question, reference, check?}`` from BELLE's or our format."""
    local, rows, file_notes, notes = _read_local(path)
    problems, labels, seen, out = _Problems(local), _Labels(category_map), {}, []
    for n, (where, rec) in enumerate(_objects(rows, problems), start=1):
        rid = _check_id(rec, where, seen, problems)
        question = _text_field(rec, "question", where, problems)
        if "category" in rec or "class" in rec:
            label_field = "category" if "category" in rec else "class"
            cat = labels.canonical(rec[label_field], where)
        else:
            problems.add(where, "missing field 'class' (or 'category')")
            cat = None
        ref_field = "reference" if "reference" in rec else "std_answer"
        open_ended = cat in OPEN_ENDED
        reference = _text_field(rec, ref_field, where, problems, required=not open_ended, allow_empty=True)
        if reference is not None and cat is not None and not open_ended and not reference.strip():
            problems.add(where, f"empty '{ref_field}': a reference answer is needed for {cat} (only "
                                f"{', '.join(OPEN_ENDED)} may leave it empty)")
            continue
        check = rec.get("check")
        if check is not None and not isinstance(check, dict):
            problems.add(where, f"'check' is {_describe(check)}, expected an object")
            continue
        if None in (question, cat, reference):
            continue
        rid = rid or _generated_id(f"eval-{n:05d}", where, seen, problems)
        if rid is None:
            continue
        out.append({"id": rid, "category": cat, "question": question, "reference": reference,
                    **({"check": check} if check else {})})
    labels.check(problems)
    problems.raise_if_any()
    summary = {
        "file": str(local), "kind": "eval", "format": file_notes["format"], "records": len(out),
        "categories": _category_counts(out), "fields": _fields_seen(r for _, r in rows),
        "without_reference": sum(1 for r in out if not r["reference"].strip()),
        "missing_categories": [c for c in CATEGORIES if c not in {r["category"] for r in out}],
        "labels_mapped": labels.summary(), "notes": _notes(notes),
    }
    return out, summary


def load_seeds(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Self-instruct seed tasks ``{id, name, instruction, instances: [{input, output}], is_classification}``.

    An optional ``category``/``class`` label is mapped and kept as ``category``.
    """
    local, rows, file_notes, notes = _read_local(path)
    problems, labels, seen, out = _Problems(local), _Labels(category_map), {}, []
    for where, rec in _objects(rows, problems):
        rid = _check_id(rec, where, seen, problems, required=True)
        name = _text_field(rec, "name", where, problems)
        instruction = _text_field(rec, "instruction", where, problems)
        instances = rec.get("instances")
        good_instances = []
        if "instances" not in rec:
            problems.add(where, "missing field 'instances'")
        elif not isinstance(instances, list) or not instances:
            problems.add(where, f"'instances' is {_describe(instances) if instances != [] else 'an empty list'}, "
                                f"expected a list of {{input, output}}")
        else:
            for j, inst in enumerate(instances):
                if not isinstance(inst, dict):
                    problems.add(where, f"instances[{j}] is {_describe(inst)}, expected {{input, output}}")
                    continue
                inp = _text_field(inst, "input", where, problems, required=False, allow_empty=True,
                                  label=f"instances[{j}].input")
                output = _text_field(inst, "output", where, problems, label=f"instances[{j}].output")
                if inp is not None and output is not None:
                    good_instances.append({"input": inp, "output": output})
        is_cls = rec.get("is_classification")
        if "is_classification" not in rec:
            problems.add(where, "missing field 'is_classification'")
        elif not isinstance(is_cls, bool):
            problems.add(where, f"'is_classification' is {_describe(is_cls)}, expected true or false")
        cat = None
        if rec.get("category", rec.get("class")) is not None:
            cat = labels.canonical(rec.get("category", rec.get("class")), where)
            if cat is None:
                continue
        if None in (rid, name, instruction) or not isinstance(is_cls, bool) or \
                len(good_instances) != len(instances or []):
            continue
        out.append({"id": rid, "name": name, "instruction": instruction, "instances": good_instances,
                    "is_classification": is_cls, **({"category": cat} if cat else {})})
    labels.check(problems)
    problems.raise_if_any()
    summary = {
        "file": str(local), "kind": "seeds", "format": file_notes["format"], "records": len(out),
        "categories": _category_counts(out),
        "is_classification": {"true": sum(r["is_classification"] for r in out),
                              "false": sum(not r["is_classification"] for r in out)},
        "instances": sum(len(r["instances"]) for r in out),
        "fields": _fields_seen(r for _, r in rows), "labels_mapped": labels.summary(), "notes": _notes(notes),
    }
    return out, summary


def load_judge_prompts(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Judge rubric prompts ``{category, prompt}``, one per use case, from ``{class, prompt}`` lines."""
    local, rows, file_notes, notes = _read_local(path)
    problems, labels, first, out = _Problems(local), _Labels(category_map), {}, []
    for where, rec in _objects(rows, problems):
        label_field = "class" if "class" in rec else "category"
        if label_field not in rec:
            problems.add(where, "missing field 'class' (or 'category')")
            cat = None
        else:
            cat = labels.canonical(rec[label_field], where)
        prompt = _text_field(rec, "prompt", where, problems)
        if cat is not None and cat in first:
            problems.add(where, f"a second prompt for {cat} (first at {first[cat]})")
            continue
        if cat is None or prompt is None:
            continue
        first[cat] = where
        out.append({"category": cat, "prompt": prompt})
    labels.check(problems)
    problems.raise_if_any()
    summary = {
        "file": str(local), "kind": "judge-prompts", "format": file_notes["format"], "records": len(out),
        "categories": _category_counts(out), "fields": _fields_seen(r for _, r in rows),
        "missing_categories": [c for c in CATEGORIES if c not in first],
        "labels_mapped": labels.summary(), "notes": _notes(notes),
    }
    return out, summary


LOADERS = {"train": load_train, "eval": load_eval, "seeds": load_seeds, "judge-prompts": load_judge_prompts}


def validate(kind: str, spec: str | Path, category_map: dict | None = None) -> dict:
    """Load ``spec`` as ``kind`` and return its summary; raises ``DataError`` on bad input."""
    if kind not in LOADERS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(LOADERS)}")
    _, summary = LOADERS[kind](str(spec), category_map=category_map)
    return summary
