"""What every stage that runs through Slurm shares: the resource lines of a job script, ``sbatch``, the job's
state from ``scontrol show job`` and waiting for it, and the marker that lets a stopped runner find its job again.

``helpers.finetune.slurm`` submits a training run as one job; ``helpers.generate.slurm`` submits the models of
the generate stage as one job array. Both wait the same way: ``scontrol show job`` (not ``sacct``, which needs
Slurm's accounting database) every ``poll_s`` seconds, until no task of the job is queued, running or requeued.
A job Slurm has forgotten (``MinJobAge`` after its end) counts as ended; the stage then checks its files, which
say whether the work was done.
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from helpers.study.config import SlurmConfig
from helpers.study.files import atomic_write_text

say = partial(print)

WAITING = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
           "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "POWER_UP_NODE"}
"""Job states after which the job still runs (again): the runner keeps waiting."""


class SlurmJobFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Task:
    """One record of ``scontrol show job``: a job, or one task (or a pending range of tasks) of a job array."""
    array_task: str | None  # "2", or "3-5" for tasks still pending together; None for a job without array
    state: str
    exit_code: str


def stale_runs(cfg, sd: Path, stage: str) -> list:
    """The executions of ``stage`` a run of the study would do now (not up to date): what a dry run prints a job
    script for."""
    from helpers.study.runner import fingerprint, is_current, plan

    return [run for run in plan(cfg, sd) if run.stage.name == stage and not is_current(sd, run, fingerprint(cfg, run))]


def resource_lines(s: SlurmConfig) -> list[str]:
    """The ``#SBATCH`` options every job of the study takes from its ``slurm`` section (without the ``#SBATCH``)."""
    head = [f"--time={s.time}"]
    head += [f"--partition={s.partition}"] if s.partition else []
    head += [f"--account={s.account}"] if s.account else []
    head += [f"--gpus-per-node={s.gpus_per_node}"] if s.gpus_per_node else []
    head += [f"--cpus-per-task={s.cpus_per_task}"] if s.cpus_per_task else []
    return head


def parse_tasks(text: str) -> list[Task]:
    """The records of ``scontrol show job -o`` output, one line each.

    >>> parse_tasks("JobId=7 ArrayJobId=7 ArrayTaskId=1 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0\\n"
    ...             "JobId=9 ArrayJobId=7 ArrayTaskId=2-3 JobName=x JobState=PENDING Reason=Resources ExitCode=0:0")
    [Task(array_task='1', state='COMPLETED', exit_code='0:0'), Task(array_task='2-3', state='PENDING', exit_code='0:0')]
    >>> parse_tasks("JobId=8 JobName=x JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0")
    [Task(array_task=None, state='FAILED', exit_code='1:0')]
    """
    tasks = []
    for line in text.splitlines():
        if not line.strip():
            continue
        state = re.search(r"\bJobState=(\S+)", line)
        code = re.search(r"\bExitCode=(\S+)", line)
        task = re.search(r"\bArrayTaskId=(\S+)", line)
        tasks.append(Task(task.group(1) if task else None, state.group(1) if state else "UNKNOWN",
                          code.group(1) if code else ""))
    return tasks


def job_tasks(job_id: str) -> list[Task]:
    """Every record Slurm keeps of a job (of each task of an array); [] once Slurm has forgotten it."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return []
        raise SlurmJobFailed(f"scontrol show job {job_id} failed: {done.stderr.strip()}")
    return parse_tasks(done.stdout)


def still_running(tasks: list[Task]) -> bool:
    return any(t.state in WAITING for t in tasks)


def submit(script: str, path: Path) -> str:
    """Write ``script`` to ``path`` and submit it; returns the job id."""
    atomic_write_text(path, script)
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SlurmJobFailed(f"sbatch {path} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]


def running_job(folder: Path, name: str, out=say) -> str | None:
    """The job ``<folder>/<name>.job`` names, while Slurm still has it queued or running (a runner stopped while it
    waited left it behind); else None."""
    marker = folder / f"{name}.job"
    job_id = marker.read_text().strip() if marker.exists() else None
    if job_id and still_running(job_tasks(job_id)):
        out(f"slurm job {job_id} of {name} is still queued or running: waiting for it")
        return job_id
    return None


def submit_job(script: str, folder: Path, name: str, out=say) -> str:
    """Submit ``script`` as ``<folder>/<name>.sbatch`` and note its id in ``<folder>/<name>.job``; returns the id."""
    folder.mkdir(parents=True, exist_ok=True)
    job_id = submit(script, folder / f"{name}.sbatch")
    atomic_write_text(folder / f"{name}.job", job_id + "\n")
    out(f"submitted slurm job {job_id} ({folder / name}.sbatch)")
    return job_id


def submit_or_find(script: str, folder: Path, name: str, out=say) -> str:
    """The job of ``name``: the one still running (``running_job``), else ``script`` submitted (``submit_job``)."""
    return running_job(folder, name, out) or submit_job(script, folder, name, out)


def wait(job_id: str, poll_s: float, out=say) -> list[Task]:
    """Wait until no task of the job is queued, running or requeued; returns the records Slurm then keeps
    (finished tasks until ``MinJobAge``; [] when it has forgotten the job). Each change of state is printed."""
    last = None
    while True:
        tasks = job_tasks(job_id)
        now = ", ".join(t.state if t.array_task is None else f"{t.array_task}: {t.state}" for t in tasks) or "ended"
        if now != last:
            out(f"slurm job {job_id}: {now}")
            last = now
        if not still_running(tasks):
            return tasks
        time.sleep(poll_s)
