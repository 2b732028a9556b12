"""``train.launcher: slurm``: a training run as one sbatch job, submitted and waited for by the finetune stage.

The runner runs the finetune notebook where it was started (a login node) as always; the notebook hands each
training run to ``train_on_slurm``, which writes the job script under ``<study>/slurm/``, submits it with
``sbatch``, waits for it with ``scontrol show job`` and checks that the models were published. Inside the job,
``srun`` starts one task per node, ``python -m helpers launch``, which runs that node's ``accelerate launch``
with its rank and the job's first host as the main process (``helpers.finetune.launch.slurm_node``).

Time limits and preemption: the job asks Slurm to send ``USR1`` to its batch shell ``train.slurm.signal_s``
seconds before the end (``#SBATCH --signal=B:USR1@...``). The shell then creates the job's stop file; every
rank sees it at the end of its current step (``StopForRequeue``), a checkpoint is saved and training stops
without publishing, and the shell requeues the job (``scontrol requeue``). The job starts again later and
resumes from that checkpoint, as any interrupted run does. A job killed without warning (``scontrol
requeue`` by hand, a node failure with ``--requeue``) resumes from the last periodic checkpoint
(``train.save_steps``). The job's output, every restart appended, is ``<study>/slurm/<run>.log``.

A runner stopped while it waits leaves the job running; the next run finds its id in ``<study>/slurm/<run>.job``
and waits for that job instead of submitting another.
"""
from __future__ import annotations

import os
import shlex
import sys
from functools import partial
from pathlib import Path

from transformers import TrainerCallback

from helpers.study.config import StudyConfig, is_mixture, split_model
from helpers.study.loading import study_dir
from helpers.study.paths import REPO, resolve
from helpers.study.slurm import SlurmJobFailed, resource_lines, stale_runs, submit_or_find, wait

say = partial(print)

STOP_ENV = "STUDY_STOP_FILE"
"""The file whose appearance asks every rank to checkpoint and stop (set by the job script)."""


def run_name(scale: str | None) -> str:
    return f"finetune-{scale}" if scale else "finetune"


def trained_models(cfg: StudyConfig, scale: str | None) -> list[str]:
    """The models one training run publishes (as ``helpers.finetune.stage.run`` picks them)."""
    if cfg.train.schedule == "separate" or (scale is not None and is_mixture(scale)):
        return [str(scale)]
    strategy = scale if scale in cfg.strategies else (split_model(scale)[0] if scale else None)
    return [m for m in cfg.strategy_models(strategy or cfg.strategies[0]) if m not in cfg.model.checkpoints]


def job_script(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, scale: str | None,
               overrides: tuple[str, ...] | list[str] = ()) -> str:
    """The sbatch script of one training run (``scale`` as the finetune stage gets it)."""
    s, sd = cfg.train.slurm, study_dir(cfg, root)
    name = run_name(scale)
    folder = sd / "slurm"
    per_node = cfg.train.num_processes // s.nodes
    time, *resources = resource_lines(s)
    head = [f"--job-name={cfg.study}-{name}", f"--nodes={s.nodes}", "--ntasks-per-node=1", time,
            f"--output={folder / name}.log", "--open-mode=append", "--requeue", f"--signal=B:USR1@{s.signal_s}",
            *resources]
    launch = [sys.executable, "-m", "helpers", "launch", "--config", str(resolve(config_path)),
              "--root", str(resolve(root) if root else REPO)]
    launch += ["--scale", str(scale)] if scale else []
    launch += [a for o in overrides for a in ("--set", o)]
    stop = folder / f"{name}.stop"
    lines = ["#!/bin/bash", *(f"#SBATCH {h}" for h in head),
             f"# {cfg.study}: training run {name}, {s.nodes} node(s) x {per_node} process(es), written by "
             "helpers.finetune.slurm", "",
             f"cd {shlex.quote(str(REPO))}", *s.setup,
             f"export {STOP_ENV}={shlex.quote(str(stop))}",
             f'rm -f "${STOP_ENV}"',
             'echo "$(date -Is) job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST"',
             "# Slurm's warning before the time limit or a preemption: every rank checkpoints at its next step and stops",
             f'trap \'echo "$(date -Is) USR1: checkpoint, then requeue"; touch "${STOP_ENV}"\' USR1',
             f"srun --kill-on-bad-exit=1 {shlex.join(launch)} &",
             "step=$!",
             "status=0; wait $step || status=$?",
             "while kill -0 $step 2>/dev/null; do status=0; wait $step || status=$?; done  # a trapped signal ends wait early",
             f'if [ -e "${STOP_ENV}" ]; then',
             f'  rm -f "${STOP_ENV}"',
             '  echo "$(date -Is) requeued: the next start resumes from the checkpoint"',
             '  scontrol requeue "$SLURM_JOB_ID"',
             "  exit 0",
             "fi",
             "exit $status", ""]
    return "\n".join(lines)


