"""What would close each open verdict: the items a use case computed from the bootstrap interval (analysis.items_needed).

Closed-form cases first (an interval of known spread, a planted effect through the real bootstrap), then the
rule of each verdict, then the forecast held against the verdicts themselves: items replicated to the forecast
number decide, to well under it do not."""
from __future__ import annotations

import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from builders import PAPER_MODELS, paper_shares_study

from helpers.analysis import items_needed as N
from helpers.analysis import paper as P
from helpers.analysis.bootstrap import boot_means, percentile_ci
from helpers.analysis.curves import FLAT, LOGLINEAR, fit_loglinear, predict, select_form
from helpers.analysis.report import build_report
from helpers.analysis.scores import load_scores
from helpers.analysis.stage import pretty_table, write_results
from helpers.analysis.trends import trend_labels
from helpers.study.files import read_json, write_json

Z = 1.959964


def _closed_form(n_now, gap, room):
    """The smallest item count strictly past ``n_now * (gap / room) ** 2``, rounded up to a multiple of 10."""
    return math.ceil((math.floor(n_now * (gap / room) ** 2) + 1) / N.STEP) * N.STEP


def _change(stat):
    return N._change_outcomes(stat, "a rise", "a fall")


def test_an_effect_of_known_spread_needs_the_items_the_closed_form_gives():
    # -0.03 with a standard error of 0.03 at 30 items: the upper bound -0.03 + 1.96 * 0.03 * sqrt(30 / n) < 0
    stat = N.Stat("change", -0.03, -0.03 - Z * 0.03, -0.03 + Z * 0.03)
    got = N.needed(_change(stat), 30)
    assert got["needed"] == _closed_form(30, Z * 0.03, 0.03) == 120 and got["outcome"] == "a fall"
    # an asymmetric interval: the side facing 0 decides, scaled by itself
    stat = N.Stat("rise", 0.08, -0.02, 0.30)
    assert N.needed(_change(stat), 40)["needed"] == _closed_form(40, 0.10, 0.08) == 70


def test_a_planted_effect_through_the_real_bootstrap_needs_what_the_normal_closed_form_gives():
    rng = np.random.default_rng(0)
    n_now, effect, sd = 40, -0.03, 0.2
    d = rng.normal(0, 1, n_now)
    d = effect + sd * (d - d.mean()) / d.std()  # exactly the planted mean and (population) spread
    lo, hi = percentile_ci(boot_means(d, 20_000, np.random.default_rng(1)))
    got = N.needed(_change(N.Stat("change", float(d.mean()), lo, hi)), n_now)
    expected = (Z * sd / abs(effect)) ** 2  # the bootstrap's standard error at n items is sd / sqrt(n)
    assert got["outcome"] == "a fall" and abs(got["needed"] - expected) <= 0.08 * expected + N.STEP, (got, expected)


def test_a_zero_effect_gets_the_bound_within_005():
    stat = N.Stat("change", 0.0, -0.08, 0.08)
    got = N.needed(_change(stat), 30)
    assert got["needed"] == _closed_form(30, 0.08, N.BOUND) == 80 and got["outcome"] == "within \u00b10.05"
    # an effect nearer 0 than 0.025 is bounded sooner than it is told from 0; one beyond it the other way round
    assert N.needed(_change(N.Stat("c", 0.02, -0.06, 0.10)), 30)["outcome"] == "within \u00b10.05"
    assert N.needed(_change(N.Stat("c", 0.03, -0.05, 0.11)), 30)["outcome"] == "a rise"


def test_a_decided_effect_gets_no_number_and_no_row():
    assert N.needed(_change(N.Stat("change", 0.1, 0.02, 0.18)), 30) == {
        "needed": None, "outcome": "a rise", "more_than": None, "note": "already decided"}
    decided = {"category": "math", "verdict": "log-linear", "n_scales": 4, "rise": 0.1, "rise_ci_low": 0.02,
               "rise_ci_high": 0.18, "examples": [64, 640]}
    res = {"curves": [decided], "trends": [{"category": "math", "n_items": 30, "slope": 0.1}]}
    assert N.open_verdicts(res) == []


