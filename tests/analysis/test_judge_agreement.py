"""Judges checked against each other: the config (``judge.others``), the agreement figures on hand-made scores,
and a study whose headline judge is the offline judge and whose second judge is an LLM behind the fake
OpenAI-compatible server (tests/fake_openai.py), judged and analysed end to end.

The figures the report shows are checked against values computed here without the module under test:
Spearman's rho as the Pearson correlation of average ranks, Kendall's tau-b by counting pairs.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fake_openai import ENV
from scipy.stats import rankdata

from helpers import judge
from helpers.analysis.agreement import agreement_table, disagreements, paired_scores
from helpers.analysis.report import build_report
from helpers.analysis.stage import write_results
from helpers.data.suite import build_suite
from helpers.judge.llm import JudgeError, cache_path
from helpers.preflight import PreflightFailed, check_study
from helpers.study.config import StudyConfig
from helpers.study.files import read_json, read_jsonl, write_json, write_jsonl
from helpers.study.judges import study_judges
from helpers.study.loading import ConfigError, load_config
from helpers.study.runner import plan

# ------------------------------------------------------------------ figures computed without the module

def spearman(x, y) -> float:
    """Pearson correlation of average ranks (the definition, ties included)."""
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def kendall_tau_b(x, y) -> float:
    """(concordant - discordant) / sqrt((n0 - ties in x) (n0 - ties in y)), counted pair by pair."""
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx == dy:
            c += 1
        else:
            d += 1
    return (c - d) / math.sqrt((c + d + tx) * (c + d + ty))


def long(scores: dict[tuple[str, str, str], list[float | None]]) -> pd.DataFrame:
    """A ``load_scores``-shaped frame from ``{(model, id, category): [score per run]}``."""
    rows = [{"model": m, "examples": 0 if m == "base" else int(m), "id": i, "category": c, "run": r,
             "score": math.nan if s is None else s, "judge": "j", "raw": f"run {r} of {i}"}
            for (m, i, c), runs in scores.items() for r, s in enumerate(runs)]
    return pd.DataFrame(rows)


def row(table: pd.DataFrame, category: str) -> dict:
    return table[table["category"] == category].iloc[0].to_dict()


# ------------------------------------------------------------------ the figures on hand-made scores

def test_identical_scores_agree_perfectly_and_reversed_ones_perfectly_disagree():
    xs = [0.0, 0.2, 0.5, 0.7, 1.0]
    head = long({("base", f"m{i}", "math"): [x] for i, x in enumerate(xs)})
    same = row(agreement_table(paired_scores(head, head)), "math")
    assert same["spearman"] == pytest.approx(1) and same["kendall"] == pytest.approx(1)
    assert same["mad"] == 0 and same["share_apart"] == 0 and same["n"] == 5
    rev = long({("base", f"m{i}", "math"): [1 - x] for i, x in enumerate(xs)})
    opposite = row(agreement_table(paired_scores(head, rev)), "math")
    assert opposite["spearman"] == pytest.approx(-1) and opposite["kendall"] == pytest.approx(-1)
    assert opposite["mad"] == pytest.approx(np.mean([abs(x - (1 - x)) for x in xs]))
    assert opposite["share_apart"] == pytest.approx(4 / 5)  # |1 - 2x| > 0.3 for every x but 0.5


def test_a_worked_example_by_hand():
    """Ranks 1 2 3 4 against 1 3 2 4: rho = 1 - 6 * 2 / (4 * 15) = 0.8; one discordant pair of six:
    tau = 4 / 6; |differences| 0.1 0.4 0.1 0: MAD 0.15, one of four further apart than 0.3."""
    head = long({("base", f"i{k}", "translation"): [x] for k, x in enumerate([0.0, 0.2, 0.5, 1.0])})
    other = long({("base", f"i{k}", "translation"): [x] for k, x in enumerate([0.1, 0.6, 0.4, 1.0])})
    r = row(agreement_table(paired_scores(head, other)), "translation")
    assert r["spearman"] == pytest.approx(0.8) and r["kendall"] == pytest.approx(4 / 6)
    assert r["mad"] == pytest.approx(0.15) and r["share_apart"] == pytest.approx(0.25)
    assert r["mean_headline"] == pytest.approx(0.425) and r["mean_other"] == pytest.approx(0.525)


def test_runs_are_averaged_nulls_left_out_and_counted_ties_handled_by_tau_b():
    head = {("base", "a", "math"): [1.0], ("base", "b", "math"): [1.0], ("base", "c", "math"): [0.0],
            ("10", "a", "math"): [0.0], ("10", "b", "math"): [None], ("10", "c", "math"): [0.5]}
    other = {("base", "a", "math"): [0.9, 0.7], ("base", "b", "math"): [0.2, 0.4], ("base", "c", "math"): [0.1, None],
             ("10", "a", "math"): [0.3, 0.5], ("10", "b", "math"): [0.6, 0.6], ("10", "c", "math"): [None, None]}
    pairs = paired_scores(long(head), long(other))
    r = row(agreement_table(pairs), "math")
    # compared: base/a 1 vs .8, base/b 1 vs .3, base/c 0 vs .1, 10/a 0 vs .4; 10/b (headline null) and
    # 10/c (every run of the other null) are not compared, and counted
    h, o = [1.0, 1.0, 0.0, 0.0], [0.8, 0.3, 0.1, 0.4]
    assert r["n"] == 4 and r["n_null"] == 2
    assert r["spearman"] == pytest.approx(spearman(h, o)) and r["kendall"] == pytest.approx(kendall_tau_b(h, o))
    assert r["mad"] == pytest.approx(np.mean(np.abs(np.subtract(h, o))))
    assert r["share_apart"] == pytest.approx(2 / 4)


def test_a_correlation_is_undefined_not_zero_when_a_judge_gives_one_score_or_too_few_answers():
    head = long({("base", "a", "math"): [1.0], ("base", "b", "math"): [1.0], ("base", "c", "code"): [0.5]})
    other = long({("base", "a", "math"): [0.2], ("base", "b", "math"): [0.9], ("base", "c", "code"): [0.5]})
    t = agreement_table(paired_scores(head, other))
    for cat in ("math", "code"):
        assert math.isnan(row(t, cat)["spearman"]) and math.isnan(row(t, cat)["kendall"])
    assert row(t, "code")["mad"] == 0 and row(t, "math")["mad"] == pytest.approx(0.45)
    overall = row(t, "overall")  # every answer pooled: 1, 1, .5 against .2, .9, .5
    assert overall["n"] == 3 and overall["spearman"] == pytest.approx(spearman([1, 1, .5], [.2, .9, .5]))


def test_the_answers_judges_disagree_on_most_come_first_ties_by_model_order_then_id():
    head = long({("base", "a", "math"): [1.0], ("10", "a", "math"): [1.0], ("100", "a", "math"): [0.5],
                 ("base", "b", "math"): [0.0]})
    other = long({("base", "a", "math"): [0.4], ("10", "a", "math"): [0.4], ("100", "a", "math"): [0.5],
                  ("base", "b", "math"): [0.9]})
    ev = [{"id": "a", "category": "math", "question": "Q a"}, {"id": "b", "category": "math", "question": "Q b"}]
    answers = {"base": {"a": {"answer": "A base a"}, "b": {"answer": "A base b"}}, "10": {"a": {"answer": "A 10 a"}}}
    worst = disagreements(paired_scores(head, other), head, other, ev, answers, k=3)
    assert list(zip(worst["model"], worst["id"])) == [("base", "b"), ("base", "a"), ("10", "a")]
    first = worst.iloc[0]
    assert (first["question"], first["answer"], first["headline"], first["other"]) == ("Q b", "A base b", 0.0, 0.9)
    assert first["headline_raw"] == "run 0 of b"


# ------------------------------------------------------------------ the config

BASE = {"study": "agree", "scales": [4], "data": {"pool_size": 10}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("study: agree\nscales: [4]\ndata: {pool_size: 10}\n" + text, encoding="utf-8")
    return path


def test_a_config_without_others_has_one_judge_with_todays_files(tmp_path):
    cfg = load_config("configs/default.yaml")
    (only,) = study_judges(cfg)
    assert only.headline and only.name == "offline" and only.section == "judge"
    assert only.judgments(tmp_path, "640") == tmp_path / "judgments" / "640.jsonl"
    judging = [r for r in plan(cfg, tmp_path) if r.stage.name == "judge"]
    assert [r.outputs for r in judging] == [[tmp_path / "judgments" / f"{m}.jsonl"] for m in cfg.models]


def test_other_judges_get_their_own_files_cache_and_plan_entries(tmp_path):
    cfg = StudyConfig.model_validate({**BASE, "judge": {"kind": "offline", "others": {
        "gpt": {"kind": "openai", "model": "gpt-4o-mini", "prompts_file": "configs/judge_prompts.jsonl"},
        "qwen": {"kind": "openai", "model": "gpt-4o-mini", "temperature": 0.7}}}})
    head, gpt, qwen = study_judges(cfg)
    assert (head.name, gpt.name, qwen.name) == ("offline", "gpt", "qwen")
    assert gpt.section == "judge.others.gpt" and not gpt.headline
    assert gpt.judgments(tmp_path, "base") == tmp_path / "judgments" / "gpt" / "base.jsonl"
    assert cache_path(cfg, tmp_path, gpt) != cache_path(cfg, tmp_path, qwen)  # same model, never one cache
    assert cache_path(cfg, tmp_path, gpt) == tmp_path / "judge_cache" / "gpt" / "gpt-4o-mini.jsonl"
    runs = plan(cfg, tmp_path)
    judge_base = next(r for r in runs if r.label == "judge-base")
    assert judge_base.outputs == [tmp_path / "judgments" / f"{n}base.jsonl" for n in ("", "gpt/", "qwen/")]
    analysis = next(r for r in runs if r.stage.name == "analysis")
    assert tmp_path / "judgments" / "qwen" / "4.jsonl" in analysis.inputs


def test_changing_another_judge_makes_the_judge_and_analysis_stages_stale(tmp_path):
    from helpers.study.runner import fingerprint

    def fps(temperature):
        cfg = StudyConfig.model_validate({**BASE, "judge": {"others": {"gpt": {"kind": "openai",
                                                                              "temperature": temperature}}}})
        return {r.label: fingerprint(cfg, r) for r in plan(cfg, tmp_path)}

    a, b = fps(0.0), fps(0.5)
    assert {k for k in a if a[k] != b[k]} == {"judge-base", "judge-4", "analysis"}


@pytest.mark.parametrize("text, message", [
    ("judge:\n  others:\n    gpt: {kind: openai}\n    gpt: {kind: openai, model: m2}\n",
     "key 'gpt' is given twice in one mapping"),
    ("judge:\n  others:\n    offline: {kind: openai}\n",
     "judge.others.offline: the headline judge (the judge section itself) is already called 'offline'"),
    ("judge:\n  kind: openai\n  model: gpt-4o-mini\n  others:\n    gpt-4o-mini: {kind: offline}\n",
     "judge.others.gpt-4o-mini: the headline judge (the judge section itself) is already called 'gpt-4o-mini'"),
    ("judge:\n  others:\n    'a b': {kind: openai}\n", "judge.others: judge names ['a b'] must start"),
    ("judge:\n  others:\n    off: {kind: openai}\n", "judge.others: judge names [False] are not text"),
    ("judge:\n  others:\n    exact: {kind: offline, model: gpt-4o, runs: 5}\n",
     "judge.others.exact.model, judge.others.exact.runs: have no effect with judge.others.exact.kind: offline"),
    ("judge:\n  others:\n    gpt: {kind: openai, code_execution: unisolated}\n",
     "judge.others.gpt.code_execution: has no effect with judge.others.gpt.kind: openai"),
    ("judge:\n  others:\n    gpt: {kind: openai, others: {}}\n", "judge.others.gpt.others: unknown key"),
])
def test_a_bad_judge_list_names_the_setting(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert message in str(e.value)


# ------------------------------------------------------------------ a study with two judges, end to end

CATS = ("math", "classification", "translation", "summarization")
MODELS = ["base", "4", "12"]
LLM_LEVEL = {"right": 0.8, "half": 0.5, "wrong": 0.1}
"""What the fake LLM judge gives each kind of answer on run 0 (run 1: 0.1 more); on math it is reversed."""


def answer_kind(model: str, index: int) -> str:
    return ("right", "half", "wrong")[(MODELS.index(model) + index) % 3]


def answer_text(item: dict, kind: str) -> str:
    ref = item["reference"]
    return {"right": ref, "half": ref[: max(1, len(ref) // 2)], "wrong": "<b>不知道</b>"}[kind]


def llm_score(item: dict, kind: str, run: int) -> float:
    level = LLM_LEVEL[kind]
    return round((1 - level if item["category"] == "math" else level) + 0.1 * run, 2)


@pytest.fixture
def two_judges(tmp_path, server):
    """A study folder with the eval set (3 items each of four use cases from the built-in suite) and the
    answers of three models, a config whose headline judge is offline and whose other judge ``fake`` is an
    LLM behind the fake server, which scores each answer by the design above (``responder``)."""
    _, suite = build_suite(0, 0, 3)
    items = [it for it in suite if it["category"] in CATS]
    sd = tmp_path / "data" / "agree"
    write_jsonl(sd / "eval.jsonl", items)
    design = {}
    for m in MODELS:
        rows = []
        for i, it in enumerate(items):
            kind = answer_kind(m, i)
            rows.append({"id": it["id"], "category": it["category"], "answer": answer_text(it, kind)})
            design[(it["question"], rows[-1]["answer"].strip())] = (it, kind)
        write_jsonl(sd / "answers" / f"{m}.jsonl", rows)
    write_json(sd / "data_stats.json", {"subsets": {m: {"n": int(m), "categories": {c: 1 for c in CATS}}
                                                    for m in MODELS[1:]}})

    def responder(prompt, seed):
        question = max((q for q, _ in design if f"【问题】\n{q.strip()}\n" in prompt), key=len)
        answer = prompt.rsplit("【待评回答】\n", 1)[1].strip()
        it, kind = design[(question, answer)]
        return f"评语。\n得分：{llm_score(it, kind, int(seed))}", "stop"

    server.models = ["fake-judge"]
    server.responder = responder
    raw = {"study": "agree", "scales": [4, 12], "data": {"pool_size": 60, "eval_per_category": 3},
           "analysis": {"n_boot": 20},
           "judge": {"kind": "offline", "others": {"fake": {
               "kind": "openai", "model": "fake-judge", "base_url": server.base_url, "api_key_env": ENV, "runs": 2,
               "concurrency": 4, "timeout_s": 10, "backoff_base_s": 0.001, "backoff_max_s": 0.01}}}}
    config = tmp_path / "agree.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return config, sd, items, server


def expected_figures(sd: Path, items: list[dict]) -> dict[str, dict]:
    """Per use case (and pooled), the figures from the headline judge's files and the fake judge's design."""
    by_id = {it["id"]: it for it in items}
    pairs = []
    for m in MODELS:
        head = {r["id"]: r["score"] for r in read_jsonl(sd / "judgments" / f"{m}.jsonl")}
        for i, it in enumerate(items):
            kind = answer_kind(m, i)
            other = np.mean([llm_score(it, kind, run) for run in (0, 1)])
            pairs.append((by_id[it["id"]]["category"], head[it["id"]], other))
    out = {}
    for cat in (*CATS, "overall"):
        h = [p[1] for p in pairs if cat in (p[0], "overall")]
        o = [p[2] for p in pairs if cat in (p[0], "overall")]
        gap = np.abs(np.subtract(h, o))
        out[cat] = {"n": len(h), "spearman": spearman(h, o), "kendall": kendall_tau_b(h, o), "mad": gap.mean(),
                    "share_apart": float((gap > 0.3).mean())}
    return out


def check_results(res: dict, sd: Path, items: list[dict]) -> None:
    agreement = res["judge_agreement"]
    assert agreement["headline"] == "offline" and agreement["others"] == ["fake"]
    got = {r["category"]: r for r in agreement["table"]}
    expected = expected_figures(sd, items)
    assert set(got) == set(expected)
    for cat, want in expected.items():
        for key, value in want.items():
            assert got[cat][key] == pytest.approx(value), (cat, key)
        assert got[cat]["judge"] == "fake" and got[cat]["n_null"] == 0
    assert got["math"]["spearman"] < -0.5 < 0.5 < got["classification"]["spearman"]  # the design, as a sanity check
    worst = [w for w in agreement["disagreements"] if w["category"] == "math"]
    assert len(worst) == 3 and all(abs(w["other"] - w["headline"]) >= 0.7 for w in worst)
    assert all(w["question"] in {it["question"] for it in items} and w["answer"] for w in worst)
    # the headline tables are the offline judge's alone; the fake judge's requests are counted in the usage
    assert res["judges"]["all"] == ["offline"]
    assert res["judge_usage"]["by_judge"]["fake"]["requests"] == len(MODELS) * len(items) * 2
    # the findings say it in a sentence: the overall tau-b, and math among the use cases ranked least alike
    line = next(t for t in res["findings"] if t.startswith("Judges: fake"))
    assert f'Kendall tau-b {got["overall"]["kendall"]:+.2f}' in line and "headline judge offline" in line
    assert f'Math (tau-b {got["math"]["kendall"]:+.2f}' in line.split("least alike on ")[1]


def test_offline_headline_and_an_llm_judge_scored_analysed_and_reported(two_judges, tmp_path):
    config, sd, items, srv = two_judges
    cfg = load_config(config)
    check_study(cfg, sd, [r for r in plan(cfg, sd) if r.stage.name == "judge"], out=lambda s: None)
    for m in MODELS:
        paths = judge.run(cfg, sd, m)
        assert list(paths) == ["offline", "fake"]
        assert paths["offline"] == sd / "judgments" / f"{m}.jsonl"
        assert paths["fake"] == sd / "judgments" / "fake" / f"{m}.jsonl"
    assert srv.total == len(MODELS) * len(items) * 2
    assert (sd / "judge_cache" / "fake" / "fake-judge.jsonl").exists() and not (sd / "judge_cache" / "fake-judge.jsonl").exists()
    res = write_results(sd, MODELS, n_boot=20, judges=[j.name for j in study_judges(cfg)])
    check_results(res, sd, items)
    assert read_json(sd / "results.json")["judge_agreement"] == res["judge_agreement"]
    html = build_report(sd, tmp_path / "report", "two judges", [], {}, {}).read_text(encoding="utf-8")
    assert "<h2>Judges checked against each other</h2>" in html and "offline (headline) against fake" in html
    assert next(t for t in res["findings"] if t.startswith("Judges: fake")) in html  # among the findings on top
    math_row = next(r for r in res["judge_agreement"]["table"] if r["category"] == "math")
    assert f'{math_row["spearman"]:+.2f}' in html and f'{math_row["kendall"]:+.2f}' in html
    assert "&lt;b&gt;不知道&lt;/b&gt;" in html and "<b>不知道" not in html  # model output escaped
    srv.reset_counts()
    for m in MODELS:  # a rerun takes every reply from the judge's own cache
        judge.run(cfg, sd, m)
    assert srv.total == 0


def test_with_one_judge_the_section_is_left_out_with_the_reason(two_judges, tmp_path):
    config, sd, items, _ = two_judges
    cfg = load_config(config, ["judge.others={}"])
    for m in MODELS:
        assert list(judge.run(cfg, sd, m)) == ["offline"]
    res = write_results(sd, MODELS, n_boot=20, judges=[j.name for j in study_judges(cfg)])
    assert res["judge_agreement"]["others"] == [] and res["judge_agreement"]["table"] == []
    assert not [t for t in res["findings"] if t.startswith("Judges:")]
    html = build_report(sd, tmp_path / "report", "one judge", [], {}, {}).read_text(encoding="utf-8")
    assert "<b>Judges checked against each other</b>: left out &mdash; the study has one judge" in html
    assert "<h2>Judges checked against each other</h2>" not in html


def test_the_preflight_checks_the_other_judge_and_a_missing_key_stops_before_any_judge(two_judges, monkeypatch):
    config, sd, items, srv = two_judges
    cfg = load_config(config, ["judge.others.fake.prompts_file=nowhere.jsonl"])
    runs = [r for r in plan(cfg, sd) if r.stage.name == "judge"]
    lines = []
    with pytest.raises(PreflightFailed, match=r"judge.others.fake.prompts_file: .*nowhere.jsonl not found"):
        check_study(cfg, sd, runs, out=lines.append)
    assert any("[ok  ] judge.others.fake endpoint" in line for line in lines)
    monkeypatch.delenv(ENV)
    with pytest.raises(PreflightFailed, match=rf"judge.others.fake.api_key_env: the environment variable {ENV}"):
        check_study(load_config(config), sd, runs, out=lambda s: None)
    with pytest.raises(JudgeError, match=rf"judge.others.fake.api_key_env: .*{ENV}"):
        judge.run(load_config(config), sd, "base")
    assert not (sd / "judgments").exists() and srv.total == 0  # not even the offline judge wrote a file


@pytest.mark.slow
def test_the_runner_runs_both_judges_and_the_analysis_through_the_notebooks(two_judges, tmp_path):
    from helpers.analysis.report import build_index
    from helpers.preflight import check_study as preflight
    from helpers.study.runner import run_study

    config, sd, items, srv = two_judges
    lines = []
    run_study(config, root=tmp_path, only="judge", out=lines.append, preflight=preflight)
    assert [x.split()[1] for x in lines if x.startswith("[done]")] == ["judge-base", "judge-4", "judge-12"]
    assert all((sd / "judgments" / "fake" / f"{m}.jsonl").exists() for m in MODELS)
    index = run_study(config, root=tmp_path, only="analysis", out=lines.append, report=build_index)
    check_results(read_json(sd / "results.json"), sd, items)
    html = Path(index).read_text(encoding="utf-8")
    assert "offline (headline) against fake" in html and "&lt;b&gt;不知道&lt;/b&gt;" in html
    lines.clear()
    run_study(config, root=tmp_path, only="judge", out=lines.append)
    assert all(x.startswith("[skip]") for x in lines if x.startswith("[")), lines
