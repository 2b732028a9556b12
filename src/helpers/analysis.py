"""Per-use-case scores, their uncertainty, and how they change with the amount of data.

Pure functions over tidy pandas frames; only ``load_scores``, ``load_answers`` and
``write_results`` touch files. The one frame everything starts from is the *long*
frame of ``load_scores``: one row per (model, item, judge run).

Conventions used throughout
---------------------------
* A model is ``"base"`` (the untuned model, 0 training examples) or a scale name,
  the training-example count as a string (``"600"``); in a strategy grid a scale name
  carries its selection strategy (``"quality-600"``). Models are ordered base first,
  then strategy by strategy (``config.STRATEGIES`` order), each by example count.
* Trends, paired changes and the paper comparison are computed per strategy, on the
  chain base -> smallest -> ... -> largest scale of that strategy; ``strategy_comparison``
  sets strategies against each other at equal scale on the same items.
* A judge that failed leaves ``score`` null. A null is **never** averaged as 0: an
  item's score is the mean of its non-null runs, an item with no non-null run has no
  score (it is left out of the means) and every null judgment is counted (``n_null``).
* Confidence intervals are 95% percentile bootstraps that resample *items* (the eval
  questions), because the items are the sample we want to generalise from; judge
  runs are averaged first. Every bootstrap draws from a generator seeded by ``seed``
  and the cell's name, so results do not depend on the order cells are computed in.
* The headline ``"overall"`` score is the mean of the per-category means, so each use
  case weighs the same whatever its item count (as the paper's "Overall" does);
  ``"overall_items"`` is the plain mean over items, shown next to it for contrast.
"""
from __future__ import annotations

import math
import warnings
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from helpers import CATEGORIES
from helpers.config import STRATEGIES, split_model
from helpers.files import atomic_write_text, read_json, read_jsonl, write_json

DISPLAY_NAMES = {
    "math": "Math",
    "code": "Code",
    "cot": "COT",
    "classification": "Classification",
    "extraction": "Extraction",
    "open_qa": "Open QA",
    "closed_qa": "Closed QA",
    "generation": "Generation",
    "brainstorming": "Brainstorming",
    "rewrite": "Rewrite",
    "translation": "Translation",
    "summarization": "Summarization",
    "overall": "Overall",
    "overall_items": "Overall (per item)",
}
"""Category names as the paper writes them, for tables and figures."""

OVERALL = "overall"
OVERALL_ITEMS = "overall_items"

PAPER_CLAIMS = {
    "math": "flat", "code": "flat", "cot": "flat",
    "extraction": "improving", "classification": "improving",
    "closed_qa": "improving", "summarization": "improving",
    "translation": "good_early", "rewrite": "good_early",
    "generation": "good_early", "brainstorming": "good_early",
}
"""What Ji et al. (2023) report per use case as the data grows from 0.2M to 2M.
Open QA is not given a clear trend in the paper, so it has no claim here."""

CLAIM_TEXT = {
    "flat": "stays flat with more data",
    "improving": "keeps improving with more data",
    "good_early": "good early (plateau at a high level)",
}


# --------------------------------------------------------------------------- helpers

def display_name(category: str) -> str:
    """The paper's name for a category (unknown names pass through)."""
    return DISPLAY_NAMES.get(category, category)


def examples_of(model: str) -> int:
    """Training examples of a model name: 0 for ``base``, the count for ``600`` or ``quality-600``."""
    return split_model(model)[1]


def strategy_of(model: str) -> str | None:
    """The selection strategy in a grid model's name (``quality-600`` -> ``quality``); None otherwise."""
    return split_model(model)[0]


def model_order(models: Iterable[str]) -> list[str]:
    """Unique model names: base first, then strategy by strategy, each by example count."""
    def key(m):
        strategy, n = split_model(m)
        return (n > 0, STRATEGIES.index(strategy) if strategy else -1, n)
    return sorted(dict.fromkeys(models), key=key)


