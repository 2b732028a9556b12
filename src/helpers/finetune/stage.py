"""Supervised fine-tuning of one scale: LoRA (default) or full, with transformers' Trainer.

Why Trainer and not TRL's SFTTrainer: we need one change to the loss that
SFTTrainer does not offer. Gemma's 262k-word vocabulary makes the output
projection most of a small model's compute, and only response tokens carry a
label, so ``LabelOnlyHeadTrainer`` runs the projection on those positions only.
Everything else (optimizer, schedule, accumulation, bf16 autocast, devices,
accelerate/DeepSpeed launch) is Trainer's own.

Loss is on the response and the EOS token only; the prompt comes from
``helpers.study.prompt`` so training and generation see the same text.

Order matters at scale: ``TrainingArguments`` is built before the model is loaded, because
under ``accelerate launch`` with a DeepSpeed ZeRO-3 config it is what puts the DeepSpeed
config in force (``transformers.integrations.is_deepspeed_zero3_enabled()``); ``from_pretrained``
then partitions the weights across the GPUs as they load (``deepspeed.zero.Init``) instead of
every rank holding a whole fp32 copy (~28 GB each for a 7B model).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import DataCollatorForSeq2Seq, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from helpers.finetune.cache import ModelColumns, row_lengths, subset_rows
from helpers.finetune.head import LabelOnlyHeadTrainer
from helpers.finetune.launch import is_main_process, under_deepspeed_launch, world_size, zero_settings
from helpers.finetune.log import PrefixSnapshots, StepProgress, TrainLog, peak_memory_mb, trim_log
from helpers.finetune.memory import check_fits, gpu_memory, logits_memory, size
from helpers.finetune.shared import check_shared
from helpers.finetune.slurm import StopForRequeue, stop_file
from helpers.finetune.tokens import IGNORE, SavedOnce
from helpers.finetune.watch import check_report_to, report_arguments
from helpers.study.aside import move_aside
from helpers.study.config import StudyConfig, is_mixture, split_model
from helpers.study.files import atomic_write_text, read_jsonl, write_jsonl
from helpers.study.imports import code_hashes, code_label
from helpers.study.keys import changes, digest, stage_settings
from helpers.study.models import base_model_path, bf16_supported, load_causal_lm, load_tokenizer, usable_cores


def use_bf16(setting: str | bool) -> bool:
    return bf16_supported() if setting == "auto" else bool(setting)


def compute_estimate(n_tokens: int, n_params: int, n_trainable: int, epochs: float, checkpointing: bool = False) -> dict:
    """FLOPs by the usual rule: 2 per parameter per token forward, 4 backward.

    With LoRA the frozen weights still run forward and pass gradients back to the
    adapters but compute no weight gradients of their own, so about 4 per frozen
    parameter per token, plus 6 per trainable one. Gradient checkpointing runs each
    forward a second time in the backward pass: 2 more per parameter (8NT for a full fine-tune).
    """
    frozen = n_params - n_trainable
    again = 2 * n_params if checkpointing else 0
    flops = epochs * n_tokens * (4 * frozen + 6 * n_trainable + again)
    return {"tokens": n_tokens, "epochs": epochs, "params": n_params, "trainable": n_trainable, "flops": flops}


def load_dtype(cfg: StudyConfig, zero: dict | None) -> torch.dtype:
    """The dtype the base weights load in: bf16 where bf16 is on and fp32 weights are not needed.

    With LoRA (GPU or CPU) the base is frozen and peft keeps the adapters in fp32: bf16 base weights
    halve the memory and spare autocast from casting every frozen fp32 weight to bf16 at every
    call. Profiled on the 2-core CPU (AMX) with the embedded model, those casts were a quarter of
    a training step; loading the base in bf16 made LoRA training about 12% faster. Under
    DeepSpeed on GPUs too (its optimizer holds fp32 master weights; ZeRO-3 partitions the bf16
    weights as they load). A full fine-tune without DeepSpeed keeps fp32 weights under bf16
    autocast, since AdamW stepping bf16 weights loses every update below 1/256 of a weight (most
    steps at the paper's learning rate of 3e-6).
    """
    if use_bf16(cfg.train.bf16) and (cfg.train.method == "lora" or (zero is not None and torch.cuda.is_available())):
        return torch.bfloat16
    return torch.float32


def build_model(cfg: StudyConfig, base: str, dtype: torch.dtype | None = None):
    model = load_causal_lm(base, dtype=dtype)
    if cfg.train.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = cfg.train.lora
        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.targets, task_type="CAUSAL_LM"))
    return model


def count_parameters(model) -> tuple[int, int]:
    """(all, trainable) parameters; under ZeRO-3 a parameter's full size is its ``ds_numel`` (``numel()`` is 0)."""
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]
    return sum(n for n, _ in sizes), sum(n for n, trained in sizes if trained)


