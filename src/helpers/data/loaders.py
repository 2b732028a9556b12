"""The train and eval files a study reads: Alpaca, BELLE, chat records, parquet, hub datasets.

Every loader returns ``(records, summary)``: records in the project's schema and a JSON-able
summary (records, per-category counts, fields seen, notes such as a BOM or multi-turn chats).
``python -m helpers validate --kind {train,eval} FILE`` prints that summary. Bad input raises
``DataError`` naming the file, the record and the problem (``helpers.study.records``).

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
            a canonical name (``helpers.study.categories``); records without one are ``unlabelled``.
    eval    ``{question, class, std_answer}`` (BELLE) or ``{id, category, question, reference,
            check?}`` (ours) -> ``{id, category, question, reference, check?}``. The reference
            may be empty only for the open-ended use cases in ``OPEN_ENDED``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from helpers.study.categories import CATEGORIES, OPEN_ENDED, UNLABELLED, label_key
from helpers.study.records import (
    DataError,
    Labels,
    Problems,
    category_counts,
    check_id,
    dataset_rows,
    describe_value,
    fields_seen,
    generated_id,
    local_path,
    note_lines,
    objects,
    read_local,
    read_records,
    text_field,
)

HUMAN_ROLES = {"human", "user", "人类", "用户", "提问者"}

ASSISTANT_ROLES = {"assistant", "gpt", "chatgpt", "bot", "model", "ai", "助手", "回答者"}

SYSTEM_ROLES = {"system", "系统"}


def _chat_pair(turns, field: str, where: str, problems: Problems) -> tuple[str, str, bool] | None:
    """(human text, assistant reply, more turns follow) of the first exchange of a chat record."""
    role_key, text_key = ("from", "value") if field == "conversations" else ("role", "content")
    if not isinstance(turns, list) or not turns:
        problems.add(where, f"'{field}' is {describe_value(turns) if turns != [] else 'an empty list'}, "
                            f"expected a list of turns")
        return None
    parsed = []
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict):
            problems.add(where, f"{field}[{j}] is {describe_value(turn)}, expected {{{role_key}, {text_key}}}")
            return None
        role = str(turn.get(role_key, "")).strip().casefold()
        if role in SYSTEM_ROLES:
            continue
        kind = "human" if role in HUMAN_ROLES else "assistant" if role in ASSISTANT_ROLES else None
        if kind is None:
            problems.add(where, f"{field}[{j}].{role_key} is {turn.get(role_key)!r}; expected human or assistant")
            return None
        text = text_field(turn, text_key, where, problems, label=f"{field}[{j}].{text_key}")
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


def _train_record(rec: dict, where: str, problems: Problems, notes: Counter) -> dict | None:
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
        instruction = text_field(rec, "input", where, problems)
        output = text_field(rec, "target", where, problems)
        notes["layout: input/target"] += 1
        if None in (instruction, output):
            return None
        return {"instruction": instruction, "input": "", "output": output}
    if "instruction" in rec or "output" in rec:
        instruction = text_field(rec, "instruction", where, problems)
        inp = text_field(rec, "input", where, problems, required=False, allow_empty=True)
        output = text_field(rec, "output", where, problems)
        notes["layout: instruction/input/output"] += 1
        if None in (instruction, inp, output):
            return None
        return {"instruction": instruction, "input": inp, "output": output}
    problems.add(where, f"no instruction/output, input/target or conversations fields "
                        f"(fields: {', '.join(map(str, rec)) or 'none'})")
    return None


def missing_revision(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is huggingface_hub's ``RevisionNotFoundError``.

    ``datasets.load_dataset`` re-raises it as ``DatasetNotFoundError("Revision 'x' doesn't exist
    ...") from`` the original, so the cause chain is where it is found.
    """
    from huggingface_hub.errors import RevisionNotFoundError

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RevisionNotFoundError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def load_train(spec: str, *, category_map: dict | None = None, start: int = 0,
               id_prefix: str = "pool", seen_ids: dict | None = None,
               revision: str | None = None) -> tuple[list[dict], dict]:
    """Train records ``{id, instruction, input, output, category}`` and a summary.

    ``spec``: a local ``.json``/``.jsonl``/``.parquet`` file, a local folder of data files, or a
    Hugging Face dataset name. Records without an id get ``{id_prefix}-{start + i:07d}``.
    ``seen_ids`` (id -> where) carries ids across several files so duplicates between files
    are caught too. ``revision`` (``data.revision``) pins a Hugging Face dataset; it applies to
    hub names only (the config refuses it where no train file is one).
    """
    local = local_path(spec)
    source = str(local) if local is not None else spec
    problems, notes = Problems(source), Counter()
    if local is not None and local.is_file() and local.suffix.lower() in (".json", ".jsonl"):
        rows, file_notes = read_records(local)
        fmt, total = file_notes["format"], len(rows)
        if file_notes["bom"]:
            notes["bom"] += 1
        fields = fields_seen(r for _, r in rows)
    elif local is not None and local.is_file() and local.suffix.lower() != ".parquet":
        raise DataError(f"{local}: unsupported file type {local.suffix!r}; expected .json, .jsonl or .parquet")
    else:
        try:
            rows_iter, fmt, columns, total = dataset_rows(spec, local, revision if local is None else None)
        except DataError:
            raise
        except Exception as e:  # datasets raises many kinds; name the source in every case
            if revision and local is None and missing_revision(e):
                raise DataError(f"data.revision: {revision!r} does not exist for the Hugging Face dataset {spec} "
                                f"(huggingface_hub: RevisionNotFoundError); set it to a commit sha, tag or branch "
                                f"listed at https://huggingface.co/datasets/{spec}/commits/main, or remove it "
                                f"to load the newest version") from None
            raise DataError(f"{source}: could not be loaded with datasets.load_dataset "
                            f"({type(e).__name__}: {e})") from None
        rows, fields = rows_iter, None
    labels = Labels(category_map, allow_unlabelled=True)
    seen = {} if seen_ids is None else seen_ids
    out = []
    for i, (where, rec) in enumerate(objects(rows, problems)):
        rid = check_id(rec, where, seen, problems)
        fields_ok = _train_record(rec, where, problems, notes)
        label = rec.get("category", rec.get("class"))
        if label is None or (isinstance(label, str) and not label.strip()) or \
                label_key(label) in ("unlabelled", "unlabeled"):
            cat = UNLABELLED
        else:
            cat = labels.canonical(label, where)
        if fields_ok is None or cat is None:
            continue
        rid = rid or generated_id(f"{id_prefix}-{start + i:07d}", where, seen, problems)
        if rid is None:
            continue
        out.append({"id": rid, **fields_ok, "category": cat})
    labels.check(problems)
    problems.raise_if_any()
    if fields is None:
        fields = {c: total for c in columns}
    summary = {
        "file": source, "kind": "train", "format": fmt, "records": len(out),
        "categories": category_counts(out), "fields": fields,
        "layouts": {k.removeprefix("layout: "): v for k, v in notes.items() if k.startswith("layout: ")},
        "labels_mapped": labels.summary(), "notes": note_lines(notes),
    }
    return out, summary


