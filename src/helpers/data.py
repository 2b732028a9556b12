"""Stage 01: the instruction pool, the eval set and the nested training subsets.

Subsets are prefixes of one seeded permutation of the pool, so every smaller
scale is contained in every larger one (the paper's nested 0.2M ⊂ 0.6M ⊂ 1M ⊂ 2M)
and the same seed always gives the same files.
"""
from __future__ import annotations

import random
import statistics
from collections import Counter
from pathlib import Path

from helpers.config import StudyConfig, resolve
from helpers.files import read_jsonl, write_json, write_jsonl

TRAIN_FIELDS = ("instruction", "input", "output")


def load_pool(cfg: StudyConfig) -> tuple[list[dict], list[dict]]:
    """(pool, eval) from the configured source."""
    if cfg.data.source == "builtin":
        from helpers.tasks import build_suite

        return build_suite(cfg.seed, cfg.data.pool_size, cfg.data.eval_per_category)
    pool = []
    for spec in cfg.data.train_files:
        pool.extend(load_train(spec, start=len(pool)))
    if not cfg.data.eval_file:
        raise ValueError("data.eval_file: required when data.source is not builtin")
    return pool, load_eval(resolve(cfg.data.eval_file))


def load_train(spec: str, start: int = 0) -> list[dict]:
    """Alpaca-style ``{instruction, input, output}`` or BELLE's ``{input, target}`` records.

    ``spec`` is a local JSON/JSONL/parquet file or a Hugging Face dataset name; both go
    through ``datasets.load_dataset`` so the paper config's hub datasets and local
    files share one code path.
    """
    import datasets

    local = resolve(spec)
    if local.exists():
        kind = "parquet" if local.suffix == ".parquet" else "json"
        ds = datasets.load_dataset(kind, data_files=str(local), split="train")
    else:
        ds = datasets.load_dataset(spec, split="train")
    out = []
    for i, r in enumerate(ds):
        if "target" in r and "output" not in r:
            rec = {"instruction": r.get("input") or "", "input": "", "output": r.get("target") or ""}
        else:
            rec = {k: r.get(k) or "" for k in TRAIN_FIELDS}
        if not rec["instruction"].strip() or not rec["output"].strip():
            raise ValueError(f"{spec}: record {i}: empty instruction or output")
        rec = {"id": str(r.get("id") or f"pool-{start + i:07d}"), **rec, "category": r.get("category") or "unlabelled"}
        out.append(rec)
    return out


def load_eval(path: Path) -> list[dict]:
    """BELLE's eval format ``{question, class, std_answer}`` or ours ``{id, category, question, reference}``."""
    from helpers import CATEGORIES

    items = []
    for i, r in enumerate(read_jsonl(path), start=1):
        category = str(r.get("category") or r.get("class") or "").strip().lower().replace(" ", "_")
        if category not in CATEGORIES:
            raise ValueError(f"{path}: line {i}: unknown category {category!r}")
        if not str(r.get("question") or "").strip():
            raise ValueError(f"{path}: line {i}: empty question")
        items.append({"id": str(r.get("id") or f"eval-{i:05d}"), "category": category,
                      "question": r["question"], "reference": r.get("reference", r.get("std_answer", "")) or "",
                      **({"check": r["check"]} if r.get("check") else {})})
    return items


def nested_subsets(pool: list[dict], scales: list[int], seed: int) -> dict[int, list[dict]]:
    if scales[-1] > len(pool):
        raise ValueError(f"scales: the largest scale {scales[-1]} exceeds the pool of {len(pool)} items")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    return {s: [pool[i] for i in order[:s]] for s in scales}


def check_contamination(pool: list[dict], items: list[dict]) -> None:
    """Stops the study if an eval question appears verbatim in the training pool."""
    from helpers.prompt import question

    seen = {question(r["instruction"], r.get("input", "")).strip() for r in pool}
    leaked = [it["id"] for it in items if it["question"].strip() in seen]
    if leaked:
        raise ValueError(f"contamination: {len(leaked)} eval questions appear verbatim in the pool: {leaked[:10]}")


def subset_stats(records: list[dict]) -> dict:
    lengths = [len(r["instruction"]) + len(r.get("input", "")) + len(r["output"]) for r in records]
    return {
        "n": len(records),
        "categories": dict(sorted(Counter(r["category"] for r in records).items())),
        "chars": {"mean": round(statistics.fmean(lengths), 1), "median": statistics.median(lengths),
                  "max": max(lengths)},
    }


def prepare(cfg: StudyConfig, study_dir: Path) -> dict:
    """Write pool.jsonl, eval.jsonl, subsets/<scale>.jsonl and data_stats.json; return the stats."""
    pool, items = load_pool(cfg)
    check_contamination(pool, items)
    subsets = nested_subsets(pool, cfg.scales, cfg.seed)
    write_jsonl(study_dir / "pool.jsonl", pool)
    write_jsonl(study_dir / "eval.jsonl", items)
    for scale, records in subsets.items():
        write_jsonl(study_dir / "subsets" / f"{scale}.jsonl", records)
    stats = {
        "source": cfg.data.source, "seed": cfg.seed, "pool": subset_stats(pool),
        "eval": {"n": len(items), "categories": dict(sorted(Counter(i["category"] for i in items).items()))},
        "subsets": {str(s): subset_stats(r) for s, r in subsets.items()},
    }
    write_json(study_dir / "data_stats.json", stats)
    return stats
