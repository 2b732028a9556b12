"""Real-world data files: every accepted format, every refused one, and the category labels.

Each bad file is written here; the error must name the file, the record and the problem.
"""
from __future__ import annotations

import json

import pytest

from helpers.__main__ import main
from helpers.data.loaders import load_eval, load_train
from helpers.judge.prompts import load_judge_prompts
from helpers.selfinstruct.seeds import load_seeds
from helpers.study.categories import CATEGORIES, SYNONYMS, canonical_category
from helpers.study.records import DataError
from helpers.validate import validate


def jsonl(path, records, **kw):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8", **kw)
    return path


ALPACA = [
    {"instruction": "把下面的句子翻译成英文。", "input": "我喜欢猫。", "output": "I like cats.", "category": "翻译"},
    {"instruction": "计算：12+30", "input": "", "output": "42", "category": "Math"},
    {"instruction": "写一句关于春天的诗。", "output": "春风又绿江南岸。"},
]


# ---------------------------------------------------------------------------------------------
# category labels
# ---------------------------------------------------------------------------------------------

MESSY = {
    "math": ["Math", " MATH ", "数学", "mathematics", "ｍａｔｈ", "数学题"],
    "code": ["Code", "coding", "编程", "代码", "programming"],
    "cot": ["COT", "CoT", "chain of thought", "Chain-of-Thought", "思维链", "推理"],
    "classification": ["Classification", "分类", "classify"],
    "extraction": ["extract", "Extraction", "information extraction", "抽取", "信息抽取"],
    "open_qa": ["open qa", "openqa", "open_qa", "Open QA", "open-qa", "OPEN\u00a0QA", "ｏｐｅｎ\u3000ｑａ", "开放问答"],
    "closed_qa": ["closed qa", "ClosedQA", "closed_qa", "封闭问答", "阅读理解"],
    "generation": ["generation", "Generate", "文本生成", "写作"],
    "brainstorming": ["brainstorm", "Brainstorming", "头脑风暴", " brainstorming\t"],
    "rewrite": ["rewrite", "Rewriting", "paraphrase", "改写", "润色"],
    "translation": ["translation", "Translate", "翻译", "中译英"],
    "summarization": ["summarization", "Summarisation", "summary", "摘要", "总结"],
}


@pytest.mark.parametrize("category", CATEGORIES)
def test_messy_labels_map_to_the_canonical_name(category):
    assert canonical_category(category) == category
    for label in MESSY[category]:
        assert canonical_category(label) == category, label
    for label in SYNONYMS[category]:
        assert canonical_category(label) == category, label


def test_unknown_labels_and_the_extra_map():
    assert canonical_category("poetry") is None
    assert canonical_category("") is None and canonical_category(None) is None
    assert canonical_category("Poetry ", {"poetry": "generation"}) == "generation"
    assert canonical_category("math", {"MATH": "cot"}) == "cot"  # the config wins over the table


# ---------------------------------------------------------------------------------------------
# train formats
# ---------------------------------------------------------------------------------------------


def test_alpaca_jsonl_and_json_array_give_the_same_records(tmp_path):
    a, sa = load_train(str(jsonl(tmp_path / "a.jsonl", ALPACA)))
    (tmp_path / "b.json").write_text(json.dumps(ALPACA, ensure_ascii=False, indent=2), encoding="utf-8")
    b, sb = load_train(str(tmp_path / "b.json"))
    assert a == b
    assert [r["category"] for r in a] == ["translation", "math", "unlabelled"]
    assert a[0] == {"id": "pool-0000000", "instruction": "把下面的句子翻译成英文。", "input": "我喜欢猫。",
                    "output": "I like cats.", "category": "translation"}
    assert a[2]["input"] == ""
    assert (sa["format"], sb["format"]) == ("jsonl", "json array")
    assert sa["records"] == 3 and sa["categories"] == {"math": 1, "translation": 1, "unlabelled": 1}
    assert sa["fields"] == {"category": 2, "input": 2, "instruction": 3, "output": 3}
    assert sa["labels_mapped"] == {"翻译": "translation", "Math": "math"}


