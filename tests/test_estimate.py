"""The dry run's planning figures (helpers.estimate): each checked against a figure computed here by hand."""
from pathlib import Path

import pytest
from builders import make_config

from helpers.__main__ import main
from helpers.estimate import judge_lines, plan_lines, training_lines
from helpers.study.files import write_json, write_jsonl


def test_training_time_follows_the_stated_rate_and_tokens_come_from_the_data_stats(tmp_path):
    cfg = make_config("m", model={"base": "m", "params": 1e12}, train={
        "method": "full", "batch_size": 8, "per_device_batch_size": 1, "num_processes": 8, "max_length": 512, "bf16": True})
    write_json(tmp_path / "data_stats.json", {"pool": {"chars": {"mean": 438.0}}})  # 438 / 1.5 + 8 = 300 tokens
    lines = training_lines(cfg, tmp_path, tflops=100)
    tokens = (4 + 8) * 300  # separate runs: every scale trains on its own subset
    flops = 6 * 1e12 * tokens
    assert f"about {tokens:,} tokens x 1 epochs (from data_stats.json" in lines[0]
    assert lines[1] == "tokens to train per scale (x 1 epochs): 4: 1,200, 8: 2,400"
    # no DeepSpeed: every GPU holds all 16 bytes per parameter (16e12 bytes)
    assert lines[2].startswith(f"memory per GPU for model states: {16e12 / 2**30:.1f} GiB (full, 1,000,000,000,000 parameters, "
                               "bf16 weights, no ZeRO sharding over 8 GPU(s)")
    assert lines[3].startswith("peak memory per GPU: not estimated")
    seconds = flops / (8 * 100e12)
    assert f"about {seconds:.0f} s on 8 GPU(s) at 100 TFLOP/s each" in lines[4]
    assert training_lines(cfg, tmp_path, tflops=50)[4] != lines[4]


def test_gradient_checkpointing_costs_8nt_and_the_logits_enter_the_peak_memory(tmp_path):
    """Recomputing the forward in the backward pass makes a full fine-tune 8 x params x tokens, not 6; the logits of
    Bloom's 250,880 words at 8 x 1,024 tokens (about 19 GiB, the label-only head being off on 8 GPUs) come on top
    of the model states."""
    cfg = make_config("m", model={"base": "m", "params": 1e9, "vocab_size": 250880, "hidden_size": 4096}, train={
        "method": "full", "batch_size": 64, "per_device_batch_size": 8, "num_processes": 8, "max_length": 1024,
        "bf16": True, "gradient_checkpointing": True, "accelerate_config": "configs/accelerate/deepspeed_zero3.yaml"})
    lines = training_lines(cfg, tmp_path, tflops=100)
    tokens = (4 + 8) * 300
    assert f"about {8 * 1e9 * tokens:.2e} FLOPs" in lines[4]
    states = 18 * 1e9 / 8 + 4 * 250880 * 4096
    logits = 8 * 1024 * 250880 * 10
    assert lines[2].startswith(f"memory per GPU for model states: {states / 2**30:.1f} GiB")
    assert lines[3].startswith(f"peak memory per GPU: {(states + logits) / 2**30:.1f} GiB = model states + "
                               f"{logits / 2**30:.1f} GiB of logits")


