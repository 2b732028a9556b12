"""The LLM judge's rubric prompts file: ``{class, prompt}`` per line -> ``{category, prompt}``.

One prompt per use case; labels are mapped like any other (``helpers.study.categories``), and
an unknown label or a second prompt for the same use case stops with the line.
"""
from __future__ import annotations

from pathlib import Path

from helpers.study.categories import CATEGORIES
from helpers.study.records import (
    Labels,
    Problems,
    category_counts,
    fields_seen,
    note_lines,
    objects,
    read_local,
    text_field,
)


def load_judge_prompts(path: str | Path, *, category_map: dict | None = None) -> tuple[list[dict], dict]:
    """Judge rubric prompts ``{category, prompt}``, one per use case, from ``{class, prompt}`` lines."""
    local, rows, file_notes, notes = read_local(path)
    problems, labels, first, out = Problems(local), Labels(category_map), {}, []
    for where, rec in objects(rows, problems):
        label_field = "class" if "class" in rec else "category"
        if label_field not in rec:
            problems.add(where, "missing field 'class' (or 'category')")
            cat = None
        else:
            cat = labels.canonical(rec[label_field], where)
        prompt = text_field(rec, "prompt", where, problems)
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
        "categories": category_counts(out), "fields": fields_seen(r for _, r in rows),
        "missing_categories": [c for c in CATEGORIES if c not in first],
        "labels_mapped": labels.summary(), "notes": note_lines(notes),
    }
    return out, summary
