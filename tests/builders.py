"""Builders the tests share: micro study configs and the small training and eval files they run on."""
from __future__ import annotations

import json
from pathlib import Path

from helpers.study.config import StudyConfig


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
