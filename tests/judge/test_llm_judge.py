"""The LLM judge against a real local HTTP server (tests/fake_openai.py) with the real openai client.

Counts are taken on the server side: what reached it per request key (prompt, seed = run).
Backoffs are tiny so the whole file runs in well under a minute.
"""
from __future__ import annotations

import _thread
import json
import logging
import os
import time

import pytest
from fake_openai import ENV, KEY, NO_SCORE_REPLY, FakeOpenAI, score_for
from llm_study import ANSWERS, ITEMS, make_cfg

from helpers.judge.llm import JudgeError, JudgeIncomplete, build_prompt, cache_path, load_prompts, uses_reference
from helpers.judge.parse import parse_score
from helpers.judge.stage import judge_answers
from helpers.study.categories import CATEGORIES, canonical_category
from helpers.study.config import StudyConfig
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.paths import REPO


def expected_keys(cfg: StudyConfig) -> dict[tuple, tuple[str, int]]:
    """Every request key the stage must send -> (item id, run)."""
    prompts = load_prompts(cfg.judge.prompts_file)
    return {(build_prompt(prompts[it["category"]], it, ANSWERS[it["id"]]), run): (it["id"], run)
            for it in ITEMS for run in range(cfg.judge.runs)}


def key_of(srv: FakeOpenAI, item_id: str) -> list[tuple]:
    it = next(i for i in ITEMS if i["id"] == item_id)
    return [k for k in srv.requests if it["question"] in k[0]]


# ------------------------------------------------------------------------------ parse_score

@pytest.mark.parametrize("text, expected", [
    ("得分：1", 1.0),
    ("得分:0.8", 0.8),
    ("得分：1分", 1.0),
    ("得分为0.8", 0.8),
    ("最终得分是 0.3 分。", 0.3),
    ("Score: 0.5", 0.5),
    ("score: 1.0", 1.0),
    ("SCORE=0.25", 0.25),
    ("回答正确，步骤完整（共 3 步，均无误）。\n得分：0.9", 0.9),
    ("The answer gets 2 of 3 facts right.\nScore: 0.7", 0.7),
    ("**得分**：**0.6**", 0.6),
    ("得分：【0.4】", 0.4),
    ("得分（0-1）：0.9", 0.9),
    ("初步得分：0.4。复核后改为：最终得分：0.8", 0.8),
    ("得分：0.5\n补充说明：若满分为 1 分，此回答得分较低。", 0.5),
    ("得分：80%", 0.8),
    ("Score: 4/5", 0.8),
    ("评分：0.7/1", 0.7),
    ("分数：0", 0.0),
    ("０．５", 0.5),
    ("得分：０．７", 0.7),
    ("0.6", 0.6),
    ("得分：8分", None),
    ("Score: 7", None),
    ("得分：-0.5", None),
    ("得分：1.5", None),
    ("回答正确，列出了 3 条建议，满分 1 分。", None),
    ("我无法判断。", None),
    ("", None),
    (None, None),
    ("Score: 3/0", None),
])
def test_parse_score_on_messy_outputs(text, expected):
    assert parse_score(text) == expected


# ------------------------------------------------------------------------------ prompts

def test_our_prompts_cover_every_use_case_and_ask_for_the_score_marker():
    prompts = load_prompts(REPO / "configs" / "judge_prompts.jsonl")
    assert set(prompts) == set(CATEGORIES)
    assert all("得分" in p for p in prompts.values())
    raw = read_jsonl(REPO / "configs" / "judge_prompts.jsonl")
    assert all(set(r) == {"class", "prompt"} for r in raw)


def test_a_belle_style_prompts_file_with_messy_labels_replaces_ours(tmp_path):
    labels = ["数学", "Code", "COT", " classification ", "Extraction", "open qa", "Closed_QA", "generation",
              "brainstorm", "Rewrite", "翻译", "summarization"]
    f = tmp_path / "p.jsonl"
    write_jsonl(f, [{"class": lab, "prompt": f"rubric for {lab}，写出得分："} for lab in labels])
    prompts = load_prompts(f)
    assert set(prompts) == set(CATEGORIES)
    assert prompts["open_qa"] == "rubric for open qa，写出得分：" and prompts["translation"].startswith("rubric for 翻译")
    assert [canonical_category(x) for x in ("Open-QA", "brainstorming", "總結")] == ["open_qa", "brainstorming", None]


