"""The training log (``train_log.jsonl``, one line per logging step) and the prefix schedule's snapshots.

Under ``train.schedule: prefix`` one pass over the largest subset saves every smaller scale at
the step where its examples end (``PrefixSnapshots``).
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from helpers.finetune.launch import world_size
from helpers.study.files import dumps, read_jsonl, write_jsonl
from helpers.study.progress import report


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
            "peak_mem_mb": peak_memory_mb(),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dumps(row) + "\n")
        step, total, done = state.global_step, state.max_steps, state.global_step - self.first_step
        if done == self.eta_after or step == total or step % max(total // 10, 1) == 0:
            eta = wall / done * (total - step)
            print(f"step {step}/{total}  loss {logs['loss']:.3f}  {row['tokens_per_s']} tokens/s  "
                  f"{wall / done:.1f} s/step, about {eta / 60:.1f} min to go", flush=True)


class StepProgress(TrainerCallback):
    """Training steps for the runner's progress bar (``helpers.study.progress``), from the main process only."""

    def __init__(self, desc: str):
        self.desc = desc

    def on_step_end(self, args, state, control, **kw):
        if state.is_world_process_zero:
            report(self.desc, state.global_step, state.max_steps, "step")

    on_train_begin = on_step_end


class PrefixSnapshots(TrainerCallback):
    """Prefix schedule: when the run reaches a smaller scale's last step, save that scale's model."""

    def __init__(self, boundaries: dict[int, str], publish):
        self.boundaries, self.publish = boundaries, publish

    def on_log(self, args, state, control, logs=None, **kw):
        # on_log, not on_step_end: the step's own log row is written by then (TrainLog runs first)
        if logs and "loss" in logs and state.global_step in self.boundaries:
            self.publish(self.boundaries.pop(state.global_step), state.global_step)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def trim_log(path: Path, step: int) -> list[dict]:
    """After a resume, drop log rows of steps the checkpoint does not contain (they will be redone);
    returns the rows kept."""
    if not path.exists():
        return []
    kept = [r for r in read_jsonl(path, tolerate_torn_tail=True) if r["step"] <= step]
    write_jsonl(path, kept)
    return kept
