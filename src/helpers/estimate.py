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


SMALL_FILES_BYTES = 1 << 20
"""The small files beside the weights of a checkpoint or a published model, counted generously: configs, the trainer
state, the random states of every process, the training arguments, a README, the training log and summary (about
30 kB in the micro study's)."""

EMBEDDED_TOKENIZER_BYTES = 33_371_692
"""The embedded model's tokenizer files as ``save_pretrained`` writes them (``tokenizer.json``, 33,371,397 bytes, and
``tokenizer_config.json``), for a machine that has not converted the model yet (a test checks it against the copy)."""

EMBEDDED_COPY_BYTES = 1_072_419_256 + EMBEDDED_TOKENIZER_BYTES + (1 << 20)
"""The fp32 copy of the embedded model that the first study converts once into ``STUDY_CACHE`` (``model.safetensors``
1,072,419,256 bytes, the tokenizer and configs)."""

EMBEDDED_LORA_PER_RANK = 237_312
"""LoRA parameters per unit of rank with adapters on every linear layer of Gemma 3 270M (3,796,992 at rank 16), for
a machine that has not converted the model yet."""

ASSUMED_TOKENIZER_BYTES = 64 << 20
"""A hub model's tokenizer files where they are not on this machine: about twice the largest common one (Gemma 3's
``tokenizer.json``, 33 MB; Bloom's is 14 MB)."""

TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*", "merges.txt", "*.model",
                   "chat_template*")


def base_folder(cfg: StudyConfig) -> Path | None:
    """The base model's folder on this machine (a local ``model.base``, or the embedded model's converted copy once
    it exists); None for a hub model or an embedded model not converted yet."""
    if cfg.model.base == "embedded":
        from helpers.study.models import embedded_model_target

        folder = embedded_model_target()
        return folder if (folder / "done.json").exists() else None
    folder = resolve(cfg.model.base)
    return folder if folder.is_dir() else None


def tokenizer_bytes(cfg: StudyConfig) -> int:
    """Bytes of the tokenizer files that every checkpoint and published model holds: those of the base model's
    folder, else the embedded model's known size, else ``ASSUMED_TOKENIZER_BYTES``."""
    folder = base_folder(cfg)
    if folder is not None:
        files = {f for pattern in TOKENIZER_FILES for f in folder.glob(pattern) if f.is_file()}
        if files:
            return sum(f.stat().st_size for f in files)
    return EMBEDDED_TOKENIZER_BYTES if cfg.model.base == "embedded" else ASSUMED_TOKENIZER_BYTES


def lora_parameters(cfg: StudyConfig, params: float) -> float:
    """Parameters of the LoRA adapters: rank x (inputs + outputs) of every targeted linear layer, read from the base
    model's safetensors headers (no weights read) where its folder is here; else the embedded model's known count,
    else about 1.5% of the weights at rank 16, in proportion to the rank (Gemma 3 270M: 1.4%; Bloomz-7B1: 0.45%).

    ``all-linear`` is every 2-D weight but the embeddings and the output head, as peft chooses; a list of names
    matches the last part of a module's name."""
    r, targets = cfg.train.lora.r, cfg.train.lora.targets
    folder = base_folder(cfg)
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    if files:
        from safetensors import safe_open

        total = 0
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():
                    shape = st.get_slice(key).get_shape()
                    module = key.removesuffix(".weight")
                    if len(shape) != 2 or module == key:
                        continue
                    if targets == "all-linear":
                        chosen = not any(s in module for s in ("embed", "lm_head", "wte", "wpe", "shared"))
                    else:
                        chosen = module.rsplit(".", 1)[-1] in ([targets] if isinstance(targets, str) else targets)
                    total += r * (shape[0] + shape[1]) if chosen else 0
        return total
    if cfg.model.base == "embedded" and targets == "all-linear":
        return EMBEDDED_LORA_PER_RANK * r
    return params * 0.015 * r / 16


