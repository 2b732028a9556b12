"""Preflight: everything a study needs that can be known before its first costly stage, checked in seconds.

Why: without it, a study whose judge prompts file lacks a prompt for one use case trains every model,
generates every answer and only then fails in the judge stage; on GPUs that is hours. The runner
(``helpers.study.runner.run_study``) therefore calls ``check_study`` before the first stage
execution of a run that includes a costly stage (self-instruct, training, generation, judging),
and ``--dry-run`` calls it too and prints what it found. Nothing is trained, generated or paid for
when a check fails: every problem is collected, and all of them stop the run together, each
starting with the setting to fix (``judge.prompts_file: no prompt for use case(s) code, math ...``).

It sits above the stages, next to ``helpers.validate``, because its checks belong to several of
them (the eval set to the data stage, rubric prompts and the offline judge's checks to the judge,
seed tasks to self-instruct), while the runner is shared by every stage and imports none of them:
the command line passes ``check_study`` to ``run_study`` as it passes the report builder.

The checks (each only where a stage that needs it will run):

=================  =================================================================================
files              train files (local, or a plausible hub name), the eval file, seed tasks and the
                   self-instruct prompt, the accelerate config, local base models and checkpoints:
                   present and readable
eval set           ``data.eval_file`` loads (bad records name the file and the line), or the built-in
                   suite's split; the same items the data stage will write
judge prompts      each LLM judge (``judge``, every one of ``judge.others``): its ``prompts_file`` loads
                   and has a rubric for every use case of the eval set
offline judge      an offline judge (headline or other): every eval item has a check or a reference to
                   score against
                   (BELLE's released eval set has no reference for brainstorming, generation and much
                   of rewrite: those need the LLM judge)
endpoints          each LLM judge and the self-instruct teacher: the key is set, and one ``GET /models``
                   (openai's ``models.list``, 10 s timeout, no retries) answers, accepts the key and
                   lists the model
generate backend   ``generate.backend: vllm``: vLLM importable by the interpreter that will run it, LoRA
                   ranks (``train.lora.r``, adapters already trained) within ``max_lora_rank``, LoRA
                   supported by vLLM on the base model's architecture (not on Bloom);
                   ``server``: the key is set, ``GET /models`` answers and lists the served name of
                   every model that exists now (models this run trains are served after it)
checkpoints        their count, size and write time at the save cadence
disk               room for everything the run will write (``helpers.estimate.disk_plan``: data files, the
                   tokenized cache, published models, two checkpoints, answers, judgments and reply caches,
                   notebooks, their HTML and logs, the report, the embedded model's one-time copy) with a
                   margin, on each disk it goes to, else the run is refused
training reports   ``train.report_to`` other than none: its package is installed (and for wandb the key is
                   set, or ``WANDB_MODE=offline``); ``train.launcher: slurm``: sbatch and scontrol on PATH
generate launcher  ``generate.launcher: slurm``: sbatch and scontrol on PATH
scales             the largest scale fits the records of local train files (counted cheaply: JSON
                   lines, parquet metadata); the built-in and generated pools are checked by the
                   config itself, hub datasets only by the data stage
mixtures           ``data.mixture``: every mixture can be filled from the pool (the built-in suite's pool
                   or local train files, before de-duplication and filters; each use case short is
                   named with both counts); a generated pool or hub datasets only by the data stage
=================  =================================================================================

Settings that have no effect (``data.train_files`` with the built-in suite, judge settings with the
offline judge, ...) need no files or network to know, so they are config errors
(``helpers.study.rules.ignored_settings``) and stop the study even earlier.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from helpers.study.config import StudyConfig
from helpers.study.paths import resolve


@dataclass
class Check:
    """One check's outcome: what it looked at, what it found, and its problems (none: passed)."""
    name: str
    found: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        head = f"  [{'ok' if self.ok else 'FAIL':<4}] {self.name}"
        return head + (f": {self.found}" if self.found else "") + "".join(f"\n         {p}" for p in self.problems)


class PreflightFailed(ValueError):
    """Problems found before the first costly stage; the message lists every one, each naming its setting."""

    def __init__(self, checks: list[Check]):
        self.checks = checks
        problems = [p for c in checks for p in c.problems]
        super().__init__(f"preflight: {len(problems)} problem{'s' if len(problems) != 1 else ''}, nothing was "
                         f"run\n  " + "\n  ".join(problems))


