"""The strategy grid: scales x selection strategies in one study and one report."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from builders import EVALS, file_study, make_config, train_records

from helpers import data
from helpers.analysis.figures import all_figures, model_label, model_palette
from helpers.analysis.paper import load_claims
from helpers.analysis.stage import write_results
from helpers.study.categories import CATEGORIES
from helpers.study.config import split_model
from helpers.study.files import read_json, read_jsonl, write_json
from helpers.study.loading import ConfigError, load_config
from helpers.study.runner import plan

GRID = ["random", "stratified", "quality"]


def grid_config(base="m", strategies=GRID, **overrides):
    return make_config(base, strategy=list(strategies), **overrides)


# ------------------------------------------------------------------------------------ config and plan

def test_a_list_of_strategies_names_models_strategy_dash_scale():
    cfg = grid_config(scales=[4, 8])
    assert cfg.grid and cfg.strategies == GRID
    assert cfg.models == ["base", "random-4", "random-8", "stratified-4", "stratified-8", "quality-4", "quality-8"]
    assert [split_model(m) for m in cfg.models[:3]] == [(None, 0), ("random", 4), ("random", 8)]
    one = make_config("m", strategy="quality")
    assert not one.grid and one.models == ["base", "4", "8"]  # a one-strategy study keeps plain scale names


def test_bad_strategy_lists_and_model_names_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "scales": [4], "strategy": ["random", "random"]}))
    with pytest.raises(ConfigError, match="strategy: .*without repeats"):
        load_config(path)
    path.write_text(yaml.safe_dump({"study": "s", "scales": [4], "strategy": ["random", "best"]}))
    with pytest.raises(ConfigError, match="strategy"):
        load_config(path)
    with pytest.raises(ValueError, match="not models of this study"):
        grid_config(model={"base": "m", "checkpoints": {"4": "x"}})
    for bad in ("best-4", "random-0", "random-x"):
        with pytest.raises(ValueError, match="model name"):
            split_model(bad)


def test_plan_trains_once_per_strategy_under_the_prefix_schedule(tmp_path):
    cfg = grid_config(strategies=["random", "quality"],
                      train={"schedule": "prefix", "batch_size": 4, "per_device_batch_size": 4})
    runs = {r.label: r for r in plan(cfg, tmp_path)}
    assert [label for label in runs if label.startswith("finetune")] == ["finetune-random", "finetune-quality"]
    assert runs["finetune-quality"].inputs == [tmp_path / "subsets" / "quality-8.jsonl"]
    assert runs["finetune-quality"].outputs == [tmp_path / "models" / "quality-4", tmp_path / "models" / "quality-8"]
    assert tmp_path / "subsets" / "random-4.jsonl" in runs["data"].outputs
    assert [label for label in runs if label.startswith("judge")] == [
        "judge-base", "judge-random-4", "judge-random-8", "judge-quality-4", "judge-quality-8"]
    separate = [r.label for r in plan(grid_config(strategies=["random", "quality"]), tmp_path)]
    assert [x for x in separate if x.startswith("finetune")] == [
        "finetune-random-4", "finetune-random-8", "finetune-quality-4", "finetune-quality-8"]


# ------------------------------------------------------------------------------------ data

def test_every_strategy_gets_nested_subsets_from_the_same_pool(tmp_path):
    records = train_records() + [
        {"id": "selfref", "instruction": "介绍一下你自己。", "input": "", "output": "作为一个AI语言模型，我没有名字。",
         "category": "open_qa"},
        {"id": "image", "instruction": "描述这张图片中的内容。", "input": "", "output": "图中有一只猫。",
         "category": "open_qa"}]
    grid = file_study(tmp_path, records, EVALS, scales=(4, 8, 12))
    grid = grid.model_copy(update={"strategy": ["random", "quality"]})
    stats = data.run(grid, tmp_path / "grid")
    single = file_study(tmp_path, records, EVALS, scales=(4, 8, 12))
    data.run(single, tmp_path / "single")
    pool_ids = {r["id"] for r in read_jsonl(tmp_path / "grid" / "pool.jsonl")}
    assert {"selfref", "image"} <= pool_ids  # the quality filters narrow the quality subsets, not the pool
    for strategy in ("random", "quality"):
        subsets = [read_jsonl(tmp_path / "grid" / "subsets" / f"{strategy}-{s}.jsonl") for s in (4, 8, 12)]
        assert [len(s) for s in subsets] == [4, 8, 12]
        assert subsets[0] == subsets[1][:4] and subsets[1] == subsets[2][:8]
        assert stats["subsets"][f"{strategy}-12"]["n"] == 12
    # the grid's random subsets are exactly the one-strategy study's subsets
    for s in (4, 8, 12):
        assert (tmp_path / "grid" / "subsets" / f"random-{s}.jsonl").read_bytes() == \
            (tmp_path / "single" / "subsets" / f"{s}.jsonl").read_bytes()
    quality_ids = {r["id"] for r in read_jsonl(tmp_path / "grid" / "subsets" / "quality-12.jsonl")}
    assert not {"selfref", "image"} & quality_ids
    assert stats["strategies"] == ["random", "quality"]
    assert stats["filters"]["selection"]["reasons"]["self_reference"] == 1
    assert {r["id"] for r in read_jsonl(tmp_path / "grid" / "removed.jsonl") if r["step"] == "quality"} == \
        {"selfref", "image"}


# ------------------------------------------------------------------------------------ analysis, figures, report

SCALES = [100, 1000, 10000]


def grid_scores(n_items=40, seed=0):
    """random rises in every category; quality is 0.25 better than random in extraction only."""
    rng = np.random.default_rng(seed)
    out = {"base": {}}
    for c in CATEGORIES:
        item = rng.normal(0, 0.05, n_items)
        out["base"][c] = np.clip(0.05 + item, 0, 1)[:, None]
        for st in ("random", "quality"):
            for k, n in enumerate(SCALES):
                level = 0.2 + 0.15 * k + (0.25 if st == "quality" and c == "extraction" else 0)
                noise = rng.normal(0, 0.02, n_items)
                out.setdefault(f"{st}-{n}", {})[c] = np.clip(level + item + noise, 0, 1)[:, None]
    return out


@pytest.fixture
def grid_study(tmp_path):
    sd = tmp_path / "study"
    build_study_grid(sd, grid_scores())
    return sd


def build_study_grid(sd, scores):
    """A judged study dir from ``scores[model][category]`` = items x runs (``test_analysis.build_study``
    for grid model names)."""
    from helpers.study.files import write_jsonl

    models = list(scores)
    ev = [{"id": f"{c}-{i}", "category": c, "question": f"Q {c} {i}", "reference": f"R {c} {i}", "check": None}
          for c in CATEGORIES for i in range(len(scores["base"][c]))]
    write_jsonl(sd / "eval.jsonl", ev)
    for m in models:
        rows, ans = [], []
        for c in CATEGORIES:
            for i, runs in enumerate(scores[m][c]):
                rows += [{"id": f"{c}-{i}", "run": r, "score": float(s), "raw": "r", "judge": "offline", "usage": {}}
                         for r, s in enumerate(runs)]
                ans.append({"id": f"{c}-{i}", "category": c, "answer": f"answer of {m}"})
        write_jsonl(sd / "judgments" / f"{m}.jsonl", rows)
        write_jsonl(sd / "answers" / f"{m}.jsonl", ans)
        if m != "base":
            write_jsonl(sd / "models" / m / "train_log.jsonl",
                        [{"step": s, "loss": 2.0 / (1 + s), "tokens_seen": 100 * s} for s in range(1, 6)])
    write_json(sd / "data_stats.json", {"subsets": {
        m: {"n": split_model(m)[1], "categories": {c: split_model(m)[1] // 12 for c in CATEGORIES}}
        for m in models if m != "base"}})


def test_strategy_comparison_finds_the_one_use_case_where_quality_helps(grid_study):
    res = write_results(grid_study, ["base"] + [f"{st}-{n}" for st in ("random", "quality") for n in SCALES],
                          n_boot=300)
    assert res["models"] == ["base", "random-100", "random-1000", "random-10000",
                             "quality-100", "quality-1000", "quality-10000"]
    assert res["strategies"] == ["random", "quality"]
    versus = [r for r in res["strategy_comparison"] if r["category"] != "overall"]
    assert {(r["examples"], r["strategy"], r["reference"]) for r in versus} == \
        {(n, "quality", "random") for n in SCALES}
    for r in versus:
        if r["category"] == "extraction":
            assert r["significant"] and r["ci_low"] > 0.15 and abs(r["diff"] - 0.25) < 0.05
        else:
            assert abs(r["diff"]) < 0.05
    # trends, changes and the paper comparison run along each strategy's own chain
    trends = {(r["strategy"], r["category"]): r for r in res["trends"]}
    assert {st for st, _ in trends} == {"random", "quality"}
    assert trends[("random", "math")]["label"] == "improving" and trends[("quality", "math")]["first_scale"] == "quality-100"
    steps = {(r["from"], r["to"]) for r in res["changes"]}
    assert steps == {("base", "random-100"), ("random-100", "random-1000"), ("random-1000", "random-10000"),
                     ("base", "quality-100"), ("quality-100", "quality-1000"), ("quality-1000", "quality-10000")}
    assert {r["strategy"] for r in res["paper_comparison"]} == {"random", "quality"}
    assert len(res["paper_comparison"]) == 2 * len(load_claims())
    assert {r["strategy"] for r in res["paper_shapes"]} == {"random", "quality"}
    assert [t.split(":")[0] for t in res["paper_headline"]] == ["random", "quality"]


def test_a_one_strategy_study_has_no_strategy_columns(tmp_path):
    scores = grid_scores()
    sd = tmp_path / "study"
    build_study_grid(sd, {"base": scores["base"], **{str(n): scores[f"random-{n}"] for n in SCALES}})
    res = write_results(sd, ["base", "100", "1000", "10000"], n_boot=50)
    assert res["strategies"] == [] and res["strategy_comparison"] == []
    assert "strategy" not in res["trends"][0] and "strategy" not in res["changes"][0]


@pytest.mark.slow
def test_grid_figures_and_report(grid_study, tmp_path):
    from helpers.analysis.report import build_report

    models = ["base"] + [f"{st}-{n}" for st in ("random", "quality") for n in SCALES]
    res = write_results(grid_study, models, n_boot=50)
    pal = model_palette(models)
    assert len(set(pal.values())) == len(models)
    assert model_label("quality-10000") == "quality 10k" and model_label("10000") == "10k"
    paths = all_figures(grid_study, res, read_json(grid_study / "data_stats.json"))
    assert all(p.stat().st_size > 10_000 for p in paths.values())
    index = build_report(grid_study, tmp_path / "report", "grid", [], {}, {})
    text = index.read_text(encoding="utf-8")
    assert "Selection strategies at equal data" in text and "Change vs random" in text
    assert "<th>Strategy</th>" in text and "quality-10000" in text
    assert res["identical_subsets"] == [] and "0 by construction" not in text


def test_a_strategy_that_selects_what_random_selects_is_flagged_from_data_to_report(tmp_path, grid_study):
    """The built-in suite has nothing for the quality filters to remove: quality's subsets are random's,
    so its models repeat random's and the report must not let its zero difference pass for a finding."""
    from helpers.analysis.report import build_report

    stats = data.run(grid_config(), tmp_path / "data")
    assert stats["filters"]["selection"]["removed"] == 0
    assert stats["identical_subsets"] == [{"strategy": "quality", "same_as": "random", "scales": [4, 8]}]
    assert read_json(tmp_path / "data" / "data_stats.json")["identical_subsets"] == stats["identical_subsets"]

    write_json(grid_study / "data_stats.json", {**read_json(grid_study / "data_stats.json"), "identical_subsets": [
        {"strategy": "quality", "same_as": "random", "scales": [100, 1000]}]})
    models = ["base"] + [f"{st}-{n}" for st in ("random", "quality") for n in SCALES]
    res = write_results(grid_study, models, n_boot=50)
    assert res["identical_subsets"] == [{"strategy": "quality", "same_as": "random", "scales": [100, 1000]}]
    text = build_report(grid_study, tmp_path / "report", "grid", [], {}, {}).read_text(encoding="utf-8")
    assert "<b>quality</b> trained on the same items in the same order as <b>random</b> at 100, 1,000 examples" \
        in text and "0 by construction" in text


