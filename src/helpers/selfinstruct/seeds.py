"""Seed tasks: the file (``{id, name, instruction, instances, is_classification}``) and the examples per request.

The examples of request ``i`` are sampled with the study seed and ``i``, so a resumed run sends
the same request for the same index.
"""
from __future__ import annotations

import random
from pathlib import Path

from helpers.selfinstruct.label import heuristic_category
from helpers.selfinstruct.request import SelfInstructError
from helpers.study.config import StudyConfig
from helpers.study.paths import resolve
from helpers.study.records import (
    Labels,
    Problems,
    category_counts,
    check_id,
    describe_value,
    fields_seen,
    note_lines,
    objects,
    read_local,
    text_field,
)


def load_seeds(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Self-instruct seed tasks ``{id, name, instruction, instances: [{input, output}], is_classification}``.

    An optional ``category``/``class`` label is mapped and kept as ``category``.
    """
    local, rows, file_notes, notes = read_local(path)
    problems, labels, seen, out = Problems(local), Labels(category_map), {}, []
    for where, rec in objects(rows, problems):
        rid = check_id(rec, where, seen, problems, required=True)
        name = text_field(rec, "name", where, problems)
        instruction = text_field(rec, "instruction", where, problems)
        instances = rec.get("instances")
        good_instances = []
        if "instances" not in rec:
            problems.add(where, "missing field 'instances'")
        elif not isinstance(instances, list) or not instances:
            problems.add(where, f"'instances' is {describe_value(instances) if instances != [] else 'an empty list'}, "
                                f"expected a list of {{input, output}}")
        else:
            for j, inst in enumerate(instances):
                if not isinstance(inst, dict):
                    problems.add(where, f"instances[{j}] is {describe_value(inst)}, expected {{input, output}}")
                    continue
                inp = text_field(inst, "input", where, problems, required=False, allow_empty=True,
                                  label=f"instances[{j}].input")
                output = text_field(inst, "output", where, problems, label=f"instances[{j}].output")
                if inp is not None and output is not None:
                    good_instances.append({"input": inp, "output": output})
        is_cls = rec.get("is_classification")
        if "is_classification" not in rec:
            problems.add(where, "missing field 'is_classification'")
        elif not isinstance(is_cls, bool):
            problems.add(where, f"'is_classification' is {describe_value(is_cls)}, expected true or false")
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
        "categories": category_counts(out),
        "is_classification": {"true": sum(r["is_classification"] for r in out),
                              "false": sum(not r["is_classification"] for r in out)},
        "instances": sum(len(r["instances"]) for r in out),
        "fields": fields_seen(r for _, r in rows), "labels_mapped": labels.summary(), "notes": note_lines(notes),
    }
    return out, summary


def load_seed_tasks(cfg: StudyConfig) -> list[dict]:
    """The seed tasks (``helpers.selfinstruct.seeds.load_seeds``: bad records stop with file, line and problem)."""
    s = cfg.selfinstruct
    path = resolve(s.seeds_file)
    if not path.is_file():
        raise SelfInstructError(f"selfinstruct.seeds_file: {path} not found")
    seeds, _ = load_seeds(path, category_map=cfg.data.category_map)
    if len(seeds) < s.examples_per_request:
        raise SelfInstructError(f"selfinstruct.examples_per_request: {s.examples_per_request} examples per request, "
                                f"but {path} holds {len(seeds)} seed tasks")
    return seeds


def sample_examples(seeds: list[dict], k: int, seed: int, index: int) -> list[dict]:
    """The k seed examples of request ``index``: ``{instruction, input, output, category}``, seeded per index."""
    rng = random.Random(f"{seed}|selfinstruct|{index}")
    out = []
    for task in rng.sample(seeds, k):
        inst = rng.choice(task["instances"])
        out.append({"instruction": task["instruction"], "input": inst["input"], "output": inst["output"],
                    "category": task.get("category") or heuristic_category(task["instruction"], inst["input"])})
    return out
