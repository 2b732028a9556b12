"""Which training data each use case's score depends on: the mixture models against the full mixture.

Every mixture model (``data.mixture``, ``helpers.data.mixture``) trained on as many examples as the full
mixture (the study's largest scale), with use cases left out, alone or weighted otherwise. Set against the
full mixture on the same eval items, its change per eval use case says what the data it lost (or gained)
did for that use case. With ``leave_one_out: all`` the changes form the **transfer matrix** of Dong et al.
(2023, arXiv:2310.05492): rows the training use case removed, columns the eval use case.

Reading a cell of row *math*, column *code*: the score on code items of the model trained without math
data, minus the full mixture's, on the same items. Negative: math data helped code (transfer; or, on the
diagonal, math data helped math, as one expects). Positive: without math data code did better (interference:
the math data, or the share of the budget it took, hurt code).

The statistics, per cell
    * ``diff``: the mean over items of the paired difference (mixture minus full mixture), and its 95%
      percentile bootstrap interval over items (``helpers.analysis.bootstrap``; each cell seeded by its name).
    * ``p``: a one-sample t-test of the per-item differences against 0 (scipy); all differences 0 -> 1.
    * ``q``: Benjamini-Hochberg adjusted over a family of cells (scipy's ``false_discovery_control``): the
      diagonal is one family (12 tests, where effects are expected), the off-diagonal cells another (132 with
      every use case left out), each further mixture's row one of its own. A 12 x 12 matrix at a plain 95%
      would mark about 7 null cells by chance; controlling the false discovery rate at 5% keeps the marked
      cells to those that hold up.
    * ``significant``: ``q < ALPHA`` and the bootstrap interval excludes 0 (both, so a marked cell never shows an
      interval across 0). The ``overall`` cell of a row (the mean of its use cases' changes) is one test per row,
      marked by its interval alone.
    * ``items_needed``: for a cell that is not significant, the items per use case at which a change of its
      size (at least ``MIN_EFFECT``) would have a 95% interval clear of 0, from the width the interval has
      now: widths shrink as one over the square root of the items, so ``n * (half width / effect)**2``.
      It is a planning figure, not a promise: the spread of the differences is estimated from these items.

A mixture whose subset equals the full mixture (it reweighs a use case that has no item there) is marked
``same_as_reference``: its changes are 0 by construction and no sentence reads them as a finding.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from helpers.analysis.bootstrap import boot_means, cell_rng, percentile_ci
from helpers.analysis.changes import item_matrix
from helpers.analysis.scores import item_scores, load_scores, score_table
from helpers.study.categories import CATEGORIES, category_order, display_name
from helpers.study.files import read_json
from helpers.study.judges import judgments_path
from helpers.study.order import OVERALL

ALPHA = 0.05
"""The false discovery rate at which a cell is marked significant."""

MIN_EFFECT = 0.05
"""The smallest change ``items_needed`` plans for: a cell whose change is smaller is planned at this size."""

COLUMNS = ["model", "kind", "removed", "category", "diagonal", "n_pairs", "reference_mean", "mixture_mean", "diff",
           "ci_low", "ci_high", "p", "q", "family", "significant", "items_needed"]


def mixture_kind(model: str) -> tuple[str, str | None]:
    """(kind, use case) of a mixture model's name: ``("without", "math")``, ``("only", "code")`` or
    ``("weights", None)``.

    >>> mixture_kind("mix-without-open_qa"), mixture_kind("mix-only-code"), mixture_kind("mix-math_x2")
    (('without', 'open_qa'), ('only', 'code'), ('weights', None))
    """
    name = model.removeprefix("mix-")
    for kind in ("without", "only"):
        use_case = name.removeprefix(f"{kind}-")
        if use_case != name and use_case in CATEGORIES:
            return kind, use_case
    return "weights", None


def row_label(model: str) -> str:
    """How a matrix row reads: ``without Math``, ``only Code``, or the mixture's own name."""
    kind, use_case = mixture_kind(model)
    return f"{kind} {display_name(use_case)}" if use_case else model.removeprefix("mix-")