def test_unknown_labels_are_all_listed(tmp_path):
    f = tmp_path / "p.jsonl"
    write_jsonl(f, [{"class": "math", "prompt": "x"}, {"class": "poetry", "prompt": "x"},
                    {"class": "诗歌", "prompt": "x"}])
    with pytest.raises(JudgeError, match=r"2 unknown category label\(s\): 'poetry' x1 \(first at line 2\), '诗歌' x1") as e:
        load_prompts(f)
    assert str(f) in str(e.value)
    write_jsonl(f, [{"class": "open qa", "prompt": "x"}, {"class": "Open_QA", "prompt": "y"}])
    with pytest.raises(JudgeError, match=r"line 2: a second prompt for open_qa \(first at line 1\)"):
        load_prompts(f)


def test_reference_is_left_out_for_generation_brainstorming_rewrite(study, server):
    by_id = {it["id"]: it for it in ITEMS}
    assert [i for i in by_id if not uses_reference(by_id[i])] == ["g1", "b1", "r1"]
    p = build_prompt("R", by_id["g1"], "A")
    assert "【参考答案】" not in p and "REF-G1-SECRET-OUT" not in p
    assert "【参考答案】\n42" in build_prompt("R", by_id["m1"], "42")
    judge_answers(make_cfg(server, runs=1), "base", study)
    sent = [k[0] for k in server.requests]
    assert not any("REF-G1-SECRET-OUT" in s for s in sent)
    assert sum("【参考答案】" in s for s in sent) == 5  # math x2, classification, translation, summarization


# ------------------------------------------------------------------------------ the stage

def test_every_item_is_scored_or_null_with_a_reason(study, server):
    server.inject(["noscore"] * 10, match=ITEMS[3]["question"])  # translation: never a score
    cfg = make_cfg(server)
    rows = read_jsonl(judge_answers(cfg, "base", study))
    assert len(rows) == len(ITEMS) * 3
    assert {(r["id"], r["run"]) for r in rows} == {(it["id"], run) for it in ITEMS for run in range(3)}
    keys = {v: k for k, v in expected_keys(cfg).items()}
    for r in rows:
        assert {"id", "run", "score", "raw", "judge", "usage"} <= set(r) and r["judge"] == "fake-judge"
        if r["id"] == "t1":
            assert r["score"] is None and r["raw"] == NO_SCORE_REPLY
            assert "no score found in 2 replies" in r["reason"] and r["usage"]["requests"] == 2
        else:
            assert r["score"] == score_for(keys[(r["id"], r["run"])][0])
            assert "reason" not in r and r["usage"]["requests"] == 1
        u = r["usage"]
        assert u["prompt_tokens"] > 0 and u["cost"] == pytest.approx(
            u["prompt_tokens"] / 1000 * 0.5 + u["completion_tokens"] / 1000 * 1.5)
    # each key of t1 was asked 1 + parse_retries times, everything else once
    assert all(server.requests[k] == (2 if v[0] == "t1" else 1) for k, v in expected_keys(cfg).items())
    assert set(server.requests) == set(expected_keys(cfg))


def test_a_missing_key_fails_before_any_request(study, server, monkeypatch):
    monkeypatch.delenv(ENV)
    with pytest.raises(JudgeError, match=rf"environment variable {ENV} is not set"):
        judge_answers(make_cfg(server), "base", study)
    assert server.total == 0


def test_429_waits_for_retry_after(study, server):
    server.retry_after = "1"
    server.inject(["429"], match=ITEMS[0]["question"])
    cfg = make_cfg(server, runs=1, backoff_base_s=0.001, backoff_max_s=0.001)
    t0 = time.monotonic()
    rows = read_jsonl(judge_answers(cfg, "base", study))
    assert all(r["score"] is not None for r in rows)
    (k,) = key_of(server, "m1")
    assert server.requests[k] == 2
    gap = server.times[k][1] - server.times[k][0]
    assert gap >= 0.95, f"retried after {gap:.2f} s despite Retry-After: 1"
    assert time.monotonic() - t0 < 10


def test_5xx_drops_and_timeouts_are_retried_up_to_the_bound(study, server):
    server.inject(["500", "drop", "503"], match=ITEMS[0]["question"])        # m1: succeeds on the 4th attempt
    server.inject(["slow:3"], match=ITEMS[1]["question"])                    # m2: times out once
    server.inject(["500"] * 10, match=ITEMS[2]["question"])                  # c1: never succeeds
    server.inject(["drop"] * 10, match=ITEMS[3]["question"])                 # t1: never answers
    server.inject(["400"] * 10, match=ITEMS[6]["question"])                  # r1: a 400 is not retried
    cfg = make_cfg(server, runs=1, max_retries=3, timeout_s=1.0, max_failures=3)
    rows = {r["id"]: r for r in read_jsonl(judge_answers(cfg, "base", study))}
    n = {i: server.requests[key_of(server, i)[0]] for i in ("m1", "m2", "c1", "t1", "r1", "s1")}
    assert n == {"m1": 4, "m2": 2, "c1": 4, "t1": 4, "r1": 1, "s1": 1}  # 1 + max_retries at most
    assert rows["r1"]["score"] is None and rows["r1"]["reason"] == "request failed: HTTP 400: Bad request. (not retried)"
    assert rows["m1"]["score"] is not None and rows["m2"]["score"] is not None
    assert rows["c1"]["score"] is None and rows["c1"]["reason"] == "request failed: HTTP 500 after 4 attempts"
    assert rows["t1"]["score"] is None and rows["t1"]["reason"].startswith("request failed: connection error")
    assert rows["t1"]["reason"].endswith("after 4 attempts")


