"""Self-instruct throughput: many requests in flight (ours) vs one at a time (BELLE/Alpaca), and the
filter + de-duplication step alone up to 1,000,000 kept items.

Requests: the stage itself (``helpers.selfinstruct.stage.run``) against the local server of
tests/fake_openai.py (a real HTTP server on 127.0.0.1 spoken to by the real ``openai`` client) in
teacher mode: every reply is a canned numbered list of ``--tasks`` Chinese tasks
(``fake_openai.teacher_reply``: the built-in suite's generators, the layouts and faults real
teachers show, one reply in four cut off at the token limit) sent after ``--delay`` seconds (1 s).
Ours: ``--concurrency`` (64) in flight for ``--requests`` requests; the sustained rate counts the
requests that reached the server after the first and before the last 5 s. Baseline: the same
stage with concurrency 1, as BELLE's and Alpaca's scripts send them, on ``--sample`` requests.

Filter + dedup alone: ``helpers.selfinstruct.collector.Collector.process_many`` (parse, label, filters, MinHash
LSH against the seeds and everything kept, appending the output lines to files) on teacher replies
made in-process, ``--concurrency`` replies at a time as the stage takes the replies that are ready,
until ``--kept`` items are kept; only the time inside ``process_many`` counts (making the canned
text does not). Its tasks/s, in windows of 50,000 tasks and at the end where the index
is largest, must stay above what the requests deliver: requests/s x tasks per request.

Ends with one JSON line; ``ratio`` = our requests/s / the baseline's.

    python benchmarks/selfinstruct.py [--requests 3000] [--kept 1000000]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fake_openai import FakeOpenAI, teacher_reply  # noqa: E402

from helpers import selfinstruct  # noqa: E402
from helpers.openai_client import JsonlAppender  # noqa: E402
from helpers.selfinstruct.collector import Collector  # noqa: E402
from helpers.selfinstruct.seeds import load_seed_tasks  # noqa: E402
from helpers.study.config import StudyConfig  # noqa: E402

ENV = "BENCH_TEACHER_KEY"


def config(base_url: str | None, concurrency: int, requests: int, tasks: int, target: int = 10**8) -> StudyConfig:
    return StudyConfig.model_validate({
        "study": "bench", "scales": [1], "data": {"source": "generate"},
        "selfinstruct": {"model": "fake-teacher", "base_url": base_url, "api_key_env": ENV, "target": target,
                         "tasks_per_request": tasks, "concurrency": concurrency, "max_requests": requests,
                         "timeout_s": 60}})


def timed_stage(cfg: StudyConfig, server: FakeOpenAI) -> tuple[float, dict, float]:
    """(seconds, stats, sustained requests/s) of one fresh run of the stage."""
    with tempfile.TemporaryDirectory(prefix="selfinstruct-bench-") as d:
        server.reset_counts()
        t0 = time.perf_counter()
        stats = selfinstruct.run(cfg, Path(d), progress=False)
        seconds = time.perf_counter() - t0
    arrivals = sorted(t for ts in server.times.values() for t in ts)
    lo, hi = arrivals[0] + 5, arrivals[-1] - 5
    inside = sum(lo <= t <= hi for t in arrivals)
    sustained = inside / (hi - lo) if hi - lo > 10 else len(arrivals) / seconds
    return seconds, stats, sustained


def filter_dedup(target: int, tasks: int, batch: int, window: int = 50_000) -> dict:
    """Collector.process_many alone on in-process teacher replies until ``target`` items are kept, ``batch``
    replies at a time (the stage takes every reply that is ready, up to 2 x concurrency)."""
    cfg = config(None, 1, 1, tasks, target)
    with tempfile.TemporaryDirectory(prefix="selfinstruct-filter-") as d:
        outs = [JsonlAppender(Path(d) / name) for name in ("kept.jsonl", "dropped.jsonl", "ledger.jsonl")]
        c = Collector(cfg, load_seed_tasks(cfg), target, *outs)
        busy, index, windows = 0.0, 0, []
        mark = (0, 0.0)  # (tasks, busy seconds) at the start of the window
        t_start = time.perf_counter()
        while c.kept < target:
            replies = [(i, *teacher_reply("benchmark request", i, n=tasks, truncate_every=4), None, False)
                       for i in range(index, index + batch)]
            t = time.perf_counter()
            index += c.process_many(replies)
            busy += time.perf_counter() - t
            if c.parsed - mark[0] >= window:
                windows.append(((c.parsed - mark[0]) / (busy - mark[1]), c.kept))
                mark = (c.parsed, busy)
                print(f"  filter+dedup: {c.kept:,} kept of {c.parsed:,} tasks, this window "
                      f"{windows[-1][0]:,.0f} tasks/s, overall {c.parsed / busy:,.0f} tasks/s", flush=True)
        if c.parsed > mark[0]:
            windows.append(((c.parsed - mark[0]) / (busy - mark[1]), c.kept))
        wall = time.perf_counter() - t_start
        for o in outs:
            o.close()
    return {"kept": c.kept, "tasks": c.parsed, "replies": index, "seconds": busy, "wall_s": wall,
            "dropped": {k: v for k, v in c.summary()["dropped"].items() if v}, "windows": windows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=3000, help="requests in our run")
    ap.add_argument("--sample", type=int, default=8, help="requests in the one-at-a-time baseline")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--delay", type=float, default=1.0, help="seconds the server takes per reply")
    ap.add_argument("--tasks", type=int, default=20, help="tasks per request")
    ap.add_argument("--kept", type=int, default=1_000_000, help="kept items in the filter + dedup step")
    args = ap.parse_args()

    os.environ[ENV] = "sk-bench-local"
    responder = functools.partial(teacher_reply, n=args.tasks, truncate_every=4)
    with FakeOpenAI(api_key=os.environ[ENV], delay=args.delay, lifetime_s=3600) as server:
        server.responder = responder
        base_s, base, _ = timed_stage(config(server.base_url, 1, args.sample, args.tasks), server)
        print(f"baseline (one at a time): {base['requests']['sent_now']} requests in {base_s:.1f} s", flush=True)
        ours_s, ours, sustained = timed_stage(config(server.base_url, args.concurrency, args.requests, args.tasks),
                                              server)
        print(f"ours ({args.concurrency} in flight): {ours['requests']['sent_now']} requests in {ours_s:.1f} s, "
              f"sustained {sustained:.1f} requests/s; {ours['kept']:,} kept of {ours['tasks_parsed']:,} tasks", flush=True)
    n_base, n_ours = base["requests"]["processed"], ours["requests"]["processed"]
    if n_ours != args.requests or n_base != args.sample or ours["requests"]["failed"]:
        raise SystemExit(f"unexpected: {n_ours} of {args.requests} requests processed, {n_base} of {args.sample} in the "
                         f"baseline, {ours['requests']['failed']} failed")
    ours_rps, base_rps = n_ours / ours_s, n_base / base_s
    needed = sustained * ours["tasks_parsed"] / n_ours  # tasks/s the requests deliver

    print(f"filter + dedup alone up to {args.kept:,} kept items (needed: {needed:,.0f} tasks/s):", flush=True)
    f = filter_dedup(args.kept, args.tasks, args.concurrency)
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    min_window = min(r for r, _ in f["windows"])
    last_window = f["windows"][-1][0]
    print(json.dumps({
        "benchmark": "selfinstruct",
        "server_delay_s": args.delay, "tasks_per_request": args.tasks,
        "ours_concurrency": args.concurrency, "ours_requests": n_ours, "ours_s": round(ours_s, 2),
        "ours_requests_per_s": round(ours_rps, 1), "ours_sustained_requests_per_s": round(sustained, 1),
        "ours_kept": ours["kept"], "ours_tasks": ours["tasks_parsed"],
        "baseline": "same stage, concurrency 1 (one request at a time, as BELLE's and Alpaca's scripts)",
        "baseline_requests": n_base, "baseline_s": round(base_s, 2), "baseline_requests_per_s": round(base_rps, 3),
        "ratio": round(ours_rps / base_rps, 1),
        "goal_requests_per_s": 50,
        "filter_dedup_kept": f["kept"], "filter_dedup_tasks": f["tasks"], "filter_dedup_s": round(f["seconds"], 1),
        "filter_dedup_tasks_per_s": round(f["tasks"] / f["seconds"]), "filter_dedup_kept_per_s": round(f["kept"] / f["seconds"]),
        "filter_dedup_min_window_tasks_per_s": round(min_window), "filter_dedup_last_window_tasks_per_s": round(last_window),
        "filter_dedup_dropped": f["dropped"],
        "needed_tasks_per_s": round(needed), "filter_dedup_headroom": round(min_window / needed, 2),
        "peak_rss_gib": round(rss_gib, 2),
        "goal_met": bool(sustained >= 50 and min_window > needed),
    }))


if __name__ == "__main__":
    main()
