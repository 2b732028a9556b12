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

import hashlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

from helpers.config import StudyConfig, split_model
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
    """Trainer whose loss projects hidden states to the vocabulary only where a label exists.

    In a multi-process run the model is wrapped (DDP, DeepSpeed) and its forward must be
    the wrapper's, so there the standard full-vocabulary loss is used instead.
    """

    tokens_seen = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.tokens_seen += int(inputs["attention_mask"].sum())
        if world_size() > 1:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
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


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class TrainLog(TrainerCallback):
    """Appends one JSON line per logged step: loss, tokens seen, tokens/s, wall time, peak memory.

    After the first steps, and every tenth of the run, it prints progress and an ETA
    measured on this machine (plain lines, readable in the runner's console log).
    Tokens are counted on the main process and multiplied by the number of processes.
    A resumed run continues the tokens seen and wall time of the log row at its checkpoint
    (``resumed_from``), so the log reads as one run (the time while killed is not counted).
    """

    def __init__(self, path: Path, trainer_ref: list, eta_after: int = 3, resumed_from: dict | None = None):
        self.path, self.ref, self.eta_after = path, trainer_ref, eta_after
        self.start = self.first_step = None
        self.wall_before = float((resumed_from or {}).get("wall_s") or 0.0)

    def on_train_begin(self, args, state, control, **kw):
        self.start, self.first_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        wall = time.perf_counter() - self.start  # this process (the ETA); wall_s adds the run before a resume
        tokens = self.ref[0].tokens_seen * world_size()
        total_wall = wall + self.wall_before
        row = {
            "step": state.global_step, "epoch": round(state.epoch or 0, 4), "loss": logs["loss"],
            "lr": logs.get("learning_rate"), "tokens_seen": tokens,
            "tokens_per_s": round(tokens / total_wall, 2) if total_wall else None, "wall_s": round(total_wall, 2),
            "peak_mem_mb": _peak_memory_mb(),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(row) + "\n")
        step, total, done = state.global_step, state.max_steps, state.global_step - self.first_step
        if done == self.eta_after or step == total or step % max(total // 10, 1) == 0:
            eta = wall / done * (total - step)
            print(f"step {step}/{total}  loss {logs['loss']:.3f}  {row['tokens_per_s']} tokens/s  "
                  f"{wall / done:.1f} s/step, about {eta / 60:.1f} min to go", flush=True)


class PrefixSnapshots(TrainerCallback):
    """Prefix schedule: when the run reaches a smaller scale's last step, save that scale's model."""

    def __init__(self, boundaries: dict[int, str], publish):
        self.boundaries, self.publish = boundaries, publish

    def on_log(self, args, state, control, logs=None, **kw):
        # on_log, not on_step_end: the step's own log row is written by then (TrainLog runs first)
        if logs and "loss" in logs and state.global_step in self.boundaries:
            self.publish(self.boundaries.pop(state.global_step), state.global_step)


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


def build_model(cfg: StudyConfig, base: str):
    model = load_causal_lm(base)
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = cfg.train.lora
        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.targets, task_type="CAUSAL_LM"))
    return model


def training_arguments(cfg: StudyConfig, output_dir: Path, sampling: str) -> TrainingArguments:
    accumulation = cfg.train.batch_size // (cfg.train.per_device_batch_size * cfg.train.num_processes)
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.train.per_device_batch_size,
        gradient_accumulation_steps=accumulation, num_train_epochs=cfg.train.epochs,
        learning_rate=cfg.train.lr, lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio, weight_decay=cfg.train.weight_decay,
        bf16=use_bf16(cfg.train.bf16), use_cpu=not torch.cuda.is_available(), logging_steps=1,
        save_strategy="steps", save_steps=cfg.train.save_steps, save_total_limit=1,
        report_to="none", seed=cfg.seed, data_seed=cfg.seed, remove_unused_columns=False,
        train_sampling_strategy=sampling, dataloader_num_workers=0, optim="adamw_torch", disable_tqdm=False,
    )


