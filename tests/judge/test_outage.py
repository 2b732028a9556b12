"""API outages against the local fake server (tests/fake_openai.py): a 30 s judge outage in the
middle of a run is ridden out by the bounded backoff; one longer than the bound stops the stage
with a clear message and a state that a rerun completes without sending anything twice."""
import threading
import time

import pytest
from fake_openai import FakeOpenAI
from llm_study import make_cfg

from helpers.judge.llm import JudgeIncomplete
from helpers.judge.stage import judge_answers
from helpers.study.files import read_jsonl

OUTAGE_S = 30


def start_outage(srv: FakeOpenAI, after: int, seconds: float) -> threading.Timer:
    """Let ``after`` requests through, then answer 503 to everything for ``seconds``."""
    srv.fail_after(after, "503")
    timer = threading.Timer(seconds, srv.clear_faults)
    timer.daemon = True
    timer.start()
    return timer


@pytest.mark.slow  # a real 30 s outage
def test_a_30_second_outage_is_ridden_out(study, server):  # noqa: F811
    # backoff 1, 2, 4, 8, 8, 8 ... s: nine retries cover about 47 s, more than the outage
    cfg = make_cfg(server, max_retries=9, backoff_base_s=1.0, backoff_max_s=8.0, concurrency=4)
    t0 = time.monotonic()
    timer = start_outage(server, after=6, seconds=OUTAGE_S)
    rows = read_jsonl(judge_answers(cfg, "base", study))
    timer.cancel()
    assert time.monotonic() - t0 >= OUTAGE_S - 1  # it really waited the outage out
    assert len(rows) == 8 * 3 and all(r["score"] is not None for r in rows)
    assert server.actions["503"] > 0
    assert all(n == 1 for n in server.answered.values())  # each success exactly once


def test_an_outage_longer_than_the_bound_stops_with_a_resumable_state(study, server):  # noqa: F811
    cfg = make_cfg(server, max_retries=2, backoff_base_s=0.05, backoff_max_s=0.1)
    server.fail_after(5, "503")
    with pytest.raises(JudgeIncomplete, match="failed after their retries"):
        judge_answers(cfg, "base", study)
    assert not (study / "judgments" / "base.jsonl").exists()
    answered_before = sum(server.answered.values())
    assert answered_before == 5
    server.clear_faults()
    rows = read_jsonl(judge_answers(cfg, "base", study))
    assert len(rows) == 24 and all(r["score"] is not None for r in rows)
    assert all(n == 1 for n in server.answered.values())  # the 5 cached replies were not asked again