def test_too_many_failures_stop_the_stage_without_a_judgments_file(study, server):
    server.inject(["500"] * 10, match=ITEMS[2]["question"])
    with pytest.raises(JudgeIncomplete, match=r"1 of 8 judge requests failed .* run the stage again"):
        judge_answers(make_cfg(server, runs=1, max_retries=1), "base", study)
    assert not (study / "judgments" / "base.jsonl").exists()
    assert server.requests[key_of(server, "c1")[0]] == 2


def test_401_stops_at_once_without_retries(study, server, monkeypatch):
    monkeypatch.setenv(ENV, "sk-wrong-key-0000")
    with pytest.raises(JudgeError, match=rf"refused the API key from \${ENV} \(HTTP 401\)") as e:
        judge_answers(make_cfg(server, concurrency=1, max_retries=5), "base", study)
    assert server.total == 1 and "sk-wrong-key-0000" not in str(e.value)
    server.reset_counts()
    with pytest.raises(JudgeError, match="HTTP 401"):
        judge_answers(make_cfg(server, concurrency=4, max_retries=5), "base", study)
    assert server.total <= 4 and max(server.requests.values()) == 1  # the ones in flight, none again
    assert not (study / "judgments" / "base.jsonl").exists()


def test_a_rerun_sends_zero_requests_and_writes_the_same_file(study, server):
    cfg = make_cfg(server)
    path = judge_answers(cfg, "base", study)
    first = path.read_bytes()
    assert server.total == len(ITEMS) * 3
    server.reset_counts()
    assert judge_answers(cfg, "base", study).read_bytes() == first
    assert server.total == 0
    # a new prompt template (or judge model) is a new request
    f = study / "other_prompts.jsonl"
    write_jsonl(f, [{"class": c, "prompt": f"另一套标准：{c}，写出得分："} for c in CATEGORIES])
    judge_answers(make_cfg(server, prompts_file=str(f)), "base", study)
    assert server.total == len(ITEMS) * 3


def test_resume_after_the_server_fails_sends_each_request_once(study, server):
    cfg = make_cfg(server, max_retries=1)
    server.fail_after(10, "500")  # 10 answered, then only errors
    with pytest.raises(JudgeIncomplete):
        judge_answers(cfg, "base", study)
    assert sum(server.answered.values()) == 10
    server.clear_faults()
    rows = read_jsonl(judge_answers(cfg, "base", study))
    assert all(r["score"] is not None for r in rows)
    expected = expected_keys(cfg)
    assert set(server.answered) == set(expected)
    assert all(n == 1 for n in server.answered.values())  # across both runs


