"""What a GPU user plans a study with, printed by ``python -m helpers run --dry-run``.

Why here: a paper-scale study is booked in GPU-hours and judge dollars before anything runs, and
the figures come from several stages' rules: the memory of model states under the configured
ZeRO stage (``helpers.finetune.memory``, the same rule the check before training applies), the
tokens each scale trains on, a time from a stated throughput, and the judge's requests and cost.
The runner is shared by every stage and imports none of them, so the command line passes
``plan_lines`` to ``run_study`` as it passes the preflight and the report.

Every figure says what it assumes; the token counts come from ``data_stats.json`` once the data
stage has run (else about 300 tokens per example), the judge's token counts are upper bounds
(the full answer budget and ``judge.max_tokens`` for every request).
"""
from __future__ import annotations

from pathlib import Path

from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig, split_model
from helpers.study.files import read_json, read_jsonl
from helpers.study.paths import resolve

DEFAULT_TFLOPS = 125.0
"""Sustained bf16 TFLOP/s per GPU when none is stated: 40% of an A100's 312 peak (``--tflops`` to change)."""


def tokens_per_example(cfg: StudyConfig, sd: Path) -> tuple[float, str]:
    """Mean tokens of one training example, from ``data_stats.json`` at ~1.5 characters per token (at most
    ``train.max_length``: longer examples are cut there)."""
    stats = sd / "data_stats.json"
    if stats.exists():
        chars = read_json(stats).get("pool", {}).get("chars", {}).get("mean")
        if chars:
            return min(chars / 1.5 + 8, cfg.train.max_length), "from data_stats.json at ~1.5 characters per token"
    return min(300.0, cfg.train.max_length), "assuming 300 tokens per example"


def compute_plan(cfg: StudyConfig, sd: Path) -> dict:
    """Examples, tokens and FLOPs of training every scale (6 x params x tokens; LoRA: about 4 x params x tokens)."""
    t = cfg.train
    trained = [[split_model(m)[1] for m in cfg.strategy_models(st) if m not in cfg.model.checkpoints]
               for st in cfg.strategies]
    # the prefix schedule passes over each strategy's largest subset once; separate runs train every scale
    examples = sum(max(ns, default=0) if t.schedule == "prefix" else sum(ns) for ns in trained)
    per_example, source = tokens_per_example(cfg, sd)
    params = cfg.model.params or (2.68e8 if cfg.model.base == "embedded" else 7e9)
    tokens = examples * per_example
    flops = (6 if t.method == "full" else 4) * params * tokens * t.epochs
    return {"examples": examples, "tokens": tokens, "per_example": per_example, "tokens_source": source,
            "params": params, "flops": flops}


def _duration(hours: float) -> str:
    return f"{hours:,.1f} hours" if hours >= 1 else f"{hours * 60:.1f} minutes" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"


def _count(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,.0f}"


