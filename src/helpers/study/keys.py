"""Stage keys: what a stage execution's result depends on, and why one is stale, in words.

The rule, the same for every stage: a key holds what changes the execution's output, and nothing else.

- Settings: the config sections the stage reads (``STAGE_SETTINGS``), flattened to dotted names
  (``train.lr``), less the settings that only change how the work is done (``NOT_OUTPUT``): save
  cadence, logging, worker and process counts while the global batch stays the same, batch sizes of
  inference, request concurrency, retries, timeouts, API key names, memory shares, the study's name.
  A setting that is not listed there is in the key, so a new setting reruns what reads it until
  someone decides, and writes down here, that it cannot change a result.
- Code: the stage notebook's code cells and every ``helpers`` module its imports can run
  (``helpers.study.imports``), each hashed by its syntax tree without docstrings and comments
  (``helpers.study.imports.code_digest``): an edit to prose never reruns a stage.
- Data: the sha256 of every file the execution reads (``helpers.study.hashes``), named relative to the
  study folder.
- Outputs: a record also keeps the hashes of what the execution wrote; one edited or deleted by hand
  makes the execution stale.

Training has a narrower key of its own (``helpers.finetune.stage.run_key``), which decides whether a
checkpoint may be resumed and whether a finished model is kept: the base model, the same training
settings, the subset's hash and the code that builds tokens, masks, the loss and the training
arguments (``helpers.finetune.stage.TRAINING_CODE``). So a finetune execution that reruns for another
reason (a changed logging line) finds its models already trained and trains nothing.

Each record under ``data/<study>/.stages/`` keeps the parts of its key, so ``status`` can name what changed:
``train.lr 3e-6 -> 1e-5``, ``code: helpers/finetune/tokens.py``, ``data: subsets/200000.jsonl changed``.
An execution is *missing* when it never finished, *stale* when its key or outputs changed, or when an
execution before it that writes one of its inputs is stale or missing (``input: models/640 (finetune-640
is stale)``), else *up to date*.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from helpers.study.config import StudyConfig
from helpers.study.hashes import hash_path
from helpers.study.imports import code_digest, code_hashes, code_label, notebook_modules
from helpers.study.paths import REPO

STAGE_SETTINGS = {
    "selfinstruct": ("seed", "selfinstruct"),
    "data": ("seed", "scales", "strategy", "data", "model.base"),
    "finetune": ("seed", "model.base", "train"),
    "generate": ("seed", "model.base", "model.checkpoints", "generate"),
    "judge": ("judge",),
    "analysis": ("analysis", "judge"),
}
"""Stage -> the config sections (or dotted settings) it reads."""

NOT_OUTPUT = (
    "train.save_steps",                 # how often a checkpoint is written (by steps, share of the run or minutes)
    "train.save_share",
    "train.save_minutes",
    "train.per_device_batch_size",      # with train.num_processes: how the global batch (train.batch_size) is split
    "train.num_processes",
    "train.accelerate_config",          # the launcher: DDP or DeepSpeed ZeRO over the same global batch
    "train.gradient_checkpointing",     # recomputes activations instead of keeping them: the same gradients
    "train.report_to",                  # where the loss is reported while training (train_log.jsonl either way)
    "train.launcher",                   # local or an sbatch job: the same training
    "train.slurm*",
    "model.vocab_size",                 # read only by the memory estimate before training
    "model.hidden_size",
    "generate.batch_size",              # prompts decoded together (greedy answers do not depend on it)
    "generate.vllm.tensor_parallel_size",
    "generate.vllm.engines",            # items split over engines, merged in item order: one engine's answers
    "generate.vllm.gpu_memory_utilization",
    "generate.launcher",                # here or one Slurm array task per model: the same answers
    "generate.slurm*",
    "*.api_key_env",                    # request plumbing of every endpoint: which variable holds the key,
    "*.concurrency",                    # requests in flight, retries, timeouts and back-off
    "*.max_retries",
    "*.timeout_s",
    "*.backoff_base_s",
    "*.backoff_max_s",
)
"""Settings (``fnmatch`` patterns on dotted names) that change how a stage works, never what it writes."""


def flatten(value, prefix: str) -> dict:
    """``{"a": {"b": 1}}`` under ``x`` -> ``{"x.a.b": 1}``; lists and other values are kept whole."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def stage_settings(cfg: StudyConfig, stage: str) -> dict:
    """The settings of ``stage`` that change its output, by dotted name."""
    raw = cfg.model_dump(mode="json")
    found = {}
    for section in STAGE_SETTINGS[stage]:
        value = raw
        for part in section.split("."):
            value = value[part]
        found.update(flatten(value, section))
    return {k: v for k, v in sorted(found.items()) if not any(fnmatchcase(k, p) for p in NOT_OUTPUT)}