def items_needed(n: int, ci_low: float, ci_high: float, diff: float, min_effect: float = MIN_EFFECT) -> int | None:
    """Items per use case at which a change of ``diff``'s size (at least ``min_effect``) would have a 95% interval
    clear of 0, from an interval ``[ci_low, ci_high]`` over ``n`` items (widths shrink as 1 / sqrt(items)).
    None where the interval has no width (every item scored the same under both models: more items of the
    same kind would not move it).

    >>> items_needed(20, -0.10, 0.10, 0.02)   # half width 0.10, planned for 0.05: 4 times the items
    80
    >>> items_needed(20, -0.05, 0.25, 0.10)   # half width 0.15 for a change of 0.10
    45
    """
    half = (ci_high - ci_low) / 2
    if not n or not math.isfinite(half) or half <= 0:
        return None
    effect = max(abs(diff) if math.isfinite(diff) else 0.0, min_effect)
    return max(n + 1, math.ceil(n * (half / effect) ** 2))


def _p_value(d: np.ndarray) -> float:
    """Two-sided one-sample t-test of ``d`` against 0; 1 where every difference is 0, the sign test's p where every
    difference is the same (no spread to scale by), NaN under two items.

    >>> _p_value(np.zeros(20)), _p_value(np.ones(5)), round(_p_value(np.array([0.2, 0.3, 0.1, 0.25])), 4)
    (1.0, 0.0625, 0.0156)
    """
    if len(d) < 2:
        return math.nan
    if not np.any(d):
        return 1.0
    if np.all(d == d[0]):  # every item moved the same way by as much: no spread for t; the exact sign test
        return float(min(1.0, 2 * 0.5 ** len(d)))
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def _adjust(p: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p, float)
    q = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q.tolist()


def transfer_cells(df: pd.DataFrame, reference: str, mixtures: list[str], n_boot: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """Every mixture model against ``reference`` per eval use case and ``overall`` (the mean of the use cases'
    changes, stratified bootstrap): the columns of ``COLUMNS`` (see the module docstring). ``df`` is the long
    frame of ``load_scores`` over the reference and the mixtures."""
    items = item_scores(df)
    cats = category_order(items["category"])
    rows = []
    for m in mixtures:
        kind, removed = mixture_kind(m)
        boots, diffs = [], []
        for cat in cats:
            w = item_matrix(items[items["category"] == cat], [reference, m]).dropna()
            d = (w[m] - w[reference]).to_numpy(float)
            boot = boot_means(d, n_boot, cell_rng(seed, "transfer", cat, m))
            lo, hi = percentile_ci(boot)
            mean = float(d.mean()) if len(d) else math.nan
            if len(d):
                boots.append(boot)
                diffs.append(mean)
            rows.append({"model": m, "kind": kind, "removed": removed, "category": cat,
                         "diagonal": kind == "without" and cat == removed, "n_pairs": len(d),
                         "reference_mean": float(w[reference].mean()) if len(d) else math.nan,
                         "mixture_mean": float(w[m].mean()) if len(d) else math.nan,
                         "diff": mean, "ci_low": lo, "ci_high": hi, "p": _p_value(d)})
        lo, hi = percentile_ci(np.mean(boots, axis=0)) if boots else (math.nan, math.nan)
        rows.append({"model": m, "kind": kind, "removed": removed, "category": OVERALL, "diagonal": False,
                     "n_pairs": int(sum(r["n_pairs"] for r in rows if r["model"] == m)),
                     "reference_mean": math.nan, "mixture_mean": math.nan,
                     "diff": float(np.mean(diffs)) if diffs else math.nan, "ci_low": lo, "ci_high": hi, "p": math.nan})
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("q", "family", "significant", "items_needed")])
    # the families of the false discovery rate: the diagonal, the off-diagonal of the leave-one-out rows, each other row
    out["family"] = np.where(out["diagonal"], "diagonal",
                             np.where(out["kind"] == "without", "off-diagonal", out["model"]))
    out.loc[out["category"] == OVERALL, "family"] = "overall"
    out["q"] = math.nan
    for fam, idx in out.groupby("family").groups.items():
        if fam != "overall":
            out.loc[idx, "q"] = _adjust(out.loc[idx, "p"].tolist())
    excludes = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    overall = out["category"] == OVERALL
    out["significant"] = (excludes & (out["q"] < ALPHA)) | (overall & excludes)
    out["items_needed"] = pd.array([None if sig else items_needed(r.n_pairs, r.ci_low, r.ci_high, r.diff)
                                    for sig, r in zip(out["significant"], out.itertuples())], dtype="Int64")
    return out[COLUMNS]