def check_gradient_checkpointing(cfg: StudyConfig, model) -> None:
    """Refuse ``train.gradient_checkpointing`` on an architecture without it, before training starts."""
    if not cfg.train.gradient_checkpointing:
        return
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(inner, "supports_gradient_checkpointing", False):
        raise ValueError(
            f"train.gradient_checkpointing: true, but {type(inner).__name__} (model.base {cfg.model.base}) does not "
            "support gradient checkpointing (its supports_gradient_checkpointing is false); set "
            "train.gradient_checkpointing: false, or lower train.per_device_batch_size or train.max_length to save memory")


def check_zero_in_force(cfg: StudyConfig, zero: dict | None) -> None:
    """A DeepSpeed accelerate config applies only in a process that accelerate launched; refuse to ignore it.

    Called after ``TrainingArguments`` exists and before the model loads: under ZeRO-3 the
    DeepSpeed config must already be in force, or every rank would load the whole model.
    """
    if zero is None:
        return
    if not under_deepspeed_launch():
        raise ValueError(
            f"train.accelerate_config: {cfg.train.accelerate_config} sets up DeepSpeed, which applies only under "
            "accelerate launch: run the finetune stage (its notebook launches it whenever train.accelerate_config "
            "is set) or `accelerate launch --config_file <that file> -m helpers train --config ... --scale ...`")
    if zero["bf16"] is not None and zero["bf16"] != use_bf16(cfg.train.bf16):
        raise ValueError(
            f"train.bf16: {cfg.train.bf16} (bf16 {'on' if use_bf16(cfg.train.bf16) else 'off'} here) disagrees with "
            f"train.accelerate_config: {cfg.train.accelerate_config} (bf16 {'on' if zero['bf16'] else 'off'}); "
            "DeepSpeed needs them to agree: change one of them")
    from transformers.integrations import is_deepspeed_zero3_enabled

    if zero["stage"] == 3 and not is_deepspeed_zero3_enabled():
        raise RuntimeError(f"train.accelerate_config: {cfg.train.accelerate_config} asks for ZeRO-3, but it is not in "
                           "force before the model loads; each process would load the whole model")


