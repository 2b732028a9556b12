"""Generation throughput: today's greedy decode (the baseline) against the refilling one, over a study's models.

The eval items of a finished study (``--study``, default the default study under this checkout; ``--per-category``
items of each use case, taken in file order) are answered by each of its models, the base and every trained
adapter, twice in this one process, each model loaded as the generate stage loads it (LoRA merged, ``--dtype``,
default the stage's own choice for this machine):

- baseline, the decode the generate stage used until issue 32: batches of ``generate.batch_size`` prompts with
  the same token budget (``plan_batches``), each decoded until its last row ends (``answer_batch`` ->
  ``greedy.greedy_decode``), every model loaded with its tokenizer (a kernel each then);
- ours, the stage's decode now: one queue per model, the batch refilled as rows end (``answer_stream`` ->
  ``continuous.greedy_stream``), the tokenizer loaded once for every model (one kernel now).

Neither counts the kernel start and imports that today's one execution saves against a kernel per model
(about 8 s a model on the 2-core machine).

answers/s = answers / wall seconds of answering (the model loads counted in both); ``ratio`` = ours / baseline.
It also prints the share of identical answers and, with the offline judge, every use case's mean under both
and whether ours stays inside the baseline's 95% bootstrap interval (in fp32 the answers should be identical;
``--dtype bfloat16`` shows what bf16's rounding changes). Both runs use every core (``torch.set_num_threads``);
give it a quiet machine.

With ``--vllm`` the same prompts are also answered by the vllm backend (vLLM's offline engine from
``make vllm-env``'s ``.venv-vllm`` or ``$STUDY_VLLM_PYTHON``; tokens/s of generation, the engine's
start reported apart) and by the server backend against a vLLM OpenAI server started here on
127.0.0.1 (tokens/s over the requests' wall time, ``--batch-size`` requests in flight), each with
its ratio to hf and its agreement with hf's answers (base model only, ``--prompts`` items of the built-in suite).

With ``--vllm-engines N`` it measures ``generate.vllm.engines`` instead (and nothing else): the same prompts
through the vllm backend with 1 engine (baseline) and with N engines side by side (ours; on the CPU each engine
bound to its share of the cores, on GPUs one per GPU; ``--gpu-memory-utilization`` split between them), each in
a fresh study folder. tokens/s = new tokens / generation seconds, where the generation seconds of N engines are
the longest engine's (they generate side by side; each engine's start is reported apart, as is the wall time of
the whole call). The answers of both are compared (they should be identical). Needs ``make vllm-env`` (or
``$STUDY_VLLM_PYTHON``) and a quiet machine.

    python benchmarks/generate_throughput.py          # after make study; prints one JSON line at the end
    python benchmarks/generate_throughput.py --per-category 10 --models base,64   # a quicker look
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

import numpy as np
import torch

from helpers.analysis.bootstrap import boot_means, cell_rng, percentile_ci
from helpers.data.suite import build_suite
from helpers.generate.hf import answer_batch, answer_stream, plan_batches
from helpers.judge.offline import score_answer
from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.loading import load_config, study_dir
from helpers.study.models import base_model_path, generation_model, load_for_generation, load_tokenizer, tokenizer_source
from helpers.study.paths import REPO, resolve


def prompts(n: int) -> list[dict]:
    per_cat = -(-n // len(CATEGORIES))
    _, items = build_suite(0, 24, per_cat)
    by_cat = {c: [it for it in items if it["category"] == c] for c in CATEGORIES}
    ordered = [by_cat[c][i] for i in range(per_cat) for c in CATEGORIES]
    return ordered[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/default.yaml", help="the study whose models answer (after make study)")
    ap.add_argument("--root", default=None, help="the study's root (default: this checkout)")
    ap.add_argument("--models", default=None, help="comma-separated models (default: base and every trained one)")
    ap.add_argument("--per-category", type=int, default=None, help="eval items per use case (default: all)")
    ap.add_argument("--dtype", default=None, help="generate.dtype for both runs (default: the study's)")
    ap.add_argument("--prompts", type=int, default=64, help="--vllm, --vllm-engines: built-in prompts")
    ap.add_argument("--batch-size", type=int, default=16, help="--vllm, --vllm-engines: batch size")
    ap.add_argument("--max-new-tokens", type=int, default=24, help="--vllm, --vllm-engines: token budget")
    ap.add_argument("--vllm", action="store_true", help="the vllm and server backends against hf (needs make vllm-env)")
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
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # as the generate stage does
    if args.vllm:
        print(json.dumps(vllm_only(args)))
        return
    print(json.dumps(decode_figures(args)))


def decode_figures(args) -> dict:
    """Baseline and ours over the study's models and eval items (module docstring)."""
    overrides = (f"generate.dtype={args.dtype}",) if args.dtype else ()
    cfg = load_config(resolve(args.config), overrides)
    sd = study_dir(cfg, resolve(args.root) if args.root else REPO)
    if not (sd / "eval.jsonl").exists():
        raise SystemExit(f"{sd / 'eval.jsonl'}: no eval set; run `make study CONFIG={args.config}` first")
    items = read_jsonl(sd / "eval.jsonl")
    if args.per_category:
        items = [it for c in CATEGORIES for it in [i for i in items if i["category"] == c][:args.per_category]]
    models = args.models.split(",") if args.models else \
        ["base"] + [m for m in cfg.models[1:] if (sd / "models" / m).exists()]
    runs = {}
    for name, answer in (("baseline", _batches), ("ours", _stream)):
        t0, rows, tokens, dtype, tokenizers = time.perf_counter(), {}, 0, None, {}
        for m in models:
            if name == "baseline":  # a kernel of its own per model: the model and its tokenizer loaded each time
                model, tok = load_for_generation(cfg, m, sd)
            else:  # one kernel for every model: each tokenizer loaded once (as generate.stage.run does)
                source = tokenizer_source(cfg, m, sd)
                if source not in tokenizers:
                    tokenizers[source] = load_tokenizer(source)
                tok = tokenizers[source]
                model = generation_model(cfg, m, sd)
            model.eval()
            tok.padding_side = "left"
            dtype = str(model.dtype).removeprefix("torch.")
            for r in answer(model, tok, items, cfg):
                rows[(m, r["id"])] = r["answer"]
                tokens += r["new_tokens"]
            del model
        wall = time.perf_counter() - t0
        runs[name] = {"s": round(wall, 1), "answers": len(rows), "tokens": tokens,
                      "answers_per_s": round(len(rows) / wall, 2), "tokens_per_s": round(tokens / wall, 1), "rows": rows}
    base, ours = runs["baseline"], runs["ours"]
    same = sum(ours["rows"][k] == a for k, a in base["rows"].items())
    return {
        "benchmark": "generate_throughput", "study": cfg.study, "models": models, "items_per_model": len(items),
        "dtype": dtype, "threads": torch.get_num_threads(), "batch_size": cfg.generate.batch_size,
        "baseline": "batches of one token budget, each decoded until its last row ends (greedy_decode)",
        **{f"baseline_{k}": v for k, v in base.items() if k != "rows"},
        "ours": "one queue per model, rows refilled as answers end (greedy_stream)",
        **{f"ours_{k}": v for k, v in ours.items() if k != "rows"},
        "identical_answers": f"{same}/{len(base['rows'])}",
        "use_case_means": _means(items, base["rows"], ours["rows"], cfg.seed),
        "ratio": round(ours["answers_per_s"] / base["answers_per_s"], 2),
        "goal_ratio": 3,
    }


