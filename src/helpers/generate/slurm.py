"""``generate.launcher: slurm``: the models of the generate stage as one sbatch job array, one task per model.

The runner runs the generate notebook where it was started (a login node), once for every model (``generate-all``,
as with the vllm backend). The notebook hands the models to ``answer_on_slurm``: the answers made under other
settings or weights are set aside as in a local run (``helpers.generate.stage.open_answers``), and the models that
still lack answers go into one job array (``<study>/slurm/generate.sbatch``, ``#SBATCH --array=0-N``). Task i reads
its model from the list written in the script and runs ``python -m helpers answer --model M``: the same local
generation (``helpers.generate.stage.run``), with the task's GPUs (``generate.slurm.gpus_per_node``: the hf backend
spreads the model over them, the vllm backend runs one engine per GPU, ``generate.vllm.engines``). The runner waits
for every task (``scontrol show job``, ``helpers.study.slurm``), then checks that every model has an answer to every
eval item, naming the model, its task and the task's log otherwise.

Resuming: answers are appended batch by batch, so a task killed midway (``scontrol requeue``, a preemption, a node
lost with ``--requeue``) answers only the rest when it starts again; before the time limit Slurm warns the task
(``--signal=B:USR1@signal_s``) and it requeues itself. A runner stopped while it waits leaves the array running;
the next run finds its id in ``<study>/slurm/generate.job`` and waits for it instead of submitting another. Each
task's output, every restart appended, is ``<study>/slurm/generate-<job>_<task>.log``.
"""
from __future__ import annotations

import re
import shlex
import sys
from functools import partial
from pathlib import Path

from helpers.generate.stage import open_answers
from helpers.study.config import StudyConfig
from helpers.study.files import read_jsonl
from helpers.study.loading import study_dir
from helpers.study.paths import REPO, resolve
from helpers.study.slurm import SlurmJobFailed, Task, resource_lines, running_job, stale_runs, submit_job, wait

say = partial(print)

NAME = "generate"
"""The array's files under ``<study>/slurm/``: ``generate.sbatch``, ``generate.job``, ``generate-<job>_<task>.log``."""


def array_script(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, models: list[str],
                 overrides: tuple[str, ...] | list[str] = ()) -> str:
    """The sbatch script of the job array answering ``models``, task i answering ``models[i]``."""
    s, folder = cfg.generate.slurm, study_dir(cfg, root) / "slurm"
    time, *resources = resource_lines(s)
    head = [f"--job-name={cfg.study}-{NAME}", f"--array=0-{len(models) - 1}", "--nodes=1", "--ntasks=1", time,
            f"--output={folder / NAME}-%A_%a.log", "--open-mode=append", "--requeue", f"--signal=B:USR1@{s.signal_s}",
            *resources]
    answer = [sys.executable, "-m", "helpers", "answer", "--config", str(resolve(config_path)),
              "--root", str(resolve(root) if root else REPO)]
    answer += [a for o in overrides for a in ("--set", o)]
    lines = ["#!/bin/bash", *(f"#SBATCH {h}" for h in head),
             f"# {cfg.study}: answers of {len(models)} model(s), one array task each ({cfg.generate.backend} backend), "
             "written by helpers.generate.slurm", "",
             f"cd {shlex.quote(str(REPO))}", *s.setup,
             f"models=({' '.join(map(shlex.quote, models))})",
             'model=${models[$SLURM_ARRAY_TASK_ID]}',
             'echo "$(date -Is) task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) '
             'on $SLURM_JOB_NODELIST: model $model"',
             "# Slurm's warning before the time limit or a preemption: requeue this task; it resumes from its answers",
             'trap \'echo "$(date -Is) USR1: requeue"; scontrol requeue "$SLURM_JOB_ID"\' USR1',
             f'{shlex.join(answer)} --model "$model" &',
             "step=$!",
             "status=0; wait $step || status=$?",
             "while kill -0 $step 2>/dev/null; do status=0; wait $step || status=$?; done  # a trapped signal ends wait early",
             "exit $status", ""]
    return "\n".join(lines)


def array_models(script: str) -> list[str]:
    """The models of an array script as ``array_script`` wrote them (task i answers the i-th)."""
    found = re.search(r"^models=\((.*)\)$", script, re.M)
    return shlex.split(found.group(1)) if found else []


def unanswered(study_dir: Path, model: str) -> int:
    """How many eval items ``answers/<model>.jsonl`` lacks (all of them when it does not exist)."""
    ids = {it["id"] for it in read_jsonl(Path(study_dir) / "eval.jsonl")}
    path = Path(study_dir) / "answers" / f"{model}.jsonl"
    done = {r["id"] for r in read_jsonl(path, tolerate_torn_tail=True)} if path.exists() else set()
    return len(ids - done)


def answer_on_slurm(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, models: list[str],
                    overrides: tuple[str, ...] | list[str] = (), out=say) -> list[Path]:
    """Answer every eval item with each of ``models`` through one Slurm job array (or wait for the array already
    submitted); returns their answers files. Raises ``SlurmJobFailed`` naming each model left incomplete, with its
    task's state and log."""
    sd = study_dir(cfg, root)
    folder = sd / "slurm"
    job_id = running_job(folder, NAME, out)
    if job_id is None:
        todo = [m for m in models if open_answers(cfg, m, sd)[1]]
        if todo:
            job_id = submit_job(array_script(cfg, config_path, root, todo, overrides), folder, NAME, out)
            out(f"array of {len(todo)} task(s): {', '.join(f'{i}: {m}' for i, m in enumerate(todo))}; "
                f"their output: {folder / NAME}-{job_id}_<task>.log")
    if job_id is not None:
        tasks = {t.array_task: t for t in wait(job_id, cfg.generate.slurm.poll_s, out)}
        array = array_models((folder / f"{NAME}.sbatch").read_text())
        problems = []
        for m in models:
            left = unanswered(sd, m)
            if not left:
                continue
            if m not in array:
                problems.append(f"answers/{m}.jsonl lacks {left} answer(s) and model {m} was not in job {job_id}")
                continue
            i = array.index(m)
            task = tasks.get(str(i), Task(str(i), "gone from scontrol", "?"))
            problems.append(f"answers/{m}.jsonl lacks {left} answer(s): task {i} of slurm job {job_id} ended "
                            f"{task.state} (exit code {task.exit_code}); its log: {folder / NAME}-{job_id}_{i}.log")
        if problems:
            raise SlurmJobFailed("the generate array left answers incomplete (run again to answer the rest):\n  "
                                 + "\n  ".join(problems))
        (folder / f"{NAME}.job").unlink(missing_ok=True)
    return [sd / "answers" / f"{m}.jsonl" for m in models]


def print_job_scripts(config_path: str | Path, root: str | Path | None, overrides: tuple[str, ...] | list[str] = (),
                      out=say) -> None:
    """The dry run with ``generate.launcher: slurm``: the array script for the models whose answers are not complete
    now (every model before the data stage has written the eval set)."""
    from helpers.study.loading import load_config

    cfg = load_config(config_path, overrides)
    if cfg.generate.launcher != "slurm":
        return
    sd = study_dir(cfg, root or REPO)
    for run in stale_runs(cfg, sd, "generate"):
        have_eval = (sd / "eval.jsonl").exists()
        models = [m for m in cfg.models if not have_eval or unanswered(sd, m)]
        if models:
            out(f"--- sbatch script of {run.label} ({sd / 'slurm' / NAME}.sbatch) ---")
            out(array_script(cfg, config_path, root or REPO, models, overrides))
