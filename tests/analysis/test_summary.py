"""The three lines a study run ends with (helpers.analysis.summary)."""
from helpers.analysis.summary import summary_lines
from helpers.study.files import write_json


def test_the_run_ends_with_three_lines_from_the_results(tmp_path):
    assert summary_lines(tmp_path) == []  # before the analysis stage
    cats = ["math", "extraction", "translation"]
    table = [{"category": c, "model": m, "mean": v} for c, row in zip(cats, ((0.1, 0.1), (0.0, 0.8), (0.5, 0.2)))
             for m, v in zip(("base", "640"), row)]
    table += [{"category": "overall", "model": "base", "mean": 0.2}, {"category": "overall", "model": "640", "mean": 0.3667}]
    write_json(tmp_path / "results.json", {"models": ["base", "640"], "categories": cats, "table": table})
    assert summary_lines(tmp_path) == [
        "overall score (the mean of the use-case means, 0 to 1): base (0) 0.20 · 640 0.37",
        "most gained from base (0) to 640: Extraction +0.80",
        "most lost: Translation -0.30"]
