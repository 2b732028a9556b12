"""Builders the tests share: micro study configs, the small training and eval files they run on, and a judged
study at the paper's scale shares."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from helpers.study.config import StudyConfig
from helpers.study.files import write_json, write_jsonl


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


def write_records(path, records) -> str:
    """``records`` as a JSONL file at ``path``; returns the path as a string (what a config names)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def file_study(tmp_path, train, evals, scales=(4, 8), **data) -> StudyConfig:
    """A micro study on ``train`` and ``evals`` written as files under ``tmp_path`` (``data.source: file``)."""
    cfg = make_config("m", scales=list(scales), data={
        "source": "file", "train_files": [write_records(tmp_path / "train.jsonl", train)],
        "eval_file": write_records(tmp_path / "eval.jsonl", evals), **data})
    return cfg


FRUITS = "苹果 香蕉 橘子 葡萄 西瓜 草莓 菠萝 芒果 桃子 梨 樱桃 柠檬 荔枝 龙眼 柚子 榴莲".split()
CITIES = "北京 上海 杭州 成都 西安 南京 武汉 长沙 广州 深圳 重庆 天津 苏州 厦门 青岛 昆明".split()


def train_records() -> list[dict]:
    """Sixteen distinct records, an exact and a near duplicate, and one that leaks an item of ``EVALS``."""
    recs = [{"id": f"t{i}", "instruction": f"介绍一下{c}的{f}有什么特点，适合什么季节吃？", "input": "",
             "output": f"{c}的{f}很受欢迎。", "category": "open qa"} for i, (c, f) in enumerate(zip(CITIES, FRUITS))]
    recs.append({"id": "dup-exact", "instruction": recs[0]["instruction"] + " ", "input": "",
                 "output": "重复。", "category": "Open QA"})
    recs.append({"id": "dup-near", "instruction": recs[1]["instruction"].replace("？", "！"), "input": "",
                 "output": "几乎重复。", "category": "openqa"})
    recs.append({"id": "leak", "instruction": "请回答：长江是中国最长的河流，它流经哪些省份和直辖市？谢谢", "input": "",
                 "output": "青海、西藏、四川等。", "category": "open_qa"})
    return recs


EVALS = [{"question": "长江是中国最长的河流，它流经哪些省份和直辖市？", "class": "open qa", "std_answer": "青海、西藏……"},
         {"question": "写一首关于秋天的诗。", "class": "generation", "std_answer": ""}]


PAPER_SCALES = ["100", "300", "500", "1000"]  # the paper's shares 0.1 / 0.3 / 0.5 / 1
PAPER_MODELS = ["base", *PAPER_SCALES]


def paper_shares_study(root, levels: dict, n_items: int = 40, sd: float = 0.05, seed: int = 0):
    """``levels[category]`` = the true mean at each of PAPER_SCALES (base 0.05) -> a judged study folder."""
    rng = np.random.default_rng(seed)
    ev = [{"id": f"{c}-{i}", "category": c, "question": "q", "reference": "r", "check": None}
          for c in levels for i in range(n_items)]
    write_jsonl(root / "eval.jsonl", ev)
    eff = {c: rng.normal(0, sd, n_items) for c in levels}
    for j, m in enumerate(PAPER_MODELS):
        rows = []
        for c, lv in levels.items():
            mean = 0.05 if m == "base" else lv[j - 1]
            for i in range(n_items):
                s = float(np.clip(mean + eff[c][i] + rng.normal(0, sd / 2), 0, 1))
                rows.append({"id": f"{c}-{i}", "run": 0, "score": s, "raw": "", "judge": "offline", "usage": {}})
        write_jsonl(root / "judgments" / f"{m}.jsonl", rows)
        write_jsonl(root / "answers" / f"{m}.jsonl", [{"id": e["id"], "category": e["category"], "answer": "a"}
                                                      for e in ev])
    write_json(root / "data_stats.json", {"subsets": {}})
    return root


def wait_for(what: str, check, proc, timeout: float = 900) -> None:
    """Poll ``check()`` until it holds; fail the test when the runner ``proc`` ends first or ``timeout`` passes."""
    import time

    import pytest

    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the runner ended (rc {proc.returncode}) before {what}:\n{proc.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def spread_tiny_model(model_dir, **config):
    """A tiny model from ``model_dir`` (extra ``config`` laid over its own) with weights of a wider spread than its
    init, so that rows differ and vary along a decode, and its tokenizer padding on the left."""
    import torch

    from helpers.study.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    model = load_causal_lm(str(model_dir), **config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    tok = load_tokenizer(str(model_dir))
    tok.padding_side = "left"
    return model, tok