@pytest.mark.slow
def test_a_grid_study_runs_through_the_runner_to_one_report(tmp_path, tiny_model_dir):
    """The notebooks, papermill and the report with models named <strategy>-<scale> (tiny model)."""
    from helpers.analysis.report import build_index
    from helpers.study.runner import run_study

    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump({
        "study": "grid", "seed": 0, "scales": [4, 8], "strategy": ["random", "stratified"],
        "data": {"source": "builtin", "pool_size": 40, "eval_per_category": 1},
        "model": {"base": str(tiny_model_dir)},
        "train": {"batch_size": 4, "per_device_batch_size": 4, "max_length": 64, "bf16": False,
                  "schedule": "prefix"},
        "generate": {"batch_size": 12, "max_new_tokens": {"default": 4}},
        "analysis": {"n_boot": 20}}))
    lines = []
    index = run_study(config, root=tmp_path, out=lines.append, report=build_index)
    models = ["random-4", "random-8", "stratified-4", "stratified-8"]
    assert [line.split()[1] for line in lines if line.startswith("[done]")] == \
        ["data", "finetune-random", "finetune-stratified", "generate-all"] + [f"judge-{m}" for m in ["base"] + models] + \
        ["analysis"]
    sd = tmp_path / "data" / "grid"
    for m in models:
        assert (sd / "models" / m / "adapter_model.safetensors").exists()
        assert read_json(sd / "models" / m / "train_summary.json")["examples"] == split_model(m)[1]
    assert read_jsonl(sd / "subsets" / "random-4.jsonl") == read_jsonl(sd / "subsets" / "random-8.jsonl")[:4]
    res = read_json(sd / "results.json")
    assert res["models"] == ["base"] + models and res["strategies"] == ["random", "stratified"]
    assert {r["strategy"] for r in res["strategy_comparison"]} == {"stratified"}
    text = index.read_text(encoding="utf-8")
    assert "Selection strategies at equal data" in text and "notebooks/finetune-stratified.html" in text
    again = []
    run_study(config, root=tmp_path, out=again.append, report=build_index)
    assert not [line for line in again if line.startswith("[run ]")]


def test_the_dry_run_counts_one_pass_per_strategy_under_prefix(tmp_path):
    from helpers.estimate import compute_plan

    prefix = grid_config(strategies=["random", "quality"],
                         train={"schedule": "prefix", "batch_size": 4, "per_device_batch_size": 4})
    assert compute_plan(prefix, tmp_path)["examples"] == 8 + 8
    assert compute_plan(grid_config(strategies=["random", "quality"]), tmp_path)["examples"] == (4 + 8) * 2
