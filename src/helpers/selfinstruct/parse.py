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

_INLINE_LABEL = re.compile(
    rf"(?<=[。！？!?.；;\s>）)])[ \t]*(?P<at>(?:[{_DIGIT}]{{1,3}}[ \t]*[.．、][ \t]*)?(?:输入|输出|类别)[ \t]*[:：])")
"""Where a label line carries the next field on the same line (``指令：…。输入：…``, ``输入：<无输入> 1. 输出：…``)."""

_NUMBER_LINE = re.compile(
    rf"^{_DECOR}(?:任务|task|第)?[ \t]*(?P<num>[{_DIGIT}]{{1,3}})[ \t]*(?:个任务|个|条)?[ \t]*[.．、:：)）]?[ \t]*\**[ \t]*$",
    re.IGNORECASE)
"""A line that is only a task number: ``3.``, ``### 任务 3``, ``第3个任务：``."""

_NUMBERED = re.compile(rf"^[ \t]*(?:[#*]+[ \t]*)?(?P<num>[{_DIGIT}]{{1,3}})[ \t]*[.．、)）][ \t]*(?P<text>\S.*)$")
"""A numbered line with text: ``2. 列出三种水果`` (an instruction whose 指令 label is missing, or a list item)."""

_SEPARATOR = re.compile(r"^[ \t]*(?:[-*_=#—]{3,}|#+)[ \t]*$")

_BLOCK_END = re.compile(r"^[ \t]*#{3,}[ \t]*$")
"""The ``###`` line that ends each block in the Alpaca / BELLE layout."""

_FIELDS = {"任务指令": "instruction", "指令": "instruction", "输入": "input", "输出": "output", "类别": "category"}

_RANK = {"instruction": 0, "input": 1, "output": 2}

NO_INPUT = frozenset({"无输入", "无", "空", "noinput", "none", "na", "n/a", "无需输入", "不需要输入", "没有输入", "-", "—",
                      "……", "...", "无内容"})
"""What teachers write in the 输入 line of a task without input (compared without brackets, spaces and a final 。)."""


def is_no_input(text: str) -> bool:
    """True for the no-input markers teachers write: ``<无输入>``, ``（无）``, ``无``, ``<noinput>``, ``N/A``...

    >>> [is_no_input(x) for x in ["<无输入>", "（无）", "<noinput>", "N/A", "无需输入", "我喜欢猫。"]]
    [True, True, True, True, True, False]
    >>> [is_no_input(x) for x in ["< 无输入 >", "＜无输入＞", "「无」", "<无输入。>", "无输入。", "<无>", "无聊"]]
    [True, True, True, True, True, True, False]
    """
    bare = re.sub(r"[<>＜＞〈〉《》()（）\[\]【】「」\s\"'“”]", "", text).casefold()
    return bare in NO_INPUT or bare.rstrip("。.．") in NO_INPUT


