"""The offline judge: each check type on right, partial and wrong answers, and the code sandbox."""
from __future__ import annotations

import tempfile
import time

import pytest

from helpers.judge.offline import count_units, score_answer


def item(check: dict | None, reference: str = "", id: str = "t-1") -> dict:
    return {"id": id, "category": "x", "question": "q", "reference": reference, "check": check}


@pytest.mark.parametrize("answer, expected, score", [
    ("答案：42", 42, 1.0), ("42。", 42, 1.0), ("6×7=42", 42, 1.0), ("４２", 42, 1.0), ("共1,234元", 1234, 1.0),
    ("2.50", 2.5, 1.0), ("3/4", 0.75, 1.0), ("0.75", "3/4", 1.0), ("8-2=6", 6, 1.0), ("结果是-3", -3, 1.0),
    ("答案是六", 6, 1.0), ("41", 42, 0.0), ("42.1", 42, 0.0), ("26-6=20，答案是21。", 20, 0.0), ("不知道", 5, 0.0),
])
def test_number(answer, expected, score):
    got, why = score_answer(item({"type": "number", "answer": expected}), answer)
    assert got == score, why


def test_number_rationale():
    assert score_answer(item({"type": "number", "answer": 42}), "41")[1] == "expected 42, got 41"


@pytest.mark.parametrize("answer, score", [
    ("正面", 1.0), ("正面。", 1.0), ("这条评论是正面的", 1.0), ("负面", 0.0), ("不是正面，是负面", 1.0), ("中性", 0.0),
])
def test_label(answer, score):
    check = {"type": "label", "label": "正面", "labels": ["正面", "负面"]}
    assert score_answer(item(check), answer)[0] == score


@pytest.mark.parametrize("answer, score", [
    ("张伟、杭州", 1.0), ("杭州，张伟", 1.0), ("张伟和杭州", 1.0), ("张伟", 2 / 3), ("张伟、杭州、北京", 0.8), ("李娜", 0.0),
])
def test_spans(answer, score):
    got, _ = score_answer(item({"type": "spans", "spans": ["张伟", "杭州"]}), answer)
    assert got == pytest.approx(score)


def test_spans_keep_expected_names_with_joining_characters():
    assert score_answer(item({"type": "spans", "spans": ["呼和浩特"]}), "呼和浩特")[0] == 1.0


def test_text_and_passage_char_f1():
    assert score_answer(item({"type": "text"}, "巴黎"), "巴黎。")[0] == 1.0
    assert score_answer(item({"type": "text"}, "巴黎"), "法国的首都是巴黎")[0] == pytest.approx(0.4)
    assert score_answer(item({"type": "text"}, "巴黎"), "伦敦")[0] == 0.0
    check = {"type": "answer_in_passage", "answer": "35岁"}
    assert score_answer(item(check, "35岁"), "35岁")[0] == 1.0
    assert score_answer(item(check, "35岁"), "35")[0] == pytest.approx(0.8)


def test_translation_chrf():
    it = item({"type": "translation", "target": "en"}, "My friend is in the kitchen.")
    assert score_answer(it, "My friend is in the kitchen.")[0] == pytest.approx(1.0)
    partial = score_answer(it, "My friend is in a kitchen.")[0]
    assert 0.5 < partial < 1.0
    assert score_answer(it, "I like cats.")[0] < 0.3
    zh = item({"type": "translation", "target": "zh"}, "我每天学习英语。")
    assert score_answer(zh, "我每天学习英语。")[0] == pytest.approx(1.0)


