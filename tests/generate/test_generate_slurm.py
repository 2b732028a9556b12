"""generate.launcher: slurm. The job array's script (array line, the model of each task, resources, set-up lines),
the config's rules, the keys it stays out of, the dry run; and (``make test-slurm``, marked ``slurm``) the real
thing: a one-node Slurm on 127.0.0.1 (tests/finetune/slurm_cluster.sh) answers the micro study's models as one job
array, one task requeued mid-run and one cancelled mid-run, a rerun answers the rest, and the answers equal a
local run's."""
import os
import shutil
import signal
import subprocess
import sys

import pytest
from builders import make_config, wait_for

from helpers.__main__ import main
from helpers.generate.backend import answers_key
from helpers.generate.slurm import array_models, array_script
from helpers.study.files import read_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO
from helpers.study.runner import fingerprint, plan
from helpers.study.slurm import job_tasks, running_job

SLURM = {"launcher": "slurm", "slurm": {"partition": "gpu", "account": "belle", "gpus_per_node": 2, "cpus_per_task": 16,
                                        "time": "02:00:00", "setup": ["module load cuda/12.4", "source /shared/venv/bin/activate"]}}


def test_the_array_script_has_one_task_per_model_with_the_resources_of_each(tmp_path):
    cfg = make_config("m", generate={"batch_size": 6, "max_new_tokens": {"default": 6}, **SLURM})
    models = ["base", "4", "quality-8"]
    script = array_script(cfg, "configs/micro.yaml", tmp_path, models, ["scales=[4, 8]"])
    sd = tmp_path / "data" / "unit"
    head = [line for line in script.splitlines() if line.startswith("#SBATCH ")]
    assert head == ["#SBATCH --job-name=unit-generate", "#SBATCH --array=0-2", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
                    "#SBATCH --time=02:00:00", f"#SBATCH --output={sd}/slurm/generate-%A_%a.log",
                    "#SBATCH --open-mode=append", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@60",
                    "#SBATCH --partition=gpu", "#SBATCH --account=belle", "#SBATCH --gpus-per-node=2",
                    "#SBATCH --cpus-per-task=16"]
    body = script.splitlines()
    assert body.index(f"cd {REPO}") < body.index("module load cuda/12.4") < body.index("source /shared/venv/bin/activate") \
        < body.index("models=(base 4 quality-8)")
    assert f"{sys.executable} -m helpers answer --config {REPO}/configs/micro.yaml --root {tmp_path} " \
           "--set 'scales=[4, 8]' --model \"$model\" &" in script
    assert 'scontrol requeue "$SLURM_JOB_ID"' in script and script.startswith("#!/bin/bash\n")
    assert array_models(script) == models
    # task i answers models[i]: the script's own lines, run by bash with Slurm's task id
    mapping = "\n".join(line for line in body if line.startswith(("models=", "model="))) + '\necho "$model"'
    for i, m in enumerate(models):
        done = subprocess.run(["bash", "-c", mapping], env={"SLURM_ARRAY_TASK_ID": str(i)}, capture_output=True, text=True)
        assert done.stdout == f"{m}\n", done.stderr
    one = array_script(cfg, "configs/micro.yaml", tmp_path, ["4"])
    assert "#SBATCH --array=0-0\n" in one and "--set" not in one


def test_generate_slurm_settings_follow_the_rules():
    with pytest.raises(ValueError, match=r"generate\.slurm: has no effect with generate\.launcher: local"):
        make_config("m", generate={"slurm": {"partition": "gpu"}})
    with pytest.raises(ValueError, match=r"generate\.slurm\.nodes: each array task answers one model on one node"):
        make_config("m", generate={"launcher": "slurm", "slurm": {"nodes": 2}})
    with pytest.raises(ValueError, match=r"generate\.launcher: slurm runs the hf or vllm backend"):
        make_config("m", generate={"backend": "server", "server": {"base_url": "http://x/v1"}, "launcher": "slurm"})
    with pytest.raises(ValueError, match=r"generate\.slurm\.gpus_per_node: 4 GPUs per task, but generate\.vllm runs "
                                         r"2 engine\(s\) x tensor_parallel_size 1"):
        make_config("m", generate={"backend": "vllm", "vllm": {"engines": 2}, "launcher": "slurm",
                                   "slurm": {"gpus_per_node": 4}})
    fits = make_config("m", generate={"backend": "vllm", "vllm": {"tensor_parallel_size": 2}, "launcher": "slurm",
                                      "slurm": {"gpus_per_node": 8}})
    assert fits.generate.slurm.gpus_per_node == 8  # engines auto: 4 engines of 2 GPUs in each task
    default = make_config("m", generate={"launcher": "slurm"}).generate.slurm
    assert (default.nodes, default.gpus_per_node, default.time) == (1, 1, "04:00:00")
    with pytest.raises(ValueError, match=r"slurm\.time: YAML read the time limit as the number 3600"):
        make_config("m", generate={"launcher": "slurm", "slurm": {"time": 3600}})


