"""Judge throughput: our concurrent LLM judge vs one request at a time, against a local server.

The server (tests/fake_openai.py, a real HTTP server on 127.0.0.1 spoken to by the real
``openai`` client) answers every request after ``--delay`` seconds (default 200 ms, a
fast hosted model). Ours: ``helpers.judge.stage.judge_answers`` with ``judge.kind: openai`` on
1,000 eval items of the built-in suite x 3 runs (3,000 requests) at ``--concurrency``.
Baseline: the same code with concurrency 1 (one request at a time) on a sample of
``--sample`` requests, extrapolated linearly to 3,000 (the output says so). Both run
in this one process; each uses a fresh study folder, so no request comes from the cache.

    python benchmarks/judge_throughput.py            # prints one JSON line at the end
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

from helpers.data.suite import build_suite  # noqa: E402
from helpers.judge.stage import judge_answers  # noqa: E402
from helpers.study.config import StudyConfig  # noqa: E402
from helpers.study.files import read_jsonl, write_jsonl  # noqa: E402

ENV = "BENCH_JUDGE_KEY"


def make_study(root: Path, items: list[dict]) -> Path:
    sd = root / "data" / "bench"
    write_jsonl(sd / "eval.jsonl", items)
    write_jsonl(sd / "answers" / "base.jsonl",
                [{"id": it["id"], "category": it["category"], "answer": it["reference"]} for it in items])
    return sd


def config(base_url: str, concurrency: int, runs: int) -> StudyConfig:
    return StudyConfig.model_validate({
        "study": "bench", "scales": [4], "data": {"pool_size": 10},
        "judge": {"kind": "openai", "model": "fake-judge", "base_url": base_url, "api_key_env": ENV,
                  "runs": runs, "concurrency": concurrency, "timeout_s": 30}})


def timed_judge(cfg: StudyConfig, items: list[dict], server: FakeOpenAI) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory(prefix="judge-bench-") as d:
        sd = make_study(Path(d), items)
        server.reset_counts()
        t0 = time.perf_counter()
        rows = read_jsonl(judge_answers(cfg, "base", sd))
        seconds = time.perf_counter() - t0
    nulls = sum(r["score"] is None for r in rows)
    return seconds, server.total, nulls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--sample", type=int, default=60, help="requests in the sequential baseline sample")
    args = ap.parse_args()

    os.environ[ENV] = "sk-bench-local"
    per_cat = -(-args.items // 12)
    _, items = build_suite(0, 24, per_cat)
    items = items[: args.items]
    n_requests = len(items) * args.runs
    with FakeOpenAI(api_key=os.environ[ENV], delay=args.delay, lifetime_s=1800) as server:
        # baseline: one request at a time, on a sample (items spread over the use cases)
        step = max(1, len(items) // max(1, args.sample // args.runs))
        sample_items = items[::step][: max(1, args.sample // args.runs)]
        base_s, base_n, _ = timed_judge(config(server.base_url, 1, args.runs), sample_items, server)
        # ours: everything, concurrent
        ours_s, ours_n, nulls = timed_judge(config(server.base_url, args.concurrency, args.runs), items, server)
    if ours_n != n_requests or nulls:
        raise SystemExit(f"unexpected: {ours_n} requests for {n_requests} judgments, {nulls} null")
    base_extrapolated = base_s / base_n * n_requests
    print(json.dumps({
        "benchmark": "judge_throughput",
        "server_delay_s": args.delay,
        "items": len(items), "runs": args.runs, "requests": n_requests,
        "ours_concurrency": args.concurrency,
        "ours_s": round(ours_s, 2),
        "ours_requests_per_s": round(n_requests / ours_s, 1),
        "baseline": "same judge, concurrency 1",
        "baseline_sample_requests": base_n,
        "baseline_sample_s": round(base_s, 2),
        "baseline_requests_per_s": round(base_n / base_s, 2),
        "baseline_s_extrapolated": round(base_extrapolated, 1),
        "baseline_note": f"measured on {base_n} requests, extrapolated linearly to {n_requests}",
        "ratio": round(base_extrapolated / ours_s, 1),
        "goal_ratio": 20,
    }))


if __name__ == "__main__":
    main()