def mixture_results(study_dir, reference: str, mixtures: list[str], examples: int, n_boot: int = 1000,
                    seed: int = 0, same_as_reference: list[str] | None = None) -> dict:
    """The ``mixture`` section of ``results.json``: ``reference`` (the full mixture), ``examples`` (each model's
    training examples), ``models``, ``labels`` (row labels), ``same_as_reference``, ``table`` (each mixture's mean
    per use case with its 95% CI, as ``score_table``), ``cells`` (``transfer_cells``), ``families`` (cells per
    false-discovery family) and ``settings``."""
    df = load_scores(study_dir, [reference, *mixtures], examples={m: examples for m in mixtures})
    cells = transfer_cells(df, reference, mixtures, n_boot=n_boot, seed=seed)
    same = list(same_as_reference or [])
    if same:  # 0 by construction: never marked, never planned for
        cells["significant"] = cells["significant"] & ~cells["model"].isin(same)
        cells.loc[cells["model"].isin(same), "items_needed"] = pd.NA
    table = score_table(df[df["model"].isin(mixtures)], n_boot=n_boot, seed=seed)
    return {"reference": reference, "examples": examples, "models": list(mixtures),
            "labels": {m: row_label(m) for m in mixtures}, "same_as_reference": same,
            "table": table, "cells": cells,
            "families": {f: int(n) for f, n in cells[cells["category"] != OVERALL].groupby("family").size().items()},
            "settings": {"alpha": ALPHA, "min_effect": MIN_EFFECT, "ci": 0.95, "n_boot": n_boot,
                         "test": "one-sample t-test of the per-item differences, Benjamini-Hochberg per family"}}


