"""Analysis and figures on synthetic studies whose right answers are known."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.analysis import figures
from helpers.analysis.changes import scale_changes
from helpers.analysis.figures import BASE_COLOR, all_figures, loss_curves, model_palette
from helpers.analysis.paper import chain_boot, claims_comparison
from helpers.analysis.scores import item_scores, judge_spread, load_answers, load_scores, score_table
from helpers.analysis.stage import lowest_items, pretty_table, write_results
from helpers.analysis.trends import trend_labels
from helpers.study.files import read_json, write_json, write_jsonl
from helpers.study.order import examples_of

N_BOOT = 200
SCALES = ["100", "1000", "10000"]
MODELS = ["base"] + SCALES


def build_study(root: Path, scores: dict, judge: str = "offline", answers: dict | None = None) -> Path:
    """Write a study dir from ``scores[model][category]`` = items x runs array (NaN = null).

    Item ids are ``<category>-<i>``; every model must give the same number of items
    per category. Also writes answers, data_stats.json and train logs.
    """
    root.mkdir(parents=True, exist_ok=True)
    models = list(scores)
    cats = list(scores[models[0]])
    ev = []
    for c in cats:
        for i in range(len(np.atleast_2d(scores[models[0]][c]))):
            ev.append({"id": f"{c}-{i}", "category": c, "question": f"Q {c} {i}",
                       "reference": f"R {c} {i}", "check": None})
    write_jsonl(root / "eval.jsonl", ev)
    for m in models:
        rows, ans = [], []
        for c in cats:
            arr = np.atleast_2d(np.asarray(scores[m][c], float))
            for i, runs in enumerate(arr):
                iid = f"{c}-{i}"
                for r, s in enumerate(runs):
                    rows.append({"id": iid, "run": r, "score": None if math.isnan(s) else float(s),
                                 "raw": f"judge says {s} for {iid}", "judge": judge, "usage": {}})
                ans.append({"id": iid, "category": c,
                            "answer": (answers or {}).get((m, iid), f"answer of {m} to {iid}")})
        write_jsonl(root / "judgments" / f"{m}.jsonl", rows)
        write_jsonl(root / "answers" / f"{m}.jsonl", ans)
    subsets = {m: {"n": int(m), "categories": {c: int(m) // len(cats) for c in cats}} for m in models if m != "base"}
    write_json(root / "data_stats.json", {"subsets": subsets})
    for m in subsets:
        write_jsonl(root / "models" / m / "train_log.jsonl",
                    [{"step": s, "loss": 2.0 / (1 + s), "tokens_seen": 100 * s, "tokens_per_s": 80.0,
                      "wall_s": s, "epoch": s / 10} for s in range(1, 11)])
    return root


def synthetic(levels: dict, n_items: int = 40, runs: int = 1, seed: int = 0, item_sd: float = 0.08,
              run_sd: float = 0.03) -> dict:
    """``levels[category][model]`` = true mean -> scores dict for ``build_study``."""
    rng = np.random.default_rng(seed)
    out = {m: {} for m in MODELS}
    for c, by_model in levels.items():
        item_eff = rng.normal(0, item_sd, n_items)
        for m in MODELS:
            base = by_model[m] + item_eff[:, None] + rng.normal(0, run_sd, (n_items, runs))
            out[m][c] = np.clip(base, 0, 1)
    return out


def rising(lo=0.2, step=0.2, base=0.05):
    return {"base": base, "100": lo, "1000": lo + step, "10000": lo + 2 * step}


def flat(v, base=0.05):
    return {"base": base, "100": v, "1000": v, "10000": v}


@pytest.fixture
def trend_study(tmp_path):
    levels = {"extraction": rising(), "math": flat(0.4), "rewrite": rising(0.8, -0.2)}
    return build_study(tmp_path / "s", synthetic(levels, runs=3), judge="llm")


def test_load_scores_columns_and_nulls(tmp_path):
    scores = {m: {"math": [[0.5], [np.nan]]} for m in MODELS}
    d = build_study(tmp_path / "s", scores)
    df = load_scores(d, MODELS)
    assert {"model", "examples", "id", "category", "run", "score"} <= set(df.columns)
    assert sorted(df["examples"].unique().tolist()) == [0, 100, 1000, 10000]
    assert df["score"].isna().sum() == len(MODELS)


def test_load_scores_unknown_id_names_file(tmp_path):
    d = build_study(tmp_path / "s", {m: {"math": [[0.5]]} for m in MODELS})
    write_jsonl(d / "judgments" / "100.jsonl", [{"id": "nope", "run": 0, "score": 1.0, "raw": "", "judge": "x", "usage": {}}])
    with pytest.raises(ValueError, match=r"judgments/100\.jsonl.*'nope'"):
        load_scores(d, MODELS)


def test_null_counted_never_zero(tmp_path):
    scores = {m: {"math": [[1.0], [np.nan]]} for m in MODELS}
    df = load_scores(build_study(tmp_path / "s", scores), MODELS)
    t = score_table(df, n_boot=N_BOOT)
    row = t[(t["category"] == "math") & (t["model"] == "100")].iloc[0]
    assert row["mean"] == 1.0 and row["n"] == 1 and row["n_null"] == 1
    it = item_scores(df[df["model"] == "100"])
    assert it.set_index("id").loc["math-1", "n_null"] == 1 and math.isnan(it.set_index("id").loc["math-1", "score"])


def test_item_scores_mean_over_runs_ignores_null():
    df = pd.DataFrame({"model": "100", "examples": 100, "id": "a", "category": "math",
                       "run": [0, 1, 2], "score": [0.2, np.nan, 0.6]})
    it = item_scores(df).iloc[0]
    assert it["score"] == pytest.approx(0.4) and it["n_runs"] == 2 and it["n_null"] == 1
    assert it["std"] == pytest.approx(0.2) and it["range"] == pytest.approx(0.4)


def _frame(values_by_cat: dict, model="100") -> pd.DataFrame:
    rows = []
    for c, vals in values_by_cat.items():
        for i, v in enumerate(vals):
            rows.append({"model": model, "examples": examples_of(model), "id": f"{c}-{i}",
                         "category": c, "run": 0, "score": v})
    return pd.DataFrame(rows)


def test_ci_contains_truth_and_narrows_with_items():
    rng = np.random.default_rng(1)
    big = _frame({"math": rng.uniform(0.2, 1.0, 2000)})  # true mean 0.6
    small = _frame({"math": rng.uniform(0.2, 1.0, 50)})
    tb = score_table(big, n_boot=N_BOOT).iloc[0]
    ts = score_table(small, n_boot=N_BOOT).iloc[0]
    assert tb["ci_low"] < 0.6 < tb["ci_high"]
    assert tb["ci_low"] <= tb["mean"] <= tb["ci_high"]
    assert (tb["ci_high"] - tb["ci_low"]) < (ts["ci_high"] - ts["ci_low"]) / 3


def test_overall_is_mean_over_categories_not_items():
    t = score_table(_frame({"math": [1.0] * 10, "code": [0.0] * 30}), n_boot=N_BOOT).set_index("category")
    assert t.loc["overall", "mean"] == pytest.approx(0.5)
    assert t.loc["overall_items", "mean"] == pytest.approx(0.25)
    assert t.loc["overall", "n"] == 40
    assert list(t.index[:2]) == ["math", "code"]  # paper order


def test_score_table_is_deterministic():
    df = _frame({"math": np.linspace(0, 1, 30)})
    pd.testing.assert_frame_equal(score_table(df, n_boot=N_BOOT, seed=3), score_table(df, n_boot=N_BOOT, seed=3))


def test_paired_bootstrap():
    rng = np.random.default_rng(2)
    a = rng.uniform(0.0, 0.8, 60)
    b = a + 0.1 + rng.normal(0, 0.01, 60)
    df = pd.concat([_frame({"math": a}, "100"), _frame({"math": b}, "1000")])
    ch = scale_changes(df, n_boot=N_BOOT)
    r = ch[ch["category"] == "math"].iloc[0]
    assert (r["from"], r["to"], r["n_pairs"]) == ("100", "1000", 60)
    assert r["diff"] == pytest.approx(0.1, abs=0.01)
    assert r["ci_low"] > 0.09 and r["ci_high"] < 0.11 and r["significant"]
    # unpaired CIs of the two means overlap: pairing is what makes the change visible
    t = score_table(df, n_boot=N_BOOT)
    m = t[t["category"] == "math"].set_index("model")
    assert m.loc["100", "ci_high"] > m.loc["1000", "ci_low"]


def test_trend_labels(trend_study):
    df = load_scores(trend_study, MODELS)
    tr = trend_labels(df, n_boot=N_BOOT).set_index("category")
    assert tr.loc["extraction", "label"] == "improving"
    assert tr.loc["extraction", "slope"] == pytest.approx(0.2, abs=0.03)
    assert tr.loc["math", "label"] == "plateau"
    assert tr.loc["rewrite", "label"] == "declining"
    assert tr.loc["math", "base_mean"] < 0.1  # base reported, not in the slope
    assert tr.loc["extraction", "n_scales"] == 3 and "overall" in tr.index


def test_trend_unknown_with_one_scale(tmp_path):
    scores = {m: {"math": [[0.5], [0.6]]} for m in ["base", "100"]}
    df = load_scores(build_study(tmp_path / "s", scores), ["base", "100"])
    tr = trend_labels(df, n_boot=N_BOOT).set_index("category")
    assert tr.loc["math", "label"] == "unknown"
    pc = claims_comparison(chain_boot(df, ["base", "100"], N_BOOT, 0), ["base", "100"], tr.reset_index())
    assert pc.set_index("category").loc["math", "verdict"] == "cannot tell"


def test_judge_spread(trend_study, tmp_path):
    df = load_scores(trend_study, MODELS)
    sp = judge_spread(df).set_index("category")
    assert sp.loc["math", "runs"] == 3 and sp.loc["math", "n_items"] > 0
    assert 0 < sp.loc["math", "mean_std"] < 0.1
    one = load_scores(build_study(tmp_path / "one", {m: {"math": [[0.5], [1.0]]} for m in MODELS}), MODELS)
    sp1 = judge_spread(one).set_index("category")
    assert sp1.loc["math", "n_items"] == 0 and math.isnan(sp1.loc["math", "mean_std"])
    assert math.isnan(sp1.loc["math", "share_disagree"])
    df2 = pd.DataFrame({"model": "100", "examples": 100, "id": ["a"] * 3 + ["b"] * 3, "category": "math",
                        "run": [0, 1, 2] * 2, "score": [0.5, 0.5, 0.5, 0.2, 0.5, 0.5]})
    assert judge_spread(df2).set_index("category").loc["math", "share_disagree"] == 0.5


def test_paper_comparison_missing_category():
    pc = claims_comparison({}, MODELS, pd.DataFrame(columns=["category", "label"]))
    assert len(pc) == 12 and (pc["verdict"] == "cannot tell").all()
    assert (pc["reason"] == "not in this study's eval set").all()


def test_lowest_items(tmp_path):
    scores = {m: {"math": [[0.9], [0.1], [0.5], [np.nan]], "code": [[0.3], [0.2]]} for m in MODELS}
    d = build_study(tmp_path / "s", scores, answers={("10000", "math-1"): "<b>worst</b>"})
    df = load_scores(d, MODELS)
    from helpers.study.files import read_jsonl
    low = lowest_items(df, load_answers(d, MODELS), read_jsonl(d / "eval.jsonl"), "10000", k=2)
    math_rows = low[low["category"] == "math"]
    assert math_rows["id"].tolist() == ["math-1", "math-2"]
    r = math_rows.iloc[0]
    assert r["answer"] == "<b>worst</b>" and r["base_answer"] == "answer of base to math-1"
    assert r["question"] == "Q math 1" and r["reference"] == "R math 1" and "judge says" in r["rationale"]
    assert len(low[low["category"] == "code"]) == 2


def test_write_results(trend_study):
    res = write_results(trend_study, ["10000", "base", "100", "1000"], n_boot=N_BOOT)
    csv = pd.read_csv(trend_study / "results.csv")
    assert list(csv.columns) == ["category", "model", "examples", "mean", "ci_low", "ci_high", "n", "n_null"]
    assert {"overall", "overall_items"} <= set(csv["category"])
    text = (trend_study / "results.json").read_text()
    assert "NaN" not in text
    js = json.loads(text)
    for key in ["table", "overall", "trends", "paper_comparison", "judge_spread", "changes", "judges",
                "null_counts", "error_analysis", "lowest_items", "settings", "models", "headline", "curves",
                "findings"]:
        assert key in js, key
    assert js["models"] == MODELS and js["judges"]["all"] == ["llm"]
    assert js["error_analysis"]["model"] == "10000" and len(js["lowest_items"]) == 9
    pt = pretty_table(js["table"])
    assert pt.index[-2:].tolist() == ["Overall", "Overall (per item)"] and pt.columns[0] == "base (0)"
    assert pt.loc["Extraction", "100"].count("[") == 1
    assert res["null_counts"]["total"] == 0
    assert not [p for p in trend_study.iterdir() if p.name.endswith(".tmp")]


def test_findings_name_what_keeps_improving_what_is_flat_and_the_paper(trend_study):
    res = write_results(trend_study, MODELS, n_boot=N_BOOT)
    curves = {c["category"]: c for c in res["curves"]}
    assert curves["extraction"]["form"] == "log-linear" and curves["extraction"]["forecast_examples"] == 100_000
    assert curves["math"]["verdict"] == "cannot tell" and curves["overall"]["n_scales"] == 3
    text = "\n".join(res["findings"])
    assert res["findings"][0].startswith("Overall (mean over use cases)")
    improving = next(t for t in res["findings"] if t.startswith("Keep improving"))
    assert "Extraction (+0.20 [" in improving and "Math" not in improving
    assert next(t for t in res["findings"] if t.startswith("Flat")).count("Math (") == 1
    assert next(t for t in res["findings"] if t.startswith("Decline")).startswith("Decline with more data") \
        and "Rewrite" in text
    assert "Agrees with the paper's claims on 1 of 3 use cases: keeps improving up to the largest scale \u2014 Extraction" in text
    # the paper's math (rises up to 1M) and rewrite (up to 0.6M) name scales this study lacks (shares 0.01/0.1/1)
    assert "Cannot tell against the paper's claims on 2: Math (no scale of this study stands for the paper's 1M" in text
    assert "Disagrees with the paper's claims" not in text
    shape = next(t for t in res["findings"] if "move the same way as in the paper" in t)
    assert shape.startswith("1 of 3 use cases move the same way") and "Extraction (paper 0.691" in shape
    assert "Not the same way: Rewrite (paper 0.834 \u2192 0.872 (+0.038); ours 0.78 \u2192 0.38" in shape
    assert "Cannot tell (1, our interval includes 0): Math" in shape
    assert "Not compared with the paper (no trend here): Code, COT, Classification" in text  # not in the eval set


def test_findings_in_a_strategy_grid_start_with_the_strategy():
    from helpers.analysis.findings import findings
    trend = {"category": "math", "slope": 0.3, "ci_low": 0.2, "ci_high": 0.4, "label": "improving"}
    res = {"trends": [{"strategy": st, **trend} for st in ("random", "quality")], "curves": [], "paper_comparison": []}
    assert [t.split(":")[0] for t in findings(res)] == ["random", "quality"]
    assert all("Keep improving with more data" in t and "Math (+0.30 [+0.20, +0.40])" in t for t in findings(res))


def _is_png(p: Path) -> bool:
    return p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_figures(trend_study, tmp_path):
    res = write_results(trend_study, MODELS, n_boot=N_BOOT)
    out = all_figures(trend_study, res, read_json(trend_study / "data_stats.json"), tmp_path / "figs")
    assert set(out) == {"figure1", "score_curves", "curve_fits", "composition", "loss_curves", "judge_spread",
                        "paper_vs_ours"}
    for p in out.values():
        assert _is_png(Path(p)), p
    assert not [p for p in (tmp_path / "figs").iterdir() if p.name.endswith(".tmp")]
    # one run only, and a scale without a training log: still valid figures
    sp = judge_spread(pd.DataFrame({"model": "100", "examples": 100, "id": ["a"], "category": "math",
                                      "run": [0], "score": [0.5]}))
    assert _is_png(figures.judge_spread(sp, tmp_path / "one.png"))
    assert _is_png(loss_curves(trend_study, SCALES + ["20000"], tmp_path / "loss.png"))


def test_bar_charts_start_at_zero_and_the_paper_is_drawn_as_points_on_an_axis_named_for_it(trend_study, tmp_path,
                                                                                           monkeypatch):
    """A bar's length shows its value only on an axis that includes 0: every bar chart of the report is checked on
    its matplotlib Axes. The paper comparison puts the paper's scores and ours on two axes scaled to their own data
    (shapes, not levels), so there the paper's scores are points, and each axis is labelled with whose it is."""
    from matplotlib.container import BarContainer

    from helpers.analysis.paper import load_figure1
    from helpers.study import plots

    drawn, save = {}, plots.save_png

    def keep(fig, path):
        drawn[Path(path).stem] = fig
        return save(fig, path)

    monkeypatch.setattr(figures, "save_png", keep)
    monkeypatch.setattr(plots, "save_png", keep)
    res = write_results(trend_study, MODELS, n_boot=N_BOOT)
    all_figures(trend_study, res, read_json(trend_study / "data_stats.json"), tmp_path / "figs")
    with_bars = set()
    for name, fig in drawn.items():
        for ax in fig.axes:
            bases = []
            for bars in (c for c in ax.containers if isinstance(c, BarContainer)):
                lo, hi = ax.get_ylim() if bars.orientation == "vertical" else ax.get_xlim()
                assert lo <= 0 <= hi, f"{name}: a bar chart's value axis runs {lo:.3f}..{hi:.3f}, without 0"
                bases += [r.get_y() if bars.orientation == "vertical" else r.get_x() for r in bars.patches]
                with_bars.add(name)
            assert not bases or min(bases) == 0, f"{name}: bars (or stacks) that do not stand on 0"
    assert with_bars == {"figure1", "composition", "judge_spread"}  # the three bar charts were checked

    fig, paper = drawn["paper_vs_ours"], load_figure1()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_ylabel() for ax in panels] == ["paper"] * len(panels) and len(panels) == 4  # 3 use cases, Overall
    assert sorted(ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()) == ["paper"] * 4 + ["this study"] * 4
    math_panel = next(ax for ax in panels if ax.get_title() == "Math")
    points = [ln for ln in math_panel.get_lines() if ln.get_marker() == "s"]
    assert len(points) == 1 and np.allclose(points[0].get_ydata(), paper["scores"]["math"])
    lo, hi = math_panel.get_ylim()
    assert lo > 0.2 and lo <= min(paper["scores"]["math"]) and hi >= max(paper["scores"]["math"])  # zoomed: points


def test_model_palette_consistent():
    a = model_palette(MODELS)
    b = model_palette(SCALES)
    assert all(a[m] == b[m] for m in SCALES) and a["base"] == BASE_COLOR
    assert len(set(a.values())) == len(MODELS)