def _batches(model, tok, items, cfg):
    for batch in plan_batches(items, tok, cfg):
        yield from answer_batch(model, tok, batch, cfg)


def _stream(model, tok, items, cfg):
    for rows in answer_stream(model, tok, items, cfg):
        yield from rows


def _means(items: list[dict], base: dict, ours: dict, seed: int) -> dict:
    """Per model and use case: the offline judge's mean of the baseline's answers with its 95% bootstrap interval,
    ours, and whether ours lies inside that interval."""
    by_id = {it["id"]: it for it in items}
    out = {}
    for m in dict.fromkeys(m for m, _ in base):
        for c in CATEGORIES:
            ids = [i for (mm, i) in base if mm == m and by_id[i]["category"] == c]
            if not ids:
                continue
            b = np.array([score_answer(by_id[i], base[(m, i)])[0] or 0.0 for i in ids])
            o = np.array([score_answer(by_id[i], ours[(m, i)])[0] or 0.0 for i in ids])
            lo, hi = percentile_ci(boot_means(b, 1000, cell_rng(seed, m, c)))
            out[f"{m}/{c}"] = {"baseline": round(float(b.mean()), 3), "ours": round(float(o.mean()), 3),
                               "ci": [round(lo, 3), round(hi, 3)], "inside": bool(lo <= o.mean() <= hi)}
    return out


def vllm_only(args) -> dict:
    """The base model's answers to ``--prompts`` built-in prompts: hf (ours) against the vllm and server backends."""
    cfg = StudyConfig.model_validate({
        "study": "bench", "scales": [4], "data": {"pool_size": 10}, "model": {"base": "embedded"},
        "generate": {"batch_size": args.batch_size, "max_new_tokens": {"default": args.max_new_tokens}}})
    items = prompts(args.prompts)
    with tempfile.TemporaryDirectory() as d:
        model, tok = load_for_generation(cfg, "base", Path(d))
    model.eval()
    tok.padding_side = "left"
    t0 = time.perf_counter()
    rows = list(_stream(model, tok, items, cfg))
    hf_s = time.perf_counter() - t0
    hf_tps = sum(r["new_tokens"] for r in rows) / hf_s
    return {"benchmark": "generate_backends", "prompts": len(items), "hf_tokens_per_s": round(hf_tps, 1),
            **vllm_figures(args, cfg, items, {r["id"]: r["answer"] for r in rows}, hf_tps)}


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


def vllm_figures(args, cfg: StudyConfig, items: list[dict], hf: dict, hf_tps: float) -> dict:
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
                   vllm_tokens=tokens, vllm_tokens_per_s=round(tps, 1), vllm_ratio_to_hf=round(tps / hf_tps, 2),
                   vllm_identical_to_hf=same(Path(d) / "answers" / "base.jsonl"))

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
                       server_tokens_per_s=round(tokens / wall, 1), server_ratio_to_hf=round(tokens / wall / hf_tps, 2),
                       server_identical_to_hf=same(path))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    return out


if __name__ == "__main__":
    main()
