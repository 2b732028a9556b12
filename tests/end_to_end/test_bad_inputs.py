"""The bad-input corpus: files and settings users really produce, each stopped with a clear message.

Every case checks the exit status, the message (file, record, problem) and, for the cases that
reach a study, that nothing already computed under data/<study>/ was deleted or overwritten.
The troubleshooting table (docs/troubleshooting.md) lists the same cases.
"""
from pathlib import Path

import pytest
import yaml

from helpers.__main__ import main
from helpers.study.config import StudyConfig
from helpers.study.files import write_jsonl

CORPUS = Path(__file__).parent / "bad_inputs"

VALIDATE_CASES = [
    ("train_truncated.jsonl", "train", r"line 3: truncated last line"),
    ("train_gbk.jsonl", "train", r"line 1: not valid UTF-8 .* GBK"),
    ("train_empty.jsonl", "train", r"the file is empty"),
    ("train_missing_output.jsonl", "train", r"line 2: missing field 'output'"),
    ("train_null_output.jsonl", "train", r"line 2: 'output' is null"),
    ("train_duplicate_ids.jsonl", "train", r"line 2: duplicate id 'a1' \(first at line 1\)"),
    ("train_unknown_category.jsonl", "train", r"2 unknown category label\(s\): 'poetry' x2 \(first at line 2\), '诗歌' x1"),
    ("eval_missing_question.jsonl", "eval", r"line 2: missing field 'question'"),
]


@pytest.mark.parametrize("name, kind, message", VALIDATE_CASES)
def test_validate_names_file_record_and_problem(capsys, name, kind, message):
    import re

    assert main(["validate", "--kind", kind, str(CORPUS / name)]) != 0
    err = capsys.readouterr().err
    assert str(CORPUS / name) in err and re.search(message, err), err


def test_a_bom_is_accepted_and_noted(capsys):
    assert main(["validate", "--kind", "train", str(CORPUS / "train_bom.jsonl")]) == 0
    assert "byte-order mark" in capsys.readouterr().out


@pytest.mark.parametrize("body, message", [
    ("study: x\nscales: [4]\ntrian: {epochs: 1}\n", "trian: unknown key"),
    ("study: x\nscales: [-5, 10]\n", "scales: .*positive"),
    ("study: x\nscales: [0]\n", "scales: .*positive"),
    ("study: x\nscales: [100000]\n", "scales: the largest scale 100000 exceeds data.pool_size"),
])
def test_bad_configs_stop_before_anything_runs(tmp_path, capsys, body, message):
    import re

    config = tmp_path / "c.yaml"
    config.write_text(body)
    assert main(["run", "--config", str(config), "--root", str(tmp_path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and re.search(message, err), err
    assert not (tmp_path / "data").exists()


def file_study(tmp_path, train_file: Path, scales=(2,)) -> Path:
    """A study on a train file whose earlier results must survive a failed rerun."""
    write_jsonl(tmp_path / "eval.jsonl", [{"question": "3+4=?", "class": "math", "std_answer": "7"}])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({
        "study": "bad", "scales": list(scales),
        "data": {"source": "file", "train_files": [str(train_file)], "eval_file": str(tmp_path / "eval.jsonl")}}))
    earlier = tmp_path / "data" / "bad"
    write_jsonl(earlier / "pool.jsonl", [{"id": "kept", "instruction": "i", "input": "", "output": "o", "category": "math"}])
    write_jsonl(earlier / "answers" / "base.jsonl", [{"id": "e1", "category": "math", "answer": "7"}])
    return config


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted((root / "data" / "bad").rglob("*.jsonl"))}


@pytest.mark.parametrize("train, scales, message", [
    (CORPUS / "train_truncated.jsonl", (2,), "line 3: truncated last line"),
    (CORPUS / "train_unknown_category.jsonl", (2,), "unknown category label"),
    (None, (5,), "the largest scale 5 exceeds the pool of 2 items"),
])
def test_the_data_stage_stops_and_keeps_earlier_results(tmp_path, capsys, train, scales, message):
    if train is None:
        train = tmp_path / "small.jsonl"
        write_jsonl(train, [{"instruction": f"计算：{i}+1", "input": "", "output": str(i + 1), "category": "math"}
                            for i in range(2)])
    config = file_study(tmp_path, train, scales)
    before = snapshot(tmp_path)
    assert main(["run", "--config", str(config), "--root", str(tmp_path), "--only", "data"]) == 1
    err = capsys.readouterr().err
    assert "stage data failed" in err and message in err, err
    assert snapshot(tmp_path) == before
    assert (tmp_path / "data" / "bad" / "notebooks" / "data.failed.ipynb").exists()


@pytest.mark.parametrize("key, base_url, message", [
    (None, "http://127.0.0.1:9/v1", "the environment variable BAD_INPUT_KEY is not set"),
    ("placeholder", "http://127.0.0.1:9/v1", "judge requests failed after their retries"),
])
def test_judge_without_key_or_server_stops_and_keeps_answers(tmp_path, monkeypatch, key, base_url, message):
    from helpers.judge.llm import JudgeError
    from helpers.judge.stage import judge_answers

    if key:
        monkeypatch.setenv("BAD_INPUT_KEY", key)
    else:
        monkeypatch.delenv("BAD_INPUT_KEY", raising=False)
    write_jsonl(tmp_path / "eval.jsonl", [{"id": "m1", "category": "math", "question": "1+1", "reference": "2"}])
    write_jsonl(tmp_path / "answers" / "base.jsonl", [{"id": "m1", "category": "math", "answer": "2"}])
    answers = (tmp_path / "answers" / "base.jsonl").read_bytes()
    cfg = StudyConfig.model_validate({"study": "x", "scales": [4], "judge": {
        "kind": "openai", "base_url": base_url, "api_key_env": "BAD_INPUT_KEY", "max_retries": 1,
        "backoff_base_s": 0.01, "timeout_s": 2}})
    with pytest.raises(JudgeError, match=message):
        judge_answers(cfg, "base", tmp_path)
    assert (tmp_path / "answers" / "base.jsonl").read_bytes() == answers
    assert not (tmp_path / "judgments" / "base.jsonl").exists()
    assert key is None or all(key not in p.read_text() for p in tmp_path.rglob("*") if p.is_file())
