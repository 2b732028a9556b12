"""Scaling curves that forecast: which shape each use case's score follows with more data, and where it goes.

The paper answers "does more data help?" with four bars; someone planning the next dataset wants to
know whether a use case is still climbing, where it levels off and what ten times more data would buy.
Per use case (and for the overall score, per selection strategy) two forms are fitted to the mean
score at each trained scale ``n``:

* log-linear  ``score = a + b log10(n)``: keeps climbing, no ceiling;
* saturating  ``score = c - k (n / n_max) ** -alpha``: approaches the ceiling ``c`` (0..1).

They are chosen between, together with a flat line at the mean, by leave-one-scale-out prediction
error: each scale in turn is left out, each form fitted to the others predicts it, and the form with
the smallest RMSE wins, with one condition on the saturating form (below). That tests what the curve is
for (predicting a scale not run) and charges the three-parameter form for its flexibility without an
information criterion that 3-4 points cannot support. A choice made on 3-5 noisy means is fragile (on a
truly flat use case a curve wins by chance in about a third of synthetic draws), so it is held against
item sampling: the saturating form must also win in most item resamples (``select_form``), and the
chosen curve's rise from the smallest to the largest scale must have a 95% interval that excludes 0
(the same evidence the trend's slope needs). Where either fails, the verdict is "cannot tell": the form
is ``flat`` and no forecast is made.

Where the log-linear form wins but would leave the score's range 0..1 between the smallest scale and
the forecast, its bounded version takes its place: the logistic in log n,
``score = 1 / (1 + exp(-(a + b log10 n)))``, the same two parameters, straight in log n in the middle
and bending towards 0 and 1 at the ends, so the forecast and every refit of it stay inside 0..1 and
its interval never collapses onto the bound.

Choices, and why:

* The base model (``n = 0``) is shown beside the curve, never fitted: log10(0) is undefined, the
  saturating form diverges at 0, and the untuned model is another regime (it has not seen the answer
  format), so it would not lie on a curve through the trained scales anyway.
* Leave-one-out fits each form to ``scales - 1`` points: log-linear needs 3 scales; the saturating
  form, with 3 parameters, needs 4 (with 3 it is not tried and ``reason`` says so). With fewer than
  3 scales nothing can be chosen: "cannot tell". Ties go to the simpler form.
* ``n`` is divided by the largest scale, so ``k`` is the gap to the ceiling at the largest scale and
  lies in 0..1 like ``c``; the bounds keep ``curve_fit`` well posed at any size of ``n`` (64 or 2M).
  ``alpha`` is bounded to 0.05..3.
* Means are fitted unweighted: every scale asks the same items, so their standard errors are alike.
* Intervals resample items within the use case as whole rows across scales (``joint_boot_means``,
  seeded per cell like every interval in the report) and refit the chosen form to each replicate,
  so the intervals are conditional on the chosen form. Whether a use case changes at all is the
  trend's question (``trends``, the slope's interval); the curve says what shape and forecast.
* The fits to the means (the point estimates) are scipy's ``curve_fit`` (dogbox, tolerances of 1e-6: scores
  are 0..1, intervals a few hundredths wide). The fits to the item resamples, a thousand refits and the
  leave-one-out share per use case, are solved all at once (``fit_many``: closed form for the line, a batched
  Levenberg-Marquardt within the same bounds for the saturating and logistic forms, started where the fit to
  the means ended): a ``curve_fit`` per resample took most of the analysis stage (about 13x its time on a
  1,200-item study, ``benchmarks/analysis_stage.py``), and scipy has no batched least squares. A test holds
  them against ``curve_fit`` resample by resample (never a worse fit; the same leave-one-out errors).
* The chosen forms stay in 0..1 by construction (the logistic always, the saturating form below its
  ceiling ``c`` <= 1), so ``forecast_capped`` is a safeguard that should stay False; the drawn band is
  still clipped to 0..1. ``near_ceiling`` marks a forecast whose interval reaches within ``NEAR`` of the
  maximum score (or, saturating, of its own ceiling): the report says "at or near the ceiling" there.
* The examples needed to reach 90% of the ceiling are given only where a ceiling was identified
  (saturating form chosen): ``n90 = n_max (k / (0.1 c)) ** (1 / alpha)``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from helpers.analysis.bootstrap import cell_rng, joint_boot_means, percentile_ci
from helpers.analysis.changes import item_matrix
from helpers.analysis.scores import item_scores
from helpers.study.categories import category_order
from helpers.study.order import OVERALL, examples_of, model_order

FLAT, LOGLINEAR, SATURATING, LOGISTIC = "flat", "log-linear", "saturating", "logistic"
EXTRAPOLATE = 10
"""The forecast is made at this multiple of the largest scale (one more decade)."""
CEILING_SHARE = 0.9
SHARE_REPLICATES = 200
"""Item resamples on which saturating must beat log-linear (each costs a leave-one-out per form)."""
BOUNDS = ([0.0, 0.0, 0.05], [1.0, 1.0, 3.0])
"""Lower and upper bounds of (c, k, alpha) in the saturating form."""
GRID = 40
"""Points along the drawn curve, from the smallest scale to the forecast."""
NEAR = 0.02
"""A forecast whose interval comes within this of the ceiling is "at or near the ceiling"."""


def loglinear(n, a, b):
    return a + b * np.log10(n)


def logistic(n, a, b):
    """The logistic in log10 n: log-linear in the logit, bounded to (0, 1)."""
    return 1.0 / (1.0 + np.exp(-(a + b * np.log10(n))))


def fit_logistic(n, y, p0=None) -> np.ndarray | None:
    """Least squares (a, b) of ``logistic``, started from the straight line through the clipped logits
    (or ``p0``); None with fewer than two distinct scales or when the fit fails."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    if len(np.unique(n)) < 2:
        return None
    if p0 is None:
        q = np.clip(y, 0.02, 0.98)
        b, a = np.polyfit(np.log10(n), np.log(q / (1 - q)), 1)
        p0 = [a, b]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            p, _ = curve_fit(logistic, n, y, p0=p0, method="lm", maxfev=2000)
    except (RuntimeError, ValueError):
        return None
    return p if np.all(np.isfinite(p)) else None


