"""Generators of the reasoning use cases: math (multi-digit arithmetic with precedence), cot (word
problems solved step by step) and code (tiny Python functions checked by tests).

Words and templates come from ``reasoning.yaml`` beside this module. Items without a natural
entity are split between pool and eval by a stable key (``vocab.in_split``).
"""
from __future__ import annotations

import random
from typing import Callable

from helpers.data.suite.vocab import Item, Vocab, in_split, words

W = words(__file__, "math_symbolic math_words op_word cot_instr cot_objects cot_add cot_sub cot_mul cot_items "
                    "code_instr code_generic_names args code_families code_words")

_CODE_CACHE: dict[str, Callable] = {}
"""Reference code -> the function it defines (each generated function is run once, to compute expected values)."""



def _gen_math(rng: random.Random, v: Vocab, k: dict) -> Item:
    m = k["math"]
    if not m["ops"] or set(m["ops"]) - set("+-×"):
        raise ValueError(f"math ops must be drawn from '+-×', got {m['ops']!r}")
    lo, hi = 10 ** (m["digits"] - 1), 10 ** m["digits"] - 1
    lo = max(lo, 2)
    while True:
        steps = rng.randint(m["min_steps"], m["max_steps"])
        nums, ops = [rng.randint(lo, hi)], []
        for _ in range(steps):
            op = rng.choice(m["ops"])
            small = op == "×" and m["small_multiplier"]
            nums.append(rng.randint(2, 9) if small else rng.randint(lo, hi))
            ops.append(op)
        expr = str(nums[0]) + "".join(o + str(n) for o, n in zip(ops, nums[1:]))
        value = _eval_int(nums, ops)
        if value < 0 or not in_split(expr, v.split, k):
            continue
        if set(ops) <= {"+", "-"} and rng.random() < 0.25:
            words = str(nums[0]) + "".join(("，再" if i else "") + W.op_word[o] + str(n)
                                           for i, (o, n) in enumerate(zip(ops, nums[1:])))
            instruction = rng.choice(W.math_words).format(w=words)
        else:
            instruction = rng.choice(W.math_symbolic).format(e=expr)
        return instruction, "", f"{expr}={value}", {"type": "number", "answer": value}


def _eval_int(nums: list[int], ops: list[str]) -> int:
    """Usual precedence: × before + and -."""
    terms, signs = [nums[0]], []
    for op, n in zip(ops, nums[1:]):
        if op == "×":
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(op)
    total = terms[0]
    for s, t in zip(signs, terms[1:]):
        total = total + t if s == "+" else total - t
    return total


def _fresh(rng: random.Random, options: list[str], used: list[str]) -> str:
    """A clause template whose wording (before its number) is not used yet, if any is left."""
    left = [o for o in options if not any(u.startswith(o.split("{")[0]) for u in used)]
    return rng.choice(left or options)


def _cot_chain(rng, v, k) -> tuple[str, str, int]:
    c = k["cot"]
    name = v.name(rng)
    mw, obj = rng.choice(W.cot_objects)
    start = cur = rng.randint(3, c["max_start"])
    clauses, steps = [], []
    for _ in range(rng.randint(c["min_chain"], c["max_chain"])):
        kind = rng.choice("++--×") if cur <= 15 else rng.choice("++--")
        if kind == "-" and cur < 3:
            kind = "+"
        if kind == "+":
            n = rng.randint(2, c["max_operand"])
            clauses.append(_fresh(rng, W.cot_add, clauses).format(n=n, mw=mw))
            new = cur + n
        elif kind == "-":
            n = rng.randint(1, min(cur - 1, c["max_operand"]))
            clauses.append(_fresh(rng, W.cot_sub, clauses).format(n=n, mw=mw))
            new = cur - n
        else:
            n = rng.randint(2, 3)
            clauses.append(W.cot_mul[0].format(n=n))
            new = cur * n
        steps.append(f"{cur}{kind}{n}={new}")
        cur = new
    text = f"{name}有{start}{mw}{obj}，{'，'.join(clauses)}。{name}现在有多少{mw}{obj}？"
    return text, "，".join(steps), cur


