"""GPU smoke run of the paper's training path, in at most 5 minutes and with no downloads.

What a GPU machine runs first (needs ``pip install -e .[gpu]`` for DeepSpeed):

1. a tiny randomly initialised Bloom-architecture model (Bloomz's, a few hundred thousand
   parameters) with a byte-level BPE tokenizer learned on the spot (``helpers.finetune.tiny``);
2. a full fine-tune of it through ``accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml``
   on one GPU (``python -m helpers train``, as the finetune notebook launches it), then the same with LoRA;
3. answers to the built-in eval items generated on the GPU by both fine-tuned models (the hf backend).

Prints training tokens/s of both runs, generation tokens/s and peak GPU memory, and ends with one
JSON line. Without a CUDA GPU it says so and exits with status 2 before doing anything.

    python benchmarks/gpu_smoke.py [--examples 512] [--workdir /tmp/gpu_smoke]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers.data.suite import build_suite
from helpers.finetune.launch import launch_command
from helpers.finetune.tiny import build_tiny_bloom
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.loading import load_config, study_dir
from helpers.study.paths import REPO
from helpers.study.prompt import format_prompt

ZERO3 = "configs/accelerate/deepspeed_zero3.yaml"
METHODS = ("full", "lora")


def study_config(name: str, base: Path, method: str, examples: int) -> dict:
    """The study config of one smoke run: the tiny model, ZeRO-3 on one process, bf16 as the accelerate file says."""
    return {
        "study": name, "seed": 0, "scales": [examples],
        "data": {"source": "builtin", "pool_size": examples, "eval_per_category": 4},
        "model": {"base": str(base)},
        "train": {"method": method, "epochs": 1, "batch_size": 16, "per_device_batch_size": 16, "max_length": 128,
                  "lr": 1e-3 if method == "full" else 3e-3, "bf16": True, "gradient_checkpointing": True,
                  "num_processes": 1, "accelerate_config": ZERO3, "save_steps": 1000},
        "generate": {"batch_size": 48, "max_new_tokens": {"default": 32}},
    }


def prepare(workdir: Path, examples: int) -> dict[str, Path]:
    """Everything before the GPU: the tiny model, and per method a config file plus its train and eval files.

    Returns method -> config path; the studies live under ``workdir/data/``.
    """
    pool, evals = build_suite(0, examples, 4)
    base = build_tiny_bloom(workdir / "tiny-bloom", [format_prompt(r["instruction"], r["input"]) + r["output"]
                                                     for r in pool] + [e["question"] for e in evals])
    configs = {}
    for method in METHODS:
        raw = study_config(f"gpu-smoke-{method}", base, method, examples)
        path = workdir / f"{method}.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        sd = study_dir(load_config(path), workdir)
        write_jsonl(sd / "subsets" / f"{examples}.jsonl", pool)
        write_jsonl(sd / "eval.jsonl", evals)
        configs[method] = path
    return configs


def train_on_gpu(config: Path, workdir: Path, examples: int) -> dict:
    """One ``accelerate launch`` training run; its summary (tokens/s, peak memory of that process)."""
    cfg = load_config(config)
    cmd = launch_command(cfg, config, workdir, str(examples))
    print(" ".join(cmd), flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, timeout=180)
    summary = json.loads((study_dir(cfg, workdir) / "models" / str(examples) / "train_summary.json").read_text())
    return {"wall_s": round(time.perf_counter() - t, 1), "tokens_per_s": summary["tokens_per_s"],
            "peak_mem_mb": summary["peak_mem_mb"], "final_loss": summary["final_loss"], "steps": summary["steps"]}


def generate_on_gpu(config: Path, workdir: Path, examples: int) -> dict:
    """Answers of the fine-tuned model to the eval items; new tokens per second (model loading included)."""
    from helpers.generate import generate_answers

    cfg = load_config(config)
    t = time.perf_counter()
    path = generate_answers(cfg, str(examples), study_dir(cfg, workdir))
    wall = time.perf_counter() - t
    rows = read_jsonl(path)
    tokens = sum(r["new_tokens"] for r in rows)
    return {"answers": len(rows), "new_tokens": tokens, "tokens_per_s": round(tokens / wall, 1), "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--workdir", default="/tmp/gpu_smoke")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU on this machine; it needs one (and `pip install -e .[gpu]` for DeepSpeed). "
              "Nothing was run.", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    workdir = Path(args.workdir)
    configs = prepare(workdir, args.examples)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = {}
    for method in METHODS:
        train = train_on_gpu(configs[method], workdir, args.examples)
        torch.cuda.reset_peak_memory_stats()
        gen = generate_on_gpu(configs[method], workdir, args.examples)
        gen["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        results[method] = {"train": train, "generate": gen}
        print(f"{method:>4}: training {train['tokens_per_s']} tokens/s (peak {train['peak_mem_mb']} MB, "
              f"loss {train['final_loss']}), generation {gen['tokens_per_s']} tokens/s (peak {gen['peak_mem_mb']} MB)",
              flush=True)
    print(json.dumps({
        "benchmark": "gpu_smoke", "gpu": torch.cuda.get_device_name(0), "examples": args.examples,
        "accelerate_config": ZERO3, **{f"{m}_{part}_{k}": v for m, r in results.items() for part in ("train", "generate")
                                       for k, v in r[part].items() if k in ("tokens_per_s", "peak_mem_mb")},
        "peak_gpu_mem_mb": max(r[p]["peak_mem_mb"] for r in results.values() for p in ("train", "generate")),
        "wall_s": round(time.perf_counter() - t0, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
