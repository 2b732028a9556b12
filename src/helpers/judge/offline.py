"""The offline judge: a deterministic 0..1 score for an answer to an eval item.

``score_answer(item, answer) -> (score, rationale)`` dispatches on ``item["check"]["type"]``
(the checks written by ``helpers.data.suite``; any eval file may carry them):

============== ====================================================================
check type     score
============== ====================================================================
number         1 if the last number in the answer equals ``answer`` (exact, as fractions), else 0
python_tests   fraction of ``tests`` that pass when run with the answer's code in a sandboxed
               subprocess; 0 on a timeout, a crash, a syntax error or no code; None (not run)
               where no OS isolation is available and ``judge.code_execution`` is ``isolated``
label          1 if the answer's label equals ``label``, else 0
spans          F1 between the set of expected spans and the pieces of the answer
answer_in_passage, text
               character F1 (multiset of characters after normalisation) against
               ``answer`` (answer_in_passage) or the reference (text)
translation    sacrebleu's sentence chrF against the reference, divided by 100
constraints    0.5 * C + 0.5 * ROUGE-L(answer, reference), with C the mean of the count check
               and one check per required word, halved when the length is out of bounds
facts          0.5 * (share of facts present) + 0.5 * ROUGE-L(answer, reference)
(no check)     character F1 against the reference
============== ====================================================================

An empty (or whitespace-only) answer scores 0. An unknown check type raises
``ValueError`` naming the item and the type. Normalisation (``normalize``) is NFKC,
lower case, and dropping whitespace, punctuation and control characters, so
"巴黎。" and "巴黎" are the same answer. ROUGE-L here is the F1 of the longest common
subsequence of normalised characters (Chinese has no word boundaries).

Code answers run in OS isolation (``helpers.judge.sandbox``: bubblewrap, else unshare namespaces: no
network, its own PID namespace, a read-only filesystem without the home or the study folder, a private
tmpfs, uid 65534 under bubblewrap), or not at all unless ``judge.code_execution: unisolated`` opts in.
Inside, in every mode, the child is ``python -I -S`` in a fresh temporary directory (removed afterwards),
with address space (512 MB), CPU time, file size and process-count limits set by the child itself
before any answer code runs (``resource.setrlimit``; done in the child rather than in ``preexec_fn``
because ``preexec_fn`` can deadlock in a parent with threads, such as a notebook kernel running torch),
a seccomp filter refusing fork, exec and non-thread clone, sockets replaced by a function that raises,
file writes outside the temporary directory and process-spawning / file-removing ``os`` functions
refused, and a wall-clock timeout (5 s) after which the whole process group is killed. Only the
OS isolation is a security boundary; the Python-level guard is a guard against accidents.
"""
from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from helpers.judge.code import score_python_tests
from helpers.judge.sandbox import ISOLATED, NOT_RUN, NOT_RUN_REASON, execution_mode
from helpers.judge.text_metrics import char_f1, normalize, rouge_l


def score_answer(item: dict, answer: str, code_execution: str = ISOLATED) -> tuple[float | None, str]:
    """Score ``answer`` to eval ``item`` in [0, 1], with a short rationale.

    ``code_execution`` (``judge.code_execution``) says how ``python_tests`` items may run the answer's code
    (``helpers.judge.sandbox``): with ``isolated`` on a machine without OS isolation every such item, empty
    answers included, scores None with the reason, so that a use case is never averaged over a biased subset.

    >>> score_answer({"id": "x", "reference": "82", "check": {"type": "number", "answer": 82}}, "答案：82")
    (1.0, 'expected 82, got 82')
    """
    check = item.get("check")
    if check and check.get("type") == "python_tests" and execution_mode(code_execution) == NOT_RUN:
        return None, NOT_RUN_REASON
    if answer is None or not str(answer).strip():
        return 0.0, "empty answer"
    answer = str(answer)
    check = item.get("check")
    if not check:
        return _char_f1_score(answer, _reference(item))
    kind = check.get("type")
    scorer = SCORERS.get(kind)
    if scorer is None:
        raise ValueError(f"item {item.get('id')!r}: unknown check type {kind!r}; known: {sorted(SCORERS)}")
    if kind == "python_tests":
        score, why = score_python_tests(item, check, answer, code_execution=code_execution)
    else:
        score, why = scorer(item, check, answer)
    return float(min(1.0, max(0.0, score))), why


def _reference(item: dict) -> str:
    ref = item.get("reference")
    if ref is None or not str(ref).strip():
        raise ValueError(f"item {item.get('id')!r}: no check and no reference to score against")
    return str(ref)