def check_study(cfg: StudyConfig, sd: Path, runs: list, out=print) -> list[Check]:
    """Check what ``runs`` (the runner's executions still to do) will need; print one line per check.

    Raises ``PreflightFailed`` listing every problem; returns the checks when all passed.
    """
    stages = {r.stage.name for r in runs}
    checks = []
    items = None
    if stages & {"data", "judge"}:  # the data stage writes the eval set, the judge scores against it
        items, eval_check = _eval_items(cfg, sd, "data" in stages)
        checks.append(eval_check)
    checks.append(_files(cfg, stages))
    if "data" in stages and cfg.data.source in ("file", "hf"):
        checks.append(_pool_size(cfg))
    if "data" in stages and cfg.mixture_models:
        checks.append(_mixtures(cfg))
    if "finetune" in stages:
        checks.append(_checkpoints(cfg, sd))
    checks.append(_disk(cfg, sd, runs))
    if "judge" in stages:  # every judge of the study scores every answer (helpers.study.judges)
        checks += _judges(cfg, items)
    if "selfinstruct" in stages:
        checks.append(_endpoint(cfg.selfinstruct, "selfinstruct", "the self-instruct teacher"))
    if "generate" in stages and cfg.generate.backend != "hf":
        checks.append(_generate_backend(cfg, sd, runs))
    if "finetune" in stages and (cfg.train.report_to != "none" or cfg.train.launcher != "local"):
        checks.append(_training_reports(cfg))
    if "generate" in stages and cfg.generate.launcher == "slurm":
        check = Check("generate launcher", "slurm: one job array per run of the stage")
        check.problems += _slurm_commands("generate")
        checks.append(check)
    for c in checks:
        out(c.line())
    if any(not c.ok for c in checks):
        raise PreflightFailed(checks)
    return checks


# ------------------------------------------------------------------------------------------ the eval set

def _eval_items(cfg: StudyConfig, sd: Path, data_will_run: bool) -> tuple[list[dict] | None, Check]:
    """The eval items the judge will see: from the source when the data stage will (re)write them,
    else the study's ``eval.jsonl``."""
    from helpers.data.loaders import load_eval
    from helpers.study.records import DataError

    written = Path(sd) / "eval.jsonl"
    if not data_will_run and written.is_file():
        from helpers.study.files import read_jsonl

        items = read_jsonl(written)
        return items, Check("eval set", f"{len(items)} items in {written}")
    if cfg.data.eval_file:
        path = resolve(cfg.data.eval_file)
        check = Check("eval set")
        if not path.is_file():
            check.problems.append(f"data.eval_file: {path} not found")
            return None, check
        try:
            items, _ = load_eval(path, category_map=cfg.data.category_map)
        except (DataError, OSError) as e:
            check.problems.append(f"data.eval_file: {e}")
            return None, check
        check.found = f"{len(items)} items in {path} ({_per_category(items)})"
        return items, check
    from helpers.data.suite import build_suite

    _, items = build_suite(cfg.seed, 0, cfg.data.eval_per_category)
    return items, Check("eval set", f"the built-in suite's split, {len(items)} items "
                                    f"({cfg.data.eval_per_category} per use case)")


def _per_category(items: list[dict]) -> str:
    counts = Counter(it["category"] for it in items)
    return ", ".join(f"{c} {n}" for c, n in sorted(counts.items()))


def _ids(items: list[dict], k: int = 3) -> str:
    ids = [str(it.get("id")) for it in items[:k]]
    return ", ".join(ids) + (", ..." if len(items) > k else "")


# ------------------------------------------------------------------------------------------ the judge

def _judges(cfg: StudyConfig, items: list[dict] | None) -> list[Check]:
    """Each LLM judge's prompts and endpoint, and (once, whichever judges use it) the offline judge's items:
    a second judge that cannot run must stop the study as early as the headline judge would."""
    from helpers.study.judges import study_judges

    checks, offline = [], False
    for j in study_judges(cfg):
        if j.settings.kind == "openai":
            checks.append(_judge_prompts(j.settings, j.section, items))  # without items (a bad eval file): the file
            checks.append(_endpoint(j.settings, j.section, "the LLM judge"))
        else:
            offline = True
    if offline and items is not None:
        checks.append(_offline_judge(items))
    return checks


