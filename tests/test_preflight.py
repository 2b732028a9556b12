"""Preflight: a study that cannot finish stops in seconds, before anything is trained, with every problem named.

Each failure case runs the real command line (``python -m helpers run``, not a dry run) and checks the
exit status, the message (which names the setting) and that no models/ folder (nor answers, nor
judgments) was written. Settings that have no effect are config errors, checked the same way.
"""
import json
import re
from pathlib import Path

import pytest
import yaml
from fake_openai import ENV, KEY, FakeOpenAI

from helpers.__main__ import main
from helpers.preflight import PreflightFailed, check_study, count_records
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.loading import load_config, study_dir
from helpers.study.paths import REPO
from helpers.study.runner import plan, run_study

MICRO = {"study": "pf", "scales": [4, 12], "data": {"source": "builtin", "pool_size": 60, "eval_per_category": 1},
         "train": {"batch_size": 4, "per_device_batch_size": 4, "max_length": 96},
         "generate": {"batch_size": 12, "max_new_tokens": {"default": 8}}, "analysis": {"n_boot": 50}}

BELLE_EVAL = [  # BELLE's released eval set: no std_answer for brainstorming and generation
    {"question": "计算：17+25=?", "class": "math", "std_answer": "42"},
    {"question": "把“我爱你”翻译成英文。", "class": "translation", "std_answer": "I love you."},
    {"question": "给出三个周末放松的方法。", "class": "brainstorming", "std_answer": ""},
    {"question": "写一首关于秋天的短诗。", "class": "generation", "std_answer": ""},
]


