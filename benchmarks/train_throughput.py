"""Training throughput: a plain transformers Trainer baseline against our settings, in one run.

Both fine-tune the embedded Gemma 3 270M with the same LoRA on the same 256
examples of the built-in suite for one epoch, batch 8:

- baseline: ``Trainer`` as it comes: random order, padding to the longest in each
  batch, fp32, the loss over the full vocabulary projection at every position;
- ours: ``LabelOnlyHeadTrainer`` (vocabulary projection only where a label exists),
  length-grouped batches, bf16 autocast where the CPU has native bf16.

Prints tokens/s of each (real tokens, padding excluded), their ratio, the share of
computed positions that were padding, and model FLOPs utilisation against a matmul
peak measured in the same run. Ends with one JSON line.

    python benchmarks/train_throughput.py [--examples 256]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

from helpers.data.suite import build_suite
from helpers.finetune.head import LabelOnlyHeadTrainer
from helpers.finetune.stage import build_model, use_bf16
from helpers.finetune.tokens import IGNORE, tokenize
from helpers.study.config import StudyConfig
from helpers.study.models import embedded_model_dir, load_tokenizer


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best FLOP/s of an n x n matmul on this machine, in the given dtype."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


class CountingCollator(DataCollatorForSeq2Seq):
    """Pads like the library collator and counts real and padded positions."""

    real = padded = 0

    def __call__(self, features, return_tensors=None):
        batch = super().__call__(features, return_tensors)
        mask = batch["attention_mask"]
        self.real += int(mask.sum())
        self.padded += int(mask.numel() - mask.sum())
        return batch


def run(kind: str, cfg: StudyConfig, base: str, rows: list[dict], tok, out_dir: str) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg, base)
    ours = kind == "ours"
    bf16 = ours and use_bf16("auto")
    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=8, num_train_epochs=1, learning_rate=3e-4,
        lr_scheduler_type="constant", bf16=bf16, use_cpu=True, save_strategy="no", report_to="none",
        logging_steps=1000, seed=0, remove_unused_columns=False, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if ours else "random", optim="adamw_torch")
    collator = CountingCollator(tok, label_pad_token_id=IGNORE, padding="longest")
    cls = LabelOnlyHeadTrainer if ours else Trainer
    trainer = cls(model=model, args=args, train_dataset=rows, data_collator=collator)
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops_per_token = 4 * (n_params - n_trainable) + 6 * n_trainable  # LoRA training, as finetune.compute_estimate
    return {"seconds": seconds, "tokens": collator.real, "tokens_per_s": collator.real / seconds,
            "padding_share": collator.padded / (collator.real + collator.padded), "bf16": bf16,
            "model_flops_per_s": collator.real / seconds * flops_per_token}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    base = str(embedded_model_dir())
    tok = load_tokenizer(base)
    pool, _ = build_suite(0, args.examples, 1)
    cfg = StudyConfig.model_validate({"study": "bench", "scales": [args.examples],
                                      "data": {"pool_size": args.examples}})
    rows = tokenize(pool, tok, cfg.train.max_length)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    results = {}
    for kind in ("baseline", "ours"):
        r = run(kind, cfg, base, rows, tok, f"/tmp/train_throughput_{kind}")
        r["mfu"] = r["model_flops_per_s"] / peaks["bf16" if r["bf16"] else "fp32"]
        results[kind] = r
        print(f"{kind:>8}: {r['tokens_per_s']:.1f} tokens/s, {r['padding_share']:.0%} of positions padding, "
              f"MFU {r['mfu']:.1%} ({'bf16' if r['bf16'] else 'fp32'}), {r['seconds']:.0f} s", flush=True)
    ratio = results["ours"]["tokens_per_s"] / results["baseline"]["tokens_per_s"]
    print(f"ratio: {ratio:.2f}x (goal: at least 2x)")
    print(json.dumps({
        "benchmark": "train_throughput", "examples": args.examples, "threads": torch.get_num_threads(),
        "baseline_tokens_per_s": round(results["baseline"]["tokens_per_s"], 1),
        "ours_tokens_per_s": round(results["ours"]["tokens_per_s"], 1), "ratio": round(ratio, 2),
        "padding_share_baseline": round(results["baseline"]["padding_share"], 3),
        "padding_share_ours": round(results["ours"]["padding_share"], 3),
        "mfu_baseline": round(results["baseline"]["mfu"], 4), "mfu_ours": round(results["ours"]["mfu"], 4),
        "peak_gflops_fp32": round(peaks["fp32"] / 1e9, 1), "peak_gflops_bf16": round(peaks["bf16"] / 1e9, 1),
        "bf16": results["ours"]["bf16"],
    }))


if __name__ == "__main__":
    main()