@pytest.fixture
def sigint():
    """Ctrl-C raises KeyboardInterrupt, also where pytest was started in the background by a
    non-interactive shell (which makes the process ignore SIGINT)."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_resume_after_a_keyboard_interrupt(study, server, sigint):
    cfg = make_cfg(server, concurrency=2)
    server.delay = 0.02

    def interrupt(n):
        if n == 9:
            _thread.interrupt_main()

    server.on_request = interrupt
    with pytest.raises(KeyboardInterrupt):
        judge_answers(cfg, "base", study)
    server.on_request = None
    cache = cache_path(cfg, study)
    cached = read_jsonl(cache)
    assert 0 < len(cached) < len(ITEMS) * 3
    # a kill mid-write leaves a torn last line: it is dropped with a warning
    with open(cache, "a", encoding="utf-8") as fh:
        fh.write('{"key": "abc", "attem')
    done_before = dict(server.answered)
    server.reset_counts()
    with pytest.warns(UserWarning, match="torn last line"):
        rows = read_jsonl(judge_answers(cfg, "base", study))
    assert len(rows) == len(ITEMS) * 3 and all(r["score"] is not None for r in rows)
    expected = expected_keys(cfg)
    cached_keys = {k for k, v in expected.items() if any(c["id"] == v[0] and c["run"] == v[1] for c in cached)}
    assert len(cached_keys) == len(cached)
    assert not any(server.requests[k] for k in cached_keys)  # nothing cached is sent again
    assert set(server.requests) == set(expected) - cached_keys
    # at most the requests in flight at the interrupt (<= concurrency) were answered but lost
    lost = [k for k in done_before if k not in cached_keys]
    assert len(lost) <= cfg.judge.concurrency


# ------------------------------------------------------------------------------ the secret

@pytest.mark.slow  # a notebook through papermill
def test_the_key_appears_in_no_file_log_or_notebook(tmp_path, server, monkeypatch, capfd, caplog):
    """Run 04_judge through papermill on a config pointing at the fake server, with retries on."""
    import papermill as pm

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, KEY)
    root = tmp_path / "root"
    sd = root / "data" / "nbjudge"
    write_jsonl(sd / "eval.jsonl", ITEMS)
    write_jsonl(sd / "answers" / "base.jsonl", [{"id": it["id"], "category": it["category"],
                                                 "answer": ANSWERS[it["id"]]} for it in ITEMS])
    server.inject(["429", "500", "noscore"], match=ITEMS[0]["question"])
    server.retry_after = "0"
    config = tmp_path / "nbjudge.yaml"
    config.write_text(json.dumps({
        "study": "nbjudge", "scales": [4], "data": {"pool_size": 10},
        "judge": {"kind": "openai", "model": "fake-judge", "base_url": server.base_url, "api_key_env": ENV,
                  "runs": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.01, "timeout_s": 5}}))
    out = tmp_path / "04_judge.executed.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "04_judge.ipynb"), str(out),
                        parameters={"config": str(config), "root": str(root), "scale": "base"},
                        kernel_name="python3", cwd=str(REPO), progress_bar=False)
    rows = read_jsonl(sd / "judgments" / "base.jsonl")
    assert len(rows) == len(ITEMS) * 2 and all(r["score"] is not None for r in rows)
    assert server.requests[key_of(server, "m1")[0]] == 4  # 429, 500, no score, then a score
    assert "requests" in out.read_text(encoding="utf-8")  # the usage cell ran
    # and once in this process, so its logs are captured too
    server.reset_counts()
    judge_answers(make_cfg(server), "base", sd)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent.name == "judge_cache" for p in files)
    for p in files:
        assert KEY.encode() not in p.read_bytes(), f"the key leaked into {p}"
    captured = capfd.readouterr()
    assert KEY not in captured.out + captured.err
    assert KEY not in caplog.text
    assert KEY in os.environ[ENV]  # (it was there to leak)


def test_runs_inside_a_running_event_loop_as_in_jupyter(study, server):
    """A notebook kernel already runs an asyncio loop: the judge then runs its own in a worker thread."""
    import asyncio

    async def cell():
        return judge_answers(make_cfg(server, runs=1), "base", study)

    rows = read_jsonl(asyncio.run(cell()))
    assert len(rows) == len(ITEMS) and all(r["score"] is not None for r in rows)


def test_the_test_server_ignores_a_request_whose_client_died_mid_body(server):
    """The chaos test counts paid requests server-side; a client killed between its headers and
    the end of its body never made a request, so the fake server must neither count nor answer it."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(server.base_url)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "问题"}]}).encode()
    with socket.create_connection((url.hostname, url.port)) as s:
        s.sendall(f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1024) == b""  # closed without an answer
    assert server.total == 0 and not server.requests


def test_every_judgment_records_the_model_that_answered_and_its_fingerprint(study, server):
    """An alias (gpt-3.5-turbo) is answered by whatever dated snapshot stands behind it that month: each row keeps the
    name the server answered with and its system_fingerprint, a rerun from the cache the ones that answered then,
    and the analysis counts them per judge for the report."""
    from helpers.analysis.report import _served
    from helpers.analysis.scores import judge_usage

    server.snapshots = {"fake-judge": "fake-judge-2024-01-25"}
    cfg = make_cfg(server)
    rows = read_jsonl(judge_answers(cfg, "base", study))
    assert {(r["served_model"], r["system_fingerprint"]) for r in rows} == {("fake-judge-2024-01-25", "fp_fake0")}
    server.fingerprint = "fp_other"
    assert read_jsonl(judge_answers(cfg, "base", study)) == rows  # cached: the fingerprint of the reply kept
    served = judge_usage(study, ["base"])["served"]
    assert served == {"fake-judge": {"fake-judge-2024-01-25 / fp_fake0": len(ITEMS) * 3}}
    assert _served({"judge_usage": {"served": served}}) == [("fake-judge", "fake-judge-2024-01-25 / fp_fake0", len(ITEMS) * 3)]


def test_the_paper_judge_is_a_dated_snapshot():
    """gpt-3.5-turbo is an alias OpenAI moves to newer models; the paper config names one snapshot."""
    import re

    from helpers.study.loading import load_config

    model = load_config("configs/paper.yaml").judge.model
    assert re.search(r"-\d{4}(-\d{2}-\d{2})?$", model), model
