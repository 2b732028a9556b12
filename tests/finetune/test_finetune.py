import json

import pytest
import torch
from builders import make_config

from helpers.finetune import stage
from helpers.finetune.head import LabelOnlyHeadTrainer
from helpers.finetune.stage import compute_estimate
from helpers.finetune.tokens import IGNORE, tokenize
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.models import load_causal_lm, load_tokenizer
from helpers.study.prompt import format_prompt

RECORDS = [
    {"id": f"t{i}", "instruction": f"把数字{i}加一", "input": "" if i % 2 else f"数字：{i}",
     "output": f"答案：{i + 1}", "category": "math"}
    for i in range(8)
]


def test_tokenize_masks_the_prompt_and_appends_eos(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    row = tokenize(RECORDS[:1], tok, 256)[0]
    prompt_len = len(tok(format_prompt(RECORDS[0]["instruction"], RECORDS[0]["input"]))["input_ids"])
    assert row["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(row["input_ids"][prompt_len:-1]) == RECORDS[0]["output"]
    assert len(tokenize(RECORDS[:1], tok, 10)[0]["input_ids"]) == 10


def test_the_tokenizer_is_serialized_once_and_every_folder_gets_the_same_bytes(tmp_path, tiny_bloom_dir):
    """SavedOnce (installed as the run's ``tok.save_pretrained``): the first checkpoint writes the files once, every
    later checkpoint and model gets a copy, byte for byte what ``save_pretrained`` itself writes."""
    from helpers.finetune.tokens import SavedOnce

    tok = load_tokenizer(str(tiny_bloom_dir))
    tok.save_pretrained(tmp_path / "direct")
    calls = []
    real = tok.save_pretrained
    tok.save_pretrained = lambda out, **kw: (calls.append(out), real(out, **kw))[1]
    tok.save_pretrained = SavedOnce(tok, tmp_path / "work" / "tokenizer")
    for out in ("checkpoint-1", "checkpoint-2", "model"):
        tok.save_pretrained(tmp_path / out)
        assert {f.name: f.read_bytes() for f in (tmp_path / out).iterdir()} == \
            {f.name: f.read_bytes() for f in (tmp_path / "direct").iterdir()}
    assert len(calls) == 1 and not list((tmp_path / "work").glob(".*tmp"))


@pytest.mark.parametrize("arch", ["tiny_model_dir", "tiny_bloom_dir"])
def test_label_only_head_loss_equals_the_full_loss(arch, request):
    """Projecting only labelled positions gives exactly the model's own causal-LM loss, for Gemma 3 (its inner
    network is ``.model``, logits soft-capped) and Bloom (``.transformer``), and the trainer really uses it."""
    from transformers import DataCollatorForSeq2Seq

    from helpers.finetune.head import label_only_loss, label_only_parts

    path = str(request.getfixturevalue(arch))
    tok = load_tokenizer(path)
    model = load_causal_lm(path)
    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE)(tokenize(RECORDS, tok, 64))
    reference = model(**batch).loss
    parts = label_only_parts(model)
    assert not isinstance(parts, str), parts
    inputs = dict(batch)
    torch.testing.assert_close(label_only_loss(*parts, inputs, inputs.pop("labels")), reference, rtol=1e-5, atol=1e-5)
    trainer = LabelOnlyHeadTrainer.__new__(LabelOnlyHeadTrainer)
    ours = LabelOnlyHeadTrainer.compute_loss(trainer, model, dict(batch))
    assert trainer._parts is not None  # the label-only path, not the fallback
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_label_only_head_falls_back_once_where_it_cannot_apply(tiny_bloom_dir, capsys):
    """A model that changes its logits after the head (here: a scale the head does not know) is caught on the
    first batch; the trainer then uses the model's own loss and says so once, not at every step."""
    from transformers import BloomForCausalLM, DataCollatorForSeq2Seq, TrainingArguments
    from transformers.modeling_outputs import CausalLMOutput

    from helpers.finetune.head import label_only_parts

    class ScaledLogits(BloomForCausalLM):  # scales its logits after the head, as Cohere's logit_scale does
        def forward(self, input_ids=None, attention_mask=None, labels=None, **kw):
            logits = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kw).logits * 2.0
            loss = None if labels is None else torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)
            return CausalLMOutput(loss=loss, logits=logits)

    tok = load_tokenizer(str(tiny_bloom_dir))
    model = ScaledLogits.from_pretrained(tiny_bloom_dir)
    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE)(tokenize(RECORDS, tok, 64))
    trainer = LabelOnlyHeadTrainer(model=model, args=TrainingArguments("unused", use_cpu=True, report_to="none"))
    for _ in range(3):
        loss = trainer.compute_loss(model, dict(batch))
        torch.testing.assert_close(loss, model(**batch).loss)
    assert trainer._parts is None
    out = capsys.readouterr().out
    assert out.count("label-only loss head off") == 1 and "differed from ScaledLogits's own" in out
    wrapped = torch.nn.Sequential(model)
    assert "wrapped by Sequential" in label_only_parts(wrapped)