def _lines(text: str) -> list[str]:
    """The reply's lines, a label line that runs several fields together split into one line per field."""
    out = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        m = _LABEL_LINE.match(line)
        if not m:
            out.append(line)
            continue
        # cut before each further label, never inside this line's own label ("1. 输入：" stays whole)
        cuts = [x.start("at") for x in _INLINE_LABEL.finditer(line, m.end())]
        out.extend(p for p in (line[i:j] for i, j in zip([0, *cuts], [*cuts, len(line)])) if p.strip())
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
        self.numbered = False  # its 输入 / 输出 labels carry its number ("1. 输入:"): the Alpaca / BELLE layout
        self.closed = False    # a "###" line after its output, nothing after it but blank lines

    def set(self, field, value):
        self.fields[field] = [value] if value else []
        self.last = field
        self.closed = False

    def append(self, line):
        if self.last is not None:
            self.fields[self.last].append(line)
            if _BLOCK_END.match(line):
                self.closed = self.last == "output" and bool(_clean(self.fields["output"]))
            elif line.strip():
                self.closed = False

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
    ``finish_reason`` is ``"length"``, unless a ``###`` line closed it before the cut). Text before
    the first block ("好的，以下是……") is not a task. Pure: no I/O, no logging.

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

    The Alpaca / BELLE layout: ``###`` between blocks, the task number before every label, each
    field's text on the lines under its label (the input may be the no-input marker):

    >>> reply = '''###
    ... 1. 指令: 介绍一下苏州园林的特色。
    ... 1. 输入:
    ... <无输入>
    ... 1. 输出:
    ... 苏州园林讲究移步换景，
    ... 常以假山、池水和花窗营造意境。
    ... ###
    ... 2. 指令：判断下面这句话的情感是正面还是负面。
    ... 2. 输入：
    ... 这家店的服务太慢了。
    ... 2. 输出：
    ... 负面
    ... ###
    ... 3. 指令: 计算 15 加 27 等于多少。
    ... 3. 输入: <无输入>
    ... 3. 输出:
    ... 42
    ... ###'''
    >>> tasks, dropped = parse_tasks(reply, "stop")
    >>> [(t["number"], t["instruction"], t["input"], t["output"]) for t in tasks]  # doctest: +NORMALIZE_WHITESPACE
    [(1, '介绍一下苏州园林的特色。', '', '苏州园林讲究移步换景，\\n常以假山、池水和花窗营造意境。'),
     (2, '判断下面这句话的情感是正面还是负面。', '这家店的服务太慢了。', '负面'),
     (3, '计算 15 加 27 等于多少。', '', '42')]

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

    A block that a ``###`` line closed before the cut stays (what follows the line is no block yet):

    >>> reply = '''1. 指令: 给小狗起三个名字。
    ... 1. 输入:
    ... <无输入>
    ... 1. 输出:
    ... 豆豆、旺财、小白
    ... ###
    ... 2.'''
    >>> [t["output"] for t in parse_tasks(reply, finish_reason="length")[0]]
    ['豆豆、旺财、小白']
    """
    blocks: list[_Block] = []
    cur: _Block | None = None
    held: list[str] = []  # a number-only line (and blank lines after it), kept back until we know whether
    held_num = None       # a block starts with it ("### 任务 3" then "指令：…") or it belongs to the text
    for line in _lines(text):
        m = _LABEL_LINE.match(line)
        if m:
            field, value = _FIELDS[m["label"]], line[m.end():].strip()
            own = int(m["num"]) if m["num"] else None
            num = own if own is not None else held_num
            if held and cur is not None and (field != "instruction" or own not in (None, held_num)):
                for h in held:  # not the header of a block: "36" then "3. 指令：" ends the last output
                    cur.append(h)
            held, held_num = [], None
            if field == "instruction":
                cur = _Block(num, len(blocks))
                blocks.append(cur)
                cur.set(field, value)
                continue
            if cur is None or (cur.numbered and own == cur.number + 1 and not value):
                # fields before any instruction, or "2. 输入:" alone on its line after a block labelled
                # "1. 输入:" / "1. 输出:" (the next task, its 指令 line missing): a block without an instruction
                cur = _Block(num, len(blocks))
                blocks.append(cur)
            repeat = field in cur.fields or (field in _RANK and cur.last in _RANK and _RANK[field] <= _RANK[cur.last])
            if not repeat:
                cur.set(field, value)
                cur.numbered = cur.numbered or (own is not None and own == cur.number)
                continue
            # a field again: the next task with its 指令 label missing, if the line before is its number
            # (not in the layout whose labels carry the number: there "2. 输入：…" is a list item)
            prev = cur.fields.get(cur.last) or []
            p = _NUMBERED.match(prev[-1]) if prev and not (cur.numbered and own is not None) else None
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
        if n and line.strip().isdigit() and not held and cur is not None and cur.last is not None \
                and not _clean(cur.fields[cur.last]):
            n = None  # a bare number right under a label with nothing after it ("输出：" then "36"): the value
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
    if finish_reason == "length" and results and not blocks[-1].closed:
        results[-1]["reason"] = "truncated"
    return [r for r in results if "reason" not in r], [r for r in results if "reason" in r]
