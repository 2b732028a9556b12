"""Shared fixtures: a tiny randomly initialised Gemma 3 with the real tokenizer.

Unit tests train and generate with it in seconds; the real embedded model is
loaded by the slow end-to-end test. The tokenizer comes from the converted
embedded model (converted once per machine into the model cache).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.study.config import StudyConfig


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from helpers.study.models import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(embedded_dir)
    config.update({"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                   "layer_types": ["sliding_attention", "full_attention"]})
    model = AutoModelForCausalLM.from_config(config)
    path = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bloom_dir(tmp_path_factory) -> Path:
    """Bloomz's architecture (its inner network is ``.transformer``, not ``.model``), random, with a
    byte-level BPE tokenizer learned from the built-in suite (no download)."""
    from helpers.data.suite import build_suite
    from helpers.finetune.tiny import build_tiny_bloom
    from helpers.study.prompt import format_prompt

    pool, _ = build_suite(0, 200, 0)
    texts = [format_prompt(r["instruction"], r["input"]) + r["output"] for r in pool]
    return build_tiny_bloom(tmp_path_factory.mktemp("tiny-bloom"), texts)


def make_config(base: str | Path, **overrides) -> StudyConfig:
    """A micro study config on ``base``; ``overrides`` replace top-level sections."""
    raw = {
        "study": "unit", "seed": 0, "scales": [4, 8],
        "data": {"source": "builtin", "pool_size": 40, "eval_per_category": 1},
        "model": {"base": str(base)},
        "train": {"batch_size": 4, "per_device_batch_size": 4, "max_length": 64, "bf16": False},
        "generate": {"batch_size": 6, "max_new_tokens": {"default": 6}},
        "analysis": {"n_boot": 20},
    }
    raw.update(overrides)
    return StudyConfig.model_validate(raw)
