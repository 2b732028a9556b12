"""The 12 use cases: their canonical names, the many ways real files spell them, how tables show them.

Inside the project a use case has one spelling (snake_case English, ``CATEGORIES``, in the
paper's order). Real files say "Open QA", "openqa", "ｂｒａｉｎｓｔｏｒｍ", "数学" or "chain of
thought": ``canonical_category`` maps them after NFKC normalisation, case folding and dropping
everything but letters and digits; ``SYNONYMS`` lists the known spellings. Every stage reads
these, so they live here, once.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

CATEGORIES = (
    "math", "code", "cot", "classification", "extraction", "open_qa",
    "closed_qa", "generation", "brainstorming", "rewrite", "translation",
    "summarization",
)
"""The paper's 12 use cases, in its order, spelled the one canonical way."""

UNLABELLED = "unlabelled"
"""The category of train records whose file carries no use-case label."""

OPEN_ENDED = ("generation", "brainstorming", "rewrite")
"""Use cases whose eval items may come without a reference answer (BELLE leaves std_answer empty)."""

SYNONYMS: dict[str, tuple[str, ...]] = {
    "math": ("mathematics", "maths", "arithmetic", "calculation", "calculate", "math problem",
             "math word problem", "math qa", "数学", "数学题", "数学问题", "数学计算", "数学运算", "计算",
             "计算题", "算术", "算数", "应用题", "数学应用题"),
    "code": ("coding", "programming", "program", "programs", "code generation", "codegen", "code gen",
             "code writing", "write code", "代码", "编程", "程序", "代码生成", "代码编写", "写代码", "编程题",
             "程序设计"),
    "cot": ("chain of thought", "chain-of-thought", "chainofthought", "cot reasoning", "reasoning",
            "step by step", "step-by-step reasoning", "logical reasoning", "思维链", "推理", "逻辑推理",
            "链式思考", "链式推理", "思维链推理", "分步推理"),
    "classification": ("classify", "classifying", "text classification", "categorization",
                       "categorisation", "categorize", "分类", "文本分类", "归类", "分类任务"),
    "extraction": ("extract", "extracting", "information extraction", "info extraction", "ie",
                   "entity extraction", "key information extraction", "抽取", "提取", "信息抽取", "信息提取",
                   "实体抽取", "关键信息抽取", "抽取任务"),
    "open_qa": ("open qa", "openqa", "open-qa", "open question answering", "open domain qa",
                "open-domain qa", "open domain question answering", "open question", "general qa",
                "general question answering", "knowledge qa", "开放问答", "开放式问答", "开放域问答",
                "开放型问答", "开放性问答", "开放问题", "知识问答", "常识问答"),
    "closed_qa": ("closed qa", "closedqa", "closed-qa", "closed question answering", "closed domain qa",
                  "closed-domain qa", "reading comprehension", "extractive qa", "context qa",
                  "封闭问答", "封闭式问答", "封闭域问答", "封闭型问答", "封闭性问答", "阅读理解", "阅读问答"),
    "generation": ("generate", "generating", "text generation", "creative writing", "writing",
                   "creation", "content generation", "生成", "文本生成", "写作", "创作", "创意写作", "内容生成",
                   "文案生成", "写作生成"),
    "brainstorming": ("brainstorm", "brain storming", "brain storm", "ideation", "idea generation",
                      "头脑风暴", "脑暴", "集思广益", "创意", "点子"),
    "rewrite": ("rewriting", "rewritten", "re-write", "paraphrase", "paraphrasing", "polish",
                "polishing", "text rewriting", "style transfer", "改写", "重写", "润色", "复述",
                "文本改写", "改写任务", "转述"),
    "translation": ("translate", "translating", "machine translation", "mt", "zh-en translation",
                    "en-zh translation", "翻译", "机器翻译", "中英翻译", "英中翻译", "英汉翻译", "汉英翻译",
                    "中译英", "英译中", "翻译任务"),
    "summarization": ("summarisation", "summary", "summaries", "summarize", "summarise", "summarizing",
                      "summarising", "text summarization", "abstract", "摘要", "总结", "文本摘要", "概括",
                      "文本总结", "摘要生成", "内容总结"),
}
"""Known spellings per canonical category, compared after ``label_key`` (the canonical name
itself always maps to itself)."""


def check_map_targets(mapping: dict, allowed: set[str] | None = None) -> dict:
    """``mapping`` (label -> use case) if every target is in ``allowed``; else a ValueError naming the bad ones.

    ``allowed`` defaults to the 12 use cases plus ``unlabelled``.

    >>> check_map_targets({"poetry": "generation"})
    {'poetry': 'generation'}
    >>> check_map_targets({"poetry": "poems"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown target use case(s) {'poetry': 'poems'}; known: brainstorming, classification, ...
    """
    allowed = allowed if allowed is not None else set(CATEGORIES) | {UNLABELLED}
    bad = {k: t for k, t in mapping.items() if t not in allowed}
    if bad:
        raise ValueError(f"unknown target use case(s) {bad}; known: {', '.join(sorted(allowed))}")
    return mapping


def label_key(label) -> str:
    """The comparison key of a label: NFKC, case-folded, letters and digits only.

    >>> [label_key(x) for x in ["Open QA", "open_qa", "ＯＰＥＮ\u3000ＱＡ", " Open\u00a0QA.", "数学 "]]
    ['openqa', 'openqa', 'openqa', 'openqa', '数学']
    """
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", str(label)).casefold())


def _lookup_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for cat in CATEGORIES:
        for spelling in (cat, *SYNONYMS[cat]):
            key = label_key(spelling)
            if table.setdefault(key, cat) != cat:
                raise AssertionError(f"synonym {spelling!r} is listed for {table[key]!r} and {cat!r}")
    return table


_LOOKUP = _lookup_table()


def canonical_category(label, extra_map: dict | None = None) -> str | None:
    """The canonical use-case name of ``label`` (one of ``helpers.study.categories.CATEGORIES``), or None.

    ``extra_map`` (the config's ``data.category_map``) maps further labels, compared the same
    way, and wins over the built-in table.

    >>> [canonical_category(x) for x in ["Open QA", " brainstorm", "数学", "翻译", "Closed_QA", "poetry"]]
    ['open_qa', 'brainstorming', 'math', 'translation', 'closed_qa', None]
    >>> canonical_category("poetry", {"Poetry": "generation"})
    'generation'
    """
    if label is None or isinstance(label, (bool, dict, list)):
        return None
    key = label_key(label)
    if not key:
        return None
    if extra_map:
        for raw, target in extra_map.items():
            if label_key(raw) == key:
                return target
    return _LOOKUP.get(key)


DISPLAY_NAMES = {
    "math": "Math",
    "code": "Code",
    "cot": "COT",
    "classification": "Classification",
    "extraction": "Extraction",
    "open_qa": "Open QA",
    "closed_qa": "Closed QA",
    "generation": "Generation",
    "brainstorming": "Brainstorming",
    "rewrite": "Rewrite",
    "translation": "Translation",
    "summarization": "Summarization",
    "overall": "Overall",
    "overall_items": "Overall (per item)",
}
"""Category names as the paper writes them, for tables and figures."""


def display_name(category: str) -> str:
    """The paper's name for a category (unknown names pass through)."""
    return DISPLAY_NAMES.get(category, category)


def category_order(categories: Iterable[str]) -> list[str]:
    """The paper's order for known categories, then any others alphabetically."""
    present = set(categories)
    known = [c for c in CATEGORIES if c in present]
    return known + sorted(present - set(known))