def test_belle_hub_layout_input_target(tmp_path):
    recs, s = load_train(str(jsonl(tmp_path / "belle.jsonl", [
        {"input": "把下面的句子翻译成英文。\n我喜欢猫。", "target": "I like cats."},
        {"input": "计算：1+1", "target": "2"}])))
    assert recs[0]["instruction"] == "把下面的句子翻译成英文。\n我喜欢猫。" and recs[0]["input"] == ""
    assert recs[0]["output"] == "I like cats." and s["layouts"] == {"input/target": 2}


def test_chat_records_keep_the_first_exchange_and_count_multi_turn(tmp_path):
    recs, s = load_train(str(jsonl(tmp_path / "chat.jsonl", [
        {"id": "c1", "conversations": [{"from": "human", "value": "你好，介绍一下杭州。"},
                                       {"from": "assistant", "value": "杭州是浙江省的省会。"}]},
        {"id": "c2", "conversations": [{"from": "system", "value": "你是助手。"},
                                       {"from": "human", "value": "1+1等于几？"}, {"from": "gpt", "value": "2"},
                                       {"from": "human", "value": "再加1呢？"}, {"from": "gpt", "value": "3"}]},
        {"id": "c3", "messages": [{"role": "user", "content": "写一句问候语。"},
                                  {"role": "assistant", "content": "早上好！"}]}])))
    assert [(r["id"], r["instruction"], r["output"]) for r in recs] == [
        ("c1", "你好，介绍一下杭州。", "杭州是浙江省的省会。"), ("c2", "1+1等于几？", "2"), ("c3", "写一句问候语。", "早上好！")]
    assert s["layouts"] == {"chat": 3}
    assert any("1 multi-turn chat records" in n for n in s["notes"])


def test_parquet_and_a_local_dataset_folder_go_through_datasets(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"instruction": r["instruction"], "input": r.get("input", ""),
                                   "output": r["output"]} for r in ALPACA])
    pq.write_table(table, tmp_path / "train.parquet")
    recs, s = load_train(str(tmp_path / "train.parquet"))
    assert s["format"] == "parquet" and [r["output"] for r in recs] == [r["output"] for r in ALPACA]
    # a folder is loaded exactly like a hub name: datasets.load_dataset(name, split="train")
    folder = tmp_path / "BelleGroup_like"
    folder.mkdir()
    jsonl(folder / "train.jsonl", [{"instruction": "计算：2+2", "input": "", "output": "4"},
                                   {"instruction": "计算：3+3", "input": None, "output": "6"}])
    recs, s = load_train(str(folder))
    assert s["format"] == "datasets folder" and [r["output"] for r in recs] == ["4", "6"]
    assert recs[1]["input"] == ""


def test_a_null_output_in_a_dataset_names_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": None}]),
                   tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet: row 1: 'output' is null"):
        load_train(str(tmp_path / "t.parquet"))


