"""Training at paper scale, checked on the CPU: ZeRO-3's config in force before the model loads, gradient
checkpointing, the memory check before training, a full fine-tune of Bloom's architecture."""
import importlib.util
import json
import os

import pytest
import torch
from builders import make_config

from helpers.finetune import stage
from helpers.finetune.launch import zero_settings
from helpers.finetune.memory import GIB, check_fits, model_state_memory
from helpers.study.files import read_jsonl, write_jsonl

RECORDS = [{"id": f"b{i}", "instruction": f"复述数字{i}", "input": "", "output": f"{i}{i}", "category": "rewrite"}
           for i in range(8)]
ZERO3 = "configs/accelerate/deepspeed_zero3.yaml"


class _Stop(Exception):
    pass


@pytest.mark.slow  # DeepSpeed's ZeRO-3 config, a model load
def test_zero3_config_is_in_force_when_the_model_loads(tmp_path, tiny_model_dir, monkeypatch):
    """The model must load after TrainingArguments, which (under accelerate launch with a ZeRO-3 config) puts
    the DeepSpeed config in force: only then does from_pretrained partition the weights as they load.

    DeepSpeed is not installed here, so the arguments are given what they hold there: a live DeepSpeed
    config answering is_zero3(). Loading the model before building them records False and fails.
    """
    from transformers.integrations import deepspeed as hf_deepspeed
    from transformers.integrations import is_deepspeed_zero3_enabled

    class Zero3Config:  # what TrainingArguments keeps alive under accelerate launch (HfDeepSpeedConfig)
        def is_zero3(self):
            return True

    events = []
    real_arguments = stage.training_arguments

    def arguments(*a, **kw):
        args = real_arguments(*a, **kw)
        args.ds_stand_in = Zero3Config()
        hf_deepspeed.set_hf_deepspeed_config(args.ds_stand_in)
        events.append("arguments")
        return args

    def load(path, dtype=None, **kw):
        events.append(("load", is_deepspeed_zero3_enabled()))
        raise _Stop

    monkeypatch.setattr(stage, "training_arguments", arguments)
    monkeypatch.setattr(stage, "load_causal_lm", load)
    monkeypatch.setattr(stage, "under_deepspeed_launch", lambda: True)
    cfg = make_config(tiny_model_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 4,
                                             "bf16": True, "accelerate_config": ZERO3})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    try:
        with pytest.raises(_Stop):
            stage.run(cfg, tmp_path, "8")
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()
    assert events == ["arguments", ("load", True)]


@pytest.mark.slow  # DeepSpeed's config, a model load
def test_a_deepspeed_config_outside_accelerate_launch_is_refused(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir, train={"batch_size": 4, "per_device_batch_size": 4, "bf16": False,
                                             "accelerate_config": ZERO3})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    with pytest.raises(ValueError, match=r"train\.accelerate_config: .*deepspeed_zero3\.yaml sets up DeepSpeed.*accelerate launch"):
        stage.run(cfg, tmp_path, "8")


@pytest.mark.slow  # DeepSpeed's config
def test_bf16_that_disagrees_with_the_deepspeed_config_is_refused_before_loading(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(stage, "under_deepspeed_launch", lambda: True)
    monkeypatch.setattr(stage, "load_causal_lm", lambda *a, **kw: pytest.fail("the model was loaded"))
    cfg = make_config(tiny_model_dir, train={"batch_size": 4, "per_device_batch_size": 4, "bf16": False,
                                             "accelerate_config": ZERO3})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    with pytest.raises(ValueError, match=r"train\.bf16: False .* disagrees with train\.accelerate_config: .*deepspeed_zero3"):
        stage.run(cfg, tmp_path, "8")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None and not os.environ.get("CI"),
                    reason="DeepSpeed is not installed (pip install -e .[gpu]; make test installs it)")
