"""The built-in task suite: determinism, schema, balance, eval/pool disjointness, and that
the generator and the offline judge agree (every reference scores 1 against its own check)."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from helpers.data.suite import CITIES, SURNAMES, build_suite, generate
from helpers.judge.offline import score_answer
from helpers.study.categories import CATEGORIES
from helpers.study.prompt import question

CHECK_TYPES = {
    "math": "number", "cot": "number", "code": "python_tests", "classification": "label",
    "extraction": "spans", "open_qa": "text", "closed_qa": "answer_in_passage", "generation": "constraints",
    "brainstorming": "constraints", "rewrite": "facts", "translation": "translation", "summarization": "facts",
}
UNRELATED = "我不知道这个问题的答案。"


@pytest.fixture(scope="module")
def big():
    return build_suite(0, 50000, 20)


def _text(rec: dict) -> str:
    return "\n".join((rec["instruction"], rec["input"], rec["output"]))


def test_same_arguments_same_suite_and_seed_matters():
    a = build_suite(3, 240, 3)
    assert a == build_suite(3, 240, 3)
    b = build_suite(4, 240, 3)
    assert a[0] != b[0] and a[1] != b[1]
    assert [r["id"] for r in a[0]] == [r["id"] for r in b[0]]


def test_pool_prefix_stable_and_eval_independent_of_pool_size():
    small, ev_small = build_suite(1, 100, 2)
    large, ev_large = build_suite(1, 300, 2)
    assert large[:100] == small
    assert ev_small == ev_large


def test_record_schema_and_ids():
    pool, ev = build_suite(0, 600, 4)
    for r in pool:
        assert set(r) == {"id", "instruction", "input", "output", "category"}
        assert re.fullmatch(r"pool-\d{6}", r["id"])
        assert all(isinstance(r[k], str) for k in r)
        assert r["instruction"].strip() and r["output"].strip()
        assert r["category"] in CATEGORIES
    assert len({r["id"] for r in pool}) == len(pool)
    for e in ev:
        assert set(e) == {"id", "category", "question", "reference", "check"}
        assert e["id"] == f"eval-{e['category']}-{int(e['id'][-4:]):04d}"
        assert e["question"].strip() and e["reference"].strip()
        assert e["check"]["type"] == CHECK_TYPES[e["category"]]
    assert len({e["id"] for e in ev}) == len(ev)


def test_question_is_instruction_newline_input():
    assert question("把下面的句子翻译成英文。", "我喜欢猫。") == "把下面的句子翻译成英文。\n我喜欢猫。"
    for rec in generate("extraction", 5, seed=0, split="eval"):
        assert "\n" not in rec["instruction"]
    _, ev = build_suite(0, 0, 3)
    ex = [e for e in ev if e["category"] == "extraction"]
    recs = generate("extraction", 3, seed=0, split="eval")
    assert [e["question"] for e in ex] == [r["instruction"] + "\n" + r["input"] for r in recs]


def test_all_categories_balanced_and_counted():
    pool, ev = build_suite(0, 1000, 5)
    counts = Counter(r["category"] for r in pool)
    assert set(counts) == set(CATEGORIES)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert [e["category"] for e in ev] == [c for c in CATEGORIES for _ in range(5)]
    tiny_pool, tiny_eval = build_suite(0, 40, 1)
    assert len(tiny_pool) == 40 and len(tiny_eval) == 12


def test_fifty_thousand_distinct_pool_items(big):
    pool, _ = big
    assert len(pool) == 50000
    assert len({(r["instruction"], r["input"]) for r in pool}) == 50000


def test_no_eval_question_in_pool(big):
    pool, ev = big
    pool_questions = {question(r["instruction"], r["input"]) for r in pool}
    assert not [e["question"] for e in ev if e["question"] in pool_questions]


def test_held_out_entities_never_reach_the_pool(big):
    pool, ev = big
    all_text = "\n".join(_text(r) for r in pool)
    assert not [s for s in SURNAMES["eval"] if s in all_text]
    assert not [c for c in CITIES["eval"] if c in all_text]
    assert not set(SURNAMES["eval"]) & set(SURNAMES["pool"])
    assert not set(CITIES["eval"]) & set(CITIES["pool"])
    for cat in ("extraction", "closed_qa"):
        text = "\n".join(_text(r) for r in pool if r["category"] == cat)
        entities = set()
        for e in ev:
            if e["category"] != cat:
                continue
            found = e["check"]["spans"] if cat == "extraction" else [e["check"]["answer"]]
            entities |= {s for s in found if s in CITIES["eval"]
                         or any(s.startswith(sn) for sn in SURNAMES["eval"])}
        assert entities, cat
        assert not [x for x in entities if x in text], cat


def test_eval_checks_fit_their_questions(big):
    _, ev = big
    for e in ev:
        c = e["check"]
        if c["type"] == "spans":
            assert all(s in e["question"] for s in c["spans"])
            assert e["reference"] == "、".join(c["spans"])
        elif c["type"] == "answer_in_passage":
            passage = e["question"].split("短文：")[1].split("\n问题：")[0]
            assert c["answer"] in passage and c["answer"] == e["reference"]
        elif c["type"] == "label":
            assert c["label"] in c["labels"] and e["reference"] == c["label"]
        elif c["type"] == "number":
            assert e["reference"].rstrip("。").endswith(str(c["answer"]))
        elif c["type"] == "python_tests":
            assert len(c["tests"]) >= 3 and all(t.startswith(f"assert {c['entry']}(") for t in c["tests"])


def test_every_eval_reference_scores_one():
    _, ev = build_suite(5, 0, 15)
    low = [(e["id"], *score_answer(e, e["reference"])) for e in ev]
    assert not [x for x in low if x[1] < 0.999]


@pytest.mark.parametrize("category", CATEGORIES)
def test_pool_outputs_score_high_against_their_checks(category):
    n = 6 if category == "code" else 40
    for rec in generate(category, n, seed=2, split="pool"):
        item = {"id": "pool-like", "reference": rec["output"], "check": rec["check"]}
        score, why = score_answer(item, rec["output"])
        assert score >= 0.999, (rec, why)


def test_wrong_answers_score_low():
    _, ev = build_suite(0, 0, 10)
    for e in ev:
        if e["check"]["type"] == "number":
            assert score_answer(e, f"答案是{e['check']['answer'] + 1}")[0] == 0.0
            assert score_answer(e, e["reference"].rstrip("。") + "1")[0] == 0.0
        score, why = score_answer(e, UNRELATED)
        assert score < 0.3, (e["id"], why)


def test_math_knobs_change_difficulty():
    recs = generate("math", 50, seed=0, knobs={"math": {"digits": 3, "min_steps": 2, "max_steps": 2}})
    for r in recs:
        expr = r["output"].split("=")[0]
        nums = re.findall(r"\d+", expr)
        assert len(nums) == 3
        assert len(nums[0]) == 3
    easy = generate("math", 50, seed=0, knobs={"math": {"digits": 1, "max_steps": 1, "ops": "+"}})
    assert all(re.fullmatch(r"\d\+\d=\d+", r["output"]) for r in easy)


def test_cot_chain_knob():
    recs = generate("cot", 60, seed=0, knobs={"cot": {"min_chain": 4, "max_chain": 4}})
    # the chain form has four steps, the fixed forms two
    assert {r["output"].count("=") for r in recs} == {2, 4}


def test_bad_knobs_and_exhaustion_are_reported():
    with pytest.raises(ValueError, match="unknown task knob"):
        build_suite(0, 10, 1, knobs={"maths": {}})
    with pytest.raises(ValueError, match="digitz"):
        build_suite(0, 10, 1, knobs={"math": {"digitz": 3}})
    with pytest.raises(ValueError, match="'math'.*exhausted"):
        generate("math", 500, knobs={"max_tries": 200, "math": {"digits": 1, "max_steps": 1, "ops": "+"}})
    with pytest.raises(ValueError, match="unknown category"):
        generate("poetry", 1)


def test_items_are_short():
    """Characters of prompt + output (Gemma needs ~1 token per 1-1.5 Chinese characters;
    code is ASCII, cheaper per character, so it gets a looser bound)."""
    pool, _ = build_suite(0, 1200, 0)
    lengths = {r["id"]: len(question(r["instruction"], r["input"])) + len(r["output"]) for r in pool}
    assert sum(lengths.values()) / len(lengths) < 60
    for r in pool:
        assert lengths[r["id"]] < (130 if r["category"] == "code" else 110), r