def test_a_hub_name_calls_load_dataset_with_the_name(monkeypatch):
    """No network here: a fake ``load_dataset`` stands in for the hub and returns a real Dataset."""
    import datasets

    calls = []

    def fake(name, *args, **kw):
        calls.append((name, kw.get("split")))
        if name == "NoSuchOrg/no_such_dataset":
            raise FileNotFoundError(f"Couldn't find a dataset script or data file for {name}")
        return datasets.Dataset.from_list([{"instruction": "计算：1+1", "input": "", "output": "2"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    recs, s = load_train("BelleGroup/train_2M_CN")
    assert calls == [("BelleGroup/train_2M_CN", "train")]
    assert s["format"] == "datasets hub" and recs[0]["output"] == "2"
    with pytest.raises(DataError, match="NoSuchOrg/no_such_dataset: could not be loaded with datasets.load_dataset"):
        load_train("NoSuchOrg/no_such_dataset")


# ---------------------------------------------------------------------------------------------
# bad train input
# ---------------------------------------------------------------------------------------------


def _err(tmp_path, name, content: bytes | str, kind="train", **kw):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError) as e:
        {"train": load_train, "eval": load_eval, "seeds": load_seeds, "judge-prompts": load_judge_prompts}[kind](
            str(path), **kw)
    msg = str(e.value)
    assert str(path) in msg
    return msg


def _lines(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


GOOD = {"instruction": "计算：1+1", "input": "", "output": "2"}


def test_empty_instruction_or_output(tmp_path):
    msg = _err(tmp_path, "e.jsonl", _lines(GOOD, {**GOOD, "instruction": "  "}, {**GOOD, "output": ""}))
    assert "line 2: empty 'instruction'" in msg and "line 3: empty 'output'" in msg and "2 problems" in msg


def test_null_and_missing_fields(tmp_path):
    msg = _err(tmp_path, "n.jsonl", _lines(GOOD, {**GOOD, "output": None}, {"instruction": "x", "input": ""},
                                           {**GOOD, "output": 3}, {"text": "hello"}))
    assert "line 2: 'output' is null" in msg
    assert "line 3: missing field 'output'" in msg
    assert "line 4: 'output' is a number, expected text" in msg
    assert "line 5: no instruction/output, input/target or conversations fields (fields: text)" in msg


def test_duplicate_ids(tmp_path):
    msg = _err(tmp_path, "d.jsonl", _lines({**GOOD, "id": "a"}, {**GOOD, "id": "b"}, {**GOOD, "id": "a"}))
    assert "line 3: duplicate id 'a' (first at line 1)" in msg


def test_duplicate_ids_across_files_are_caught_with_shared_seen_ids(tmp_path):
    seen = {}
    load_train(str(jsonl(tmp_path / "1.jsonl", [{**GOOD, "id": "x"}])), seen_ids=seen)
    with pytest.raises(DataError, match=r"2\.jsonl: line 1: duplicate id 'x' \(first at line 1\)"):
        load_train(str(jsonl(tmp_path / "2.jsonl", [{**GOOD, "id": "x"}])), seen_ids=seen)


def test_gbk_file_is_refused_as_not_utf8(tmp_path):
    content = _lines({"instruction": "介绍一下北京。", "output": "北京是中国的首都。"}).encode("gbk")
    msg = _err(tmp_path, "gbk.jsonl", content)
    assert "line 1: not valid UTF-8" in msg and "looks like it is not UTF-8" in msg and "GB18030" in msg


def test_binary_garbage_is_refused_as_not_utf8(tmp_path):
    msg = _err(tmp_path, "bin.jsonl", _lines(GOOD).encode() + b"\xff\xfe\x00\x81garbage\n")
    assert "line 2: not valid UTF-8" in msg and "not UTF-8" in msg


def test_a_bom_is_accepted_and_noted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _lines(GOOD, GOOD).encode())
    recs, s = load_train(str(path))
    assert len(recs) == 2 and any("BOM" in n for n in s["notes"])
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD]).encode())
    assert len(load_train(str(path))[0]) == 1


def test_a_truncated_last_line(tmp_path):
    text = _lines(GOOD, GOOD) + '{"instruction": "计算：2+2", "out'
    msg = _err(tmp_path, "t.jsonl", text)
    assert "line 3: truncated last line" in msg


def test_a_truncated_json_array(tmp_path):
    text = json.dumps([GOOD, GOOD, GOOD], ensure_ascii=False, indent=1)[:-30]
    msg = _err(tmp_path, "t.json", text)
    assert "index 2 (line" in msg and "truncated" in msg


def test_bad_json_line_and_non_objects(tmp_path):
    msg = _err(tmp_path, "b.jsonl", _lines(GOOD, "{not json}"))
    assert "line 2: not valid JSON" in msg
    msg = _err(tmp_path, "c.json", json.dumps([GOOD, ["a", "list"]]))
    assert "index 1 (line 1): expected a JSON object, got a list" in msg