def test_a_tiny_effect_is_capped_and_no_spread_or_too_few_scales_give_no_number():
    got = N.needed(_change(N.Stat("change", 0.025, -0.475, 0.525)), 30)  # 12,000 items either way
    assert got["needed"] is None and got["more_than"] == 10_000 and "too small to decide" in got["note"]
    flat = N.needed(_change(N.Stat("change", 0.0, 0.0, 0.0)), 1)  # one item a use case: nothing to scale
    assert flat["needed"] is None and flat["note"].startswith("no spread to scale")
    res = {"curves": [{"category": "math", "verdict": "cannot tell", "n_scales": 2, "examples": [4, 12]}],
           "trends": [{"category": "math", "n_items": 1, "slope": 0.0}]}
    row, = N.open_verdicts(res)
    assert row["needed"] is None and "a curve needs 3" in row["note"]
    assert N.sentences([row, {**row, "name": "Code"}]) == [
        "Open verdicts that more eval items would not close: the scaling curve of Math, Code (2 trained scale(s): a "
        "curve needs 3, more items do not add scales)."]


def test_where_the_flat_line_won_the_curve_needs_the_items_at_which_the_line_would_beat_it():
    """The means keep their fitted line and stray from it by sqrt(n_now / n): at the number, curves.select_form (the
    real rule) picks a curve; just under it, still the flat line."""
    ex = np.array([64, 192, 320, 640.0])
    means = 0.4 + 0.05 * np.log10(ex / 64) + np.array([0.02, -0.04, 0.04, -0.01])
    fitted = predict(LOGLINEAR, fit_loglinear(ex, means), ex, 640)
    assert select_form(ex, means, np.empty((0, 4)), 640)["form"] == FLAT
    n = N.BeatsFlat(tuple(ex), tuple(means)).items(30)
    for at, form in ((1.02 * n, LOGLINEAR), (n / 1.02, FLAT)):
        assert select_form(ex, fitted + (means - fitted) * math.sqrt(30 / at), np.empty((0, 4)), 640)["form"] == form
    curve = {"category": "math", "verdict": "cannot tell", "n_scales": 4, "examples": [64, 192, 320, 640],
             "means": means.tolist(), "rise": None}
    trend = {"category": "math", "n_items": 30, "slope": 0.05, "ci_low": 0.01, "ci_high": 0.09}  # already excludes 0
    row, = N.open_verdicts({"curves": [curve], "trends": [trend]})
    assert row["needed"] == math.ceil(n / N.STEP) * N.STEP and row["outcome"] == "a rise"
    assert row["statistic"] == "rise of the straight line in log n from 64 to 640 examples +0.050 [+0.010, +0.090]"