@pytest.mark.slow  # DeepSpeed ZeRO-3 in two processes
def test_deepspeed_zero3_partitions_the_weights_as_they_load(tmp_path, tiny_bloom_dir):
    """The real thing where DeepSpeed is importable (its CPU accelerator works without a GPU): accelerate launch
    with configs/accelerate/deepspeed_zero3.yaml fully fine-tunes the tiny Bloom, the weights already
    partitioned when from_pretrained returns."""
    import subprocess

    import yaml

    from helpers.finetune.launch import launch_command
    from helpers.study.loading import load_config
    from helpers.study.paths import REPO

    raw = {"study": "zero3", "seed": 0, "scales": [8], "data": {"pool_size": 40, "eval_per_category": 1},
           "model": {"base": str(tiny_bloom_dir)},
           "train": {"method": "full", "batch_size": 4, "per_device_batch_size": 4, "max_length": 32, "bf16": True,
                     "lr": 1e-3, "accelerate_config": ZERO3}}
    config = tmp_path / "zero3.yaml"
    config.write_text(yaml.safe_dump(raw))
    write_jsonl(tmp_path / "data" / "zero3" / "subsets" / "8.jsonl", RECORDS)
    cmd = launch_command(load_config(config), config, tmp_path, "8")
    cmd[cmd.index("--num_processes") + 1] = "1"
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "ZeRO-3: the weights were partitioned as they loaded" in done.stdout
    out = tmp_path / "data" / "zero3" / "models" / "8"
    assert (out / "config.json").exists() and read_jsonl(out / "train_log.jsonl")


def test_full_fine_tune_of_bloom_uses_the_label_only_head(tmp_path, tiny_bloom_dir, capsys):
    cfg = make_config(tiny_bloom_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 4,
                                             "max_length": 32, "bf16": False, "lr": 1e-3})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert not (out / "adapter_config.json").exists()
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2] and all(r["loss"] > 0 for r in log)
    printed = capsys.readouterr().out
    assert "label-only loss head off" not in printed and "132,992 of 132,992 parameters trained" in printed
    from safetensors.torch import load_file

    before = load_file(tiny_bloom_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the weights themselves were trained


def test_gradient_checkpointing_reaches_the_trainer_and_trains(tmp_path, tiny_bloom_dir, monkeypatch):
    seen = []
    real = stage.LabelOnlyHeadTrainer.train

    def train_and_look(self, *a, **kw):
        result = real(self, *a, **kw)
        base = self.model.get_base_model()
        seen.append(getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing)
        return result

    monkeypatch.setattr(stage.LabelOnlyHeadTrainer, "train", train_and_look)
    cfg = make_config(tiny_bloom_dir, train={"batch_size": 4, "per_device_batch_size": 4, "max_length": 32,
                                             "bf16": False, "gradient_checkpointing": True})
    args = stage.training_arguments(cfg, tmp_path / "args", "sequential")
    assert getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    assert seen == [True]
    from safetensors.torch import load_file

    adapter = load_file(out / "adapter_model.safetensors")
    assert any(w.abs().sum() > 0 for k, w in adapter.items() if "lora_B" in k)  # gradients got through
    # the forward runs again in the backward pass: 2 x params x tokens more (8NT for a full fine-tune)
    e = json.loads((out / "train_summary.json").read_text())["estimate"]
    frozen = e["params"] - e["trainable"]
    assert e["flops"] == e["epochs"] * e["tokens"] * (4 * frozen + 6 * e["trainable"] + 2 * e["params"]) > 0


def test_gradient_checkpointing_on_an_architecture_without_it_is_refused(tmp_path, tiny_bloom_dir, monkeypatch):
    real = stage.load_causal_lm

    def load_without(*a, **kw):
        model = real(*a, **kw)
        model.supports_gradient_checkpointing = False
        return model

    monkeypatch.setattr(stage, "load_causal_lm", load_without)
    monkeypatch.setattr(stage.LabelOnlyHeadTrainer, "train", lambda *a, **kw: pytest.fail("training started"))
    cfg = make_config(tiny_bloom_dir, train={"batch_size": 4, "per_device_batch_size": 4, "bf16": False,
                                             "gradient_checkpointing": True})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    with pytest.raises(ValueError, match=r"train\.gradient_checkpointing: true, but BloomForCausalLM .* does not support"):
        stage.run(cfg, tmp_path, "8")


def test_gradient_checkpointing_is_a_known_setting_off_by_default_and_on_in_paper():
    from helpers.study.loading import load_config

    assert make_config("x").train.gradient_checkpointing is False
    assert load_config("configs/paper.yaml").train.gradient_checkpointing is True


def test_model_state_memory_by_hand():
    p = 7.07e9
    assert model_state_memory(p, p, stage=3, n_gpus=8) == pytest.approx(18 * p / 8)  # fp32 gradient partitions
    assert model_state_memory(p, p, stage=0, n_gpus=8) == pytest.approx(16 * p)
    assert model_state_memory(p, p, stage=1, n_gpus=8) == pytest.approx(2 * p + 2 * p + 12 * p / 8)
    assert model_state_memory(p, p, stage=2, n_gpus=8) == pytest.approx(2 * p + 14 * p / 8)
    assert model_state_memory(p, p, stage=0, n_gpus=1, weight_bytes=4) == pytest.approx(16 * p)  # fp32 + autocast
    lora = 3.9e6
    assert model_state_memory(p + lora, lora, stage=0, n_gpus=1) == pytest.approx(2 * p + 16 * lora)
    assert model_state_memory(p, p, stage=3, n_gpus=8, offload_optimizer=True, offload_params=True) == \
        pytest.approx(0)  # one gathered layer only (largest_layer)
    with pytest.raises(ValueError, match="ZeRO stage"):
        model_state_memory(p, p, stage=4, n_gpus=8)


def test_the_paper_setup_fits_80gb_gpus_and_plain_data_parallel_does_not():
    zero3 = zero_settings(ZERO3)
    assert zero3 == {"stage": 3, "offload_optimizer": False, "offload_params": False, "bf16": True}
    p = 7.07e9
    need = check_fits("full", ZERO3, p, p, zero3, 8, weight_bytes=2, gpu_bytes=80 * GIB)
    assert need / GIB == pytest.approx(18 * p / 8 / GIB, abs=0.01)
    with pytest.raises(ValueError) as err:
        check_fits("full", "configs/accelerate/multi_gpu.yaml", p, p, zero_settings("configs/accelerate/multi_gpu.yaml"),
                   8, weight_bytes=2, gpu_bytes=80 * GIB)
    message = str(err.value)
    assert "105.4 GiB per GPU" in message and "80.0 GiB" in message
    assert all(s in message for s in ("train.method (now full", "train.accelerate_config (now configs/accelerate/multi_gpu.yaml",
                                      "train.num_processes"))
    assert check_fits("full", None, p, p, None, 1, weight_bytes=2, gpu_bytes=None) == pytest.approx(16 * p)  # no GPU


def test_zero_settings_read_a_deepspeed_json_too(tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}))
    acc = tmp_path / "acc.yaml"
    acc.write_text(f"distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: {ds}\n")
    assert zero_settings(str(acc)) == {"stage": 2, "offload_optimizer": True, "offload_params": False, "bf16": None}
    assert zero_settings(None) is None and zero_settings("configs/accelerate/single_gpu.yaml") is None