def _char_f1_score(answer: str, reference: str) -> tuple[float, str]:
    f = char_f1(answer, reference)
    return f, f"char F1 {f:.2f} vs {reference[:30]!r}"


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?")

_CN_NUM = re.compile(r"[零〇一二两三四五六七八九十百千万]+")

_CN_DIGIT = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}

_CN_UNIT = {"十": 10, "百": 100, "千": 1000}


def _cn_to_int(s: str) -> int | None:
    """Chinese numerals below 100 million: 六 -> 6, 十二 -> 12, 三百零五 -> 305, 两万 -> 20000."""
    total, section, digit = 0, 0, None
    for ch in s:
        if ch in _CN_DIGIT:
            digit = _CN_DIGIT[ch]
        elif ch in _CN_UNIT:
            section += (1 if digit is None else digit) * _CN_UNIT[ch]
            digit = None
        elif ch == "万":
            total += (section + (digit or 0)) * 10000
            section, digit = 0, None
    return total + section + (digit or 0)


def last_number(text: str) -> Fraction | None:
    """The last number in ``text`` as an exact fraction, or None.

    Handles full-width digits, thousands separators, decimals, fractions, a minus sign
    (but not the operator in ``8-2=6``), and Chinese numerals when there are no digits.

    >>> last_number("17+9=26，26-6=20，答案是20。")
    Fraction(20, 1)
    >>> last_number("答案：１,２３４.50")
    Fraction(2469, 2)
    >>> last_number("结果是-3")
    Fraction(-3, 1)
    >>> last_number("答案是六")
    Fraction(6, 1)
    """
    s = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    matches = list(_NUMBER.finditer(s))
    if matches:
        m = matches[-1]
        tok = m.group()
        if tok.startswith("-") and m.start() > 0 and _is_operand_end(s[m.start() - 1]):
            tok = tok[1:]  # a subtraction, not a negative number
        try:
            return Fraction(tok)
        except (ValueError, ZeroDivisionError):
            return None
    cn = _CN_NUM.findall(s)
    if cn:
        return Fraction(_cn_to_int(cn[-1]))
    return None


def _is_operand_end(ch: str) -> bool:
    return (ch.isascii() and ch.isalnum()) or ch in ")]）"


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{float(x):g}"