def path_label(path: Path, study_dir: Path | None) -> str:
    """A file as reasons name it: under the study folder relative to it, else relative to the checkout."""
    for base in (study_dir, REPO):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return str(path)


def key_parts(cfg: StudyConfig, stage: str, notebook: Path, inputs: list[Path], study_dir: Path | None) -> dict:
    """Everything the key of one stage execution is made of (see the module docstring)."""
    code = {path_label(notebook, None): code_digest(notebook)}
    code.update({code_label(m): d for m, d in code_hashes(notebook_modules(notebook)).items()})
    return {"settings": stage_settings(cfg, stage), "code": code,
            "data": {path_label(p, study_dir): hash_path(p) for p in inputs}}


def digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def show(value) -> str:
    """A setting's value as a reason writes it: ``3e-6``, ``0.0003``, ``lora``, ``[4, 12]``, ``null``."""
    if isinstance(value, float):
        return re.sub(r"e([+-])0*(\d)", lambda m: f"e{m[1].replace('+', '')}{m[2]}", format(value, "g"))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def changes(old: dict, new: dict) -> list[str]:
    """Why a recorded key (``old`` parts) differs from the current one, one phrase per difference."""
    reasons = []
    before, now = old.get("settings", {}), new["settings"]
    for k in sorted(set(before) | set(now)):
        if before.get(k, ...) != now.get(k, ...):
            reasons.append(f"{k} {show(before[k]) if k in before else '(unset)'} -> "
                           f"{show(now[k]) if k in now else '(unset)'}")
    before, now = old.get("code", {}), new["code"]
    reasons += [f"code: {k}" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    before, now = old.get("data", {}), new["data"]
    for k in sorted(set(before) | set(now)):
        if before.get(k) != now.get(k):
            reasons.append(f"data: {k} " + ("missing" if now.get(k) is None else "new" if k not in before else "changed"))
    return reasons


@dataclass
class Status:
    label: str
    state: str  # "up to date", "stale" or "missing"
    reasons: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.label:<24} {self.state}" + (f": {'; '.join(self.reasons)}" if self.reasons else "")


def own_status(record: dict | None, parts: dict, outputs: list[tuple[str, str | None, str | None]], label: str) -> Status:
    """The status of one execution from its record alone (``outputs``: (label, hash in the record, current hash))."""
    if record is None:
        return Status(label, "missing")
    if "parts" not in record:
        return Status(label, "stale", ["recorded without the parts of its key (an older runner)"])
    reasons = changes(record["parts"], parts)
    for name, recorded, now in outputs:
        if now is None:
            reasons.append(f"output: {name} missing")
        elif recorded != now:
            reasons.append(f"output: {name} changed")
    return Status(label, "stale" if reasons else "up to date", reasons)


def upstream(statuses: list[Status], inputs: list[list[str]], outputs: list[list[str]]) -> list[Status]:
    """Mark an execution stale when an earlier one that writes one of its inputs is not up to date.

    ``inputs[i]`` and ``outputs[i]`` are the labels of execution i's files, in plan order; an input
    comes from an output when it is that file or inside that folder.
    """
    for i, st in enumerate(statuses):
        for name in inputs[i]:
            for j in range(i):
                if statuses[j].state == "up to date":
                    continue
                if any(name == o or name.startswith(o + "/") for o in outputs[j]):
                    st.reasons.append(f"input: {name} ({statuses[j].label} is {statuses[j].state})")
                    if st.state == "up to date":
                        st.state = "stale"
                    break
    return statuses