def test_empty_file_and_unsupported_type(tmp_path):
    assert "the file is empty" in _err(tmp_path, "e.jsonl", "\n \n")
    assert "unsupported file type '.csv'" in _err(tmp_path, "x.csv", "a,b\n")


def test_unknown_labels_are_listed_with_counts_unless_mapped(tmp_path):
    rows = [{**GOOD, "category": c} for c in ("math", "poetry", "Poetry", "jokes", "数学")]
    msg = _err(tmp_path, "u.jsonl", _lines(*rows))
    assert "3 unknown category label(s)" in msg
    assert "'poetry' x1 (first at line 2)" in msg and "'Poetry' x1 (first at line 3)" in msg
    assert "'jokes' x1 (first at line 4)" in msg and "category_map" in msg
    recs, s = load_train(str(tmp_path / "u.jsonl"), category_map={"poetry": "generation", "jokes": "generation"})
    assert [r["category"] for r in recs] == ["math", "generation", "generation", "generation", "math"]


def test_bad_chat_records(tmp_path):
    msg = _err(tmp_path, "c.jsonl", _lines(
        {"conversations": [{"from": "assistant", "value": "你好"}]},
        {"conversations": [{"from": "human", "value": "你好"}]},
        {"conversations": [{"from": "robot", "value": "你好"}]},
        {"conversations": []}))
    assert "line 1: 'conversations': the first turn is from assistant, expected a human turn" in msg
    assert "line 2: 'conversations': no assistant reply after the first human turn" in msg
    assert "line 3: conversations[0].from is 'robot'" in msg
    assert "line 4: 'conversations' is an empty list" in msg


# ---------------------------------------------------------------------------------------------
# eval, seeds, judge prompts
# ---------------------------------------------------------------------------------------------


def test_belle_eval_format_maps_to_our_schema(tmp_path):
    path = jsonl(tmp_path / "eval.jsonl", [
        {"question": "计算：3+4", "class": "Math ", "std_answer": "7"},
        {"question": "写一首关于秋天的诗。", "class": "generation", "std_answer": ""},
        {"question": "列出三种水果。", "class": "brainstorming", "std_answer": None},
        {"question": "改写：他跑得很快。", "class": "改写", "std_answer": ""},
        {"id": "own-1", "category": "open_qa", "question": "中国的首都是哪里？", "reference": "北京",
         "check": {"type": "text"}}])
    items, s = load_eval(path)
    assert items[0] == {"id": "eval-00001", "category": "math", "question": "计算：3+4", "reference": "7"}
    assert [i["category"] for i in items] == ["math", "generation", "brainstorming", "rewrite", "open_qa"]
    assert items[2]["reference"] == "" and items[4]["check"] == {"type": "text"} and items[4]["id"] == "own-1"
    assert s["records"] == 5 and s["without_reference"] == 3 and "code" in s["missing_categories"]


def test_bad_eval_items(tmp_path):
    msg = _err(tmp_path, "e.jsonl", _lines(
        {"question": "计算：3+4", "class": "math", "std_answer": ""},
        {"question": "", "class": "math", "std_answer": "1"},
        {"question": "x", "std_answer": "1"},
        {"question": "y", "class": "astrology", "std_answer": "1"},
        {"id": "a", "question": "z", "class": "math", "std_answer": "1"},
        {"id": "a", "question": "w", "class": "math", "std_answer": "1"}), kind="eval")
    problems = ["line 1: empty 'std_answer': a reference answer is needed for math", "line 2: empty 'question'",
                "line 3: missing field 'class'", "'astrology' x1 (first at line 4)", "line 6: duplicate id 'a' (first at line 5)"]
    assert [p for p in problems if p not in msg] == []


