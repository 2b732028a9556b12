"""Code sandbox cost: the default study's code items scored without OS isolation vs in it.

The items: ``helpers.data.suite.build_suite`` with the default config's seed and eval size, use case
"code", each answered by its reference solution (every one passes all its tests).

Baseline: the guard as it was before OS isolation (``python -I -S`` child, same rlimits and
Python-level guard, no seccomp filter: the runner's seccomp part swapped out). Also timed:
``judge.code_execution: unisolated`` (the baseline plus the seccomp filter: importing ctypes and
installing it). Ours: ``isolated`` (bubblewrap here, else unshare namespaces), and unshare namespaces
alone when they work too. Rounds alternate the modes so that load on the machine hits each alike; the
figure per mode is the median over rounds of the mean time per item. The one-off probe that finds the
isolation (once per process) is reported apart.

    python benchmarks/code_sandbox.py            # prints one JSON line at the end
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from helpers.data.suite import build_suite  # noqa: E402
from helpers.judge import code, sandbox  # noqa: E402
from helpers.judge.offline import score_answer  # noqa: E402
from helpers.study.loading import load_config  # noqa: E402


def per_item(items: list[dict], setting: str) -> tuple[float, list]:
    before = code._SECCOMP
    if setting == "baseline":
        code._SECCOMP, setting = "_SECCOMP_ON = False", "unisolated"
    try:
        t = time.perf_counter()
        scores = [score_answer(it, it["reference"], code_execution=setting)[0] for it in items]
        return (time.perf_counter() - t) / len(items), scores
    finally:
        code._SECCOMP = before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    cfg = load_config(args.config)
    _, ev = build_suite(cfg.seed, 0, cfg.data.eval_per_category)
    items = [e for e in ev if e["category"] == "code"]
    t = time.perf_counter()
    kind = sandbox.isolation()
    probe_s = time.perf_counter() - t
    if kind is None:
        print("no OS isolation on this machine (install bubblewrap): nothing to compare", file=sys.stderr)
    modes = {"baseline": "baseline", "unisolated": "unisolated"} | ({"isolated": "isolated"} if kind else {})
    unshare = kind == "bubblewrap" and sandbox.available("unshare")
    times: dict[str, list[float]] = {m: [] for m in modes}
    if unshare:
        times["unshare"] = []
    scores: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, setting in modes.items():
            s, scores[name] = per_item(items, setting)
            times[name].append(s)
        if unshare:
            orig = sandbox.isolation  # unshare namespaces as if bubblewrap were missing
            sandbox.isolation = lambda: "unshare"
            try:
                s, scores["unshare"] = per_item(items, "isolated")
            finally:
                sandbox.isolation = orig
            times["unshare"].append(s)
    med = {m: statistics.median(v) for m, v in times.items()}
    for m, v in med.items():
        passed = sum(x == 1.0 for x in scores[m])
        print(f"{m:>9}: {v * 1000:6.1f} ms per item (median of {args.rounds} rounds over {len(items)} items), "
              f"{passed}/{len(items)} pass")
    ratio = med["isolated"] / med["baseline"] if "isolated" in med else None
    same = all(scores[m] == scores["baseline"] for m in scores)
    print(json.dumps({
        "benchmark": "code_sandbox", "items": len(items), "rounds": args.rounds, "isolation": kind,
        "probe_s": round(probe_s, 3),
        "baseline_ms_per_item": round(med["baseline"] * 1000, 1),
        "unisolated_ms_per_item": round(med["unisolated"] * 1000, 1),
        "isolated_ms_per_item": round(med["isolated"] * 1000, 1) if "isolated" in med else None,
        "unshare_ms_per_item": round(med["unshare"] * 1000, 1) if "unshare" in med else None,
        "ratio": round(ratio, 2) if ratio else None, "same_scores": same,
        "passed": {m: sum(x == 1.0 for x in v) for m, v in scores.items()},
        "goal_met": bool(ratio is not None and ratio <= 2 and same),
    }))


if __name__ == "__main__":
    main()
