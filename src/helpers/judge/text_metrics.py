"""Overlap metrics for Chinese text, by character: normalisation, character F1 and ROUGE-L.

Character-level because Chinese has no spaces to split words at and a word segmenter would
be one more dependency whose choices move the scores.
"""
from __future__ import annotations

import unicodedata
from collections import Counter

MAX_CHARS = 2000  # longer answers are cut before the O(n*m) ROUGE-L


def normalize(text: str) -> str:
    """NFKC, lower case, without whitespace, punctuation or control characters.

    >>> normalize(" 巴黎。 ")
    '巴黎'
    >>> normalize("I have a RED cat.")
    'ihavearedcat'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PZC")


def char_f1(answer: str, reference: str) -> float:
    """F1 of the character multisets of the normalised strings.

    >>> round(char_f1("巴黎。", "巴黎"), 3)
    1.0
    >>> round(char_f1("法国的首都是巴黎", "巴黎"), 3)
    0.4
    """
    a, r = Counter(normalize(answer)[:MAX_CHARS]), Counter(normalize(reference)[:MAX_CHARS])
    common = sum((a & r).values())
    if not common:
        return 0.0
    p, rec = common / sum(a.values()), common / sum(r.values())
    return 2 * p * rec / (p + rec)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 over normalised characters (longest common subsequence, O(n*m)).

    >>> rouge_l("闫雨桐不喜欢跑步。", "闫雨桐不喜欢跑步。")
    1.0
    >>> round(rouge_l("闫雨桐喜欢跑步", "闫雨桐不喜欢跑步"), 3)
    0.933
    """
    a, r = normalize(answer)[:MAX_CHARS], normalize(reference)[:MAX_CHARS]
    if not a or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for ca in a:
        cur = [0]
        for j, cr in enumerate(r):
            cur.append(prev[j] + 1 if ca == cr else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, rec = lcs / len(a), lcs / len(r)
    return 2 * p * rec / (p + rec)
