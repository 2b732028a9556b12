"""Fixtures every test folder shares: tiny models, the fake OpenAI-compatible server, a finished micro study.

The tiny models are a randomly initialised Gemma 3 with the real tokenizer and a Bloom with a tokenizer
learned from the built-in suite: unit tests train and generate with them in seconds. The tokenizer comes
from the converted embedded model (converted once per machine into the model cache). The micro study
(configs/micro.yaml on the real embedded model, through papermill) runs once per test run, for every
test that needs a finished study.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_openai import ENV, KEY, FakeOpenAI

EVERY_CORE = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pytest_configure(config):
    """Each pytest-xdist worker on cores of its own (``make test`` runs one worker per core).

    Torch sizes its thread pool from the cores a process may use, and every stage a test starts (a kernel, a
    training process) inherits them. Two workers that each ran two threads on the same two cores made matmul-heavy
    tests 2.2x slower than one worker per core (OpenMP threads spin while waiting for one another)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or not EVERY_CORE:
        return
    i, n = int(worker.removeprefix("gw")), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.sched_setaffinity(0, EVERY_CORE[i::n] or [EVERY_CORE[i % len(EVERY_CORE)]])


def pytest_collection_modifyitems(items):
    """The longest tests first: the chaos test (a quarter of ``make test-all``'s work), then the other slow ones,
    then the quick ones that read the shared micro study, then the rest. pytest-xdist queues tests in this order and,
    with ``--dist worksteal`` (the Makefile's), a worker that runs out takes the far end of the other's queue: the
    quick ones fill the end, rather than one worker running long tests alone on its core while the other has nothing
    left. In ``make test`` the first worker builds the micro study (two minutes, about one core's work) while the
    other runs the tests that do not need it, instead of waiting for it."""
    def rank(item) -> int:
        if item.get_closest_marker("chaos"):
            return 0
        if item.get_closest_marker("slow"):
            return 1
        return 2 if "micro_study" in getattr(item, "fixturenames", ()) else 3

    items.sort(key=rank)  # stable: the order within each group is the files' order


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from helpers.study.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(embedded_dir)
    config.update({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                   "layer_types": ["sliding_attention", "full_attention"]})
    model = AutoModelForCausalLM.from_config(config)
    path = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory) -> Path:
    """Bloomz's architecture (its inner network is ``.transformer``, not ``.model``), random, with a
    byte-level BPE tokenizer learned from the built-in suite (no download)."""
    from helpers.data.suite import build_suite
    from helpers.finetune.tiny import build_tiny_bloom
    from helpers.study.prompt import format_prompt

    pool, _ = build_suite(0, 200, 0)
    texts = [format_prompt(r["instruction"], r["input"]) + r["output"] for r in pool]
    return build_tiny_bloom(tmp_path_factory.mktemp("tiny-bloom"), texts)


@pytest.fixture
def server(monkeypatch):
    """A fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py), its key in ``$STUDY_TEST_API_KEY``.

    It asks for no wait before a retry (``Retry-After: 0``); a test that wants one sets ``server.retry_after``.
    A folder's conftest or a test module overrides the fixture where its server needs more (a teacher's replies).
    """
    monkeypatch.setenv(ENV, KEY)
    with FakeOpenAI(api_key=KEY, retry_after="0", lifetime_s=900) as srv:
        yield srv


@pytest.fixture
def slurm_on_path(tmp_path, monkeypatch) -> Path:
    """``sbatch`` and ``scontrol`` on PATH, as on a cluster's login node, for dry runs that must print job scripts and
    pass the preflight on a machine without Slurm. Each fails loudly if called: a dry run submits nothing."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for name in ("sbatch", "scontrol"):
        (bin_dir / name).write_text(f"#!/bin/sh\necho '{name} called by a dry run' >&2\nexit 97\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


@pytest.fixture(scope="session")
def micro_study(tmp_path_factory):
    """``(root, report index, runner output lines)`` of configs/micro.yaml run once to the end by the runner.

    Once per test run: with pytest-xdist's workers (``make test`` runs two) the first to ask runs it under a file
    lock in the run's shared temp folder and the others wait for it and read what it wrote."""
    import json

    from filelock import FileLock

    from helpers.analysis.report import build_index
    from helpers.analysis.summary import summary_lines
    from helpers.study.paths import REPO
    from helpers.study.runner import run_study

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder above each worker's own
    root, done = shared / "micro", shared / "micro.finished.json"
    # on the asking worker's core only: the study is about one core's work (a kernel at a time; 124 s on one core,
    # 122 s on two), and the other workers go on with tests that do not need it
    with FileLock(str(shared / "micro.lock")):
        if not done.exists():
            root.mkdir(exist_ok=True)
            lines: list[str] = []
            index = run_study(REPO / "configs" / "micro.yaml", root=root, out=lines.append, report=build_index,
                              summary=summary_lines, verbose=False)
            done.write_text(json.dumps({"index": str(index), "lines": lines}))
    finished = json.loads(done.read_text())
    return root, Path(finished["index"]), finished["lines"]


@pytest.fixture
def micro_copy(micro_study, tmp_path) -> Path:
    """A copy of the finished micro study (its root), for a test that runs or changes it: the shared one is read by
    other workers at the same time. A study folder moved elsewhere stays up to date."""
    import shutil

    shutil.copytree(micro_study[0], tmp_path / "micro", symlinks=True)
    return tmp_path / "micro"
