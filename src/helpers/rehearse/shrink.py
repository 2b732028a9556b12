"""The rehearsal's config: the study config with only its sizes changed, and the local stand-ins it needs.

What changes (and nothing else): the base model becomes a small random model of the same architecture saved
with a local tokenizer; a Hub dataset becomes a local folder in the dataset's own layout (read by the same
``datasets.load_dataset`` path); the scales shrink in the config's proportions; batch, sequence and answer
lengths, processes (2 on the CPU) and vLLM's memory share shrink; the LLM judge's ``base_url`` points at the
stand-in (``helpers.rehearse.standin``). Engines, launcher, accelerate config, method, schedule, save cadence,
filters, judge model, runs, concurrency and cache stay as configured.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from helpers.study.categories import CATEGORIES, OPEN_ENDED
from helpers.study.config import StudyConfig
from helpers.study.loading import read_config
from helpers.study.paths import resolve

LARGEST = 160
"""The rehearsal's largest scale; the others keep the config's proportions to it (paper: 16, 48, 80, 160)."""

SMALL_LARGEST = 80
"""``--small``: the largest scale before only the first two are kept (paper: 8 and 24, two and six steps)."""

KEY_ENV = "STUDY_REHEARSAL_KEY"
"""The environment variable the rehearsal's judge reads its (meaningless) key from."""

_CHARS = ("天地人和山水风云花草书画诗词歌舞春夏秋冬东西南北日月星辰金木火土江河湖海鸟兽虫鱼红黄蓝绿"
          "学问思辨行知信义礼智勇仁城市乡村道路桥梁车船飞机电脑手机网络数据模型")
_TEMPLATES = ("请介绍{a}的特点。", "用三句话描述{a}。", "为什么{a}很重要？请说明理由。", "把下面的句子改写得更正式：{a}",
              "写一段关于{a}的短文。", "列出与{a}有关的五个词。")


def _phrase(rng: random.Random, n: int = 14) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(n))