def _judge_prompts(settings, section: str, items: list[dict] | None) -> Check:
    """An LLM judge needs a rubric for every use case of the eval set (``helpers.judge.llm.load_prompts``);
    ``settings`` is its config section, named ``section`` in the messages (``judge``, ``judge.others.gpt``)."""
    from helpers.judge.llm import JudgeError, load_prompts

    path = resolve(settings.prompts_file)
    check = Check(f"{section} prompts")
    try:
        prompts = load_prompts(path, section)
    except JudgeError as e:
        msg = str(e)
        key = f"{section}.prompts_file"
        check.problems.append(msg if msg.startswith(key) else f"{key}: {msg}")
        return check
    if items is None:
        check.found = f"{path} loads ({len(prompts)} use cases); the eval set could not be read to compare"
        return check
    by_cat: dict[str, list[dict]] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    missing = sorted(set(by_cat) - set(prompts))
    if missing:
        detail = "; ".join(f"{c} {len(by_cat[c])} ({_ids(by_cat[c])})" for c in missing)
        check.problems.append(f"{section}.prompts_file: no prompt for use case(s) {', '.join(missing)} in {path} "
                              f"(eval items: {detail}); add a {{class, prompt}} line for each")
    else:
        check.found = f"{path} has a rubric for each of the {len(by_cat)} use cases of the eval set"
    return check


def _offline_judge(items: list[dict]) -> Check:
    """The offline judge scores against each item's check or reference (``helpers.judge.offline.unscorable``)."""
    from helpers.judge.offline import unscorable

    bad: dict[tuple[str, str], list[dict]] = {}
    for it in items:
        why = unscorable(it)
        if why:
            bad.setdefault((it["category"], why), []).append(it)
    check = Check("offline judge")
    if not bad:
        check.found = f"every one of the {len(items)} eval items has a check or a reference to score against"
        return check
    n = sum(len(v) for v in bad.values())
    detail = "; ".join(f"{cat} {len(v)} ({why}: {_ids(v)})" for (cat, why), v in sorted(bad.items()))
    cats = sorted({cat for cat, _ in bad})
    check.problems.append(
        f"judge.kind: offline cannot score {n} of {len(items)} eval items: {detail}. Judge "
        f"{', '.join(cats)} with an LLM (judge.kind: openai, a rubric per use case in judge.prompts_file), "
        f"or give each such item a reference or a check")
    return check


# ------------------------------------------------------------------------------------------ endpoints

def _endpoint(settings, section: str, who: str) -> Check:
    """Key set (``check_api_key``) and one ``GET /models`` (``probe_endpoint``)."""
    from helpers.openai_client import check_api_key, probe_endpoint

    where = settings.base_url or "the OpenAI API"
    check = Check(f"{section} endpoint")
    try:
        key = check_api_key(settings, section, who, ValueError)
    except ValueError as e:
        check.problems.append(str(e))
        return check
    problem = probe_endpoint(settings, section, key)
    if problem:
        check.problems.append(problem)
    else:
        check.found = f"{where} answers, accepts the key in ${settings.api_key_env} and serves {settings.model!r}"
    return check


# ------------------------------------------------------------------------------------------ generate backend

def _generate_backend(cfg: StudyConfig, sd: Path, runs: list) -> Check:
    """What the vllm or server backend needs, for the models whose answers this run will generate."""
    from helpers.generate.backend import GenerateError

    generating = [m for r in runs if r.stage.name == "generate" for m in (cfg.models if r.key == "all" else [r.key])]
    training = {p.name for r in runs if r.stage.name == "finetune" for p in r.outputs}
    existing = [m for m in generating if m not in training]
    check = Check(f"generate backend ({cfg.generate.backend})")
    try:
        if cfg.generate.backend == "vllm":
            check.found = _vllm_ready(cfg, sd, existing, training)
        else:
            check.found = _server_ready(cfg, existing, [m for m in generating if m in training])
    except (GenerateError, FileNotFoundError, ValueError) as e:
        check.problems.append(str(e))
    return check


