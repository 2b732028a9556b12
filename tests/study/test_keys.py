"""Stage keys without running a study: which settings count, code by syntax tree, reasons in words,
folders moved aside and removed only when asked."""
import json
import subprocess
import sys

import pytest
from builders import make_config

from helpers.study.aside import move_aside, remove_stale, stale_folders
from helpers.study.imports import source_digest
from helpers.study.keys import NOT_OUTPUT, STAGE_SETTINGS, changes, flatten, show, stage_settings
from helpers.study.paths import REPO
from helpers.study.runner import STAGE_NAMES, fingerprint, plan


def test_every_stage_has_its_settings_and_every_left_out_setting_exists():
    """A pattern in NOT_OUTPUT that matches no setting would be a rule that does nothing (a typo, a rename)."""
    from fnmatch import fnmatchcase

    assert set(STAGE_SETTINGS) == set(STAGE_NAMES)
    configs = [make_config("m"), make_config("m", generate={"backend": "vllm"}),
               make_config("m", generate={"backend": "server", "server": {"base_url": "http://x/v1"}},
                           judge={"kind": "openai", "others": {"second": {"kind": "openai"}}})]
    names = set()
    for cfg in configs:
        names |= set(flatten(cfg.model_dump(mode="json"), "").keys())
    names = {n.lstrip(".") for n in names}
    for pattern in NOT_OUTPUT:
        assert any(fnmatchcase(n, pattern) for n in names), f"NOT_OUTPUT {pattern!r} matches no setting"


def test_the_training_key_holds_the_recipe_and_not_the_cadence():
    base = stage_settings(make_config("m"), "finetune")
    assert {"seed", "model.base", "train.lr", "train.batch_size", "train.epochs", "train.lora.r", "train.max_length",
            "train.bf16", "train.method", "train.lr_scheduler", "train.schedule"} <= set(base)
    assert not {"train.save_steps", "train.per_device_batch_size", "train.num_processes", "train.accelerate_config"} & set(base)
    same = make_config("m", train={"batch_size": 4, "per_device_batch_size": 2, "max_length": 64, "bf16": False,
                                   "save_steps": 3, "num_processes": 2})
    assert stage_settings(same, "finetune") == base  # the same global batch, split otherwise, saved more often
    other = make_config("m", train={"batch_size": 8, "per_device_batch_size": 4, "max_length": 64, "bf16": False})
    assert stage_settings(other, "finetune") != base


def test_fingerprints_ignore_what_does_not_change_outputs(tmp_path):
    a = make_config("m", judge={"kind": "openai"})
    b = make_config("m", study="renamed", generate={"batch_size": 2, "max_new_tokens": {"default": 6}},
                    judge={"kind": "openai", "concurrency": 3, "timeout_s": 5})
    runs_a, runs_b = plan(a, tmp_path), plan(b, tmp_path)
    assert [fingerprint(a, r) for r in runs_a] == [fingerprint(b, r) for r in runs_b]
    c = make_config("m", generate={"batch_size": 6, "max_new_tokens": {"default": 7}}, judge={"kind": "openai"})
    changed = {r.label for r, s in zip(plan(c, tmp_path), runs_a) if fingerprint(c, r) != fingerprint(a, s)}
    assert changed == {"generate-all"}


def test_the_number_of_vllm_engines_changes_neither_the_keys_nor_the_answers_key(tmp_path):
    from helpers.generate.backend import answers_key

    one, two = (make_config("m", generate={"backend": "vllm", "vllm": {"engines": n}}) for n in (1, 2))
    assert [fingerprint(one, r) for r in plan(one, tmp_path)] == [fingerprint(two, r) for r in plan(two, tmp_path)]
    assert answers_key(one, "base", tmp_path) == answers_key(two, "base", tmp_path)
    other = make_config("m", generate={"backend": "vllm", "vllm": {"engines": 2, "dtype": "float32"}})
    assert answers_key(other, "base", tmp_path) != answers_key(two, "base", tmp_path)


