import pytest
from builders import make_config

from helpers.judge.stage import judge_answers
from helpers.study.files import read_jsonl, write_jsonl

ITEMS = [
    {"id": "m1", "category": "math", "question": "2+3=?", "reference": "5", "check": {"type": "number", "answer": 5}},
    {"id": "c1", "category": "classification", "question": "情感？", "reference": "正面",
     "check": {"type": "label", "label": "正面", "labels": ["正面", "负面"]}},
]


def test_offline_judgments_have_the_schema_and_real_scores(tmp_path):
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    write_jsonl(tmp_path / "answers" / "base.jsonl", [
        {"id": "m1", "category": "math", "answer": "答案：5"},
        {"id": "c1", "category": "classification", "answer": "负面"}])
    rows = read_jsonl(judge_answers(make_config("m"), "base", tmp_path))
    assert [set(r) for r in rows] == [{"id", "run", "score", "raw", "judge", "usage"}] * 2
    assert {r["id"]: r["score"] for r in rows} == {"m1": 1.0, "c1": 0.0}
    assert all(r["run"] == 0 and r["judge"] == "offline" and r["raw"] for r in rows)


def test_a_missing_answer_or_unknown_id_is_an_error(tmp_path):
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    write_jsonl(tmp_path / "answers" / "base.jsonl", [{"id": "m1", "category": "math", "answer": "5"}])
    with pytest.raises(ValueError, match="1 eval items have no answer"):
        judge_answers(make_config("m"), "base", tmp_path)
    write_jsonl(tmp_path / "answers" / "base.jsonl", [
        {"id": "m1", "answer": "5"}, {"id": "c1", "answer": "正面"}, {"id": "zz", "answer": "?"}])
    with pytest.raises(ValueError, match=r"line 3: id 'zz' is not in eval.jsonl"):
        judge_answers(make_config("m"), "base", tmp_path)