def saturating(x, c, k, alpha):
    """The saturating form at ``x = n / n_max``."""
    return c - k * np.power(x, -alpha)


def _saturating_jac(x, c, k, alpha):
    p = np.power(x, -alpha)
    return np.column_stack([np.ones_like(x), -p, k * p * np.log(x)])


def fit_loglinear(n, y) -> np.ndarray | None:
    """Least squares (a, b); None with fewer than two distinct scales."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    if len(np.unique(n)) < 2:
        return None
    b, a = np.polyfit(np.log10(n), y, 1)
    return np.array([a, b])


def fit_saturating(x, y, p0=None) -> np.ndarray | None:
    """(c, k, alpha) by bounded least squares from ``p0`` or, without one, the best of three starts;
    None with fewer than three points or when every start fails."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return None
    lo, hi = np.array(BOUNDS[0]), np.array(BOUNDS[1])
    if p0 is None:
        c0 = min(float(np.max(y)) + 0.05, 1.0)
        k0 = c0 - float(y[np.argmax(x)])
        starts = [np.array([c0, k0, a0]) for a0 in (0.3, 1.0, 2.0)]
    else:
        starts = [np.asarray(p0, float)]
    best, best_sse = None, math.inf
    for start in starts:
        start = np.clip(start, lo + 1e-6, hi - 1e-6)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                p, _ = curve_fit(saturating, x, y, p0=start, bounds=BOUNDS, jac=_saturating_jac, method="dogbox",
                                 ftol=1e-6, xtol=1e-6, gtol=1e-6, max_nfev=2000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((saturating(x, *p) - y) ** 2))
        if sse < best_sse:
            best, best_sse = p, sse
    return best


