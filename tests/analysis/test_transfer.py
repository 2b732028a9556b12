"""The transfer matrix: mixture models against the full mixture from a fake judge's scores, with effects planted
where the answer is known (and none elsewhere), through results.json, the findings, the figure and the report."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from helpers.analysis.figures import transfer_matrix
from helpers.analysis.report import build_report
from helpers.analysis.stage import write_results
from helpers.analysis.transfer import items_needed, mixture_kind, study_mixture, transfer_cells
from helpers.study.categories import CATEGORIES
from helpers.study.files import read_json, write_json, write_jsonl
from helpers.study.order import OVERALL

REFERENCE = "192"
LOO = [f"mix-without-{c}" for c in CATEGORIES]


def judged_mixture_study(sd, planted: dict[tuple[str, str], float], n_items=30, noise=0.08, seed=0,
                         extra=(), same=()):
    """A judged study folder: base, the full mixture ``192`` and a model per ``LOO`` + ``extra``, one judge run.

    Every item has its own difficulty; every model adds its own noise per item (sd ``noise``); ``planted[(model,
    eval use case)]`` shifts that model's scores on that use case's items. Nothing else differs between models."""
    rng = np.random.default_rng(seed)
    models = ["base", REFERENCE, *LOO, *extra]
    ev = [{"id": f"{c}-{i}", "category": c, "question": f"Q {c} {i}", "reference": "R", "check": None}
          for c in CATEGORIES for i in range(n_items)]
    write_jsonl(sd / "eval.jsonl", ev)
    level = {e["id"]: rng.uniform(0.3, 0.7) for e in ev}
    for m in models:
        rows, answers = [], []
        for e in ev:
            shift = -0.25 if m == "base" else planted.get((m, e["category"]), 0.0)
            score = float(np.clip(level[e["id"]] + shift + rng.normal(0, noise), 0, 1))
            rows.append({"id": e["id"], "run": 0, "score": score, "raw": "r", "judge": "offline", "usage": {}})
            answers.append({"id": e["id"], "category": e["category"], "answer": f"answer of {m}"})
        write_jsonl(sd / "judgments" / f"{m}.jsonl", rows)
        write_jsonl(sd / "answers" / f"{m}.jsonl", answers)
    counts = {c: 16 for c in CATEGORIES}
    write_json(sd / "data_stats.json", {
        "subsets": {m: {"n": 192, "categories": counts} for m in models if m != "base"},
        "mixtures": {"reference": REFERENCE,
                     "models": {m: {"examples": 192, "same_as_reference": m in same} for m in models[2:]}}})
    return models


def cells_of(res):
    return {(r["model"], r["category"]): r for r in res["mixture"]["cells"]}


def test_a_planted_transfer_is_found_and_the_null_cells_are_not(tmp_path):
    planted = {("mix-without-math", "math"): -0.30,        # a use case's own data (the diagonal)
               ("mix-without-math", "code"): -0.20,        # transfer: math data helps code
               ("mix-without-translation", "translation"): -0.25,
               ("mix-without-translation", "rewrite"): +0.20}  # interference: translation data hurts rewrite
    models = judged_mixture_study(tmp_path, planted)
    res = write_results(tmp_path, models, n_boot=400)
    assert res["models"] == ["base", "192"]  # the scale chain: the mixtures are analysed against the full mixture
    cells = cells_of(res)
    assert len([r for r in res["mixture"]["cells"] if r["category"] != OVERALL]) == 12 * 12
    for (m, c), shift in planted.items():
        r = cells[(m, c)]
        assert r["significant"] and r["ci_low"] < shift < r["ci_high"] and r["items_needed"] is None, (m, c, r)
        assert r["diagonal"] == (c == m.removeprefix("mix-without-"))
    found = {key for key, r in cells.items() if r["significant"] and key[1] != OVERALL}
    assert found == set(planted)  # nothing else: 140 null cells, none marked
    null = cells[("mix-without-code", "math")]
    assert not null["significant"] and null["ci_low"] < 0 < null["ci_high"] and null["items_needed"] > 30
    assert res["mixture"]["families"] == {"diagonal": 12, "off-diagonal": 132}

    text = "\n".join(res["findings"])
    assert re.search(r"Without Math data \(192 examples, the other use cases refilled\), Math falls by 0\.(2[5-9]|3)"
                     r".*; also moving: Code -0\.(1[5-9]|2)", text)
    assert "Transfer: Math data helps Code; without it Code falls by 0." in text
    assert "Interference: Translation data hurts Rewrite; without it Rewrite rises by 0." in text
    assert "The other 130 off-diagonal cells show no significant change" in text
    # the ten use cases without a planted diagonal: a settled null (interval within +-0.05) or too wide to tell
    nulls = " ".join(s for s in res["findings"] if s.startswith(("No difference beyond \u00b10.05",
                                                                  "Cannot separate the effect")))
    assert "Math " not in nulls and "Translation " not in nulls
    assert all(f"{name} " in nulls for name in ("Code", "COT", "Open QA", "Closed QA", "Summarization"))
    assert read_json(tmp_path / "results.json")["mixture"]["reference"] == "192"
    csv = (tmp_path / "results.csv").read_text()
    assert "mix-without-math" in csv and ",192," in csv  # every model's scores in the tidy table


def test_a_study_with_nothing_planted_finds_no_transfer_and_says_how_many_items_would(tmp_path):
    """Wide intervals (few items, a noisy judge): nothing found, and how many items would tell; narrow ones: the
    changes ruled out."""
    models = judged_mixture_study(tmp_path / "wide", {}, n_items=12, noise=0.2, seed=1)
    res = write_results(tmp_path / "wide", models, n_boot=300)
    assert not [r for r in res["mixture"]["cells"] if r["significant"] and r["category"] != OVERALL]
    text = "\n".join(res["findings"])
    assert "No transfer or interference between use cases is separable here: none of the 132 off-diagonal cells" in text
    needed = re.search(r"with 12 items per use case, and about ([\d,]+) items per use case would tell a change of "
                       r"0.05 \(the median cell\) from none", text)
    off = [r for r in res["mixture"]["cells"] if r["category"] != OVERALL and not r["diagonal"]]
    half = float(np.median([(r["ci_high"] - r["ci_low"]) / 2 for r in off]))
    assert needed and int(needed[1].replace(",", "")) == math.ceil(12 * (half / 0.05) ** 2) > 12
    assert "Cannot separate the effect of a use case's own data" in text and "Transfer:" not in text
    assert res["findings"][0].startswith(("No difference beyond", "Cannot separate"))  # the mixture axis first

    judged_mixture_study(tmp_path / "narrow", {}, n_items=40, noise=0.03, seed=1)
    res = write_results(tmp_path / "narrow", models, n_boot=300)
    text = "\n".join(res["findings"])
    assert re.search(r"none of the 132 off-diagonal cells is significant at a 5% false discovery rate; their "
                     r"intervals are about \u00b10.0\d wide, so any change there is smaller than that", text)
    assert "No difference beyond \u00b10.05 from a use case's own data" in text and "Cannot separate" not in text


def test_a_plain_95_percent_interval_would_have_marked_null_cells_that_the_false_discovery_rate_does_not(tmp_path):
    """Why the matrix controls the false discovery rate: over 132 null cells some intervals exclude 0 by chance."""
    models = judged_mixture_study(tmp_path, {}, n_items=20, noise=0.15, seed=7)
    res = write_results(tmp_path, models, n_boot=300)
    off = [r for r in res["mixture"]["cells"] if r["category"] != OVERALL and not r["diagonal"]]
    by_chance = [r for r in off if r["ci_low"] > 0 or r["ci_high"] < 0]
    assert by_chance and not [r for r in off if r["significant"]]


def test_other_mixtures_and_ones_equal_to_the_full_mixture(tmp_path):
    planted = {("mix-only-math", "math"): 0.2, ("mix-only-math", "translation"): -0.3}
    models = judged_mixture_study(tmp_path, planted, extra=("mix-only-math",), same=("mix-without-code",))
    res = write_results(tmp_path, models, n_boot=300)
    cells = cells_of(res)
    assert cells[("mix-only-math", "math")]["significant"] and not cells[("mix-only-math", "math")]["diagonal"]
    assert res["mixture"]["families"]["mix-only-math"] == 12
    assert not any(r["significant"] for (m, _), r in cells.items() if m == "mix-without-code")
    text = "\n".join(res["findings"])
    assert "mix-only-math (only Math, 192 examples) against the full mixture 192: significant changes in Math +0.2" in text
    assert "mix-without-code: the same items as the full mixture" in text and "0 by construction" in text


def test_without_mixture_models_or_the_full_mixture_there_is_no_matrix(tmp_path):
    models = judged_mixture_study(tmp_path, {})
    res = write_results(tmp_path, models[:2], n_boot=50)
    assert res["mixture"] == {}
    (tmp_path / "judgments" / "192.jsonl").rename(tmp_path / "judgments" / "192.later")
    assert study_mixture(tmp_path, LOO, n_boot=50) == {
        "note": "the full mixture 192 is not judged yet, so no mixture can be set against it"}


def test_the_figure_and_the_report_section(tmp_path):
    planted = {("mix-without-math", "math"): -0.3, ("mix-without-math", "code"): -0.2}
    sd = tmp_path / "study"
    models = judged_mixture_study(sd, planted)
    res = write_results(sd, models, n_boot=200)
    png = transfer_matrix(res["mixture"], sd / "figures" / "transfer_matrix.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = build_report(sd, tmp_path / "report", "mixture", [], {}, {}).read_text(encoding="utf-8")
    assert "Which data: the transfer matrix" in page and 'src="figures/transfer_matrix.png"' in page
    assert "Transfer: Math data helps Code" in page and "<td>without Math</td>" in page
    assert (tmp_path / "report" / "figures" / "transfer_matrix.png").exists()

    plain = tmp_path / "plain"
    judged_mixture_study(plain, {})
    write_results(plain, ["base", "192"], n_boot=50)
    page = build_report(plain, tmp_path / "report2", "plain", [], {}, {}).read_text(encoding="utf-8")
    assert "<b>Which data: the transfer matrix</b>: left out" in page and "data.mixture" in page


def test_cells_read_the_names_and_plan_items():
    assert mixture_kind("mix-without-closed_qa") == ("without", "closed_qa")
    assert mixture_kind("mix-only_math") == ("weights", None)
    assert items_needed(30, -0.1, 0.1, 0.0) == 120  # planned for a change of 0.05: (0.1 / 0.05)**2 x 30
    assert items_needed(30, 0.0, 0.0, 0.0) is None  # no spread: more of the same items would not tell
    assert items_needed(30, -0.01, 0.19, 0.09) == 38  # (0.10 / 0.09)**2 x 30 = 37.04
    assert items_needed(30, -0.01, 0.09, 0.09) == 31  # already narrow enough (false discovery rate): one more


@pytest.mark.parametrize("n_items", [2, 5])
def test_few_items_give_wide_intervals_and_no_mark(tmp_path, n_items):
    models = judged_mixture_study(tmp_path, {("mix-without-math", "math"): -0.1}, n_items=n_items)
    from helpers.analysis.scores import load_scores

    df = load_scores(tmp_path, models[1:], examples={m: 192 for m in models[2:]})
    cells = transfer_cells(df, REFERENCE, LOO, n_boot=200)
    assert not cells[cells["category"] != OVERALL]["significant"].any()
