"""The refilling greedy loop (helpers.generate.continuous) answers as the batch loop (helpers.generate.greedy) does."""
from __future__ import annotations

import pytest
from builders import spread_tiny_model

from helpers.study.models import load_tokenizer
from helpers.study.prompt import format_prompt

QUESTIONS = ["写一首诗", "把这句话翻译成英文：我喜欢猫。", "计算12乘以7", "中国的首都是哪座城市？", "列出三种水果",
             "用一句话概括这段文字的主要内容，不超过二十个字。", "你好", "请把下面的句子改写得更正式一些：明天见。"]


def _stream(model, tok, budgets, capacity, stop, eos):
    from helpers.generate.continuous import greedy_stream

    prompts = [(i, tok(format_prompt(q))["input_ids"], n) for i, (q, n) in enumerate(zip(QUESTIONS, budgets))]
    got, steps = {}, 0
    for ended in greedy_stream(model, tok, prompts, capacity, stop, eos):
        steps += 1
        for key, tokens in ended:
            assert key not in got
            got[key] = tokens
    return [got[i] for i in range(len(QUESTIONS))]


def _batch(model, tok, budget, stop, eos):
    from helpers.generate.greedy import greedy_decode

    enc = tok([format_prompt(q) for q in QUESTIONS], return_tensors="pt", padding=True)
    return greedy_decode(model, tok, enc, budget, stop, eos)


@pytest.mark.parametrize("arch", ["tiny_model_dir", "tiny_bloom_dir"])
@pytest.mark.parametrize("capacity", [1, 3, 8])
def test_refilled_rows_answer_as_the_batch_loop_does(arch, capacity, request):
    """Prompts of different lengths join a batch of other lengths mid-way (capacity 3 of 8 prompts): every answer
    is the one the batch loop gives, ended by the same EOS, at the same token."""
    model, tok = spread_tiny_model(request.getfixturevalue(arch))
    full = _batch(model, tok, 12, "\x00never", set())
    counts = {t: sum(t in row[:-1] for row in full) for row in full for t in row[:-1]}
    eos = next(t for t, c in sorted(counts.items()) if 0 < c < len(full) and t != tok.pad_token_id)
    want = _batch(model, tok, 12, "\x00never", {eos})
    assert len({len(row) for row in want}) > 1  # rows end at different steps, so rows leave and join
    assert _stream(model, tok, [12] * len(QUESTIONS), capacity, "\x00never", {eos}) == want


def test_each_row_keeps_its_own_budget_and_stop_string(tiny_model_dir):
    model, tok = spread_tiny_model(tiny_model_dir)
    full = _batch(model, tok, 12, "\x00never", set())
    stop = tok.decode(full[0][3:5])
    assert stop.strip()
    budgets = [12, 4, 9, 12, 2, 7, 12, 5]
    want = [row[:n] for row, n in zip(_batch(model, tok, 12, stop, set()), budgets)]
    assert _stream(model, tok, budgets, 3, stop, set()) == want
    assert len(want[0]) <= 5  # the stop string ended the first answer


def test_rows_beyond_a_sliding_window_answer_as_the_batch_loop_does(tiny_model_dir):
    """Gemma's sliding-window layers: the cache kept by the refilling loop holds every column, the window is the
    attention mask's; answers longer than the window match the batch loop's (whose cache drops old columns)."""
    model, tok = spread_tiny_model(tiny_model_dir, sliding_window=6)
    assert model.config.sliding_window == 6
    want = _batch(model, tok, 12, "\x00never", set())
    assert _stream(model, tok, [12] * len(QUESTIONS), 3, "\x00never", set()) == want


@pytest.mark.slow  # the real model: about half a minute on 2 cores
def test_the_embedded_model_answers_as_the_batch_path_did_in_fp32(embedded_dir):
    """Issue 32's identity: on the real base model in fp32, the refilling stream (``answer_stream``, the stage's
    decode) gives byte for byte the answers of the batch path it replaced (``plan_batches`` + ``answer_batch``),
    with a capacity that makes prompts of other lengths and budgets join mid-way."""
    from builders import make_config

    from helpers.data.suite import build_suite
    from helpers.generate.hf import answer_batch, answer_stream, plan_batches
    from helpers.study.models import load_causal_lm

    _, items = build_suite(0, 24, 2)  # 2 eval items of each use case
    cfg = make_config(embedded_dir, generate={"batch_size": 5, "dtype": "float32",
                                              "max_new_tokens": {"default": 6, "code": 10, "math": 3}})
    model, tok = load_causal_lm(str(embedded_dir)).eval(), load_tokenizer(str(embedded_dir))
    tok.padding_side = "left"
    before = [r for b in plan_batches(items, tok, cfg) for r in answer_batch(model, tok, b, cfg)]
    now = [r for rows in answer_stream(model, tok, items, cfg) for r in rows]
    assert sorted(now, key=lambda r: r["id"]) == sorted(before, key=lambda r: r["id"])
    assert len({r["new_tokens"] for r in now}) > 2  # budgets of 3, 6 and 10 tokens, some answers ended before