def _vllm_ready(cfg: StudyConfig, sd: Path, existing: list[str], training: set[str]) -> str:
    from helpers.generate.backend import GenerateError
    from helpers.generate.vllm_backend import engine_version, lora_support, model_source, vllm_python

    limit = cfg.generate.vllm.max_lora_rank
    if training and cfg.train.method == "lora" and cfg.train.lora.r > limit:
        raise GenerateError(f"generate.vllm.max_lora_rank: the models this run trains get LoRA rank train.lora.r = "
                            f"{cfg.train.lora.r}, above max_lora_rank {limit}; raise it to at least {cfg.train.lora.r}")
    for m in existing:
        if m == "base" or m in cfg.model.checkpoints or (sd / "models" / m).exists():
            model_source(cfg, m, sd)  # an adapter's rank above max_lora_rank raises here
    python = vllm_python()
    found = f"{engine_version(python)} in {python}"
    adapters = [m for m in existing if (sd / "models" / m / "adapter_config.json").exists()]
    if (training and cfg.train.method == "lora") or adapters:
        arch = _architecture(cfg)
        if arch is None:
            return found + "; the base model's architecture is not readable here, so vLLM's LoRA support is unchecked"
        if not lora_support(python, arch):
            raise GenerateError(
                f"generate.backend: vllm cannot serve LoRA adapters on {arch} (model.base {cfg.model.base}): vLLM has "
                f"no LoRA support for that architecture. Set train.method: full, or generate.backend: hf (which "
                f"applies adapters itself)")
        found += f"; LoRA adapters on {arch}: supported"
    return found


def _architecture(cfg: StudyConfig) -> str | None:
    """The base model's architecture (``BloomForCausalLM``) from its config.json, local or from the Hub's cache
    or the Hub itself; None where it cannot be read."""
    from helpers.study.models import base_model_path

    try:
        from transformers import AutoConfig

        return (AutoConfig.from_pretrained(base_model_path(cfg)).architectures or [None])[0]
    except (OSError, ValueError):
        return None


def _server_ready(cfg: StudyConfig, existing: list[str], later: list[str]) -> str:
    from helpers.generate.backend import GenerateError
    from helpers.openai_client import check_api_key, list_models

    s, section = cfg.generate.server, "generate.server"
    key = check_api_key(s, section, "the server backend", GenerateError)
    listed, problem = list_models(s, section, key)
    if problem:
        raise GenerateError(problem)
    missing = [f"{m!r} (served name {s.served_name(m)!r})" for m in existing if listed and s.served_name(m) not in listed]
    if missing:
        raise GenerateError(f"{section}.models: {s.base_url} does not serve {', '.join(missing)}; it lists "
                            f"{', '.join(map(repr, sorted(listed)))}. Map each study model to a served name")
    found = f"{s.base_url} answers and serves {', '.join(repr(s.served_name(m)) for m in existing) or 'nothing needed yet'}"
    if later:
        found += f"; after training it must serve {', '.join(repr(s.served_name(m)) for m in later)}"
    return found


# ------------------------------------------------------------------------------------------ files

_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".txt", ".arrow")


def _readable(path: Path) -> str | None:
    """None when ``path`` is a readable file or folder, else what is wrong."""
    if not path.exists():
        return f"{path} not found"
    if path.is_dir():
        return None if os.access(path, os.R_OK | os.X_OK) else f"{path}: folder not readable"
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as e:
        return f"{path}: not readable ({e.strerror or e})"
    return None


def _looks_local(spec: str) -> bool:
    """A spec that can only be meant as a local path (a hub name is ``owner/name`` without a file suffix)."""
    return spec.startswith(("/", ".", "~")) or spec.lower().endswith(_DATA_SUFFIXES) or not _HUB_NAME.match(spec)


def _files(cfg: StudyConfig, stages: set[str]) -> Check:
    """Every file the stages to run will open, present and readable."""
    wanted: list[tuple[str, str]] = []  # (setting, path)
    problems: list[str] = []
    hub = []
    if "data" in stages:
        for spec in cfg.data.train_files:
            if resolve(spec).exists() or _looks_local(spec):
                wanted.append(("data.train_files", spec))
            else:
                hub.append(spec)
    if "selfinstruct" in stages:
        wanted += [("selfinstruct.seeds_file", cfg.selfinstruct.seeds_file),
                   ("selfinstruct.prompt_file", cfg.selfinstruct.prompt_file)]
    if "finetune" in stages and cfg.train.accelerate_config:
        wanted.append(("train.accelerate_config", cfg.train.accelerate_config))
    if stages & {"finetune", "generate"} and cfg.model.base != "embedded" and _looks_local(cfg.model.base):
        wanted.append(("model.base", cfg.model.base))
    if "generate" in stages:
        wanted += [(f"model.checkpoints.{k}", v) for k, v in cfg.model.checkpoints.items() if _looks_local(v)]
    for setting, spec in wanted:
        why = _readable(resolve(spec))
        if why:
            problems.append(f"{setting}: {why}")
    if "selfinstruct" in stages and not problems:
        problems += _selfinstruct_files(cfg)
    found = ", ".join(dict.fromkeys(s for s, _ in wanted)) + " readable" if wanted else "none to read here"
    if hub:
        found += f"; hub dataset(s) {', '.join(hub)}: fetched by the data stage"
    return Check("files", "" if problems else found, problems)


