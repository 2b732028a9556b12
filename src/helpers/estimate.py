"""What a GPU user plans a study with, printed by ``python -m helpers run --dry-run``.

Why here: a paper-scale study is booked in GPU-hours and judge dollars before anything runs, and
the figures come from several stages' rules: the memory of model states under the configured
ZeRO stage (``helpers.finetune.memory``, the same rule the check before training applies), the
tokens each scale trains on, a time from a stated throughput, and the judge's requests and cost.
The runner is shared by every stage and imports none of them, so the command line passes
``plan_lines`` to ``run_study`` as it passes the preflight and the report.

Every figure says what it assumes; the token counts come from ``data_stats.json`` once the data
stage has run (else about 300 tokens per example), the judge's token counts are upper bounds
(the longest rubric, item and answer budget and the message's headers for every request, every retry of a
reply without a score, ``judge.max_tokens`` for every completion, and no more tokens than UTF-8 bytes).
"""
from __future__ import annotations

import math
from pathlib import Path

from helpers.study.categories import CATEGORIES
from helpers.study.config import StudyConfig, split_model
from helpers.study.files import read_json, read_jsonl
from helpers.study.paths import resolve

MAX_BYTES_PER_TOKEN = 32
"""UTF-8 bytes one generated token is assumed to decode to at most, for the judge's bound on an answer's length
before any answer exists. An assumption, not a property of every vocabulary: the longest tokens of common ones
are runs of spaces or punctuation of about this length."""

CHAT_OVERHEAD_TOKENS = 16
"""Tokens the chat format adds around one user message (role markers), counted generously."""

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
    """Examples, tokens and FLOPs of training every scale (6 x params x tokens; LoRA: about 4 x params x tokens;
    gradient checkpointing runs the forward twice, 2 x params x tokens more: 8NT for a full fine-tune)."""
    t = cfg.train
    trained = [[split_model(m)[1] for m in cfg.strategy_models(st) if m not in cfg.model.checkpoints]
               for st in cfg.strategies] + [[cfg.examples(m)] for m in cfg.mixture_models
                                            if m not in cfg.model.checkpoints]  # each mixture: a run of its own
    # the prefix schedule passes over each strategy's largest subset once; separate runs train every scale
    examples = sum(max(ns, default=0) if t.schedule == "prefix" else sum(ns) for ns in trained)
    per_example, source = tokens_per_example(cfg, sd)
    params = cfg.model.params or local_params(cfg) or (2.68e8 if cfg.model.base == "embedded" else 7e9)
    tokens = examples * per_example
    flops = ((6 if t.method == "full" else 4) + (2 if t.gradient_checkpointing else 0)) * params * tokens * t.epochs
    return {"examples": examples, "tokens": tokens, "per_example": per_example, "tokens_source": source,
            "params": params, "flops": flops}


def local_params(cfg: StudyConfig) -> int | None:
    """Parameters of a local base model, from its safetensors headers (no weights read); None elsewhere."""
    folder = resolve(cfg.model.base) if cfg.model.base != "embedded" else None
    files = sorted(folder.glob("*.safetensors")) if folder is not None and folder.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return total


def model_shape(cfg: StudyConfig) -> tuple[int | None, int | None]:
    """(vocab_size, hidden_size) of the base model: its local config.json where there is one, else the config's
    ``model.vocab_size`` and ``model.hidden_size``."""
    base = cfg.model.base
    path = resolve(base) / "config.json" if base != "embedded" else None
    if path is not None and path.is_file():
        raw = read_json(path)
        raw = raw.get("text_config", raw)
        return raw.get("vocab_size"), raw.get("hidden_size") or raw.get("n_embed")
    return cfg.model.vocab_size, cfg.model.hidden_size


def _duration(hours: float) -> str:
    return f"{hours:,.1f} hours" if hours >= 1 else f"{hours * 60:.1f} minutes" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"


def _count(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,.0f}"