def test_constraints():
    check = {"type": "constraints", "count": 3, "unit": "items", "required": ["面包"], "min_chars": 10, "max_chars": 60}
    ref = "1. 阳光面包店\n2. 麦田面包店\n3. 小满面包店"
    it = item(check, ref)
    assert score_answer(it, ref)[0] == pytest.approx(1.0)
    other = score_answer(it, "1. 晨光面包坊\n2. 好味面包屋\n3. 甜甜面包")[0]
    assert 0.5 < other < 1.0  # constraints met, wording differs from the reference
    assert score_answer(it, "1. 晨光面包坊\n2. 好味面包屋")[0] < other  # wrong count
    assert score_answer(it, "我不知道")[0] < 0.3
    sentences = {"type": "constraints", "count": 2, "unit": "sentences", "required": ["杭州", "秋天"],
                 "min_chars": 5, "max_chars": 40}
    ref2 = "秋天的杭州，天空又高又蓝。早晚的风有些凉。"
    assert score_answer(item(sentences, ref2), ref2)[0] == pytest.approx(1.0)
    one = score_answer(item(sentences, ref2), "秋天的杭州，天空又高又蓝。")[0]
    assert one < 1.0


def test_constraints_length_out_of_bounds_halves_c():
    check = {"type": "constraints", "count": None, "required": ["生日"], "min_chars": 5, "max_chars": 12}
    short = score_answer(item(check), "生日快乐")[0]  # 4 chars < 5, no reference: C only
    assert short == pytest.approx(0.5)
    assert score_answer(item(check), "祝你生日快乐！")[0] == pytest.approx(1.0)


@pytest.mark.parametrize("func, count", [
    ("1. 苹果\n2. 香蕉\n3. 橙子", 3), ("- 苹果\n- 香蕉", 2), ("1.苹果 2.香蕉 3.橙子", 3), ("苹果\n香蕉\n橙子\n梨", 4),
    ("苹果、香蕉、橙子", 3), ("今天天气很好，我们去公园吧。", 1),
])
def test_count_units_items(func, count):
    assert count_units(func, "items") == count


def test_facts():
    check = {"type": "facts", "facts": ["闫雨桐", "跑步", "不喜欢"]}
    it = item(check, "闫雨桐不喜欢跑步。")
    assert score_answer(it, "闫雨桐不喜欢跑步。")[0] == pytest.approx(1.0)
    lost = score_answer(it, "闫雨桐喜欢跑步。")[0]
    assert 0.6 < lost < 0.9
    assert score_answer(it, "我不知道。")[0] < 0.3


def test_empty_answer_scores_zero_for_every_type():
    checks = [{"type": "number", "answer": 1}, {"type": "label", "label": "a", "labels": ["a"]},
              {"type": "spans", "spans": ["a"]}, {"type": "text"}, {"type": "translation"},
              {"type": "facts", "facts": ["a"]}, {"type": "python_tests", "entry": "f", "tests": ["assert f()"]},
              {"type": "constraints", "count": None, "required": [], "min_chars": 0, "max_chars": 10}, None]
    for c in checks:
        for empty in ("", "   \n", None):
            assert score_answer(item(c, "a"), empty) == (0.0, "empty answer")


def test_missing_check_falls_back_to_char_f1():
    assert score_answer(item(None, "杭州"), "杭州")[0] == 1.0
    assert score_answer({"id": "z", "reference": "杭州"}, "杭州市")[0] == pytest.approx(0.8)


def test_unknown_check_type_names_item_and_type():
    with pytest.raises(ValueError, match=r"eval-7.*'poem'"):
        score_answer(item({"type": "poem"}, "x", id="eval-7"), "x")


def test_scores_are_deterministic():
    it = item({"type": "facts", "facts": ["杭州"]}, "杭州举办灯会。")
    assert len({score_answer(it, "杭州灯会开幕") for _ in range(5)}) == 1

# ----------------------------------------------------------------------------------
# code
# ----------------------------------------------------------------------------------


ADD5 = {"type": "python_tests", "entry": "add_5",
        "tests": ["assert add_5(1) == 6", "assert add_5(-2) == 3", "assert add_5(0) == 5"]}