def _selfinstruct_files(cfg: StudyConfig) -> list[str]:
    """The seed tasks and the request template load (the self-instruct stage's own loaders)."""
    from helpers.selfinstruct.request import SelfInstructError, load_prompt
    from helpers.selfinstruct.seeds import load_seed_tasks
    from helpers.study.records import DataError

    problems = []
    for load in (lambda: load_seed_tasks(cfg), lambda: load_prompt(cfg.selfinstruct.prompt_file)):
        try:
            load()
        except (SelfInstructError, DataError) as e:
            msg = str(e)
            problems.append(msg if msg.startswith("selfinstruct.") else f"selfinstruct: {msg}")
    return problems


# ------------------------------------------------------------------------------------------ checkpoints

def _checkpoints(cfg: StudyConfig, sd: Path) -> Check:
    """The checkpoints the training will write: their count, size and write time (``helpers.estimate.checkpoint_plan``);
    whether they fit the disk with everything else is the disk check's."""
    from helpers.estimate import WRITE_GBPS, checkpoint_plan
    from helpers.finetune.memory import size

    try:
        plan = checkpoint_plan(cfg, sd)
    except ValueError as e:  # the accelerate config cannot be read: a missing file is one of _files' problems
        missing = cfg.train.accelerate_config and not resolve(cfg.train.accelerate_config).exists()
        check = Check("checkpoints", "not counted: the accelerate config cannot be read")
        check.problems += [] if missing else [str(e)]
        return check
    cadence = (f"every {cfg.train.save_steps} steps" if cfg.train.save_steps else
               f"every {cfg.train.save_share:g} of a run") + (
        f" and {cfg.train.save_minutes:g} minutes" if cfg.train.save_minutes else "")
    return Check("checkpoints", f"{sum(plan['counts']):,} of {size(plan['bytes'])} ({cadence}), about "
                                f"{plan['write_hours']:.1f} hours of writing at {WRITE_GBPS:g} GB/s; two at once")


def _disk(cfg: StudyConfig, sd: Path, runs: list) -> Check:
    """Room for everything ``runs`` will write, with a margin, on each disk it goes to (``helpers.estimate.disk_plan``):
    a study that runs out of space loses the stage it was in (the micro study once passed a check that counted
    only checkpoints and models, on an 84 MiB disk, and failed saving its first model)."""
    from helpers.estimate import disk_parts, disk_plan
    from helpers.finetune.memory import size
    from helpers.study.models import embedded_model_target

    try:
        disks = disk_plan(cfg, sd, runs)["disks"]
    except ValueError:  # the accelerate config cannot be read: the checkpoints check or _files names it
        return Check("disk", "not counted: the accelerate config cannot be read")
    cache = embedded_model_target().resolve()
    check = Check("disk", "; ".join(f"{d['path']}: {size(d['need'])} at most of {size(d['free'])} free" for d in disks))
    for d in disks:
        if d["need"] > d["free"]:
            where = "set STUDY_CACHE to a folder on a larger disk" if cache.is_relative_to(d["path"]) and \
                not Path(sd).resolve().is_relative_to(d["path"]) else "pass --root to a folder on a larger disk"
            check.problems.append(f"disk: the run needs at most {size(d['need'])} on the disk of {d['path']} "
                                  f"({disk_parts(d)}), but it has {size(d['free'])} free: free space there, or {where}")
    return check


# ------------------------------------------------------------------------------------------ scales