def training_lines(cfg: StudyConfig, sd: Path, tflops: float) -> list[str]:
    """Tokens in all and per scale, memory of model states per GPU, hours at ``tflops`` per GPU."""
    from helpers.finetune.launch import zero_settings
    from helpers.finetune.memory import LOGIT_BYTES, logits_memory, model_state_memory, size

    t = cfg.train
    trained = [m for m in cfg.models[1:] if m not in cfg.model.checkpoints]
    if not trained:
        return ["training: none (every scale maps to a checkpoint)"]
    est = compute_plan(cfg, sd)
    params = est["params"]
    lines = [f"training: {est['examples']:,} examples in all, about {est['tokens']:,.0f} tokens x {t.epochs:g} epochs "
             f"({est['tokens_source']}), {t.method} on a {params / 1e9:.2f}B-parameter model",
             f"tokens to train per scale (x {t.epochs:g} epochs): " + ", ".join(
                 f"{m}: {_count(cfg.examples(m) * est['per_example'] * t.epochs)}" for m in trained)]
    # LoRA's adapters: about 1% of the weights at rank 16 on every linear layer, in proportion to the rank
    trainable = params if t.method == "full" else params * 0.01 * t.lora.r / 16
    zero = zero_settings(t.accelerate_config) or {"stage": 0, "offload_optimizer": False, "offload_params": False}
    weight_bytes = 2 if t.bf16 is True or zero["stage"] else 4
    vocab, hidden = model_shape(cfg)
    need = model_state_memory(params, trainable, zero["stage"], t.num_processes, weight_bytes,
                              zero["offload_optimizer"], zero["offload_params"], (vocab or 0) * (hidden or 0))
    setup = f"ZeRO stage {zero['stage']}" if zero["stage"] else "no ZeRO sharding"
    lines.append(f"memory per GPU for model states: {size(need)} ({t.method}, {params:,.0f} parameters, "
                 f"{'bf16' if weight_bytes == 2 else 'fp32'} weights, {setup} over {t.num_processes} GPU(s)); "
                 "activations come on top" + (", gradient checkpointing keeps them small" if t.gradient_checkpointing else ""))
    if vocab:
        logits = logits_memory(t.per_device_batch_size, t.max_length, vocab)
        lines.append(f"peak memory per GPU: {size(need + logits)} = model states + {size(logits)} of logits "
                     f"({t.per_device_batch_size} x {t.max_length} tokens x {vocab:,} words x {LOGIT_BYTES} bytes)")
    else:
        lines.append("peak memory per GPU: not estimated (set model.vocab_size and model.hidden_size, or use a local "
                     "model.base: the logits of a batch can be larger than the model states)")
    hours = est["flops"] / (t.num_processes * tflops * 1e12) / 3600
    lines.append(f"compute: about {est['flops']:.2e} FLOPs = {hours * t.num_processes:,.1f} GPU-hours, about {_duration(hours)} "
                 f"on {t.num_processes} GPU(s) at {tflops:g} TFLOP/s each (state your GPUs' sustained rate with --tflops)")
    return lines


WRITE_GBPS = 2.0
"""Sustained write speed of the study folder's disk assumed for the checkpoint write time, in GB/s."""