def train_on_slurm(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, scale: str | None,
                   overrides: tuple[str, ...] | list[str] = (), out=say) -> str:
    """Submit the training run of ``scale`` (or wait for the job of it already submitted) and wait for it to
    finish; returns the job id. Raises ``SlurmJobFailed`` when it fails or publishes no model."""
    sd = study_dir(cfg, root)
    name = run_name(scale)
    folder = sd / "slurm"
    job_id = submit_or_find(job_script(cfg, config_path, root, scale, overrides), folder, name, out)
    out(f"output of job {job_id}: {folder / name}.log")
    ended = [t for t in wait(job_id, cfg.train.slurm.poll_s, out) if t.state != "COMPLETED"]
    if ended:
        raise SlurmJobFailed(f"slurm job {job_id} ended {ended[0].state} (exit code {ended[0].exit_code}); "
                             f"its output: {folder / name}.log")
    marker = folder / f"{name}.job"
    missing = [m for m in trained_models(cfg, scale) if not (sd / "models" / m / "train_summary.json").exists()]
    if missing:
        raise SlurmJobFailed(f"slurm job {job_id} ended without publishing models/{', '.join(missing)}; "
                             f"its output: {folder / name}.log")
    marker.unlink(missing_ok=True)
    return job_id


def print_job_scripts(config_path: str | Path, root: str | Path | None, overrides: tuple[str, ...] | list[str] = (),
                      out=say) -> None:
    """The dry run with ``train.launcher: slurm``: the sbatch script of every training run still to do."""
    from helpers.study.loading import load_config

    cfg = load_config(config_path, overrides)
    if cfg.train.launcher != "slurm":
        return
    sd = study_dir(cfg, root or REPO)
    for run in stale_runs(cfg, sd, "finetune"):
        scale = None if run.key == "study" else run.key
        out(f"--- sbatch script of {run.label} ({sd / 'slurm' / run_name(scale)}.sbatch) ---")
        out(job_script(cfg, config_path, root or REPO, scale, overrides))


def stop_file() -> Path | None:
    """The stop file this training process watches (``STUDY_STOP_FILE``, set by the job script), if any."""
    path = os.environ.get(STOP_ENV)
    return Path(path) if path else None


class StopForRequeue(TrainerCallback):
    """Checkpoint and stop at the end of the step in which the job's stop file appeared (Slurm's warning).

    Every rank must stop after the same step, or those still training would wait for the others forever: the
    ranks agree on it with one all-reduce of a flag per step (a few bytes; the file is looked at by each rank).
    """

    def __init__(self, path: Path):
        self.path = path
        self.stopped = False

    def on_step_end(self, args, state, control, **kwargs):
        import torch
        import torch.distributed as dist

        flag = torch.tensor([float(self.path.exists())], device=args.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            say(f"stop file {self.path} seen: checkpoint at step {state.global_step}, then stop for the requeue")
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control