def test_compute_estimate_counts_lora_cheaper_than_full():
    full = compute_estimate(1000, 100, 100, 1)["flops"]
    lora = compute_estimate(1000, 100, 1, 1)["flops"]
    assert full == 6 * 100 * 1000 and lora < full
    assert compute_estimate(1000, 100, 100, 1, checkpointing=True)["flops"] == 8 * 100 * 1000  # the forward twice


@pytest.mark.slow
def test_train_scale_writes_adapter_log_and_summary(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir)
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    assert out == tmp_path / "models" / "8"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2]  # 8 examples, batch 4
    assert all(r["loss"] > 0 and r["tokens_seen"] > 0 for r in log)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["examples"] == 8 and summary["tokens_seen"] == log[-1]["tokens_seen"]
    assert not list((tmp_path / "models").glob(".*tmp"))
    load_tokenizer(str(tiny_model_dir)).save_pretrained(tmp_path / "direct")  # the model's tokenizer files: a copy
    assert all((out / f.name).read_bytes() == f.read_bytes() for f in (tmp_path / "direct").iterdir())


@pytest.mark.slow  # a training in bf16
def test_lora_with_bf16_loads_the_frozen_base_in_bf16_and_keeps_the_adapters_fp32(tmp_path, tiny_model_dir, monkeypatch):
    from safetensors.torch import load_file


    seen = []
    real_build = stage.build_model

    def build(cfg, base, dtype=None):
        model = real_build(cfg, base, dtype)
        seen.append(({p.dtype for p in model.parameters() if not p.requires_grad},
                     {p.dtype for p in model.parameters() if p.requires_grad}))
        return model

    monkeypatch.setattr(stage, "build_model", build)
    cfg = make_config(tiny_model_dir, train={"batch_size": 4, "per_device_batch_size": 4, "max_length": 64, "bf16": True})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    assert seen == [({torch.bfloat16}, {torch.float32})]
    assert json.loads((out / "train_summary.json").read_text())["base_dtype"] == "bfloat16"
    weights = load_file(out / "adapter_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # it did learn
    # a full fine-tune keeps fp32 weights (AdamW on bf16 weights loses small updates), as does bf16 off
    assert stage.load_dtype(make_config(tiny_model_dir, train={"method": "full", "bf16": True}), None) == torch.float32
    assert stage.load_dtype(make_config(tiny_model_dir), None) == torch.float32


@pytest.mark.slow  # two trainings compared
def test_training_is_deterministic(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    cfg = make_config(tiny_model_dir)
    weights = []
    for name in ("a", "b"):
        write_jsonl(tmp_path / name / "subsets" / "8.jsonl", RECORDS)
        weights.append(load_file(stage.run(cfg, tmp_path / name, "8")[0] / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k])
    assert any(w.abs().sum() > 0 for k, w in weights[0].items() if "lora_B" in k)  # it did learn


def nested_records(n):
    return [{"id": f"p{i}", "instruction": f"复述数字{i}", "input": "", "output": f"{i}{i}", "category": "rewrite"}
            for i in range(n)]


def adapter(path):
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # three trainings compared
def test_prefix_schedule_equals_separate_runs(tmp_path, tiny_model_dir):
    """One pass over the largest subset, saved at each boundary, is the same as each scale alone."""
    from helpers.finetune.stage import _train

    records = nested_records(12)
    common = dict(scales=[4, 12], train={"batch_size": 2, "per_device_batch_size": 2, "max_length": 32,
                                         "bf16": False, "save_steps": 50})
    prefix_cfg = make_config(tiny_model_dir, **{**common, "train": {**common["train"], "schedule": "prefix"}})
    sep_cfg = make_config(tiny_model_dir, **common)
    for root in ("prefix", "separate"):
        for s in (4, 12):
            write_jsonl(tmp_path / root / "subsets" / f"{s}.jsonl", records[:s])
    saved = stage.run(prefix_cfg, tmp_path / "prefix")
    assert saved == [tmp_path / "prefix" / "models" / "4", tmp_path / "prefix" / "models" / "12"]
    for s in ("4", "12"):
        _train(sep_cfg, tmp_path / "separate", name=s, data=s, scales=[s], sampling="sequential")
        assert_same_weights(adapter(tmp_path / "prefix" / "models" / s), adapter(tmp_path / "separate" / "models" / s))
    small_log = read_jsonl(tmp_path / "prefix" / "models" / "4" / "train_log.jsonl")
    assert [r["step"] for r in small_log] == [1, 2]
    # the snapshots really differ: the larger scale trained on more
    assert any(not torch.equal(v, adapter(tmp_path / "prefix" / "models" / "12")[k])
               for k, v in adapter(tmp_path / "prefix" / "models" / "4").items())


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 2}, "needs epochs: 1"),
    ({"lr_scheduler": "cosine"}, "needs lr_scheduler: constant"),
    ({"batch_size": 3, "per_device_batch_size": 3}, "multiple of train.batch_size"),
])
def test_prefix_schedule_is_refused_where_it_would_differ(tiny_model_dir, bad, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        make_config(tiny_model_dir, scales=[4, 8], train={"schedule": "prefix", "batch_size": 2,
                                                          "per_device_batch_size": 2, **bad})


@pytest.mark.slow  # two training processes, one killed
def test_sigkill_then_rerun_resumes_to_the_same_weights(tmp_path, tiny_model_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from helpers.study.paths import REPO

    records = nested_records(24)
    raw = {"study": "kill", "seed": 0, "scales": [24], "data": {"pool_size": 40, "eval_per_category": 1},
           "model": {"base": str(tiny_model_dir)},
           "train": {"batch_size": 2, "per_device_batch_size": 2, "max_length": 32, "bf16": False, "save_steps": 2}}
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "helpers", "train", "--config", str(config), "--scale", "24"]
    for root in ("killed", "clean"):
        write_jsonl(tmp_path / root / "data" / "kill" / "subsets" / "24.jsonl", records)

    work = tmp_path / "killed" / "data" / "kill" / "models" / ".24.tmp" / "trainer"
    proc = subprocess.Popen(cmd + ["--root", str(tmp_path / "killed")], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (work / "checkpoint-4" / "trainer_state.json").exists() and time.time() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "data" / "kill" / "models" / "24").exists()  # nothing half-published

    for root in ("killed", "clean"):
        done = subprocess.run(cmd + ["--root", str(tmp_path / root)], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("resuming from checkpoint-" in done.stdout) == (root == "killed")
    killed = tmp_path / "killed" / "data" / "kill" / "models" / "24"
    assert_same_weights(adapter(killed), adapter(tmp_path / "clean" / "data" / "kill" / "models" / "24"))
    assert [r["step"] for r in read_jsonl(killed / "train_log.jsonl")] == list(range(1, 13))


@pytest.mark.slow  # accelerate launch, two processes
def test_two_processes_on_the_cpu_train_and_save_one_model(tmp_path, tiny_model_dir):
    """accelerate launch with 2 processes (gloo on the CPU): half the steps, one saved model."""
    import os
    import subprocess

    import yaml

    from helpers.finetune.launch import launch_command
    from helpers.study.loading import load_config
    from helpers.study.lock import KERNEL_ENV, KERNELS
    from helpers.study.paths import REPO

    raw = {"study": "ddp", "seed": 0, "scales": [8], "data": {"pool_size": 40, "eval_per_category": 1},
           "model": {"base": str(tiny_model_dir)},
           "train": {"batch_size": 4, "per_device_batch_size": 2, "num_processes": 2, "max_length": 32, "bf16": False}}
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "data" / "ddp" / "subsets" / "8.jsonl", nested_records(8))
    cmd = launch_command(load_config(config), config, tmp_path, "8")
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--num_processes", "2"]
    locks = tmp_path / "data" / "ddp" / KERNELS  # as when a notebook under the runner launches it
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, KERNEL_ENV: str(locks)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training scale 8") == 2  # both processes ran
    # one process tokenized (helpers.finetune.cache), the other waited for it and loaded the cache from disk
    assert done.stdout.count("once into") == 1 and done.stdout.count("(cached)") == 1, done.stdout
    assert len(list(locks.glob("*.lock"))) == 2  # each held a lock of its own: a rerun would wait for them
    models = tmp_path / "data" / "ddp" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["8"]
    assert len([p for p in (tmp_path / "data" / "ddp" / "tokenized").iterdir() if p.is_dir()]) == 1
    log = read_jsonl(models / "8" / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2]  # 8 examples / (2 per process x 2 processes)
    assert (models / "8" / "adapter_model.safetensors").exists()


@pytest.mark.slow  # a full fine-tune, then generation
def test_full_fine_tuning_saves_a_model_that_generation_loads(tmp_path, tiny_model_dir):
    from helpers.study.models import load_for_generation

    cfg = make_config(tiny_model_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 4,
                                             "max_length": 64, "bf16": False})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert not (out / "adapter_config.json").exists()
    model, _ = load_for_generation(cfg, "8", tmp_path)
    base = load_causal_lm(str(tiny_model_dir))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, base.state_dict()[n])]
    assert changed  # every weight was trainable, and some moved
