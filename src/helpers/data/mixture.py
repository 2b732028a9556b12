"""The mixture axis: training subsets with the use cases weighted otherwise, at the full mixture's count.

Why: the scale axis asks how much data; this asks which. Each mixture model of ``data.mixture``
(``helpers.study.config.MixtureConfig``) trains on exactly as many examples as the full mixture (the
study's largest scale), so a change in its scores against the full mixture's comes from *which* use
cases it saw, not from how many examples.

How a mixture is drawn
    1. The full mixture is the largest scale's subset: the first ``N`` items of the study's selection
       order (``helpers.data.selection``), holding ``n_c`` items of use case ``c``.
    2. Its counts: ``N * w_c * n_c / sum(w * n)``, rounded down, the items left over given one each to
       the use cases with the largest remainders (ties in the paper's use-case order), so they add up
       to ``N`` exactly (``mixture_counts``). Leaving math out (``w_math = 0``) thus refills the other
       use cases in their own proportions; ``only`` gives one use case all ``N``.
    3. Its items: per use case, the first ``count`` items of that use case in the selection order, kept
       in that order (``mixture_subset``). A use case at or above its full-mixture count keeps every item
       the full mixture had, so leaving math out is the full mixture without its math items, plus the next
       items of the other use cases in the pool's order.

A mixture that asks for more items of a use case than the candidates hold (``only: [math]`` at 640 from
a pool with 417 math items) is an error naming the model, the use case and both counts; the preflight
finds it before anything is trained (``mixture_problems``), the data stage stops on it too.
"""
from __future__ import annotations

import math
from collections import Counter

from helpers.study.categories import CATEGORIES


class MixtureError(ValueError):
    """A mixture cannot be drawn from the pool; the message lists every model, use case and count."""


def _weight(plan: dict[str, float], category: str) -> float:
    return plan.get(category, plan.get("default", 1.0))


def _rank(category: str) -> tuple:
    return (CATEGORIES.index(category) if category in CATEGORIES else len(CATEGORIES), category)


def mixture_counts(full: dict[str, int], plan: dict[str, float], total: int | None = None) -> dict[str, int]:
    """Items per use case of a mixture: the full mixture's counts ``full`` times the ``plan``'s weights, scaled to
    ``total`` (default: the full mixture's size) by largest remainders.

    >>> mixture_counts({"math": 4, "code": 4, "cot": 2}, {"math": 0, "default": 1})
    {'math': 0, 'code': 7, 'cot': 3}
    >>> mixture_counts({"math": 4, "code": 4, "cot": 2}, {"math": 1, "default": 0})
    {'math': 10, 'code': 0, 'cot': 0}
    """
    total = sum(full.values()) if total is None else total
    mass = {c: _weight(plan, c) * n for c, n in full.items()}
    whole = sum(mass.values())
    if whole <= 0:
        raise MixtureError("the full mixture holds no item of a use case with a weight above 0")
    exact = {c: total * m / whole for c, m in mass.items()}
    counts = {c: math.floor(x) for c, x in exact.items()}
    left = total - sum(counts.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - counts[c]), _rank(c)))[:left]:
        counts[c] += 1
    return counts


def mixture_subset(pool: list[dict], order: list[int], n_full: int, plan: dict[str, float],
                   name: str = "mixture") -> tuple[list[dict], dict]:
    """(records, report) of one mixture: ``order`` is the selection order (pool indices), its first ``n_full`` the
    full mixture. The records are in selection order; the report holds the counts per use case
    (``counts``), the full mixture's (``full``) and the candidates of each use case (``available``).
    Raises ``MixtureError`` naming every use case the candidates cannot fill."""
    full = Counter(pool[i]["category"] for i in order[:n_full])
    available = Counter(pool[i]["category"] for i in order)
    try:
        counts = mixture_counts(dict(sorted(full.items(), key=lambda kv: _rank(kv[0]))), plan, n_full)
    except MixtureError as e:
        raise MixtureError(f"{name}: {e} (the full mixture holds {dict(full)})") from None
    short = {c: (n, available[c]) for c, n in counts.items() if n > available[c]}
    if short:
        raise MixtureError(f"{name}: " + "; ".join(
            f"needs {need} {c} examples but the pool holds {have}" for c, (need, have) in short.items()))
    taken: Counter = Counter()
    chosen = []
    for i in order:
        c = pool[i]["category"]
        if taken[c] < counts.get(c, 0):
            taken[c] += 1
            chosen.append(i)
            if len(chosen) == n_full:
                break
    report = {"examples": len(chosen), "counts": {c: n for c, n in counts.items() if n},
              "full": dict(full), "available": dict(available),
              "weights": {c: _weight(plan, c) for c in counts}}
    return [pool[i] for i in chosen], report


def mixture_subsets(pool: list[dict], order: list[int], n_full: int,
                    plans: dict[str, dict[str, float]]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Every mixture of ``plans`` (``MixtureConfig.plans()``): ``({model: records}, {model: report})``. Raises one
    ``MixtureError`` listing every mixture that cannot be filled."""
    subsets, reports, problems = {}, {}, []
    for name, plan in plans.items():
        try:
            subsets[name], reports[name] = mixture_subset(pool, order, n_full, plan, name)
        except MixtureError as e:
            problems.append(str(e))
    if problems:
        raise MixtureError(f"data.mixture: {len(problems)} mixture{'s' if len(problems) > 1 else ''} cannot be "
                           f"filled from the pool ({len(order)} candidates, the full mixture {n_full}):\n  "
                           + "\n  ".join(problems))
    return subsets, reports


def study_mixtures(cfg, pool: list[dict]) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """The study's mixtures drawn from ``pool`` (after de-duplication and contamination removal) in the order of
    its one strategy (``helpers.data.selection``), the full mixture being its largest scale's subset."""
    from helpers.data.selection import selection_order

    order, _, _ = selection_order(pool, cfg.strategies[0], cfg.seed, cfg.data.quality)
    n_full = min(cfg.scales[-1], len(order)) if cfg.data.largest_scale == "whole_pool" else cfg.scales[-1]
    return mixture_subsets(pool, order, n_full, cfg.data.mixture.plans())
