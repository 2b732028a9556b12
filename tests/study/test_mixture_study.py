"""A tiny mixture study end to end on the tiny model: every stage, in process and through the runner (incremental,
resumable, status with reasons), to a report with the transfer matrix."""
from __future__ import annotations

import pytest
import yaml

from helpers.study.files import read_json, read_jsonl

MIXTURE = {"leave_one_out": ["math", "open_qa"], "weights": {"more_math": {"math": 3}}}


def tiny_mixture(base, mixture=MIXTURE) -> dict:
    return {"study": "mix", "seed": 0, "scales": [24],
            "data": {"source": "builtin", "pool_size": 120, "eval_per_category": 2, "mixture": mixture},
            "model": {"base": str(base)},
            "train": {"batch_size": 4, "per_device_batch_size": 4, "max_length": 64, "bf16": False,
                      "schedule": "prefix"},
            "generate": {"batch_size": 12, "max_new_tokens": {"default": 4}},
            "analysis": {"n_boot": 50}}


@pytest.mark.slow  # about 2.3 CPU minutes: four training runs and five models answered
def test_a_tiny_mixture_study_runs_every_stage_to_the_transfer_matrix(tmp_path, tiny_model_dir):
    """In process (no papermill): data, one training run per model, answers, judgments, analysis, report."""
    from helpers import analysis, data, finetune, generate, judge
    from helpers.analysis.figures import transfer_matrix
    from helpers.analysis.report import build_report
    from helpers.study.config import StudyConfig

    cfg = StudyConfig.model_validate(tiny_mixture(tiny_model_dir))
    sd = tmp_path / "mix"
    stats = data.run(cfg, sd)
    mixtures = ["mix-without-math", "mix-without-open_qa", "mix-more_math"]
    assert cfg.mixture_models == mixtures and stats["mixtures"]["reference"] == "24"
    for m in ["24", *mixtures]:
        finetune.run(cfg, sd, None if m == "24" else m)
        summary = read_json(sd / "models" / m / "train_summary.json")
        assert summary["examples"] == 24 and summary["scale"] == m  # every model saw as many examples
    without = read_jsonl(sd / "subsets" / "mix-without-math.jsonl")
    assert not [r for r in without if r["category"] == "math"]
    generate.run(cfg, sd, cfg.models)
    for m in cfg.models:
        judge.run(cfg, sd, m)
    res = analysis.run(cfg, sd)
    mix = res["mixture"]
    assert mix["reference"] == "24" and mix["models"] == mixtures and mix["examples"] == 24
    rows = {(r["model"], r["category"]) for r in mix["cells"]}
    assert {("mix-without-math", "math"), ("mix-more_math", "code"), ("mix-without-open_qa", "overall")} <= rows
    assert next(r for r in mix["cells"] if r["model"] == "mix-without-math" and r["category"] == "math")["diagonal"]
    assert any(s.startswith(("Without Math data", "No difference beyond", "Cannot separate")) for s in res["findings"])
    transfer_matrix(mix, sd / "figures" / "transfer_matrix.png")
    page = build_report(sd, tmp_path / "report", "mix", [], {}, {}).read_text(encoding="utf-8")
    assert "Which data: the transfer matrix" in page and "figures/transfer_matrix.png" in page
    assert "<td>without Open QA</td>" in page and "<td>more_math</td>" in page


@pytest.mark.slow  # papermill: a kernel per notebook
def test_a_mixture_study_through_the_runner_is_incremental(tmp_path, tiny_model_dir):
    """papermill and the report; a rerun does nothing; one more mixture reruns the data stage (whose other subsets
    come out byte-identical), trains, answers and judges only the new model, and the analysis."""
    from helpers.analysis.report import build_index
    from helpers.study.runner import run_study, status

    config = tmp_path / "mix.yaml"
    config.write_text(yaml.safe_dump(tiny_mixture(tiny_model_dir, {"leave_one_out": ["math"]})))
    lines = []
    index = run_study(config, root=tmp_path, out=lines.append, report=build_index)
    done = [line.split()[1] for line in lines if line.startswith("[done]")]
    assert done == ["data", "finetune", "finetune-mix-without-math", "generate-all"] + [
        f"judge-{m}" for m in ("base", "24", "mix-without-math")] + ["analysis"]
    sd = tmp_path / "data" / "mix"
    res = read_json(sd / "results.json")
    assert res["mixture"]["models"] == ["mix-without-math"] and res["mixture"]["cells"]
    text = index.read_text(encoding="utf-8")
    assert "Which data: the transfer matrix" in text and 'src="figures/transfer_matrix.png"' in text
    assert "notebooks/finetune-mix-without-math.html" in text

    again = []
    run_study(config, root=tmp_path, out=again.append, report=build_index)
    assert not [line for line in again if line.startswith(("[run ]", "[done]"))]
    assert len([line for line in again if line.startswith("[skip]")]) == len(done)

    config.write_text(yaml.safe_dump(tiny_mixture(tiny_model_dir, {"leave_one_out": ["math", "code"]})))
    said = []
    found = {s.label: s for s in status(config, root=tmp_path, out=said.append)}
    assert found["finetune-mix-without-code"].state == "missing" and found["data"].state == "stale"
    assert any("data.mixture.leave_one_out" in r for r in found["data"].reasons)
    more = []
    run_study(config, root=tmp_path, out=more.append, report=build_index)
    assert [line.split()[1] for line in more if line.startswith("[done]")] == [
        "data", "finetune-mix-without-code", "generate-all", "judge-mix-without-code", "analysis"]
    assert read_json(sd / "results.json")["mixture"]["models"] == ["mix-without-math", "mix-without-code"]
