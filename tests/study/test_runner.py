import json
import os
import subprocess
import sys

import pytest
from builders import make_config

from helpers.study.files import write_json, write_jsonl
from helpers.study.notebook import pick_models
from helpers.study.paths import REPO
from helpers.study.runner import execute, fingerprint, hash_path, is_current, plan, record_path


def finish(cfg, sd, run):
    """Pretend a stage ran: write its outputs and its record, as the runner does."""
    for p in run.outputs:
        if p.suffix:
            write_jsonl(p, [{"stage": run.label}])
        else:
            write_json(p / "adapter_config.json", {"stage": run.label})
    write_json(record_path(sd, run), {"fingerprint": fingerprint(cfg, run),
                                      "outputs": {str(p): hash_path(p) for p in run.outputs}})


def by_label(runs):
    return {r.label: r for r in runs}


def test_plan_has_every_stage_for_every_model(tmp_path):
    cfg = make_config("m")
    labels = [r.label for r in plan(cfg, tmp_path)]
    assert labels == ["data", "finetune-4", "finetune-8", "generate-all", "judge-base", "judge-4", "judge-8", "analysis"]


def test_prefix_schedule_trains_once_for_every_scale(tmp_path):
    cfg = make_config("m", train={"schedule": "prefix", "batch_size": 4, "per_device_batch_size": 4})
    runs = by_label(plan(cfg, tmp_path))
    assert [label for label in runs if label.startswith("finetune")] == ["finetune"]
    assert runs["finetune"].inputs == [tmp_path / "subsets" / "8.jsonl"]
    assert runs["finetune"].outputs == [tmp_path / "models" / "4", tmp_path / "models" / "8"]
    assert runs["generate-all"].inputs[-2:] == [tmp_path / "models" / "4", tmp_path / "models" / "8"]


@pytest.mark.slow  # a notebook through papermill
@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_every_model_is_answered_in_one_execution(tmp_path, monkeypatch, backend):
    cfg = make_config("m", generate={"backend": backend, "max_new_tokens": {"default": 6}})
    runs = by_label(plan(cfg, tmp_path))
    assert [label for label in runs if label.startswith("generate")] == ["generate-all"]
    gen = runs["generate-all"]
    assert gen.outputs == [tmp_path / "answers" / f"{m}.jsonl" for m in ("base", "4", "8")]
    assert gen.inputs == [tmp_path / "eval.jsonl", tmp_path / "models" / "4", tmp_path / "models" / "8"]
    assert [label for label in runs if label.startswith("judge")] == ["judge-base", "judge-4", "judge-8"]

    import papermill

    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda nb, out, parameters, **kw: seen.update(parameters) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        execute(cfg, tmp_path / "c.yaml", tmp_path, gen)
    assert seen["scale"] == "all" and pick_models(cfg, seen["scale"]) == ["base", "4", "8"]  # the notebook's models
    assert pick_models(cfg, "4") == ["4"] and pick_models(cfg, None) == ["8"]


def test_checkpoint_scales_are_not_trained(tmp_path):
    cfg = make_config("m", model={"base": "m", "checkpoints": {"8": "some/model"}})
    labels = [r.label for r in plan(cfg, tmp_path)]
    assert "finetune-8" not in labels and "judge-8" in labels
    assert by_label(plan(cfg, tmp_path))["generate-all"].inputs == [tmp_path / "eval.jsonl", tmp_path / "models" / "4"]


def test_finished_stages_are_current_until_something_changes(tmp_path):
    cfg = make_config("m")
    runs = plan(cfg, tmp_path)
    assert not any(is_current(tmp_path, r, fingerprint(cfg, r)) for r in runs)
    for r in runs:
        finish(cfg, tmp_path, r)
    assert all(is_current(tmp_path, r, fingerprint(cfg, r)) for r in runs)

    # a changed judge section touches the judge and analysis stages, nothing upstream
    cfg2 = make_config("m", judge={"kind": "openai"})
    stale = {r.label for r in plan(cfg2, tmp_path) if not is_current(tmp_path, r, fingerprint(cfg2, r))}
    assert stale == {"judge-base", "judge-4", "judge-8", "analysis"}

    # a changed input file (one subset) makes its training stale, and only that
    write_jsonl(tmp_path / "subsets" / "4.jsonl", [{"changed": True}])
    stale = {r.label for r in plan(cfg, tmp_path) if not is_current(tmp_path, r, fingerprint(cfg, r))}
    assert stale == {"finetune-4", "data"}  # data: its recorded output no longer matches

    # an output deleted by hand makes its producer stale
    (tmp_path / "answers" / "base.jsonl").unlink()
    r = by_label(plan(cfg, tmp_path))["generate-all"]
    assert not is_current(tmp_path, r, fingerprint(cfg, r))


def test_training_settings_do_not_touch_the_data_stage(tmp_path):
    a, b = make_config("m"), make_config("m", train={"batch_size": 8, "per_device_batch_size": 4})
    fa, fb = (by_label(plan(c, tmp_path)) for c in (a, b))
    assert fingerprint(a, fa["data"]) == fingerprint(b, fb["data"])
    assert fingerprint(a, fa["finetune-4"]) != fingerprint(b, fb["finetune-4"])