def test_seed_tasks(tmp_path):
    seeds = [{"id": "seed_task_0", "name": "breakfast_suggestion", "instruction": "早餐吃什么比较健康？",
              "instances": [{"input": "", "output": "燕麦粥、鸡蛋和水果。"}], "is_classification": False},
             {"id": "seed_task_1", "name": "sentiment", "instruction": "判断情感倾向。",
              "instances": [{"input": "这家店太棒了", "output": "正面"}, {"input": "很失望", "output": "负面"}],
              "is_classification": True}]
    recs, s = load_seeds(jsonl(tmp_path / "seeds.jsonl", seeds))
    assert recs == seeds and s["records"] == 2 and s["instances"] == 3
    assert s["is_classification"] == {"true": 1, "false": 1}
    msg = _err(tmp_path, "bad_seeds.jsonl", _lines(
        {**seeds[0], "instances": []},
        {**seeds[1], "id": "s2", "instances": [{"input": "x", "output": ""}]},
        {**seeds[1], "id": "s3", "is_classification": "yes"},
        {k: v for k, v in seeds[1].items() if k != "id"},
        {**seeds[1], "id": "s3"}), kind="seeds")
    problems = ["line 1: 'instances' is an empty list", "line 2: empty 'instances[0].output'",
                "line 3: 'is_classification' is text, expected true or false", "line 4: missing field 'id'",
                "line 5: duplicate id 's3' (first at line 3)"]
    assert [p for p in problems if p not in msg] == []


def test_judge_prompts(tmp_path):
    recs, s = load_judge_prompts(jsonl(tmp_path / "p.jsonl", [
        {"class": "Math", "prompt": "给数学答案打分。"}, {"class": "open qa", "prompt": "给开放问答打分。"}]))
    assert recs == [{"category": "math", "prompt": "给数学答案打分。"}, {"category": "open_qa", "prompt": "给开放问答打分。"}]
    assert len(s["missing_categories"]) == 10
    msg = _err(tmp_path, "bad.jsonl", _lines({"class": "math", "prompt": "a"}, {"class": "数学", "prompt": "b"},
                                             {"class": "code", "prompt": ""}, {"class": "poems", "prompt": "c"}),
               kind="judge-prompts")
    assert "line 2: a second prompt for math (first at line 1)" in msg
    assert "line 3: empty 'prompt'" in msg and "'poems' x1 (first at line 4)" in msg


def test_the_shipped_judge_prompts_validate():
    from helpers.study.paths import REPO

    path = REPO / "configs" / "judge_prompts.jsonl"
    if not path.exists():
        pytest.skip("no judge prompts file in this checkout")
    assert validate("judge-prompts", path)["records"] >= 1


# ---------------------------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------------------------


def test_validate_command_prints_a_summary_and_exits_0(tmp_path, capsys):
    path = jsonl(tmp_path / "train.jsonl", ALPACA)
    assert main(["validate", "--kind", "train", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 3 and summary["categories"]["math"] == 1 and "instruction" in summary["fields"]


def test_validate_command_exits_nonzero_naming_file_and_record(tmp_path, capsys):
    path = jsonl(tmp_path / "eval.jsonl", [{"question": "q", "class": "poetry", "std_answer": "a"}])
    assert main(["validate", "--kind", "eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'poetry' x1 (first at line 1)" in err
    assert main(["validate", "--kind", "eval", str(path), "--map", "poetry=generation"]) == 0
    assert json.loads(capsys.readouterr().out)["categories"] == {"generation": 1}


def test_a_generated_id_that_collides_with_a_given_one_is_an_error(tmp_path):
    import json

    from helpers.data.loaders import load_train
    from helpers.study.records import DataError

    f = tmp_path / "t.jsonl"
    rec = {"instruction": "计算：1+1", "input": "", "output": "2", "category": "math"}
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [{"id": "pool-0000001", **rec}, rec]) + "\n")
    with pytest.raises(DataError, match=r"line 2: generated id 'pool-0000001' collides with an id given at line 1"):
        load_train(str(f))