def count_records(path: Path) -> int | None:
    """Records in a local train file without parsing them all: JSON lines (non-empty lines), parquet
    (its metadata), a JSON array under 64 MB; None where that is not cheap (folders, large JSON)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        return None
    if suffix == ".jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if suffix == ".json" and path.stat().st_size < 64 << 20:
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            return None  # the data stage names the line
        return len(data) if isinstance(data, list) else None
    return None


def _training_reports(cfg: StudyConfig) -> Check:
    """``train.report_to`` can work here (helpers.finetune.watch); with ``train.launcher: slurm`` Slurm's commands are at hand."""
    from helpers.finetune.watch import report_problem

    check = Check("training", f"report_to {cfg.train.report_to}, launcher {cfg.train.launcher}")
    found = report_problem(cfg)
    check.problems += [found] if found else []
    check.problems += _slurm_commands("train") if cfg.train.launcher == "slurm" else []
    return check


def _slurm_commands(section: str) -> list[str]:
    """With ``<section>.launcher: slurm``: the problem of Slurm's commands missing here, if they are."""
    import shutil

    missing = [c for c in ("sbatch", "scontrol") if not shutil.which(c)]
    if not missing:
        return []
    return [f"{section}.launcher: slurm, but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not on PATH; run the study on the cluster's login node, or set launcher: local"]


def _pool_size(cfg: StudyConfig) -> Check:
    """The largest scale against the records of the train files, where they can be counted now; with
    ``data.largest_scale: whole_pool`` the scale below it, which must leave the largest more records (as the data
    stage requires after filtering)."""
    total, unknown = 0, []
    for spec in cfg.data.train_files:
        n = count_records(resolve(spec))
        if n is None:
            unknown.append(spec)
        else:
            total += n
    check = Check("scales")
    filters = "before de-duplication and filters, which only remove more"
    if cfg.data.largest_scale == "whole_pool":  # the largest takes what there is; the one below must leave it more
        below = cfg.scales[-2] if len(cfg.scales) > 1 else 0
        which = f"{below}, the scale below the largest (data.largest_scale: whole_pool takes the whole pool),"
        if not unknown and below >= total:
            check.problems.append(f"scales: {which} leaves no more of the {total} records of data.train_files "
                                  f"to the largest ({filters})")
        elif not unknown:
            check.found = f"{which} leaves the largest more of the {total} records of data.train_files"
    elif not unknown and cfg.scales[-1] > total:
        check.problems.append(
            f"scales: the largest scale {cfg.scales[-1]} exceeds the {total} records of data.train_files ({filters})")
    elif not unknown:
        check.found = f"the largest scale {cfg.scales[-1]} fits the {total} records of data.train_files (before filters)"
    if unknown:
        counted = f"{total} records counted in the other files; " if len(unknown) < len(cfg.data.train_files) else ""
        check.found = (f"{counted}{', '.join(unknown)}: not known before the data stage, which stops if the "
                       "largest scale exceeds the pool")
    return check


def _mixtures(cfg: StudyConfig) -> Check:
    """Every mixture of ``data.mixture`` drawn from the pool as the data stage will draw it (``helpers.data.mixture``):
    the built-in suite's pool is built (a second or two), local train files are read; a use case a mixture needs
    more of than the pool holds is named with both counts."""
    from helpers.data.mixture import MixtureError, study_mixtures
    from helpers.study.records import DataError

    check = Check("mixtures")
    pool = None
    if cfg.data.source == "builtin":
        from helpers.data.suite import build_suite

        pool, _ = build_suite(cfg.seed, cfg.data.pool_size, 0)
        where = f"the built-in pool of {len(pool)} items"
    elif cfg.data.source == "file" and all(_looks_local(f) and resolve(f).exists() for f in cfg.data.train_files):
        from helpers.data.loaders import load_train

        pool, seen = [], {}
        try:
            for spec in cfg.data.train_files:
                pool += load_train(spec, category_map=cfg.data.category_map, start=len(pool), seen_ids=seen)[0]
        except (DataError, OSError, ValueError):
            check.found = "the train files do not load (the files check names why); the data stage checks the mixtures"
            return check
        where = f"the {len(pool)} records of data.train_files, before de-duplication and filters"
    if pool is None:
        check.found = f"the pool (data.source: {cfg.data.source}) is known only to the data stage, which checks them"
        return check
    try:
        drawn, _ = study_mixtures(cfg, pool)
    except MixtureError as e:
        check.problems.append(f"{e} ({where})")
    except ValueError as e:  # the largest scale itself exceeds the pool: the data stage names it
        check.problems.append(f"data.mixture: {e}")
    else:
        check.found = f"{len(drawn)} mixtures of {cfg.scales[-1]} items each fill from {where}"
    return check
