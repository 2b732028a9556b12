"""The judge tests' shared fixture: a study folder whose base model answered the items of llm_study.py."""
import pytest
from fake_openai import ENV, KEY
from llm_study import ANSWERS, ITEMS

from helpers.study.files import write_jsonl


@pytest.fixture
def study(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    sd = tmp_path / "data" / "unit"
    write_jsonl(sd / "eval.jsonl", ITEMS)
    write_jsonl(sd / "answers" / "base.jsonl",
                [{"id": it["id"], "category": it["category"], "answer": ANSWERS[it["id"]]} for it in ITEMS])
    return sd