def test_the_judge_cost_is_an_upper_bound_from_the_eval_set_and_the_rubrics(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"class": "math", "prompt": "评" * 300}, {"class": "code", "prompt": "评" * 150}])
    cfg = make_config("m", judge={"kind": "openai", "model": "j", "runs": 2, "prompts_file": str(prompts), "max_tokens": 100,
                                  "price_per_1k_input": 1.0, "price_per_1k_output": 2.0},
                      generate={"max_new_tokens": {"default": 30}})
    write_jsonl(tmp_path / "eval.jsonl", [{"id": "a", "category": "math", "question": "问" * 40, "reference": "答" * 5},
                                          {"id": "b", "category": "code", "question": "问" * 20, "reference": "答" * 10}])
    [line] = judge_lines(cfg, tmp_path)
    judgments = 2 * 3 * 2  # items x models (base, 4, 8) x runs
    requests = judgments * 3  # each judgment asked up to judge.parse_retries (2) more times
    # the longest rubric (300 three-byte characters), the longest item (question + reference: 45 characters, not 30),
    # the answer budget at 32 bytes a token, the message's headers (【问题】, 【参考答案】, 【待评回答】: 16 three-byte
    # characters, and 9 line breaks), 16 tokens of chat format: tokens never exceed UTF-8 bytes
    per_prompt = 3 * 300 + 3 * 45 + 30 * 32 + (3 * 16 + 9) + 16
    prompt_tokens, completion_tokens = requests * per_prompt, requests * 100
    cost = prompt_tokens / 1000 * 1.0 + completion_tokens / 1000 * 2.0
    assert line.startswith(f"judge j: {judgments} judgments (2 items [eval.jsonl] x 3 models x 2 run(s)) to j, "
                           f"at most {requests} requests")
    assert f"{prompt_tokens:,.0f} prompt + {completion_tokens:,.0f} completion tokens: at most ${cost:,.2f}" in line
    assert judge_lines(make_config("m"), tmp_path) == ["judge offline: offline, no requests"]
    two = make_config("m", judge={"kind": "offline", "others": {"gpt": {"kind": "openai", "model": "j", "runs": 2,
                                  "prompts_file": str(prompts), "max_tokens": 100, "price_per_1k_input": 1.0,
                                  "price_per_1k_output": 2.0}}}, generate={"max_new_tokens": {"default": 30}})
    assert judge_lines(two, tmp_path) == ["judge offline: offline, no requests", line.replace("judge j:", "judge gpt (judge.others.gpt):")]


def test_tflops_is_a_dry_run_setting(tmp_path, capsys):
    assert main(["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--tflops", "90"]) == 2
    assert "--tflops: only with --dry-run" in capsys.readouterr().err
    assert main(["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--dry-run", "--tflops", "90"]) == 0
    assert "at 90 TFLOP/s each" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["0", "-5"])
def test_tflops_must_be_positive(tmp_path, capsys, bad):
    assert main(["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--dry-run", "--tflops", bad]) == 2


def test_plan_lines_prints_training_then_judge_then_the_disk(tmp_path):
    lines = []
    plan_lines(make_config("m"), tmp_path, out=lines.append)
    assert lines[0].startswith("training:") and lines[-2] == "judge offline: offline, no requests"
    assert lines[-1].startswith("disk: at most ") and f"on the disk of {tmp_path}" in lines[-1]


# ------------------------------------------------------------------ the disk