def run_key(cfg: StudyConfig, records: list[dict]) -> str:
    """What a checkpoint was made from: resuming is only safe when this is unchanged."""
    raw = {"train": cfg.train.model_dump(mode="json"), "model": cfg.model.base, "seed": cfg.seed,
           "data": hashlib.sha256(json.dumps(records, ensure_ascii=False).encode()).hexdigest(),
           "code": {m: hashlib.sha256((Path(__file__).parent / f"{m}.py").read_bytes()).hexdigest()
                    for m in ("finetune", "model", "prompt")}}
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


def finished_by(model_dir: Path, key: str) -> bool:
    """Whether ``model_dir`` is a published model (renamed into place whole) of the run with ``key``."""
    try:
        return json.loads((model_dir / "train_summary.json").read_text()).get("run_key") == key
    except (OSError, ValueError):
        return False


def last_checkpoint(work: Path, key: str) -> Path | None:
    """The newest complete checkpoint an interrupted run of the same training left, if any.

    Trainer writes ``trainer_state.json`` last, so a checkpoint without a readable one
    was cut off mid-save and is passed over for the one before it.
    """
    marker = work / "run.json"
    if not marker.exists() or json.loads(marker.read_text()).get("key") != key:
        return None
    found = sorted((work / "trainer").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in found:
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            return ckpt
        except (OSError, ValueError):
            continue
    return None


def launch_command(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, scale: str | None) -> list[str]:
    """The ``accelerate launch`` command that trains on ``train.num_processes`` processes.

    With ``train.accelerate_config`` (configs/accelerate/: DDP, DeepSpeed ZeRO-3, multi-node)
    that file decides the setup; without one, plain multi-process data parallelism, which on
    a machine without GPUs runs on the CPU with the gloo backend.
    """
    from helpers.config import resolve

    # the accelerate of this interpreter, whether or not its bin/ is on PATH
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.train.num_processes)]
    if cfg.train.accelerate_config:
        cmd += ["--config_file", str(resolve(cfg.train.accelerate_config))]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["-m", "helpers", "train", "--config", str(resolve(config_path))]
    cmd += ["--scale", str(scale)] if scale else []
    return cmd + (["--root", str(root)] if root else [])


def train(cfg: StudyConfig, study_dir: Path, scale: str | None = None) -> list[Path]:
    """Train what the config's schedule asks for; returns the saved model folders.

    ``separate``: one run on ``subsets/<scale>.jsonl`` (``scale`` is a model name such as
    ``640`` or ``quality-640``). ``prefix``: one run on the largest subset of a strategy in
    nested order, saving every scale of it at its boundary; ``scale`` names the strategy or
    one of its models (default: the first strategy).
    """
    if cfg.train.schedule == "prefix":
        strategy = scale if scale in cfg.strategies else (split_model(scale)[0] if scale else None)
        strategy = strategy or cfg.strategies[0]
        scales = [m for m in cfg.strategy_models(strategy) if m not in cfg.model.checkpoints]
        name = f"prefix-{strategy}" if cfg.grid else "prefix"
        return _train(cfg, study_dir, name=name, data=scales[-1], scales=scales, sampling="sequential")
    if scale is None:
        raise ValueError("train: a scale is needed when train.schedule is separate")
    return _train(cfg, study_dir, name=scale, data=scale, scales=[scale], sampling="group_by_length")


