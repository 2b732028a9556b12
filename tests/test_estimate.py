"""The dry run's planning figures (helpers.estimate): each checked against a figure computed here by hand."""
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


def test_plan_lines_prints_training_then_judge(tmp_path):
    lines = []
    plan_lines(make_config("m"), tmp_path, out=lines.append)
    assert lines[0].startswith("training:") and lines[-1] == "judge offline: offline, no requests"