@pytest.mark.slow
def test_paper_dry_run_prints_the_plan_offline():
    """Anywhere, the plan and the estimate; then the preflight says what this machine lacks (exit 2)."""
    import os

    env = {"HF_HUB_OFFLINE": "1", "PATH": "", **{k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}}
    out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", "configs/paper.yaml", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    for text in ("finetune-2000000", "generate-all", "judge-1000000", "analysis", "3,800,000 examples",
                 "FLOPs", "GPU-hours", "gpt-3.5-turbo-0125 x 3 runs", "hub dataset(s) BelleGroup/train_2M_CN",
                 "tokens to train per scale (x 2 epochs): 200000: 120.0M", "2000000: 1,200.0M",
                 "memory per GPU for model states: 18.6 GiB (full, 7,070,000,000 parameters, bf16 weights, ZeRO stage 3 over 8",
                 "+ 19.1 GiB of logits", "about 35.8 hours on 8 GPU(s) at 125 TFLOP/s each",
                 "judge gpt-3.5-turbo-0125: 1,800 judgments (120 items"):
        assert text in out.stdout
    assert out.returncode == 2, out.stderr  # the environment above has no OPENAI_API_KEY
    assert "judge.api_key_env: the environment variable OPENAI_API_KEY is not set" in out.stderr


def test_cli_reports_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\nscales: [5]\ntrian: {}\n")
    out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", str(bad), "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "trian: unknown key" in out.stderr


def test_overrides_reach_fingerprints_manifest_notebooks_and_training_processes(tmp_path):
    from helpers.finetune.launch import launch_command
    from helpers.study.loading import load_config
    from helpers.study.runner import manifest

    plain = load_config("configs/micro.yaml")
    changed = load_config("configs/micro.yaml", ["train.lr=1e-4"])
    a, b = by_label(plan(plain, tmp_path)), by_label(plan(changed, tmp_path))
    assert fingerprint(plain, a["data"]) == fingerprint(changed, b["data"])
    assert fingerprint(plain, a["finetune-4"]) != fingerprint(changed, b["finetune-4"])
    man = manifest(changed, REPO / "configs/micro.yaml", tmp_path, list(b.values()), ("train.lr=1e-4",))
    assert man["overrides"] == ["train.lr=1e-4"] and man["config"]["train"]["lr"] == 1e-4
    cmd = launch_command(changed, "configs/micro.yaml", tmp_path, "4", ["train.lr=1e-4"])
    assert cmd[cmd.index("--set") + 1] == "train.lr=1e-4"


@pytest.mark.slow
def test_cli_set_changes_the_plan(tmp_path):
    out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--root", str(tmp_path),
                          "--set", "scales=[4, 8, 12]", "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "judge-8" in out.stdout and "scales 4, 8, 12" in out.stdout
    out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--set", "trian.lr=1",
                          "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--set trian.lr=1" in out.stderr and "trian: unknown key" in out.stderr


def test_an_unchanged_file_is_hashed_from_memory_and_a_changed_one_is_read_again(tmp_path, monkeypatch):
    from helpers.study import hashes

    big = tmp_path / "models" / "640" / "model.safetensors"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"w" * 3_000_000)
    (big.parent / "config.json").write_text("{}")
    reads = []
    real = hashes.file_digest
    monkeypatch.setattr(hashes, "file_digest", lambda p: reads.append(p.name) or real(p))
    hashes.forget()
    first = hash_path(big.parent)
    assert sorted(reads) == ["config.json", "model.safetensors"]
    reads.clear()
    assert hash_path(big.parent) == first and reads == []  # same size, time and inode: not read again

    store = tmp_path / "file_hashes.json"
    hashes.save(store)
    hashes.forget()  # a new run: the memory comes from the study's store
    hashes.load(store)
    assert hash_path(big.parent) == first and reads == []

    big.write_bytes(b"v" * 3_000_000)  # same size, written again: a new time
    assert hash_path(big.parent) != first and reads == ["model.safetensors"]
    reads.clear()
    tmp = big.with_name("new")
    tmp.write_bytes(b"w" * 3_000_000)
    os.utime(tmp, ns=(big.stat().st_atime_ns, big.stat().st_mtime_ns))
    os.replace(tmp, big)  # renamed into place with the old size and time: another inode
    assert hash_path(big.parent) == first and reads == ["model.safetensors"]


@pytest.mark.slow  # the command line in fresh interpreters
def test_the_runner_keeps_its_file_hashes_in_the_study(tmp_path):
    from helpers.study import hashes

    hashes.forget()
    out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--root", str(tmp_path),
                    "--only", "data"], check=True, cwd=REPO, capture_output=True, text=True)
    store = tmp_path / "data" / "micro" / ".stages" / "file_hashes.json"
    remembered = json.loads(store.read_text())
    assert str(tmp_path / "data" / "micro" / "pool.jsonl") in remembered
    assert "report: not built yet, the analysis stage has not written results.csv, results.json" in out.stdout
