"""Reading the score out of an LLM judge's reply.

A pure function with the replies judges really write in its docstring: a reply without a
readable score is None (stored as a null with the text), never 0.
"""
from __future__ import annotations

import re
import unicodedata

# A score marker, an optional bracketed note such as "（0-1）", separators (colon, "为", "是",
# markdown bold, brackets, quotes), then the number with an optional "%"/"分" and "/ denominator".
_SCORE = re.compile(
    r"(?:得分|评分|分数|打分|score|rating)"
    r"\s*(?:[(\[（【][^()\[\]（）【】\n]{0,16}[)\]）】])?"
    r"(?:\s|[:=*\[【\"'“”‘’]|为|是|is|of)*"
    r"(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+))"
    r"\s*(?P<unit>%|分)?"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?",
    re.IGNORECASE)

_BARE = re.compile(r"[\s*\[【\"'“]*(?P<num>[-+]?(?:\d+(?:\.\d+)?|\.\d+))\s*(?P<unit>%|分)?[\s*\]】\"'”.。]*")


def parse_score(text: str | None) -> float | None:
    """The 0..1 score in a judge's reply, or None when there is none.

    Reads the number right after a score marker (得分, 评分, 分数, 打分, score, rating;
    any case, after NFKC so full-width colons and digits count); when several markers
    carry a number, the **last** one wins (a final verdict after a draft). ``80%`` is 0.8,
    ``4/5`` is 0.8; a reply that is nothing but a number is that number. A value outside
    0..1, or no marker with a number, gives None: the caller retries or stores a null.
    Pure: no I/O, no logging.

    >>> parse_score("回答与参考答案一致，计算正确。\\n得分：1分")
    1.0
    >>> parse_score("得分:0.8")
    0.8
    >>> parse_score("理由：漏掉了一个人名，另外多抽了地名。得分为0.5")
    0.5
    >>> parse_score("The answer misses step 2 (3 + 4 = 7), so 2 of 3 steps are right.\\nScore: 0.6")
    0.6
    >>> parse_score("**得分**：**0.7**")
    0.7
    >>> parse_score("初步得分：0.4。再次核对后发现第 2 步其实正确，最终得分：0.8")
    0.8
    >>> parse_score("得分（0-1）：0.9")
    0.9
    >>> parse_score("得分：80%")
    0.8
    >>> parse_score("Score: 4/5")
    0.8
    >>> parse_score("０．５")
    0.5
    >>> parse_score("得分：8分") is None   # out of 0..1 (a 10-point scale): not guessed
    True
    >>> parse_score("回答正确，列出了 3 条建议，满分 1 分。") is None   # no marker with a number
    True
    >>> parse_score("I cannot evaluate this answer.") is None
    True
    """
    if not text:
        return None
    t = unicodedata.normalize("NFKC", str(text))
    value = None
    for m in _SCORE.finditer(t):
        value = m
    if value is None:
        value = _BARE.fullmatch(t.strip())
        if value is None:
            return None
    try:
        x = float(value.group("num"))
        if value.group("unit") == "%":
            x /= 100
        den = value.groupdict().get("den")
        if den is not None:
            d = float(den)
            if d <= 0:
                return None
            x /= d
    except (TypeError, ValueError):
        return None
    return x if 0.0 <= x <= 1.0 else None