def test_each_claim_is_decided_by_its_own_rule_in_its_order():
    def claim(cat, name, eff, after=None):
        row = {"category": cat, "verdict": "cannot tell", "effect_name": name, "effect": eff[0],
               "effect_ci_low": eff[1], "effect_ci_high": eff[2], "after": None}
        if after:
            row.update(after=after[0], after_ci_low=after[1], after_ci_high=after[2])
        return row

    trends = [{"category": c, "n_items": 30} for c in ("open_qa", "math", "translation")]
    res = {"trends": trends, "settings": {"improve": 0.02, "flat_tol": 0.1}, "paper_comparison": [
        # improving, slope +0.05 [-0.02, +0.12]: its upper bound drops below 0.1 (60 items) before its lower bound
        # passes 0.02 (170), so the verdict reached is "disagrees"
        claim("open_qa", "slope per tenfold data", (0.05, -0.02, 0.12)),
        # rises until 1M: up +0.10 [0.00, +0.20] and after +0.02 [-0.05, +0.15] agree at 80 (after < 0.1 decides)
        claim("math", "change up to share 0.5", (0.10, 0.0, 0.20), (0.02, -0.05, 0.15)),
        # good early: +0.04 [-0.03, +0.12] has its upper bound below 0.1 at 60, its lower above 0 only at 100
        claim("translation", "change from the smallest to the largest scale", (0.04, -0.03, 0.12))]}
    rows = {r["category"]: r for r in N.open_verdicts(res)}
    assert (rows["open_qa"]["needed"], rows["open_qa"]["outcome"]) == (_closed_form(30, 0.07, 0.05), "disagrees")
    assert rows["open_qa"]["needed"] == 60 and _closed_form(30, 0.07, 0.03) == 170
    assert (rows["math"]["needed"], rows["math"]["outcome"]) == (_closed_form(30, 0.13, 0.08), "agrees") == (80, "agrees")
    assert (rows["translation"]["needed"], rows["translation"]["outcome"]) == (_closed_form(30, 0.08, 0.06), "agrees")
    text = " ".join(N.sentences(list(rows.values())))
    assert "Math: 80 items a use case would decide the paper's claim at the observed change up to share 0.5 " \
           "+0.100 and after it +0.020 (it would agree)" in text
    assert "data.eval_per_category: 80 would decide all of them." in text


def _replicated(df: pd.DataFrame, k: int) -> pd.DataFrame:
    """Every item ``k`` times under new ids: the same means, the bootstrap's spread 1/sqrt(k) as wide."""
    return pd.concat([df.assign(id=df["id"] + f"~{j}") for j in range(k)], ignore_index=True)


def _verdicts(df, n_boot=1000):
    trends = trend_labels(df, n_boot=n_boot, seed=0)
    boots = P.chain_boot(df, PAPER_MODELS, n_boot, 0)
    claims = P.claims_comparison(boots, PAPER_MODELS, trends)
    shapes = P.shape_agreement(boots, PAPER_MODELS)
    records = {k: v.astype(object).where(v.notna(), None).to_dict("records")
               for k, v in {"trends": trends, "paper_comparison": claims, "paper_shapes": shapes}.items()}
    return records | {"settings": {"improve": 0.02, "flat_tol": 0.1}}


