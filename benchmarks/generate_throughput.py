"""Generation throughput: batched answers (helpers.generate.answers) vs one prompt at a time.

The same 64 eval prompts of the built-in suite (``helpers.data.suite.build_suite``, seed 0,
taken round-robin over the 12 use cases) are answered by the embedded base model
(Gemma 3 270M, fp32, greedy, ``--max-new-tokens`` each) twice in this one process:
baseline one prompt at a time (``answer_batch`` with a batch of one), ours in the
length-sorted batches of ``helpers.generate.answers.plan_batches`` (``--batch-size``).
Tokens are the new tokens of the answers (padding excluded); tokens/s = tokens / wall
seconds of the loop. One warm-up generation runs first. Takes a few minutes on 2 cores.

    python benchmarks/generate_throughput.py          # prints one JSON line at the end
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from helpers.data.suite import build_suite
from helpers.generate.answers import answer_batch, plan_batches
from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig
from helpers.study.models import load_for_generation


def prompts(n: int) -> list[dict]:
    per_cat = -(-n // len(CATEGORIES))
    _, items = build_suite(0, 24, per_cat)
    by_cat = {c: [it for it in items if it["category"] == c] for c in CATEGORIES}
    ordered = [by_cat[c][i] for i in range(per_cat) for c in CATEGORIES]
    return ordered[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = StudyConfig.model_validate({
        "study": "bench", "scales": [4], "data": {"pool_size": 10}, "model": {"base": "embedded"},
        "generate": {"batch_size": args.batch_size, "max_new_tokens": {"default": args.max_new_tokens}}})
    items = prompts(args.prompts)
    with tempfile.TemporaryDirectory() as d:
        model, tok = load_for_generation(cfg, "base", Path(d))
    model.eval()
    tok.padding_side = "left"
    answer_batch(model, tok, items[:2], cfg)  # warm-up

    t0 = time.perf_counter()
    seq = [row for it in items for row in answer_batch(model, tok, [it], cfg)]
    seq_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    batches = plan_batches(items, tok, cfg)
    bat = [row for b in batches for row in answer_batch(model, tok, b, cfg)]
    bat_s = time.perf_counter() - t0

    seq_tok, bat_tok = sum(r["new_tokens"] for r in seq), sum(r["new_tokens"] for r in bat)
    same = {r["id"]: r["answer"] for r in seq}
    identical = sum(same[r["id"]] == r["answer"] for r in bat)
    seq_tps, bat_tps = seq_tok / seq_s, bat_tok / bat_s
    print(json.dumps({
        "benchmark": "generate_throughput",
        "model": "embedded Gemma 3 270M (fp32, CPU)", "threads": torch.get_num_threads(),
        "prompts": len(items), "max_new_tokens": args.max_new_tokens,
        "baseline": "one prompt at a time",
        "baseline_s": round(seq_s, 1), "baseline_tokens": seq_tok, "baseline_tokens_per_s": round(seq_tps, 1),
        "ours": f"length-sorted batches of {args.batch_size} ({len(batches)} batches)",
        "ours_s": round(bat_s, 1), "ours_tokens": bat_tok, "ours_tokens_per_s": round(bat_tps, 1),
        "identical_answers": f"{identical}/{len(items)}",
        "ratio": round(bat_tps / seq_tps, 2),
        "goal_ratio": 5,
    }))


if __name__ == "__main__":
    main()
