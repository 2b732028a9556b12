"""What is in each subset: items and lengths per use case, and the tables the data notebook shows.

Lengths are counted in tokens of the base model when its tokenizer is on the machine, else in
characters (``data.length_unit``).
"""
from __future__ import annotations

import statistics
from collections import Counter

from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig, is_mixture, split_model
from helpers.study.models import EMBEDDED, base_model_path, load_tokenizer
from helpers.study.paths import resolve


def _describe_lengths(values: list[int]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "p90": 0, "max": 0}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(values), 1), "median": statistics.median(values),
            "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], "max": ordered[-1]}


def subset_stats(records: list[dict], tokens: dict[str, int] | None = None) -> dict:
    """Size, items per category and length statistics (characters; tokens when counted) per category."""
    lengths = [len(r["instruction"]) + len(r.get("input", "")) + len(r["output"]) for r in records]
    cats = Counter(r["category"] for r in records)
    order = [c for c in CATEGORIES if c in cats] + sorted(set(cats) - set(CATEGORIES))
    by_cat: dict[str, dict] = {c: {"n": cats[c]} for c in order}
    per_cat_chars: dict[str, list[int]] = {c: [] for c in order}
    per_cat_tokens: dict[str, list[int]] = {c: [] for c in order}
    for r, n in zip(records, lengths):
        per_cat_chars[r["category"]].append(n)
        if tokens is not None:
            per_cat_tokens[r["category"]].append(tokens[r["id"]])
    for c in order:
        by_cat[c]["chars"] = _describe_lengths(per_cat_chars[c])
        if tokens is not None:
            by_cat[c]["tokens"] = _describe_lengths(per_cat_tokens[c])
    out = {
        "n": len(records),
        "categories": {c: cats[c] for c in order},
        "chars": {"mean": round(statistics.fmean(lengths), 1) if lengths else 0,
                  "median": statistics.median(lengths) if lengths else 0, "max": max(lengths, default=0)},
    }
    if tokens is not None:
        out["tokens"] = _describe_lengths([tokens[r["id"]] for r in records])
    out["by_category"] = by_cat
    return out


def length_tokenizer(cfg: StudyConfig):
    """The base model's tokenizer when it is cheap to get (see ``data.length_unit``), else None."""
    unit = cfg.data.length_unit
    if unit == "chars":
        return None, "chars"

    if unit == "auto" and cfg.model.base != EMBEDDED and not resolve(cfg.model.base).exists():
        return None, f"chars (the tokenizer of {cfg.model.base} is not on this machine)"
    path = base_model_path(cfg)
    try:
        return load_tokenizer(path), f"tokens ({cfg.model.base})"
    except Exception as e:  # a local folder without a tokenizer: fall back, and say so
        if unit == "tokens":
            raise ValueError(f"data.length_unit: tokens, but no tokenizer could be loaded from {path}: {e}") from None
        return None, f"chars (no tokenizer in {path})"


def count_tokens(tok, records: list[dict]) -> dict[str, int]:
    """Tokens of each record's training text: the prompt (question) and the answer."""
    from helpers.study.prompt import format_prompt

    out = {}
    for lo in range(0, len(records), 1024):
        batch = records[lo: lo + 1024]
        texts = [format_prompt(r["instruction"], r.get("input", "")) + r["output"] for r in batch]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        out.update({r["id"]: len(x) for r, x in zip(batch, ids)})
    return out


def filter_table(stats: dict) -> list[dict]:
    """One row per filter of ``data_stats.json``: what it found, what it removed, with which settings."""
    f = stats.get("filters", {})
    rows = []
    if "verbatim" in f:
        rows.append({"step": "verbatim eval questions", "action": f["verbatim"]["action"],
                     "found": f["verbatim"]["removed"], "removed": f["verbatim"]["removed"], "settings": ""})
    if "dedup" in f:
        d = f["dedup"]
        rows.append({"step": "exact duplicates", "action": d["action"], "found": d["exact"],
                     "removed": d["exact"] if d["action"] == "remove" else 0, "settings": "normalised text"})
        rows.append({"step": "near duplicates", "action": d["action"], "found": d["near"],
                     "removed": d["near"] if d["action"] == "remove" else 0,
                     "settings": f"character {d['ngram']}-grams, Jaccard >= {d['threshold']}"})
    if "contamination" in f:
        c = f["contamination"]
        rows.append({"step": "overlap with eval items", "action": c["action"], "found": c["overlapping"],
                     "removed": c["removed"],
                     "settings": f"{c['n']}-grams, >= {c['threshold']} of an item's distinctive n-grams"})
    sel = f.get("selection", {})
    for reason, n in sel.get("reasons", {}).items():
        rows.append({"step": f"quality: {reason}", "action": "remove", "found": n, "removed": n, "settings": ""})
    return rows


def length_table(stats: dict, scale: str | int | None = None) -> list[dict]:
    """Per use case: items and length statistics of one subset (the largest by default)."""
    subsets = stats["subsets"]
    key = str(scale) if scale is not None else max((n for n in subsets if not is_mixture(n)),
                                                   key=lambda name: split_model(name)[1])
    rows = []
    for cat, s in subsets[key].get("by_category", {}).items():
        row = {"category": cat, "n": s["n"], **{f"chars_{k}": v for k, v in s["chars"].items()}}
        row.update({f"tokens_{k}": v for k, v in s.get("tokens", {}).items()})
        rows.append(row)
    return rows
