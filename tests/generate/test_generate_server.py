"""The server backend of the generate stage against a real local HTTP server (tests/fake_openai.py).

Counts are taken on the server side. The fake answers ``/v1/completions`` deterministically, one
token per character cut at ``max_tokens``, so the rows can be checked exactly. Backoffs are tiny.
"""
from __future__ import annotations

import pytest
from builders import make_config
from fake_openai import ENV, KEY, FakeOpenAI, completion_for

from helpers.generate.backend import GenerateError
from helpers.generate.server import cache_path
from helpers.generate.stage import generate_answers
from helpers.study.files import read_json, read_jsonl, write_jsonl
from helpers.study.loading import ConfigError, load_config
from helpers.study.prompt import STOP, format_prompt

ITEMS = [{"id": f"e{i}", "category": cat, "question": f"问题{i}：" + "很长" * i, "reference": "答"}
         for i, cat in enumerate(["math", "code", "math", "rewrite", "code", "translation"])]
BUDGET = {"default": 6, "code": 16}


@pytest.fixture
def server(server):
    server.models = None  # a server without GET /v1/models unless a test sets served_models
    return server


@pytest.fixture
def sd(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    write_jsonl(tmp_path / "eval.jsonl", ITEMS)
    return tmp_path


def cfg_for(srv: FakeOpenAI, **server):
    s = {"base_url": srv.base_url, "api_key_env": ENV, "concurrency": 3, "max_retries": 3, "timeout_s": 5,
         "backoff_base_s": 0.001, "backoff_max_s": 0.01, **server}
    return make_config("unused-base", generate={"backend": "server", "max_new_tokens": BUDGET, "server": s})


def expected_row(it: dict, model: str = "base") -> dict:
    budget = BUDGET.get(it["category"], BUDGET["default"])
    text, n, finish = completion_for(format_prompt(it["question"]), budget)
    return {"id": it["id"], "category": it["category"], "answer": text, "new_tokens": n,
            "truncated": finish == "length" or n >= budget, "model": model}


def test_answers_are_raw_greedy_completions_with_the_budget_and_stop(server, sd):
    path = generate_answers(cfg_for(server), "base", sd)
    rows = sorted(read_jsonl(path), key=lambda r: r["id"])
    assert rows == [expected_row(it) for it in ITEMS]
    assert any(r["truncated"] for r in rows) and not all(r["truncated"] for r in rows)
    assert len(server.bodies) == len(ITEMS)
    for body in server.bodies:
        it = next(it for it in ITEMS if format_prompt(it["question"]) == body["prompt"])  # our template, raw
        assert body["model"] == "base" and body["temperature"] == 0.0 and body["stop"] == [STOP]
        assert body["max_tokens"] == BUDGET.get(it["category"], BUDGET["default"])


def test_rerun_sends_nothing_and_a_deleted_answers_file_comes_back_from_the_cache(server, sd):
    cfg = cfg_for(server)
    path = generate_answers(cfg, "base", sd)
    first = sorted(read_jsonl(path), key=lambda r: r["id"])
    server.reset_counts()
    generate_answers(cfg, "base", sd)
    assert server.total == 0
    path.unlink()
    generate_answers(cfg, "base", sd)
    assert server.total == 0
    assert sorted(read_jsonl(path), key=lambda r: r["id"]) == first
    assert cache_path(sd, "base").exists()


def test_429_5xx_dropped_connections_and_timeouts_are_retried(server, sd):
    server.inject(["429", "500", "ok"], match="问题1")
    server.inject(["drop", "503", "ok"], match="问题2")
    server.inject(["slow:1.5", "ok"], match="问题3")
    server.retry_after = "0.01"
    path = generate_answers(cfg_for(server, timeout_s=0.5), "base", sd)
    assert sorted(read_jsonl(path), key=lambda r: r["id"]) == [expected_row(it) for it in ITEMS]
    for n in ("1", "2"):
        key = next(k for k in server.requests if f"问题{n}" in k[0])
        assert server.requests[key] == 3 and server.answered[key] == 1
    key = next(k for k in server.requests if "问题3" in k[0])
    assert server.requests[key] == 2


def test_retries_used_up_stop_the_stage_keeping_the_answers_and_a_rerun_sends_only_the_rest(server, sd):
    server.inject(["500"] * 10, match="问题4")
    cfg = cfg_for(server, max_retries=2)
    with pytest.raises(GenerateError, match=r"1 of 6 answer requests .* failed after their retries .* run the stage again"):
        generate_answers(cfg, "base", sd)
    assert sorted(r["id"] for r in read_jsonl(sd / "answers" / "base.jsonl")) == ["e0", "e1", "e2", "e3", "e5"]
    server.clear_faults()
    server.reset_counts()
    path = generate_answers(cfg, "base", sd)
    assert server.total == 1 and "问题4" in next(iter(server.requests))[0]
    assert sorted(read_jsonl(path), key=lambda r: r["id"]) == [expected_row(it) for it in ITEMS]


def test_served_names_come_from_the_mapping(server, sd):
    server.served_models = ["gemma-base", "640"]
    path = generate_answers(cfg_for(server, models={"base": "gemma-base"}), "base", sd)
    assert {b["model"] for b in server.bodies} == {"gemma-base"}
    note = read_json(sd / "answers" / "base.engine.json")
    assert len(note.pop("answers_key")) == 64
    assert note == {
        "backend": "server", "engine": "OpenAI-compatible server (fake)", "base_url": server.base_url, "served_model": "gemma-base"}
    assert {r["model"] for r in read_jsonl(path)} == {"base"}  # the study's name in the file, not the server's


def test_a_model_the_server_does_not_serve_stops_before_any_answer(server, sd):
    server.served_models = ["gemma-base", "640"]
    with pytest.raises(GenerateError, match=r"generate.server.models: the server at .* does not serve 'base' .* "
                                            r"'640', 'gemma-base'"):
        generate_answers(cfg_for(server), "base", sd)
    assert server.total == 0 and not (sd / "answers" / "base.jsonl").exists()


def test_without_v1_models_a_404_on_the_first_request_names_the_mapping(server, sd, monkeypatch):
    server.served_models = ["gemma-base"]
    import fake_openai

    monkeypatch.setattr(fake_openai._Handler, "do_GET", lambda self: self._error(404, "no route"))
    with pytest.raises(GenerateError, match=r"404: check generate.server.models\['base'\]"):
        generate_answers(cfg_for(server, concurrency=1), "base", sd)
    assert not read_jsonl(sd / "answers" / "base.jsonl") if (sd / "answers" / "base.jsonl").exists() else True


def test_unreachable_server_missing_key_and_refused_key_name_the_setting(server, sd, monkeypatch):
    server.served_models = ["base"]
    dead = FakeOpenAI().start()
    url = dead.base_url
    dead.stop()
    with pytest.raises(GenerateError, match=r"generate.server.base_url: cannot reach the server at .*No answer"):
        generate_answers(cfg_for(server, base_url=url, max_retries=0), "base", sd)
    monkeypatch.setenv(ENV, "wrong-key")
    with pytest.raises(GenerateError, match=r"refused the API key from \$STUDY_TEST_API_KEY"):
        generate_answers(cfg_for(server), "base", sd)
    monkeypatch.delenv(ENV)
    with pytest.raises(GenerateError, match=r"generate.server.api_key_env: the environment variable STUDY_TEST_API_KEY"):
        generate_answers(cfg_for(server), "base", sd)
    assert server.total == 0 and not (sd / "answers" / "base.jsonl").exists()


def test_settings_of_a_backend_not_selected_are_errors():
    server = ["generate.backend=server", "generate.server.base_url=http://h/v1"]
    for overrides, problem in [
            (["generate.vllm.dtype=bfloat16"], "generate.vllm: these settings apply to the vllm backend only"),
            (["generate.server.base_url=http://127.0.0.1:1/v1"], "generate.server: these settings apply to the server backend only"),
            (["generate.backend=server"], "generate.server: required with generate.backend: server"),
            ([*server, "generate.server.models={'999': x}"], r"generate.server.models: \['999'\] are not models of this study")]:
        with pytest.raises(ConfigError, match=problem):
            load_config("configs/micro.yaml", overrides)
    cfg = load_config("configs/micro.yaml", server)
    assert cfg.generate.server.concurrency == cfg.generate.batch_size == 12  # in flight: the batch size unless set
    cfg = load_config("configs/micro.yaml", ["generate.backend=vllm"])
    assert cfg.generate.vllm.max_lora_rank == 16 and load_config("configs/micro.yaml").generate.backend == "hf"
