"""Generation throughput: batched answers (helpers.generate.stage) vs one prompt at a time.

The same 64 eval prompts of the built-in suite (``helpers.data.suite.build_suite``, seed 0,
taken round-robin over the 12 use cases) are answered by the embedded base model
(Gemma 3 270M, fp32, greedy, ``--max-new-tokens`` each) twice in this one process:
baseline one prompt at a time (``answer_batch`` with a batch of one), ours in the
length-sorted batches of ``helpers.generate.hf.plan_batches`` (``--batch-size``).
Tokens are the new tokens of the answers (padding excluded); tokens/s = tokens / wall
seconds of the loop. One warm-up generation runs first. Takes a few minutes on 2 cores.

With ``--vllm`` the same prompts are also answered by the vllm backend (vLLM's offline engine from
``make vllm-env``'s ``.venv-vllm`` or ``$STUDY_VLLM_PYTHON``; tokens/s of generation, the engine's
start reported apart) and by the server backend against a vLLM OpenAI server started here on
127.0.0.1 (tokens/s over the requests' wall time, ``--batch-size`` requests in flight), each with
its ratio to hf one at a time and to hf batches and its agreement with hf's batched answers.

With ``--vllm-engines N`` it measures ``generate.vllm.engines`` instead (and nothing else): the same prompts
through the vllm backend with 1 engine (baseline) and with N engines side by side (ours; on the CPU each engine
bound to its share of the cores, on GPUs one per GPU; ``--gpu-memory-utilization`` split between them), each in
a fresh study folder. tokens/s = new tokens / generation seconds, where the generation seconds of N engines are
the longest engine's (they generate side by side; each engine's start is reported apart, as is the wall time of
the whole call). The answers of both are compared (they should be identical). Needs ``make vllm-env`` (or
``$STUDY_VLLM_PYTHON``) and a quiet machine.

    python benchmarks/generate_throughput.py          # prints one JSON line at the end
    python benchmarks/generate_throughput.py --vllm   # + vllm and server backends (about 5 more minutes)
    python benchmarks/generate_throughput.py --vllm-engines 2 --prompts 120   # 1 vs 2 vLLM engines
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

from helpers.data.suite import build_suite
from helpers.generate.hf import answer_batch, plan_batches
from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.models import base_model_path, load_for_generation


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
    ap.add_argument("--vllm", action="store_true", help="also the vllm and server backends (needs make vllm-env)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3, help="vLLM's share of memory (CPU: of RAM)")
    ap.add_argument("--vllm-engines", type=int, default=None, metavar="N",
                    help="instead of the above: the vllm backend with 1 engine against N engines (needs make vllm-env)")
    args = ap.parse_args()
    if args.vllm_engines is not None:
        if args.vllm_engines < 2:
            raise SystemExit("--vllm-engines: at least 2 (1 engine is the baseline)")
        print(json.dumps(engines_figures(args, prompts(args.prompts))))
        return

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
    extra = vllm_figures(args, cfg, items, {r["id"]: r["answer"] for r in bat}, seq_tps, bat_tps) if args.vllm else {}
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
        **extra,
    }))


def engines_figures(args, items: list[dict]) -> dict:
    """The vllm backend with 1 engine (baseline) and ``args.vllm_engines`` engines (ours) on ``items``."""
    from helpers.generate.vllm_backend import engine_version, vllm_answers, vllm_python

    runs = {}
    for n in (1, args.vllm_engines):
        cfg = StudyConfig.model_validate({
            "study": "bench", "scales": [4], "data": {"pool_size": 10}, "model": {"base": "embedded"},
            "generate": {"backend": "vllm", "batch_size": args.batch_size, "max_new_tokens": {"default": args.max_new_tokens},
                         "vllm": {"engines": n, "gpu_memory_utilization": args.gpu_memory_utilization / n,
                                  "max_model_len": 1024}}})
        with tempfile.TemporaryDirectory() as d:
            stats: list[dict] = []
            t0 = time.perf_counter()
            tokens = vllm_answers(cfg, {"base": items}, Path(d), stats)
            wall = time.perf_counter() - t0
            answers = {r["id"]: r["answer"] for r in read_jsonl(Path(d) / "answers" / "base.jsonl")}
        gen = max(s["seconds"] for s in stats)
        runs[n] = {"tokens": tokens, "generation_s": gen, "wall_s": round(wall, 1), "tokens_per_s": round(tokens / gen, 1),
                   "engine_start_s": [s["engine_start_s"] for s in stats], "answers": answers}
    one, many = runs[1], runs[args.vllm_engines]
    same = sum(many["answers"].get(i) == a for i, a in one["answers"].items())
    return {
        "benchmark": "vllm_engines", "engine": engine_version(vllm_python()),
        "model": "embedded Gemma 3 270M (vLLM, greedy)", "cpus": len(os.sched_getaffinity(0)),
        "prompts": len(items), "max_new_tokens": args.max_new_tokens, "max_num_seqs": args.batch_size,
        "baseline": "1 engine", **{f"baseline_{k}": v for k, v in one.items() if k != "answers"},
        "ours": f"{args.vllm_engines} engines side by side", **{f"ours_{k}": v for k, v in many.items() if k != "answers"},
        "identical_answers": f"{same}/{len(one['answers'])}",
        "ratio": round(many["tokens_per_s"] / one["tokens_per_s"], 2),
        "wall_ratio": round(one["wall_s"] / many["wall_s"], 2),
    }


def vllm_figures(args, cfg: StudyConfig, items: list[dict], hf: dict, seq_tps: float, bat_tps: float) -> dict:
    """tokens/s of the vllm backend and of the server backend against a vLLM server, with their ratios."""
    from helpers.generate.stage import generate_answers
    from helpers.generate.vllm_backend import engine_version, serve_command, vllm_answers, vllm_python

    python = vllm_python()
    out = {"engine": engine_version(python)}

    def same(path: Path) -> str:
        rows = read_jsonl(path)
        return f"{sum(hf[r['id']] == r['answer'] for r in rows)}/{len(rows)}"

    vcfg = cfg.model_copy(update={"generate": cfg.generate.model_validate({
        **cfg.generate.model_dump(exclude={"vllm", "server"}), "backend": "vllm",
        "vllm": {"gpu_memory_utilization": args.gpu_memory_utilization, "max_model_len": 1024}})})
    with tempfile.TemporaryDirectory() as d:
        stats: list[dict] = []
        t0 = time.perf_counter()
        tokens = vllm_answers(vcfg, {"base": items}, Path(d), stats)
        wall = time.perf_counter() - t0
        tps = stats[0]["tokens"] / stats[0]["seconds"]
        out.update(vllm_s=stats[0]["seconds"], vllm_engine_start_s=stats[0]["engine_start_s"], vllm_wall_s=round(wall, 1),
                   vllm_tokens=tokens, vllm_tokens_per_s=round(tps, 1), vllm_ratio_to_one_at_a_time=round(tps / seq_tps, 2),
                   vllm_ratio_to_batches=round(tps / bat_tps, 2), vllm_identical_to_hf=same(Path(d) / "answers" / "base.jsonl"))

    with socket.socket() as sock:  # a free port for the server
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("STUDY_BENCH_KEY", "local")
    cmd = serve_command(python, base_model_path(cfg), "base", {}, port=port,
                        gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=1024)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the vLLM server exited ({proc.returncode}): {' '.join(cmd)}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=5).close()
                break
            except OSError:
                time.sleep(2)
        up = time.perf_counter() - t0
        g = cfg.generate.model_dump(exclude={"vllm", "server", "batch_size"})
        scfg = cfg.model_copy(update={"generate": cfg.generate.model_validate({
            **g, "backend": "server", "server": {"base_url": url, "api_key_env": "STUDY_BENCH_KEY",
                                                 "concurrency": args.batch_size}})})
        with tempfile.TemporaryDirectory() as d:
            write_jsonl(Path(d) / "eval.jsonl", items)
            t0 = time.perf_counter()
            path = generate_answers(scfg, "base", Path(d))
            wall = time.perf_counter() - t0
            tokens = sum(r["new_tokens"] for r in read_jsonl(path))
            out.update(server_up_s=round(up, 1), server_s=round(wall, 1), server_tokens=tokens,
                       server_tokens_per_s=round(tokens / wall, 1), server_ratio_to_one_at_a_time=round(tokens / wall / seq_tps, 2),
                       server_ratio_to_batches=round(tokens / wall / bat_tps, 2), server_identical_to_hf=same(path))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    return out


if __name__ == "__main__":
    main()