def test_a_model_that_does_not_fit_stops_before_training(tmp_path, tiny_bloom_dir, monkeypatch):
    monkeypatch.setattr(stage, "gpu_memory", lambda: 2**20)  # a 1 MiB GPU
    monkeypatch.setattr(stage.LabelOnlyHeadTrainer, "train", lambda *a, **kw: pytest.fail("training started"))
    cfg = make_config(tiny_bloom_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 4, "bf16": False})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    with pytest.raises(ValueError, match=r"the model does not fit: .* need 2\.0 MiB per GPU .* a GPU has 1\.0 MiB\. Change train\.method"):
        stage.run(cfg, tmp_path, "8")


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None and not os.environ.get("CI"),
                    reason="DeepSpeed is not installed (pip install -e .[gpu]; make test installs it)")
@pytest.mark.parametrize("offload", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("gpus", [1, 8, 16])
def test_zero3_memory_matches_deepspeeds_own_estimator(gpus, offload):
    """DeepSpeed's estimator for ZeRO-3 without offload: 18 bytes per parameter over the GPUs plus the largest
    layer at 4 bytes (its additional_buffer_factor only scales the CPU figure). Bloomz-7B1's shape."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    p, largest = 7_069_016_064, 250880 * 4096
    optimizer, params = offload
    _, gpu_mem, _ = estimate_zero3_model_states_mem_needs(p, largest, num_gpus_per_node=gpus, cpu_offload=optimizer,
                                                          cpu_offload_params=params)
    ours = model_state_memory(p, p, stage=3, n_gpus=gpus, offload_optimizer=optimizer, offload_params=params,
                              largest_layer=largest)
    assert ours == pytest.approx(gpu_mem, rel=1e-6)


def test_the_logits_that_the_label_only_head_does_not_spare_count_against_the_card():
    """On 8 GPUs Bloom's logits (8 x 1,024 tokens x 250,880 words) are about 19 GiB per GPU beside the model states:
    a 24 GiB card that holds the states alone is refused once they are counted."""
    from helpers.finetune.memory import logits_memory

    p, largest = 7.07e9, 250880 * 4096
    zero3 = zero_settings(ZERO3)
    logits = logits_memory(8, 1024, 250880)
    assert logits == 8 * 1024 * 250880 * 10
    assert check_fits("full", ZERO3, p, p, zero3, 8, 2, 24 * GIB, largest_layer=largest) < 24 * GIB
    with pytest.raises(ValueError, match=r"and 19\.1 GiB of logits need .* per GPU"):
        check_fits("full", ZERO3, p, p, zero3, 8, 2, 24 * GIB, largest_layer=largest, logits=logits)


def test_the_check_before_training_counts_the_logits_on_more_than_one_process(tmp_path, tiny_bloom_dir, monkeypatch):
    """On more than one process the label-only head is off, so every position's logits come on top of the model
    states: a card that holds the states and half the logits is refused before training, the logits named."""
    from transformers import AutoConfig

    from helpers.estimate import local_params
    from helpers.finetune.memory import logits_memory, size

    cfg = make_config(tiny_bloom_dir, train={"method": "full", "batch_size": 4, "per_device_batch_size": 2,
                                             "num_processes": 2, "max_length": 32, "bf16": False})
    states = 16 * local_params(cfg)  # fp32, no ZeRO: every GPU holds weights, gradients and Adam states
    logits = logits_memory(2, 32, AutoConfig.from_pretrained(tiny_bloom_dir).vocab_size)
    monkeypatch.setattr(stage, "world_size", lambda: 2)  # as launched on two processes (no process group needed)
    monkeypatch.setattr(stage.torch, "set_num_threads", lambda n: None)  # the rest of the session keeps its threads
    monkeypatch.setattr(stage, "gpu_memory", lambda: int(states + logits / 2))
    monkeypatch.setattr(stage.LabelOnlyHeadTrainer, "train", lambda *a, **kw: pytest.fail("training started"))
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    with pytest.raises(ValueError, match=rf"the model does not fit: .* and {size(logits)} of logits need "
                                         rf"{size(states + logits)} per GPU"):
        stage.run(cfg, tmp_path, "8")


@pytest.mark.slow
def test_a_full_fine_tune_is_published_with_its_tokenizer_and_generation_config(tmp_path, tiny_bloom_dir):
    """The published folder is what vLLM, AutoTokenizer and anyone downloading it load: in a fresh process,
    from that folder alone (the base model's folder out of reach)."""
    import shutil
    import subprocess
    import sys

    base = tmp_path / "base"
    shutil.copytree(tiny_bloom_dir, base)
    cfg = make_config(str(base), train={"method": "full", "batch_size": 4, "per_device_batch_size": 4,
                                        "max_length": 32, "bf16": False, "lr": 1e-3})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out, = stage.run(cfg, tmp_path, "8")
    shutil.rmtree(base)
    assert (out / "generation_config.json").exists() and (out / "tokenizer.json").exists()
    code = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; p = sys.argv[1]; "
            "tok = AutoTokenizer.from_pretrained(p); m = AutoModelForCausalLM.from_pretrained(p); "
            "ids = tok('复述数字3', return_tensors='pt').input_ids; print(type(m).__name__, tok.eos_token, "
            "m.generate(ids, max_new_tokens=2, do_sample=False).shape[1] - ids.shape[1])")
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["BloomForCausalLM", "</s>", "2"]


def test_accumulation_follows_the_launched_world_size_and_a_disagreeing_config_is_refused(tmp_path, monkeypatch):
    """16 processes launched under a config for 8 would silently train with batches of 128: a named error instead.
    The world size that launched sets the accumulation (2 processes x 2 per device x 2 steps = 8)."""
    monkeypatch.setenv("WORLD_SIZE", "16")
    cfg = make_config("m", train={"batch_size": 64, "per_device_batch_size": 4, "num_processes": 8, "bf16": False})
    with pytest.raises(ValueError, match=r"train\.num_processes: 8, but 16 process\(es\) were launched.*batches of "
                                         r"128 instead of train\.batch_size 64"):
        stage.training_arguments(cfg, tmp_path / "args", "sequential")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = make_config("m", train={"batch_size": 8, "per_device_batch_size": 2, "num_processes": 2, "bf16": False})
    def as_given(**kw):  # the arguments as given: building them would start a process group of 2
        return kw

    as_given.__dataclass_fields__ = stage.TrainingArguments.__dataclass_fields__
    monkeypatch.setattr(stage, "TrainingArguments", as_given)
    assert stage.training_arguments(cfg, tmp_path / "args", "sequential")["gradient_accumulation_steps"] == 2
    monkeypatch.setattr(stage, "world_size", lambda: 1)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 4)  # a process group, whatever the environment says
    with pytest.raises(ValueError, match=r"but 4 process\(es\) were launched"):
        stage.training_arguments(cfg, tmp_path / "args", "sequential")