def free_disk(sd: Path) -> int:
    """Free bytes on the disk that holds (or will hold) the study folder."""
    import shutil

    path = Path(sd).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def checkpoint_plan(cfg: StudyConfig, sd: Path, tflops: float = DEFAULT_TFLOPS) -> dict:
    """What the training's checkpoints cost: bytes of one, how many each run writes at the configured cadence, the
    hours spent writing them at ``WRITE_GBPS``, and the disk the study needs at once: two checkpoints (the next is
    written before the last is deleted, ``save_total_limit=1``) and every published model.

    A checkpoint holds the weights and the optimizer states: under DeepSpeed the 16-bit model (2 bytes per
    parameter) and the fp32 master weights and Adam moments (12 per trained parameter); without it the fp32
    weights (4) and the moments (8). LoRA saves the adapters only (4 + 8 per adapter parameter).
    """
    from helpers.finetune.launch import zero_settings

    t, est = cfg.train, compute_plan(cfg, sd)
    params = est["params"]
    trainable = params if t.method == "full" else params * 0.01 * t.lora.r / 16
    zero = zero_settings(t.accelerate_config)
    sixteen = zero is not None or t.method == "lora" or t.bf16 is True
    weight_bytes = 2 if zero is not None else 4
    saved = weight_bytes * params if t.method == "full" else 4 * trainable
    one = saved + (12 if zero is not None and sixteen else 8) * trainable
    runs = []
    for st in cfg.strategies:
        ns = [split_model(m)[1] for m in cfg.strategy_models(st) if m not in cfg.model.checkpoints]
        runs += ([max(ns)] if t.schedule == "prefix" and ns else ns)
    runs += [cfg.examples(m) for m in cfg.mixture_models if m not in cfg.model.checkpoints]
    hours_per_example = est["flops"] / max(est["examples"], 1) / (t.num_processes * tflops * 1e12) / 3600
    counts = []
    for n in runs:
        steps = math.ceil(n * t.epochs / t.batch_size)
        every = t.save_steps or max(1, math.ceil(steps * t.save_share))
        count = steps // every
        if t.save_minutes:
            count += int(n * hours_per_example * 60 / t.save_minutes)
        counts.append(count)
    written = one * sum(counts)
    published = saved * (len(runs) if t.schedule == "separate" else
                         sum(len(cfg.scales) for _ in cfg.strategies) + len(cfg.mixture_models))
    return {"bytes": one, "counts": counts, "written": written, "write_hours": written / (WRITE_GBPS * 1e9) / 3600,
            "need": 2 * one + published, "published": published, "free": free_disk(sd)}


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
    # a byte-level BPE (OpenAI's tokenizers) never makes more tokens than the text has UTF-8 bytes
    shown = max((len((it.get("question", "") + (it.get("reference") or it.get("std_answer") or "")).encode())
                 for it in items), default=0) if items else 600.0
    answer = max(cfg.generate.tokens_for(c) for c in CATEGORIES) * MAX_BYTES_PER_TOKEN
    from helpers.judge.llm import build_prompt

    # the headers and line breaks the judge's message puts around rubric, question, reference and answer
    framing = len(build_prompt("", {"question": "", "reference": "r", "category": "math"}, "a").encode()) - 2
    lines = []
    for judge in study_judges(cfg):
        j, who = judge.settings, f"judge {judge.name}" + ("" if judge.headline else f" ({judge.section})")
        if j.kind == "offline":
            lines.append(f"{who}: offline, no requests")
            continue
        judgments = n * len(cfg.models) * j.runs
        requests = judgments * (1 + j.parse_retries)  # a reply without a score is asked again
        rubric = 0
        prompts = resolve(j.prompts_file)
        if prompts.is_file():
            rubric = max((len(r.get("prompt", "").encode()) for r in read_jsonl(prompts)), default=0)
        prompt_tokens = requests * (rubric + shown + answer + framing + CHAT_OVERHEAD_TOKENS)
        completion_tokens = requests * j.max_tokens
        cost = j.cost(prompt_tokens, completion_tokens)
        lines.append(f"{who}: {judgments:,} judgments ({n:,} items [{source}] x {len(cfg.models)} models x {j.runs} run(s)) "
                     f"to {j.model}, at most {requests:,} requests (each asked again up to {j.parse_retries} time(s) "
                     f"without a score) of at most {prompt_tokens:,.0f} prompt + {completion_tokens:,.0f} completion "
                     f"tokens: at most ${cost:,.2f} at ${j.price_per_1k_input:g} / ${j.price_per_1k_output:g} per 1k tokens "
                     f"(the longest rubric, item and answer for every request, {MAX_BYTES_PER_TOKEN} bytes per answer token)")
    return lines


def plan_lines(cfg: StudyConfig, sd: Path, out=print, tflops: float | None = None) -> None:
    """The dry run's planning figures (after the runner's plan, before the preflight)."""
    for line in training_lines(cfg, sd, tflops or DEFAULT_TFLOPS) + judge_lines(cfg, sd):
        out(line)