def load_eval(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Eval items ``{id, category, question, reference, check?}`` from BELLE's or our format."""
    local, rows, file_notes, notes = read_local(path)
    problems, labels, seen, out = Problems(local), Labels(category_map), {}, []
    for n, (where, rec) in enumerate(objects(rows, problems), start=1):
        rid = check_id(rec, where, seen, problems)
        question = text_field(rec, "question", where, problems)
        if "category" in rec or "class" in rec:
            label_field = "category" if "category" in rec else "class"
            cat = labels.canonical(rec[label_field], where)
        else:
            problems.add(where, "missing field 'class' (or 'category')")
            cat = None
        ref_field = "reference" if "reference" in rec else "std_answer"
        open_ended = cat in OPEN_ENDED
        reference = text_field(rec, ref_field, where, problems, required=not open_ended, allow_empty=True)
        if reference is not None and cat is not None and not open_ended and not reference.strip():
            problems.add(where, f"empty '{ref_field}': a reference answer is needed for {cat} (only "
                                f"{', '.join(OPEN_ENDED)} may leave it empty)")
            continue
        check = rec.get("check")
        if check is not None and not isinstance(check, dict):
            problems.add(where, f"'check' is {describe_value(check)}, expected an object")
            continue
        if None in (question, cat, reference):
            continue
        rid = rid or generated_id(f"eval-{n:05d}", where, seen, problems)
        if rid is None:
            continue
        out.append({"id": rid, "category": cat, "question": question, "reference": reference,
                    **({"check": check} if check else {})})
    labels.check(problems)
    problems.raise_if_any()
    summary = {
        "file": str(local), "kind": "eval", "format": file_notes["format"], "records": len(out),
        "categories": category_counts(out), "fields": fields_seen(r for _, r in rows),
        "without_reference": sum(1 for r in out if not r["reference"].strip()),
        "missing_categories": [c for c in CATEGORIES if c not in {r["category"] for r in out}],
        "labels_mapped": labels.summary(), "notes": note_lines(notes),
    }
    return out, summary
