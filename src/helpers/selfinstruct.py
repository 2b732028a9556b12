"""Stage 00 (optional): new Chinese instruction data from seed tasks, the paper's way (self-instruct).

Ji et al. (2023) trained on Chinese instructions made Alpaca-style: seed tasks shown to ChatGPT
as in-context examples, the new tasks it wrote filtered and de-duplicated. This module does the
same with any teacher behind an OpenAI-compatible endpoint and writes ``generated.jsonl``, the
pool of a study with ``data.source: generate`` (the data stage then treats it like any train file).

One request
    Request ``i`` shows ``selfinstruct.examples_per_request`` (k) seed tasks, sampled with
    ``random.Random(f"{seed}|selfinstruct|{i}")`` (one instance each), and asks for
    ``tasks_per_request`` new tasks as a numbered list of 指令 / 输入 / 输出 blocks (the prompt is data:
    ``selfinstruct.prompt_file``). Only seed tasks are shown, never generated ones (the original
    self-instruct mixed those in): the request of index ``i`` is then a pure function of the
    config, so a resumed run sends exactly the request it would have sent, and the cache answers it.

Parsing (``parse_tasks``, pure)
    Blocks start at a 指令 label; half- and full-width colons, markdown decoration, a number on its
    own line, fields run together on one line, a missing 指令 label after a number and numbering
    that restarts are all read. A block without an instruction or an output is dropped with that
    reason; the last block of a reply cut off by the token limit (``finish_reason: length``) is
    dropped as ``truncated`` even when it looks complete (its output may end mid-sentence).

Filters (``filter_reason``, pure; the first that applies names the reason)
    The checks of the ``quality`` selection strategy (``helpers.selection.check_reason``) with this
    section's limits: ``self_reference`` (the output talks about being an AI model), ``multimodal``
    (the task needs an image, link, file, audio or video), the length limits of the
    config (``instruction_too_short`` ... ``output_too_long``), ``language_mismatch`` (an instruction
    that is not Chinese, or a Chinese one answered in English outside translation and code). Then
    de-duplication of instruction + input against the seed tasks and every item kept so far
    (``helpers.dedup.Deduper``, incremental MinHash LSH; no all-pairs scoring): ``seed_duplicate``,
    ``exact_duplicate``, ``near_duplicate``. Tasks of the reply that reaches the target beyond it are
    ``over_target``. Every dropped task is written to ``generated_dropped.jsonl`` with its reason.

Labels
    Each kept item gets a use case: ``heuristic_category`` (keyword rules, pure), or with
    ``selfinstruct.label: teacher`` the teacher's own 类别 line (asked for in the same request; the
    rules fill in where it is missing or unknown). ``label_by`` says which.

Order, resume, cost
    Up to ``concurrency`` requests are in flight (``helpers.openai_client.ChatEndpoint``: the
    judge's retry, backoff and stop rules), but replies are *processed* in request order (the
    ones that are ready together, one de-duplication call for all of them). So the result is
    the same at any concurrency and after any kill: kept items, drops and ids depend only on the
    config and the teacher's replies. Every reply is appended to ``selfinstruct/cache/<model>.jsonl``
    as it arrives (``RequestCache``); each processed request then appends its kept and dropped items
    and finally one line to ``selfinstruct/requests.jsonl`` (the ledger). A rerun after a kill keeps
    the ledger's requests, cuts the items of a half-written one, rebuilds the de-duplication index
    from the kept items and carries on; replies in the cache are never requested again. Changed
    settings (seeds, prompt, teacher, filters...) rebuild the outputs from the cache; a changed
    target continues or rebuilds. No new request is sent once the target is reached (those in
    flight are finished and cached); ``max_requests`` bounds the cost of a teacher whose tasks are
    mostly filtered out. The key comes from the environment only (``selfinstruct.api_key_env``).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers import CATEGORIES
from helpers.config import StudyConfig, resolve
from helpers.files import read_json, read_jsonl, write_json, write_jsonl
from helpers.loaders import canonical_category, load_seeds
from helpers.prompt import question

PARSE_REASONS = ("truncated", "missing_instruction", "missing_output")
FILTER_REASONS = ("self_reference", "multimodal", "instruction_too_short", "instruction_too_long", "input_too_long",
                  "output_too_short", "output_too_long", "language_mismatch")
DEDUP_REASONS = ("seed_duplicate", "exact_duplicate", "near_duplicate")
REASONS = PARSE_REASONS + FILTER_REASONS + DEDUP_REASONS + ("over_target",)
"""Every reason a task is dropped for, in the order the checks run."""

REASON_TEXT = {
    "truncated": "last task of a reply cut off by the token limit",
    "missing_instruction": "block without an instruction (指令)",
    "missing_output": "block without an output (输出)",
    "self_reference": "output talks about being an AI model",
    "multimodal": "task needs an image, link, file, audio or video",
    "instruction_too_short": "instruction shorter than selfinstruct.min_instruction_chars",
    "instruction_too_long": "instruction longer than selfinstruct.max_instruction_chars",
    "input_too_long": "input longer than selfinstruct.max_input_chars",
    "output_too_short": "output shorter than selfinstruct.min_output_chars",
    "output_too_long": "output longer than selfinstruct.max_output_chars",
    "language_mismatch": "instruction not Chinese, or answered in English (translation and code excepted)",
    "seed_duplicate": "exact or near duplicate of a seed task",
    "exact_duplicate": "same instruction + input as a kept item (normalised)",
    "near_duplicate": "character n-gram Jaccard >= selfinstruct.dedup_threshold with a kept item",
    "over_target": "in the reply that reached the target, after it",
}


class SelfInstructError(RuntimeError):
    """The stage cannot run or must stop (missing key, refused key, bad seeds or prompt file)."""


class SelfInstructIncomplete(SelfInstructError):
    """More requests failed than ``selfinstruct.max_failures`` allows; rerun to continue from there."""


# ------------------------------------------------------------------------------------ the request

@dataclass(frozen=True)
class PromptParts:
    """The text blocks of ``selfinstruct.prompt_file`` (see the comments in configs/selfinstruct_prompt.yaml)."""
    template: str
    layout: str
    layout_with_label: str
    label_rule: str
    example: str
    example_label: str
    category_names: dict
    no_input: str


def load_prompt(path: str | Path) -> PromptParts:
    """The prompt file's blocks; a missing file, block or placeholder is an error naming the file."""
    path = resolve(path)
    if not path.is_file():
        raise SelfInstructError(f"selfinstruct.prompt_file: {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SelfInstructError(f"{path}: not valid YAML: {e}") from None
    fields = PromptParts.__dataclass_fields__
    missing = [k for k in fields if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise SelfInstructError(f"{path}: missing block(s) {missing}")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SelfInstructError(f"{path}: unknown block(s) {unknown}; known: {sorted(fields)}")
    needs = {"template": ("{examples}", "{num_tasks}", "{layout}"), "example": ("{instruction}", "{input}", "{output}")}
    for block, marks in needs.items():
        absent = [m for m in marks if m not in raw[block]]
        if absent:
            raise SelfInstructError(f"{path}: block {block!r} lacks the placeholder(s) {absent}")
    names = {canonical_category(k) or k: v for k, v in (raw["category_names"] or {}).items()}
    if set(names) != set(CATEGORIES):
        raise SelfInstructError(f"{path}: category_names must name every use case {list(CATEGORIES)}")
    return PromptParts(**{**raw, "category_names": names, "no_input": str(raw["no_input"]).strip()})


def load_seed_tasks(cfg: StudyConfig) -> list[dict]:
    """The seed tasks (``helpers.loaders.load_seeds``: bad records stop with file, line and problem)."""
    s = cfg.selfinstruct
    path = resolve(s.seeds_file)
    if not path.is_file():
        raise SelfInstructError(f"selfinstruct.seeds_file: {path} not found")
    seeds, _ = load_seeds(path, category_map=cfg.data.category_map)
    if len(seeds) < s.examples_per_request:
        raise SelfInstructError(f"selfinstruct.examples_per_request: {s.examples_per_request} examples per request, "
                                f"but {path} holds {len(seeds)} seed tasks")
    return seeds


def sample_examples(seeds: list[dict], k: int, seed: int, index: int) -> list[dict]:
    """The k seed examples of request ``index``: ``{instruction, input, output, category}``, seeded per index."""
    rng = random.Random(f"{seed}|selfinstruct|{index}")
    out = []
    for task in rng.sample(seeds, k):
        inst = rng.choice(task["instances"])
        out.append({"instruction": task["instruction"], "input": inst["input"], "output": inst["output"],
                    "category": task.get("category") or heuristic_category(task["instruction"], inst["input"])})
    return out


def build_request(parts: PromptParts, examples: list[dict], num_tasks: int, label: bool) -> str:
    """The one user message of a request: the template with the numbered examples filled in."""
    blocks = []
    for n, ex in enumerate(examples, start=1):
        block = parts.example.strip().format(number=n, instruction=ex["instruction"].strip(),
                                             input=ex["input"].strip() or parts.no_input, output=ex["output"].strip())
        if label:
            first, _, rest = block.partition("\n")
            block = f"{first}\n{parts.example_label.format(category=parts.category_names[ex['category']])}\n{rest}"
        blocks.append(block)
    template = parts.template if label else parts.template.replace("{label_rule}\n", "")
    layout = (parts.layout_with_label if label else parts.layout).strip().format(no_input=parts.no_input)
    return template.format(num_examples=len(examples), num_tasks=num_tasks, examples="\n\n".join(blocks),
                           layout=layout, label_rule=parts.label_rule.strip(), no_input=parts.no_input).strip()


def request_key(cfg: StudyConfig, prompt: str, index: int) -> str:
    """sha256 of what makes a request: teacher model, sampling settings, the message and the index (sent as seed)."""
    s = cfg.selfinstruct
    parts = {"model": s.model, "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
             "prompt": prompt, "index": int(index)}
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------ parsing

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


# ------------------------------------------------------------------------------------ labels

_CATEGORY_RULES = [
    ("translation", r"翻译|译成|译为|译作|英译中|中译英|汉译英|英译汉|translat"),
    ("code", r"代码|编程|程序|函数|脚本|python|java|c\+\+|sql|html|css|正则表达式|算法|bug|变量|数组|字符串"),
    ("cot", r"一步一步|一步步|逐步|分步|推理|思考过程|推导过程|解题思路|写出过程|列式|说明理由|请解释原因|应用题"),
    ("summarization", r"概括|摘要|归纳|提炼|主要内容|中心思想|主旨|总结(?:一下|下面|这|以下|全文|要点|成)|"
                      r"(?:写|拟|起|取)一?个标题|讲了什么|说了什么|一句话说明"),
    ("rewrite", r"改写|润色|改成.{0,8}(?:句|语气|形式|说法|书面|口语|正式|礼貌)|换一种说法|换个说法|转述|扩写|书面语|"
                r"口语化|被动句|主动句|“被”字句|“把”字句|通顺|更正式|更礼貌|更简洁|更生动|语病|错别字|同义句|仿写|"
                r"合(?:成|并成|并为)一句|换成|改为.{0,6}说法"),
    ("closed_qa", r"根据(?:上文|下文|以下|下面|这段|这则|这篇|短文|材料|文章|段落|文本|说明|通知|对话|内容|信息)|"
                  r"读.{0,8}(?:材料|短文|文章|段落|下文)|回答问题|文中|原文"),
    ("extraction", r"提取|抽取|找出.{0,12}(?:人名|地名|日期|时间|金额|关键词|实体|数字|名称|机构|电话|地址|城市)|关键词|"
                   r"整理成.{0,8}(?:字段|表格|格式)|提到了?(?:哪|什么)|中出现的|只写(?:人名|日期|地名|城市|名字)|"
                   r"发生在(?:哪|什么)"),
    ("classification", r"分类|归类|归入|类别|属于哪(?:一)?(?:类|种)|哪一类|哪个类|情感|正面.{0,3}还是.{0,3}负面|"
                       r"褒义还是贬义|是否属于|判断.{0,30}(?:是否|是不是|正面|负面|真假|对错|类型|意图|垃圾)|"
                       r"垃圾(?:邮件|短信)|意图|中选(?:一个|一项|出)|[（(][^）)]*/[^）)]*[）)]"),
    ("math", r"计算|算出|等于多少|结果是多少|方程|面积|周长|体积|[求算].{0,8}(?:值|和|差|积|商|平均)|"
             r"\d+\s*[+\-×÷*/=]\s*\d+|\d+\s*(?:加上|减去|乘以|除以)|百分之|折扣|打.折|利息|概率|"
             r"多少(?:钱|元|米|千克|公斤|个|人|天|小时|分钟|岁|度|张|本|只|块|平方)|一共.{0,8}多少|几岁"),
    ("brainstorming", r"列举|列出|想出|想几个|起几个|举出|帮忙想|想[一二两三四五六七八九十几\d]+个|"
                      r"给出.{0,8}(?:建议|方法|点子|想法|主意|名字|方案)|推荐.{0,3}(?:种|件|个|本|部|款|首|道)|"
                      r"有哪些.{0,10}(?:方法|建议|办法|途径|方式|去处|技巧|注意事项|好处|点子|选择)|建议|点子|头脑风暴|"
                      r"出主意|[说写]出[一二两三四五六七八九十几\d]+(?:种|个|条)"),
    ("generation", r"写一|写首|写篇|写段|写封|写个|写[两三几]句|写出一|创作|撰写|编写|编一|作一首|拟写|拟一|文案|故事|诗|"
                   r"作文|对联|祝福语|标语|口号|广告(?:语|词)|演讲稿|贺词|邀请函|通知|介绍信|感谢信|日记|描写|描述|续写|造句|"
                   r"造一个句子"),
    ("open_qa", r"[？?]\s*$|什么|为什么|如何|怎么|怎样|哪些|哪个|哪里|是谁|谁是|多少|多久|吗|介绍一下|解释"),
]
_CATEGORY_PATTERNS = [(c, re.compile(p, re.IGNORECASE)) for c, p in _CATEGORY_RULES]


def heuristic_category(instruction: str, input: str = "", output: str = "") -> str:
    """The use case of a task from keyword rules on its instruction, in a fixed order (first rule wins).

    Translation and code words come first (they decide the task whatever else it asks), then the
    explicit step-by-step markers of COT before plain arithmetic, the text operations (summarise,
    rewrite, extract, classify) before questions about a given text (closed QA, which needs an
    input), open-ended lists and writing, and finally questions (open QA). An instruction that none
    of them fits is ``open_qa`` when it has no input and ``generation`` when it has one.
    On the built-in suite's items the rules give the generator's use case for more than 9 in 10, on
    our seed tasks (configs/seeds_zh.jsonl) for all (tests/test_selfinstruct.py checks both).

    >>> [heuristic_category(x) for x in ["把下面的句子翻译成英文。", "用Python写一个冒泡排序函数。",
    ...                                   "小明有5个苹果，又买了3个，现在有几个？请一步一步推理。", "计算 25 × 4 的结果。"]]
    ['translation', 'code', 'cot', 'math']
    >>> [heuristic_category(x, i) for x, i in [("用一句话概括这段话。", "今天……"), ("判断这条评论的情感倾向。", "太难用了"),
    ...                                       ("根据短文回答：他为什么迟到？", "小王早上堵车……"),
    ...                                       ("列出五种适合夏天的运动。", ""), ("写一首关于大海的诗。", ""),
    ...                                       ("长城有多长？", "")]]
    ['summarization', 'classification', 'closed_qa', 'brainstorming', 'generation', 'open_qa']
    """
    for cat, pattern in _CATEGORY_PATTERNS:
        if cat == "closed_qa" and not input.strip():
            continue
        if pattern.search(instruction):
            return cat
    return "generation" if input.strip() else "open_qa"


# ------------------------------------------------------------------------------------ filters

def filter_reason(task: dict, s) -> str | None:
    """The first filter ``task`` fails, or None. ``s``: the config's ``selfinstruct`` section (its limits).

    ``task`` is ``{instruction, input, output, category}``. Pure: no I/O, no logging.

    >>> from helpers.config import SelfInstructConfig
    >>> s = SelfInstructConfig()
    >>> ok = {"instruction": "介绍一下长城。", "input": "", "output": "长城是中国古代的军事防御工程。", "category": "open_qa"}
    >>> [filter_reason({**ok, **change}, s) for change in [
    ...     {},
    ...     {"output": "作为一个AI语言模型，我没有去过长城。"},
    ...     {"instruction": "描述这张图片里的风景。"},
    ...     {"instruction": "写诗"},
    ...     {"output": "好" * 2001},
    ...     {"output": "The Great Wall is a series of fortifications built across northern China."},
    ...     {"instruction": "Describe the Great Wall."}]]
    [None, 'self_reference', 'multimodal', 'instruction_too_short', 'output_too_long', 'language_mismatch', 'language_mismatch']
    """
    from helpers.selection import check_reason

    return check_reason(task["instruction"], task["input"], task["output"], task.get("category", ""),
                        min_instruction_chars=s.min_instruction_chars, max_instruction_chars=s.max_instruction_chars,
                        max_input_chars=s.max_input_chars, min_output_chars=s.min_output_chars,
                        max_output_chars=s.max_output_chars, chinese_instruction=True)


# ------------------------------------------------------------------------------------ processing

class Collector:
    """Parse, label, filter and de-duplicate teacher replies in request order; write what it finds.

    ``kept_out``, ``dropped_out`` and ``ledger_out`` have ``write(records)`` (``JsonlAppender``).
    The de-duplication index starts with the seed tasks; ``restore`` replays kept items on resume.
    """

    def __init__(self, cfg: StudyConfig, seeds: list[dict], target: int, kept_out, dropped_out, ledger_out):
        from helpers.dedup import Deduper

        self.s, self.target = cfg.selfinstruct, target
        self.kept_out, self.dropped_out, self.ledger_out = kept_out, dropped_out, ledger_out
        self.dedup = Deduper(threshold=self.s.dedup_threshold, ngram=self.s.dedup_ngram, num_perm=self.s.dedup_num_perm)
        texts, keys = [], []
        for sd in seeds:
            for j, inst in enumerate(sd["instances"]):
                texts.append(question(sd["instruction"], inst["input"]))
                keys.append(f"seed:{sd['id']}#{j}")
        self.dedup.add_many(texts, keys)
        self.kept = 0
        self.requests = 0          # requests processed (the ledger's length)
        self.failed = 0
        self.parsed = 0            # blocks read from replies
        self.dropped = Counter()
        self.by_category = Counter()
        self.label_by = Counter()
        self.usage = Counter()     # tokens of the processed replies (cached ones with their original usage)
        self.finish = Counter()
        self.last_entry: dict | None = None  # the ledger line of the last reply taken

    def restore(self, kept: list[dict], ledger: list[dict]) -> None:
        """State of a resumed run: kept items re-enter the index in order (they were kept, so they are kept again)."""
        decisions = self.dedup.add_many([question(r["instruction"], r["input"]) for r in kept], [r["id"] for r in kept])
        lost = sum(not d.kept for d in decisions)
        if lost:
            raise SelfInstructError(f"resume: {lost} kept items are duplicates of earlier ones (a changed "
                                    f"de-duplication?); delete generated.jsonl to rebuild from the cache")
        for r in kept:
            self.by_category[r["category"]] += 1
            self.label_by[r.get("label_by", "heuristic")] += 1
        for e in ledger:
            self._count(e)
        self.kept = len(kept)

    def _count(self, entry: dict) -> None:
        self.requests += 1
        if "failed" in entry:
            self.failed += 1
            return
        self.parsed += entry["parsed"]
        self.dropped.update(entry["dropped"])
        self.usage.update(entry.get("usage") or {})
        self.finish[str(entry.get("finish_reason"))] += 1

    def process(self, index: int, text: str, finish_reason: str | None, usage: dict | None = None,
                cached: bool = False) -> dict:
        """Take one reply (request ``index``): writes kept and dropped items, then its ledger line."""
        self.process_many([(index, text, finish_reason, usage, cached)])
        return self.last_entry

    def _screen(self, index: int, text: str, finish_reason: str | None) -> tuple[list[dict], list[dict], int]:
        """(candidates, dropped, blocks) of one reply: parsed, labelled and filtered, not yet de-duplicated."""
        tasks, bad = parse_tasks(text, finish_reason)
        dropped = [{**b, "request": index} for b in bad]
        candidates = []
        teacher = self.s.label == "teacher"
        for t in tasks:
            label = t.pop("label", None)
            cat = canonical_category(label) if (label and teacher) else None
            t["category"] = cat or heuristic_category(t["instruction"], t["input"], t["output"])
            t["label_by"] = "teacher" if cat else "heuristic" if not teacher else \
                "heuristic (no teacher label)" if label is None else "heuristic (teacher label unknown)"
            reason = filter_reason(t, self.s)
            if reason:
                dropped.append({**t, "request": index, "reason": reason})
            else:
                t["id"] = f"gen-{index:07d}-{t['position']:02d}"
                candidates.append(t)
        return candidates, dropped, len(tasks) + len(bad)

    def process_many(self, replies: list[tuple]) -> int:
        """Take consecutive replies ``(index, text, finish_reason, usage, cached)`` in order; returns how many
        were taken (all, unless the target is reached before the last: the rest stay unprocessed).

        The candidates of all the replies go through the de-duplication index in one ``add_many`` call
        (the per-call cost of the vectorised signatures is paid once); its greedy pass in input order
        makes the same decisions as one call per reply.
        """
        screened = [self._screen(index, text, finish) for index, text, finish, *_ in replies]
        cands = [t for c, _, _ in screened for t in c]
        decisions = iter(self.dedup.add_many([question(t["instruction"], t["input"]) for t in cands],
                                             [t["id"] for t in cands]) if cands and self.kept < self.target else [])
        taken = 0
        for (index, _, finish_reason, usage, cached), (candidates, dropped, blocks) in zip(replies, screened):
            if self.kept >= self.target:
                break  # the candidates of the rest entered the index: harmless, the run ends here
            kept = []
            for t in candidates:
                d = next(decisions)
                if self.kept + len(kept) >= self.target:
                    dropped.append({**t, "request": index, "reason": "over_target"})
                elif d.kept:
                    kept.append({k: t[k] for k in ("id", "instruction", "input", "output", "category")}
                                | {"request": index, "label_by": t["label_by"]})
                else:
                    dup = str(d.duplicate_of)
                    reason = "seed_duplicate" if dup.startswith("seed:") else f"{d.reason}_duplicate"
                    dropped.append({**t, "request": index, "reason": reason, "duplicate_of": dup,
                                    "similarity": d.similarity})
            dropped.sort(key=lambda r: r["position"])
            for r in dropped:
                r.pop("id", None)
            if kept:
                self.kept_out.write(kept)
            if dropped:
                self.dropped_out.write(dropped)
            entry = {"request": index, "parsed": blocks, "kept": len(kept),
                     "dropped": dict(Counter(r["reason"] for r in dropped)), "finish_reason": finish_reason,
                     "usage": usage or {}, "cached": cached}
            self.ledger_out.write([entry])  # last: a request in the ledger has all its lines written
            for r in kept:
                self.by_category[r["category"]] += 1
                self.label_by[r["label_by"]] += 1
            self.kept += len(kept)
            self._count(entry)
            self.last_entry = entry
            taken += 1
        return taken

    def fail(self, index: int, reason: str) -> None:
        """A request that gave up after its retries (within ``max_failures``): recorded, no items."""
        entry = {"request": index, "failed": reason}
        self.ledger_out.write([entry])
        self._count(entry)

    def summary(self) -> dict:
        return {"kept": self.kept, "requests_processed": self.requests, "requests_failed": self.failed,
                "tasks_parsed": self.parsed, "dropped": {r: self.dropped.get(r, 0) for r in REASONS},
                "kept_by_category": {c: self.by_category[c] for c in CATEGORIES if self.by_category[c]},
                "label_by": dict(self.label_by), "finish_reasons": dict(self.finish),
                "tokens": {"prompt": self.usage.get("prompt_tokens", 0),
                           "completion": self.usage.get("completion_tokens", 0)}}


# ------------------------------------------------------------------------------------ the stage

@dataclass
class Paths:
    """Where the stage writes, under the study folder."""
    generated: Path
    dropped: Path
    stats: Path
    ledger: Path
    state: Path
    cache: Path

    @classmethod
    def of(cls, cfg: StudyConfig, study_dir: Path) -> "Paths":
        sd = Path(study_dir)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.selfinstruct.model).strip("._") or "teacher"
        return cls(sd / "generated.jsonl", sd / "generated_dropped.jsonl", sd / "generated_stats.json",
                   sd / "selfinstruct" / "requests.jsonl", sd / "selfinstruct" / "state.json",
                   sd / "selfinstruct" / "cache" / f"{slug}.jsonl")


def settings_hash(cfg: StudyConfig, seeds: list[dict], parts: PromptParts) -> str:
    """What the processed outputs depend on besides the target: a change rebuilds them from the cache."""
    s = cfg.selfinstruct.model_dump(mode="json")
    for k in ("target", "base_url", "api_key_env", "concurrency", "max_requests", "max_retries", "timeout_s",
              "backoff_base_s", "backoff_max_s", "max_failures", "price_per_1k_input", "price_per_1k_output",
              "seeds_file", "prompt_file"):
        s.pop(k)
    blob = {"selfinstruct": s, "seed": cfg.seed, "seeds": seeds, "prompt": parts.__dict__,
            "category_map": cfg.data.category_map}
    return hashlib.sha256(json.dumps(blob, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def _resume_state(paths: Paths, settings: str, target: int) -> tuple[list[dict], list[dict]]:
    """(kept items, ledger) to continue from; rewrites the outputs when a kill or a change left them unusable."""
    def fresh(why: str | None):
        if why:
            print(f"self-instruct: {why}; rebuilding the outputs (the cached replies are reused)", flush=True)
        for p in (paths.generated, paths.dropped, paths.ledger):
            p.unlink(missing_ok=True)
        write_json(paths.state, {"settings": settings})
        return [], []

    if not paths.state.exists() or not paths.ledger.exists():
        return fresh(None if not paths.generated.exists() else "no ledger of processed requests")
    if read_json(paths.state).get("settings") != settings:
        return fresh("the settings changed (seeds, prompt, teacher, sampling, filters or de-duplication)")
    ledger = read_jsonl(paths.ledger, tolerate_torn_tail=True)
    if [e["request"] for e in ledger] != list(range(len(ledger))):
        return fresh("the ledger is not a run of consecutive requests")
    kept = read_jsonl(paths.generated, tolerate_torn_tail=True) if paths.generated.exists() else []
    dropped = read_jsonl(paths.dropped, tolerate_torn_tail=True) if paths.dropped.exists() else []
    done = n_ledger = len(ledger)
    last = ledger[-1] if ledger else {}
    if last.get("dropped", {}).get("over_target") and len(kept) < target:
        done -= 1  # the target grew: the reply that reached the old one is processed again
        ledger = ledger[:-1]
    keep_k = [r for r in kept if r["request"] < done]
    keep_d = [r for r in dropped if r["request"] < done]
    if len(keep_k) != sum(e.get("kept", 0) for e in ledger):
        return fresh("generated.jsonl does not match the ledger")
    if len(keep_k) > target:
        return fresh(f"the target shrank to {target} below the {len(keep_k)} items kept")
    if len(keep_k) != len(kept) or len(keep_d) != len(dropped) or done != n_ledger:
        # a half-processed request (or the reprocessed last one): cut its lines from every file
        write_jsonl(paths.generated, keep_k)
        write_jsonl(paths.dropped, keep_d)
        write_jsonl(paths.ledger, ledger)
    return keep_k, ledger


def max_requests(cfg: StudyConfig) -> int:
    """``selfinstruct.max_requests``, or 4 x target / tasks_per_request (+ concurrency) when unset."""
    s = cfg.selfinstruct
    return s.max_requests or math.ceil(4 * s.target / s.tasks_per_request) + s.concurrency


class _Run:
    """The request loop: keeps requests in flight, hands replies to the collector in request order."""

    def __init__(self, cfg, seeds, parts, collector: Collector, cache, key: str | None, progress=None):
        self.cfg, self.s, self.seeds, self.parts = cfg, cfg.selfinstruct, seeds, parts
        self.collector, self.cache, self.key, self.progress = collector, cache, key, progress
        self.api = None
        self.sent_now = 0
        self.from_cache = 0
        self.unused = 0
        self.failures: list[str] = []

    def prompt(self, index: int) -> str:
        examples = sample_examples(self.seeds, self.s.examples_per_request, self.cfg.seed, index)
        return build_request(self.parts, examples, self.s.tasks_per_request, self.s.label == "teacher")

    async def fetch(self, index: int):
        """(text, finish_reason, usage, cached) of request ``index``, or the failure reason as a str."""
        from helpers.openai_client import RequestFailed

        prompt = self.prompt(index)
        key = request_key(self.cfg, prompt, index)
        hit = self.cache.get(key)
        if hit:
            r = hit[-1]
            return r["text"], r.get("finish_reason"), r.get("usage") or {}, True
        if self.api is None:
            raise SelfInstructError(f"request {index} is not in the cache and no endpoint was opened")
        try:
            reply = await self.api.complete(prompt, index, temperature=self.s.temperature, top_p=self.s.top_p,
                                            max_tokens=self.s.max_tokens)
        except RequestFailed as e:
            return str(e)
        self.cache.add({"key": key, "request": index, "text": reply.text, "finish_reason": reply.finish_reason,
                        "usage": reply.usage, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.sent_now += 1
        return reply.text, reply.finish_reason, reply.usage, False

    def _take(self, batch: list[tuple]) -> None:
        if batch:
            taken = self.collector.process_many(batch)
            self.from_cache += sum(r[-1] for r in batch[:taken])
            self.unused += len(batch) - taken

    def _wanted(self, outstanding: int) -> bool:
        """Whether to send one more request: the replies on their way are not expected to reach the target."""
        c = self.collector
        answered = c.requests - c.failed
        per_request = c.kept / answered if answered > 0 else 0.7 * self.s.tasks_per_request  # a guess until replies come
        return c.kept + 0.9 * outstanding * max(per_request, 0.1) < c.target

    def _show(self, kept_before: int) -> None:
        if self.progress is None:
            return
        c = self.collector
        drops = ", ".join(f"{r} {n}" for r, n in c.dropped.most_common(3) if n)
        cost = (c.usage["prompt_tokens"] / 1000 * self.s.price_per_1k_input
                + c.usage["completion_tokens"] / 1000 * self.s.price_per_1k_output)
        self.progress.set_postfix_str(
            f"req {c.requests} ({self.from_cache} cached, {c.failed} failed), dropped {sum(c.dropped.values())}"
            f"{f' ({drops})' if drops else ''}, tokens {c.usage['prompt_tokens']}+{c.usage['completion_tokens']}, "
            f"${cost:.4f}", refresh=False)
        self.progress.update(c.kept - kept_before)

    async def run(self) -> None:
        from helpers.openai_client import ChatEndpoint

        c, s = self.collector, self.s
        if self.key is not None:
            self.api = ChatEndpoint(s, self.key, section="selfinstruct", what="teacher", error=SelfInstructError)
        limit = max_requests(self.cfg)
        window = 2 * s.concurrency  # issued but not yet processed; the endpoint keeps `concurrency` in flight
        pending: dict[int, asyncio.Future] = {}
        head = nxt = c.requests
        finished = False
        try:
            while c.kept < c.target:
                while len(pending) < window and nxt < limit and self._wanted(len(pending)):
                    pending[nxt] = asyncio.ensure_future(self.fetch(nxt))
                    nxt += 1
                if head not in pending:
                    break  # max_requests reached
                ready = [(head, await pending.pop(head))]
                while head + len(ready) in pending and pending[head + len(ready)].done() and len(ready) < window:
                    ready.append((head + len(ready), pending.pop(head + len(ready)).result()))
                before = c.kept
                batch = []
                for index, result in ready:  # replies in request order; a failure ends a batch
                    if not isinstance(result, str):
                        batch.append((index, *result))
                        continue
                    self._take(batch)
                    batch = []
                    if c.kept >= c.target:
                        break
                    self.failures.append(f"request {index}: {result}")
                    if len(self.failures) > s.max_failures:
                        raise SelfInstructIncomplete(
                            f"{len(self.failures)} teacher requests failed after their retries (selfinstruct."
                            f"max_failures is {s.max_failures}), e.g. {self.failures[:3]}. Every reply received is "
                            f"cached in {self.cache.path} and {c.kept} items are kept: run the stage again to "
                            f"continue from request {index}.")
                    c.fail(index, result)
                self._take(batch)
                head += len(ready)
                self._show(before)
            finished = True
        finally:
            if self.api is not None:
                self.api.stopped = True  # requests not yet sent are not sent
            if not finished:  # an error or an interrupt: stop everything now
                for f in pending.values():
                    f.cancel()
            # at the target, the requests in flight are finished and cached (they are paid for)
            done = await asyncio.gather(*pending.values(), return_exceptions=True)
            self.unused += sum(isinstance(r, tuple) for r in done)
            if self.api is not None:
                await self.api.close()


def generate_pool(cfg: StudyConfig, study_dir: Path, progress: bool = True) -> dict:
    """Run (or resume) the stage: ``generated.jsonl``, ``generated_dropped.jsonl``, ``generated_stats.json``.

    Returns the stats written to ``generated_stats.json``.
    """
    from helpers.openai_client import JsonlAppender, RequestCache, check_api_key, run_coroutine

    s = cfg.selfinstruct
    seeds = load_seed_tasks(cfg)
    parts = load_prompt(s.prompt_file)
    paths = Paths.of(cfg, study_dir)
    t0 = time.perf_counter()
    kept, ledger = _resume_state(paths, settings_hash(cfg, seeds, parts), s.target)
    outs = [JsonlAppender(p) for p in (paths.generated, paths.dropped, paths.ledger)]
    collector = Collector(cfg, seeds, s.target, *outs)
    collector.restore(kept, ledger)
    resumed = collector.requests
    cache = RequestCache(paths.cache)
    key = check_api_key(s, "selfinstruct", "the self-instruct stage's teacher", SelfInstructError) \
        if collector.kept < s.target else None
    from tqdm import tqdm

    bar = tqdm(total=s.target, initial=collector.kept, desc=f"self-instruct {s.model}", unit="item",
               mininterval=5, disable=not progress)
    run = _Run(cfg, seeds, parts, collector, cache, key, progress=bar)
    try:
        run_coroutine(run.run)
    finally:
        bar.close()
        for o in outs:
            o.close()
        cache.close()
    summary = collector.summary()
    cost = (summary["tokens"]["prompt"] / 1000 * s.price_per_1k_input
            + summary["tokens"]["completion"] / 1000 * s.price_per_1k_output)
    api = run.api.stats if run.api is not None else None
    stats = {
        "teacher": s.model, "target": s.target, "reached_target": collector.kept >= s.target, **summary,
        "cost": round(cost, 6),
        "requests": {"processed": collector.requests, "resumed_from": resumed, "sent_now": run.sent_now,
                     "from_cache": run.from_cache, "failed": collector.failed, "unused_in_cache": run.unused,
                     "attempts_now": api.attempts if api else 0, "retries_now": api.retries if api else 0,
                     "max_requests": max_requests(cfg)},
        "seeds": {"file": str(resolve(s.seeds_file)), "tasks": len(seeds)},
        "settings": {k: v for k, v in s.model_dump(mode="json").items() if k not in ("base_url",)},
        "files": {"generated": str(paths.generated), "dropped": str(paths.dropped), "ledger": str(paths.ledger),
                  "cache": str(paths.cache)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(paths.stats, stats)
    drops = ", ".join(f"{r} {n}" for r, n in stats["dropped"].items() if n) or "none"
    print(f"self-instruct {s.model}: {collector.kept} of {s.target} items kept from {summary['tasks_parsed']} tasks in "
          f"{collector.requests} replies ({run.sent_now} requested now, {run.from_cache} from the cache, "
          f"{collector.failed} failed); dropped: {drops}; {summary['tokens']['prompt']} input + "
          f"{summary['tokens']['completion']} output tokens, ${cost:.4f}; {stats['seconds']} s", flush=True)
    if not stats["reached_target"]:
        print(f"self-instruct: the target of {s.target} items was NOT reached within selfinstruct.max_requests "
              f"{max_requests(cfg)}; raise it (or look at the drop reasons) and run the stage again: it continues",
              flush=True)
    return stats


# ------------------------------------------------------------------------------------ for the notebook

def read_stats(study_dir: Path) -> dict | None:
    p = Path(study_dir) / "generated_stats.json"
    return read_json(p) if p.exists() else None


def reason_table(stats: dict | None) -> list[dict]:
    """One row per outcome: kept, then every drop reason with its count, share of parsed tasks and meaning."""
    if not stats:
        return []
    total = max(1, stats["tasks_parsed"])
    rows = [{"outcome": "kept", "tasks": stats["kept"], "share": round(stats["kept"] / total, 4), "meaning": ""}]
    rows += [{"outcome": f"dropped: {r}", "tasks": n, "share": round(n / total, 4), "meaning": REASON_TEXT[r]}
             for r, n in stats["dropped"].items()]
    return rows


def examples(study_dir: Path, per_category: int = 1) -> list[dict]:
    """The first kept items of every use case in ``generated.jsonl`` (for a look at what the teacher wrote)."""
    p = Path(study_dir) / "generated.jsonl"
    if not p.exists():
        return []
    seen, out = Counter(), []
    for r in read_jsonl(p):
        if seen[r["category"]] < per_category:
            seen[r["category"]] += 1
            out.append({k: r[k] for k in ("category", "instruction", "input", "output", "id")})
    order = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(out, key=lambda r: order.get(r["category"], len(order)))


def dropped_examples(study_dir: Path, per_reason: int = 1) -> list[dict]:
    """The first dropped tasks of every reason in ``generated_dropped.jsonl``, in the order of ``REASONS``."""
    p = Path(study_dir) / "generated_dropped.jsonl"
    if not p.exists():
        return []
    seen, out = Counter(), []
    for r in read_jsonl(p):
        if seen[r["reason"]] < per_reason:
            seen[r["reason"]] += 1
            out.append({k: r.get(k, "") for k in ("reason", "instruction", "input", "output", "request")})
    return sorted(out, key=lambda r: REASONS.index(r["reason"]))