def _du(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths if p.exists() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def test_the_disk_estimate_holds_a_finished_micro_study_output_by_output(micro_study):
    """Every file the micro study wrote belongs to an output the estimate counts, and each counted output is at least
    what the study wrote for it; the whole estimate is at least the finished study's footprint. (The estimate once
    counted checkpoints and adapters only: the micro study passed it on an 84 MiB disk, asking for 81.8 MiB, and ran
    out of space saving its first model, whose folder holds Gemma's 33 MB tokenizer.)"""
    from helpers.estimate import MARGIN_BYTES, MARGIN_SHARE, disk_plan
    from helpers.study.loading import load_config, study_dir

    root = micro_study[0]
    cfg = load_config("configs/micro.yaml")
    sd, reports = study_dir(cfg, root), root / "reports" / "micro"
    plan_ = disk_plan(cfg, sd)
    counted = {what.split(" (")[0].split(":")[0]: n for what, n, _ in plan_["items"]}
    outputs = {  # what the estimate calls it: the files of the finished study it stands for
        "data": ["pool.jsonl", "removed.jsonl", "subsets", "eval.jsonl", "data_stats.json"],
        "published models": ["models"],
        "tokenized cache": ["tokenized"],
        "answers": ["answers", "generate_cache"],
        "judgments of judge offline": ["judgments", "judge_cache"],
        "analysis": ["results.csv", "results.json", "figures", "manifest.json"],
        "8 executed notebook(s), logs and stage records": ["notebooks", "logs", ".stages", ".kernels", ".study.lock", ".study.lock.json"],
    }
    files = {f for f in sd.rglob("*") if f.is_file()}
    for what, names in outputs.items():
        mine = {f for f in files if f.relative_to(sd).parts[0] in names}
        assert mine, f"{what}: no files {names} in the finished study"
        assert counted[what] >= _du(*mine), f"{what}: counted {counted[what]:,} bytes, the study wrote {_du(*mine):,}"
        files -= mine
    assert not files, f"files of the study that no counted output stands for: {sorted(map(str, files))}"
    html = reports / "notebooks"
    assert counted["8 notebook(s) rendered to HTML"] >= _du(html) > 0
    assert counted["the report"] >= _du(reports) - _du(html) > 0
    assert counted["checkpoints"] > 2 * 30_000_000  # two of them at once: the adapter, its Adam moments, the tokenizer
    study = _du(sd, reports)
    assert sum(n for _, n, _ in plan_["items"]) >= study + counted["checkpoints"]
    disk = plan_["disks"][0]
    assert disk["need"] == pytest.approx(disk["bytes"] * (1 + MARGIN_SHARE) + MARGIN_BYTES) and disk["need"] > 2 * study


def test_the_embedded_models_sizes_match_its_converted_copy_and_a_trained_adapter(micro_study):
    """The constants used before the embedded model is converted are its real sizes, and the LoRA count read from
    the safetensors headers is the adapter the micro study trained (4 bytes a parameter)."""
    from helpers.estimate import (
        EMBEDDED_COPY_BYTES,
        EMBEDDED_LORA_PER_RANK,
        EMBEDDED_TOKENIZER_BYTES,
        base_folder,
        lora_parameters,
        tokenizer_bytes,
    )
    from helpers.study.loading import load_config, study_dir

    cfg = load_config("configs/micro.yaml")
    folder = base_folder(cfg)
    assert folder is not None and (folder / "done.json").exists()  # converted by the micro study at the latest
    assert tokenizer_bytes(cfg) == EMBEDDED_TOKENIZER_BYTES
    assert EMBEDDED_COPY_BYTES >= _du(folder) > 0.99 * EMBEDDED_COPY_BYTES - (1 << 20)
    assert lora_parameters(cfg, 0) == EMBEDDED_LORA_PER_RANK * cfg.train.lora.r == 3_796_992
    adapter = study_dir(cfg, micro_study[0]) / "models" / "12" / "adapter_model.safetensors"
    assert 4 * 3_796_992 <= adapter.stat().st_size < 4 * 3_796_992 + 100_000
    narrow = load_config("configs/micro.yaml", ["train.lora.targets=[q_proj, v_proj]", "train.lora.r=8"])
    assert lora_parameters(narrow, 0) == 18 * 8 * ((640 + 1024) + (640 + 256))  # 18 layers of Gemma 3 270M


def test_the_preflight_refuses_a_disk_smaller_than_the_estimate_and_names_what_fills_it(tmp_path, monkeypatch):
    """The micro study on an 84 MiB disk (where it once passed and then failed) is refused before anything runs; on
    a disk with room for the estimate it passes. Where the embedded model is not converted yet, its copy counts on
    the disk of STUDY_CACHE."""
    import helpers.estimate as estimate
    from helpers.preflight import PreflightFailed, check_study
    from helpers.study.loading import load_config, study_dir
    from helpers.study.runner import plan

    monkeypatch.setenv("STUDY_CACHE", str(tmp_path / "cache"))  # a fresh machine: the embedded model not converted
    cfg = load_config("configs/micro.yaml")
    sd = study_dir(cfg, tmp_path)
    monkeypatch.setattr(estimate, "free_disk", lambda path: 84 << 20)
    with pytest.raises(PreflightFailed, match=r"disk: the run needs at most [\d.]+ GiB on the disk of .*\(the embedded "
                                              r"model's fp32 copy, converted once 1.0 GiB; checkpoints \(two of [\d.]+ "
                                              r"MiB\) and a model being published [\d.]+ MiB; published models \(2 of "
                                              r"[\d.]+ MiB\).*, but it has 84.0 MiB free: free space there, or pass --root"):
        check_study(cfg, sd, plan(cfg, sd), out=lambda s: None)
    items = estimate.disk_plan(cfg, sd)["items"]
    what, n, where = items[-1]
    assert what == "the embedded model's fp32 copy, converted once" and n == estimate.EMBEDDED_COPY_BYTES
    assert str(where).startswith(str(tmp_path / "cache"))
    need = estimate.disk_plan(cfg, sd)["disks"][0]["need"]
    monkeypatch.setattr(estimate, "free_disk", lambda path: int(need) + 1)
    lines = []
    check_study(cfg, sd, plan(cfg, sd), out=lines.append)
    assert any(line.startswith("  [ok  ] disk: ") for line in lines)
    monkeypatch.setattr(estimate, "free_disk", lambda path: int(need) - 1)
    with pytest.raises(PreflightFailed, match="disk: the run needs at most"):
        check_study(cfg, sd, plan(cfg, sd), out=lambda s: None)
