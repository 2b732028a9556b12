"""The trend of each use case with more data: the slope per tenfold data and its label.

The paper's claims and the comparison with them are in ``analysis.paper``; its verdicts rest on
these labels and on the same bootstrap, never on the point estimates alone.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from helpers.analysis.bootstrap import cell_rng, joint_boot_means, percentile_ci
from helpers.analysis.changes import item_matrix
from helpers.analysis.scores import item_scores
from helpers.study.categories import category_order
from helpers.study.order import OVERALL, examples_of, model_order


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of y on x along the last axis; y may be (..., k). NaN-safe per row."""
    ok = ~np.isnan(y)
    xs = np.where(ok, x, np.nan)
    xm = np.nanmean(xs, axis=-1, keepdims=True)
    ym = np.nanmean(y, axis=-1, keepdims=True)
    cov = np.nansum((xs - xm) * (y - ym), axis=-1)
    var = np.nansum((xs - xm) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = cov / var
    return np.where(ok.sum(axis=-1) >= 2, s, np.nan)


def trend_labels(df: pd.DataFrame, improve: float = 0.02, decline: float = 0.02,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per category: how the score moves with the amount of data, and a label.

    ``slope`` is the least-squares slope of the category mean against
    log10(training examples) over the *trained* scales: score points gained per
    tenfold more data (the paper's 0.2M..2M is one decade). The base model is left
    out of the slope because it has 0 examples and log10(0) is undefined; it is
    reported beside it (``base_mean``) and in ``scale_changes``. The CI resamples
    items jointly across scales (same questions at every scale).

    Label: ``"improving"`` when the CI's lower bound is above ``improve``,
    ``"declining"`` when its upper bound is below ``-decline``, else
    ``"plateau"``; ``"unknown"`` with fewer than two trained scales.

    Columns: category, slope, ci_low, ci_high, label, n_items, n_scales,
    first_scale, first_mean, first_ci_low, first_ci_high, last_scale, last_mean,
    base_mean. A last ``"overall"`` row uses the mean over categories.
    """
    items = item_scores(df)
    all_models = model_order(items["model"])
    scales = [m for m in all_models if m != "base"]
    x = np.log10([examples_of(m) for m in scales]) if scales else np.array([])
    rows, boots_by_cat, means_by_cat = [], [], []
    for cat in category_order(items["category"]):
        sub = items[items["category"] == cat]
        w = item_matrix(sub, all_models)
        base_mean = float(w["base"].mean()) if "base" in w else math.nan
        s = w[scales].to_numpy(float) if scales else np.empty((len(w), 0))
        s = s[~np.isnan(s).all(axis=1)] if s.size else s
        means, boot = joint_boot_means(s, n_boot, cell_rng(seed, "trend", cat))
        boots_by_cat.append(boot)
        means_by_cat.append(means)
        rows.append(_trend_row(cat, x, scales, means, boot, len(s), base_mean, improve, decline))
    if rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.array(means_by_cat), axis=0)
            boot = np.nanmean(np.array(boots_by_cat), axis=0)
            base_mean = float(np.nanmean([r["base_mean"] for r in rows])) if any(
                not math.isnan(r["base_mean"]) for r in rows) else math.nan
        rows.append(_trend_row(OVERALL, x, scales, means, boot, sum(r["n_items"] for r in rows),
                               base_mean, improve, decline))
    cols = ["category", "slope", "ci_low", "ci_high", "label", "n_items", "n_scales", "first_scale",
            "first_mean", "first_ci_low", "first_ci_high", "last_scale", "last_mean", "base_mean"]
    return pd.DataFrame(rows, columns=cols)


def _trend_row(cat, x, scales, means, boot, n_items, base_mean, improve, decline) -> dict:
    n_scales = int((~np.isnan(means)).sum()) if len(means) else 0
    if n_scales >= 2:
        slope = float(_slope(x, means))
        lo, hi = percentile_ci(_slope(x, boot))
        label = "improving" if lo > improve else "declining" if hi < -decline else "plateau"
    else:
        slope, lo, hi, label = math.nan, math.nan, math.nan, "unknown"
    first = last = None
    f_mean = f_lo = f_hi = l_mean = math.nan
    if len(scales):
        first, last = scales[0], scales[-1]
        f_mean, l_mean = float(means[0]), float(means[-1])
        f_lo, f_hi = percentile_ci(boot[:, 0])
    return {"category": cat, "slope": slope, "ci_low": lo, "ci_high": hi, "label": label,
            "n_items": int(n_items), "n_scales": n_scales, "first_scale": first, "first_mean": f_mean,
            "first_ci_low": f_lo, "first_ci_high": f_hi, "last_scale": last, "last_mean": l_mean,
            "base_mean": base_mean}