def _checkpoint_steps(tmp_path, tiny_bloom_dir, monkeypatch, **train) -> list[int]:
    saved = []
    real = stage.CachedRowsTrainer._save_checkpoint

    def spy(self, *a, **kw):
        saved.append(self.state.global_step)
        return real(self, *a, **kw)

    monkeypatch.setattr(stage.CachedRowsTrainer, "_save_checkpoint", spy)
    cfg = make_config(tiny_bloom_dir, train={"batch_size": 1, "per_device_batch_size": 1, "max_length": 32,
                                             "bf16": False, **train})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    stage.run(cfg, tmp_path, "8")
    return saved


def test_the_default_cadence_is_a_share_of_the_run_not_a_step_count(tmp_path, tiny_bloom_dir, monkeypatch):
    """paper.yaml's 2M run is 62,500 steps: a fixed 20-step cadence wrote 3,125 ZeRO-3 checkpoints of ~100 GB.
    The default is a share of the run (Trainer's save_steps below 1), here 8 steps at 0.25: every 2 steps."""
    from helpers.study.loading import load_config

    paper = load_config("configs/paper.yaml").train
    assert paper.save_steps is None and paper.save_share * 62_500 >= 3_000
    assert _checkpoint_steps(tmp_path, tiny_bloom_dir, monkeypatch, save_share=0.25) == [2, 4, 6, 8]


