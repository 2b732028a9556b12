"""What the self-instruct notebook shows: kept and dropped per reason, examples, one dropped task per reason."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from helpers.selfinstruct.collector import REASON_TEXT, REASONS
from helpers.study.categories import CATEGORIES
from helpers.study.files import read_json, read_jsonl


def read_stats(study_dir: Path) -> dict | None:
    p = Path(study_dir) / "generated_stats.json"
    return read_json(p) if p.exists() else None


def reason_table(stats: dict | None) -> list[dict]:
    """One row per outcome: kept, then every drop reason with its count, share of parsed tasks and meaning."""
    if not stats:
        return []
    total = max(1, stats["tasks_parsed"])
    rows = [{"outcome": "kept", "tasks": stats["kept"], "share": round(stats["kept"] / total, 4), "meaning": ""}]
    rows += [{"outcome": f"dropped: {r}", "tasks": n, "share": round(n / total, 4), "meaning": REASON_TEXT[r]}
             for r, n in stats["dropped"].items()]
    return rows


def examples(study_dir: Path, per_category: int = 1) -> list[dict]:
    """The first kept items of every use case in ``generated.jsonl`` (for a look at what the teacher wrote)."""
    p = Path(study_dir) / "generated.jsonl"
    if not p.exists():
        return []
    seen, out = Counter(), []
    for r in read_jsonl(p):
        if seen[r["category"]] < per_category:
            seen[r["category"]] += 1
            out.append({k: r[k] for k in ("category", "instruction", "input", "output", "id")})
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(out, key=lambda r: order.get(r["category"], len(order)))


def dropped_examples(study_dir: Path, per_reason: int = 1) -> list[dict]:
    """The first dropped tasks of every reason in ``generated_dropped.jsonl``, in the order of ``REASONS``."""
    p = Path(study_dir) / "generated_dropped.jsonl"
    if not p.exists():
        return []
    seen, out = Counter(), []
    for r in read_jsonl(p):
        if seen[r["reason"]] < per_reason:
            seen[r["reason"]] += 1
            out.append({k: r.get(k, "") for k in ("reason", "instruction", "input", "output", "request")})
    return sorted(out, key=lambda r: REASONS.index(r["reason"]))