def score_number(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """1 if the last number of the answer equals ``check["answer"]``.

    With ``{"type": "number", "answer": 304}``: "38×8=304" -> 1.0; "答案：304。" -> 1.0;
    "38×8=314" -> 0.0 ("expected 304, got 314"); "304.0" -> 1.0; "不知道" -> 0.0 ("no number").
    """
    expected = Fraction(str(check["answer"]))
    got = last_number(answer)
    if got is None:
        return 0.0, f"expected {_fmt(expected)}, got no number"
    ok = got == expected or abs(got - expected) <= Fraction(1, 10 ** 6) * max(1, abs(expected))
    return (1.0 if ok else 0.0), f"expected {_fmt(expected)}, got {_fmt(got)}"


def score_label(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """1 if the answer's label is ``check["label"]``.

    The answer's label is the allowed label equal to the whole normalised answer, or
    else the allowed label that appears earliest in it (longest first on a tie).
    With labels 正面/负面 and label 正面: "正面" -> 1.0; "这条评论是正面的。" -> 1.0;
    "负面" -> 0.0; "中性" -> 0.0 ("no allowed label").
    """
    labels, expected = check["labels"], check["label"]
    a = normalize(answer)
    got = next((lab for lab in labels if normalize(lab) == a), None)
    if got is None:
        found = [(a.find(normalize(lab)), -len(lab), lab) for lab in labels if normalize(lab) and normalize(lab) in a]
        got = min(found)[2] if found else None
    if got is None:
        return 0.0, f"expected {expected}, no allowed label in the answer"
    return (1.0 if got == expected else 0.0), f"expected {expected}, got {got}"


_SPAN_SEP = re.compile(r"[\s、,;:：。.!?/|()\[\]{}<>\"'“”‘’《》【】「」]+")

_SPAN_JOIN = re.compile(r"[和与及跟]")


def _span_norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).strip().lower()


def answer_spans(answer: str, expected: set[str] = frozenset()) -> list[str]:
    """The answer cut into pieces at punctuation and whitespace; a piece that is not an
    expected span is cut again at 和/与/及/跟 (so "李娜和张伟" gives two names but
    "呼和浩特" survives when expected).

    >>> answer_spans("李娜、杭州")
    ['李娜', '杭州']
    >>> answer_spans("人名：李娜和张伟")
    ['人名', '李娜', '张伟']
    """
    out: list[str] = []
    for piece in _SPAN_SEP.split(_span_norm(answer)):
        if not piece:
            continue
        parts = [piece] if piece in expected else [p for p in _SPAN_JOIN.split(piece) if p]
        out.extend(p for p in parts if p not in out)
    return out


def score_spans(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """Set F1 between expected spans and the answer's pieces (``answer_spans``).

    With spans [苏子涵, 黄悦, 乐山]: "苏子涵、黄悦、乐山" -> 1.0; "苏子涵、乐山" -> 0.8;
    "人名：苏子涵、黄悦；地名：乐山" -> 0.75 (the labels are extra pieces); "杭州" -> 0.0.
    """
    expected = {_span_norm(s) for s in check["spans"]}
    pieces = answer_spans(answer, expected)
    tp = len(expected & set(pieces))
    if not tp:
        return 0.0, f"none of {sorted(expected)} found"
    p, r = tp / len(pieces), tp / len(expected)
    f = 2 * p * r / (p + r)
    return f, f"span F1 {f:.2f}: {tp} of {len(expected)} expected, {len(pieces)} given"


def score_text(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """Character F1 against the reference (open QA, whose reference is the bare answer).

    With reference "蔬菜": "蔬菜" -> 1.0; "芹菜属于蔬菜。" -> 0.5; "水果" -> 0.0.
    """
    return _char_f1_score(answer, _reference(item))


def score_in_passage(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """Character F1 against ``check["answer"]`` (a span of the passage; closed QA).

    With answer "1500人": "1500人" -> 1.0; "1500" -> 0.89; "大约1500人到场" -> 0.71; "徐州" -> 0.0.
    """
    return _char_f1_score(answer, str(check.get("answer") or _reference(item)))


def score_translation(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """sacrebleu ``sentence_chrf`` against the reference, / 100.

    With reference "My friend is in the kitchen.": the same -> 1.0;
    "My friend is in a kitchen." -> 0.74; "我的朋友在厨房里。" -> 0.0.
    """
    import sacrebleu

    ref = _reference(item)
    chrf = sacrebleu.sentence_chrf(answer.strip(), [ref]).score / 100
    return chrf, f"chrF {chrf:.2f}"


_ITEM_MARK = re.compile(r"^\s*(?:\d+\s*[.、)）:：](?!\d)|[（(]\d+[)）]|[-*•·])")

_INLINE_MARK = re.compile(r"(?:^|(?<=[\s，,；;。]))\d+\s*[.、)）](?!\d)")


def count_units(answer: str, unit: str) -> int:
    """How many list items (``unit="items"``) or sentences (``unit="sentences"``).

    Items: numbered items (when some line holds several: all numbered items); else
    numbered or bulleted lines; else
    non-empty lines when there are several; else pieces between 、；; on one line (not
    commas: a prose sentence with commas is one item, not a list).
    Sentences: pieces between 。！？!?；; and line breaks.

    >>> count_units("1. 苹果\\n2. 香蕉\\n3. 橙子", "items")
    3
    >>> count_units("苹果、香蕉、橙子", "items")
    3
    >>> count_units("秋天的杭州，天空又高又蓝。早晚的风有些凉。", "sentences")
    2
    """
    text = unicodedata.normalize("NFKC", answer).strip()
    if unit == "sentences":
        return len([p for p in re.split(r"[。!?;；\n]+", text) if normalize(p)])
    lines = [ln for ln in text.splitlines() if normalize(ln)]
    inline = sum(len(_INLINE_MARK.findall(ln)) for ln in lines)
    if any(len(_INLINE_MARK.findall(ln)) > 1 for ln in lines):
        return inline
    marked = [ln for ln in lines if _ITEM_MARK.match(ln)]
    if marked:
        return len(marked)
    if len(lines) > 1:
        return len(lines)
    return len([p for p in re.split(r"[、;；]", text) if normalize(p)])


def score_constraints(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """0.5 * C + 0.5 * ROUGE-L(answer, reference) (C alone when there is no reference).

    C is the mean of [count == ``count``] (when count is set) and one [word present] per
    ``required`` word, multiplied by 0.5 when the answer's length without whitespace is
    outside [``min_chars``, ``max_chars``]; with neither count nor words, C is the length
    check alone. For the item "关于减轻压力，请给出两条建议。" (count 2, no words, reference
    "1. 和朋友聊聊天\\n2. 保证充足的睡眠"): the reference -> 1.0;
    "1. 多运动\\n2. 早点睡觉" -> 0.62 (count right, little overlap); "多运动" -> 0.0.
    """
    parts, notes = [], []
    if check.get("count") is not None:
        n = count_units(answer, check.get("unit") or "items")
        parts.append(1.0 if n == check["count"] else 0.0)
        notes.append(f"count {n}/{check['count']}")
    required = check.get("required") or []
    if required:
        a = normalize(answer)
        hits = [1.0 if normalize(w) in a else 0.0 for w in required]
        parts.extend(hits)
        notes.append(f"words {int(sum(hits))}/{len(required)}")
    length = len("".join(answer.split()))
    lo, hi = check.get("min_chars", 0), check.get("max_chars", float("inf"))
    in_bounds = lo <= length <= hi
    notes.append(f"length {length} {'ok' if in_bounds else f'outside {lo}..{hi}'}")
    if parts:
        c = sum(parts) / len(parts) * (1.0 if in_bounds else 0.5)
    else:
        c = 1.0 if in_bounds else 0.0
    ref = item.get("reference")
    if ref:
        r = rouge_l(answer, str(ref))
        notes.append(f"ROUGE-L {r:.2f}")
        return 0.5 * c + 0.5 * r, ", ".join(notes)
    return c, ", ".join(notes)


def score_facts(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """0.5 * (share of ``facts`` found in the answer) + 0.5 * ROUGE-L against the reference.

    For facts [闫雨桐, 跑步, 不喜欢] and reference "闫雨桐不喜欢跑步。": the reference -> 1.0;
    "闫雨桐喜欢跑步。" (the negation lost) -> 0.80; "我不知道。" -> 0.08.
    """
    facts = check.get("facts") or []
    a = normalize(answer)
    found = [f for f in facts if normalize(f) in a]
    share = len(found) / len(facts) if facts else None
    ref = item.get("reference")
    r = rouge_l(answer, str(ref)) if ref else None
    if share is None and r is None:
        raise ValueError(f"item {item.get('id')!r}: facts check without facts or reference")
    if share is None:
        return r, f"ROUGE-L {r:.2f}"
    if r is None:
        return share, f"facts {len(found)}/{len(facts)}"
    missing = [f for f in facts if f not in found]
    return 0.5 * share + 0.5 * r, (f"facts {len(found)}/{len(facts)}, ROUGE-L {r:.2f}"
                                   + (f", missing {missing}" if missing else ""))


SCORERS = {
    "number": score_number,
    "python_tests": score_python_tests,
    "label": score_label,
    "spans": score_spans,
    "answer_in_passage": score_in_passage,
    "text": score_text,
    "translation": score_translation,
    "constraints": score_constraints,
    "facts": score_facts,
}


_NEEDS = {
    "number": lambda item, c: None if c.get("answer") is not None else "number check without 'answer'",
    "python_tests": lambda item, c: None if c.get("tests") else "python_tests check without tests",
    "label": lambda item, c: None if c.get("labels") and c.get("label") is not None
    else "label check without 'labels' and 'label'",
    "spans": lambda item, c: None if c.get("spans") else "spans check without spans",
    "answer_in_passage": lambda item, c: None if c.get("answer") or _has_reference(item)
    else "answer_in_passage check without 'answer' or a reference",
    "text": lambda item, c: None if _has_reference(item) else "text check without a reference",
    "translation": lambda item, c: None if _has_reference(item) else "translation check without a reference",
    "constraints": lambda item, c: None,
    "facts": lambda item, c: None if c.get("facts") or _has_reference(item) else "facts check without facts or a reference",
}


def _has_reference(item: dict) -> bool:
    return item.get("reference") is not None and bool(str(item["reference"]).strip())


def unscorable(item: dict) -> str | None:
    """Why ``score_answer`` cannot score ``item`` whatever the answer, or None when it can.

    Read from the item alone (no answer is scored, no code is run), so the preflight
    (``helpers.preflight``) can refuse an eval set before any model is trained. BELLE's released
    eval set leaves the reference empty for brainstorming, generation and much of rewrite: those
    items have neither a check nor a reference, and only an LLM judge with a rubric can score them.

    >>> unscorable({"id": "b1", "category": "brainstorming", "question": "给出三个周末活动的建议", "reference": ""})
    'no check and no reference'
    >>> unscorable({"id": "m1", "reference": "", "check": {"type": "number", "answer": 7}}) is None
    True
    """
    check = item.get("check")
    if not check:
        return None if _has_reference(item) else "no check and no reference"
    kind = check.get("type")
    if kind not in _NEEDS:
        return f"unknown check type {kind!r}"
    return _NEEDS[kind](item, check)