def test_switching_the_generate_launcher_leaves_the_answers_and_the_stage_up_to_date(tmp_path):
    """Where the answers are made is outside the stage's key and the answers key: with the vllm backend (one
    execution either way) every fingerprint stays; with hf the executions become one ``generate-all`` (one array),
    whose key holds the same settings, and the stored answers are resumed, not set aside."""
    vllm = {"backend": "vllm", "batch_size": 6, "max_new_tokens": {"default": 6}}
    here, there = make_config("m", generate=vllm), make_config("m", generate={**vllm, **SLURM})
    assert [fingerprint(here, r) for r in plan(here, tmp_path)] == [fingerprint(there, r) for r in plan(there, tmp_path)]
    hf = {"batch_size": 6, "max_new_tokens": {"default": 6}}
    here, there = make_config("m", generate=hf), make_config("m", generate={**hf, **SLURM})
    assert [r.label for r in plan(there, tmp_path) if r.stage.name == "generate"] == ["generate-all"]
    from helpers.study.keys import stage_settings

    assert stage_settings(there, "generate") == stage_settings(here, "generate")
    assert answers_key(there, "base", tmp_path) == answers_key(here, "base", tmp_path)
    other = make_config("m", generate={**hf, "max_new_tokens": {"default": 7}})
    assert answers_key(other, "base", tmp_path) != answers_key(here, "base", tmp_path)


def test_the_dry_run_prints_the_array_script(tmp_path, capsys, slurm_on_path):
    sets = ["generate.launcher=slurm", "generate.slurm.partition=gpu", "generate.slurm.gpus_per_node=1"]
    assert main(["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--dry-run"]
                + [a for s in sets for a in ("--set", s)]) == 0
    printed = capsys.readouterr().out
    sd = tmp_path / "data" / "micro"
    head = f"--- sbatch script of generate-all ({sd}/slurm/generate.sbatch) ---\n#!/bin/bash\n"
    assert head in printed
    script = printed.split(head)[1].split("\n---")[0]
    assert "#SBATCH --array=0-2\n" in script and "#SBATCH --partition=gpu\n" in script and "models=(base 4 12)\n" in script
    assert not (sd / "slurm").exists()  # nothing written, nothing submitted


def test_the_answer_command_names_a_model_the_study_lacks(capsys):
    assert main(["answer", "--config", "configs/micro.yaml", "--model", "640"]) == 2
    assert "--model 640: not a model of study micro (base, 4, 12)" in capsys.readouterr().err


def test_the_slurm_launcher_without_slurm_commands_fails_the_preflight(tmp_path, monkeypatch):
    from helpers.preflight import PreflightFailed, check_study

    cfg = make_config("m", generate={"launcher": "slurm"})
    runs = [r for r in plan(cfg, tmp_path) if r.stage.name == "generate"]
    monkeypatch.setattr(shutil, "which", lambda c: None if c == "scontrol" else f"/usr/bin/{c}")
    with pytest.raises(PreflightFailed, match=r"generate\.launcher: slurm, but scontrol is not on PATH; run the study "
                                              r"on the cluster's login node, or set launcher: local"):
        check_study(cfg, tmp_path, runs, out=lambda s: None)
    monkeypatch.setattr(shutil, "which", lambda c: f"/usr/bin/{c}")
    assert [c.name for c in check_study(cfg, tmp_path, runs, out=lambda s: None)] == ["files", "disk", "generate launcher"]