def belle_records(n_unique: int, seed: int, contaminate: str) -> tuple[list[dict], dict]:
    """Records in BELLE train_2M_CN's layout (``{instruction, input, output}``, JSON lines): ``n_unique`` distinct
    ones, then 5% exact duplicates (whitespace added), 5% near duplicates (one character changed) and one record
    holding an eval question (contamination), shuffled. Returns the records and what was planted."""
    rng = random.Random(seed)
    recs = [{"instruction": rng.choice(_TEMPLATES).format(a=_phrase(rng)), "input": "", "output": _phrase(rng, 40)}
            for _ in range(n_unique)]
    k = max(1, n_unique // 20)
    exact = [{**r, "instruction": r["instruction"] + " "} for r in rng.sample(recs, k)]
    near = []
    for r in rng.sample(recs, k):
        i = rng.randrange(3, len(r["instruction"]) - 1)
        near.append({**r, "instruction": r["instruction"][:i] + "之" + r["instruction"][i + 1:]})
    leak = [{"instruction": f"请回答：{contaminate}谢谢", "input": "", "output": _phrase(rng, 20)}]
    out = recs + exact + near + leak
    rng.shuffle(out)
    return out, {"unique": n_unique, "exact": k, "near": k, "contaminated": 1}


def belle_eval(seed: int) -> list[dict]:
    """One eval item per use case in BELLE's released layout ``{question, class, std_answer}`` (no answer for the
    open-ended ones, as in BELLE's file)."""
    rng = random.Random(seed + 1)
    return [{"question": f"{c}题：{_phrase(rng, 18)}是什么意思？", "class": c,
             "std_answer": "" if c in OPEN_ENDED else _phrase(rng, 10)} for c in CATEGORIES]


def tiny_model(cfg: StudyConfig, path: Path, texts: list[str]) -> tuple[Path, str]:
    """A random model of the config's architecture with a local tokenizer, and the architecture's name.

    Bloom (the paper's Bloomz-7B1-mt, named by its Hub id) becomes a ``BloomForCausalLM`` of a shrunk
    ``BloomConfig`` (``helpers.finetune.tiny``); a local base of another architecture is shrunk from its own
    config.json and keeps its own tokenizer."""
    from helpers.finetune.tiny import build_tiny_bloom
    from helpers.study.models import base_model_path

    base = cfg.model.base
    local = Path(base_model_path(cfg)) if base == "embedded" or resolve(base).exists() else None
    if local is None or json.loads((local / "config.json").read_text()).get("model_type") == "bloom":
        if local is None and "bloom" not in base.lower():
            raise ValueError(f"model.base: {base} is neither local nor a Bloom model: the rehearsal cannot build its "
                             "architecture offline; point model.base at a local copy of the model's folder")
        # head_dim 128 as in Bloomz-7B1 (4,096 / 32): vLLM's CPU attention refuses small ones such as 16
        return build_tiny_bloom(path, texts, hidden_size=256, layers=2, heads=2), "BloomForCausalLM"
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(local)
    text = getattr(config, "text_config", config)
    text.update({"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "num_key_value_heads": 1, "head_dim": 128})  # a head_dim vLLM's CPU attention accepts
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(local).save_pretrained(path)
    return path, type(model).__name__


def shrunk_config(config: str | Path, work: Path, judge_url: str | None, small: bool = False) -> tuple[dict, dict]:
    """The rehearsal's config (a mapping, written by the caller) and what was substituted, by stage.

    ``small`` (the rehearsal ``make test-all`` runs, in three to five minutes on two cores): the first two scales only, a few steps
    each, and a config's vllm backend becomes hf (no vLLM environment needed), said in the table."""
    from helpers.study.loading import load_config

    cfg = load_config(config)
    raw = read_config(config)
    subs: dict[str, list[str]] = {s: [] for s in ("data", "finetune", "generate", "judge")}
    raw["study"] = f"rehearse-{cfg.study}"
    factor = (SMALL_LARGEST if small else LARGEST) / cfg.scales[-1]
    raw["scales"] = [max(1, round(s * factor)) for s in cfg.scales][:2 if small else None]
    subs["data"].append(f"scales {', '.join(map(str, cfg.scales))} -> {', '.join(map(str, raw['scales']))}")
    data = raw.setdefault("data", {})
    evals = belle_eval(cfg.seed)
    if cfg.data.source in ("hf", "file"):
        # the largest scale's records, two short of it once the planted duplicates and the leak are removed
        unique = raw["scales"][-1] - (2 if cfg.data.largest_scale == "whole_pool" else -8)
        records, planted = belle_records(unique, cfg.seed, evals[0]["question"])
        folder = work / "hub" / (cfg.data.train_files[0].replace("/", "__") if cfg.data.train_files else "train")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                           encoding="utf-8")
        data["train_files"] = [str(folder)]
        data.pop("revision", None)
        subs["data"].append(f"{', '.join(cfg.data.train_files)} -> a local folder in its layout ({len(records)} "
                            f"records: {planted['exact']} exact and {planted['near']} near duplicates, 1 contaminated)")
    else:
        planted, records = {}, []
    if cfg.data.eval_file or cfg.data.source in ("hf", "file"):
        eval_path = work / "eval.jsonl"
        eval_path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in evals), encoding="utf-8")
        data["eval_file"] = str(eval_path)
        subs["data"].append(f"{cfg.data.eval_file} -> {len(evals)} items in its layout, one per use case")
    texts = [r["instruction"] + r["output"] for r in records] + [e["question"] for e in evals] + list(CATEGORIES)
    model_dir, arch = tiny_model(cfg, work / "tiny-model", texts)
    n = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    raw.setdefault("model", {}).update({"base": str(model_dir)})
    for k in ("params", "vocab_size", "hidden_size"):
        raw["model"].pop(k, None)
    subs["finetune"].append(f"{cfg.model.base} -> a random {arch} of {n:,} parameters with a local tokenizer")
    t = raw.setdefault("train", {})
    t.update({"num_processes": 2, "per_device_batch_size": 2, "batch_size": 4, "max_length": 64})
    subs["finetune"].append(f"{cfg.train.num_processes} GPUs x {cfg.train.per_device_batch_size} per device, batch "
                            f"{cfg.train.batch_size}, {cfg.train.max_length} tokens -> 2 CPU processes x 2, batch 4, 64 tokens")
    g = raw.setdefault("generate", {})
    g["max_new_tokens"] = {"default": 16}
    subs["generate"].append(f"max_new_tokens {cfg.generate.max_new_tokens} -> 16")
    if cfg.generate.backend == "vllm" and small:
        g["backend"] = "hf"
        g.pop("vllm", None)
        subs["generate"].append("backend vllm -> hf (the small rehearsal; `make rehearse` runs vLLM)")
    elif cfg.generate.backend == "vllm":
        v = g.setdefault("vllm", {})
        v.update({"gpu_memory_utilization": 0.3, "max_model_len": 256})
        subs["generate"].append("vLLM's GPU build -> its CPU build (STUDY_VLLM_PYTHON), memory share 0.3 of RAM, "
                                "max_model_len 256")
    j = raw.setdefault("judge", {})
    if cfg.judge.kind == "openai" and judge_url:
        j.update({"base_url": judge_url, "api_key_env": KEY_ENV})
        subs["judge"].append(f"{cfg.judge.base_url or 'the OpenAI API'} -> the stand-in at {judge_url}")
    return raw, {"subs": subs, "planted": planted, "arch": arch, "params": n}
