"""The tokenization cache: the rows of the old list path, built once, shared by scales, and the same training."""
import hashlib
import json

import pytest
import torch
from builders import make_config

from helpers.finetune import stage
from helpers.finetune.cache import row_lengths, subset_rows
from helpers.finetune.tokens import IGNORE, tokenize
from helpers.study.files import write_jsonl
from helpers.study.models import load_tokenizer
from helpers.study.prompt import format_prompt


def old_tokenize(records, tok, max_length):
    """The list path as it was before the cache: one tokenizer call per prompt and per answer."""
    rows = []
    for r in records:
        prompt = tok(format_prompt(r["instruction"], r.get("input", "")))["input_ids"]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE] * len(prompt) + answer)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def pool(n):
    """Records of varied lengths (some truncated at max_length 32), with and without input."""
    return [{"id": f"p{i}", "instruction": f"把第{i}句话改写得更正式一些" + "，并且保持原意" * (i % 4),
             "input": "" if i % 3 else f"原句：今天的会议改到{i}点。", "output": f"会议时间调整为{i}点。" * (1 + i % 5),
             "category": "rewrite"} for i in range(n)]


def model_rows(ds):
    return [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in ds]


@pytest.mark.parametrize("arch", ["tiny_model_dir", "tiny_bloom_dir"])
def test_batched_fast_encoding_gives_the_ids_of_one_call_per_text(arch, request):
    """Gemma's SentencePiece-style tokenizer (BOS added to prompts) and Bloom's byte-level BPE, on Chinese,
    English, digits, emoji, tabs and newlines: the backend's ``encode_batch_fast`` path equals ``tok(text)``."""
    from helpers.finetune.tokens import encode

    tok = load_tokenizer(str(request.getfixturevalue(arch)))
    texts = ["把下面的句子翻译成英文：我喜欢猫。", "Translate: Hello, world!\n\tIndented", "计算 12345 + 678 = ?",
             "表情😀和全角ＡＢＣ１２３", " leading space", "a" * 300, "。"]
    assert tok.is_fast and tok.backend_tokenizer.truncation is None
    for special in (True, False):
        assert encode(tok, texts, special) == [tok(t, add_special_tokens=special)["input_ids"] for t in texts]
    records = pool(12) + [{"instruction": t, "input": "", "output": t[::-1]} for t in texts]
    assert tokenize(records, tok, 32) == old_tokenize(records, tok, 32)
    tok.backend_tokenizer.enable_truncation(8)  # a backend with state of its own: the plain call, still equal
    assert encode(tok, texts, True) == tok(texts)["input_ids"]


@pytest.fixture
def study(tmp_path):
    records = pool(12)
    for n in (4, 12):
        write_jsonl(tmp_path / "subsets" / f"{n}.jsonl", records[:n])
    return tmp_path, records


@pytest.mark.slow
def test_cached_rows_equal_the_old_list_path_and_scales_are_slices(study, tiny_model_dir, capsys):
    sd, records = study
    cfg = make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 32, "bf16": False})
    tok = load_tokenizer(str(tiny_model_dir))
    big, _ = subset_rows(cfg, sd, "12", tok)
    small, sha = subset_rows(cfg, sd, "4", tok)
    out = capsys.readouterr().out
    assert out.count("once into") == 1 and out.count("(cached)") == 1  # tokenized once, for both scales
    assert model_rows(big) == old_tokenize(records, tok, 32) == tokenize(records, tok, 32)
    assert model_rows(small) == old_tokenize(records[:4], tok, 32)
    assert small._indices is None  # a slice of the cache, not an index mapping
    assert row_lengths(big) == [len(r["input_ids"]) for r in old_tokenize(records, tok, 32)]
    assert max(row_lengths(big)) == 32 and min(row_lengths(big)) < 32  # some truncated, some not
    assert len([p for p in (sd / "tokenized").iterdir() if p.is_dir()]) == 1
    assert sha == hashlib.sha256((sd / "subsets" / "4.jsonl").read_bytes()).hexdigest()


@pytest.mark.slow  # several trainings
def test_a_new_max_length_or_pool_makes_a_new_cache_and_drops_the_old(study, tiny_model_dir):
    sd, records = study
    tok = load_tokenizer(str(tiny_model_dir))
    caches = lambda: sorted(p.name for p in (sd / "tokenized").iterdir() if p.is_dir())  # noqa: E731
    subset_rows(make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 32}), sd, "4", tok)
    first = caches()
    rows, _ = subset_rows(make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 16}), sd, "4", tok)
    assert len(caches()) == 1 and caches() != first and max(row_lengths(rows)) == 16
    second = caches()
    changed = [{**r, "output": r["output"] + "。"} for r in records]
    for n in (4, 12):
        write_jsonl(sd / "subsets" / f"{n}.jsonl", changed[:n])
    rows, _ = subset_rows(make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 16}), sd, "4", tok)
    assert len(caches()) == 1 and caches() != second
    assert model_rows(rows) == old_tokenize(changed[:4], tok, 16)