def test_a_time_cadence_saves_when_the_minutes_have_passed(tmp_path, tiny_bloom_dir, monkeypatch):
    """The stage's clock advances 50 s at every read (the callback's start, each step's end, each save): 90 s have
    passed at every second step, counted from the last checkpoint. The step cadence (100) never comes in 8 steps,
    and Trainer's own save at the last step alone would give [8]; a clock not restarted by a save, every step."""
    import types

    clock = iter(range(0, 10_000, 50))
    monkeypatch.setattr(stage, "time", types.SimpleNamespace(monotonic=lambda: next(clock),
                                                             perf_counter=stage.time.perf_counter))
    steps = _checkpoint_steps(tmp_path, tiny_bloom_dir, monkeypatch, save_steps=100, save_minutes=1.5)
    assert steps == [2, 4, 6, 8]


def test_a_whole_pool_largest_scale_records_the_examples_it_trained_on(tmp_path, tiny_bloom_dir):
    """data.largest_scale: whole_pool (paper.yaml): the model named 8 trains on the 6 records that filtering left of
    its subset, and its train_summary.json says 6, not the 8 of its name."""
    cfg = make_config(tiny_bloom_dir, data={"source": "builtin", "pool_size": 40, "eval_per_category": 1,
                                            "largest_scale": "whole_pool"},
                      train={"batch_size": 2, "per_device_batch_size": 2, "max_length": 32, "bf16": False})
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS[:6])
    out, = stage.run(cfg, tmp_path, "8")
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["examples"], summary["steps"]) == (6, 3)