def _train(cfg: StudyConfig, study_dir: Path, name: str, data: str, scales: list[str], sampling: str) -> list[Path]:
    """The one training loop behind both schedules.

    Work happens in ``models/.<name>.tmp/``: Trainer checkpoints every ``save_steps``
    so a killed run resumes (same weights as an uninterrupted run), and each finished
    model is saved to a temporary folder and renamed into ``models/<scale>/``, so later
    stages never see a half-written model.
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size()))
    base = base_model_path(cfg)
    tok = load_tokenizer(base)
    records = read_jsonl(study_dir / "subsets" / f"{data}.jsonl")
    key = run_key(cfg, records)
    if all(finished_by(study_dir / "models" / s, key) for s in scales):
        # e.g. killed after the last model was published but before the runner recorded the stage
        print(f"already trained: {', '.join(scales)} (models/ holds the finished models of this run)", flush=True)
        return [study_dir / "models" / s for s in scales]
    rows = tokenize(records, tok, cfg.train.max_length)
    model = build_model(cfg, base)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_tokens = sum(len(r["input_ids"]) for r in rows)
    est = compute_estimate(n_tokens, n_params, n_trainable, cfg.train.epochs)
    print(f"training {'scales ' + ', '.join(scales) if len(scales) > 1 else 'scale ' + scales[0]}: "
          f"{len(rows)} examples, {n_tokens} tokens x {cfg.train.epochs} epochs, "
          f"{n_trainable:,} of {n_params:,} parameters trained, about {est['flops'] / 1e12:.2f} TFLOPs", flush=True)

    models = study_dir / "models"
    work = models / f".{name}.tmp"
    resume = last_checkpoint(work, key)
    resumed_from = None
    if resume:
        print(f"resuming from {resume.name}", flush=True)
        kept = _trim_log(work / "train_log.jsonl", int(resume.name.split("-")[-1]))
        resumed_from = kept[-1] if kept else None
    elif is_main_process():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        atomic_write_text(work / "run.json", json.dumps({"key": key}))
    ref: list = []
    summary = {"examples": len(rows), "bf16": use_bf16(cfg.train.bf16), "method": cfg.train.method,
               "schedule": cfg.train.schedule, "estimate": est, "run_key": key}

    def publish(scale: str, step: int) -> Path:
        trainer = ref[0]
        out, tmp = models / scale, models / f".{scale}.publish"
        if is_main_process():
            shutil.rmtree(tmp, ignore_errors=True)
        trainer.save_model(str(tmp))
        if not is_main_process():
            return out
        log = read_jsonl(work / "train_log.jsonl") if (work / "train_log.jsonl").exists() else []
        log = [r for r in log if r["step"] <= step]
        write_jsonl(tmp / "train_log.jsonl", log)
        wall = time.perf_counter() - t0
        atomic_write_text(tmp / "train_summary.json", json.dumps({
            **summary, "scale": scale, "examples": split_model(scale)[1], "steps": step,
            "wall_seconds": round(wall, 2), "tokens_seen": log[-1]["tokens_seen"] if log else 0,
            "tokens_per_s": log[-1]["tokens_per_s"] if log else None, "final_loss": log[-1]["loss"] if log else None,
            "peak_mem_mb": _peak_memory_mb()}, indent=2) + "\n")
        # the old model goes aside by a rename, so models/<scale> is missing for two renames at most
        old = models / f".{scale}.old.publish"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        print(f"saved scale {scale} at step {step} to {out}", flush=True)
        return out

    # a resumed run only passes the boundaries after its checkpoint; earlier ones were saved before
    boundaries = {split_model(s)[1] // cfg.train.batch_size: s for s in scales[:-1]}
    trainer = LabelOnlyHeadTrainer(
        model=model, args=training_arguments(cfg, work / "trainer", sampling), train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE, padding="longest"),
        callbacks=[TrainLog(work / "train_log.jsonl", ref, resumed_from=resumed_from),
                   PrefixSnapshots(boundaries, publish)],
    )
    if resumed_from:  # the skipped batches are not passed to compute_loss again
        trainer.tokens_seen = int(resumed_from["tokens_seen"]) // world_size()
    ref.append(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = publish(scales[-1], trainer.state.global_step)
    if is_main_process():
        shutil.rmtree(work, ignore_errors=True)
    return [models / s for s in scales[:-1]] + [final]


def _trim_log(path: Path, step: int) -> list[dict]:
    """After a resume, drop log rows of steps the checkpoint does not contain (they will be redone);
    returns the rows kept."""
    if not path.exists():
        return []
    kept = [r for r in read_jsonl(path, tolerate_torn_tail=True) if r["step"] <= step]
    write_jsonl(path, kept)
    return kept