@pytest.mark.slow  # several trainings
def test_a_subset_that_is_not_a_prefix_is_selected_by_record_or_tokenized_alone(study, tiny_model_dir, capsys):
    sd, records = study
    cfg = make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 32})
    tok = load_tokenizer(str(tiny_model_dir))
    picked = [records[7], records[2], records[11], records[0]]
    write_jsonl(sd / "subsets" / "4.jsonl", picked)
    rows, _ = subset_rows(cfg, sd, "4", tok)
    assert "selected from that cache by position" in capsys.readouterr().out
    assert model_rows(rows) == old_tokenize(picked, tok, 32)
    foreign = picked[:3] + [{**records[5], "output": "另一个回答"}]
    write_jsonl(sd / "subsets" / "4.jsonl", foreign)
    rows, _ = subset_rows(cfg, sd, "4", tok)
    assert "tokenized on its own" in capsys.readouterr().out
    assert model_rows(rows) == old_tokenize(foreign, tok, 32)


@pytest.mark.slow  # two trainings compared
def test_training_through_the_cache_gives_the_weights_of_the_old_list_path(tmp_path, tiny_model_dir, monkeypatch):
    """Length-grouped batches (the separate schedule) over rows of different lengths: the same order, the same
    batches, the same adapter as when Trainer was handed the list of the old ``tokenize``."""
    from safetensors.torch import load_file

    from helpers.study.files import read_jsonl

    cfg = make_config(tiny_model_dir, scales=[12], train={"batch_size": 2, "per_device_batch_size": 2,
                                                          "max_length": 32, "bf16": False})
    for root in ("cache", "old"):
        write_jsonl(tmp_path / root / "subsets" / "12.jsonl", pool(12))
    new = load_file(stage.run(cfg, tmp_path / "cache", "12")[0] / "adapter_model.safetensors")

    class ListRows(list):  # what the old _train handed to Trainer: a plain list of dicts
        def remove_columns(self, name):
            return self

    def old_rows(cfg, sd, data, tok):
        records = read_jsonl(sd / "subsets" / f"{data}.jsonl")
        return ListRows(old_tokenize(records, tok, cfg.train.max_length)), "sha-of-the-old-path"

    monkeypatch.setattr(stage, "subset_rows", old_rows)
    monkeypatch.setattr(stage, "row_lengths", lambda rows: [len(r["input_ids"]) for r in rows])
    cached = stage.CachedRowsTrainer  # the same epoch-seeded order, its lengths read by Trainer from the rows
    monkeypatch.setattr(stage, "CachedRowsTrainer", lambda *a, lengths=None, **k: cached(*a, lengths=None, **k))
    old = load_file(stage.run(cfg, tmp_path / "old", "12")[0] / "adapter_model.safetensors")
    assert not (tmp_path / "old" / "tokenized").exists()
    assert new.keys() == old.keys()
    for k in new:
        assert torch.equal(new[k], old[k]), k
    assert any(w.abs().sum() > 0 for k, w in new.items() if "lora_B" in k)  # it did learn
    summary = json.loads((tmp_path / "cache" / "models" / "12" / "train_summary.json").read_text())
    assert summary["examples"] == 12


def test_run_key_follows_the_subset_file(tiny_model_dir):
    cfg = make_config(tiny_model_dir)
    assert stage.run_key(cfg, "a" * 64) == stage.run_key(cfg, "a" * 64) != stage.run_key(cfg, "b" * 64)
    other = make_config(tiny_model_dir, train={"max_length": 33})
    assert stage.run_key(other, "a" * 64) != stage.run_key(cfg, "a" * 64)


def test_the_cache_key_follows_the_tokenization_code_only(monkeypatch):
    """An edit to tokens.py or the prompt template makes a new cache; one elsewhere in the package (stage.py,
    files.py...) does not throw hours of tokenizing away."""
    from helpers.finetune import cache

    base = cache.cache_key("s" * 64, "t" * 64, 32)
    real = cache.code_hashes

    def edited(module):
        return lambda modules, *a: {**real(modules, *a), **({module: "edited"} if module in modules else {})}

    for module, changes in (("helpers.finetune.tokens", True), ("helpers.study.prompt", True),
                            ("helpers.finetune.stage", False), ("helpers.study.files", False)):
        monkeypatch.setattr(cache, "code_hashes", edited(module))
        assert (cache.cache_key("s" * 64, "t" * 64, 32) != base) == changes, module
    monkeypatch.setattr(cache, "code_hashes", real)
    assert cache.cache_key("s" * 64, "t" * 64, 33) != base and cache.cache_key("x" * 64, "t" * 64, 32) != base


def test_the_cache_names_its_rows_by_its_key_without_hashing_the_tokenizer(study, tiny_model_dir, monkeypatch):
    """datasets would otherwise pickle the map's arguments to name its output, Gemma's whole tokenizer with them
    (about 10 s on 2 cores, in every training run that builds a cache)."""
    import datasets.arrow_dataset
    import datasets.fingerprint

    sd, records = study
    tok = load_tokenizer(str(tiny_model_dir))
    real = datasets.fingerprint.update_fingerprint

    def refuse_the_tokenizer(fingerprint, transform, transform_args):
        if any(v is tok for v in (transform_args.get("fn_kwargs") or {}).values()):
            raise AssertionError(f"datasets hashed the tokenizer to name the output of {transform}")
        return real(fingerprint, transform, transform_args)

    for module in (datasets.fingerprint, datasets.arrow_dataset):  # map names its output in arrow_dataset
        monkeypatch.setattr(module, "update_fingerprint", refuse_the_tokenizer)
    rows, _ = subset_rows(make_config(tiny_model_dir, scales=[4, 12], train={"max_length": 32}), sd, "4", tok)
    assert model_rows(rows) == tokenize(records[:4], tok, 32)
