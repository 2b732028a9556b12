"""Judges checked against each other: how far each other judge agrees with the headline judge, per use case.

Why: the paper relied on ChatGPT alone. Before paying for a large study with an LLM judge, a researcher wants
to know on which use cases it ranks answers as another judge does (the offline checks, another LLM), and
where it does not, which answers those are.

What is compared: *answers*, one model's answer to one eval item. Every judge of the study scored the same
answers (``helpers.judge.stage.run``), so each use case has (models x items) pairs of
scores; pooling the models gives more pairs than the items alone and spans the range of quality that a
judge must rank. A judge's score of an answer is the mean of its non-null runs (``scores.item_scores``); an
answer that either judge left null is not compared, and is counted (``n_null``), never scored as 0.

Per use case, and ``overall`` over every answer pooled:

==============  =======================================================================================
n               answers both judges scored
spearman        Spearman's rho (``scipy.stats.spearmanr``; tied scores get their average rank)
kendall         Kendall's tau-b (``scipy.stats.kendalltau``), which corrects for ties: the offline
                judge gives many answers the same 0 or 1
mad             mean absolute difference of the two scores
share_apart     share of answers whose scores differ by more than ``APART`` (0.3)
mean_headline,  each judge's mean over the compared answers: a judge can rank alike and still be
mean_other      harsher or kinder
==============  =======================================================================================

A correlation is undefined (NaN here, null in results.json, "–" in the report) with fewer than two answers
or when one judge gives them all the same score; it is never shown as 0.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from helpers.analysis.scores import item_scores, load_scores
from helpers.study.categories import category_order
from helpers.study.order import OVERALL, model_order

APART = 0.3
"""Two scores further apart than this (on 0..1) count as a disagreement in ``share_apart``."""

TABLE_COLUMNS = ["category", "n", "n_null", "spearman", "kendall", "mad", "share_apart", "mean_headline", "mean_other"]


def paired_scores(headline: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """One row per answer both judges saw: model, id, category, ``headline`` and ``other`` (each the mean of
    that judge's non-null runs, NaN where every run was null) and ``diff`` = other - headline. Takes two long
    frames of ``scores.load_scores``."""
    keys = ["model", "id", "category"]
    h = item_scores(headline)[keys + ["score"]].rename(columns={"score": "headline"})
    o = item_scores(other)[keys + ["score"]].rename(columns={"score": "other"})
    pairs = h.merge(o, on=keys, how="inner")
    pairs["diff"] = pairs["other"] - pairs["headline"]
    return pairs


def _correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Spearman's rho, Kendall's tau-b); NaN where undefined (under two answers, or a constant judge)."""
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(a, b).statistic
        tau = stats.kendalltau(a, b).statistic  # tau-b, scipy's default
    return float(rho), float(tau)


def agreement_table(pairs: pd.DataFrame, apart: float = APART) -> pd.DataFrame:
    """The figures of the module docstring per use case (in the paper's order), then ``overall``."""
    rows = []
    for cat in category_order(pairs["category"]) + [OVERALL]:
        sub = pairs if cat == OVERALL else pairs[pairs["category"] == cat]
        both = sub.dropna(subset=["headline", "other"])
        a, b = both["headline"].to_numpy(float), both["other"].to_numpy(float)
        rho, tau = _correlations(a, b)
        gap = np.abs(a - b)
        rows.append({"category": cat, "n": int(len(both)), "n_null": int(len(sub) - len(both)),
                     "spearman": rho, "kendall": tau,
                     "mad": float(gap.mean()) if len(both) else math.nan,
                     "share_apart": float((gap > apart).mean()) if len(both) else math.nan,
                     "mean_headline": float(a.mean()) if len(both) else math.nan,
                     "mean_other": float(b.mean()) if len(both) else math.nan})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _rationales(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(model, id) -> the judge's text, one paragraph per run (``[run k]`` marks them when there are several)."""
    out = {}
    for (model, item), g in df.sort_values("run").groupby(["model", "id"], sort=False):
        many = len(g) > 1
        out[(model, item)] = "\n\n".join((f"[run {int(r.run)}] " if many else "") + ("" if r.raw is None else str(r.raw))
                                         for r in g.itertuples())
    return out


def disagreements(pairs: pd.DataFrame, headline: pd.DataFrame, other: pd.DataFrame, eval_items: list[dict],
                  answers: dict[str, dict], k: int = 3) -> pd.DataFrame:
    """Per use case, the ``k`` answers the two judges score furthest apart, for reading side by side:
    category, model, id, question, answer, headline, other, diff, headline_raw, other_raw. Ties break by model
    order, then id, so the choice does not depend on file order. ``answers`` is ``{model: {id: record}}``."""
    ev = {str(r["id"]): r for r in eval_items}
    raw_h, raw_o = _rationales(headline), _rationales(other)
    order = {m: i for i, m in enumerate(model_order(pairs["model"]))}
    both = pairs.dropna(subset=["headline", "other"]).assign(
        gap=lambda d: d["diff"].abs(), rank=lambda d: d["model"].map(order))
    rows = []
    for cat in category_order(both["category"]):
        top = both[both["category"] == cat].sort_values(["gap", "rank", "id"], ascending=[False, True, True]).head(k)
        for r in top.itertuples():
            rows.append({"category": cat, "model": r.model, "id": r.id, "question": ev.get(r.id, {}).get("question"),
                         "answer": answers.get(r.model, {}).get(r.id, {}).get("answer"),
                         "headline": float(r.headline), "other": float(r.other), "diff": float(r.diff),
                         "headline_raw": raw_h.get((r.model, r.id)), "other_raw": raw_o.get((r.model, r.id))})
    return pd.DataFrame(rows, columns=["category", "model", "id", "question", "answer", "headline", "other", "diff",
                                       "headline_raw", "other_raw"])


def judge_agreement(study_dir: str | Path, models: list[str], judges: list[str], headline: pd.DataFrame,
                    eval_items: list[dict], answers: dict[str, dict], apart: float = APART, k: int = 3) -> dict:
    """Every other judge against the headline judge, for results.json.

    ``judges`` are the study's judge names, the headline judge first (``helpers.study.judges.study_judges``);
    the others' judgments are read from ``judgments/<name>/<model>.jsonl``, ``headline`` is the headline
    judge's long frame. Returns ``{"headline", "others", "apart", "k", "table", "disagreements"}``, where the
    rows of ``table`` and ``disagreements`` carry the other judge's name in ``judge``; with one judge
    ``others`` and both lists are empty.
    """
    tables, worst = [], []
    for name in judges[1:]:
        other = load_scores(study_dir, models, judge=name)
        pairs = paired_scores(headline, other)
        tables.append(agreement_table(pairs, apart).assign(judge=name))
        worst.append(disagreements(pairs, headline, other, eval_items, answers, k).assign(judge=name))

    def records(frames, columns):
        if not frames:
            return []
        frame = pd.concat(frames, ignore_index=True)[["judge", *columns]]
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    return {"headline": judges[0] if judges else None, "others": list(judges[1:]), "apart": apart, "k": k,
            "table": records(tables, TABLE_COLUMNS),
            "disagreements": records(worst, ["category", "model", "id", "question", "answer", "headline", "other",
                                             "diff", "headline_raw", "other_raw"])}
