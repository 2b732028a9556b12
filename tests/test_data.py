import pytest

from helpers import CATEGORIES
from helpers.data import check_contamination, nested_subsets, prepare
from helpers.files import read_json, read_jsonl
from conftest import make_config


def test_prepare_writes_schema_valid_nested_files(tmp_path):
    cfg = make_config("m", scales=[6, 18, 30], data={"pool_size": 60, "eval_per_category": 2})
    stats = prepare(cfg, tmp_path)
    pool = read_jsonl(tmp_path / "pool.jsonl")
    items = read_jsonl(tmp_path / "eval.jsonl")
    assert len(pool) == 60 and len(items) == 24
    for r in pool:
        assert set(r) == {"id", "instruction", "input", "output", "category"} and r["category"] in CATEGORIES
    for it in items:
        assert set(it) == {"id", "category", "question", "reference", "check"} and it["category"] in CATEGORIES
    subsets = {s: read_jsonl(tmp_path / "subsets" / f"{s}.jsonl") for s in cfg.scales}
    assert [len(v) for v in subsets.values()] == [6, 18, 30]
    assert subsets[6] == subsets[18][:6] and subsets[18] == subsets[30][:18]  # nested
    assert read_json(tmp_path / "data_stats.json") == stats
    assert stats["subsets"]["30"]["n"] == 30 and sum(stats["subsets"]["30"]["categories"].values()) == 30


def test_same_seed_same_bytes_other_seed_other_subsets(tmp_path):
    cfg = make_config("m", data={"pool_size": 40, "eval_per_category": 1})
    prepare(cfg, tmp_path / "a")
    prepare(cfg, tmp_path / "b")
    for name in ("pool.jsonl", "eval.jsonl", "subsets/8.jsonl", "data_stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    prepare(make_config("m", seed=1, data={"pool_size": 40, "eval_per_category": 1}), tmp_path / "c")
    assert (tmp_path / "a" / "subsets/8.jsonl").read_bytes() != (tmp_path / "c" / "subsets/8.jsonl").read_bytes()


def test_a_scale_larger_than_the_pool_is_refused():
    with pytest.raises(ValueError, match="exceeds the pool of 3 items"):
        nested_subsets([{"id": str(i)} for i in range(3)], [2, 5], seed=0)


def test_an_eval_question_found_in_the_pool_stops_the_study():
    pool = [{"instruction": "计算：1+1", "input": "", "output": "2"}]
    with pytest.raises(ValueError, match="contamination: 1 eval questions"):
        check_contamination(pool, [{"id": "e1", "question": "计算：1+1"}])
    check_contamination(pool, [{"id": "e2", "question": "计算：1+2"}])