def strategy_groups(models: Iterable[str]) -> dict[str | None, list[str]]:
    """``{strategy: [base, its scales...]}`` -- the chains trends and changes run along.
    Models without a strategy in their name (a one-strategy study) form the group ``None``."""
    ordered = model_order(models)
    groups: dict[str | None, list[str]] = {}
    for m in ordered:
        if m != "base":
            groups.setdefault(strategy_of(m), []).append(m)
    head = ["base"] if "base" in ordered else []
    return {st: head + ms for st, ms in groups.items()} or ({None: head} if head else {})


def category_order(categories: Iterable[str]) -> list[str]:
    """The paper's order for known categories, then any others alphabetically."""
    present = set(categories)
    known = [c for c in CATEGORIES if c in present]
    return known + sorted(present - set(known))


def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator fixed by ``seed`` and a cell's name (order-independent results)."""
    tag = zlib.crc32("|".join(map(str, keys)).encode("utf-8"))
    return np.random.default_rng([int(seed), tag])


def _boot_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of ``values`` (1-D, no NaN): shape (n_boot,); empty -> all NaN."""
    n = len(values)
    if n == 0:
        return np.full(n_boot, np.nan)
    idx = rng.integers(0, n, size=(n_boot, n))
    return values[idx].mean(axis=1)


def _ci(boot: np.ndarray) -> tuple[float, float]:
    boot = boot[~np.isnan(boot)]
    if boot.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- loading

def load_scores(study_dir: str | Path, models: list[str]) -> pd.DataFrame:
    """The long frame: one row per (model, item, judge run).

    Columns: ``model``, ``examples`` (0 for base), ``id``, ``category`` (from
    ``eval.jsonl``), ``run``, ``score`` (float, NaN where the judge failed), plus
    ``judge`` and ``raw`` (the judge's text, for error analysis).

    Stops with an error naming the file and line when a judgment's id is not in
    ``eval.jsonl``, a score is outside 0..1, or an (id, run) pair appears twice.
    """
    study_dir = Path(study_dir)
    eval_path = study_dir / "eval.jsonl"
    cat_of = {}
    for rec in read_jsonl(eval_path):
        if "id" not in rec or "category" not in rec:
            raise ValueError(f"{eval_path}: record {rec.get('id', '?')}: needs 'id' and 'category'")
        cat_of[str(rec["id"])] = rec["category"]
    rows = []
    for model in models:
        n_examples = examples_of(model)
        path = study_dir / "judgments" / f"{model}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no judgments for model {model!r} (run the judge stage)")
        seen = set()
        for line_no, rec in enumerate(read_jsonl(path), start=1):
            item = str(rec.get("id"))
            if item not in cat_of:
                raise ValueError(f"{path}: record {line_no}: id {item!r} is not in {eval_path}")
            run = int(rec.get("run", 0))
            if (item, run) in seen:
                raise ValueError(f"{path}: record {line_no}: id {item!r} run {run} is judged twice")
            seen.add((item, run))
            score = rec.get("score")
            if score is None:
                score = math.nan
            else:
                try:
                    score = float(score)
                except (TypeError, ValueError):
                    raise ValueError(f"{path}: record {line_no}: score {score!r} is not a number or null") from None
                if not 0.0 <= score <= 1.0:
                    raise ValueError(f"{path}: record {line_no}: score {score} is outside 0..1")
            rows.append({
                "model": model, "examples": n_examples, "id": item, "category": cat_of[item],
                "run": run, "score": score, "judge": rec.get("judge"), "raw": rec.get("raw"),
            })
    df = pd.DataFrame(rows, columns=["model", "examples", "id", "category", "run", "score", "judge", "raw"])
    df["examples"] = df["examples"].astype(int)
    df["score"] = df["score"].astype(float)
    return df


def load_answers(study_dir: str | Path, models: list[str]) -> dict[str, dict[str, dict]]:
    """``{model: {id: answer record}}`` from ``answers/<model>.jsonl`` (missing file -> empty)."""
    out = {}
    for model in models:
        path = Path(study_dir) / "answers" / f"{model}.jsonl"
        out[model] = {str(r["id"]): r for r in read_jsonl(path)} if path.exists() else {}
    return out


def missing_judgments(df: pd.DataFrame, eval_items: list[dict]) -> dict[str, int]:
    """Per model, how many eval items have no judgment row at all (not even a null)."""
    all_ids = {str(r["id"]) for r in eval_items}
    return {m: len(all_ids - set(g["id"])) for m, g in df.groupby("model", sort=False)}


# --------------------------------------------------------------------------- per item

def item_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, item): the mean over judge runs ignoring nulls.

    Columns: model, examples, id, category, ``score`` (NaN when every run failed),
    ``std`` (population std across the non-null runs; NaN with fewer than two),
    ``range`` (max - min across non-null runs; NaN with fewer than two),
    ``n_runs`` (non-null runs), ``n_null`` (null runs).
    """
    g = df.groupby(["model", "examples", "id", "category"], sort=False)["score"]
    out = g.agg(score="mean", max="max", min="min", n_runs="count", size="size").reset_index()
    out.insert(5, "std", g.std(ddof=0).to_numpy())
    multi = out["n_runs"] >= 2
    out["std"] = out["std"].where(multi)
    out["range"] = (out["max"] - out["min"]).where(multi)
    out["n_null"] = (out["size"] - out["n_runs"]).astype(int)
    out = out.drop(columns=["max", "min", "size"])
    return out


# --------------------------------------------------------------------------- the table

def score_table(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean score per category x model with a 95% bootstrap CI over items.

    Columns: category, model, examples, mean, ci_low, ci_high, n (items with a
    score), n_null (null judgments, counted and never averaged as 0).

    Two extra rows per model:

    * ``"overall"`` -- **the headline**: the mean of the per-category means, so
      each use case weighs the same (the paper's "Overall"). Its CI resamples
      items within each category (a stratified bootstrap). Categories where a
      model has no scored item are left out of that model's mean.
    * ``"overall_items"`` -- the mean over all items, weighting categories by
      their item counts; CI resamples items across the whole eval set.
    """
    items = item_scores(df)
    cats = category_order(items["category"])
    rows = []
    for model in model_order(items["model"]):
        mi = items[items["model"] == model]
        n_ex = examples_of(model)
        cat_boots = []
        for cat in cats:
            ci_items = mi[mi["category"] == cat]
            vals = ci_items["score"].dropna().to_numpy(float)
            boot = _boot_means(vals, n_boot, _rng(seed, "table", cat, model))
            lo, hi = _ci(boot)
            rows.append({"category": cat, "model": model, "examples": n_ex,
                         "mean": float(vals.mean()) if len(vals) else math.nan,
                         "ci_low": lo, "ci_high": hi, "n": len(vals),
                         "n_null": int(ci_items["n_null"].sum())})
            if len(vals):
                cat_boots.append((float(vals.mean()), boot))
        if cat_boots:
            means = np.array([m for m, _ in cat_boots])
            boot = np.mean([b for _, b in cat_boots], axis=0)
            lo, hi = _ci(boot)
            overall = float(means.mean())
        else:
            overall, lo, hi = math.nan, math.nan, math.nan
        all_vals = mi["score"].dropna().to_numpy(float)
        rows.append({"category": OVERALL, "model": model, "examples": n_ex, "mean": overall,
                     "ci_low": lo, "ci_high": hi, "n": len(all_vals), "n_null": int(mi["n_null"].sum())})
        boot = _boot_means(all_vals, n_boot, _rng(seed, "table", OVERALL_ITEMS, model))
        lo, hi = _ci(boot)
        rows.append({"category": OVERALL_ITEMS, "model": model, "examples": n_ex,
                     "mean": float(all_vals.mean()) if len(all_vals) else math.nan,
                     "ci_low": lo, "ci_high": hi, "n": len(all_vals), "n_null": int(mi["n_null"].sum())})
    return pd.DataFrame(rows, columns=["category", "model", "examples", "mean", "ci_low", "ci_high", "n", "n_null"])


# --------------------------------------------------------------------------- judge spread

def judge_spread(df: pd.DataFrame, threshold: float = 0.1) -> pd.DataFrame:
    """How much the judge's repeated runs disagree, per category (pooled over models).

    Columns: category, ``runs`` (most judge runs seen for an item), ``n_items``
    ((model, item) pairs with at least two non-null runs), ``mean_std`` (mean
    within-item population std across runs), ``share_disagree`` (share of those
    items whose runs differ by more than ``threshold``, max - min). With a single
    run (the offline judge) ``n_items`` is 0 and both measures are NaN, not 0.
    A last row ``"overall"`` pools every item.
    """
    items = item_scores(df)
    runs = df.groupby(["model", "id"])["run"].nunique()
    max_runs = int(runs.max()) if len(runs) else 0
    rows = []
    for cat in category_order(items["category"]) + [OVERALL]:
        sub = items if cat == OVERALL else items[items["category"] == cat]
        multi = sub[sub["n_runs"] >= 2]
        rows.append({
            "category": cat, "runs": max_runs, "n_items": int(len(multi)),
            "mean_std": float(multi["std"].mean()) if len(multi) else math.nan,
            "share_disagree": float((multi["range"] > threshold).mean()) if len(multi) else math.nan,
        })
    return pd.DataFrame(rows, columns=["category", "runs", "n_items", "mean_std", "share_disagree"])


# --------------------------------------------------------------------------- changes

def _wide(items: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Items x models matrix of item scores (NaN where missing)."""
    return items.pivot_table(index="id", columns="model", values="score", aggfunc="first", dropna=False).reindex(columns=models)


def _paired(items: pd.DataFrame, a: str, b: str, n_boot: int, seed: int, tag: str) -> list[dict]:
    """Per category and ``overall``: mean over items scored under both models of
    (score of ``b`` - score of ``a``), with a paired bootstrap CI that resamples items and
    keeps each item's two scores together, so item difficulty cancels out. The
    ``overall`` row averages the category diffs (stratified).
    Keys: category, n_pairs, diff, ci_low, ci_high, significant (CI excludes 0)."""
    rows, boots, diffs = [], [], []
    for cat in category_order(items["category"]):
        w = _wide(items[items["category"] == cat], [a, b])
        d = (w[b] - w[a]).dropna().to_numpy(float)
        boot = _boot_means(d, n_boot, _rng(seed, tag, cat, a, b))
        lo, hi = _ci(boot)
        mean = float(d.mean()) if len(d) else math.nan
        if len(d):
            boots.append(boot)
            diffs.append(mean)
        rows.append({"category": cat, "n_pairs": len(d), "diff": mean, "ci_low": lo, "ci_high": hi,
                     "significant": bool(len(d) and (lo > 0 or hi < 0))})
    if diffs:
        lo, hi = _ci(np.mean(boots, axis=0))
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


# --------------------------------------------------------------------------- trends

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
        w = _wide(sub, all_models)
        base_mean = float(w["base"].mean()) if "base" in w else math.nan
        s = w[scales].to_numpy(float) if scales else np.empty((len(w), 0))
        s = s[~np.isnan(s).all(axis=1)] if s.size else s
        rng = _rng(seed, "trend", cat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(s, axis=0) if len(s) else np.full(len(scales), np.nan)
            if len(s):
                idx = rng.integers(0, len(s), size=(n_boot, len(s)))
                boot = np.nanmean(s[idx], axis=1)  # (n_boot, k)
            else:
                boot = np.full((n_boot, len(scales)), np.nan)
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
        lo, hi = _ci(_slope(x, boot))
        label = "improving" if lo > improve else "declining" if hi < -decline else "plateau"
    else:
        slope, lo, hi, label = math.nan, math.nan, math.nan, "unknown"
    first = last = None
    f_mean = f_lo = f_hi = l_mean = math.nan
    if len(scales):
        first, last = scales[0], scales[-1]
        f_mean, l_mean = float(means[0]), float(means[-1])
        f_lo, f_hi = _ci(boot[:, 0])
    return {"category": cat, "slope": slope, "ci_low": lo, "ci_high": hi, "label": label,
            "n_items": int(n_items), "n_scales": n_scales, "first_scale": first, "first_mean": f_mean,
            "first_ci_low": f_lo, "first_ci_high": f_hi, "last_scale": last, "last_mean": l_mean,
            "base_mean": base_mean}


def paper_comparison(trends: pd.DataFrame, high: float = 0.6, flat_tol: float = 0.1) -> pd.DataFrame:
    """Hold each of the paper's per-use-case claims against our trend labels.

    Verdicts (one-line ``reason`` each):

    * flat (math, code, COT): agrees when labelled plateau with the slope CI inside
      +-``flat_tol`` per tenfold data; disagrees when improving or declining; a
      plateau whose CI is wider than that cannot tell.
    * improving (extraction, classification, closed QA, summarization): agrees
      when improving; disagrees when declining, or a plateau whose CI upper bound
      is below ``flat_tol`` (the gain is ruled out); otherwise cannot tell.
    * good early (translation, rewrite, generation, brainstorming): agrees when
      labelled plateau and the first trained scale already scores >= ``high``;
      disagrees when the first scale's CI is entirely below ``high``, or the
      score declines or keeps improving; otherwise cannot tell.

    Categories missing from ``trends`` or labelled ``unknown`` cannot tell.
    Columns: category, name, claim, label, verdict, reason.
    """
    by_cat = {r["category"]: r for r in pd.DataFrame(trends).to_dict("records")}
    rows = []
    for cat, claim in PAPER_CLAIMS.items():
        r = by_cat.get(cat)
        verdict, reason, label = "cannot tell", "", None
        if r is None:
            reason = "not in this study's eval set"
        elif r["label"] == "unknown":
            label = "unknown"
            reason = "fewer than two trained scales: no slope"
        else:
            label = r["label"]
            ci = f"slope {r['slope']:+.3f}/10x data, 95% CI [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            if claim == "flat":
                if label != "plateau":
                    verdict, reason = "disagrees", f"{label}: {ci}"
                elif r["ci_low"] >= -flat_tol and r["ci_high"] <= flat_tol:
                    verdict, reason = "agrees", f"plateau: {ci} within +-{flat_tol}"
                else:
                    reason = f"plateau but CI too wide to call flat: {ci}"
            elif claim == "improving":
                if label == "improving":
                    verdict, reason = "agrees", f"improving: {ci}"
                elif label == "declining":
                    verdict, reason = "disagrees", f"declining: {ci}"
                elif r["ci_high"] < flat_tol:
                    verdict, reason = "disagrees", f"plateau, a gain of {flat_tol}/10x is ruled out: {ci}"
                else:
                    reason = f"plateau, but a gain is not ruled out: {ci}"
            else:
                lvl = (f"first scale ({r['first_scale']}) mean {r['first_mean']:.2f} "
                       f"[{r['first_ci_low']:.2f}, {r['first_ci_high']:.2f}]")
                if label == "declining":
                    verdict, reason = "disagrees", f"declining: {ci}"
                elif r["first_ci_high"] < high:
                    verdict, reason = "disagrees", f"starts low: {lvl} < {high}"
                elif label == "improving":
                    verdict, reason = "disagrees", f"keeps improving rather than levelling off: {ci}"
                elif r["first_mean"] >= high:
                    verdict, reason = "agrees", f"plateau at a high level: {lvl} >= {high}"
                else:
                    reason = f"plateau, but the early level is unclear: {lvl} vs {high}"
        rows.append({"category": cat, "name": display_name(cat), "claim": CLAIM_TEXT[claim],
                     "label": label, "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows, columns=["category", "name", "claim", "label", "verdict", "reason"])


# --------------------------------------------------------------------------- error analysis

def lowest_items(df: pd.DataFrame, answers: dict, eval: list[dict] | dict, model: str, k: int = 3) -> pd.DataFrame:
    """Per category, the ``k`` lowest-scoring items of ``model`` for reading.

    ``answers`` maps model -> {id: answer record} (as ``load_answers`` returns) or
    model -> list of records; ``eval`` is the eval records (list, or {id: record}).
    Items with no score (every judge run failed) are not ranked. Ties break by id.

    Columns: category, id, score, question, reference, answer, base_answer,
    rationale (the judge's ``raw`` text, one paragraph per run).
    """
    def by_id(recs):
        if isinstance(recs, dict):
            return {str(k_): v for k_, v in recs.items()}
        return {str(r["id"]): r for r in recs or []}

    ev = by_id(eval)
    ans = by_id(answers.get(model, {}))
    base = by_id(answers.get("base", {}))
    sub = df[df["model"] == model]
    items = item_scores(sub).dropna(subset=["score"])
    rows = []
    for cat in category_order(items["category"]):
        ci = items[items["category"] == cat].sort_values(["score", "id"]).head(k)
        for it in ci.itertuples():
            runs = sub[sub["id"] == it.id].sort_values("run")
            raw = "\n\n".join(
                (f"[run {int(r.run)}] " if len(runs) > 1 else "") + ("" if r.raw is None else str(r.raw))
                for r in runs.itertuples())
            e = ev.get(it.id, {})
            rows.append({"category": cat, "id": it.id, "score": float(it.score),
                         "question": e.get("question"), "reference": e.get("reference"),
                         "answer": ans.get(it.id, {}).get("answer"),
                         "base_answer": base.get(it.id, {}).get("answer"),
                         "rationale": raw})
    return pd.DataFrame(rows, columns=["category", "id", "score", "question", "reference",
                                       "answer", "base_answer", "rationale"])


# --------------------------------------------------------------------------- judge usage

USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost")


def judge_usage(study_dir: str | Path, models: list[str]) -> dict:
    """Tokens and cost of the judge, summed from the judgment rows' ``usage``.

    Returns ``{"by_judge": {judge: sums}, "by_model": {model: sums}, "total": sums}`` with
    sums ``{requests, prompt_tokens, completion_tokens, cost}``; ``by_model`` is per judge
    stage execution (one per model). The offline judge's rows carry ``usage: {}`` and
    count as zero. Cost is in USD at the prices of the config the judge ran with.
    """
    def zero():
        return dict.fromkeys(USAGE_FIELDS, 0)

    by_judge: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    total = zero()
    for model in model_order(models):
        path = Path(study_dir) / "judgments" / f"{model}.jsonl"
        if not path.exists():
            continue
        m = by_model.setdefault(model, zero())
        for rec in read_jsonl(path):
            u = rec.get("usage") or {}
            j = by_judge.setdefault(str(rec.get("judge")), zero())
            for k in USAGE_FIELDS:
                v = u.get(k) or 0
                for acc in (j, m, total):
                    acc[k] += v
    for acc in [*by_judge.values(), *by_model.values(), total]:
        acc["cost"] = round(float(acc["cost"]), 6)
    return {"by_judge": by_judge, "by_model": by_model, "total": total}


# --------------------------------------------------------------------------- writing

def _clean(obj):
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _records(frame: pd.DataFrame) -> list[dict]:
    return _clean(frame.astype(object).where(frame.notna(), None).to_dict("records"))


def write_results(study_dir: str | Path, models: list[str], *, n_boot: int = 1000, seed: int = 0,
                  improve: float = 0.02, decline: float = 0.02, high: float = 0.6,
                  flat_tol: float = 0.1, k: int = 3, error_model: str | None = None) -> dict:
    """Compute everything and write ``results.csv`` and ``results.json`` atomically.

    ``results.csv`` is the tidy table (category, model, examples, mean, ci_low,
    ci_high, n, n_null), including the ``overall`` (headline, mean over
    categories) and ``overall_items`` rows. ``results.json`` holds the same table
    and the analyses around it (see the keys of the returned dict). Error analysis
    uses ``error_model`` (default: the largest scale). Returns the JSON content.
    """
    study_dir = Path(study_dir)
    models = model_order(models)
    df = load_scores(study_dir, models)
    eval_items = read_jsonl(study_dir / "eval.jsonl")
    table = score_table(df, n_boot=n_boot, seed=seed)
    trends = per_strategy(df, models, lambda d, _: trend_labels(d, improve=improve, decline=decline,
                                                                 n_boot=n_boot, seed=seed))
    comparison = per_strategy(df, models, lambda d, chain: paper_comparison(
        trends[trends["strategy"] == strategy_of(chain[-1])] if "strategy" in trends else trends,
        high=high, flat_tol=flat_tol))
    spread = judge_spread(df)
    changes = per_strategy(df, models, lambda d, chain: scale_changes(d, n_boot=n_boot, seed=seed, models=chain))
    versus = strategy_comparison(df, n_boot=n_boot, seed=seed)
    missing = missing_judgments(df, eval_items)
    for m, n in missing.items():
        if n:
            warnings.warn(f"{study_dir / 'judgments' / (m + '.jsonl')}: {n} eval items have no judgment")
    error_model = error_model or models[-1]
    answers = load_answers(study_dir, list(dict.fromkeys([error_model, "base"])))
    low = lowest_items(df, answers, eval_items, error_model, k=k)

    judges = {m: sorted({str(j) for j in g["judge"].dropna()}) for m, g in df.groupby("model", sort=False)}
    nulls = df[df["score"].isna()]
    null_counts = {
        "total": int(len(nulls)),
        "judgments": int(len(df)),
        "by_model": {m: int((nulls["model"] == m).sum()) for m in models},
        "by_category": {c: int((nulls["category"] == c).sum()) for c in category_order(df["category"])},
    }
    cols = ["category", "model", "examples", "mean", "ci_low", "ci_high", "n", "n_null"]
    result = {
        "models": models,
        "categories": category_order(df["category"]),
        "display_names": DISPLAY_NAMES,
        "judges": {"all": sorted({j for v in judges.values() for j in v}), "by_model": judges},
        "headline": ("'overall' is the mean of the per-category means (each use case weighs the same, "
                     "as the paper's Overall); 'overall_items' is the mean over items."),
        "table": _records(table[cols]),
        "overall": _records(table[table["category"].isin([OVERALL, OVERALL_ITEMS])][cols]),
        "trends": _records(trends),
        "paper_comparison": _records(comparison),
        "judge_spread": _records(spread),
        "changes": _records(changes),
        "strategies": sorted({st for m in models if (st := strategy_of(m))}, key=STRATEGIES.index),
        "strategy_comparison": _records(versus),
        "identical_subsets": (read_json(study_dir / "data_stats.json").get("identical_subsets", [])
                              if (study_dir / "data_stats.json").exists() else []),
        "null_counts": null_counts,
        "judge_usage": judge_usage(study_dir, models),
        "missing_judgments": missing,
        "error_analysis": {"model": error_model, "k": k},
        "lowest_items": _records(low),
        "settings": {"n_boot": n_boot, "seed": seed, "ci": 0.95, "improve": improve, "decline": decline,
                     "high": high, "flat_tol": flat_tol, "slope_unit": "score per tenfold training examples"},
    }
    atomic_write_text(study_dir / "results.csv", table[cols].to_csv(index=False))
    write_json(study_dir / "results.json", result)
    return result


def pretty_table(table) -> pd.DataFrame:
    """The score table for reading: rows in the paper's words (Overall last), one
    column per model, cells ``"0.62 [0.55, 0.70]"``. Takes ``score_table`` output
    or the ``table`` records of ``results.json``."""
    t = pd.DataFrame(table)
    cats = [c for c in category_order(t["category"]) if c not in (OVERALL, OVERALL_ITEMS)]
    cats += [c for c in (OVERALL, OVERALL_ITEMS) if (t["category"] == c).any()]
    models = model_order(t["model"])

    def cell(r):
        if r is None or pd.isna(r["mean"]):
            return "-"
        return f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"

    idx = {(r["category"], r["model"]): r for r in t.to_dict("records")}
    out = pd.DataFrame([[cell(idx.get((c, m))) for m in models] for c in cats],
                       index=[display_name(c) for c in cats],
                       columns=["base (0)" if m == "base" else m for m in models])
    out.index.name = "use case"
    return out


def read_results(study_dir: str | Path) -> dict:
    """``results.json`` as written by ``write_results``."""
    return read_json(Path(study_dir) / "results.json")
