"""Which pool items each training scale gets: one nested order per selection strategy.

Every strategy returns one ordering of (some of) the pool; the subset of scale ``s`` is its
first ``s`` items, so each smaller scale is contained in the next (the paper's nested
0.2M ⊂ 0.6M ⊂ 1M ⊂ 2M) and the same seed always gives the same subsets.

random      the paper: a seeded shuffle of the whole pool (``random.Random(seed).shuffle``).
stratified  category proportions held fixed at every scale: within each category the items
            are shuffled (seeded per category), and item ``j`` of a category with ``n_c`` items
            is placed at ``(j + 0.5) / n_c`` on a common axis; sorting by that position
            interleaves the categories so every prefix holds each category's pool share up to
            about one item.
quality     BELLE-style cleaning first, then the random order of what is left. Filters (the
            first that applies names the reason): ``self_reference`` (the answer talks about
            being an AI language model, "作为一个AI语言模型", "as an AI language model"),
            ``multimodal`` (the task needs an image, a link, a file, audio or video the model
            cannot see), ``question_too_long`` / ``output_too_short`` / ``output_too_long``
            (``data.quality`` character limits), ``language_mismatch`` (a Chinese instruction
            answered in English, unless it is a translation or code task); the checks
            themselves are ``helpers.study.cleaning.check_reason``.
"""
from __future__ import annotations

import random
from collections import Counter

from helpers.study.cleaning import check_reason
from helpers.study.config import STRATEGIES


def random_order(n: int, seed: int) -> list[int]:
    """The default (and the paper's) order: one seeded permutation of the pool."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def stratified_order(categories: list[str], seed: int) -> list[int]:
    """An order whose every prefix keeps the pool's category proportions (see the module docstring)."""
    from helpers.study.categories import CATEGORIES

    by_cat: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        by_cat.setdefault(c, []).append(i)
    rank = {c: k for k, c in enumerate(CATEGORIES)}
    cats = sorted(by_cat, key=lambda c: (rank.get(c, len(rank)), c))
    keyed = []
    for ci, c in enumerate(cats):
        items = by_cat[c]
        random.Random(f"{seed}|stratified|{c}").shuffle(items)
        n = len(items)
        keyed.extend(((j + 0.5) / n, ci, i) for j, i in enumerate(items))
    keyed.sort()
    return [i for _, _, i in keyed]


def quality_reason(rec: dict, limits) -> str | None:
    """The first quality filter ``rec`` fails, or None. ``limits``: the config's ``data.quality``."""
    return check_reason(rec["instruction"], rec.get("input", ""), rec["output"], rec.get("category", ""),
                        max_question_chars=limits.max_question_chars, min_output_chars=limits.min_output_chars,
                        max_output_chars=limits.max_output_chars)


QUALITY_REASONS = ("self_reference", "multimodal", "question_too_long", "output_too_short", "output_too_long",
                   "language_mismatch")


def quality_filter(pool: list[dict], limits) -> tuple[list[int], list[dict], dict]:
    """(indices kept, removed notes ``{id, reason}``, counts per reason) of the quality filters."""
    kept, removed = [], []
    for i, rec in enumerate(pool):
        reason = quality_reason(rec, limits)
        if reason is None:
            kept.append(i)
        else:
            removed.append({"id": rec["id"], "reason": reason})
    counts = Counter(r["reason"] for r in removed)
    return kept, removed, {r: counts[r] for r in QUALITY_REASONS}


def selection_order(pool: list[dict], strategy: str, seed: int, quality=None) -> tuple[list[int], list[dict], dict]:
    """(order of pool indices, removed notes, report) for ``strategy``; subsets are prefixes of the order."""
    if strategy == "random":
        return random_order(len(pool), seed), [], {"strategy": "random", "candidates": len(pool)}
    if strategy == "stratified":
        shares = Counter(r["category"] for r in pool)
        return stratified_order([r["category"] for r in pool], seed), [], {
            "strategy": "stratified", "candidates": len(pool),
            "proportions": {c: round(n / len(pool), 4) for c, n in sorted(shares.items())}}
    if strategy == "quality":
        if quality is None:
            raise ValueError("strategy quality: needs the data.quality limits")
        kept, removed, reasons = quality_filter(pool, quality)
        order = [kept[i] for i in random_order(len(kept), seed)]
        return order, removed, {"strategy": "quality", "candidates": len(kept), "removed": len(removed),
                                "reasons": reasons}
    raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
