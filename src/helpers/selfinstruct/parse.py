"""The numbered tasks in a teacher's reply: 指令 / 输入 / 输出 blocks, however the teacher formats them."""
from __future__ import annotations

import re

PARSE_REASONS = ("truncated", "missing_instruction", "missing_output")

_DIGIT = "0-9０-９"

_DECOR = r"[ \t]*(?:[#>*\-]+[ \t]*)*"  # markdown: ###, >, **, -

_LABEL_LINE = re.compile(
    rf"^{_DECOR}(?:(?:任务|task)?[ \t]*(?P<num>[{_DIGIT}]{{1,3}})[ \t]*[.．、:：)）]?[ \t]*(?:\*+[ \t]*)?)?"
    r"[*【\[]*[ \t]*(?P<label>任务指令|指令|输入|输出|类别)[ \t]*[*】\]]*"
    r"(?:[ \t]*[:：][ \t]*|[ \t]*$|[ \t]+(?=\S))", re.IGNORECASE)
"""A field label at the start of a line, optionally after a task number: ``1. 指令：``, ``**输入**:``, ``【输出】``."""

_INLINE_LABEL = re.compile(r"(?<=[。！？!?.；;\s>）)])[ \t]*(?=(?:输入|输出|类别)[ \t]*[:：])")
"""Where a label line carries the next field on the same line (``指令：…。输入：…``)."""

_NUMBER_LINE = re.compile(
    rf"^{_DECOR}(?:任务|task|第)?[ \t]*(?P<num>[{_DIGIT}]{{1,3}})[ \t]*(?:个任务|个|条)?[ \t]*[.．、:：)）]?[ \t]*\**[ \t]*$",
    re.IGNORECASE)
"""A line that is only a task number: ``3.``, ``### 任务 3``, ``第3个任务：``."""

_NUMBERED = re.compile(rf"^[ \t]*(?:[#*]+[ \t]*)?(?P<num>[{_DIGIT}]{{1,3}})[ \t]*[.．、)）][ \t]*(?P<text>\S.*)$")
"""A numbered line with text: ``2. 列出三种水果`` (an instruction whose 指令 label is missing, or a list item)."""

_SEPARATOR = re.compile(r"^[ \t]*(?:[-*_=#—]{3,}|#+)[ \t]*$")

_FIELDS = {"任务指令": "instruction", "指令": "instruction", "输入": "input", "输出": "output", "类别": "category"}

_RANK = {"instruction": 0, "input": 1, "output": 2}

NO_INPUT = frozenset({"无输入", "无", "空", "noinput", "none", "na", "n/a", "无需输入", "不需要输入", "没有输入", "-", "—",
                      "……", "...", "无内容"})
"""What teachers write in the 输入 line of a task without input (compared without brackets and spaces)."""


def is_no_input(text: str) -> bool:
    """True for the no-input markers teachers write: ``<无输入>``, ``（无）``, ``无``, ``<noinput>``, ``N/A``...

    >>> [is_no_input(x) for x in ["<无输入>", "（无）", "<noinput>", "N/A", "无需输入", "我喜欢猫。"]]
    [True, True, True, True, True, False]
    """
    return re.sub(r"[<>《》()（）\[\]【】\s\"'“”]", "", text).casefold() in NO_INPUT


def _lines(text: str) -> list[str]:
    """The reply's lines, a label line that runs several fields together split into one line per field."""
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if _LABEL_LINE.match(line):
            out.extend(part for part in _INLINE_LABEL.split(line) if part.strip())
        else:
            out.append(line)
    return out


def _clean(lines: list[str]) -> str:
    while lines and (not lines[-1].strip() or _SEPARATOR.match(lines[-1])):
        lines = lines[:-1]
    text = "\n".join(lines).strip()
    if text.startswith("**") and text.endswith("**") and len(text) > 4:
        text = text[2:-2].strip()
    return text


class _Block:
    def __init__(self, number, position):
        self.number, self.position = number, position
        self.fields: dict[str, list[str]] = {}
        self.last = None
        self.raw: list[str] = []

    def set(self, field, value):
        self.fields[field] = [value] if value else []
        self.last = field

    def append(self, line):
        if self.last is not None:
            self.fields[self.last].append(line)

    def result(self) -> dict:
        get = {k: _clean(v) for k, v in self.fields.items()}
        task = {"number": self.number, "position": self.position, "instruction": get.get("instruction", ""),
                "input": get.get("input", ""), "output": get.get("output", "")}
        if is_no_input(task["input"]):
            task["input"] = ""
        if get.get("category"):
            task["label"] = get["category"]
        if not task["instruction"]:
            task["reason"] = "missing_instruction"
        elif not task["output"]:
            task["reason"] = "missing_output"
        return task