def launched_world_size() -> int:
    """The processes this training runs on, as launched: torch.distributed's group once it is up, else the
    ``WORLD_SIZE`` the launcher (accelerate, torchrun, Slurm) set."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return world_size()


class SaveEvery(TrainerCallback):
    """A checkpoint whenever ``minutes`` have passed since the last one (``train.save_minutes``), beside Trainer's
    step cadence; the clock restarts at every checkpoint, whichever cadence wrote it."""

    def __init__(self, minutes: float):
        self.seconds, self.last = minutes * 60, time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.last >= self.seconds:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last = time.monotonic()
        return control


def training_arguments(cfg: StudyConfig, output_dir: Path, sampling: str, report: dict | None = None) -> TrainingArguments:
    """Trainer's arguments from the config. Build them before loading the model (see the module docstring).

    Gradient accumulation comes from the world size that was launched, and a ``train.num_processes`` that
    disagrees with it is an error: 16 processes under a config for 8 would silently double the batch. The
    checkpoint cadence is ``train.save_steps``, else ``train.save_share`` of the run (Trainer reads a
    ``save_steps`` below 1 as that share of the total steps). ``report`` is ``report_to`` and ``run_name``
    (helpers.finetune.watch.report_arguments); none by default.

    Gradient checkpointing goes by its newer name ``activation_checkpointing`` where this
    transformers has it (non-reentrant by default there, so LoRA needs no input-gradient hook).
    """
    launched = launched_world_size()
    if launched != cfg.train.num_processes:
        t = cfg.train
        wrong = t.per_device_batch_size * launched * (t.batch_size // (t.per_device_batch_size * t.num_processes))
        raise ValueError(
            f"train.num_processes: {t.num_processes}, but {launched} process(es) were launched; the accumulation "
            f"it implies would train with batches of {wrong} instead of train.batch_size {t.batch_size}: set "
            f"train.num_processes to {launched}, or launch {t.num_processes}")
    accumulation = cfg.train.batch_size // (cfg.train.per_device_batch_size * launched)
    fields = TrainingArguments.__dataclass_fields__
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    extra = {checkpointing: cfg.train.gradient_checkpointing}
    if cfg.train.gradient_checkpointing:
        extra[f"{checkpointing}_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.train.per_device_batch_size,
        gradient_accumulation_steps=accumulation, num_train_epochs=cfg.train.epochs,
        learning_rate=cfg.train.lr, lr_scheduler_type=cfg.train.lr_scheduler,
        warmup_steps=cfg.train.warmup_ratio, weight_decay=cfg.train.weight_decay,
        bf16=use_bf16(cfg.train.bf16), use_cpu=not torch.cuda.is_available(), logging_steps=1,
        save_strategy="steps", save_steps=cfg.train.save_steps or cfg.train.save_share, save_total_limit=1,
        **(report or {"report_to": "none"}), seed=cfg.seed, data_seed=cfg.seed, remove_unused_columns=False,
        train_sampling_strategy=sampling, dataloader_num_workers=0, optim="adamw_torch", disable_tqdm=False,
        **extra,
    )


class EpochSeededSampler(LengthGroupedSampler):
    """Trainer's length-grouped order, each epoch's drawn from ``seed + epoch`` alone.

    Without a generator of its own the sampler draws from torch's global random state, which a run resumed
    from a checkpoint restores as it was at that step, not at the start of the epoch: a run resumed in its
    second epoch drew another order for the rest of that epoch than an uninterrupted one. The epoch is read
    from the trainer's state when an epoch's iteration starts (``epoch``), since Trainer's ``set_epoch``
    does not reach a sampler under accelerate's sharding once a resumed epoch skips its first batches.
    """

    def __init__(self, sampler: LengthGroupedSampler, seed: int, epoch):
        self.__dict__.update(sampler.__dict__)
        self.seed, self.epoch = seed, epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch())
        return super().__iter__()


class CachedRowsTrainer(LabelOnlyHeadTrainer):
    """Trainer on rows from the tokenization cache (``helpers.finetune.cache``), in an order fixed per epoch.

    Trainer reads the ``length`` column of a ``datasets.Dataset`` for its length-grouped sampler as a
    lazy column (one Arrow lookup per access: minutes at 2M rows); the sampler gets the same lengths
    as a list, read in one go. Its order is drawn per epoch from the data seed (``EpochSeededSampler``).
    """

    def __init__(self, *args, lengths: list[int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.row_lengths = lengths

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            if self.row_lengths is not None:
                sampler.lengths = self.row_lengths
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            # whole epochs done: the state's epoch is exactly E at the end of epoch E, E + k/n within it
            sampler = EpochSeededSampler(sampler, seed, lambda: int(self.state.epoch or 0))
        return sampler


TRAINING_CODE = ("helpers.finetune.stage", "helpers.finetune.tokens", "helpers.finetune.cache",
                 "helpers.finetune.head", "helpers.study.prompt")
"""The code that builds the tokens, the masks, the loss and the training arguments: part of the run key."""


def run_parts(cfg: StudyConfig, data_sha256: str) -> dict:
    """What the weights depend on (``helpers.study.keys``): the finetune stage's settings (the base model,
    method, LoRA shape, lr and schedule, global batch, epochs, length, precision, seed; not the save cadence
    nor how the batch is split over processes), the subset's hash and ``TRAINING_CODE`` by its syntax tree.

    ``data_sha256`` is the subset file's hash (the records it holds, in order), read as a stream:
    serialising two million records again in every process only to hash them is what it replaces.
    """
    return {"settings": stage_settings(cfg, "finetune"),
            "code": {code_label(m): d for m, d in code_hashes(set(TRAINING_CODE)).items()},
            "data": {"subset": data_sha256}}


def run_key(cfg: StudyConfig, data_sha256: str) -> str:
    """What a checkpoint or a model was made from: it is resumed or kept only while this is unchanged."""
    return digest(run_parts(cfg, data_sha256))


def _recorded(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def finished_by(model_dir: Path, key: str) -> bool:
    """Whether ``model_dir`` is a published model (renamed into place whole) of the run with ``key``."""
    return _recorded(model_dir / "train_summary.json").get("run_key") == key


def why_stale(recorded: dict, parts: dict) -> str:
    """What differs between a folder's recorded run key parts and the current ones, in words."""
    if "run_key_parts" not in recorded:
        return "made with another run key"
    return "; ".join(changes(recorded["run_key_parts"], parts)) or "made with another run key"


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


