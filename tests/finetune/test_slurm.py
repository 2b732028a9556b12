"""train.launcher: slurm. The job scripts a dry run prints, and (``make test-slurm``, marked ``slurm``) the real
thing: a one-node Slurm on 127.0.0.1 (tests/finetune/slurm_cluster.sh) trains the micro study's model through sbatch with
2 processes, is killed once by ``scontrol requeue`` and warned once by Slurm's USR1, and ends with the same log
and the same weights as the same training run locally."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from builders import wait_for

from helpers.__main__ import main
from helpers.study.files import read_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO

CLUSTER = ["train.launcher=slurm", "train.slurm.gpus_per_node=0", "train.slurm.cpus_per_task=2",
           "train.slurm.partition=debug", "train.slurm.poll_s=1"]


def test_the_dry_run_prints_the_job_script_of_every_training_run(tmp_path, capsys, slurm_on_path):
    sets = ["train.num_processes=16", "train.per_device_batch_size=1", "train.batch_size=16", "train.launcher=slurm",
            "train.slurm.nodes=2", "train.slurm.partition=gpu", "train.slurm.account=belle", "train.slurm.time=2-00:00:00",
            "train.slurm.setup=[module load cuda/12.4]"]
    args = ["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--dry-run"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    printed = capsys.readouterr().out
    sd = tmp_path / "data" / "micro"
    for scale in ("4", "12"):
        head = f"--- sbatch script of finetune-{scale} ({sd}/slurm/finetune-{scale}.sbatch) ---\n#!/bin/bash\n"
        assert head in printed
        script = printed.split(head)[1].split("\n---")[0]
        for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                     "#SBATCH --partition=gpu", "#SBATCH --account=belle", "#SBATCH --time=2-00:00:00",
                     "#SBATCH --requeue", "#SBATCH --signal=B:USR1@600", f"#SBATCH --output={sd}/slurm/finetune-{scale}.log",
                     "module load cuda/12.4", 'scontrol requeue "$SLURM_JOB_ID"'):
            assert line + "\n" in script, line
        assert f"srun --kill-on-bad-exit=1 {sys.executable} -m helpers launch --config {REPO}/configs/micro.yaml " \
               f"--root {tmp_path} --scale {scale}" in script
    assert not sd.exists() or not (sd / "slurm").exists()  # nothing written, nothing submitted


def runner(root, *sets, env=None):
    cmd = [sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--root", str(root)]
    return cmd + [a for s in sets for a in ("--set", s)]


def checkpoint(sd: Path, step: int) -> bool:
    return (sd / "models" / ".12.tmp" / "trainer" / f"checkpoint-{step}" / "trainer_state.json").exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_training_through_sbatch_survives_a_requeue_and_a_warning_and_matches_a_local_run(tmp_path):
    if not os.environ.get("SLURM_CONF") or not shutil.which("sbatch"):
        pytest.fail("no Slurm: run `make test-slurm` (starts one with tests/finetune/slurm_cluster.sh)")
    study = ["scales=[12]", "train.num_processes=2", "train.per_device_batch_size=2", "train.epochs=2",
             "train.save_steps=1"]
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    done = subprocess.run(runner(local, *study) + ["--only", "data"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.copytree(local / "data" / "micro", cluster / "data" / "micro", ignore=shutil.ignore_patterns(".stages", "notebooks"))
    done = subprocess.run(runner(local, *study) + ["--only", "finetune"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    sd = cluster / "data" / "micro"
    proc = subprocess.Popen(runner(cluster, *study, *CLUSTER) + ["--only", "finetune"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job_file = sd / "slurm" / "finetune-12.job"
        wait_for("the job's submission", job_file.exists, proc)
        job = job_file.read_text().strip()
        log = sd / "slurm" / "finetune-12.log"
        wait_for("checkpoint-1", lambda: checkpoint(sd, 1), proc)
        subprocess.run(["scontrol", "requeue", job], check=True)  # killed mid-run, without warning
        wait_for("the restart", lambda: "(restart 1)" in log.read_text(), proc)
        wait_for("checkpoint-3 after the restart", lambda: checkpoint(sd, 3), proc)
        # Slurm's warning before a time limit: the batch shell gets USR1, every rank checkpoints and stops, requeue
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], check=True)
        out, _ = proc.communicate(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["scancel", job], check=False)
    text = log.read_text()
    assert proc.returncode == 0, out[-3000:] + text[-3000:]
    assert "USR1: checkpoint, then requeue" in text and "for the requeue" in text and "(restart 2)" in text, text[-3000:]
    assert "resuming from checkpoint-1" in text and "resuming from checkpoint-" in text.split("(restart 2)")[1]

    mine, theirs = sd / "models" / "12", local / "data" / "micro" / "models" / "12"
    keep = ("step", "loss", "tokens_seen", "epoch")
    got = [{k: r[k] for k in keep if k in r} for r in read_jsonl(mine / "train_log.jsonl")]
    want = [{k: r[k] for k in keep if k in r} for r in read_jsonl(theirs / "train_log.jsonl")]
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, 7))
    assert [r["tokens_seen"] for r in got] == [r["tokens_seen"] for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-4)
    from safetensors.torch import load_file

    a, b = load_file(mine / "adapter_model.safetensors"), load_file(theirs / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert load_config(REPO / "configs" / "micro.yaml").train.launcher == "local"


def test_a_stop_file_checkpoints_and_a_rerun_resumes_to_the_same_model(tmp_path, tiny_bloom_dir, monkeypatch):
    """Slurm's warning as the job script passes it on (the stop file), here in the second epoch: training saves a
    checkpoint and stops without publishing; the requeued run resumes and ends as an uninterrupted one."""
    from builders import make_config

    from helpers.finetune import slurm, stage
    from helpers.study.files import write_jsonl

    records = [{"id": f"s{i}", "instruction": f"复述数字{i}", "input": "", "output": f"{i}{i}{i}" * (1 + i % 3),
                "category": "rewrite"} for i in range(8)]
    cfg = make_config(tiny_bloom_dir, train={"method": "full", "batch_size": 2, "per_device_batch_size": 2, "epochs": 2,
                                             "max_length": 32, "bf16": False, "lr": 1e-3, "save_steps": 3})
    for root in ("stopped", "clean"):
        write_jsonl(tmp_path / root / "subsets" / "8.jsonl", records)
    clean, = stage.run(cfg, tmp_path / "clean", "8")

    stop = tmp_path / "finetune-8.stop"
    monkeypatch.setenv(slurm.STOP_ENV, str(stop))
    real = slurm.StopForRequeue.on_step_end

    def warned_at_step_6(self, args, state, control, **kw):  # Slurm's USR1 arrives during step 6 (epoch 2)
        if state.global_step == 6:
            stop.touch()
        return real(self, args, state, control, **kw)

    monkeypatch.setattr(slurm.StopForRequeue, "on_step_end", warned_at_step_6)
    assert stage.run(cfg, tmp_path / "stopped", "8") == []  # stopped: nothing published
    work = tmp_path / "stopped" / "models" / ".8.tmp" / "trainer"
    assert (work / "checkpoint-6" / "trainer_state.json").exists() and not (tmp_path / "stopped" / "models" / "8").exists()
    stop.unlink()
    monkeypatch.setattr(slurm.StopForRequeue, "on_step_end", real)
    resumed, = stage.run(cfg, tmp_path / "stopped", "8")
    keep = ("step", "loss", "tokens_seen")
    assert [{k: r[k] for k in keep} for r in read_jsonl(resumed / "train_log.jsonl")] == \
        [{k: r[k] for k in keep} for r in read_jsonl(clean / "train_log.jsonl")]
    from safetensors.torch import load_file

    a, b = load_file(resumed / "model.safetensors"), load_file(clean / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
