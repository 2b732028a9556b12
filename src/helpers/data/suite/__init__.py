"""The built-in Chinese instruction suite: 12 use cases, generated from templates.

``build_suite(seed, pool_size, eval_per_category)`` returns ``(pool, eval)``:

- pool records ``{id, instruction, input, output, category}`` (``input`` may be ""),
  ids ``pool-000000``, ``pool-000001``, ...;
- eval records ``{id, category, question, reference, check}``, ids
  ``eval-<category>-0000``..., ``eval_per_category`` per category in ``CATEGORIES``
  order; ``question`` is ``helpers.study.prompt.question(instruction, input)``.

Everything is procedural and deterministic: every category draws from its own
``random.Random(f"{seed}|{category}|{split}")`` (a string seed is hashed with SHA-512
by ``random``, so no dependence on ``hash()`` or on process state).

Balance and stability of the pool
    Item ``i`` of the pool belongs to ``CATEGORIES[i % 12]`` (round robin), so the
    counts per category differ by at most one. Each category is one stream of
    distinct items (distinct ``instruction + input``), so ``build_suite(s, n, e)``'s
    pool is a prefix of ``build_suite(s, m, e)``'s for ``n < m``, and the eval set
    does not depend on ``pool_size`` at all. Capacity: every category can give
    more than 10,000 distinct pool items (translation ~10,200 and open QA ~12,700 are
    the smallest; over 120,000 in all); asking for more than a category can give
    raises ``ValueError`` naming the category.

Eval is disjoint from the pool by construction
    Entity vocabularies (person surnames, cities, products, kinds, goals, facts, ...)
    are split: every fifth entry (index % 5 == 2) is held out for eval (``vocab.split``). Surnames are
    split as whole sets (eval names use surnames such as 欧阳, 龚, 谭 that never occur
    in pool text). Categories without a natural entity (math expressions, code
    tasks, translation sentences) are split by a stable key: ``zlib.crc32(key) % 100
    < 20`` goes to eval, the rest to the pool. Templates are shared, so eval tests
    new content in a familiar format. ``build_suite`` also verifies that no eval
    question occurs in the pool and raises if one did.

Difficulty knobs
    ``DEFAULTS`` (module level) records them: math digits, steps and operators; cot
    chain length and number sizes; brainstorming list length. ``build_suite(...,
    knobs={"math": {"digits": 3}})`` overrides any of them.

Learnability spectrum (what a 270M model should show when trained on more data)
    copy/format tasks learnable from a few hundred examples: extraction (copy the
    person / city / date span), classification (fixed label sets named in the
    instruction), closed QA (answer is a span of the passage), rewrite, summarization
    (drop the second sentence, keep the facts), translation (small bilingual
    vocabulary); hard ones: math (multi-digit, two steps, precedence), cot
    (multi-step word problems), code (tiny Python functions checked by tests); open QA
    needs world knowledge about held-out facts.

Checks (the ``check`` dict of eval items, scored by ``helpers.judge.offline``)
    - math, cot: ``{"type": "number", "answer": 82}``; the reference ends with it;
    - code: ``{"type": "python_tests", "entry": "add_5", "tests": ["assert add_5(1) == 6", ...]}``;
    - classification: ``{"type": "label", "label": "正面", "labels": ["正面", "负面"]}``;
    - extraction: ``{"type": "spans", "spans": ["张伟", "杭州"]}`` (reference joins them with 、);
    - closed_qa: ``{"type": "answer_in_passage", "answer": "杭州"}`` (a substring of the passage);
    - open_qa: ``{"type": "text"}`` (the reference is the bare answer);
    - translation: ``{"type": "translation", "target": "en" | "zh"}``;
    - generation, brainstorming: ``{"type": "constraints", "count": 3 | None,
      "unit": "items" | "sentences", "required": [...], "min_chars": int, "max_chars": int}``;
    - rewrite, summarization: ``{"type": "facts", "facts": [...]}``.

Where things are
    ``vocab`` reads the data files and holds the shared entities; the generators are grouped
    by kind of use case in ``reasoning`` (math, cot, code), ``understanding`` (classification,
    extraction, open and closed QA) and ``writing`` (generation, brainstorming, rewrite,
    translation, summarization), each reading its words and templates from the YAML file of the
    same name beside it. This module draws the streams and assembles pool and eval.

All vocabularies and sentences were written for this project.
"""
from __future__ import annotations

import copy
import random
from typing import Callable, Iterator

from helpers.data.suite.reasoning import GENERATORS as REASONING
from helpers.data.suite.understanding import GENERATORS as UNDERSTANDING
from helpers.data.suite.vocab import CITIES, EVENTS, GIVEN, HOBBIES, JOBS, PRODUCTS, SURNAMES, VENUES, Item, Vocab
from helpers.data.suite.writing import GENERATORS as WRITING
from helpers.study.categories import CATEGORIES
from helpers.study.prompt import question as make_question

