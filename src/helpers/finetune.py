"""Supervised fine-tuning of one scale: LoRA (default) or full, with transformers' Trainer.

Why Trainer and not TRL's SFTTrainer: we need one change to the loss that
SFTTrainer does not offer. Gemma's 262k-word vocabulary makes the output
projection most of a small model's compute, and only response tokens carry a
label, so ``LabelOnlyHeadTrainer`` runs the projection on those positions only.
Everything else (optimizer, schedule, accumulation, bf16 autocast, devices,
accelerate/DeepSpeed launch) is Trainer's own.

Loss is on the response and the EOS token only; the prompt comes from
``helpers.prompt`` so training and generation see the same text.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from helpers.config import StudyConfig
from helpers.files import atomic_write_text, dumps, read_jsonl, write_jsonl
from helpers.model import base_model_path, bf16_supported, load_causal_lm, load_tokenizer
from helpers.prompt import format_prompt

IGNORE = -100


def tokenize(records: list[dict], tok, max_length: int) -> list[dict]:
    """Prompt tokens get label -100 (no loss); response tokens and the appended EOS are learned."""
    rows = []
    for r in records:
        prompt = tok(format_prompt(r["instruction"], r.get("input", "")))["input_ids"]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE] * len(prompt) + answer)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


class LabelOnlyHeadTrainer(Trainer):
    """Trainer whose loss projects hidden states to the vocabulary only where a label exists."""

    tokens_seen = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        self.tokens_seen += int(inputs["attention_mask"].sum())
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        causal_lm = getattr(causal_lm, "module", causal_lm)
        hidden = causal_lm.model(**inputs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = causal_lm.lm_head(hidden[:, :-1][keep]).float()
        softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum())
        return (loss, None) if return_outputs else loss


class TrainLog(TrainerCallback):
    """Appends one JSON line per logged step: loss, tokens seen, tokens/s, wall time, peak memory.

    After the first steps, and every tenth of the run, it prints progress and an ETA
    measured on this machine (plain lines, readable in the runner's console log).
    """

    def __init__(self, path: Path, trainer_ref: list, eta_after: int = 3):
        self.path, self.ref, self.eta_after = path, trainer_ref, eta_after
        self.start = None

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()
        self.path.unlink(missing_ok=True)

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs:
            return
        wall = time.perf_counter() - self.start
        tokens = self.ref[0].tokens_seen
        row = {
            "step": state.global_step, "epoch": round(state.epoch or 0, 4), "loss": logs["loss"],
            "lr": logs.get("learning_rate"), "tokens_seen": tokens,
            "tokens_per_s": round(tokens / wall, 2) if wall else None, "wall_s": round(wall, 2),
            "peak_mem_mb": _peak_memory_mb(),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(row) + "\n")
        step, total = state.global_step, state.max_steps
        if step == self.eta_after or step == total or step % max(total // 10, 1) == 0:
            eta = wall / step * (total - step)
            print(f"step {step}/{total}  loss {logs['loss']:.3f}  {row['tokens_per_s']} tokens/s  "
                  f"{wall / step:.1f} s/step, about {eta / 60:.1f} min to go", flush=True)


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def use_bf16(setting: str | bool) -> bool:
    return bf16_supported() if setting == "auto" else bool(setting)


def compute_estimate(n_tokens: int, n_params: int, n_trainable: int, epochs: float) -> dict:
    """FLOPs by the usual rule: 2 per parameter per token forward, 4 backward.

    With LoRA the frozen weights still run forward and pass gradients back to the
    adapters but compute no weight gradients of their own, so about 4 per frozen
    parameter per token, plus 6 per trainable one.
    """
    frozen = n_params - n_trainable
    flops = epochs * n_tokens * (4 * frozen + 6 * n_trainable)
    return {"tokens": n_tokens, "epochs": epochs, "params": n_params, "trainable": n_trainable, "flops": flops}


def train_scale(cfg: StudyConfig, scale: str, study_dir: Path) -> Path:
    """Train one scale on ``subsets/<scale>.jsonl`` and save it to ``models/<scale>/``.

    The model is written to a temporary folder and renamed when complete, so a
    killed run never leaves a half-saved model that later stages would trust.
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    base = base_model_path(cfg)
    tok = load_tokenizer(base)
    records = read_jsonl(study_dir / "subsets" / f"{scale}.jsonl")
    rows = tokenize(records, tok, cfg.train.max_length)
    model = load_causal_lm(base)
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = cfg.train.lora
        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.targets, task_type="CAUSAL_LM"))
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    est = compute_estimate(n_tokens, n_params, n_trainable, cfg.train.epochs)
    print(f"scale {scale}: {len(rows)} examples, {n_tokens} tokens x {cfg.train.epochs} epochs, "
          f"{n_trainable:,} of {n_params:,} parameters trained, about {est['flops'] / 1e12:.2f} TFLOPs")

    out = study_dir / "models" / scale
    work = study_dir / "models" / f".{scale}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    accumulation = cfg.train.batch_size // (cfg.train.per_device_batch_size * cfg.train.num_processes)
    bf16 = use_bf16(cfg.train.bf16)
    args = TrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=cfg.train.per_device_batch_size,
        gradient_accumulation_steps=accumulation, num_train_epochs=cfg.train.epochs,
        learning_rate=cfg.train.lr, lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio, weight_decay=cfg.train.weight_decay,
        bf16=bf16, use_cpu=not torch.cuda.is_available(), logging_steps=1, save_strategy="no",
        report_to="none", seed=cfg.seed, data_seed=cfg.seed, remove_unused_columns=False,
        train_sampling_strategy="group_by_length", dataloader_num_workers=0,
        optim="adamw_torch", disable_tqdm=False,
    )
    ref: list = []
    trainer = LabelOnlyHeadTrainer(
        model=model, args=args, train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE, padding="longest"),
        callbacks=[TrainLog(work / "train_log.jsonl", ref)],
    )
    ref.append(trainer)
    result = trainer.train()
    shutil.rmtree(work / "trainer", ignore_errors=True)
    model.save_pretrained(work)
    wall = time.perf_counter() - t0
    summary = {
        "scale": scale, "examples": len(rows), "bf16": bf16, "method": cfg.train.method,
        "train_seconds": round(result.metrics.get("train_runtime", 0), 2), "wall_seconds": round(wall, 2),
        "tokens_seen": trainer.tokens_seen,
        "tokens_per_s": round(trainer.tokens_seen / max(result.metrics.get("train_runtime", 1e-9), 1e-9), 2),
        "final_loss": result.metrics.get("train_loss"), "estimate": est, "peak_mem_mb": _peak_memory_mb(),
    }
    atomic_write_text(work / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)
    return out
