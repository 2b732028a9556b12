"""The self-instruct stage: parsing messy teacher output, every filter, de-duplication, labels, and the
stage against a real local HTTP server (tests/fake_openai.py in teacher mode) with the real openai
client: counts, determinism, retries, resume after a SIGKILL of a real process, no key in any file.

Server-side counts are per request key (prompt, seed); the stage sends the request index as seed.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai import ENV, KEY, FakeOpenAI, teacher_reply

from helpers import selfinstruct
from helpers.data.suite import generate
from helpers.selfinstruct.collector import REASONS, Collector
from helpers.selfinstruct.filters import filter_reason
from helpers.selfinstruct.label import heuristic_category
from helpers.selfinstruct.parse import parse_tasks
from helpers.selfinstruct.request import SelfInstructError, SelfInstructIncomplete, build_request, load_prompt
from helpers.selfinstruct.seeds import load_seed_tasks, load_seeds, sample_examples
from helpers.selfinstruct.tables import reason_table
from helpers.study.categories import CATEGORIES
from helpers.study.config import SelfInstructConfig, StudyConfig
from helpers.study.dedup import normalize
from helpers.study.files import read_json, read_jsonl, write_jsonl
from helpers.study.loading import ConfigError, load_config
from helpers.study.paths import REPO
from helpers.study.prompt import question


def cfg_for(srv: FakeOpenAI | None = None, **si) -> StudyConfig:
    s = {"model": "fake-teacher", "base_url": srv.base_url if srv else None, "api_key_env": ENV, "target": 200,
         "concurrency": 4, "max_retries": 3, "timeout_s": 5, "backoff_base_s": 0.001, "backoff_max_s": 0.01,
         "price_per_1k_input": 0.5, "price_per_1k_output": 1.5}
    s.update(si)
    return StudyConfig.model_validate({"study": "si", "scales": [1], "data": {"source": "generate"}, "selfinstruct": s})


@pytest.fixture
def server(server):
    """The fake server as a teacher: numbered task lists, every fourth one cut off."""
    server.responder = functools.partial(teacher_reply, truncate_every=4)
    return server


def server_key(cfg: StudyConfig, index: int) -> tuple[str, int]:
    """The (prompt, seed) under which the fake server counts request ``index``."""
    s = cfg.selfinstruct
    prompt = build_request(load_prompt(s.prompt_file), sample_examples(load_seed_tasks(cfg), s.examples_per_request,
                                                                        cfg.seed, index),
                           s.tasks_per_request, s.label == "teacher")
    return prompt, index


# ------------------------------------------------------------------------------ parsing

def parsed(text, finish="stop"):
    tasks, dropped = parse_tasks(text, finish)
    return [(t["instruction"], t["input"], t["output"]) for t in tasks], [(d["number"], d["reason"]) for d in dropped]


def test_full_and_half_width_colons_and_decorations():
    text = ("1. 指令：写一句关于秋天的话。\n输入：<无输入>\n输出：秋风起，落叶黄。\n\n"
            "2. 指令: 计算 3 + 4。\n输入: 无\n输出: 7\n\n"
            "**3. 指令**：把“我爱你”翻译成英文。\n**输入**：（无）\n**输出**：I love you.\n\n"
            "４．指令：概括下面的话。\n【输入】：今天下雨，比赛推迟到明天。\n【输出】：比赛因雨推迟一天。\n\n"
            "### 任务 5\n指令 说出一种水果\n输入 <noinput>\n输出 苹果")
    tasks, dropped = parse_tasks(text)
    assert [(t["number"], t["instruction"], t["input"], t["output"]) for t in tasks] == [
        (1, "写一句关于秋天的话。", "", "秋风起，落叶黄。"), (2, "计算 3 + 4。", "", "7"),
        (3, "把“我爱你”翻译成英文。", "", "I love you."), (4, "概括下面的话。", "今天下雨，比赛推迟到明天。", "比赛因雨推迟一天。"),
        (5, "说出一种水果", "", "苹果")]
    assert dropped == []


def test_missing_separators_fields_on_one_line_and_no_blank_lines():
    text = ("好的，以下是三个新任务：\n"
            "1. 指令：翻译成英文。输入：我喜欢下雨天。输出：I like rainy days.\n"
            "2. 指令：计算 12 × 3。 输入：<无输入> 输出：36\n"
            "3. 指令：写一个成语。\n输出：画龙点睛\n---")
    assert parsed(text)[0] == [("翻译成英文。", "我喜欢下雨天。", "I like rainy days."),
                               ("计算 12 × 3。", "", "36"), ("写一个成语。", "", "画龙点睛")]


def test_the_last_block_is_dropped_only_when_cut_by_the_token_limit():
    text = "1. 指令：说出一种颜色。\n输入：<无输入>\n输出：红色\n\n2. 指令：说出一种动物。\n输入：<无输入>\n输出：熊"
    assert parsed(text, "stop") == ([("说出一种颜色。", "", "红色"), ("说出一种动物。", "", "熊")], [])
    # "熊" may have been "熊猫": with finish_reason length the last block goes, complete-looking or not
    assert parsed(text, "length") == ([("说出一种颜色。", "", "红色")], [(2, "truncated")])
    cut = "1. 指令：说出一种颜色。\n输入：<无输入>\n输出：红色\n\n2. 指令：介绍一下长"
    assert parsed(cut, "length") == ([("说出一种颜色。", "", "红色")], [(2, "truncated")])
    assert parsed(cut, "stop") == ([("说出一种颜色。", "", "红色")], [(2, "missing_output")])


def test_numbering_that_restarts_and_numbers_without_their_label():
    text = ("1. 指令：说出一种花。\n输出：梅花\n2. 指令：说出一种树。\n输出：松树\n"
            "以下是另外两个：\n1. 指令：说出一种鸟。\n输出：燕子\n"
            "2. 说出一种鱼。\n输出：鲤鱼")
    tasks, dropped = parse_tasks(text)
    assert [(t["number"], t["instruction"], t["output"]) for t in tasks] == [
        (1, "说出一种花。", "梅花"), (2, "说出一种树。", "松树\n以下是另外两个："), (1, "说出一种鸟。", "燕子"),
        (2, "说出一种鱼。", "鲤鱼")]
    assert [t["position"] for t in tasks] == [0, 1, 2, 3] and dropped == []


def test_lists_and_field_words_inside_an_output_stay_in_the_output():
    text = ("1. 指令：列出三种水果。\n输入：<无输入>\n输出：1. 苹果\n2. 香蕉\n3. 橙子\n\n"
            "2. 指令：写一个函数，返回两数之和，并举例。\n输入：<无输入>\n输出：def add(a, b):\n    return a + b\n"
            "例如：\n输入：1, 2\n输出：3\n\n"
            "3. 指令：说出一种蔬菜。\n输入：<无输入>\n输出：白菜")
    tasks, dropped = parse_tasks(text)
    assert [t["output"] for t in tasks] == ["1. 苹果\n2. 香蕉\n3. 橙子",
                                            "def add(a, b):\n    return a + b\n例如：\n输入：1, 2\n输出：3", "白菜"]
    assert dropped == []


def test_blocks_without_instruction_or_output_are_dropped_with_their_reason():
    text = "输入：一段没有指令的文字\n输出：没有用\n\n1. 指令：只有指令，没有回答。\n输入：<无输入>\n\n2. 指令：说出一种颜色。\n输出：蓝色"
    tasks, dropped = parse_tasks(text)
    assert [t["instruction"] for t in tasks] == ["说出一种颜色。"]
    assert [(d["position"], d["reason"]) for d in dropped] == [(0, "missing_instruction"), (1, "missing_output")]


def test_the_teachers_category_line_is_read():
    tasks, _ = parse_tasks("1. 指令：把“谢谢”翻译成英文。\n类别：翻译\n输入：<无输入>\n输出：Thank you.")
    assert tasks[0]["label"] == "翻译" and tasks[0]["output"] == "Thank you."


def test_a_reply_without_tasks_parses_to_nothing():
    assert parse_tasks("抱歉，我无法完成这个请求。", "stop") == ([], [])
    assert parse_tasks("", "length") == ([], [])


# the Alpaca / BELLE layout: "###" between blocks, the task number before every label, the text under it

def numbered(n, ins, inp, out, colon=":"):
    """One block of that layout (tasks written for these tests)."""
    return f"{n}. 指令{colon} {ins}\n{n}. 输入{colon}\n{inp or '<无输入>'}\n{n}. 输出{colon}\n{out}\n###\n"


NUMBERED_TASKS = [
    ("介绍一下苏州园林的特色。", "", "苏州园林讲究移步换景，\n常以假山、池水和花窗营造意境。"),
    ("把下面的句子改写成更正式的表达。", "这事儿我明天给你回话。", "此事我将于明日答复您。"),
    ("计算 15 加 27 等于多少。", "", "42"),
    ("从下面的句子中找出所有的地名。", "我去年从成都出发，经过西安，最后到了兰州。", "成都、西安、兰州"),
]


def test_the_numbered_label_layout_with_separators():
    text = "###\n" + "".join(numbered(i, *t, colon=":" if i % 2 else "：")
                             for i, t in enumerate(NUMBERED_TASKS, start=1))
    tasks, dropped = parse_tasks(text, "stop")
    assert [(t["instruction"], t["input"], t["output"]) for t in tasks] == NUMBERED_TASKS
    assert [t["number"] for t in tasks] == [1, 2, 3, 4] and dropped == []
    # no label number left at the end of a field, no "###" in an output
    assert not any(t[f].rstrip().endswith((".", "#")) for t in tasks for f in ("instruction", "input", "output"))
    # the same tasks with the separator before the number and a preamble: the same items
    again = "好的，以下是新任务：\n\n" + "".join("###\n" + numbered(i, *t)[:-4] for i, t in enumerate(NUMBERED_TASKS, 1))
    assert parse_tasks(again, "stop") == (tasks, [])


@pytest.mark.parametrize("marker", ["<无输入>", "＜无输入＞", "< 无输入 >", "<无输入。>", "无输入", "（无）", "<noinput>", "无"])
def test_no_input_markers_in_the_numbered_layout(marker):
    under = f"1. 指令：说出一种常见的宠物。\n1. 输入：\n{marker}\n1. 输出：\n猫\n###\n"
    same_line = f"2. 指令：说出一种常见的水果。\n2. 输入：{marker}\n2. 输出：\n苹果\n###\n"
    one_line = f"3. 指令：说出一种常见的花。 3. 输入：{marker} 3. 输出：月季\n###\n"  # the marker, then a label
    tasks, dropped = parse_tasks(under + same_line + one_line, "stop")
    assert [(t["number"], t["instruction"], t["input"], t["output"]) for t in tasks] == [
        (1, "说出一种常见的宠物。", "", "猫"), (2, "说出一种常见的水果。", "", "苹果"), (3, "说出一种常见的花。", "", "月季")]
    assert dropped == []


def test_a_reply_in_the_numbered_layout_cut_at_max_tokens():
    whole = "".join(numbered(i, *t) for i, t in enumerate(NUMBERED_TASKS[:3], start=1))
    kept = [t[0] for t in NUMBERED_TASKS[:3]]
    cut_output = whole[:whole.index("42")] + "4"  # "42" cut to "4": the last block goes
    assert [t["instruction"] for t in parse_tasks(cut_output, "length")[0]] == kept[:2]
    assert parse_tasks(cut_output, "length")[1][0]["reason"] == "truncated"
    for tail in ("", "4", "4. 指令: 写一", "4. 指令: 写一首关于\n4. 输"):  # block 3 closed by "###" before the cut
        tasks, dropped = parse_tasks(whole + tail, "length")
        assert [t["instruction"] for t in tasks] == kept, tail
        assert [(d["number"], d["reason"]) for d in dropped] == ([(4, "truncated")] if "指令" in tail else [])
    cut_label = whole + "4. 指"  # not a label yet: block 3 is not known to be closed
    assert [t["instruction"] for t in parse_tasks(cut_label, "length")[0]] == kept[:2]
    cut_sep = whole[:-2]  # "#" of the closing "###": not closed
    assert [(d["number"], d["reason"]) for d in parse_tasks(cut_sep, "length")[1]] == [(3, "truncated")]


def test_the_numbered_layout_with_a_missing_instruction_and_labels_in_an_output():
    text = (numbered(1, "说说怎么登录邮箱。", "", "1. 打开邮箱网站\n2. 输入：账号和密码\n3. 点击登录") +
            "2. 输入:\n我今天很开心。\n2. 输出:\nI am very happy today.\n###\n" +  # its 指令 line is missing
            numbered(3, "说出一种乐器。", "", "二胡"))
    tasks, dropped = parse_tasks(text, "stop")
    assert [(t["number"], t["output"]) for t in tasks] == [(1, "1. 打开邮箱网站\n2. 输入：账号和密码\n3. 点击登录"),
                                                           (3, "二胡")]
    assert [(d["number"], d["reason"], d["output"]) for d in dropped] == [
        (2, "missing_instruction", "I am very happy today.")]


def test_a_bare_number_under_an_empty_label_is_the_value():
    tasks, _ = parse_tasks("1. 指令：计算 6 乘以 6。\n输入：<无输入>\n输出：\n36\n\n2. 指令：计算 7 加 8。\n输入：<无输入>\n输出：\n15")
    assert [t["output"] for t in tasks] == ["36", "15"]


# ------------------------------------------------------------------------------ seeds, prompt, labels

def test_our_seed_file_is_valid_and_covers_every_use_case():
    seeds, summary = load_seeds(REPO / "configs" / "seeds_zh.jsonl")
    assert 36 <= len(seeds) <= 60
    assert set(summary["categories"]) == set(CATEGORIES) and min(summary["categories"].values()) >= 3
    s = SelfInstructConfig()
    for sd in seeds:  # our own filters accept our own seeds
        for inst in sd["instances"]:
            task = {"instruction": sd["instruction"], "input": inst["input"], "output": inst["output"],
                    "category": sd["category"]}
            assert filter_reason(task, s) is None, (sd["id"], filter_reason(task, s))


def test_heuristic_labels_agree_with_the_seeds_and_the_builtin_suite():

    seeds, _ = load_seeds(REPO / "configs" / "seeds_zh.jsonl")
    assert all(heuristic_category(sd["instruction"], sd["instances"][0]["input"]) == sd["category"] for sd in seeds)
    items = [(c, r) for c in CATEGORIES for r in generate(c, 100, seed=3)]
    right = sum(heuristic_category(r["instruction"], r["input"], r["output"]) == c for c, r in items)
    assert right / len(items) >= 0.9


def test_requests_are_deterministic_per_index_and_hold_k_examples():
    cfg = cfg_for(examples_per_request=4, tasks_per_request=15)
    seeds, parts = load_seed_tasks(cfg), load_prompt(cfg.selfinstruct.prompt_file)
    a = build_request(parts, sample_examples(seeds, 4, 0, 7), 15, False)
    assert a == build_request(parts, sample_examples(seeds, 4, 0, 7), 15, False)
    assert a != build_request(parts, sample_examples(seeds, 4, 0, 8), 15, False)
    assert a != build_request(parts, sample_examples(seeds, 4, 1, 7), 15, False)  # the study seed counts
    assert "15个全新的任务" in a and "<无输入>" in a and "类别" not in a
    shown, _ = parse_tasks(a.split("请参考示例")[0])
    assert len(shown) == 4 and {t["instruction"] for t in shown} <= {sd["instruction"] for sd in seeds}
    labelled = build_request(parts, sample_examples(seeds, 4, 0, 7), 15, True)
    assert labelled.count("类别：") == 4 + 2  # each example, the rule and the layout


def test_bad_prompt_and_seed_files_are_named(tmp_path):
    bad = tmp_path / "prompt.yaml"
    bad.write_text("template: 只有模板 {examples} {num_tasks} {layout}\n", encoding="utf-8")
    with pytest.raises(SelfInstructError, match=rf"{bad}: missing block\(s\)"):
        load_prompt(bad)
    with pytest.raises(SelfInstructError, match="prompt_file: .* not found"):
        load_prompt(tmp_path / "none.yaml")
    seeds = tmp_path / "seeds.jsonl"
    write_jsonl(seeds, [{"id": "a", "name": "x", "instruction": "写诗", "instances": [{"input": ""}],
                         "is_classification": False}])
    with pytest.raises(ValueError, match=rf"{seeds}: line 1: missing field 'instances\[0\].output'"):
        load_seed_tasks(cfg_for(seeds_file=str(seeds)))
    write_jsonl(seeds, [{"id": "a", "name": "x", "instruction": "写一首诗", "instances": [{"input": "", "output": "诗"}],
                         "is_classification": False}])
    with pytest.raises(SelfInstructError, match="examples_per_request: 3 examples per request, but .* holds 1 seed"):
        load_seed_tasks(cfg_for(seeds_file=str(seeds)))


# ------------------------------------------------------------------------------ filters and dedup

def test_every_filter_reason():
    s = SelfInstructConfig(min_instruction_chars=4, max_instruction_chars=40, max_input_chars=30,
                           min_output_chars=2, max_output_chars=50)
    ok = {"instruction": "介绍一下长城。", "input": "", "output": "长城是中国古代的军事防御工程。", "category": "open_qa"}
    cases = {
        None: {},
        "self_reference": {"output": "作为一个人工智能语言模型，我没有亲眼见过长城。"},
        "multimodal": {"instruction": "根据这张图片，说说图中的人在做什么。"},
        "instruction_too_short": {"instruction": "写诗"},
        "instruction_too_long": {"instruction": "请" + "详细" * 30 + "介绍长城。"},
        "input_too_long": {"input": "长城" * 20},
        "output_too_short": {"output": "好"},
        "output_too_long": {"output": "长城" * 30},
        "language_mismatch": {"output": "The Great Wall is very long and very old."},
    }
    for reason, change in cases.items():
        assert filter_reason({**ok, **change}, s) == reason, reason
    assert filter_reason({**ok, "instruction": "Explain the Great Wall."}, s) == "language_mismatch"
    assert filter_reason({**ok, "instruction": "把“长城”翻译成英文。", "output": "The Great Wall", "category": "translation"},
                         s) is None
    assert filter_reason({**ok, "instruction": "打开这个链接 https://example.com 看看"}, s) == "multimodal"
    assert set(cases) - {None} | {"truncated", "missing_instruction", "missing_output", "seed_duplicate",
                                  "exact_duplicate", "near_duplicate", "over_target"} == set(REASONS)


class Sink:
    def __init__(self):
        self.records = []

    def write(self, records):
        self.records.extend(records)


def block(n, ins, inp, out):
    return f"{n}. 指令：{ins}\n输入：{inp or '<无输入>'}\n输出：{out}\n\n"


def test_dedup_against_seeds_and_everything_kept_so_far():
    cfg = cfg_for(target=100)
    seeds = load_seed_tasks(cfg)
    seed = seeds[0]
    kept, dropped, ledger = Sink(), Sink(), Sink()
    c = Collector(cfg, seeds, 100, kept, dropped, ledger)
    first = (block(1, seed["instruction"], seed["instances"][0]["input"], "抄来的") +  # a shown example
             block(2, "说出中国面积最大的省级行政区。", "", "新疆维吾尔自治区。") +
             block(3, "说出中国面积最大的省级行政区。", "", "新疆。") +  # exact copy within the reply
             block(4, "请把下面的句子翻译成英文。", "今天的天气非常好，我们去公园散步吧。", "The weather is great today."))
    second = (block(1, "说出中国面积最大的省级行政区！", "", "新疆。") +  # near copy of request 0's item
              block(2, "请把下面的句子翻译成英文。", "今天的天气非常好，我们去公园散散步吧。", "...") +  # near, with input
              block(3, "请把下面的句子翻译成英文。", "明天我要坐高铁去北京看望外婆。", "I will take the train."))
    assert c.process_many([(0, first, "stop", None, False)]) == 1
    assert c.process_many([(1, second, "stop", None, False)]) == 1
    reasons = [(d["request"], d["position"], d["reason"]) for d in dropped.records]
    assert reasons == [(0, 0, "seed_duplicate"), (0, 2, "exact_duplicate"), (1, 0, "near_duplicate"),
                       (1, 1, "near_duplicate")]
    assert dropped.records[0]["duplicate_of"].startswith(f"seed:{seed['id']}")
    assert dropped.records[2]["duplicate_of"] == "gen-0000000-01"
    assert [r["id"] for r in kept.records] == ["gen-0000000-01", "gen-0000000-03", "gen-0000001-02"]
    assert [e["kept"] for e in ledger.records] == [2, 1] and c.kept == 3
    assert c.summary()["dropped"]["near_duplicate"] == 2


def test_the_reply_that_reaches_the_target_drops_the_rest_as_over_target():
    cfg = cfg_for(target=2)
    kept, dropped, ledger = Sink(), Sink(), Sink()
    c = Collector(cfg, load_seed_tasks(cfg), 2, kept, dropped, ledger)
    reply = "".join(block(i, f"说出第{i}个{x}的名字和由来。", "", f"{x}的答案。") for i, x in
                    enumerate(["星座", "节气", "朝代", "民族"], start=1))
    assert c.process_many([(0, reply, "stop", None, False)]) == 1
    assert len(kept.records) == 2 and [d["reason"] for d in dropped.records] == ["over_target", "over_target"]
    assert ledger.records[0]["dropped"] == {"over_target": 2}


# ------------------------------------------------------------------------------ the stage

def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_counts_in_the_summary_match_the_files_and_the_server(tmp_path, server, capfd):
    cfg = cfg_for(server, target=300)
    stats = selfinstruct.run(cfg, tmp_path)
    kept = read_jsonl(tmp_path / "generated.jsonl")
    dropped = read_jsonl(tmp_path / "generated_dropped.jsonl")
    ledger = read_jsonl(tmp_path / "selfinstruct" / "requests.jsonl")
    assert stats == read_json(tmp_path / "generated_stats.json")
    assert stats["kept"] == len(kept) == 300 and stats["reached_target"]
    assert stats["tasks_parsed"] == len(kept) + len(dropped) == sum(e["parsed"] for e in ledger)
    assert stats["dropped"] == {r: sum(d["reason"] == r for d in dropped) for r in REASONS}
    # the fake teacher makes every kind of fault a filter catches (lengths but one: it writes none too long)
    assert {r for r, n in stats["dropped"].items() if n} >= {
        "truncated", "missing_output", "self_reference", "multimodal", "instruction_too_short", "language_mismatch",
        "seed_duplicate", "near_duplicate", "over_target"}
    assert stats["kept_by_category"] == dict(Counter(r["category"] for r in kept)) and \
        set(stats["kept_by_category"]) == set(CATEGORIES)
    assert stats["requests"]["processed"] == len(ledger) and stats["requests"]["sent_now"] == server.total
    assert stats["requests"]["sent_now"] == stats["requests"]["processed"] + stats["requests"]["unused_in_cache"]
    assert stats["tokens"]["prompt"] > 0 and stats["cost"] == pytest.approx(
        stats["tokens"]["prompt"] / 1000 * 0.5 + stats["tokens"]["completion"] / 1000 * 1.5, rel=1e-4)
    assert {r["id"] for r in kept} == {r["id"] for r in kept} and len({r["id"] for r in kept}) == 300
    assert len({normalize(question(r["instruction"], r["input"])) for r in kept}) == 300
    assert all(set(r) >= {"id", "instruction", "input", "output", "category"} for r in kept)
    table = reason_table(stats)
    assert table[0]["outcome"] == "kept" and sum(r["tasks"] for r in table) == stats["tasks_parsed"]
    assert "dropped:" in capfd.readouterr().out


def test_the_pool_is_the_same_at_any_concurrency_and_a_rerun_sends_nothing(tmp_path, server):
    one = selfinstruct.run(cfg_for(server, concurrency=1), tmp_path / "a", progress=False)
    many = selfinstruct.run(cfg_for(server, concurrency=16), tmp_path / "b", progress=False)
    first = (tmp_path / "a" / "generated.jsonl").read_bytes()
    assert first == (tmp_path / "b" / "generated.jsonl").read_bytes()
    assert (tmp_path / "a" / "generated_dropped.jsonl").read_bytes() == \
        (tmp_path / "b" / "generated_dropped.jsonl").read_bytes()
    assert one["dropped"] == many["dropped"]
    server.reset_counts()
    again = selfinstruct.run(cfg_for(server, concurrency=16), tmp_path / "b", progress=False)
    assert server.total == 0 and again["kept"] == 200
    assert (tmp_path / "b" / "generated.jsonl").read_bytes() == first


def test_a_bigger_target_continues_and_changed_filters_rebuild_from_the_cache(tmp_path, server):
    selfinstruct.run(cfg_for(server, target=150), tmp_path, progress=False)
    selfinstruct.run(cfg_for(server, target=300), tmp_path, progress=False)
    grown = (tmp_path / "generated.jsonl").read_bytes()
    assert all(n == 1 for n in server.answered.values())  # the bigger target asked for nothing twice
    selfinstruct.run(cfg_for(server, target=300), tmp_path / "fresh", progress=False)
    assert grown == (tmp_path / "fresh" / "generated.jsonl").read_bytes()  # as if asked for 300 at once
    cached = {r["request"] for r in read_jsonl(tmp_path / "selfinstruct" / "cache" / "fake-teacher.jsonl")}
    server.reset_counts()
    stats = selfinstruct.run(cfg_for(server, target=300, max_output_chars=30), tmp_path, progress=False)
    assert stats["dropped"]["output_too_long"] > 0 and stats["kept"] == 300
    assert stats["requests"]["from_cache"] == len(cached) and stats["requests"]["sent_now"] == server.total > 0
    assert not any(seed in cached for _, seed in server.requests)  # only requests beyond the cached ones


def test_retries_then_too_many_failures_stop_resumably(tmp_path, server):
    server.inject(["500", "drop", "429"])  # every request: three faults, then an answer
    stats = selfinstruct.run(cfg_for(server, target=60, max_retries=3), tmp_path / "a", progress=False)
    assert stats["kept"] == 60 and stats["requests"]["retries_now"] >= 3 * stats["requests"]["sent_now"]
    assert set(server.actions) == {"500", "drop", "429", "ok"}
    server.clear_faults()
    server.reset_counts()
    server.fail_after(3, "503")
    cfg = cfg_for(server, target=200, max_retries=1, concurrency=1)
    with pytest.raises(SelfInstructIncomplete, match=r"teacher requests failed after their retries .* run the stage "
                                                     r"again to continue from request 3"):
        selfinstruct.run(cfg, tmp_path / "b", progress=False)
    assert not (tmp_path / "b" / "generated_stats.json").exists()
    assert len(read_jsonl(tmp_path / "b" / "selfinstruct" / "requests.jsonl")) == 3
    server.clear_faults()
    stats = selfinstruct.run(cfg, tmp_path / "b", progress=False)
    assert stats["kept"] == 200 and stats["requests"]["resumed_from"] == 3
    assert all(n == 1 for n in server.answered.values())


def test_failures_within_the_allowance_are_skipped_and_counted(tmp_path, server):
    cfg = cfg_for(server, target=100, max_retries=0, max_failures=1)
    server.inject(["500"], match=server_key(cfg, 1)[0])
    stats = selfinstruct.run(cfg, tmp_path, progress=False)
    ledger = read_jsonl(tmp_path / "selfinstruct" / "requests.jsonl")
    assert ledger[1] == {"request": 1, "failed": "HTTP 500 after 1 attempts"}
    assert stats["requests_failed"] == 1 and stats["kept"] == 100


def test_a_run_that_drops_nothing_writes_an_empty_dropped_file(tmp_path, server):
    """A teacher in the numbered-label layout whose every task is kept: generated_dropped.jsonl is there, empty
    (the runner checks that every output of the stage exists)."""
    server.responder = lambda prompt, seed: ("###\n" + "".join(numbered(i, *t) for i, t in
                                                                 enumerate(NUMBERED_TASKS, start=1)), "stop")
    cfg = cfg_for(server, target=len(NUMBERED_TASKS), tasks_per_request=len(NUMBERED_TASKS), concurrency=1)
    stats = selfinstruct.run(cfg, tmp_path, progress=False)
    assert stats["kept"] == 4 and not any(stats["dropped"].values())
    assert (tmp_path / "generated_dropped.jsonl").read_bytes() == b""
    assert [(r["instruction"], r["input"], r["output"]) for r in read_jsonl(tmp_path / "generated.jsonl")] == \
        NUMBERED_TASKS
    again = selfinstruct.run(cfg, tmp_path, progress=False)  # resumed: still there, still empty
    assert again["kept"] == 4 and (tmp_path / "generated_dropped.jsonl").read_bytes() == b""


def test_a_prompt_file_in_the_numbered_layout_gets_its_label_line_under_the_instruction(tmp_path):
    import yaml

    raw = yaml.safe_load((REPO / "configs" / "selfinstruct_prompt.yaml").read_text(encoding="utf-8"))
    raw["example"] = "###\n{number}. 指令: {instruction}\n{number}. 输入:\n{input}\n{number}. 输出:\n{output}"
    raw["example_label"] = "类别: {category}"
    path = tmp_path / "prompt.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    parts = load_prompt(path)
    cfg = cfg_for()
    examples = sample_examples(load_seed_tasks(cfg), 3, 0, 5)
    request = build_request(parts, examples, 10, True)
    assert "###\n1. 指令: " in request and "###\n类别" not in request
    shown, dropped = parse_tasks(request.split("请参考示例")[0], "stop")
    names = parts.category_names
    assert [(t["instruction"], t["input"], t["label"]) for t in shown] == [
        (ex["instruction"], ex["input"], names[ex["category"]]) for ex in examples] and dropped == []


def test_a_missing_key_or_a_refused_key_stops_before_or_at_the_first_request(tmp_path, server, monkeypatch):
    monkeypatch.delenv(ENV)
    with pytest.raises(SelfInstructError, match=rf"selfinstruct.api_key_env: the environment variable {ENV} is not set"):
        selfinstruct.run(cfg_for(server), tmp_path, progress=False)
    assert server.total == 0
    monkeypatch.setenv(ENV, "sk-wrong-0000")
    with pytest.raises(SelfInstructError, match=rf"teacher endpoint .* refused the API key from \${ENV} \(HTTP 401\)"):
        selfinstruct.run(cfg_for(server, concurrency=1, max_retries=5), tmp_path, progress=False)
    assert server.total == 1


def test_the_teacher_can_label_its_tasks(tmp_path, server):
    def labelled(prompt, seed):
        text, finish = teacher_reply(prompt, seed)
        tasks, _ = parse_tasks(text)
        names = load_prompt(REPO / "configs" / "selfinstruct_prompt.yaml").category_names
        out = []
        for i, t in enumerate(tasks, start=1):
            label = "诗歌" if i == 1 else names[heuristic_category(t["instruction"], t["input"])]
            out.append(f"{i}. 指令：{t['instruction']}\n类别：{label}\n输入：{t['input'] or '<无输入>'}\n"
                       f"输出：{t['output']}\n")
        return "\n".join(out), finish

    server.responder = labelled
    cfg = cfg_for(server, target=80, label="teacher")
    stats = selfinstruct.run(cfg, tmp_path, progress=False)
    assert stats["label_by"]["teacher"] > 50 and stats["label_by"]["heuristic (teacher label unknown)"] > 0
    assert all("类别" in k[0] for k in server.requests)


@pytest.mark.slow  # real processes, one killed
def test_resume_after_sigkill_of_a_real_process(tmp_path, server):
    """Kill the stage with SIGKILL mid-run, then rerun: it reaches the target with the very items an
    uninterrupted run keeps, and no request whose reply was cached is sent again."""
    server.delay = 0.15
    cfg = cfg_for(server, target=400, concurrency=4)
    config = tmp_path / "si.json"
    config.write_text(json.dumps(cfg.model_dump(mode="json")))
    sd = tmp_path / "killed"
    code = ("import sys\nfrom helpers.study.loading import load_config\nfrom helpers.selfinstruct.stage import run\n"
            "run(load_config(sys.argv[1]), sys.argv[2], progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config), str(sd)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(server.answered.values()) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    cache = sd / "selfinstruct" / "cache" / "fake-teacher.jsonl"
    cached = read_jsonl(cache, tolerate_torn_tail=True)
    ledger = read_jsonl(sd / "selfinstruct" / "requests.jsonl", tolerate_torn_tail=True)
    assert 0 < len(ledger) <= len(cached) < 400 / 10
    answered_before = set(server.answered)
    server.reset_counts()
    stats = selfinstruct.run(cfg, sd, progress=False)
    kept = read_jsonl(sd / "generated.jsonl")
    assert stats["kept"] == len(kept) == 400
    assert len({r["id"] for r in kept}) == 400
    assert len({normalize(question(r["instruction"], r["input"])) for r in kept}) == 400
    for rec in cached:  # completed requests are not sent again
        assert server.requests[server_key(cfg, rec["request"])] == 0
    assert stats["requests"]["resumed_from"] == len(ledger) and stats["requests"]["from_cache"] >= len(cached) - len(ledger)
    # only replies in flight at the kill (at most `concurrency`) can have been paid for twice
    assert len(answered_before & set(server.answered)) <= cfg.selfinstruct.concurrency
    server.delay = 0
    selfinstruct.run(cfg, tmp_path / "whole", progress=False)
    assert (sd / "generated.jsonl").read_bytes() == (tmp_path / "whole" / "generated.jsonl").read_bytes()


def test_torn_last_lines_are_dropped_and_a_half_written_request_is_redone(tmp_path, server):
    cfg = cfg_for(server, target=200)
    selfinstruct.run(cfg, tmp_path / "whole", progress=False)
    selfinstruct.run(cfg_for(server, target=100), tmp_path, progress=False)
    ledger = read_jsonl(tmp_path / "selfinstruct" / "requests.jsonl")
    # as if killed while writing request n's items: its kept lines written, the ledger line torn
    write_jsonl(tmp_path / "selfinstruct" / "requests.jsonl", ledger[:-1])
    with open(tmp_path / "selfinstruct" / "requests.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"request": 99, "par')
    with open(tmp_path / "generated.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"id": "gen-torn", "instr')
    server.reset_counts()
    with pytest.warns(UserWarning, match="torn last line"):
        stats = selfinstruct.run(cfg, tmp_path, progress=False)
    assert stats["kept"] == 200 and stats["requests"]["resumed_from"] == len(ledger) - 1
    assert server.total == stats["requests"]["sent_now"] and stats["requests"]["from_cache"] >= 1
    assert (tmp_path / "generated.jsonl").read_bytes() == (tmp_path / "whole" / "generated.jsonl").read_bytes()


def test_the_key_appears_in_no_file_or_output(tmp_path, server, capfd, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    server.inject(["500", "429"])
    selfinstruct.run(cfg_for(server, target=100), tmp_path, progress=True)
    files = all_files(tmp_path)
    assert any(p.name == "fake-teacher.jsonl" for p in files) and len(files) >= 6
    for p in files:
        assert KEY.encode() not in p.read_bytes(), f"the key leaked into {p}"
    out = capfd.readouterr()
    assert KEY not in out.out + out.err and KEY not in caplog.text
    assert ENV in read_json(tmp_path / "generated_stats.json")["settings"]["api_key_env"]


# ------------------------------------------------------------------------------ config and the data stage

def test_config_source_generate(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("study: g\nscales: [10]\ndata: {source: generate}\nselfinstruct: {target: 50}\n")
    cfg = load_config(p)
    assert cfg.data.source == "generate" and cfg.data.train_files == [] and cfg.selfinstruct.concurrency == 64
    p.write_text("study: g\nscales: [100]\ndata: {source: generate}\nselfinstruct: {target: 50}\n")
    with pytest.raises(ConfigError, match="scales: the largest scale 100 exceeds selfinstruct.target 50"):
        load_config(p)
    p.write_text("study: g\nscales: [10]\ndata: {source: generate}\nselfinstruct: {tagret: 50}\n")
    with pytest.raises(ConfigError, match="selfinstruct.tagret: unknown key"):
        load_config(p)
    cfg = load_config(REPO / "configs" / "selfinstruct_micro.yaml")
    assert cfg.data.source == "generate" and cfg.scales[-1] <= cfg.selfinstruct.target


def test_the_runner_plans_the_stage_only_for_a_generated_pool(tmp_path):
    from helpers.study.runner import STAGE_NAMES, plan

    assert STAGE_NAMES[0] == "selfinstruct"
    runs = plan(cfg_for(), tmp_path)
    assert [r.label for r in runs[:2]] == ["selfinstruct", "data"]
    assert tmp_path / "generated.jsonl" in runs[0].outputs and tmp_path / "generated.jsonl" in runs[1].inputs
    assert REPO / "configs" / "seeds_zh.jsonl" in runs[0].inputs
    builtin = StudyConfig.model_validate({"study": "b", "scales": [4], "data": {"pool_size": 10}})
    assert [r.label for r in plan(builtin, tmp_path)][0] == "data"


def test_the_data_stage_reads_the_generated_pool(tmp_path, server):
    from helpers.data.stage import load_sources

    cfg = cfg_for(server, target=60)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"eval_per_category": 2})})
    sd = tmp_path / "data" / "si"
    selfinstruct.run(cfg, sd, progress=False)
    pool, items, sources = load_sources(cfg, sd)
    assert len(pool) == 60 and [r["id"] for r in pool] == [r["id"] for r in read_jsonl(sd / "generated.jsonl")]
    assert len(items) == 24 and {it["category"] for it in items} == set(CATEGORIES)
    assert sources[0]["file"] == str(sd / "generated.jsonl")
    (sd / "generated.jsonl").unlink()
    with pytest.raises(ValueError, match="generated.jsonl not found: run the selfinstruct stage"):
        load_sources(cfg, sd)


# ------------------------------------------------------------------------------ the whole study

@pytest.mark.slow
def test_the_whole_study_from_seeds_through_the_report(tmp_path, server):
    """configs/selfinstruct_micro.yaml through the runner (papermill, every notebook), its teacher the
    local fake server: seeds -> generated.jsonl -> pool -> training -> answers -> judgments -> report."""
    import yaml

    from helpers.analysis.report import build_index
    from helpers.study.runner import run_study

    raw = yaml.safe_load((REPO / "configs" / "selfinstruct_micro.yaml").read_text(encoding="utf-8"))
    root = tmp_path / "root"
    server.delay = 0.05
    raw["selfinstruct"].update(base_url=server.base_url, api_key_env=ENV)  # the config's own URL is a placeholder
    config = tmp_path / "selfinstruct_micro.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    lines = []
    index = run_study(config, root=root, out=lines.append, report=build_index)
    sent = server.total
    server.reset_counts()
    again = []
    run_study(config, root=root, out=again.append, report=build_index)
    assert server.total == 0 and not [x for x in again if x.startswith("[run ]")]
    ran = [line.split()[1] for line in lines if line.startswith("[done]")]
    assert ran[:2] == ["selfinstruct", "data"] and ran[-1] == "analysis" and "judge-12" in ran
    sd = root / "data" / raw["study"]
    generated = read_jsonl(sd / "generated.jsonl")
    stats = read_json(sd / "generated_stats.json")
    assert len(generated) == stats["kept"] == raw["selfinstruct"]["target"]
    assert stats["requests"]["sent_now"] == sent > 0
    pool = read_jsonl(sd / "pool.jsonl")
    assert {r["id"] for r in pool} <= {r["id"] for r in generated} and len(pool) >= raw["scales"][-1]
    data_stats = read_json(sd / "data_stats.json")
    assert data_stats["source"] == "generate" and data_stats["sources"][0]["file"] == str(sd / "generated.jsonl")
    assert index.exists() and (root / "reports" / raw["study"] / "notebooks" / "selfinstruct.html").exists()
    executed = (sd / "notebooks" / "selfinstruct.ipynb").read_text(encoding="utf-8")
    assert "dropped: near_duplicate" in executed and "kept items" in executed
    for p in all_files(tmp_path):
        assert KEY.encode() not in p.read_bytes(), f"the key leaked into {p}"
