"""Per-use-case scores, their uncertainty, and how they change with the amount of data.

Pure functions over tidy pandas frames; only ``load_scores``, ``load_answers``, ``write_results`` and
``run`` (the stage: ``write_results`` with the study's settings) touch files. The one frame everything
starts from is the *long* frame of ``load_scores``: one row per (model, item, judge run).

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
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.analysis.agreement import APART, judge_agreement
from helpers.analysis.changes import per_strategy, scale_changes, strategy_comparison
from helpers.analysis.curves import CEILING_SHARE, EXTRAPOLATE, SHARE_REPLICATES, scaling_curves
from helpers.analysis.findings import findings
from helpers.analysis.items_needed import open_verdicts, per_use_case
from helpers.analysis.paper import (
    agreement_sentence,
    chain_boot,
    claims_comparison,
    load_figure1,
    released_comparison,
    shape_agreement,
)
from helpers.analysis.scores import (
    code_execution,
    item_scores,
    judge_spread,
    judge_usage,
    load_answers,
    load_scores,
    missing_judgments,
    score_table,
)
from helpers.analysis.transfer import study_mixture
from helpers.analysis.trends import trend_labels
from helpers.study.categories import DISPLAY_NAMES, category_order, display_name
from helpers.study.config import STRATEGIES, StudyConfig, is_mixture
from helpers.study.files import atomic_write_text, read_json, read_jsonl, write_json
from helpers.study.judges import study_judges
from helpers.study.order import OVERALL, OVERALL_ITEMS, model_order, strategy_groups, strategy_of


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
                  improve: float = 0.02, decline: float = 0.02, flat_tol: float = 0.1, k: int = 3,
                  error_model: str | None = None, judges: list[str] | None = None,
                  checkpoints: dict[str, str] | None = None, judge_runs: dict | None = None) -> dict:
    """Compute everything and write ``results.csv`` and ``results.json`` atomically.

    ``results.csv`` is the tidy table (category, model, examples, mean, ci_low,
    ci_high, n, n_null), including the ``overall`` (headline, mean over
    categories) and ``overall_items`` rows, the mixture models' (``mix-<name>``) after the others.
    Mixture models are analysed against the full mixture only (``results.json``'s ``mixture``:
    ``helpers.analysis.transfer``), never along a scale chain. ``results.json`` holds the same table
    and the analyses around it (see the keys of the returned dict). Error analysis
    uses ``error_model`` (default: the largest scale). ``judges`` names the study's
    judges, the headline judge first (``helpers.study.judges.study_judges``); every
    table is the headline judge's, and ``judge_agreement`` sets each other judge
    against it (``helpers.analysis.agreement``). ``checkpoints`` is the study's ``model.checkpoints``: where
    it maps models to BELLE's released checkpoints, ``released_comparison`` sets their scores against the
    paper's Figure 1. ``judge_runs`` (``{"runs", "temperature"}`` of the headline judge) says what the
    run-to-run spread measures. Returns the JSON content.
    """
    study_dir = Path(study_dir)
    mixtures = [m for m in models if is_mixture(m)]  # the mixture axis: against the full mixture (analysis.transfer)
    models = model_order(m for m in models if not is_mixture(m))
    df = load_scores(study_dir, models)
    eval_items = read_jsonl(study_dir / "eval.jsonl")
    table = score_table(df, n_boot=n_boot, seed=seed)
    trends = per_strategy(df, models, lambda d, _: trend_labels(d, improve=improve, decline=decline,
                                                                 n_boot=n_boot, seed=seed))
    boots: dict[tuple, dict] = {}

    def boot_of(d, chain):  # one bootstrap per chain, shared by the claims and the shape comparison
        if tuple(chain) not in boots:
            boots[tuple(chain)] = chain_boot(d, chain, n_boot, seed)
        return boots[tuple(chain)]

    comparison = per_strategy(df, models, lambda d, chain: claims_comparison(
        boot_of(d, chain), chain,
        trends[trends["strategy"] == strategy_of(chain[-1])] if "strategy" in trends else trends, flat_tol))
    shapes = per_strategy(df, models, lambda d, chain: shape_agreement(boot_of(d, chain), chain))
    spread = judge_spread(df)
    changes = per_strategy(df, models, lambda d, chain: scale_changes(d, n_boot=n_boot, seed=seed, models=chain))
    versus = strategy_comparison(df, n_boot=n_boot, seed=seed)
    curves = per_strategy(df, models, lambda d, chain: scaling_curves(d, n_boot=n_boot, seed=seed, models=chain))
    missing = missing_judgments(df, eval_items)
    for m, n in missing.items():
        if n:
            warnings.warn(f"{study_dir / 'judgments' / (m + '.jsonl')}: {n} eval items have no judgment")
    error_model = error_model or models[-1]
    others = list((judges or [])[1:])
    answers = load_answers(study_dir, list(dict.fromkeys([error_model, "base"] + (models if others else []))))
    low = lowest_items(df, answers, eval_items, error_model, k=k)
    names = judges or [", ".join(sorted({str(j) for j in df["judge"].dropna()})) or "headline"]
    agreement = judge_agreement(study_dir, models, names, df, eval_items, answers, APART, k)

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
        "paper_shapes": _records(shapes),
        "paper_figure1": _clean(load_figure1()),  # a copy: the loaded file is cached
        "released_comparison": _clean(released_comparison(_records(table[cols]), checkpoints)),
        "judge_runs": _clean(judge_runs or {}),
        "judge_spread": _records(spread),
        "curves": _records(curves),
        "changes": _records(changes),
        "strategies": sorted({st for m in models if (st := strategy_of(m))}, key=STRATEGIES.index),
        "strategy_comparison": _records(versus),
        "identical_subsets": (read_json(study_dir / "data_stats.json").get("identical_subsets", [])
                              if (study_dir / "data_stats.json").exists() else []),
        "null_counts": null_counts,
        "judge_usage": judge_usage(study_dir, models, others),
        "judge_agreement": _clean(agreement),
        "code_execution": code_execution(study_dir, models),
        "missing_judgments": missing,
        "error_analysis": {"model": error_model, "k": k},
        "lowest_items": _records(low),
        "settings": {"n_boot": n_boot, "seed": seed, "ci": 0.95, "improve": improve, "decline": decline,
                     "flat_tol": flat_tol, "slope_unit": "score per tenfold training examples",
                     "curves": {"forecast_at": f"{EXTRAPOLATE}x the largest scale", "ceiling_share": CEILING_SHARE,
                                "saturating_needs": f"to beat log-linear in most of {SHARE_REPLICATES} item resamples",
                                "curve_needs": "a rise across the trained scales whose 95% CI excludes 0"}},
    }
    result["paper_headline"] = [f"{st}: {text}" if st else text for st in strategy_groups(models)
                                if (text := agreement_sentence([r for r in result["paper_shapes"]
                                                                if r.get("strategy") == st]))]
    mix = study_mixture(study_dir, mixtures, n_boot=n_boot, seed=seed)
    result["mixture"] = {**mix, **{k: _records(mix[k]) for k in ("table", "cells") if k in mix}}
    result["items_needed"] = open_verdicts(result)
    result["findings"] = findings(result)
    csv = pd.concat([table[cols], mix["table"][cols]]) if "table" in mix else table[cols]
    atomic_write_text(study_dir / "results.csv", csv.to_csv(index=False))
    write_json(study_dir / "results.json", result)
    return result


def run(cfg: StudyConfig, study_dir: str | Path, models: list[str] | None = None) -> dict:
    """The stage: ``write_results`` over ``models`` (default: every model of the study that has the headline
    judge's judgments; the others are named as left out) with the study's judges, the headline judge first,
    and its ``analysis``, ``judge`` and ``model.checkpoints`` settings. Returns the JSON content."""
    study_dir = Path(study_dir)
    if models is None:
        models = [m for m in cfg.models if (study_dir / "judgments" / f"{m}.jsonl").exists()]
        missing = sorted(set(cfg.models) - set(models))
        if missing:
            print(f"not judged yet, left out: {missing}")
    return write_results(study_dir, models, n_boot=cfg.analysis.n_boot, improve=cfg.analysis.improve_threshold,
                         judges=[j.name for j in study_judges(cfg)], checkpoints=cfg.model.checkpoints,
                         judge_runs={"runs": cfg.judge.runs, "temperature": cfg.judge.temperature})


def pretty_table(table, items_needed: list[dict] | None = None) -> pd.DataFrame:
    """The score table for reading: rows in the paper's words (Overall last), one
    column per model, cells ``"0.62 [0.55, 0.70] n=30"`` (n: items scored). Takes ``score_table`` output
    or the ``table`` records of ``results.json``; with ``items_needed`` (``results.json``'s) a last column
    gives the eval items a use case that would decide its open verdicts (``items_needed.per_use_case``)."""
    t = pd.DataFrame(table)
    cats = [c for c in category_order(t["category"]) if c not in (OVERALL, OVERALL_ITEMS)]
    cats += [c for c in (OVERALL, OVERALL_ITEMS) if (t["category"] == c).any()]
    models = model_order(t["model"])

    def cell(r):
        if r is None or pd.isna(r["mean"]):
            return "-"
        return f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] n={int(r['n'])}"

    idx = {(r["category"], r["model"]): r for r in t.to_dict("records")}
    out = pd.DataFrame([[cell(idx.get((c, m))) for m in models] for c in cats],
                       index=[display_name(c) for c in cats],
                       columns=["base (0)" if m == "base" else m for m in models])
    if items_needed is not None:
        per = per_use_case(items_needed)

        def needed(c):
            d = per.get(c)
            if c == OVERALL_ITEMS or d is None:
                return "" if c == OVERALL_ITEMS else "decided"
            head = f"{d['needed']:,}" if d["needed"] else f"> {d['more_than']:,}" if d["more_than"] else "-"
            return f"{head} ({'; '.join(d['parts'])})"
        out["items a use case to decide"] = [needed(c) for c in cats]
    out.index.name = "use case"
    return out