def training_lines(cfg: StudyConfig, sd: Path, tflops: float) -> list[str]:
    """Tokens in all and per scale, memory of model states per GPU, hours at ``tflops`` per GPU."""
    from helpers.finetune.launch import zero_settings
    from helpers.finetune.memory import model_state_memory, size

    t = cfg.train
    trained = [m for m in cfg.models[1:] if m not in cfg.model.checkpoints]
    if not trained:
        return ["training: none (every scale maps to a checkpoint)"]
    est = compute_plan(cfg, sd)
    params = est["params"]
    lines = [f"training: {est['examples']:,} examples in all, about {est['tokens']:,.0f} tokens x {t.epochs:g} epochs "
             f"({est['tokens_source']}), {t.method} on a {params / 1e9:.2f}B-parameter model",
             f"tokens to train per scale (x {t.epochs:g} epochs): " + ", ".join(
                 f"{m}: {_count(split_model(m)[1] * est['per_example'] * t.epochs)}" for m in trained)]
    # LoRA's adapters: about 1% of the weights at rank 16 on every linear layer, in proportion to the rank
    trainable = params if t.method == "full" else params * 0.01 * t.lora.r / 16
    zero = zero_settings(t.accelerate_config) or {"stage": 0, "offload_optimizer": False, "offload_params": False}
    weight_bytes = 2 if t.bf16 is True or zero["stage"] else 4
    need = model_state_memory(params, trainable, zero["stage"], t.num_processes, weight_bytes,
                              zero["offload_optimizer"], zero["offload_params"])
    setup = f"ZeRO stage {zero['stage']}" if zero["stage"] else "no ZeRO sharding"
    lines.append(f"memory per GPU for model states: {size(need)} ({t.method}, {params:,.0f} parameters, "
                 f"{'bf16' if weight_bytes == 2 else 'fp32'} weights, {setup} over {t.num_processes} GPU(s)); "
                 "activations come on top" + (", gradient checkpointing keeps them small" if t.gradient_checkpointing else ""))
    hours = est["flops"] / (t.num_processes * tflops * 1e12) / 3600
    lines.append(f"compute: about {est['flops']:.2e} FLOPs = {hours * t.num_processes:,.1f} GPU-hours, about {_duration(hours)} "
                 f"on {t.num_processes} GPU(s) at {tflops:g} TFLOP/s each (state your GPUs' sustained rate with --tflops)")
    return lines


def eval_items(cfg: StudyConfig, sd: Path) -> tuple[list[dict] | None, int, str]:
    """The eval items where they can be read now (the study's eval set or ``data.eval_file``), their count,
    and where the count comes from."""
    for path in (sd / "eval.jsonl", resolve(cfg.data.eval_file) if cfg.data.eval_file else None):
        if path is not None and path.is_file() and path.suffix == ".jsonl":
            items = read_jsonl(path)
            return items, len(items), f"{path.name}"
    n = cfg.data.eval_per_category * len(CATEGORIES)
    why = f"{cfg.data.eval_file} not readable here, assuming" if cfg.data.eval_file else "the built-in suite's"
    return None, n, f"{why} {cfg.data.eval_per_category} per use case"


def judge_lines(cfg: StudyConfig, sd: Path) -> list[str]:
    """Requests of every LLM judge (the headline and ``judge.others``) and their cost at most, at its prices."""
    from helpers.study.judges import study_judges

    items, n, source = eval_items(cfg, sd)
    shown = sum(len(it.get("question", "")) + len(it.get("reference") or it.get("std_answer") or "")
                for it in items) / len(items) if items else 200.0
    answer = sum(cfg.generate.tokens_for(c) for c in CATEGORIES) / len(CATEGORIES)
    lines = []
    for judge in study_judges(cfg):
        j, who = judge.settings, f"judge {judge.name}" + ("" if judge.headline else f" ({judge.section})")
        if j.kind == "offline":
            lines.append(f"{who}: offline, no requests")
            continue
        requests = n * len(cfg.models) * j.runs
        rubric = 0.0
        prompts = resolve(j.prompts_file)
        if prompts.is_file():
            texts = [r.get("prompt", "") for r in read_jsonl(prompts)]
            rubric = sum(map(len, texts)) / max(len(texts), 1)
        prompt_tokens = requests * ((rubric + shown) / 1.5 + answer)
        completion_tokens = requests * j.max_tokens
        cost = j.cost(prompt_tokens, completion_tokens)
        lines.append(f"{who}: {requests:,} requests ({n:,} items [{source}] x {len(cfg.models)} models x {j.runs} run(s)) "
                     f"to {j.model}, at most about {prompt_tokens:,.0f} prompt + {completion_tokens:,.0f} completion "
                     f"tokens, at most ${cost:,.2f} at ${j.price_per_1k_input:g} / ${j.price_per_1k_output:g} per 1k tokens")
    return lines


def plan_lines(cfg: StudyConfig, sd: Path, out=print, tflops: float | None = None) -> None:
    """The dry run's planning figures (after the runner's plan, before the preflight)."""
    for line in training_lines(cfg, sd, tflops or DEFAULT_TFLOPS) + judge_lines(cfg, sd):
        out(line)