def checkpoint_plan(cfg: StudyConfig, sd: Path, tflops: float = DEFAULT_TFLOPS) -> dict:
    """What the training's checkpoints cost: bytes of one, how many each run writes at the configured cadence, the
    hours spent writing them at ``WRITE_GBPS``, and the disk the training needs at once: two checkpoints (the next is
    written before the last is deleted, ``save_total_limit=1``) and every published model.

    A checkpoint holds the weights and the optimizer states: under DeepSpeed the 16-bit model (2 bytes per
    parameter) and the fp32 master weights and Adam moments (12 per trained parameter); without it the fp32
    weights (4) and the moments (8). LoRA saves the adapters only (4 + 8 per adapter parameter). Every checkpoint
    and every published model also holds the tokenizer's files (the Trainer saves its ``processing_class``:
    Gemma 3's ``tokenizer.json`` alone is 33 MB, twice the micro study's adapter) and a few small files
    (``SMALL_FILES_BYTES``). The whole study's disk, every other output included, is ``disk_plan``'s.
    """
    from helpers.finetune.launch import zero_settings

    t, est = cfg.train, compute_plan(cfg, sd)
    params = est["params"]
    trainable = params if t.method == "full" else lora_parameters(cfg, params)
    zero = zero_settings(t.accelerate_config)
    sixteen = zero is not None or t.method == "lora" or t.bf16 is True
    weight_bytes = 2 if zero is not None else 4
    tokenizer = tokenizer_bytes(cfg)
    saved = (weight_bytes * params if t.method == "full" else 4 * trainable) + tokenizer + SMALL_FILES_BYTES
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
    trained = [m for m in cfg.models[1:] if m not in cfg.model.checkpoints]
    published = saved * len(trained)
    return {"bytes": one, "counts": counts, "written": written, "write_hours": written / (WRITE_GBPS * 1e9) / 3600,
            "need": 2 * one + published, "published": published, "model_bytes": saved, "tokenizer": tokenizer,
            "trainable": trainable, "free": free_disk(sd)}


RECORD_BYTES = 256
"""One record of the built-in suite's pool or subsets in JSON lines (the micro study's pool: 205 bytes on average)."""

HUB_RECORD_BYTES = 1024
"""One record of a hub dataset or a generated pool, where the records are not on this machine (BELLE's train_2M_CN in
JSON lines: about 950 bytes)."""

EVAL_RECORD_BYTES = 512
"""One item of the built-in suite's eval set (the micro study's: 283 bytes on average)."""

TEXT_BYTES_PER_TOKEN = 8
"""UTF-8 bytes of model-written text per token stored in answers, judgments and reply caches: about twice what a token
of Chinese (one or two 3-byte characters) or English text decodes to. ``MAX_BYTES_PER_TOKEN`` bounds a judge's prompt;
this sizes files, where a bound 4x larger on every row would refuse disks that hold the study."""

ROW_BYTES = 256
"""The fields of an answer, judgment or cache row besides its text (id, model, score, usage...)."""

TOKENIZED_BYTES_PER_TOKEN, TOKENIZED_ROW_BYTES, TOKENIZED_FILES_BYTES = 9, 64, 64 << 10
"""The tokenized cache's Arrow columns: token ids and labels (int32) and the attention mask (int8) per token; offsets,
length and digest per row; and the dataset's own small files (the micro study's: 7.6 kB in all for 12 rows)."""

NOTEBOOK_BYTES = {"selfinstruct": 1 << 20, "data": 1 << 20, "finetune": 1 << 20, "generate": 512 << 10,
                  "judge": 512 << 10, "analysis": 4 << 20}
"""Per stage execution under ``data/<study>/``: its executed notebook, its log and its stage record; the same plus
``HTML_EXTRA_BYTES`` again under ``reports/<study>/notebooks/`` for the HTML. The micro study's notebooks (2026-12-07):
data 133 kB, finetune 60-82 kB, generate 31 kB, judge 21 kB, analysis 884 kB (its figures); their HTML 301 kB to
1.1 MB."""

HTML_EXTRA_BYTES = 512 << 10
"""What nbconvert's HTML adds to a notebook (its style sheets and scripts: about 300 kB)."""

ANALYSIS_BYTES = 8 << 20
"""The analysis stage's files beside its notebook: results.csv/json, the figures (in the study folder and again in
the report), the manifest and the report page. The micro study's: 1.4 MB."""