@pytest.mark.parametrize("seed", [0, 2])
def test_items_replicated_to_the_forecast_decide_and_half_as_many_do_not(tmp_path, seed):
    """Each number is held against the verdict it forecasts, recomputed by paper.py on the items replicated: the
    means stay, the bootstrap narrows as 1/sqrt(items). Seed 0 and 2 give claims that would agree and disagree,
    shapes that would rise and that would be bounded within +-0.05, from 40 to 660 items a use case."""
    levels = {"open_qa": [0.40, 0.42, 0.43, 0.45], "math": [0.30, 0.33, 0.35, 0.36],
              "brainstorming": [0.60, 0.60, 0.61, 0.61], "rewrite": [0.50, 0.53, 0.53, 0.54]}
    df = load_scores(paper_shares_study(tmp_path / "s", levels, n_items=30, sd=0.2, seed=seed), PAPER_MODELS)
    rows = [r for r in N.open_verdicts(_verdicts(df)) if r["needed"] is not None]
    assert {r["verdict"] for r in rows} == {N.CLAIM, N.SHAPE} and len(rows) == 4, rows

    def decided(r, items):
        got = _verdicts(_replicated(df, items // 30))
        v = next(v for v in got["paper_comparison" if r["verdict"] == N.CLAIM else "paper_shapes"]
                 if v["category"] == r["category"])
        if r["outcome"] == N.WITHIN:
            return -N.BOUND < v["ci_low"] and v["ci_high"] < N.BOUND
        return v["verdict"] == r["outcome"] if r["verdict"] == N.CLAIM else v["verdict"] != "cannot tell"

    for r in rows:
        assert decided(r, math.ceil(1.3 * r["needed"] / 30) * 30), r
        if r["needed"] >= 120:
            assert not decided(r, r["needed"] // 2 // 30 * 30), r


class _Cells(HTMLParser):
    """The text of each row's cells in a piece of HTML: [[cell, ...], ...]."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(" ".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _score_rows(html: str) -> dict[str, list[str]]:
    """The scores table of a report: {use case: the text of its other cells}."""
    p = _Cells()
    p.feed(html[html.index("<h2>Scores per use case</h2>"):html.index("<h2>Scaling curves")])
    return {row[0]: row[1:] for row in p.rows[1:]}


def test_the_scores_table_keeps_n_per_cell_and_gives_each_open_use_case_its_items(tmp_path):
    levels = {"open_qa": [0.40, 0.42, 0.43, 0.45], "math": [0.30, 0.33, 0.35, 0.36], "extraction": [0.2, 0.5, 0.7, 0.9]}
    root = paper_shares_study(tmp_path / "s", levels, n_items=30, sd=0.2, seed=2)
    res = write_results(root, PAPER_MODELS, n_boot=100)
    html = build_report(root, tmp_path / "report", "s", [], {}, {}).read_text(encoding="utf-8")
    assert "Items a use case to decide" in html and "data.eval_per_category" in html
    rows, per = _score_rows(html), N.per_use_case(res["items_needed"])
    assert set(per) == {"open_qa", "math"}, per  # extraction and overall: every verdict decided
    for cat, name in (("open_qa", "Open QA"), ("math", "Math"), ("extraction", "Extraction"), ("overall", "Overall")):
        cells = rows[name]
        n = 90 if cat == "overall" else 30
        assert len(cells) == len(PAPER_MODELS) + 1 and all(c.endswith(f"n={n}") for c in cells[:-1]), cells
        if cat in per:
            head = f"{per[cat]['needed']:,}" if per[cat]["needed"] else "\u2013"
            assert cells[-1] == f"{head} {'; '.join(per[cat]['parts'])}", cells[-1]
        else:
            assert cells[-1] == "decided"
    assert rows["Overall (per item)"][-1] == ""
    pt = pretty_table(res["table"], res["items_needed"])  # the notebook's table says the same
    assert pt.loc["Math", "items a use case to decide"] == f"{per['math']['needed']:,} ({'; '.join(per['math']['parts'])})"
    assert pt.loc["Extraction", "items a use case to decide"] == "decided" and pt.loc["Math", "100"].endswith(" n=30")
    assert any(t.startswith("More eval items would close these open verdicts") for t in res["findings"])
    old = {k: v for k, v in res.items() if k != "items_needed"}  # results.json of an earlier analysis: no column
    write_json(root / "results.json", old)
    html = build_report(root, tmp_path / "report", "s", [], {}, {}).read_text(encoding="utf-8")
    assert "Items a use case to decide" not in html
    assert len(_score_rows(html)["Math"]) == len(PAPER_MODELS) and _score_rows(html)["Math"][-1].endswith("n=30")


def test_the_micro_study_says_what_would_close_its_open_verdicts(micro_study):
    """One item a use case and two scales: nothing for more items to scale from, and the findings and the report's
    column say so rather than give a number."""
    root, index, _ = micro_study
    res = read_json(root / "data" / "micro" / "results.json")
    rows = res["items_needed"]
    curves = [r for r in rows if r["verdict"] == N.CURVE]
    assert len(curves) == 13 and all(r["needed"] is None and "a curve needs 3" in r["note"] for r in curves)
    assert all(r["needed"] is None for r in rows), rows  # one item a use case: no spread to scale
    said = next(t for t in res["findings"] if t.startswith("Open verdicts that more eval items would not close"))
    assert "the scaling curve of Math, Code, COT" in said and "more items do not add scales" in said
    html = index.read_text(encoding="utf-8")
    cells = _score_rows(html)
    assert "Items a use case to decide" in html and cells["Math"][-1].startswith("\u2013 curve: not by items")
    assert all("n=1" in c for c in cells["Math"][:-1])
