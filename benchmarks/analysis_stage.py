"""The analysis stage on a 1,200-item eval set (12 use cases x 100 items, base + 4 scales): before and after.

The study is faked, judgments only (the analysis reads nothing else it needs): per use case a trend in log n
drawn at random, items that keep their difficulty across scales, binary scores for math and code and graded ones
for the others, so that the curve rule meets every case it has (flat, log-linear, saturating candidates).

Baseline: the stage as it was, one ``curve_fit`` per item resample for the curves (the leave-one-out share of the
saturating form and the thousand refits of the chosen form, ``curves.fit`` / ``curves.loo_rmse`` per row) and
``pandas.pivot_table`` for each items x models matrix. Ours: the same stage with every resample fitted at once
(``curves.fit_many`` / ``curves.loo_rmse_many``) and an unstack for the matrix. Both run ``write_results`` in this
process, n_boot 1000 as the default study; the figure is the median of ``--rounds`` rounds, alternating. The
verdicts of the two (curve form per use case, claims and shapes against the paper, items needed) are compared, and
the largest difference between their curves' interval bounds (rise, forecast, ceiling) is printed.

    python benchmarks/analysis_stage.py            # prints one JSON line at the end
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from helpers.analysis import changes, curves, paper, stage, trends
from helpers.study.categories import CATEGORIES
from helpers.study.files import write_json, write_jsonl

MODELS = ["base", "64", "192", "320", "640"]


def fake_study(root: Path, n_items: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    ev = [{"id": f"{c}-{i}", "category": c, "question": "q", "reference": "r", "check": None}
          for c in CATEGORIES for i in range(n_items)]
    write_jsonl(root / "eval.jsonl", ev)
    slope = {c: rng.normal(0.05, 0.08) for c in CATEGORIES}
    bend = {c: rng.uniform(0, 0.1) for c in CATEGORIES}
    item = {c: rng.normal(0, 0.2, n_items) for c in CATEGORIES}
    for m in MODELS:
        rows = []
        for c in CATEGORIES:
            x = np.log10(int(m) / 64) if m != "base" else 0.0
            level = 0.05 if m == "base" else 0.4 + slope[c] * x - bend[c] * x * x
            p = np.clip(level + item[c], 0, 1)
            s = (rng.random(n_items) < p).astype(float) if c in ("math", "code") else \
                np.clip(p + rng.normal(0, 0.15, n_items), 0, 1)
            rows += [{"id": f"{c}-{i}", "run": 0, "score": float(v), "raw": "", "judge": "offline", "usage": {}}
                     for i, v in enumerate(s)]
        write_jsonl(root / "judgments" / f"{m}.jsonl", rows)
        write_jsonl(root / "answers" / f"{m}.jsonl", [{"id": e["id"], "category": e["category"], "answer": "a"}
                                                       for e in ev])
    write_json(root / "data_stats.json", {"subsets": {}})
    return root


def _per_row_fit(form, n, Y, n_max, p0=None):
    fits = [curves.fit(form, n, y, n_max, p0) for y in np.atleast_2d(Y)]
    k = next((len(p) for p in fits if p is not None), 3)
    return np.array([p if p is not None else np.full(k, np.nan) for p in fits]).reshape(-1, k)


def _per_row_loo(form, n, Y, n_max, p0=None):
    return np.array([curves.loo_rmse(form, n, y, n_max, p0) for y in np.atleast_2d(Y)])


def _pivot(items, models):
    return items.pivot_table(index="id", columns="model", values="score", aggfunc="first",
                             dropna=False).reindex(columns=models)


@contextmanager
def baseline():
    """The stage as it was: per-row curve fits, pivot_table matrices."""
    saved = [(curves, "fit_many", _per_row_fit), (curves, "loo_rmse_many", _per_row_loo)]
    saved += [(mod, "item_matrix", _pivot) for mod in (changes, curves, paper, trends)]
    before = [(mod, name, getattr(mod, name)) for mod, name, _ in saved]
    for mod, name, new in saved:
        setattr(mod, name, new)
    try:
        yield
    finally:
        for mod, name, old in before:
            setattr(mod, name, old)


def verdicts(res: dict) -> dict:
    return {"curves": [(c["category"], c["verdict"]) for c in res["curves"]],
            "claims": [(c["category"], c["verdict"]) for c in res["paper_comparison"]],
            "shapes": [(c["category"], c["verdict"]) for c in res["paper_shapes"]],
            "items_needed": [(r["category"], r["verdict"], r["needed"]) for r in res["items_needed"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100, help="eval items per use case (default 100: 1,200 in all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = fake_study(Path(tmp) / "s", args.items)
        times: dict[str, list[float]] = {"baseline": [], "ours": []}
        got = {}
        for _ in range(args.rounds):
            for mode in ("baseline", "ours"):
                t = time.perf_counter()
                if mode == "baseline":
                    with baseline():
                        got[mode] = stage.write_results(root, MODELS, n_boot=args.n_boot)
                else:
                    got[mode] = stage.write_results(root, MODELS, n_boot=args.n_boot)
                times[mode].append(time.perf_counter() - t)
                print(f"{mode}: {times[mode][-1]:.1f} s", file=sys.stderr)
    b, o = (statistics.median(times[m]) for m in ("baseline", "ours"))
    vb, vo = verdicts(got["baseline"]), verdicts(got["ours"])
    bounds = ("rise_ci_low", "rise_ci_high", "forecast_ci_low", "forecast_ci_high", "ceiling_ci_low", "ceiling_ci_high")
    diff = max((abs(a[k] - c[k]) for a, c in zip(got["baseline"]["curves"], got["ours"]["curves"]) for k in bounds
                if a[k] is not None and c[k] is not None), default=0.0)
    print(json.dumps({"benchmark": "analysis_stage", "eval_items": 12 * args.items, "models": len(MODELS),
                      "n_boot": args.n_boot, "rounds": args.rounds, "baseline_s": round(b, 2), "ours_s": round(o, 2),
                      "ratio": round(b / o, 2), "same_verdicts": {k: vb[k] == vo[k] for k in vb},
                      "max_interval_bound_diff": round(diff, 4)}))


if __name__ == "__main__":
    main()