def test_code_correct_partial_wrong():
    assert score_answer(item(ADD5), "def add_5(x):\n    return x + 5") == (1.0, "3/3 tests passed")
    assert score_answer(item(ADD5), "```python\ndef add_5(x):\n    return x + 5\n```\n这样就可以了。")[0] == 1.0
    assert score_answer(item(ADD5), "def add_5(x):\n    return x + 5\n这个函数把x加5。")[0] == 1.0
    assert score_answer(item(ADD5), "def add_5(x):\n    return 6")[0] == pytest.approx(1 / 3)
    assert score_answer(item(ADD5), "def add_5(x):\n    return x + 4")[0] == 0.0
    assert score_answer(item(ADD5), "def add_five(x):\n    return x + 5")[0] == 0.0
    assert score_answer(item(ADD5), "add_5 = lambda x: x + 5")[0] == 1.0
    assert score_answer(item(ADD5), "我不会写代码。") == (0.0, "no code found (or it does not parse)")
    assert score_answer(item(ADD5), "def add_5(x) return x + 5")[0] == 0.0
    assert score_answer(item(ADD5), "代码如下：\nimport math\ndef add_5(x):\n    return math.floor(x) + 5")[0] == 1.0


def test_code_that_raises_on_definition_scores_zero():
    score, why = score_answer(item(ADD5), "def add_5(x):\n    return x + 5\nraise SystemExit(3)")
    assert score == 0.0 and "SystemExit" in why


def test_infinite_loop_times_out():
    check = dict(ADD5, timeout_s=1.5)
    start = time.monotonic()
    assert score_answer(item(check), "def add_5(x):\n    while True:\n        pass") == (0.0, "timeout")
    assert time.monotonic() - start < 4


def test_network_is_blocked():
    code = ("import socket\ndef add_5(x):\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
            "    return x + 5")
    score, why = score_answer(item(ADD5), code)
    assert score == 0.0 and "PermissionError" in why
    code2 = "import socket\ns = socket.socket()\ndef add_5(x):\n    return x + 5"
    assert "PermissionError" in score_answer(item(ADD5), code2)[1]


def test_writes_outside_the_sandbox_are_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    code = (f"import os, pathlib\ndef add_5(x):\n    open({str(target)!r}, 'w').write('x')\n    return x + 5\n")
    assert score_answer(item(ADD5), code)[0] == 0.0
    code2 = f"import os\ndef add_5(x):\n    os.remove({str(victim)!r})\n    return x + 5\n"
    assert score_answer(item(ADD5), code2)[0] == 0.0
    code3 = f"import pathlib\ndef add_5(x):\n    pathlib.Path({str(target)!r}).write_text('x')\n    return x + 5\n"
    assert score_answer(item(ADD5), code3)[0] == 0.0
    assert not target.exists() and victim.read_text() == "keep"
    inside = "def add_5(x):\n    open('scratch.txt', 'w').write('ok')\n    return x + 5"
    assert score_answer(item(ADD5), inside)[0] == 1.0


def test_no_subprocesses():
    code = "import subprocess\ndef add_5(x):\n    subprocess.run(['true'])\n    return x + 5"
    assert score_answer(item(ADD5), code)[0] == 0.0
    code2 = "import os\ndef add_5(x):\n    os.system('true')\n    return x + 5"
    assert score_answer(item(ADD5), code2)[0] == 0.0


def test_huge_allocation_fails_cleanly():
    """The memory limit turns a 10 GiB allocation into a MemoryError at once (a hang would end as "timeout")."""
    code = "def add_5(x):\n    b = bytearray(10 * 1024 ** 3)\n    return x + 5 + len(b) * 0"
    score, why = score_answer(item(ADD5), code)
    assert score == 0.0 and "MemoryError" in why


def test_sandbox_directories_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a temp folder of its own: other tests score code too
    score_answer(item(ADD5), "def add_5(x):\n    open('big.txt', 'w').write('x' * 1000)\n    return x + 5")
    score_answer(item(dict(ADD5, timeout_s=1)), "def add_5(x):\n    while True:\n        pass")
    assert list(tmp_path.iterdir()) == []


def test_printing_code_does_not_confuse_the_result():
    code = "def add_5(x):\n    print('@@fake@@{\"passed\": [true]}')\n    return x + 5"
    assert score_answer(item(ADD5), code)[0] == 1.0