def fit(form: str, n, y, n_max: float, p0=None) -> np.ndarray | None:
    """Parameters of ``form`` fitted to scales ``n`` and mean scores ``y``."""
    if form == FLAT:
        return np.array([float(np.mean(y))]) if len(y) else None
    if form == LOGLINEAR:
        return fit_loglinear(n, y)
    if form == LOGISTIC:
        return fit_logistic(n, y, p0)
    return fit_saturating(np.asarray(n, float) / n_max, y, p0)


def predict(form: str, params, n, n_max: float) -> np.ndarray:
    n = np.asarray(n, float)
    if form == FLAT:
        return np.full(n.shape, params[0])
    if form == LOGLINEAR:
        return loglinear(n, *params)
    if form == LOGISTIC:
        return logistic(n, *params)
    return saturating(n / n_max, *params)


def loo_rmse(form: str, n, y, n_max: float, p0=None) -> float:
    """Root mean squared error of predicting each scale from a fit to the others (NaN if a fit fails).

    Predictions are capped to 0..1 as the scores are: a saturating fit to the larger scales can dive
    far below 0 at the smallest one, and an error larger than the score's range says no more."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    errors = []
    for i in range(len(n)):
        keep = np.arange(len(n)) != i
        p = fit(form, n[keep], y[keep], n_max, p0)
        if p is None:
            return math.nan
        errors.append(min(max(float(predict(form, p, n[i:i + 1], n_max)[0]), 0.0), 1.0) - y[i])
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else math.nan


def _lm_many(residuals, P0: np.ndarray, lo=None, hi=None, max_iter: int = 200, tol: float = 1e-10) -> np.ndarray:
    """Least squares for many small problems at once: ``residuals(P)`` gives the residuals (B, m) and their Jacobian
    (B, m, p) at the parameters ``P`` (B, p), started from ``P0``. Levenberg-Marquardt steps, each problem with its
    own damping, accepted where they lower its sum of squares; with bounds a step is clipped to them and a
    parameter held at a bound its gradient pushes against is left out of the step (an active set, as dogbox's).
    A problem stops when a step lowers its sum of squares by less than ``tol`` of it or no step helps. Rows whose
    parameters end non-finite are NaN."""
    P = np.array(P0, float)
    B, k = P.shape
    eye = np.eye(k)
    R, J = residuals(P)
    sse = np.einsum("bm,bm->b", R, R)
    lam = np.full(B, 1e-3)
    live = np.isfinite(sse)
    for _ in range(max_iter):
        if not live.any():
            break
        g = np.einsum("bmi,bm->bi", J, R)
        H = np.einsum("bmi,bmj->bij", J, J)
        held = np.zeros_like(P, bool) if lo is None else ((P <= lo) & (g > 0)) | ((P >= hi) & (g < 0))
        A = H + lam[:, None, None] * eye * np.maximum(np.einsum("bii->bi", H), 1e-12)[:, None, :]
        A = np.where(held[:, :, None] | held[:, None, :], 0.0, A) + eye * held[:, :, None]
        with np.errstate(all="ignore"):
            try:
                step = np.linalg.solve(A, np.where(held, 0.0, -g)[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = np.einsum("bij,bj->bi", np.linalg.pinv(A), np.where(held, 0.0, -g))
            trial = P + step if lo is None else np.clip(P + step, lo, hi)
            Rt, Jt = residuals(trial)
            sset = np.einsum("bm,bm->b", Rt, Rt)
        better = live & np.isfinite(sset) & (sset < sse)
        small = better & (sse - sset <= tol * sse)
        P[better], R[better], J[better], sse[better] = trial[better], Rt[better], Jt[better], sset[better]
        lam = np.where(better, lam / 3, lam * 4)
        live &= ~small & (lam < 1e10) & (sse > 1e-24)
    P[~np.isfinite(P).all(axis=1)] = np.nan
    return P


def fit_many(form: str, n, Y, n_max: float, p0=None) -> np.ndarray:
    """``fit`` for every row of ``Y`` (B, scales) at once, e.g. one row per item resample: (B, parameters), NaN
    rows where a fit fails. The same least squares as ``fit``, solved together: log-linear and flat in closed
    form, saturating (within ``BOUNDS``) and logistic from ``p0`` by ``_lm_many`` (so ``p0`` is needed for them).
    About a hundred times faster than a ``curve_fit`` per row, which the leave-one-out share and the thousand
    refits of the bootstrap spent most of the analysis stage on; a test checks both give the same fits."""
    n, Y = np.asarray(n, float), np.atleast_2d(np.asarray(Y, float))
    B, m = Y.shape
    if form == FLAT:
        return Y.mean(axis=1, keepdims=True) if m else np.full((B, 1), np.nan)
    if form == LOGLINEAR:
        if len(np.unique(n)) < 2:
            return np.full((B, 2), np.nan)
        x = np.log10(n)
        b = (Y - Y.mean(axis=1, keepdims=True)) @ (x - x.mean()) / np.sum((x - x.mean()) ** 2)
        return np.column_stack([Y.mean(axis=1) - b * x.mean(), b])
    if p0 is None:
        raise ValueError(f"fit_many({form!r}) needs a starting point p0")
    if form == LOGISTIC:
        if len(np.unique(n)) < 2:
            return np.full((B, 2), np.nan)
        lx = np.log10(n)

        def logistic_residuals(P):
            with np.errstate(over="ignore"):
                f = 1.0 / (1.0 + np.exp(-(P[:, :1] + P[:, 1:] * lx)))
            d = f * (1 - f)
            return f - Y, np.stack([d, d * lx], axis=2)
        return _lm_many(logistic_residuals, np.tile(np.asarray(p0, float), (B, 1)))
    if m < 3:
        return np.full((B, 3), np.nan)
    lo, hi = np.array(BOUNDS[0]), np.array(BOUNDS[1])
    lx = np.log(n / n_max)

    def saturating_residuals(P):
        e = np.exp(-P[:, 2:] * lx)  # (n / n_max) ** -alpha
        return P[:, :1] - P[:, 1:2] * e - Y, np.stack([np.ones_like(e), -e, P[:, 1:2] * e * lx], axis=2)
    return _lm_many(saturating_residuals, np.tile(np.clip(np.asarray(p0, float), lo + 1e-6, hi - 1e-6), (B, 1)), lo, hi)


def predict_many(form: str, P: np.ndarray, n, n_max: float) -> np.ndarray:
    """``predict`` for every row of parameters ``P`` (B, parameters): (B, len(n)), NaN rows for NaN parameters."""
    n = np.asarray(n, float)[None, :]
    P = np.atleast_2d(np.asarray(P, float))
    if form == FLAT:
        return np.broadcast_to(P[:, :1], (len(P), n.shape[1])).copy()
    if form == LOGLINEAR:
        return P[:, :1] + P[:, 1:2] * np.log10(n)
    if form == LOGISTIC:
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-(P[:, :1] + P[:, 1:2] * np.log10(n))))
    return P[:, :1] - P[:, 1:2] * np.power(n / n_max, -P[:, 2:3])


def loo_rmse_many(form: str, n, Y, n_max: float, p0=None) -> np.ndarray:
    """``loo_rmse`` for every row of ``Y`` (B, scales) at once: (B,), NaN where a fit fails."""
    n, Y = np.asarray(n, float), np.atleast_2d(np.asarray(Y, float))
    errors = []
    for i in range(len(n)):
        keep = np.arange(len(n)) != i
        P = fit_many(form, n[keep], Y[:, keep], n_max, p0)
        errors.append(np.clip(predict_many(form, P, n[i:i + 1], n_max)[:, 0], 0.0, 1.0) - Y[:, i])
    return np.sqrt(np.mean(np.square(errors), axis=0)) if errors else np.full(len(Y), np.nan)


def select_form(n, means, replicates: np.ndarray, n_max: float) -> dict:
    """Choose flat, log-linear or saturating by leave-one-scale-out RMSE on the point estimates.

    The curve with the smaller RMSE is the candidate (ties: log-linear); saturating keeps it only if
    it also wins in more than half of ``SHARE_REPLICATES`` item resamples (the extra parameter must
    earn its place beyond one lucky draw), else log-linear is the candidate and ``why`` says so with
    both numbers. The candidate stands if it beats the flat line, else the form is flat. Returns
    ``form``, the RMSEs ``loo_*``, ``saturating_share`` (NaN where not needed), ``loo_text`` (the
    RMSEs in words) and ``why`` (the step of the rule that decided, in words).
    """
    loo = {FLAT: loo_rmse(FLAT, n, means, n_max), LOGLINEAR: loo_rmse(LOGLINEAR, n, means, n_max),
           SATURATING: loo_rmse(SATURATING, n, means, n_max) if len(n) >= 4 else math.nan}
    share = math.nan
    curve = SATURATING if loo[SATURATING] < loo[LOGLINEAR] else LOGLINEAR
    why = f"{curve} predicts left-out scales best"
    p0 = fit(SATURATING, n, means, n_max) if curve == SATURATING else None
    if curve == SATURATING and (p0 is None or not len(replicates)):  # nothing to hold it against
        curve = LOGLINEAR
        why = ("saturating predicts left-out scales best but cannot be held against item resamples "
               f"({'no fit to all scales' if p0 is None else 'no complete resample'}), so the simpler log-linear "
               "form is kept")
    if curve == SATURATING:
        reps = replicates[:SHARE_REPLICATES]
        share = float(np.mean(loo_rmse_many(SATURATING, n, reps, n_max, p0) < loo_rmse_many(LOGLINEAR, n, reps, n_max)))
        if share > 0.5:
            why += f" and beats log-linear in {share:.0%} of item resamples"
        else:
            curve = LOGLINEAR
            why = (f"saturating predicts left-out scales best ({loo[SATURATING]:.3f} against log-linear "
                   f"{loo[LOGLINEAR]:.3f}) but beats log-linear in only {share:.0%} of item resamples, not the "
                   "majority the rule asks of the extra parameter, so the simpler log-linear form is kept")
    sat_text = (f"saturating {loo[SATURATING]:.3f}" if not math.isnan(loo[SATURATING]) else
                f"saturating not tried: its 3 parameters need 4 scales for leave-one-out, {len(n)} here")
    form = curve if loo[curve] < loo[FLAT] else FLAT
    return {"form": form, "loo_flat": loo[FLAT], "loo_log_linear": loo[LOGLINEAR],
            "loo_saturating": loo[SATURATING], "saturating_share": share, "why": why,
            "loo_text": (f"leave-one-scale-out RMSE: flat {loo[FLAT]:.3f}, log-linear {loo[LOGLINEAR]:.3f}, "
                         f"{sat_text}")}


def n_to_ceiling(params, n_max: float, share: float = CEILING_SHARE) -> float:
    """Training examples at which the saturating form reaches ``share`` of its ceiling (NaN if c = 0)."""
    c, k, alpha = params
    if c <= 0:
        return math.nan
    if k <= 0:
        return 0.0
    return float(n_max * (k / ((1 - share) * c)) ** (1 / alpha))


def _ci(values) -> tuple[float, float]:
    return percentile_ci(np.asarray(values, float))


COLUMNS = ["category", "form", "verdict", "reason", "n_scales", "examples", "means", "base_mean", "loo_flat",
           "loo_log_linear", "loo_saturating", "a", "b", "c", "k", "alpha", "rise", "rise_ci_low", "rise_ci_high",
           "level", "level_ci_low", "level_ci_high", "ceiling", "ceiling_ci_low", "ceiling_ci_high", "n90",
           "n90_ci_low", "n90_ci_high", "forecast_examples", "forecast", "forecast_ci_low", "forecast_ci_high",
           "forecast_capped", "near_ceiling", "saturating_share", "n_fits_failed", "band"]
"""The columns of ``scaling_curves`` (see there)."""


def fit_scaling(n, means, boot, base_mean: float = math.nan) -> dict:
    """Choose the form for one use case, fit it, and bootstrap the forecast, ceiling and band.

    ``n`` are the trained scales, ``means`` the mean score at each, ``boot`` the (n_boot, scales)
    bootstrap of those means (``joint_boot_means``). Scales without a mean are left out.
    Returns one row of ``scaling_curves`` (see there).
    """
    n, means = np.asarray(n, float), np.asarray(means, float)
    boot = np.asarray(boot, float).reshape(-1, len(n))
    ok = ~np.isnan(means)
    n, means, boot = n[ok], means[ok], boot[:, ok]
    row = {"form": None, "verdict": "cannot tell", "reason": "", "n_scales": int(len(n)),
           "examples": [int(v) for v in n], "means": [float(v) for v in means], "base_mean": base_mean,
           **dict.fromkeys(COLUMNS[8:COLUMNS.index("forecast_capped")], math.nan),
           "forecast_capped": False, "near_ceiling": False, "saturating_share": math.nan, "n_fits_failed": 0, "band": None}
    if len(n) < 3:
        row["reason"] = f"cannot tell: {len(n)} trained scale(s); leave-one-scale-out needs at least 3"
        return row
    n_max = float(n.max())
    replicates = boot[~np.isnan(boot).any(axis=1)]
    choice = select_form(n, means, replicates, n_max)
    form, loo_text, chosen = choice.pop("form"), choice.pop("loo_text"), choice.pop("why")
    row.update(choice)
    why = f"no curve predicts a left-out scale better than a flat line ({loo_text})"
    if form != FLAT:
        params = fit(form, n, means, n_max)
        ends = predict(form, params, [n.min(), EXTRAPOLATE * n_max], n_max)
        if form == LOGLINEAR and not np.all((ends >= 0) & (ends <= 1)):
            bounded = fit(LOGISTIC, n, means, n_max)
            if bounded is not None:
                out = "1" if ends.max() > 1 else "0"
                chosen += (f"; the straight line would pass {out} by {int(EXTRAPOLATE * n_max):,} examples, so its "
                           "bounded version, the logistic in log10 n, is fitted instead")
                form, params = LOGISTIC, bounded
        fits = fit_many(form, n, replicates, n_max, p0=params).reshape(-1, len(params))
        row["n_fits_failed"] = int(np.isnan(fits).any(axis=1).sum())
        fits = fits[~np.isnan(fits).any(axis=1)]
        ends = [n.min(), n_max]
        lo, hi = _ci(np.diff(predict_many(form, fits, ends, n_max), axis=1)[:, 0])
        row.update(rise=float(np.diff(predict(form, params, ends, n_max))[0]), rise_ci_low=lo, rise_ci_high=hi)
        if not (lo > 0 or hi < 0):
            why = (f"{form} ({chosen}) predicts left-out scales better than a flat line, but its rise from {int(n.min()):,} "
                   f"to {int(n_max):,} examples, {row['rise']:+.3f} [{lo:+.3f}, {hi:+.3f}], does not exclude 0 "
                   f"({loo_text})")
            form = FLAT
    if form == FLAT:
        lo, hi = _ci(replicates.mean(axis=1))
        row.update(form=FLAT, verdict="cannot tell", reason=f"cannot tell: {why}", level=float(means.mean()),
                   level_ci_low=lo, level_ci_high=hi)
        return row
    row.update(form=form, verdict=form, reason=f"{form}: {chosen} ({loo_text})")
    row.update(zip(("a", "b") if form in (LOGLINEAR, LOGISTIC) else ("c", "k", "alpha"), map(float, params)))

    grid = np.geomspace(n.min(), EXTRAPOLATE * n_max, GRID)
    curves = predict_many(form, fits, grid, n_max).reshape(-1, GRID)
    low, high = (np.percentile(curves, [2.5, 97.5], axis=0) if len(curves) else np.full((2, GRID), np.nan))
    row["band"] = {"examples": [float(v) for v in grid],
                   "fit": np.clip(predict(form, params, grid, n_max), 0, 1).tolist(),
                   "low": np.clip(low, 0, 1).tolist(), "high": np.clip(high, 0, 1).tolist()}

    at = EXTRAPOLATE * n_max
    raw = float(predict(form, params, [at], n_max)[0])
    lo, hi = _ci(curves[:, -1]) if len(curves) else (math.nan, math.nan)
    row.update(forecast_examples=int(at), forecast=min(max(raw, 0.0), 1.0), forecast_capped=not 0 <= raw <= 1,
               forecast_ci_low=min(max(lo, 0.0), 1.0), forecast_ci_high=min(max(hi, 0.0), 1.0))
    top = float(params[0]) if form == SATURATING else 1.0
    row["near_ceiling"] = bool(row["forecast_ci_high"] >= top - NEAR)
    if form == SATURATING:
        lo, hi = _ci(fits[:, 0])
        n90_lo, n90_hi = _ci([n_to_ceiling(p, n_max) for p in fits])
        row.update(ceiling=float(params[0]), ceiling_ci_low=lo, ceiling_ci_high=hi,
                   n90=n_to_ceiling(params, n_max), n90_ci_low=n90_lo, n90_ci_high=n90_hi)
    return row


def scaling_curves(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                   models: list[str] | None = None) -> pd.DataFrame:
    """Per category and ``overall``: the chosen form, its fit, forecast and ceiling with 95% intervals.

    ``df`` is the long frame of ``load_scores``; ``models`` one chain (base + the scales of one
    strategy; ``write_results`` runs this per strategy). The overall row fits the mean over
    categories, its bootstrap the mean of the categories' bootstraps (stratified, as the table's).

    Columns: category, ``form`` (flat / log-linear / logistic / saturating; None with < 3 scales),
    ``verdict`` (the form, or "cannot tell"), ``reason``, n_scales, examples and means (the fitted
    points), base_mean (shown, not fitted), ``loo_*`` (leave-one-scale-out RMSE per form), the
    parameters (a, b for log-linear and logistic, or c, k, alpha), level with CI (flat), ceiling with CI
    and ``n90`` with CI (saturating), ``forecast`` at ``forecast_examples`` (10x the largest scale) with
    CI, ``forecast_capped`` and ``near_ceiling``, n_fits_failed (bootstrap refits that failed) and ``band`` (the curve and its
    95% band on a grid from the smallest scale to the forecast, for the figure).
    """
    items = item_scores(df)
    all_models = model_order(models if models is not None else items["model"])
    scales = [m for m in all_models if m != "base"]
    n = np.array([examples_of(m) for m in scales], float)
    rows, all_means, all_boots, base_means = [], [], [], []
    for cat in category_order(items["category"]):
        w = item_matrix(items[items["category"] == cat], all_models)
        base_mean = float(w["base"].mean()) if "base" in w and w["base"].notna().any() else math.nan
        s = w[scales].to_numpy(float)
        s = s[~np.isnan(s).all(axis=1)]
        means, boot = joint_boot_means(s, n_boot, cell_rng(seed, "curve", cat))
        all_means.append(means)
        all_boots.append(boot)
        base_means.append(base_mean)
        rows.append({"category": cat, **fit_scaling(n, means, boot, base_mean)})
    if rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.array(all_means), axis=0)
            boot = np.nanmean(np.array(all_boots), axis=0)
            base = float(np.nanmean(base_means)) if not np.isnan(base_means).all() else math.nan
        rows.append({"category": OVERALL, **fit_scaling(n, means, boot, base)})
    return pd.DataFrame(rows, columns=COLUMNS)