def test_code_is_hashed_without_its_prose():
    code = 'def f(x):\n    """Add one."""\n    return x + 1\n'
    assert source_digest(code) == source_digest('def f(x):\n    """Add two, says the wrong docstring."""\n    return x + 1  # one\n')
    assert source_digest(code) == source_digest("def f(x):\n    return x + 1\n")
    assert source_digest(code) != source_digest('def f(x):\n    """Add one."""\n    return x + 2\n')
    assert source_digest('X = 1\n"""What X is."""\n') == source_digest("X = 1\n")
    assert source_digest('print("n/a")\n') != source_digest('print("not available")\n')  # words the code prints count


def test_reasons_are_written_in_words():
    old = {"settings": {"train.lr": 3e-6, "train.method": "lora", "scales": [4, 12]},
           "code": {"helpers/finetune/tokens.py": "a", "notebooks/02_finetune.ipynb": "b"},
           "data": {"subsets/200000.jsonl": "x", "subsets/600000.jsonl": "y"}}
    new = {"settings": {"train.lr": 1e-5, "train.method": "lora", "scales": [4, 8, 12], "train.new": True},
           "code": {"helpers/finetune/tokens.py": "c", "notebooks/02_finetune.ipynb": "b"},
           "data": {"subsets/200000.jsonl": "z", "subsets/600000.jsonl": None}}
    assert changes(old, new) == ["scales [4, 12] -> [4, 8, 12]", "train.lr 3e-6 -> 1e-5", "train.new (unset) -> true",
                                 "code: helpers/finetune/tokens.py", "data: subsets/200000.jsonl changed",
                                 "data: subsets/600000.jsonl missing"]
    assert changes(new, new) == []
    assert [show(v) for v in (0.0003, 3e-6, 1e20, 2.0, None, "full")] == ["0.0003", "3e-6", "1e20", "2", "null", "full"]


def test_a_folder_moved_aside_keeps_everything_and_is_removed_only_when_asked(tmp_path):
    sd = tmp_path / "data" / "unit"
    model = sd / "models" / "640"
    (model / "adapter_model.safetensors").parent.mkdir(parents=True)
    (model / "adapter_model.safetensors").write_bytes(b"weights")
    lines = []
    moved = move_aside(model, "1a2b3c4d5e6f7a8b9c", "train.lr 3e-6 -> 1e-5", out=lines.append)
    assert not model.exists() and (moved / "adapter_model.safetensors").read_bytes() == b"weights"
    assert moved.parent == sd / "models" and moved.name.startswith("640.stale-1a2b3c4d5e6f-")
    assert lines == [f"moved aside: 640 (train.lr 3e-6 -> 1e-5) -> {moved}"]
    model.mkdir()
    second = move_aside(model, "1a2b3c4d5e6f7a8b9c", "again", out=lambda line: None)
    assert second != moved and stale_folders(sd) == sorted([moved, second])

    cfg = tmp_path / "unit.yaml"
    cfg.write_text("study: unit\nscales: [640]\n")
    done = subprocess.run([sys.executable, "-m", "helpers", "clean", "--stale", "--config", str(cfg), "--root", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"removed {moved}", f"removed {second}"]
    assert stale_folders(sd) == [] and (sd / "models").is_dir()
    assert remove_stale(sd, out=lambda line: None) == []
    refused = subprocess.run([sys.executable, "-m", "helpers", "clean", "--config", str(cfg)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--stale" in refused.stderr


@pytest.mark.parametrize("record", [None, {"fingerprint": "x"}])
def test_a_stage_without_a_record_of_its_key_is_missing_or_stale(tmp_path, record):
    from helpers.study.files import write_json
    from helpers.study.runner import record_path, study_status

    cfg = make_config("m")
    runs = plan(cfg, tmp_path)
    if record:
        write_json(record_path(tmp_path, runs[0]), record)
    first = study_status(cfg, tmp_path, runs)[0]
    assert (first.state, first.reasons) == (("missing", []) if record is None else
                                            ("stale", ["recorded without the parts of its key (an older runner)"]))
    assert json.dumps(first.line())
