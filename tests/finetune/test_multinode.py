"""Two machines on loopback: two ``accelerate launch`` commands with machine ranks 0 and 1 on 127.0.0.1, DeepSpeed
ZeRO-3 on the CPU (configs/accelerate/deepspeed_zero3.yaml, its multi-node launcher standard), against one
2-process launch of the same training: the same losses, step by step."""
import importlib.util
import os
import socket
import subprocess

import pytest
import yaml

from helpers.finetune.launch import Node, launch_command, slurm_node
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO

RECORDS = [{"id": f"m{i}", "instruction": f"复述数字{i}", "input": "", "output": f"{i}{i}", "category": "rewrite"}
           for i in range(8)]
ZERO3 = "configs/accelerate/deepspeed_zero3.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study(root, tiny_bloom_dir):
    raw = {"study": "nodes", "seed": 0, "scales": [8], "data": {"pool_size": 40, "eval_per_category": 1},
           "model": {"base": str(tiny_bloom_dir)},
           "train": {"method": "full", "batch_size": 4, "per_device_batch_size": 2, "num_processes": 2, "max_length": 32,
                     "bf16": True, "lr": 1e-3, "accelerate_config": ZERO3}}
    config = root / "nodes.yaml"
    config.write_text(yaml.safe_dump(raw))
    write_jsonl(root / "data" / "nodes" / "subsets" / "8.jsonl", RECORDS)
    return config


def test_the_zero3_config_uses_the_standard_multinode_launcher():
    raw = yaml.safe_load((REPO / ZERO3).read_text())
    assert raw["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"


def test_a_node_reads_its_place_from_slurm(monkeypatch):
    """SLURM_JOB_NODELIST is expanded by Slurm's own scontrol (here a stand-in printing what it would)."""
    calls = []

    def scontrol(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="gpu-a01\ngpu-a02\n")

    monkeypatch.setattr(subprocess, "run", scontrol)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    node = slurm_node({"SLURM_JOB_ID": "123456", "SLURM_NNODES": "2", "SLURM_NODEID": "1",
                       "SLURM_JOB_NODELIST": "gpu-a[01-02]"})
    assert calls == [["scontrol", "show", "hostnames", "gpu-a[01-02]"]]
    assert node == Node(2, 1, "gpu-a01", 20000 + 123456 % 20000)
    with pytest.raises(RuntimeError, match="SLURM_NODEID"):
        slurm_node({"SLURM_JOB_ID": "1", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "a"})


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None and not os.environ.get("CI"),
                    reason="DeepSpeed is not installed (pip install -e .[gpu]; make test installs it)")
def test_two_machines_on_loopback_train_as_one_two_process_launch(tmp_path, tiny_bloom_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    logs = {}
    for root in (one, two):
        root.mkdir()
        config = study(root, tiny_bloom_dir)
        cfg = load_config(config)
        if root == one:
            cmds = [launch_command(cfg, config, root, "8")]
        else:
            port = free_port()
            cmds = [launch_command(cfg, config, root, "8", node=Node(2, rank, "127.0.0.1", port)) for rank in (0, 1)]
            assert all(c[c.index("--num_processes") + 1] == "2" for c in cmds)  # every process of every machine
        procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env=dict(os.environ)) for c in cmds]
        outs = [p.communicate(timeout=900)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), "\n----\n".join(o[-3000:] for o in outs)
        assert "ZeRO-3: the weights were partitioned as they loaded" in outs[0]
        logs[root] = read_jsonl(root / "data" / "nodes" / "models" / "8" / "train_log.jsonl")
    assert [r["step"] for r in logs[two]] == [r["step"] for r in logs[one]] == [1, 2]
    assert [r["loss"] for r in logs[two]] == pytest.approx([r["loss"] for r in logs[one]], rel=1e-5)
    assert [r["tokens_seen"] for r in logs[two]] == [r["tokens_seen"] for r in logs[one]]
