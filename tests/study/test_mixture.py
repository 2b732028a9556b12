"""The mixture axis (data.mixture): its config, the refill that draws each mixture, the runner's plan and the preflight."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import yaml
from builders import make_config

from helpers import data
from helpers.data.mixture import MixtureError, mixture_counts, mixture_subset
from helpers.data.selection import random_order
from helpers.study.categories import CATEGORIES
from helpers.study.config import is_mixture, split_model
from helpers.study.files import read_json, read_jsonl
from helpers.study.loading import ConfigError, load_config
from helpers.study.order import model_order, strategy_groups
from helpers.study.runner import plan


def mix_config(mixture, **overrides):
    raw = {"source": "builtin", "pool_size": 120, "eval_per_category": 1, "mixture": mixture}
    return make_config("m", scales=[4, 24], data=raw, **overrides)


# ------------------------------------------------------------------------------------ config

def test_mixtures_are_named_mix_name_after_the_scales():
    cfg = mix_config({"leave_one_out": ["math", "open_qa"], "only": ["code"], "weights": {"math_x2": {"math": 2}}})
    assert cfg.models == ["base", "4", "24", "mix-without-math", "mix-without-open_qa", "mix-only-code",
                          "mix-math_x2"]
    assert cfg.mixture_reference == "24" and cfg.examples("mix-only-code") == 24 == cfg.examples("24")
    plans = cfg.data.mixture.plans()
    assert plans["mix-without-math"]["math"] == 0 and plans["mix-without-math"]["code"] == 1
    assert plans["mix-only-code"]["code"] == 1 and plans["mix-only-code"]["default"] == 0
    assert plans["mix-math_x2"]["math"] == 2 and plans["mix-math_x2"]["cot"] == 1
    everything = mix_config({"leave_one_out": "all"})
    assert everything.mixture_models == [f"mix-without-{c}" for c in CATEGORIES]
    assert is_mixture("mix-without-math") and not is_mixture("quality-640") and not is_mixture("base")
    with pytest.raises(ValueError, match="mixture model"):
        split_model("mix-without-math")  # no scale in its name: nothing may read one from it
    from helpers.study.notebook import pick_model

    assert pick_model(cfg, None) == "24"  # a notebook without a model: the largest scale, never a mixture


def test_order_puts_mixtures_last_and_on_no_scale_chain():
    models = ["mix-without-code", "24", "base", "mix-only-math", "4"]
    assert model_order(models) == ["base", "4", "24", "mix-without-code", "mix-only-math"]
    assert strategy_groups(models) == {None: ["base", "4", "24"]}


@pytest.mark.parametrize("mixture, message", [
    ({"leave_one_out": ["maths"]}, r"data.mixture.leave_one_out: unknown use case\(s\) \['maths'\]"),
    ({"only": ["math", "math"]}, "data.mixture.only: a use case is listed twice"),
    ({"weights": {"x": {"poetry": 2}}}, r"data.mixture.weights.x: unknown use case\(s\) \['poetry'\]"),
    ({"weights": {"x": {"math": -1}}}, "data.mixture.weights.x: weights must be finite and >= 0"),
    ({"weights": {"x": {"default": 0}}}, "data.mixture.weights.x: every weight is 0"),
    ({"weights": {"x": {"math": 3, "default": 3}}}, "data.mixture.weights.x: every use case has the same weight"),
    ({"weights": {"no-math": {"math": 0}}}, "data.mixture.weights.no-math: a name holds letters"),
    ({"leave_one_out": ["math"], "weights": {"nomath": {"math": 0, "default": 2}}},
     "data.mixture: mix-nomath weighs the use cases as mix-without-math does"),
    ({"leave_one_out": "some"}, "leave_one_out"),
])
def test_bad_mixtures_are_config_errors_naming_the_key(tmp_path, mixture, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "scales": [4, 24], "data": {"pool_size": 120, "mixture": mixture}}))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_mixture_varies_one_strategy(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "scales": [4], "strategy": ["random", "quality"],
                                    "data": {"mixture": {"only": ["math"]}}}))
    with pytest.raises(ConfigError, match="data.mixture: varies the mixture of one selection strategy"):
        load_config(path)


def test_the_shipped_mixture_config_is_the_default_study_with_twelve_leave_one_out_models():
    cfg = load_config("configs/mixture.yaml")
    default = load_config("configs/default.yaml")
    assert cfg.mixture_models == [f"mix-without-{c}" for c in CATEGORIES]
    assert len(cfg.scales) == 1 and cfg.mixture_reference == str(cfg.scales[0])
    assert cfg.model == default.model and cfg.judge == default.judge and cfg.data.source == "builtin"
    assert cfg.train.model_dump(exclude={"schedule"}) == default.train.model_dump(exclude={"schedule"})


# ------------------------------------------------------------------------------------ the refill

def test_counts_follow_the_weights_and_add_up_to_the_full_mixture():
    full = {"math": 5, "code": 3, "cot": 2, "rewrite": 1}
    assert mixture_counts(full, {"math": 0, "default": 1}) == {"math": 0, "code": 5, "cot": 4, "rewrite": 2}
    assert mixture_counts(full, {"math": 2, "default": 1}) == {"math": 7, "code": 2, "cot": 1, "rewrite": 1}
    assert mixture_counts(full, {"code": 1, "default": 0}) == {"math": 0, "code": 11, "cot": 0, "rewrite": 0}
    assert mixture_counts(full, {"default": 1}) == full
    with pytest.raises(MixtureError, match="no item of a use case with a weight above 0"):
        mixture_counts(full, {"translation": 1, "default": 0})


def _pool(n_per, seed=3):
    cats = [c for c in CATEGORIES for _ in range(n_per)]
    random.Random(seed).shuffle(cats)
    return [{"id": f"p{i}", "category": c} for i, c in enumerate(cats)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_refill_keeps_the_count_the_full_mixture_and_the_pools_order(seed):
    pool = _pool(30, seed)
    order = random_order(len(pool), seed)
    n = 96
    full = [pool[i] for i in order[:n]]
    position = {pool[i]["id"]: k for k, i in enumerate(order)}
    for c in CATEGORIES:
        plan_ = {c: 0.0, "default": 1.0}
        records, report = mixture_subset(pool, order, n, plan_, f"mix-without-{c}")
        assert len(records) == n == report["examples"]  # every mixture sees as many examples as the full one
        assert not [r for r in records if r["category"] == c]
        # the full mixture's other items all stay; the refill adds only items of the other use cases
        kept = [r["id"] for r in full if r["category"] != c]
        assert set(kept) <= {r["id"] for r in records}
        positions = [position[r["id"]] for r in records]
        assert positions == sorted(positions)  # in the pool's (selection) order
        # and within each use case a prefix of that use case's order: the next items of the pool, none skipped
        for other, k in Counter(r["category"] for r in records).items():
            in_order = [pool[i]["id"] for i in order if pool[i]["category"] == other][:k]
            assert [r["id"] for r in records if r["category"] == other] == in_order
    same, _ = mixture_subset(pool, order, n, {"default": 1.0})
    assert same == full


def test_a_mixture_the_pool_cannot_fill_names_the_model_use_case_and_counts():
    pool = _pool(10)
    with pytest.raises(MixtureError, match="mix-only-math: needs 48 math examples but the pool holds 10"):
        mixture_subset(pool, list(range(len(pool))), 48, {"math": 1.0, "default": 0.0}, "mix-only-math")


def test_the_data_stage_writes_every_mixture_and_says_which_equal_the_full_mixture(tmp_path):
    cfg = mix_config({"leave_one_out": "all", "weights": {"math_x2": {"math": 2}}})
    stats = data.run(cfg, tmp_path)
    full = read_jsonl(tmp_path / "subsets" / "24.jsonl")
    assert len(full) == 24
    for m in cfg.mixture_models:
        records = read_jsonl(tmp_path / "subsets" / f"{m}.jsonl")
        assert len(records) == 24 and stats["subsets"][m]["n"] == 24
        report = stats["mixtures"]["models"][m]
        assert sum(report["counts"].values()) == 24
        absent = m.removeprefix("mix-without-") not in {r["category"] for r in full}
        assert report["same_as_reference"] == (m.startswith("mix-without-") and absent)
    assert stats["mixtures"]["reference"] == "24"
    assert read_json(tmp_path / "data_stats.json")["mixtures"] == stats["mixtures"]
    math_x2 = Counter(r["category"] for r in read_jsonl(tmp_path / "subsets" / "mix-math_x2.jsonl"))
    assert math_x2["math"] > Counter(r["category"] for r in full)["math"] > 0
    assert data.length_table(stats)  # the largest scale's subset, not a mixture's


def test_the_data_stage_stops_on_a_mixture_the_pool_cannot_fill(tmp_path):
    cfg = mix_config({"only": ["math", "code"]})  # 10 of each in a pool of 120; the full mixture is 24
    with pytest.raises(MixtureError, match=r"2 mixtures cannot be filled(.|\n)*mix-only-math: needs 24 math "
                                           r"examples but the pool holds 10(.|\n)*mix-only-code: needs 24 code"):
        data.run(cfg, tmp_path)


# ------------------------------------------------------------------------------------ the runner and the preflight

def test_each_mixture_is_one_more_model_through_every_per_model_stage(tmp_path):
    for schedule in ("separate", "prefix"):
        cfg = mix_config({"leave_one_out": ["math"], "only": ["code"]},
                         train={"schedule": schedule, "batch_size": 4, "per_device_batch_size": 4})
        runs = {r.label: r for r in plan(cfg, tmp_path)}
        for m in ("mix-without-math", "mix-only-code"):
            assert runs[f"finetune-{m}"].inputs == [tmp_path / "subsets" / f"{m}.jsonl"]
            assert runs[f"finetune-{m}"].outputs == [tmp_path / "models" / m]
            assert tmp_path / "subsets" / f"{m}.jsonl" in runs["data"].outputs
            assert tmp_path / "answers" / f"{m}.jsonl" in runs["generate-all"].outputs and f"judge-{m}" in runs
            assert tmp_path / "judgments" / f"{m}.jsonl" in runs["analysis"].inputs
        finetune = [label for label in runs if label.startswith("finetune")]
        assert finetune == (["finetune"] if schedule == "prefix" else ["finetune-4", "finetune-24"]) + [
            "finetune-mix-without-math", "finetune-mix-only-code"]


def test_the_preflight_finds_a_mixture_that_cannot_be_filled_before_anything_runs(tmp_path):
    from helpers.preflight import PreflightFailed, check_study

    bad = mix_config({"leave_one_out": ["math"], "only": ["code"]})
    lines = []
    with pytest.raises(PreflightFailed, match="mix-only-code: needs 24 code examples but the pool holds 10 "
                                              r"\(the built-in pool of 120 items\)") as e:
        check_study(bad, tmp_path, plan(bad, tmp_path)[:1], lines.append)  # the data stage's execution
    assert "mix-without-math" not in str(e.value)  # it fills: only what fails is named
    good = mix_config({"leave_one_out": "all"})
    checks = check_study(good, tmp_path, plan(good, tmp_path)[:1], lines.append)
    assert next(c for c in checks if c.name == "mixtures").found.startswith("12 mixtures of 24 items each fill")


def test_the_dry_run_counts_each_mixture_as_a_training_run(tmp_path):
    from helpers.estimate import compute_plan

    cfg = mix_config({"leave_one_out": ["math", "code"]},
                     train={"schedule": "prefix", "batch_size": 4, "per_device_batch_size": 4})
    assert compute_plan(cfg, tmp_path)["examples"] == 24 + 2 * 24
