"""The offline judge: a deterministic 0..1 score for an answer to an eval item.

``score_answer(item, answer) -> (score, rationale)`` dispatches on ``item["check"]["type"]``
(the checks written by ``helpers.tasks``; any eval file may carry them):

============== ====================================================================
check type     score
============== ====================================================================
number         1 if the last number in the answer equals ``answer`` (exact, as fractions), else 0
python_tests   fraction of ``tests`` that pass when run with the answer's code in a sandboxed
               subprocess; 0 on a timeout, a crash, a syntax error or no code
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

The code sandbox is a best-effort guard against accidents, not a security boundary:
the code runs in ``python -I -S`` in a fresh temporary directory (removed afterwards),
with address space (512 MB), CPU time, file size and process-count limits set by the
child itself before any answer code runs (``resource.setrlimit``; done in the child
rather than in ``preexec_fn`` because ``preexec_fn`` can deadlock in a parent with
threads, such as a notebook kernel running torch), sockets replaced by a function that
raises, file writes outside the temporary directory and process-spawning / file-removing
``os`` functions refused, and a wall-clock timeout (5 s) after which the whole process
group is killed. Run untrusted models' code inside a container as well.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import unicodedata
from collections import Counter
from fractions import Fraction

CODE_TIMEOUT_S = 5.0
CODE_MEMORY_MB = 512
MAX_CHARS = 2000  # longer answers are cut before the O(n*m) ROUGE-L


def score_answer(item: dict, answer: str) -> tuple[float, str]:
    """Score ``answer`` to eval ``item`` in [0, 1], with a short rationale.

    >>> score_answer({"id": "x", "reference": "82", "check": {"type": "number", "answer": 82}}, "答案：82")
    (1.0, 'expected 82, got 82')
    """
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
    score, why = scorer(item, check, answer)
    return float(min(1.0, max(0.0, score))), why


def _reference(item: dict) -> str:
    ref = item.get("reference")
    if ref is None or not str(ref).strip():
        raise ValueError(f"item {item.get('id')!r}: no check and no reference to score against")
    return str(ref)

# ----------------------------------------------------------------------------------
# text helpers
# ----------------------------------------------------------------------------------


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


def _char_f1_score(answer: str, reference: str) -> tuple[float, str]:
    f = char_f1(answer, reference)
    return f, f"char F1 {f:.2f} vs {reference[:30]!r}"

# ----------------------------------------------------------------------------------
# number
# ----------------------------------------------------------------------------------


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

# ----------------------------------------------------------------------------------
# label, spans, text, translation
# ----------------------------------------------------------------------------------


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

# ----------------------------------------------------------------------------------
# constraints and facts
# ----------------------------------------------------------------------------------


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

# ----------------------------------------------------------------------------------
# python_tests: code in a subprocess sandbox
# ----------------------------------------------------------------------------------


def extract_code(answer: str) -> str | None:
    """The Python code in an answer: the first ```python fence, else from the first
    line that starts like Python (``def``, ``import``, ``from``, ``class``, ``@`` or an
    assignment), with trailing lines dropped until it compiles (``compile`` only parses;
    nothing runs here). None when there is no code or nothing compiles.

    >>> extract_code("代码如下：\\n```python\\ndef f(x):\\n    return x + 1\\n```")
    'def f(x):\\n    return x + 1'
    >>> extract_code("def f(x):\\n    return x + 1\\n这个函数返回x加1。")
    'def f(x):\\n    return x + 1'
    """
    fence = re.search(r"```[ \t]*(?:python|py|python3)?[^\n]*\n(.*?)(?:```|\Z)", answer, re.S | re.I)
    if fence:
        code = fence.group(1)
    else:
        lines = answer.splitlines()
        start = next((i for i, ln in enumerate(lines) if _CODE_START.match(ln)), None)
        if start is None:
            return None
        code = "\n".join(lines[start:])
    lines = code.rstrip().splitlines()
    while lines:
        src = "\n".join(lines).strip("\n")
        try:
            compile(src, "<answer>", "exec")
        except (SyntaxError, ValueError):
            lines.pop()
            continue
        return src if src.strip() else None
    return None


_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@|[A-Za-z_][\w.]*\s*=[^=])")

_SANDBOX = r'''
import builtins, io, json, os, resource, socket, sys
for _lim, _val in ((resource.RLIMIT_AS, {mem}), (resource.RLIMIT_CPU, {cpu}),
                   (resource.RLIMIT_FSIZE, 16 * 1024 * 1024), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    try:
        resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
_out_fd, _write, _exit, _real_open, _real_os_open = os.dup(1), os.write, os._exit, builtins.open, os.open
_root = os.path.realpath(os.getcwd())
_devnull = _real_open(os.devnull, "w")


def _deny(*args, **kwargs):
    raise PermissionError("blocked by the scoring sandbox")


def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)


def _open(file, mode="r", *args, **kwargs):
    if not isinstance(file, int) and any(c in mode for c in "wax+") and not _inside(file):
        raise PermissionError("writing outside the sandbox directory")
    return _real_open(file, mode, *args, **kwargs)


def _os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC) and not _inside(path):
        raise PermissionError("writing outside the sandbox directory")
    return _real_os_open(path, flags, *args, **kwargs)


def _guard_path(fn):
    def guarded(path, *args, **kwargs):
        if not _inside(path):
            raise PermissionError("writing outside the sandbox directory")
        return fn(path, *args, **kwargs)
    return guarded


builtins.open = io.open = _open
os.open = _os_open
os.mkdir, os.makedirs = _guard_path(os.mkdir), _guard_path(os.makedirs)
for _n in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "system", "popen", "fork",
           "forkpty", "kill", "killpg", "chmod", "chown", "lchown", "link", "symlink", "truncate", "mkfifo", "mknod",
           "chdir", "chroot", "setuid", "putenv", "unsetenv", "posix_spawn", "posix_spawnp", "spawnv", "spawnve",
           "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "execv", "execve", "execvp", "execvpe",
           "execl", "execle", "execlp", "execlpe"):
    if hasattr(os, _n):
        setattr(os, _n, _deny)
for _n in ("socket", "create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
    setattr(socket, _n, _deny)
import _socket
_socket.socket = _socket.socketpair = _deny
import _posixsubprocess
_posixsubprocess.fork_exec = _deny

sys.stdout = sys.stderr = _devnull
_result = {{"error": None, "passed": [], "failures": []}}
_ns = {{"__name__": "solution"}}
try:
    exec(compile(_CODE, "solution.py", "exec"), _ns)
except BaseException as _e:
    _result["error"] = (type(_e).__name__ + ": " + str(_e))[:300]
else:
    for _t in _TESTS:
        try:
            exec(compile(_t, "test.py", "exec"), _ns)
            _result["passed"].append(True)
        except BaseException as _e:
            _result["passed"].append(False)
            _result["failures"].append((_t + " -> " + type(_e).__name__ + ": " + str(_e))[:300])
_write(_out_fd, (_NONCE + json.dumps(_result) + "\n").encode("utf-8"))
_exit(0)
'''


def run_python_tests(code: str, tests: list[str], timeout: float = CODE_TIMEOUT_S,
                     memory_mb: int = CODE_MEMORY_MB) -> dict:
    """Run ``code`` then each test in a sandboxed ``python -I -S`` subprocess.

    Returns ``{"status": "ok" | "timeout" | "crash", "error": str | None, "passed": [bool],
    "failures": [str]}``; ``error`` is set when the code itself raised on definition.
    """
    nonce = "@@" + secrets.token_hex(16) + "@@"
    body = _SANDBOX.format(mem=memory_mb * 1024 * 1024, cpu=int(timeout) + 1)
    script = f"_CODE = {code!r}\n_TESTS = {list(tests)!r}\n_NONCE = {nonce!r}\n{body}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory(prefix="helpers-score-", ignore_cleanup_errors=True) as d:
        path = os.path.join(d, "_sandbox_runner.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script)
        proc = subprocess.Popen([sys.executable, "-I", "-S", path], cwd=d, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return {"status": "timeout", "error": None, "passed": [], "failures": []}
        finally:
            _kill_group(proc)
    for line in out.decode("utf-8", errors="replace").splitlines():
        if line.startswith(nonce):
            res = json.loads(line[len(nonce):])
            return {"status": "ok", **res}
    return {"status": "crash", "error": f"no result (exit code {proc.returncode})", "passed": [], "failures": []}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def score_python_tests(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """Fraction of ``check["tests"]`` passed by the answer's code (``extract_code``).

    ``check["timeout_s"]`` overrides the 5 s limit. For ``add_5`` with three tests:
    "def add_5(x):\\n    return x + 5" -> 1.0 ("3/3 tests passed");
    "def add_5(x):\\n    return x + 4" -> 0.0; "def add_5(x):\\n    while True: pass" -> 0.0 ("timeout");
    "我不会写" -> 0.0 ("no code found").
    """
    tests = check.get("tests") or []
    if not tests:
        raise ValueError(f"item {item.get('id')!r}: python_tests check without tests")
    code = extract_code(answer)
    if code is None:
        return 0.0, "no code found (or it does not parse)"
    res = run_python_tests(code, tests, timeout=float(check.get("timeout_s", CODE_TIMEOUT_S)))
    if res["status"] == "timeout":
        return 0.0, "timeout"
    if res["status"] == "crash":
        return 0.0, res["error"]
    if res["error"]:
        return 0.0, f"code raised: {res['error'][:120]}"
    k = sum(res["passed"])
    why = f"{k}/{len(tests)} tests passed"
    if res["failures"]:
        why += f"; first failure: {res['failures'][0][:120]}"
    return k / len(tests), why


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