def write_config(tmp_path: Path, **sections) -> Path:
    """MICRO with ``sections``: ``data`` replaces MICRO's data section, any other section is merged into it."""
    raw = json.loads(json.dumps(MICRO))
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if key != "data" else value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run(tmp_path: Path, config: Path, capsys, *extra) -> tuple[int, str, str]:
    code = main(["run", "--config", str(config), "--root", str(tmp_path), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def nothing_trained(tmp_path: Path) -> bool:
    sd = tmp_path / "data" / "pf"
    return not any((sd / d).exists() for d in ("models", "answers", "judgments", "pool.jsonl"))


@pytest.fixture
def server(server):
    server.models = ["fake-judge", "fake-teacher"]
    return server


def llm_judge(srv: FakeOpenAI, **more) -> dict:
    return {"kind": "openai", "model": "fake-judge", "base_url": srv.base_url, "api_key_env": ENV,
            "timeout_s": 5, **more}


# ------------------------------------------------------------------ failures before any training

def test_a_judge_prompts_file_without_some_use_cases_stops_before_training(tmp_path, capsys, server):
    prompts = tmp_path / "prompts.jsonl"
    lines = [json.loads(ln) for ln in (REPO / "configs" / "judge_prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    write_jsonl(prompts, [p for p in lines if p["class"] not in ("math", "code")])
    config = write_config(tmp_path, judge=llm_judge(server, prompts_file=str(prompts)))
    code, out, err = run(tmp_path, config, capsys)
    assert code == 2, err
    assert re.search(r"judge\.prompts_file: no prompt for use case\(s\) code, math in .*prompts\.jsonl "
                     r"\(eval items: code 1 \(eval-code-0000\); math 1 \(eval-math-0000\)\)", err), err
    assert "[FAIL] judge prompts" in out and "[ok  ] judge endpoint" in out
    assert nothing_trained(tmp_path)


def test_the_offline_judge_names_the_items_it_cannot_score_and_the_judge_to_use(tmp_path, capsys):
    evals = tmp_path / "belle_eval.jsonl"
    write_jsonl(evals, BELLE_EVAL)
    # the built-in pool with the user's eval set (data.eval_file is honoured with data.source: builtin)
    config = write_config(tmp_path, data={"source": "builtin", "pool_size": 60, "eval_file": str(evals)})
    code, out, err = run(tmp_path, config, capsys)
    assert code == 2, err
    assert "judge.kind: offline cannot score 2 of 4 eval items: brainstorming 1 (no check and no reference: " \
           "eval-00003); generation 1 (no check and no reference: eval-00004). Judge brainstorming, generation " \
           "with an LLM (judge.kind: openai" in err, err
    assert nothing_trained(tmp_path)


def test_missing_files_and_a_missing_key_are_reported_together(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    config = write_config(tmp_path, data={"source": "file", "train_files": [str(tmp_path / "nope.jsonl")],
                                          "eval_file": str(tmp_path / "eval_missing.jsonl")},
                          judge={"kind": "openai", "api_key_env": ENV, "base_url": "http://127.0.0.1:9/v1"},
                          train={"batch_size": 4, "per_device_batch_size": 4, "max_length": 96,
                                 "accelerate_config": "configs/accelerate/none.yaml"})
    code, out, err = run(tmp_path, config, capsys)
    assert code == 2, err
    assert "preflight: 4 problems, nothing was run" in err
    assert re.search(r"data\.eval_file: .*eval_missing\.jsonl not found", err)
    assert re.search(r"data\.train_files: .*nope\.jsonl not found", err)
    assert re.search(r"train\.accelerate_config: .*none\.yaml not found", err)
    assert f"judge.api_key_env: the environment variable {ENV} is not set" in err
    assert nothing_trained(tmp_path)


def test_a_bad_eval_file_names_the_setting_and_the_line(tmp_path, capsys):
    evals = tmp_path / "eval.jsonl"
    evals.write_text('{"question": "1+1=?", "class": "math", "std_answer": "2"}\n{"class": "math"}\n')
    config = write_config(tmp_path, data={"source": "builtin", "pool_size": 60, "eval_file": str(evals)})
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "data.eval_file: " in err and "line 2: missing field 'question'" in err, err
    assert nothing_trained(tmp_path)


def test_scales_beyond_the_records_of_local_train_files_stop_before_training(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"instruction": f"计算：{i}+1", "input": "", "output": str(i + 1)} for i in range(5)])
    evals = tmp_path / "eval.jsonl"
    write_jsonl(evals, BELLE_EVAL[:2])
    config = write_config(tmp_path, data={"source": "file", "train_files": [str(train)], "eval_file": str(evals)})
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2 and "scales: the largest scale 12 exceeds the 5 records of data.train_files" in err, err
    assert nothing_trained(tmp_path)


def test_whole_pool_lets_the_largest_scale_exceed_the_records_of_local_train_files(tmp_path):
    """data.largest_scale: whole_pool (paper.yaml's): the largest scale trains on whatever the files hold after
    filtering, so only the scale below it must fit, and leave the largest more records than it has (the data
    stage's rule). 10 records: exact refuses a largest scale of 12, whole_pool passes; 4 records leave nothing more."""
    from helpers.study.config import StudyConfig

    evals = tmp_path / "eval.jsonl"
    write_jsonl(evals, BELLE_EVAL[:2])

    def check(records: int, largest: str):
        train = tmp_path / f"train{records}.jsonl"
        write_jsonl(train, [{"instruction": f"计算：{i}+1", "input": "", "output": str(i + 1)} for i in range(records)])
        cfg = StudyConfig.model_validate({**MICRO, "data": {"source": "file", "train_files": [str(train)],
                                                             "eval_file": str(evals), "largest_scale": largest}})
        sd = study_dir(cfg, tmp_path)
        return check_study(cfg, sd, [r for r in plan(cfg, sd) if r.stage.name == "data"], out=lambda s: None)

    with pytest.raises(PreflightFailed, match=r"scales: the largest scale 12 exceeds the 10 records"):
        check(10, "exact")
    scales = next(c for c in check(10, "whole_pool") if c.name == "scales")
    assert scales.ok and "whole pool" in scales.found and "4" in scales.found, scales.found
    with pytest.raises(PreflightFailed, match=r"scales: 4, the scale below the largest \(data.largest_scale: whole_pool "
                                              r"takes the whole pool\), leaves no more of the 4 records"):
        check(4, "whole_pool")


def test_the_self_instruct_teacher_is_checked_before_any_request(tmp_path, capsys, server):
    config = write_config(tmp_path, data={"source": "generate", "eval_per_category": 1},
                          selfinstruct={"model": "no-such-teacher", "base_url": server.base_url, "api_key_env": ENV,
                                        "target": 60, "seeds_file": str(tmp_path / "seeds.jsonl")})
    code, _, err = run(tmp_path, config, capsys)
    assert code == 2, err
    assert re.search(r"selfinstruct\.seeds_file: .*seeds\.jsonl not found", err)
    assert "selfinstruct.model: 'no-such-teacher' is not among the 2 models" in err
    assert server.total == 0  # no chat request was sent
    assert not (tmp_path / "data" / "pf" / "generated.jsonl").exists()


# ------------------------------------------------------------------ endpoints, against a real local server

def endpoint_check(tmp_path, judge: dict):
    from helpers.study.config import StudyConfig

    cfg = StudyConfig.model_validate({**MICRO, "judge": judge})
    runs = [r for r in plan(cfg, study_dir(cfg, tmp_path)) if r.stage.name == "judge"]
    write_jsonl(study_dir(cfg, tmp_path) / "eval.jsonl", [{"id": "m1", "category": "math", "question": "1+1",
                                                          "reference": "2"}])
    lines = []
    try:
        checks = check_study(cfg, study_dir(cfg, tmp_path), runs, out=lines.append)
    except PreflightFailed as e:
        return str(e), lines
    return checks, lines


def test_a_reachable_endpoint_with_a_good_key_passes(tmp_path, server):
    checks, lines = endpoint_check(tmp_path, llm_judge(server))
    assert [c.name for c in checks] == ["eval set", "files", "disk", "judge prompts", "judge endpoint"]
    assert all(c.ok for c in checks)
    assert any("accepts the key" in ln for ln in lines)
    assert server.model_lists == 1 and server.total == 0


def test_a_refused_key_is_named_without_showing_it(tmp_path, server, monkeypatch):
    monkeypatch.setenv(ENV, "sk-wrong-secret")
    message, lines = endpoint_check(tmp_path, llm_judge(server))
    assert f"judge.api_key_env: {server.base_url} refused the key in ${ENV} (HTTP 401" in message
    assert "sk-wrong-secret" not in message + "".join(lines)


def test_an_unreachable_port_is_named_in_seconds(tmp_path, monkeypatch):
    import socket
    import time

    monkeypatch.setenv(ENV, KEY)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    message, _ = endpoint_check(tmp_path, {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                           "api_key_env": ENV})
    assert time.perf_counter() - t0 < 15
    assert f"judge.base_url: http://127.0.0.1:{port}/v1 is not reachable" in message


def test_a_model_the_endpoint_does_not_list_is_named(tmp_path, server):
    message, _ = endpoint_check(tmp_path, llm_judge(server, model="gpt-4o"))
    assert "judge.model: 'gpt-4o' is not among the 2 models" in message and "'fake-judge'" in message


# ------------------------------------------------------------------ passing, dry run, when it runs

def test_the_micro_study_passes_its_preflight(tmp_path):
    cfg = load_config("configs/micro.yaml")
    lines = []
    checks = check_study(cfg, study_dir(cfg, tmp_path), plan(cfg, study_dir(cfg, tmp_path)), out=lines.append)
    assert {c.name for c in checks} == {"eval set", "files", "checkpoints", "disk", "offline judge"} and all(c.ok for c in checks)
    assert "every one of the 12 eval items has a check or a reference" in "\n".join(lines)


def test_the_dry_run_prints_the_checks(tmp_path, capsys):
    code = main(["run", "--config", "configs/micro.yaml", "--root", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "preflight: checking what data, finetune, generate, judge, analysis will need" in out
    assert "[ok  ] eval set: the built-in suite's split, 12 items" in out and "[ok  ] offline judge" in out
    assert not (tmp_path / "data").exists()


def test_the_dry_run_fails_with_the_problems_it_finds(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    config = write_config(tmp_path, judge={"kind": "openai", "api_key_env": ENV})
    code, out, err = run(tmp_path, config, capsys, "--dry-run")
    assert code == 2 and "finetune-12" in out and "[FAIL] judge endpoint" in out
    assert f"judge.api_key_env: the environment variable {ENV} is not set" in err


def test_the_runner_calls_the_preflight_once_before_the_first_stage(tmp_path, monkeypatch):
    import helpers.study.runner as runner

    events = []
    monkeypatch.setattr(runner, "execute", lambda cfg, cp, root, run, ov=(), *a, **kw: events.append(run.label) or
                        (_ for _ in ()).throw(RuntimeError("stop")))

    def preflight(cfg, sd, runs, out):
        events.append(("preflight", [r.label for r in runs][:2]))

    with pytest.raises(RuntimeError, match="stop"):
        run_study("configs/micro.yaml", root=tmp_path, out=lambda s: None, preflight=preflight)
    assert events == [("preflight", ["data", "finetune-4"]), "data"]

    events.clear()  # the data stage alone costs nothing: it checks its own inputs
    with pytest.raises(RuntimeError, match="stop"):
        run_study("configs/micro.yaml", root=tmp_path, only="data", out=lambda s: None, preflight=preflight)
    assert events == ["data"]


def test_count_records_is_cheap_where_it_can_be(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"x": i} for i in range(3)])
    (tmp_path / "b.json").write_text(json.dumps([{"x": 1}, {"x": 2}]))
    assert count_records(tmp_path / "a.jsonl") == 3 and count_records(tmp_path / "b.json") == 2
    assert count_records(tmp_path) is None


# ------------------------------------------------------------------ settings that have no effect

@pytest.mark.parametrize("sections, message", [
    ({"data": {"train_files": ["mine.jsonl"]}}, "data.train_files: has no effect with data.source: builtin"),
    ({"judge": {"model": "gpt-4o", "runs": 1}},
     "judge.model, judge.runs: have no effect with judge.kind: offline"),
    ({"selfinstruct": {"target": 50}}, "selfinstruct.target: has no effect without data.source: generate"),
    ({"generate": {"temperature": 0.7}}, "generate.temperature: has no effect with generate.do_sample: false"),
    ({"train": {"method": "full", "lora": {"r": 8}}}, "train.lora: has no effect with train.method: full"),
    ({"data": {"quality": {"max_output_chars": 100}}}, "data.quality: has no effect without the quality strategy"),
    ({"data": {"category_map": {"诗歌": "generation"}}}, "data.category_map: has no effect with data.source: builtin"),
    ({"data": {"eval_file": "e.jsonl", "eval_per_category": 3}}, "data.eval_per_category: has no effect here"),
    ({"data": {"source": "file", "train_files": ["t.jsonl"], "eval_file": "e.jsonl", "pool_size": 60}},
     "data.pool_size: has no effect with data.source: file"),
    ({"data": {"source": "hf", "train_files": ["BelleGroup/train_2M_CN"]}}, "data.eval_file: required"),
])
def test_a_setting_with_no_effect_is_an_error(tmp_path, capsys, sections, message):
    raw = json.loads(json.dumps(MICRO))
    raw["data"] = {"source": "builtin"}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    code, _, err = run(tmp_path, config, capsys, "--dry-run")
    assert code == 2 and message in err and str(config) in err, err
    assert not (tmp_path / "data").exists()


def test_every_ignored_setting_is_reported_at_once(tmp_path, capsys):
    config = write_config(tmp_path, judge={"model": "gpt-4o"}, selfinstruct={"target": 50})
    code, _, err = run(tmp_path, config, capsys, "--dry-run")
    assert code == 2 and "judge.model: has no effect" in err and "selfinstruct.target: has no effect" in err


def test_defaults_written_out_are_no_error_and_the_shipped_configs_load():
    raw = {**MICRO, "judge": {"kind": "offline", "runs": 3, "model": "gpt-3.5-turbo"},
           "generate": {"batch_size": 12, "max_new_tokens": {"default": 8}, "temperature": 1.0}}
    from helpers.study.config import StudyConfig

    StudyConfig.model_validate(raw)
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if path.name not in ("selfinstruct_prompt.yaml",):
            load_config(path)


def test_the_builtin_pool_with_your_eval_file_uses_it_and_removes_overlap(tmp_path):
    from builders import make_config

    from helpers import data
    from helpers.data.suite import build_suite

    pool, _ = build_suite(0, 40, 0)
    longest = max(pool, key=lambda r: len(r["instruction"] + r["input"]))
    copied = f"{longest['instruction']}\n{longest['input']}".strip()  # an eval question the pool holds almost whole
    evals = tmp_path / "eval.jsonl"
    write_jsonl(evals, [{"id": "mine-1", "category": "math", "question": copied + "请回答。", "reference": "1"},
                        {"id": "mine-2", "category": "open_qa", "question": "中国的首都是哪里？", "reference": "北京"}])
    cfg = make_config("m", data={"source": "builtin", "pool_size": 40, "eval_file": str(evals)})
    stats = data.run(cfg, tmp_path / "s")
    assert [it["id"] for it in read_jsonl(tmp_path / "s" / "eval.jsonl")] == ["mine-1", "mine-2"]
    assert stats["filters"]["contamination"]["action"] == "remove"
    assert stats["filters"]["contamination"]["removed"] >= 1
    assert longest["id"] not in {r["id"] for r in read_jsonl(tmp_path / "s" / "pool.jsonl")}
    # without an eval file the built-in suite's own split is used and the default files are unchanged
    plain = data.run(make_config("m", data={"source": "builtin", "pool_size": 40, "eval_per_category": 1}),
                    tmp_path / "p")
    assert plain["filters"]["contamination"]["action"] == "report" and plain["eval"]["n"] == 12


def test_each_check_runs_only_where_a_stage_to_run_needs_it(tmp_path):
    """Training alone needs no eval set and no judge: a missing eval file does not block --only finetune."""
    from helpers.study.config import StudyConfig

    cfg = StudyConfig.model_validate({**MICRO, "data": {"source": "builtin", "pool_size": 60,
                                                         "eval_file": str(tmp_path / "missing.jsonl")}})
    sd = study_dir(cfg, tmp_path)
    runs = plan(cfg, sd)
    checks = check_study(cfg, sd, [r for r in runs if r.stage.name == "finetune"], out=lambda s: None)
    assert [c.name for c in checks] == ["files", "checkpoints", "disk"]
    with pytest.raises(PreflightFailed, match=r"data\.eval_file: .*missing\.jsonl not found"):
        check_study(cfg, sd, [r for r in runs if r.stage.name in ("data", "finetune")], out=lambda s: None)


def test_a_finished_study_has_nothing_costly_left_to_check(tmp_path):
    from helpers.study.config import StudyConfig
    from helpers.study.files import write_json
    from helpers.study.runner import fingerprint, hash_path, record_path, to_run

    cfg = StudyConfig.model_validate(MICRO)
    sd = study_dir(cfg, tmp_path)
    runs = plan(cfg, sd)
    assert to_run(cfg, sd, runs, None, False) == runs
    for r in runs:
        for p in r.outputs:
            write_jsonl(p / "x.jsonl" if not p.suffix else p, [{"stage": r.label}])
        write_json(record_path(sd, r), {"fingerprint": fingerprint(cfg, r),
                                        "outputs": {str(p): hash_path(p) for p in r.outputs}})
    assert to_run(cfg, sd, runs, None, False) == []
    assert [r.label for r in to_run(cfg, sd, runs, "judge", True)] == ["judge-base", "judge-4", "judge-12"]


def test_code_execution_is_an_offline_judge_setting():
    from helpers.study.loading import ConfigError, load_config

    assert load_config("configs/micro.yaml", ["judge.code_execution=unisolated"]).judge.code_execution == "unisolated"
    with pytest.raises(ConfigError, match="judge.code_execution: has no effect with judge.kind: openai"):
        load_config("configs/micro.yaml", ["judge.kind=openai", "judge.code_execution=unisolated"])


# ------------------------------------------------------------------ the generate backend

def test_the_vllm_backend_without_vllm_and_a_rank_above_its_limit_stop_before_training(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setenv("STUDY_VLLM_PYTHON", sys.executable)  # the project's env: no vLLM in it
    config = write_config(tmp_path, generate={"backend": "vllm", "vllm": {"max_lora_rank": 8}})
    code, out, err = run(tmp_path, config, capsys)
    assert code == 2 and "[FAIL] generate backend (vllm)" in out
    assert "generate.vllm.max_lora_rank: the models this run trains get LoRA rank train.lora.r = 16, above max_lora_rank 8" in err
    assert nothing_trained(tmp_path)
    config = write_config(tmp_path, generate={"backend": "vllm"})
    code, out, err = run(tmp_path, config, capsys)
    assert code == 2 and "generate.backend: vllm needs vLLM, which" in err and nothing_trained(tmp_path)


def test_the_server_backend_is_asked_for_every_served_name_before_training(tmp_path, capsys, server):
    server.models = ["gemma-base"]
    gen = {"backend": "server", "server": {"base_url": server.base_url, "api_key_env": ENV, "models": {"base": "gemma"}}}
    code, out, err = run(tmp_path, write_config(tmp_path, generate=gen), capsys)
    assert code == 2 and "[FAIL] generate backend (server)" in out
    assert f"generate.server.models: {server.base_url} does not serve 'base' (served name 'gemma'); it lists 'gemma-base'" in err
    assert nothing_trained(tmp_path) and server.total == 0

    gen["server"]["models"] = {"base": "gemma-base"}
    lines = []
    cfg = load_config(write_config(tmp_path, generate=gen))
    sd = study_dir(cfg, tmp_path)
    checks = check_study(cfg, sd, plan(cfg, sd), out=lines.append)
    assert all(c.ok for c in checks) and server.total == 0
    assert f"{server.base_url} answers and serves 'gemma-base'; after training it must serve '4', '12'" in "\n".join(lines)

    gen["server"]["base_url"] = "http://127.0.0.1:1/v1"  # nobody listens there
    code, out, err = run(tmp_path, write_config(tmp_path, generate=gen), capsys)
    assert code == 2 and "generate.server.base_url: http://127.0.0.1:1/v1 is not reachable" in err and nothing_trained(tmp_path)


# ------------------------------------------------------------------ checkpoints

def test_the_paper_runs_checkpoints_are_counted_timed_and_must_fit_the_disk_twice(tmp_path, monkeypatch):
    """paper.yaml: 7.07B parameters, ZeRO-3, so a checkpoint holds the 16-bit model (2 bytes a parameter) and the fp32
    master weights and Adam moments (12): about 99 GB, with the tokenizer (not on this machine: 64 MiB assumed) and the
    small files. At a share of 0.05 (Trainer: every ceil(0.05 x steps) steps) the runs of 6,250 .. 62,500 steps write
    19, 19, 19 and 20, about 1.1 hours at 2 GB/s (a 20-step cadence wrote 5,937). Two at once, a model being published
    and four published 16-bit models must fit with the margin (about 346 GB): 300 GB free is refused, 400 GB passes."""
    import helpers.estimate as estimate

    cfg = load_config("configs/paper.yaml", ["train.save_minutes=null"])  # the step cadence alone (time: below)
    sd = study_dir(cfg, tmp_path)
    runs = [r for r in plan(cfg, sd) if r.stage.name == "finetune"]
    extra = estimate.ASSUMED_TOKENIZER_BYTES + estimate.SMALL_FILES_BYTES
    one, model = 14 * 7.07e9 + extra, 2 * 7.07e9 + extra
    monkeypatch.setattr(estimate, "free_disk", lambda sd: 300e9)
    plan_ = estimate.checkpoint_plan(cfg, sd)
    assert plan_["bytes"] == pytest.approx(one) and plan_["counts"] == [19, 19, 19, 20]
    assert plan_["write_hours"] == pytest.approx(77 * one / 2e9 / 3600) and plan_["need"] == pytest.approx(2 * one + 4 * model)
    # the tokenized cache of the 2M subset: 300 tokens a row (no data_stats.json yet) at 9 bytes, and the build's copy
    # of the subset file at 1 KiB a record
    tokenized = 2e6 * (300 * 9 + 64) + 2e6 * 1024 + estimate.TOKENIZED_FILES_BYTES
    notebooks = 4 * (2 * estimate.NOTEBOOK_BYTES["finetune"] + estimate.HTML_EXTRA_BYTES)  # executed, and in HTML
    need = (4 * model + 2 * one + model + tokenized + notebooks) * (1 + estimate.MARGIN_SHARE) + estimate.MARGIN_BYTES
    assert estimate.disk_plan(cfg, sd, runs)["disks"][0]["need"] == pytest.approx(need)
    with pytest.raises(PreflightFailed, match=r"disk: the run needs at most 322.2 GiB on the disk of .*\(checkpoints \(two "
                                              r"of 92.2 GiB\) and a model being published 197.7 GiB; published models \(4 "
                                              r"of 13.2 GiB\) 52.9 GiB; .*\), but it has 279.4 GiB free"):
        check_study(cfg, sd, runs, out=lambda s: None)
    monkeypatch.setattr(estimate, "free_disk", lambda sd: 400e9)
    lines = []
    check_study(cfg, sd, runs, out=lines.append)
    assert any("[ok  ] checkpoints: 77 of 92.2 GiB (every 0.05 of a run), about 1.1 hours of writing" in x for x in lines)
    assert any(x.startswith("  [ok  ] disk: ") and "322.2 GiB at most of 372.5 GiB free" in x for x in lines)
    timed = estimate.checkpoint_plan(load_config("configs/paper.yaml"), sd)["counts"]  # and one every 2 hours
    assert all(t > c for t, c in zip(timed[1:], plan_["counts"][1:])) and sum(timed) < 200


@pytest.mark.vllm
def test_lora_through_vllm_on_bloom_is_refused_before_training(tmp_path, tiny_bloom_dir):
    """vLLM's BloomForCausalLM has no LoRA support: LoRA adapters of the paper's base could never be served. The real
    vLLM (make vllm-env) is asked; a full fine-tune of the same model passes."""
    import os

    if not os.environ.get("STUDY_VLLM_PYTHON"):
        pytest.skip("STUDY_VLLM_PYTHON is not set: run `make test-vllm`")
    from helpers.study.config import StudyConfig

    raw = {**MICRO, "model": {"base": str(tiny_bloom_dir)}, "generate": {"backend": "vllm", "batch_size": 4}}
    for method, ok in (("lora", False), ("full", True)):
        cfg = StudyConfig.model_validate({**raw, "train": {**MICRO["train"], "method": method}})
        sd = study_dir(cfg, tmp_path)
        runs = [r for r in plan(cfg, sd) if r.stage.name in ("finetune", "generate")]
        if ok:
            check_study(cfg, sd, runs, out=lambda s: None)
        else:
            with pytest.raises(PreflightFailed, match=r"generate.backend: vllm cannot serve LoRA adapters on "
                                                      r"BloomForCausalLM .* Set train.method: full"):
                check_study(cfg, sd, runs, out=lambda s: None)
