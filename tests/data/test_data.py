import pytest
from builders import EVALS, file_study, make_config, train_records, write_records

from helpers import data
from helpers.data.selection import random_order, selection_order, stratified_order
from helpers.data.stage import check_contamination, nested_subsets
from helpers.study.categories import CATEGORIES
from helpers.study.config import STRATEGIES
from helpers.study.files import read_json, read_jsonl


def test_prepare_writes_schema_valid_nested_files(tmp_path):
    cfg = make_config("m", scales=[6, 18, 30], data={"pool_size": 60, "eval_per_category": 2})
    stats = data.run(cfg, tmp_path)
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
    data.run(cfg, tmp_path / "a")
    data.run(cfg, tmp_path / "b")
    for name in ("pool.jsonl", "eval.jsonl", "subsets/8.jsonl", "data_stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    data.run(make_config("m", seed=1, data={"pool_size": 40, "eval_per_category": 1}), tmp_path / "c")
    assert (tmp_path / "a" / "subsets/8.jsonl").read_bytes() != (tmp_path / "c" / "subsets/8.jsonl").read_bytes()


def test_a_scale_larger_than_the_pool_is_refused():
    with pytest.raises(ValueError, match="exceeds the pool of 3 items"):
        nested_subsets([{"id": str(i)} for i in range(3)], [2, 5], seed=0)


def test_an_eval_question_found_in_the_pool_stops_the_study():
    pool = [{"instruction": "计算：1+1", "input": "", "output": "2"}]
    with pytest.raises(ValueError, match="contamination: 1 eval questions"):
        check_contamination(pool, [{"id": "e1", "question": "计算：1+1"}])
    check_contamination(pool, [{"id": "e2", "question": "计算：1+2"}])


# ---------------------------------------------------------------------------------------------
# selection strategies
# ---------------------------------------------------------------------------------------------

from collections import Counter  # noqa: E402

from helpers.data.suite import build_suite  # noqa: E402
from helpers.study.config import QualityConfig  # noqa: E402


def _skewed_pool():
    """A pool whose categories are far from balanced: category k keeps (k + 1) / 12 of its items."""
    pool, _ = build_suite(0, 1200, 1)
    keep = {c: (k + 1) * 100 // 12 for k, c in enumerate(CATEGORIES)}
    seen = Counter()
    out = []
    for r in pool:
        seen[r["category"]] += 1
        if seen[r["category"]] <= keep[r["category"]]:
            out.append(r)
    return out


def test_random_strategy_is_one_seeded_permutation():
    import random

    pool = [{"id": str(i), "category": "math"} for i in range(50)]
    order = list(range(50))
    random.Random(7).shuffle(order)
    assert nested_subsets(pool, [5, 20], seed=7)[0][20] == [pool[i] for i in order[:20]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_nested_and_deterministic(strategy):
    pool = _skewed_pool()
    scales = [10, 30, 50, 100]
    a = nested_subsets(pool, scales, seed=3, strategy=strategy, quality=QualityConfig())[0]
    assert a == nested_subsets(pool, scales, seed=3, strategy=strategy, quality=QualityConfig())[0]
    for small, large in zip(scales, scales[1:]):
        assert a[small] == a[large][:small]
    assert len({r["id"] for r in a[100]}) == 100
    assert a[100] != nested_subsets(pool, scales, seed=4, strategy=strategy, quality=QualityConfig())[0][100]


def test_stratified_holds_the_pool_proportions_at_every_scale():
    pool = _skewed_pool()
    shares = {c: n / len(pool) for c, n in Counter(r["category"] for r in pool).items()}
    order = stratified_order([r["category"] for r in pool], seed=0)
    assert sorted(order) == list(range(len(pool)))
    worst_random = 0.0
    rand = random_order(len(pool), 0)
    for k in range(1, len(pool) + 1):
        counts = Counter(pool[i]["category"] for i in order[:k])
        assert all(abs(counts[c] - k * p) <= 1 for c, p in shares.items()), k
        rc = Counter(pool[i]["category"] for i in rand[:k])
        worst_random = max(worst_random, max(abs(rc[c] - k * p) for c, p in shares.items()))
    assert worst_random > 2  # a plain shuffle drifts; stratified does not


def test_quality_filters_count_every_reason():
    good = {"instruction": "介绍一下长城。", "input": "", "output": "长城是中国古代的军事防御工程。", "category": "open_qa"}
    pool = [{**good, "id": f"ok{i}"} for i in range(5)] + [
        {**good, "id": "self1", "output": "作为一个AI语言模型，我无法回答这个问题。"},
        {**good, "id": "self2", "output": "As an AI language model, I cannot browse the internet."},
        {**good, "id": "self3", "output": "我是一个人工智能助手，没有个人喜好。"},
        {**good, "id": "img1", "instruction": "描述这张图片中的内容。"},
        {**good, "id": "img2", "instruction": "总结一下这个链接里的文章：https://example.com/a"},
        {**good, "id": "img3", "instruction": "Please describe the attached image."},
        {**good, "id": "long1", "input": "很长" * 40},
        {**good, "id": "long2", "output": "很长" * 60},
        {**good, "id": "short", "output": "好"},
        {**good, "id": "lang1", "output": "The Great Wall is a series of fortifications built across northern China."},
        # kept: a translation task answered in English, code answered in code, English asked in English
        {**good, "id": "ok-tr", "instruction": "把这句话翻译成英文：长城很长。", "output": "The Great Wall is very long indeed."},
        {**good, "id": "ok-code", "instruction": "写一个函数求两数之和。",
         "output": "def add(a, b):\n    return a + b  # returns the sum of both numbers"},
        {**good, "id": "ok-en", "instruction": "Describe the Great Wall.",
         "output": "The Great Wall is a series of fortifications built across northern China."},
    ]
    limits = QualityConfig(max_question_chars=60, min_output_chars=2, max_output_chars=100)
    order, removed, report = selection_order(pool, "quality", 0, limits)
    assert report["reasons"] == {"self_reference": 3, "multimodal": 3, "question_too_long": 1,
                                 "output_too_short": 1, "output_too_long": 1, "language_mismatch": 1}
    assert report["removed"] == len(removed) == 10 and report["candidates"] == len(order) == 8
    assert {pool[i]["id"] for i in order} == {f"ok{i}" for i in range(5)} | {"ok-tr", "ok-code", "ok-en"}
    assert {r["id"]: r["reason"] for r in removed}["lang1"] == "language_mismatch"


def test_quality_filters_keep_the_whole_builtin_suite():
    pool, _ = build_suite(0, 3000, 1)
    _, removed, report = selection_order(pool, "quality", 0, QualityConfig())
    assert removed == [] and report["candidates"] == 3000


# ---------------------------------------------------------------------------------------------
# the stage on files: dedup, contamination, filters reported
# ---------------------------------------------------------------------------------------------



def test_file_source_removes_duplicates_and_contaminated_items_and_reports_them(tmp_path, capsys):
    cfg = file_study(tmp_path, train_records(), EVALS, scales=(4, 8, 12))
    stats = data.run(cfg, tmp_path / "study")
    out = capsys.readouterr().out
    pool_ids = [r["id"] for r in read_jsonl(tmp_path / "study" / "pool.jsonl")]
    assert "dup-exact" not in pool_ids and "dup-near" not in pool_ids and "leak" not in pool_ids
    assert len(pool_ids) == 16
    f = stats["filters"]
    assert (f["dedup"]["action"], f["dedup"]["exact"], f["dedup"]["near"], f["dedup"]["removed"]) == \
        ("remove", 1, 1, 2)
    assert (f["contamination"]["action"], f["contamination"]["removed"]) == ("remove", 1)
    assert f["contamination"]["examples"][0]["pool_id"] == "leak"
    removed = {r["id"]: r for r in read_jsonl(tmp_path / "study" / "removed.jsonl")}
    assert removed["dup-exact"]["duplicate_of"] == "t0" and removed["dup-near"]["step"] == "dedup"
    assert removed["leak"]["step"] == "contamination" and removed["leak"]["eval_id"] == "eval-00001"
    assert "dedup (remove): 1 exact and 1 near duplicates" in out and "contamination (remove)" in out
    assert stats["pool"]["categories"] == {"open_qa": 16} and stats["loaded"] == 19
    assert stats["sources"][0]["labels_mapped"] == {"open qa": "open_qa", "Open QA": "open_qa", "openqa": "open_qa"}
    sub = stats["subsets"]["12"]["by_category"]["open_qa"]
    assert sub["n"] == 12 and set(sub["chars"]) == {"mean", "median", "p90", "max"}


def test_report_action_counts_without_removing(tmp_path):
    cfg = file_study(tmp_path, train_records(), EVALS, scales=(4, 8),
                      dedup={"action": "report"}, contamination={"action": "report"})
    stats = data.run(cfg, tmp_path / "study")
    assert len(read_jsonl(tmp_path / "study" / "pool.jsonl")) == 19
    assert stats["filters"]["dedup"]["near"] == 1 and stats["filters"]["dedup"]["removed"] == 0
    assert stats["filters"]["contamination"]["overlapping"] == 1 and stats["filters"]["contamination"]["removed"] == 0


def test_a_verbatim_eval_question_stops_the_study_or_is_removed(tmp_path):
    train = train_records() + [{"id": "verbatim", "instruction": "写一首关于秋天的诗。", "input": "",
                                  "output": "秋风起，落叶黄。"}]
    cfg = file_study(tmp_path, train, EVALS)
    with pytest.raises(ValueError, match=r"contamination: 1 eval questions appear verbatim in the pool: "
                                         r"\['eval-00002 = verbatim'\]"):
        data.run(cfg, tmp_path / "study")
    cfg = file_study(tmp_path, train, EVALS, contamination={"verbatim": "remove"})
    stats = data.run(cfg, tmp_path / "study")
    assert stats["filters"]["verbatim"]["removed"] == 1
    assert "verbatim" not in {r["id"] for r in read_jsonl(tmp_path / "study" / "pool.jsonl")}


def test_builtin_default_only_reports_and_keeps_the_random_subsets(tmp_path):
    cfg = make_config("m", scales=[6, 18, 30], data={"pool_size": 60, "eval_per_category": 2})
    stats = data.run(cfg, tmp_path)
    pool, _ = build_suite(0, 60, 2)
    assert read_jsonl(tmp_path / "pool.jsonl") == pool
    assert read_jsonl(tmp_path / "subsets" / "30.jsonl") == nested_subsets(pool, [30], 0)[0][30]
    assert stats["filters"]["dedup"]["action"] == "report" and stats["filters"]["contamination"]["action"] == "report"
    assert read_jsonl(tmp_path / "removed.jsonl") == []


def test_a_filter_that_leaves_too_few_items_says_so(tmp_path):
    train = [{"id": f"x{i}", "instruction": f"第{i}题：描述这张图片。", "input": "", "output": "看不到。"} for i in range(10)]
    cfg = make_config("m", scales=[4, 8], strategy="quality", data={
        "source": "file", "train_files": [write_records(tmp_path / "t.jsonl", train)],
        "eval_file": write_records(tmp_path / "e.jsonl", EVALS), "dedup": {"action": "report"}})
    with pytest.raises(ValueError, match="exceeds the pool of 0 items after the quality filters removed 10"):
        data.run(cfg, tmp_path / "study")


def test_token_lengths_come_from_a_local_base_models_tokenizer(tmp_path, embedded_dir):
    cfg = make_config(str(embedded_dir), scales=[6, 12], data={"pool_size": 24, "eval_per_category": 1})
    stats = data.run(cfg, tmp_path)
    assert stats["length_unit"].startswith("tokens")
    sub = stats["subsets"]["12"]
    assert sub["tokens"]["max"] >= sub["tokens"]["median"] > 0
    assert all("tokens" in v and "chars" in v for v in sub["by_category"].values())
    assert make_config("m").data.length_unit == "auto"
    assert "tokens" not in data.run(make_config("m"), tmp_path / "c")["pool"]  # "m" is no local model


def test_an_unknown_strategy_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown strategy 'best'; known: random, stratified, quality"):
        selection_order([], "best", 0)


def test_the_largest_scale_can_be_the_whole_pool_that_filters_leave(tmp_path):
    """The paper's 2M model is the whole 2M release: filters removing a record must not make that scale impossible.
    19 records, 3 removed (2 duplicates, 1 contaminated): a nominal 19 stops with exact, takes the 16 with whole_pool."""
    cfg = file_study(tmp_path, train_records(), EVALS, scales=(4, 8, 19))
    with pytest.raises(ValueError, match="exceeds the pool of 16 items; data.largest_scale: whole_pool"):
        data.run(cfg, tmp_path / "study")
    cfg = file_study(tmp_path, train_records(), EVALS, scales=(4, 8, 19), largest_scale="whole_pool")
    stats = data.run(cfg, tmp_path / "study")
    pool = read_jsonl(tmp_path / "study" / "pool.jsonl")
    largest = read_jsonl(tmp_path / "study" / "subsets" / "19.jsonl")
    assert len(pool) == 16 and sorted(r["id"] for r in largest) == sorted(r["id"] for r in pool)
    assert stats["subsets"]["19"]["n"] == 16 and stats["subsets"]["8"]["n"] == 8
    assert [r["id"] for r in read_jsonl(tmp_path / "study" / "subsets" / "8.jsonl")] == [r["id"] for r in largest[:8]]
    cfg = file_study(tmp_path, train_records(), EVALS, scales=(4, 16, 19), largest_scale="whole_pool")
    with pytest.raises(ValueError, match="not more than the next scale 16"):
        data.run(cfg, tmp_path / "study")
