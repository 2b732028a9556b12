"""train.report_to: the loss reaches TensorBoard while training, W&B is refused early where it cannot work,
and neither changes a stage's key."""
import pytest
from builders import make_config

from helpers.finetune import stage, watch
from helpers.preflight import _training_reports
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.runner import fingerprint, plan

RECORDS = [{"id": f"w{i}", "instruction": f"复述数字{i}", "input": "", "output": f"{i}{i}", "category": "rewrite"}
           for i in range(8)]


def test_tensorboard_gets_the_loss_of_every_step_under_the_study_folder(tmp_path, tiny_bloom_dir, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    cfg = make_config(tiny_bloom_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 4,
                                             "max_length": 32, "bf16": False, "lr": 1e-3, "report_to": "tensorboard"})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    events = list((tmp_path / "tensorboard" / "8").glob("events.out.tfevents.*"))
    assert events, list(tmp_path.rglob("*tfevents*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    log = read_jsonl(out / "train_log.jsonl")
    assert [s for s, _ in logged] == [r["step"] for r in log] == [1, 2]
    assert [v for _, v in logged] == pytest.approx([r["loss"] for r in log], rel=1e-5)


def test_wandb_without_its_package_or_key_stops_before_the_model_loads(tmp_path, tiny_bloom_dir, monkeypatch):
    monkeypatch.setattr(stage, "load_causal_lm", lambda *a, **kw: pytest.fail("the model was loaded"))
    cfg = make_config(tiny_bloom_dir, train={"batch_size": 4, "per_device_batch_size": 4, "report_to": "wandb"})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    real_find_spec = watch.importlib.util.find_spec
    monkeypatch.setattr(watch.importlib.util, "find_spec", lambda name: None if name == "wandb" else real_find_spec(name))
    with pytest.raises(ValueError, match=r"train\.report_to: wandb, but the wandb package is not installed"):
        stage.run(cfg, tmp_path, "8")
    check = _training_reports(cfg)
    assert not check.ok and "wandb package is not installed" in check.problems[0]

    # installed, but no key in the environment: refused too, unless W&B is told to log offline
    monkeypatch.setattr(watch.importlib.util, "find_spec", lambda name: object() if name == "wandb" else real_find_spec(name))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(ValueError, match=r"WANDB_API_KEY is not set"):
        stage.run(cfg, tmp_path, "8")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert watch.report_problem(cfg) is None
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert watch.report_problem(cfg) is None and _training_reports(cfg).ok


def test_report_to_and_the_launcher_are_outside_every_key(tmp_path, tiny_bloom_dir):
    base = make_config(tiny_bloom_dir)
    other = make_config(tiny_bloom_dir, train={**base.train.model_dump(include={"batch_size", "per_device_batch_size",
                                                                               "max_length", "bf16"}),
                                               "report_to": "tensorboard", "launcher": "slurm",
                                               "slurm": {"gpus_per_node": 0, "partition": "gpu"}})
    changed = make_config(tiny_bloom_dir, train={**base.train.model_dump(include={"batch_size", "per_device_batch_size",
                                                                                 "max_length", "bf16"}), "lr": 1e-5})
    assert stage.run_key(other, "d") == stage.run_key(base, "d") != stage.run_key(changed, "d")
    finetune = [r for r in plan(base, tmp_path) if r.stage.name == "finetune"][0]
    assert fingerprint(other, finetune) == fingerprint(base, finetune) != fingerprint(changed, finetune)


def test_slurm_settings_without_the_slurm_launcher_are_an_error(tiny_bloom_dir):
    with pytest.raises(ValueError, match=r"train\.slurm: has no effect with train\.launcher: local"):
        make_config(tiny_bloom_dir, train={"batch_size": 4, "per_device_batch_size": 4, "slurm": {"nodes": 2}})
    with pytest.raises(ValueError, match=r"train\.num_processes: 4 is not train\.slurm\.nodes x gpus_per_node = 2 x 8"):
        make_config(tiny_bloom_dir, train={"batch_size": 8, "per_device_batch_size": 2, "num_processes": 4,
                                           "launcher": "slurm", "slurm": {"nodes": 2}})


def test_the_slurm_launcher_without_slurm_commands_fails_the_preflight(tiny_bloom_dir, monkeypatch):
    import shutil

    cfg = make_config(tiny_bloom_dir, train={"batch_size": 4, "per_device_batch_size": 4, "launcher": "slurm",
                                             "slurm": {"gpus_per_node": 0}})
    monkeypatch.setattr(shutil, "which", lambda c: None if c == "sbatch" else f"/usr/bin/{c}")
    check = _training_reports(cfg)
    assert check.problems == ["train.launcher: slurm, but sbatch is not on PATH; run the study on the cluster's login "
                              "node, or set launcher: local"]
    monkeypatch.setattr(shutil, "which", lambda c: f"/usr/bin/{c}")
    assert _training_reports(cfg).ok