MARGIN_SHARE, MARGIN_BYTES = 0.25, 32 << 20
"""On top of the sum: a quarter more, and 32 MiB, for what the estimate does not see (file system blocks, the
temporary copies that atomic writes and renames keep for a moment, a stage's scratch files)."""


def _pool_bytes(cfg: StudyConfig) -> tuple[float, float]:
    """(bytes of the pool in JSON lines, bytes of the subsets of one strategy): the built-in suite by its size; local
    files by theirs (parquet three times, being compressed), the subsets at most the same share of it as of the
    largest scale; a hub dataset or a generated pool at ``HUB_RECORD_BYTES`` a record."""
    d, largest, total = cfg.data, max(cfg.scales), sum(cfg.scales)
    if d.source == "builtin":
        return d.pool_size * RECORD_BYTES, total * RECORD_BYTES
    local = [resolve(f) for f in d.train_files if resolve(f).exists()]
    if d.source == "file" and local:
        files = [f for p in local for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
        pool = sum(f.stat().st_size * (3 if f.suffix == ".parquet" else 1) for f in files)
        return pool, pool * total / largest
    records = cfg.selfinstruct.target if d.source == "generate" else largest
    return records * HUB_RECORD_BYTES, total * HUB_RECORD_BYTES


def disk_plan(cfg: StudyConfig, sd: Path, runs: list | None = None) -> dict:
    """The disk that ``runs`` (the runner's executions still to do; default: every execution of the study) fill at
    most at once, each output counted, with a margin, per disk they go to.

    Counted: the data stage's files (pool, removed records, subsets, eval set, statistics), the tokenized cache
    (once per strategy, with the copy of the subset its build reads), every published model (weights or adapters
    with the tokenizer and small files), two checkpoints of the largest run and one model being published beside
    the one it replaces, answers (and the server backend's reply cache), every judge's judgments and reply cache, the
    self-instruct replies and tasks, the analysis files and the report, every execution's notebook, log and HTML, and
    the embedded model's one-time fp32 copy where it is not converted yet (under ``STUDY_CACHE``, maybe another
    disk). Not counted: a hub dataset's download cache (``~/.cache/huggingface``) and folders a rerun moves aside.

    Returns ``{"items": [(what, bytes, folder)], "disks": [{"path", "bytes", "need", "free", "items"}]}``, ``need``
    being ``bytes`` x (1 + ``MARGIN_SHARE``) + ``MARGIN_BYTES``.
    """
    from collections import Counter

    from helpers.study.judges import study_judges
    from helpers.study.models import embedded_model_target
    from helpers.study.runner import ALL
    from helpers.study.runner import plan as study_plan

    runs = study_plan(cfg, sd) if runs is None else runs
    stages = Counter(r.stage.name for r in runs)
    reports = sd.parent.parent / "reports" / cfg.study
    _, n_eval, _ = eval_items(cfg, sd)
    items: list[tuple[str, int, Path]] = []

    def add(what: str, n: float, where: Path = sd) -> None:
        items.append((what, int(math.ceil(n)), where))

    if stages["selfinstruct"]:
        si = cfg.selfinstruct
        replies = (si.max_requests or math.ceil(4 * si.target / si.tasks_per_request)) * si.max_tokens * TEXT_BYTES_PER_TOKEN
        add("self-instruct: reply cache, kept and dropped tasks", 3 * replies)
    pool, subsets = _pool_bytes(cfg)
    if stages["data"]:
        evals = resolve(cfg.data.eval_file).stat().st_size if cfg.data.eval_file and resolve(cfg.data.eval_file).is_file() \
            else n_eval * EVAL_RECORD_BYTES
        add("data: pool, removed records, subsets, eval set, statistics",
            2 * pool + len(cfg.strategies) * subsets + evals + (1 << 20))
    if stages["finetune"]:
        ck = checkpoint_plan(cfg, sd)
        trained = [m for r in runs if r.stage.name == "finetune" for m in (o.name for o in r.outputs)]
        add(f"published models ({len(trained)} of {_size(ck['model_bytes'])})", len(trained) * ck["model_bytes"])
        add(f"checkpoints (two of {_size(ck['bytes'])}) and a model being published", 2 * ck["bytes"] + ck["model_bytes"])
        per_example = tokens_per_example(cfg, sd)[0]
        rows = max(cfg.scales)
        add(f"tokenized cache ({len(cfg.strategies)} of {rows:,} rows)",
            len(cfg.strategies) * (rows * (per_example * TOKENIZED_BYTES_PER_TOKEN + TOKENIZED_ROW_BYTES)
                                     + subsets * max(cfg.scales) / sum(cfg.scales) + TOKENIZED_FILES_BYTES))
    longest = max(cfg.generate.tokens_for(c) for c in CATEGORIES)
    answer = n_eval * (ROW_BYTES + longest * TEXT_BYTES_PER_TOKEN)
    answered = sum(len(cfg.models) if r.key == ALL else 1 for r in runs if r.stage.name == "generate")
    if answered:
        add(f"answers ({answered} model(s), {n_eval:,} items)", answered * answer * (2 if cfg.generate.backend == "server" else 1))
    judged = stages["judge"]
    for judge in study_judges(cfg) if judged else []:
        j = judge.settings
        if j.kind == "offline":
            add(f"judgments of judge {judge.name}", judged * n_eval * 4 * ROW_BYTES)
        else:
            row = ROW_BYTES + j.max_tokens * TEXT_BYTES_PER_TOKEN
            add(f"judgments and reply cache of judge {judge.name}", judged * n_eval * j.runs * row * (2 + j.parse_retries))
    if stages["analysis"]:
        add("analysis: results, figures, manifest, report", ANALYSIS_BYTES / 2)
        add("the report: page, figures, results", ANALYSIS_BYTES / 2, reports)
    notebooks = sum(NOTEBOOK_BYTES[r.stage.name] for r in runs)
    add(f"{len(runs)} executed notebook(s), logs and stage records", notebooks)
    add(f"{len(runs)} notebook(s) rendered to HTML", notebooks + len(runs) * HTML_EXTRA_BYTES, reports)
    converts = stages["data"] or stages["finetune"] or stages["generate"]
    if cfg.model.base == "embedded" and converts and not (embedded_model_target() / "done.json").exists():
        add("the embedded model's fp32 copy, converted once", EMBEDDED_COPY_BYTES, embedded_model_target())

    disks: dict[int, dict] = {}
    for what, n, where in items:
        path = Path(where).resolve()
        while not path.exists():
            path = path.parent
        disk = disks.setdefault(path.stat().st_dev, {"path": path, "bytes": 0, "items": []})
        disk["bytes"] += n
        disk["items"].append((what, n))
    for disk in disks.values():
        disk["need"] = disk["bytes"] * (1 + MARGIN_SHARE) + MARGIN_BYTES
        disk["free"] = free_disk(disk["path"])
    return {"items": items, "disks": list(disks.values())}


def _size(n: float) -> str:
    from helpers.finetune.memory import size

    return size(n)


def disk_lines(cfg: StudyConfig, sd: Path, runs: list | None = None) -> list[str]:
    """One line per disk the study writes to: what it needs at most (with the margin) against what is free."""
    return [f"disk: at most {_size(d['need'])} at once on the disk of {d['path']} ({_size(d['free'])} free): "
            f"{disk_parts(d)}" for d in disk_plan(cfg, sd, runs)["disks"]]


def disk_parts(disk: dict) -> str:
    """A disk's largest items by size, those under 2% of it summed as the rest, and the margin."""
    items = sorted(disk["items"], key=lambda x: -x[1])
    big = [(w, n) for w, n in items if n >= 0.02 * disk["bytes"]]
    rest = [n for _, n in items[len(big):]]
    return "; ".join([f"{w} {_size(n)}" for w, n in big] + ([f"{len(rest)} smaller {_size(sum(rest))}"] if rest else [])
                     + [f"margin {MARGIN_SHARE:.0%} + {_size(MARGIN_BYTES)}"])


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
    for line in training_lines(cfg, sd, tflops or DEFAULT_TFLOPS) + judge_lines(cfg, sd) + disk_lines(cfg, sd):
        out(line)