# ----------------------------------------------------------------------------- against a real Slurm
CLUSTER = ["generate.launcher=slurm", "generate.slurm.gpus_per_node=0", "generate.slurm.cpus_per_task=1",
           "generate.slurm.partition=debug", "generate.slurm.poll_s=1"]
STUDY = ["scales=[4]", "generate.batch_size=2"]  # 12 eval items in 6 batches per model: a task can be caught midway


def runner(root, *sets):
    cmd = [sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--root", str(root)]
    return cmd + [a for s in sets for a in ("--set", s)]


def rows(path) -> int:
    return len(read_jsonl(path, tolerate_torn_tail=True)) if path.exists() else 0


@pytest.mark.slurm
@pytest.mark.slow
def test_answers_through_a_job_array_survive_a_requeue_and_a_cancel_and_match_a_local_run(tmp_path):
    if not os.environ.get("SLURM_CONF") or not shutil.which("sbatch"):
        pytest.fail("no Slurm: run `make test-slurm` (starts one with tests/finetune/slurm_cluster.sh)")
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for only in ("data", "finetune"):
        done = subprocess.run(runner(local, *STUDY) + ["--only", only], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.copytree(local / "data" / "micro", cluster / "data" / "micro", ignore=shutil.ignore_patterns(".stages", "notebooks"))
    done = subprocess.run(runner(local, *STUDY) + ["--only", "generate"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    sd = cluster / "data" / "micro"
    answers = {m: sd / "answers" / f"{m}.jsonl" for m in ("base", "4")}
    proc = subprocess.Popen(runner(cluster, *STUDY, *CLUSTER) + ["--only", "generate"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    job = None
    try:
        job_file = sd / "slurm" / "generate.job"
        wait_for("the array's submission", job_file.exists, proc)
        job = job_file.read_text().strip()
        assert array_models((sd / "slurm" / "generate.sbatch").read_text()) == ["base", "4"]
        assert running_job(sd / "slurm", "generate") == job  # what a runner started again would wait for
        wait_for("model 4's first answers", lambda: 0 < rows(answers["4"]), proc)
        assert rows(answers["4"]) < 12, "task 1 finished before it could be requeued; raise the item count"
        subprocess.run(["scontrol", "requeue", f"{job}_1"], check=True)  # task 1 (model 4) killed midway, requeued
        wait_for("the base model's first answers", lambda: 0 < rows(answers["base"]), proc)
        assert rows(answers["base"]) < 12, "task 0 finished before it could be cancelled; raise the item count"
        subprocess.run(["scancel", f"{job}_0"], check=True)  # task 0 (base) cancelled midway: the run must fail
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        if job:
            subprocess.run(["scancel", job], check=False)
    log = {i: sd / "slurm" / f"generate-{job}_{i}.log" for i in (0, 1)}
    assert proc.returncode == 1, out[-3000:]
    assert "answers/base.jsonl lacks" in out and f"task 0 of slurm job {job} ended CANCELLED" in out and str(log[0]) in out
    assert "answers/4.jsonl" not in out.split("left answers incomplete")[1], out[-3000:]
    text = log[1].read_text()
    assert "(restart 1)" in text and "resuming: " in text.split("(restart 1)")[1], text[-3000:]
    assert {t.state for t in job_tasks(job)} <= {"COMPLETED", "CANCELLED"}

    again = subprocess.run(runner(cluster, *STUDY, *CLUSTER) + ["--only", "generate"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    second = (sd / "slurm" / "generate.sbatch").read_text()
    assert array_models(second) == ["base"] and "#SBATCH --array=0-0" in second  # only what was left
    assert not (sd / "slurm" / "generate.job").exists()
    keep = ("id", "category", "answer", "new_tokens", "truncated", "model")
    for m, path in answers.items():
        got = {r["id"]: {k: r[k] for k in keep} for r in read_jsonl(path)}
        want = {r["id"]: {k: r[k] for k in keep} for r in read_jsonl(local / "data" / "micro" / "answers" / f"{m}.jsonl")}
        assert len(got) == len(read_jsonl(path)) == 12 and got == want, m
    relaunched = sorted((sd / "slurm").glob("generate-*_0.log"))
    assert len(relaunched) == 2 and "resuming: " in [p for p in relaunched if p != log[0]][0].read_text()
    assert load_config(REPO / "configs" / "micro.yaml").generate.launcher == "local"