def parse_tasks(text: str, finish_reason: str | None = None) -> tuple[list[dict], list[dict]]:
    """``(tasks, dropped)`` read from a teacher's reply.

    Each task is ``{number, position, instruction, input, output}`` (``label`` too when the reply
    has a 类别 line); ``position`` counts blocks from 0 in reply order, ``number`` is the number the
    teacher wrote (None if none). A dropped block has the same fields and a ``reason``:
    ``missing_instruction``, ``missing_output`` or ``truncated`` (the last block when
    ``finish_reason`` is ``"length"``). Text before the first block ("好的，以下是……") is not a task.
    Pure: no I/O, no logging.

    A reply as asked for, with a no-input marker:

    >>> reply = '''好的，下面是新的任务：
    ...
    ... 1. 指令：把下面的句子改写成疑问句。
    ... 输入：他明天去上海。
    ... 输出：他明天去上海吗？
    ...
    ... 2. 指令：列举三种常见的绿叶蔬菜。
    ... 输入：<无输入>
    ... 输出：1. 菠菜
    ... 2. 生菜
    ... 3. 油麦菜'''
    >>> tasks, dropped = parse_tasks(reply, "stop")
    >>> [(t["number"], t["instruction"], t["input"]) for t in tasks]
    [(1, '把下面的句子改写成疑问句。', '他明天去上海。'), (2, '列举三种常见的绿叶蔬菜。', '')]
    >>> tasks[1]["output"]
    '1. 菠菜\\n2. 生菜\\n3. 油麦菜'

    Half-width colons, bold labels, a number on its own line, no blank lines, fields on one line:

    >>> reply = '''### 任务 1
    ... **指令**: 计算 23 × 4 等于多少。
    ... **输入**: 无
    ... **输出**: 23 × 4 = 92。
    ... 2. 指令：翻译成英文。输入：我喜欢下雨天。输出：I like rainy days.'''
    >>> [(t["number"], t["instruction"], t["input"], t["output"]) for t in parse_tasks(reply)[0]]
    [(1, '计算 23 × 4 等于多少。', '', '23 × 4 = 92。'), (2, '翻译成英文。', '我喜欢下雨天。', 'I like rainy days.')]

    Numbering that restarts, a number whose 指令 label is missing, a block without output:

    >>> reply = '''1. 指令：写一句关于春天的谚语。
    ... 输出：一年之计在于春。
    ... 2. 说出中国最长的河流。
    ... 输出：长江。
    ... 1. 指令：解释“画蛇添足”的意思。
    ... 3. 指令：判断“这部电影太无聊了”的情感。
    ... 输出：负面'''
    >>> tasks, dropped = parse_tasks(reply)
    >>> [(t["number"], t["instruction"]) for t in tasks]
    [(1, '写一句关于春天的谚语。'), (2, '说出中国最长的河流。'), (3, '判断“这部电影太无聊了”的情感。')]
    >>> [(d["number"], d["reason"]) for d in dropped]
    [(1, 'missing_output')]

    A reply cut off by the token limit loses its last block, complete-looking or not:

    >>> reply = '''1. 指令：给小狗起三个名字。
    ... 输入：<无输入>
    ... 输出：豆豆、旺财、小白
    ...
    ... 2. 指令：概括下面这段话。
    ... 输入：今天公司开会讨论了明年的'''
    >>> tasks, dropped = parse_tasks(reply, finish_reason="length")
    >>> [t["instruction"] for t in tasks], [(d["number"], d["reason"]) for d in dropped]
    (['给小狗起三个名字。'], [(2, 'truncated')])
    """
    blocks: list[_Block] = []
    cur: _Block | None = None
    held: list[str] = []  # a number-only line (and blank lines after it), kept back until we know whether
    held_num = None       # a block starts with it ("### 任务 3" then "指令：…") or it belongs to the text
    for line in _lines(text):
        m = _LABEL_LINE.match(line)
        if m:
            field, value = _FIELDS[m["label"]], line[m.end():].strip()
            num = int(m["num"]) if m["num"] else held_num
            if held and field != "instruction" and cur is not None:
                for h in held:
                    cur.append(h)
            held, held_num = [], None
            if field == "instruction":
                cur = _Block(num, len(blocks))
                blocks.append(cur)
                cur.set(field, value)
                continue
            if cur is None:  # fields before any instruction: a block without one
                cur = _Block(num, len(blocks))
                blocks.append(cur)
            repeat = field in cur.fields or (field in _RANK and cur.last in _RANK and _RANK[field] <= _RANK[cur.last])
            if not repeat:
                cur.set(field, value)
                continue
            # a field again: the next task with its 指令 label missing, if the line before is its number
            prev = cur.fields.get(cur.last) or []
            p = _NUMBERED.match(prev[-1]) if prev else None
            if p and (int(p["num"]) == 1 or cur.number is None or int(p["num"]) == cur.number + 1):
                prev.pop()
                cur = _Block(int(p["num"]), len(blocks))
                blocks.append(cur)
                cur.set("instruction", p["text"].strip())
                cur.set(field, value)
                continue
            cur.append(line)  # e.g. "输入：3" inside a code task's output
            continue
        n = _NUMBER_LINE.match(line)
        if n:
            if held and cur is not None:
                for h in held:
                    cur.append(h)
            held, held_num = [line], int(n["num"])
            continue
        if held and not line.strip():
            held.append(line)
            continue
        if held:
            if cur is not None:
                for h in held:
                    cur.append(h)
            held, held_num = [], None
        if cur is not None:
            cur.append(line)
    results = [b.result() for b in blocks]
    if finish_reason == "length" and results:
        results[-1]["reason"] = "truncated"
    return [r for r in results if "reason" not in r], [r for r in results if "reason" in r]
