import json

import pytest
import torch

from helpers.files import read_jsonl, write_jsonl
from helpers.finetune import IGNORE, LabelOnlyHeadTrainer, compute_estimate, tokenize, train_scale
from helpers.model import load_causal_lm, load_tokenizer
from helpers.prompt import format_prompt
from conftest import make_config

RECORDS = [
    {"id": f"t{i}", "instruction": f"把数字{i}加一", "input": "" if i % 2 else f"数字：{i}",
     "output": f"答案：{i + 1}", "category": "math"}
    for i in range(8)
]


def test_tokenize_masks_the_prompt_and_appends_eos(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    row = tokenize(RECORDS[:1], tok, 256)[0]
    prompt_len = len(tok(format_prompt(RECORDS[0]["instruction"], RECORDS[0]["input"]))["input_ids"])
    assert row["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(row["input_ids"][prompt_len:-1]) == RECORDS[0]["output"]
    assert len(tokenize(RECORDS[:1], tok, 10)[0]["input_ids"]) == 10


def test_label_only_head_loss_equals_the_full_loss(tiny_model_dir):
    """Projecting only labelled positions must give exactly the model's own causal-LM loss."""
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_causal_lm(str(tiny_model_dir))
    rows = tokenize(RECORDS, tok, 64)
    from transformers import DataCollatorForSeq2Seq

    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=IGNORE)(rows)
    reference = model(**batch).loss
    trainer = LabelOnlyHeadTrainer.__new__(LabelOnlyHeadTrainer)
    ours = LabelOnlyHeadTrainer.compute_loss(trainer, model, dict(batch))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_compute_estimate_counts_lora_cheaper_than_full():
    full = compute_estimate(1000, 100, 100, 1)["flops"]
    lora = compute_estimate(1000, 100, 1, 1)["flops"]
    assert full == 6 * 100 * 1000 and lora < full


def test_train_scale_writes_adapter_log_and_summary(tmp_path, tiny_model_dir):
    cfg = make_config(tiny_model_dir)
    write_jsonl(tmp_path / "subsets" / "8.jsonl", RECORDS)
    out = train_scale(cfg, "8", tmp_path)
    assert out == tmp_path / "models" / "8"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == [1, 2]  # 8 examples, batch 4
    assert all(r["loss"] > 0 and r["tokens_seen"] > 0 for r in log)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["examples"] == 8 and summary["tokens_seen"] == log[-1]["tokens_seen"]
    assert not list((tmp_path / "models").glob(".*tmp"))


def test_training_is_deterministic(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    cfg = make_config(tiny_model_dir)
    weights = []
    for run in ("a", "b"):
        write_jsonl(tmp_path / run / "subsets" / "8.jsonl", RECORDS)
        weights.append(load_file(train_scale(cfg, "8", tmp_path / run) / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k])
    assert any(w.abs().sum() > 0 for k, w in weights[0].items() if "lora_B" in k)  # it did learn