__all__ = ["DEFAULTS", "GENERATORS", "build_suite", "generate", "stream", "Vocab",
           "CITIES", "EVENTS", "GIVEN", "HOBBIES", "JOBS", "PRODUCTS", "SURNAMES", "VENUES"]

DEFAULTS: dict = {
    "heldout_percent": 20,       # share of key-split items (math, code, translation) held out for eval
    "max_tries": 5000,           # consecutive duplicate draws before a category counts as exhausted
    "math": {"digits": 2, "min_steps": 1, "max_steps": 2, "ops": "+-×", "small_multiplier": True},
    "cot": {"min_chain": 2, "max_chain": 3, "max_start": 20, "max_operand": 9},
    "brainstorming": {"min_items": 2, "max_items": 4},
}
"""Difficulty knobs and sampling settings; ``build_suite(knobs=...)`` overrides them."""


_BY_KIND = REASONING | UNDERSTANDING | WRITING
assert set(_BY_KIND) == set(CATEGORIES), "every use case has exactly one generator"

GENERATORS: dict[str, Callable[[random.Random, Vocab, dict], Item]] = {c: _BY_KIND[c] for c in CATEGORIES}
"""Use case -> the function that draws one item, in ``CATEGORIES`` order."""


def _knobs(overrides: dict | None) -> dict:
    k = copy.deepcopy(DEFAULTS)
    for key, val in (overrides or {}).items():
        if key not in k:
            raise ValueError(f"unknown task knob {key!r}; known: {sorted(k)}")
        if isinstance(val, dict):
            unknown = set(val) - set(k[key])
            if unknown:
                raise ValueError(f"unknown task knob(s) {sorted(unknown)} under {key!r}; known: {sorted(k[key])}")
            k[key].update(val)
        else:
            k[key] = val
    return k


def stream(category: str, split: str, seed: int, knobs: dict | None = None) -> Iterator[dict]:
    """Endless stream of distinct items ``{instruction, input, output, check, category}``.

    Raises ``ValueError`` when ``DEFAULTS["max_tries"]`` draws in a row repeat earlier items
    (the category's template space for that split is exhausted).
    """
    if category not in GENERATORS:
        raise ValueError(f"unknown category {category!r}; known: {CATEGORIES}")
    if split not in ("pool", "eval"):
        raise ValueError(f"split must be 'pool' or 'eval', not {split!r}")
    k = _knobs(knobs)
    rng = random.Random(f"{seed}|{category}|{split}")
    vocab, gen, seen = Vocab(split), GENERATORS[category], set()
    while True:
        for _ in range(k["max_tries"]):
            instruction, inp, output, check = gen(rng, vocab, k)
            if (instruction, inp) not in seen:
                break
        else:
            raise ValueError(f"task category {category!r} ({split}) exhausted after {len(seen)} distinct items; "
                             f"ask for fewer items")
        seen.add((instruction, inp))
        yield {"instruction": instruction, "input": inp, "output": output, "check": check, "category": category}


def generate(category: str, n: int, seed: int = 0, split: str = "pool", knobs: dict | None = None) -> list[dict]:
    """The first ``n`` items of ``stream(category, split, seed, knobs)`` (with their checks)."""
    it = stream(category, split, seed, knobs)
    return [next(it) for _ in range(n)]


def build_suite(seed: int, pool_size: int, eval_per_category: int,
                knobs: dict | None = None) -> tuple[list[dict], list[dict]]:
    """``(pool, eval)`` of the built-in suite; see the module docstring for the guarantees."""
    if pool_size < 0 or eval_per_category < 0:
        raise ValueError(f"pool_size and eval_per_category must be >= 0, got {pool_size}, {eval_per_category}")
    streams = {c: stream(c, "pool", seed, knobs) for c in CATEGORIES}
    pool, seen = [], set()
    width = max(6, len(str(max(pool_size - 1, 0))))
    for i in range(pool_size):
        cat = CATEGORIES[i % len(CATEGORIES)]
        while True:
            rec = next(streams[cat])
            key = (rec["instruction"], rec["input"])
            if key not in seen:  # another category produced the same text (never happens with these templates)
                break
        seen.add(key)
        pool.append({"id": f"pool-{i:0{width}d}", "instruction": rec["instruction"], "input": rec["input"],
                     "output": rec["output"], "category": cat})
    pool_questions = {make_question(r["instruction"], r["input"]) for r in pool}
    evals = []
    for cat in CATEGORIES:
        for j, rec in enumerate(generate(cat, eval_per_category, seed, "eval", knobs)):
            q = make_question(rec["instruction"], rec["input"])
            if q in pool_questions:
                raise AssertionError(f"eval item of {cat!r} occurs in the pool: {q!r}")
            evals.append({"id": f"eval-{cat}-{j:04d}", "category": cat, "question": q,
                          "reference": rec["output"], "check": rec["check"]})
    return pool, evals