def _cot_fixed(rng, v, k) -> tuple[str, str, int]:
    name = v.name(rng)
    form = rng.randrange(5)
    if form == 0:
        mw, item = rng.choice(W.cot_items)
        p, q = rng.randint(2, 9), rng.randint(2, 6)
        cost = p * q
        paid = next(x for x in (10, 20, 50, 100) if x > cost)
        text = f"{name}买了{q}{mw}{item}，每{mw}{p}元，付了{paid}元，应该找回多少元？"
        return text, f"{p}×{q}={cost}，{paid}-{cost}={paid - cost}", paid - cost
    if form == 1:
        sp, t, d = rng.randint(8, 20), rng.randint(2, 4), rng.randint(2, 9)
        text = f"{name}骑车每小时行{sp}千米，骑了{t}小时后又步行了{d}千米，一共走了多少千米？"
        return text, f"{sp}×{t}={sp * t}，{sp * t}+{d}={sp * t + d}", sp * t + d
    if form == 2:
        p, d = rng.randint(5, 20), rng.randint(2, 6)
        total = p * d + rng.randint(5, 60)
        text = f"一本书有{total}页，{name}每天读{p}页，读了{d}天后还剩多少页？"
        return text, f"{p}×{d}={p * d}，{total}-{p * d}={total - p * d}", total - p * d
    if form == 3:
        other = v.name(rng, avoid=(name,))
        a, b, c = rng.randint(5, 15), rng.randint(2, 9), rng.randint(2, 9)
        text = f"{name}今年{a}岁，{other}比{name}大{b}岁，{c}年后{other}多少岁？"
        return text, f"{a}+{b}={a + b}，{a + b}+{c}={a + b + c}", a + b + c
    mw, obj = rng.choice(W.cot_objects)
    g, each, extra = rng.randint(2, 6), rng.randint(2, 8), rng.randint(1, 5)
    text = f"{name}把{g * each}{mw}{obj}平均分给{g}个小朋友，每人又多得{extra}{mw}，每人一共有多少{mw}？"
    return text, f"{g * each}÷{g}={each}，{each}+{extra}={each + extra}", each + extra


def _gen_cot(rng: random.Random, v: Vocab, k: dict) -> Item:
    text, work, ans = (_cot_chain if rng.random() < 0.5 else _cot_fixed)(rng, v, k)
    return rng.choice(W.cot_instr), text, f"{work}，答案是{ans}。", {"type": "number", "answer": ans}


def _code_inputs(rng: random.Random, kind: str, family: str, c: str) -> list[tuple]:
    out: list[tuple] = []
    while len(out) < 3:
        if kind == "num":
            x = (rng.randint(1, 10),) if family == "sum_to" else (rng.randint(-5, 20),)
        elif kind == "str":
            w = rng.choice(W.code_words)
            if c and rng.random() < 0.5:
                w = c + w
            x = (w,)
        elif kind == "list":
            x = ([rng.randint(0, 20) for _ in range(rng.randint(2, 5))],)
        elif kind == "two_num":
            x = (rng.randint(-5, 20), rng.randint(-5, 20))
        else:
            x = (rng.choice(W.code_words), rng.choice(W.code_words))
        if x not in out:
            out.append(x)
    return out


def _gen_code(rng: random.Random, v: Vocab, k: dict) -> Item:
    while True:
        family, kind, desc, body, names, param = rng.choice(W.code_families)
        kval = rng.randint(2, 20) if param == "k" else ""
        cval = rng.choice("abcdefghijklmnoprstuvw") if param == "c" else ""
        fname = rng.choice(names + W.code_generic_names).format(k=kval, c=cval)
        args = rng.choice(W.args[kind]).split(",")
        key = f"{family}|{kval}|{cval}|{fname}|{','.join(args)}"
        if in_split(key, v.split, k):
            break
    fill = {"a": args[0], "b": args[-1], "k": kval, "c": cval}
    code_body = body.format(**fill)
    code = f"def {fname}({', '.join(args)}):\n    {code_body}"
    fn = _CODE_CACHE.get(code)
    if fn is None:  # our own generated reference code, run once to compute expected values
        ns: dict = {}
        exec(code, ns)  # noqa: S102 - trusted, generated above
        fn = _CODE_CACHE[code] = ns[fname]
    tests = []
    for x in _code_inputs(rng, kind, family, cval):
        tests.append(f"assert {fname}({', '.join(repr(a) for a in x)}) == {fn(*x)!r}")
    if kind == "str":
        desc_fill = dict(fill, c=f"'{cval}'")
    else:
        desc_fill = fill
    instruction = rng.choice(W.code_instr).format(sig=f"{fname}({', '.join(args)})", desc=desc.format(**desc_fill))
    return instruction, "", code, {"type": "python_tests", "entry": fname, "tests": tests}


GENERATORS = {"math": _gen_math, "cot": _gen_cot, "code": _gen_code}
"""Use case -> the function that draws one item ``(instruction, input, output, check)``."""
