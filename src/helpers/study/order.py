"""Model names and their order in every table and figure.

A model is ``"base"`` (0 examples), a scale (``"640"``) or, in a strategy grid,
``"<strategy>-<scale>"``; tables show base first, then strategy by strategy, each by size, then the
mixture models (``mix-<name>``, ``data.mixture``) in the order given, which lie on no scale chain.
"""
from __future__ import annotations

from typing import Iterable

from helpers.study.config import STRATEGIES, is_mixture, split_model

OVERALL = "overall"

OVERALL_ITEMS = "overall_items"


def examples_of(model: str) -> int:
    """Training examples of a model name: 0 for ``base``, the count for ``600`` or ``quality-600``."""
    return split_model(model)[1]


def strategy_of(model: str) -> str | None:
    """The selection strategy in a grid model's name (``quality-600`` -> ``quality``); None otherwise."""
    return split_model(model)[0]


def model_order(models: Iterable[str]) -> list[str]:
    """Unique model names: base first, then strategy by strategy, each by example count, then the mixture models
    in the order given."""
    unique = list(dict.fromkeys(models))

    def key(m):
        if is_mixture(m):
            return (2, 0, unique.index(m))
        strategy, n = split_model(m)
        return (int(n > 0), STRATEGIES.index(strategy) if strategy else -1, n)
    return sorted(unique, key=key)


def strategy_groups(models: Iterable[str]) -> dict[str | None, list[str]]:
    """``{strategy: [base, its scales...]}`` -- the chains trends and changes run along.
    Models without a strategy in their name (a one-strategy study) form the group ``None``; mixture
    models are on no chain."""
    ordered = model_order(models)
    groups: dict[str | None, list[str]] = {}
    for m in ordered:
        if m != "base" and not is_mixture(m):
            groups.setdefault(strategy_of(m), []).append(m)
    head = ["base"] if "base" in ordered else []
    return {st: head + ms for st, ms in groups.items()} or ({None: head} if head else {})