def study_mixture(study_dir, mixtures: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """``mixture_results`` for the judged ``mixtures`` of a study, against the full mixture the data stage recorded
    (``data_stats.json``: ``mixtures.reference``, the subsets' sizes). Without mixtures: ``{}``; with the full
    mixture not judged: ``{"note": why}``."""
    if not mixtures:
        return {}
    path = Path(study_dir) / "data_stats.json"
    recorded = (read_json(path) if path.exists() else {}).get("mixtures") or {}
    reference = recorded.get("reference")
    if reference is None:
        return {"note": f"{path} records no full mixture (rerun the data stage)"}
    if not judgments_path(Path(study_dir), reference, None).exists():
        return {"note": f"the full mixture {reference} is not judged yet, so no mixture can be set against it"}
    models = recorded.get("models") or {}
    same = [m for m in mixtures if (models.get(m) or {}).get("same_as_reference")]
    examples = read_json(path)["subsets"][reference]["n"]
    return mixture_results(study_dir, reference, mixtures, examples, n_boot=n_boot, seed=seed, same_as_reference=same)


# ------------------------------------------------------------------------------------------ sentences

def _ci(r: dict) -> str:
    return f"{abs(r['diff']):.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"


def _moves(r: dict) -> str:
    return f"{'falls' if r['diff'] < 0 else 'rises'} by {_ci(r)}"


def _others(rows: list[dict]) -> str:
    return ", ".join(f"{display_name(r['category'])} {r['diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
                     for r in rows)


def _within(r: dict, bound: float = MIN_EFFECT) -> bool:
    """The cell's 95% interval lies within +-``bound``: no change of that size, a settled null."""
    return r.get("ci_low") is not None and -bound <= r["ci_low"] and r["ci_high"] <= bound


def transfer_sentences(mix: dict) -> list[str]:
    r"""The findings of the mixture axis, diagonal first: for each use case left out whose own items moved, by how
    much and whether anything else moved; the use cases whose own data made no difference beyond ``MIN_EFFECT``
    (a settled null), and those where the interval is too wide to tell, with the items that would tell; then
    every significant off-diagonal cell as transfer (its data helped another use case) or interference (it hurt
    one), and what the other cells can and cannot rule out; then each other mixture. Empty without mixture
    results.

    >>> cells = [{"model": "mix-without-math", "kind": "without", "removed": "math", "category": c,
    ...           "diagonal": c == "math", "n_pairs": 20, "diff": d, "ci_low": lo, "ci_high": hi,
    ...           "significant": s, "items_needed": None if s else 90}
    ...          for c, d, lo, hi, s in (("math", -0.3, -0.42, -0.19, True), ("code", 0.01, -0.08, 0.1, False))]
    >>> found = transfer_sentences({"reference": "192", "examples": 192, "models": ["mix-without-math"],
    ...                              "cells": cells, "same_as_reference": []})
    >>> for sentence in found:
    ...     print(sentence.replace("; ", ";\n").replace(": ", ":\n").replace(", and", ",\nand"))
    Without Math data (192 examples, the other use cases refilled), Math falls by 0.30 [-0.42, -0.19] against the full mixture;
    no other use case moves.
    No transfer or interference between use cases is separable here:
    none of the 1 off-diagonal cells is significant at a 5% false discovery rate;
    their intervals are about ±0.09 wide with 20 items per use case,
    and about 65 items per use case would tell a change of 0.05 (the median cell) from none.
    """
    cells = [r for r in mix.get("cells") or [] if r["category"] != OVERALL]
    if not cells:
        return []
    same = set(mix.get("same_as_reference") or [])
    n, ref = mix.get("examples"), mix.get("reference")
    out = []
    loo = [m for m in mix.get("models") or [] if mixture_kind(m)[0] == "without" and m not in same]
    unsettled, settled = [], []
    for m in loo:
        row = [r for r in cells if r["model"] == m]
        diag = next((r for r in row if r["diagonal"]), None)
        moved = [r for r in row if not r["diagonal"] and r["significant"]]
        if diag is None:
            continue
        if not diag["significant"]:
            (settled if _within(diag) else unsettled).append(diag)
            continue
        text = (f"Without {display_name(diag['removed'])} data ({n} examples, the other use cases refilled), "
                f"{display_name(diag['category'])} {_moves(diag)} against the full mixture")
        out.append(text + ("; also moving: " + _others(moved) if moved else "; no other use case moves") + ".")
    if settled:
        out.append(f"No difference beyond \u00b1{MIN_EFFECT} from a use case's own data (95% interval within it): "
                   + "; ".join(f"{display_name(r['category'])} {r['diff']:+.2f} [{r['ci_low']:+.2f}, "
                               f"{r['ci_high']:+.2f}]" for r in settled) + ".")
    if unsettled:
        out.append("Cannot separate the effect of a use case's own data on its own items (not significant at a "
                   f"{ALPHA:.0%} false discovery rate; the change with its 95% interval, then the items per use case "
                   f"that would tell a change of that size, at least {MIN_EFFECT}, from none): " + "; ".join(
                       f"{display_name(r['category'])} {r['diff']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] "
                       f"over {r['n_pairs']} items, "
                       + (f"about {int(r['items_needed']):,} items" if r.get("items_needed") else
                          "every item scored the same under both models") for r in unsettled) + ".")
    off = [r for r in cells if r["model"] in loo and not r["diagonal"]]
    hits = [r for r in off if r["significant"]]
    for r in hits:
        source, target = display_name(r["removed"]), display_name(r["category"])
        if r["diff"] < 0:
            out.append(f"Transfer: {source} data helps {target}; without it {target} {_moves(r)}.")
        else:
            out.append(f"Interference: {source} data hurts {target}; without it {target} {_moves(r)}.")
    rest = [r for r in off if not r["significant"] and r.get("ci_low") is not None]
    if rest:
        text = (f"The other {len(rest)} off-diagonal cells show no significant change" if hits else
                f"No transfer or interference between use cases is separable here: none of the {len(off)} "
                f"off-diagonal cells is significant at a {ALPHA:.0%} false discovery rate")
        half = float(np.median([(r["ci_high"] - r["ci_low"]) / 2 for r in rest]))
        items = int(np.median([r["n_pairs"] for r in rest]))
        if half <= MIN_EFFECT:
            text += f"; their intervals are about \u00b1{half:.2f} wide, so any change there is smaller than that"
        else:
            text += (f"; their intervals are about \u00b1{half:.2f} wide with {items} items per use case, and about "
                     f"{items_needed(items, -half, half, MIN_EFFECT):,} items per use case would tell a change of "
                     f"{MIN_EFFECT} (the median cell) from none")
        out.append(text + ".")
    for m in (m for m in mix.get("models") or [] if m not in loo and m not in same):
        row = [r for r in cells if r["model"] == m]
        moved = [r for r in row if r["significant"]]
        out.append(f"{m} ({row_label(m)}, {n} examples) against the full mixture {ref}: "
                   + (f"significant changes in {_others(moved)}; no other use case moves." if moved else
                      "no use case moves significantly."))
    if same:
        out.append(f"{', '.join(sorted(same))}: the same items as the full mixture (the use case it reweighs has no "
                   "item there), so its changes are 0 by construction, not a finding.")
    return out
