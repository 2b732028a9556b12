"""From judgments to scores: the long frame, item scores, category x model means with CIs.

A null judgment is never averaged as 0: an item's score is the mean of its non-null runs and
every null is counted (``n_null``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.analysis.bootstrap import boot_means, cell_rng, percentile_ci
from helpers.study.categories import category_order
from helpers.study.files import read_jsonl
from helpers.study.judges import judgments_path
from helpers.study.order import OVERALL, OVERALL_ITEMS, examples_of, model_order


def load_scores(study_dir: str | Path, models: list[str], judge: str | None = None,
                examples: dict[str, int] | None = None) -> pd.DataFrame:
    """The long frame: one row per (model, item, judge run), of the headline judge (``judge`` None) or of
    the judge of ``judge.others`` named ``judge`` (``helpers.study.judges.judgments_path``).

    Columns: ``model``, ``examples`` (0 for base), ``id``, ``category`` (from
    ``eval.jsonl``), ``run``, ``score`` (float, NaN where the judge failed), plus
    ``judge`` and ``raw`` (the judge's text, for error analysis).

    ``examples`` gives the training examples of models whose name does not say them (the mixture models,
    ``mix-<name>``, all at the full mixture's count).

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
        n_examples = examples[model] if examples and model in examples else examples_of(model)
        path = judgments_path(study_dir, model, judge)
        if not path.exists():
            who = "" if judge is None else f" by judge {judge!r}"
            raise FileNotFoundError(f"{path}: no judgments{who} for model {model!r} (run the judge stage)")
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
        n_ex = int(mi["examples"].iloc[0])  # as loaded (a mixture model's name does not say it)
        cat_boots = []
        for cat in cats:
            ci_items = mi[mi["category"] == cat]
            vals = ci_items["score"].dropna().to_numpy(float)
            boot = boot_means(vals, n_boot, cell_rng(seed, "table", cat, model))
            lo, hi = percentile_ci(boot)
            rows.append({"category": cat, "model": model, "examples": n_ex,
                         "mean": float(vals.mean()) if len(vals) else math.nan,
                         "ci_low": lo, "ci_high": hi, "n": len(vals),
                         "n_null": int(ci_items["n_null"].sum())})
            if len(vals):
                cat_boots.append((float(vals.mean()), boot))
        if cat_boots:
            means = np.array([m for m, _ in cat_boots])
            boot = np.mean([b for _, b in cat_boots], axis=0)
            lo, hi = percentile_ci(boot)
            overall = float(means.mean())
        else:
            overall, lo, hi = math.nan, math.nan, math.nan
        all_vals = mi["score"].dropna().to_numpy(float)
        rows.append({"category": OVERALL, "model": model, "examples": n_ex, "mean": overall,
                     "ci_low": lo, "ci_high": hi, "n": len(all_vals), "n_null": int(mi["n_null"].sum())})
        boot = boot_means(all_vals, n_boot, cell_rng(seed, "table", OVERALL_ITEMS, model))
        lo, hi = percentile_ci(boot)
        rows.append({"category": OVERALL_ITEMS, "model": model, "examples": n_ex,
                     "mean": float(all_vals.mean()) if len(all_vals) else math.nan,
                     "ci_low": lo, "ci_high": hi, "n": len(all_vals), "n_null": int(mi["n_null"].sum())})
    return pd.DataFrame(rows, columns=["category", "model", "examples", "mean", "ci_low", "ci_high", "n", "n_null"])


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


USAGE_FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost")


def judge_usage(study_dir: str | Path, models: list[str], others: list[str] | tuple[str, ...] = ()) -> dict:
    """Tokens and cost of the judges, summed from the judgment rows' ``usage``.

    Returns ``{"by_judge": {judge: sums}, "by_model": {model: sums}, "total": sums}`` with
    sums ``{requests, prompt_tokens, completion_tokens, cost}``; ``by_model`` is per judge
    stage execution (one per model, every judge of the study). The headline judge is keyed by
    its rows' ``judge`` (its model), each judge of ``others`` (``judge.others`` names) by its
    name, since two of them may ask the same model. The offline judge's rows carry ``usage: {}``
    and count as zero. Cost is in USD at the prices of the config the judge ran with.
    """
    def zero():
        return dict.fromkeys(USAGE_FIELDS, 0)

    by_judge: dict[str, dict] = {}
    by_model: dict[str, dict] = {}
    served: dict[str, dict] = {}
    total = zero()
    for model in model_order(models):
        for other in (None, *others):
            path = judgments_path(study_dir, model, other)
            if path.exists():
                rows = read_jsonl(path)
                _add_usage(rows, other, by_judge, by_model.setdefault(model, zero()), total)
                _add_served(rows, other, served)
    for acc in [*by_judge.values(), *by_model.values(), total]:
        acc["cost"] = round(float(acc["cost"]), 6)
    return {"by_judge": by_judge, "by_model": by_model, "total": total, "served": served}


def _add_served(rows: list[dict], name: str | None, served: dict) -> None:
    """Count per judge the judgments each served model and ``system_fingerprint`` answered (an alias such as
    ``gpt-3.5-turbo`` is answered by a dated snapshot, and the fingerprint changes with the backend)."""
    for rec in rows:
        if "served_model" in rec:
            key = f"{rec.get('served_model')} / {rec.get('system_fingerprint')}"
            counts = served.setdefault(name or str(rec.get("judge")), {})
            counts[key] = counts.get(key, 0) + 1


def _add_usage(rows: list[dict], name: str | None, by_judge: dict, m: dict, total: dict) -> None:
    """Add the ``usage`` of judgment ``rows`` to their judge's, their model's (``m``) and the total sums."""
    for rec in rows:
        u = rec.get("usage") or {}
        j = by_judge.setdefault(name or str(rec.get("judge")), dict.fromkeys(USAGE_FIELDS, 0))
        for k in USAGE_FIELDS:
            v = u.get(k) or 0
            for acc in (j, m, total):
                acc[k] += v


def code_execution(study_dir: str | Path, models: list[str]) -> dict:
    """How code answers were run, counted from the judgment rows' ``code_execution`` (offline judge,
    ``python_tests`` items; see ``helpers.judge.sandbox``).

    Returns ``{"modes": {mode: rows}, "by_model": {model: {mode: rows}}, "not_run": rows}`` with modes
    ``bubblewrap``, ``unshare``, ``unisolated`` or ``not run``; empty counts when no row ran code.
    """
    modes: dict[str, int] = {}
    by_model: dict[str, dict] = {}
    for model in model_order(models):
        path = Path(study_dir) / "judgments" / f"{model}.jsonl"
        if not path.exists():
            continue
        for rec in read_jsonl(path):
            mode = rec.get("code_execution")
            if mode is None:
                continue
            modes[mode] = modes.get(mode, 0) + 1
            by_model.setdefault(model, {})[mode] = by_model.get(model, {}).get(mode, 0) + 1
    return {"modes": modes, "by_model": by_model, "not_run": modes.get("not run", 0)}


def code_execution_note(summary: dict | None) -> str | None:
    """One sentence for the top of the report on how code answers were run (None when no row says).

    >>> code_execution_note({"modes": {"bubblewrap": 40}, "not_run": 0})
    'Code answers ran in OS isolation (bubblewrap: 40 judgments).'
    >>> code_execution_note({"modes": {"not run": 40}, "not_run": 40})[:62]
    'Code answers were NOT run (no OS isolation on the machine that'
    """
    modes = (summary or {}).get("modes") or {}
    if not modes:
        return None
    parts = ", ".join(f"{m}: {n} judgments" for m, n in sorted(modes.items()))
    not_run = modes.get("not run", 0)
    if not_run:
        return (f"Code answers were NOT run (no OS isolation on the machine that judged them; "
                f"set judge.code_execution: unisolated to opt in): {not_run} code judgments are null, "
                f"so the code use case is missing or partial ({parts}).")
    if "unisolated" in modes:
        return f"Code answers ran WITHOUT OS isolation, as judge.code_execution: unisolated allows ({parts})."
    return f"Code answers ran in OS isolation ({parts})."
