"""Paired changes on the same items: from one scale to the next, and each strategy against random."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from helpers.analysis.bootstrap import boot_means, cell_rng, percentile_ci
from helpers.analysis.scores import item_scores
from helpers.study.categories import category_order
from helpers.study.config import STRATEGIES, split_model
from helpers.study.order import OVERALL, examples_of, model_order, strategy_groups


def item_matrix(items: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Items x models matrix of item scores (NaN where missing), rows sorted by id. ``items`` has one row per
    (model, item) (``item_scores``); an unstack, a quarter of ``pivot_table``'s time, which the analysis calls
    once per use case and chain."""
    one = items.drop_duplicates(["id", "model"]).set_index(["id", "model"])["score"]
    return one.unstack("model").reindex(columns=models).rename_axis(columns="model")


def _paired(items: pd.DataFrame, a: str, b: str, n_boot: int, seed: int, tag: str) -> list[dict]:
    """Per category and ``overall``: mean over items scored under both models of
    (score of ``b`` - score of ``a``), with a paired bootstrap CI that resamples items and
    keeps each item's two scores together, so item difficulty cancels out. The
    ``overall`` row averages the category diffs (stratified).
    Keys: category, n_pairs, diff, ci_low, ci_high, significant (CI excludes 0)."""
    rows, boots, diffs = [], [], []
    for cat in category_order(items["category"]):
        w = item_matrix(items[items["category"] == cat], [a, b])
        d = (w[b] - w[a]).dropna().to_numpy(float)
        boot = boot_means(d, n_boot, cell_rng(seed, tag, cat, a, b))
        lo, hi = percentile_ci(boot)
        mean = float(d.mean()) if len(d) else math.nan
        if len(d):
            boots.append(boot)
            diffs.append(mean)
        rows.append({"category": cat, "n_pairs": len(d), "diff": mean, "ci_low": lo, "ci_high": hi,
                     "significant": bool(len(d) and (lo > 0 or hi < 0))})
    if diffs:
        lo, hi = percentile_ci(np.mean(boots, axis=0))
        mean = float(np.mean(diffs))
    else:
        lo = hi = mean = math.nan
    rows.append({"category": OVERALL, "n_pairs": int(sum(r["n_pairs"] for r in rows)), "diff": mean,
                 "ci_low": lo, "ci_high": hi, "significant": bool(diffs and (lo > 0 or hi < 0))})
    return rows


def scale_changes(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                  models: list[str] | None = None) -> pd.DataFrame:
    """Paired change in score between consecutive models (base -> s1 -> s2 -> ...),
    per category and ``overall`` (see ``_paired``). ``models`` is one chain; a strategy
    grid runs this once per strategy (``write_results``).

    Columns: category, from, to, from_examples, to_examples, n_pairs, diff,
    ci_low, ci_high, significant (CI excludes 0).
    """
    items = item_scores(df)
    models = model_order(models if models is not None else items["model"])
    cols = ["category", "from", "to", "from_examples", "to_examples", "n_pairs",
            "diff", "ci_low", "ci_high", "significant"]
    rows = [{"from": a, "to": b, "from_examples": examples_of(a), "to_examples": examples_of(b), **r}
            for a, b in zip(models, models[1:]) for r in _paired(items, a, b, n_boot, seed, "change")]
    return pd.DataFrame(rows, columns=cols)


def strategy_comparison(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                        reference: str = "random") -> pd.DataFrame:
    """Each selection strategy against ``reference`` (the paper's random sampling; the
    first strategy when random is not in the grid) at the same number of examples,
    paired over items (see ``_paired``): does choosing the data differently beat
    choosing it at random, use case by use case? Empty for a one-strategy study.

    Columns: examples, strategy, reference, category, n_pairs, diff (strategy minus
    reference), ci_low, ci_high, significant.
    """
    items = item_scores(df)
    by_scale: dict[int, dict[str, str]] = {}
    for m in model_order(items["model"]):
        strategy, n = split_model(m)
        if strategy:
            by_scale.setdefault(n, {})[strategy] = m
    present = [st for st in STRATEGIES if any(st in v for v in by_scale.values())]
    ref = reference if reference in present else (present[0] if present else reference)
    cols = ["examples", "strategy", "reference", "category", "n_pairs", "diff", "ci_low", "ci_high", "significant"]
    rows = [{"examples": n, "strategy": st, "reference": ref, **r}
            for n, named in sorted(by_scale.items()) if ref in named
            for st, m in named.items() if st != ref
            for r in _paired(items, named[ref], m, n_boot, seed, "strategy")]
    return pd.DataFrame(rows, columns=cols)


def per_strategy(df: pd.DataFrame, models: list[str], compute) -> pd.DataFrame:
    """``compute(scores of one chain, chain)`` for each strategy's chain (base + its scales),
    concatenated; in a grid each row gets a leading ``strategy`` column."""
    frames = []
    for strategy, chain in strategy_groups(models).items():
        frame = compute(df[df["model"].isin(chain)], chain)
        if strategy is not None:
            frame.insert(0, "strategy", strategy)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else compute(df, list(models))