def run(cfg: StudyConfig, study_dir: Path, scale: str | None = None) -> list[Path]:
    """Train what the config's schedule asks for; returns the saved model folders.

    ``separate``: one run on ``subsets/<scale>.jsonl`` (``scale`` is a model name such as
    ``640`` or ``quality-640``). ``prefix``: one run on the largest subset of a strategy in
    nested order, saving every scale of it at its boundary; ``scale`` names the strategy or
    one of its models (default: the first strategy). A mixture model (``mix-<name>``) is one run on its
    own subset under either schedule.
    """
    if scale is not None and is_mixture(scale):
        # a mixture (data.mixture) is a run of its own, in the order its full mixture was trained in: the prefix
        # schedule's sequential pass, or the separate schedule's length-grouped batches
        sampling = "sequential" if cfg.train.schedule == "prefix" else "group_by_length"
        return _train(cfg, study_dir, name=scale, data=scale, scales=[scale], sampling=sampling)
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
    check_report_to(cfg)
    torch.manual_seed(cfg.seed)
    if not torch.cuda.is_available():
        # the cores this process may use (a Slurm task's, a test worker's), shared by the ranks on this machine
        torch.set_num_threads(max(1, usable_cores() // world_size()))
    base = base_model_path(cfg)
    tok = load_tokenizer(base)
    # tokenized once per strategy and shared by every scale and process (helpers.finetune.cache);
    # before TrainingArguments, so processes waiting for the builder hold no collective open
    rows, data_sha = subset_rows(cfg, study_dir, data, tok)
    parts = run_parts(cfg, data_sha)
    key = digest(parts)
    if all(finished_by(study_dir / "models" / s, key) for s in scales):
        # e.g. killed after the last model was published but before the runner recorded the stage
        print(f"already trained: {', '.join(scales)} (models/ holds the finished models of this run)", flush=True)
        return [study_dir / "models" / s for s in scales]
    rows = rows.remove_columns("digest")
    lengths = row_lengths(rows)
    models = study_dir / "models"
    work = models / f".{name}.tmp"
    zero = zero_settings(cfg.train.accelerate_config)
    report = report_arguments(cfg, study_dir, name)
    args = training_arguments(cfg, work / "trainer", sampling, report)  # first: it puts a ZeRO-3 config in force
    check_shared(study_dir)  # the ranks' process group exists now; nothing is loaded yet
    check_zero_in_force(cfg, zero)
    dtype = load_dtype(cfg, zero)
    model = build_model(cfg, base, dtype)
    check_gradient_checkpointing(cfg, model)
    n_params, n_trainable = count_parameters(model)
    if zero and zero["stage"] == 3 and any(hasattr(p, "ds_id") for p in model.parameters()):
        # before the Trainer wraps it: only zero.Init during from_pretrained can have partitioned them by now
        print("ZeRO-3: the weights were partitioned as they loaded (deepspeed.zero.Init)", flush=True)
    # every position's logits where the label-only head is off (more than one process); one layer gathered at a time
    logits = logits_memory(cfg.train.per_device_batch_size, cfg.train.max_length,
                           model.config.vocab_size) if world_size() > 1 else 0
    largest = max(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    states = check_fits(cfg.train.method, cfg.train.accelerate_config, n_params, n_trainable, zero, world_size(),
                        weight_bytes=dtype.itemsize, gpu_bytes=gpu_memory(), largest_layer=largest, logits=logits)
    n_tokens = sum(lengths)
    est = compute_estimate(n_tokens, n_params, n_trainable, cfg.train.epochs, cfg.train.gradient_checkpointing)
    print(f"training {'scales ' + ', '.join(scales) if len(scales) > 1 else 'scale ' + scales[0]}: "
          f"{len(rows)} examples, {n_tokens} tokens x {cfg.train.epochs} epochs, "
          f"{n_trainable:,} of {n_params:,} parameters trained, about {est['flops'] / 1e12:.2f} TFLOPs, "
          f"model states about {size(states)} per device"
          + (f" (ZeRO-{zero['stage']} over {world_size()} processes)" if zero else ""), flush=True)

    resume = last_checkpoint(work, key)
    resumed_from = None
    if resume:
        print(f"resuming from {resume.name}", flush=True)
        kept = trim_log(work / "train_log.jsonl", int(resume.name.split("-")[-1]))
        resumed_from = kept[-1] if kept else None
    elif is_main_process():
        if any((work / "trainer").glob("checkpoint-*")):  # made with another key: trained, so kept
            old = _recorded(work / "run.json")
            move_aside(work, old.get("key"), why_stale(old, parts), name=f"{name}.checkpoints")
        shutil.rmtree(work, ignore_errors=True)  # nothing trained in it: no complete checkpoint
        work.mkdir(parents=True)
        atomic_write_text(work / "run.json", json.dumps({"key": key, "run_key_parts": parts}))
    ref: list = []
    summary = {"examples": len(rows), "bf16": use_bf16(cfg.train.bf16), "base_dtype": str(dtype).removeprefix("torch."),
               "method": cfg.train.method,
               "schedule": cfg.train.schedule, "estimate": est, "run_key": key, "run_key_parts": parts}

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
            **summary, "scale": scale, "steps": step,
            # the largest scale may be the whole pool (data.largest_scale: whole_pool), fewer than its name says
            "examples": len(rows) if scale == scales[-1] else split_model(scale)[1],
            "wall_seconds": round(wall, 2), "tokens_seen": log[-1]["tokens_seen"] if log else 0,
            "tokens_per_s": log[-1]["tokens_per_s"] if log else None, "final_loss": log[-1]["loss"] if log else None,
            "peak_mem_mb": peak_memory_mb()}, indent=2) + "\n")
        # the old model goes aside by a rename, so models/<scale> is missing for two renames at most; one of
        # this very run (published before an interruption) is replaced, one of another run is kept aside
        old = models / f".{scale}.old.publish"
        shutil.rmtree(old, ignore_errors=True)
        if out.exists() and finished_by(out, key):
            os.replace(out, old)
        elif out.exists():
            recorded = _recorded(out / "train_summary.json")
            move_aside(out, recorded.get("run_key"), why_stale(recorded, parts))
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        print(f"saved scale {scale} at step {step} to {out}", flush=True)
        return out

    # a resumed run only passes the boundaries after its checkpoint; earlier ones were saved before
    boundaries = {split_model(s)[1] // cfg.train.batch_size: s for s in scales[:-1]}
    stop = [StopForRequeue(stop_file())] if stop_file() else []  # inside a Slurm job (helpers.finetune.slurm)
    trainer = CachedRowsTrainer(
        model=model, args=args, train_dataset=rows, lengths=lengths,
        data_collator=ModelColumns(DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE, padding="longest")),
        callbacks=[TrainLog(work / "train_log.jsonl", ref, resumed_from=resumed_from),
                   PrefixSnapshots(boundaries, publish), StepProgress(f"train {scales[-1]}"), *stop]
        + ([SaveEvery(cfg.train.save_minutes)] if cfg.train.save_minutes else []),
        processing_class=tok,  # saved with every checkpoint and published model: AutoTokenizer and vLLM load the folder
    )
    if resumed_from:  # the skipped batches are not passed to compute_loss again
        trainer.tokens_seen = int(resumed_from["tokens_seen"]) // world_size()
    tok.save_pretrained = SavedOnce(tok, work / "tokenizer")  # each checkpoint and model: a copy of one save
    ref.append(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop and stop[0].stopped:  # the job is requeued and resumes from the checkpoint just saved
        print(f"stopped at step {trainer.state.global_step} for a requeue; checkpoint saved in {work / 'trainer'}", flush=True)
        return []
    final = publish(scales[-1], trainer.state.global_step)
    if is_main_process():
        shutil.rmtree(work, ignore_errors=True)
    return [models / s for s in scales[:-1]] + [final]
