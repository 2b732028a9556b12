"""The paper beside this study: its Figure 1 numbers and its claims per use case, and how ours compare.

The paper's side is data, not code: ``paper_figure1.yaml`` (the bar heights of its Figure 1 with
their provenance and reading error, and the names of the checkpoints BELLE released) and
``paper_claims.yaml`` (what its text says about each of the 12 use cases, with the section and a
short paraphrase). Both are checked when loaded: a missing use case, scale or source stops with the
file and the record named.

The comparison rule. A 270M model judged on a small built-in suite does not reach the levels of a 7B
model judged by ChatGPT, so levels are not compared; shapes are. Scales are put on a common axis,
each scale's share of the largest (the paper's 0.2M / 0.6M / 1M / 2M are 0.1 / 0.3 / 0.5 / 1), and
per use case:

* the change from the smallest to the largest scale: the paper's, which counts as a change where it
  exceeds twice its reading error (two bars each read to +-``reading_error``), against ours with its
  95% interval over items (the same joint bootstrap as the trend's), which counts where it excludes 0;
  the use case *moves the same way* when both signs are the same;
* the scale of the best score, where the paper's best bar exceeds the others by more than twice its
  reading error (else every bar within that margin counts as best): ours is the best scale and every
  scale not significantly below it (paired interval of the difference including 0); they agree when
  the two sets share a scale. Compared only where our scales are at the paper's shares;
* the shapes agree when both agree; the verdict is "cannot tell" where our interval includes 0.

The claims (``claims_comparison``) are held against the same bootstrap: "improving" against the
trend's label (``trends``), "rises until" against the change up to the named scale and the change
after it, "good early" against the change from the smallest scale on. When the evaluated models are
the paper's own released checkpoints (``released``), ``released_comparison`` compares score by score.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from helpers.analysis.bootstrap import cell_rng, joint_boot_means, percentile_ci
from helpers.analysis.changes import item_matrix
from helpers.analysis.scores import item_scores
from helpers.study.categories import CATEGORIES, category_order, display_name
from helpers.study.order import OVERALL, examples_of, model_order

FIGURE1_FILE = Path(__file__).with_name("paper_figure1.yaml")
CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")
SHAPES = ("improving", "rises_until", "good_early")
STAT_COLUMNS = ("effect_name", "effect", "effect_ci_low", "effect_ci_high", "after", "after_ci_low", "after_ci_high")
"""The numbers a claim's verdict rests on (``claims_comparison``)."""
SHARE_MATCH = 1.5
"""Our scale stands for a paper scale when their shares of the largest scale differ by less than this factor."""


def _fail(path, what: str):
    raise ValueError(f"{path}: {what}")


def _read(path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        _fail(path, f"cannot be read: {e}")
    if not isinstance(data, dict):
        _fail(path, "expected a mapping at the top")
    return data


@lru_cache(maxsize=4)
def load_figure1(path=FIGURE1_FILE) -> dict:
    """``{provenance, scales, released, scores}`` of the paper's Figure 1, checked: every one of the
    12 use cases and ``overall`` with one score in 0..1 per scale, and the provenance complete."""
    data = _read(path)
    prov = data.get("provenance") or {}
    for key in ("paper", "figure", "page", "how_read", "reading_error"):
        if prov.get(key) in (None, ""):
            _fail(path, f"provenance.{key} is missing")
    scales = data.get("scales") or []
    if len(scales) < 2 or sorted(scales) != list(scales):
        _fail(path, f"scales must be at least two increasing counts, got {scales}")
    scores = data.get("scores") or {}
    for cat in (*CATEGORIES, OVERALL):
        row = scores.get(cat)
        if row is None:
            _fail(path, f"scores.{cat} is missing")
        if len(row) != len(scales) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in row):
            _fail(path, f"scores.{cat}: expected {len(scales)} scores in 0..1, got {row}")
    released = {str(k): str(v) for k, v in (data.get("released") or {}).items()}
    if sorted(int(k) for k in released) != list(scales):
        _fail(path, f"released must name one checkpoint per scale {scales}, got {sorted(released)}")
    return {"provenance": prov, "scales": [int(s) for s in scales], "released": released,
            "scores": {c: [float(v) for v in r] for c, r in scores.items()}}


@lru_cache(maxsize=4)
def load_claims(path=CLAIMS_FILE) -> dict[str, dict]:
    """``{use case: {shape, until?, level?, section, basis}}`` for all 12 use cases, checked: each
    has a known shape, a section and a paraphrase, and ``until`` is one of Figure 1's scales."""
    data = _read(path)
    claims = data.get("claims") or {}
    scales = load_figure1()["scales"]
    for cat in CATEGORIES:
        c = claims.get(cat)
        if not isinstance(c, dict):
            _fail(path, f"claims.{cat} is missing: every one of the 12 use cases needs a claim")
        if c.get("shape") not in SHAPES:
            _fail(path, f"claims.{cat}.shape must be one of {', '.join(SHAPES)}, got {c.get('shape')!r}")
        for key in ("section", "basis"):
            if not str(c.get(key) or "").strip():
                _fail(path, f"claims.{cat}.{key} is missing: every claim needs its source")
        if c["shape"] == "rises_until" and c.get("until") not in scales[1:-1]:
            _fail(path, f"claims.{cat}.until must be one of {scales[1:-1]}, got {c.get('until')!r}")
    unknown = sorted(set(claims) - set(CATEGORIES))
    if unknown:
        _fail(path, f"claims for unknown use cases: {unknown}")
    return {cat: claims[cat] for cat in CATEGORIES}


def _fmt_scale(n: int) -> str:
    return f"{n / 1e6:g}M"


def claim_text(claim: dict) -> str:
    """The claim in a few words, e.g. "improves up to 1M, then stops (far from satisfactory)"."""
    text = {"improving": "keeps improving up to the largest scale",
            "good_early": "good already at the smallest scale, no gain after",
            "rises_until": f"improves up to {_fmt_scale(claim.get('until') or 0)}, then stops"}[claim["shape"]]
    return text + (" (far from satisfactory)" if claim.get("level") == "low" else "")


def chain_boot(df: pd.DataFrame, chain: list[str], n_boot: int, seed: int) -> dict:
    """``{category: (means, boot)}`` over the trained scales of ``chain``, plus ``overall`` (the mean
    over use cases). Drawn as ``trends.trend_labels`` draws them (same cells, same seeds), so the
    intervals here and the trend's slope rest on the same resamples."""
    items = item_scores(df)
    models = model_order(chain)
    scales = [m for m in models if m != "base"]
    out = {}
    for cat in category_order(items["category"]):
        w = item_matrix(items[items["category"] == cat], models)
        s = w[scales].to_numpy(float)
        s = s[~np.isnan(s).all(axis=1)] if s.size else s
        out[cat] = joint_boot_means(s, n_boot, cell_rng(seed, "trend", cat))
    if out:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[OVERALL] = (np.nanmean([m for m, _ in out.values()], axis=0),
                            np.nanmean([b for _, b in out.values()], axis=0))
    return out


def _change(means, boot, i: int, j: int) -> tuple[float, float, float]:
    """Change from scale ``i`` to scale ``j`` with its paired 95% interval."""
    lo, hi = percentile_ci(boot[:, j] - boot[:, i])
    return float(means[j] - means[i]), lo, hi


def _sign(lo: float, hi: float) -> int:
    return 1 if lo > 0 else -1 if hi < 0 else 0


def _knee(shares: list[float], share: float) -> int | None:
    """Index of our scale standing for the paper's scale at ``share`` of its largest (None if none is close)."""
    ratios = [max(s, share) / min(s, share) for s in shares]
    i = int(np.argmin(ratios))
    return i if ratios[i] < SHARE_MATCH else None


def shares_of(chain: list[str]) -> list[float]:
    """Each trained scale's share of the largest."""
    n = [examples_of(m) for m in model_order(chain) if m != "base"]
    return [v / max(n) for v in n] if n else []


def shape_agreement(boots: dict, chain: list[str]) -> pd.DataFrame:
    """Per use case and overall: the paper's change from the smallest to the largest scale and its
    best scale against ours (module docstring: the rule). Columns: category, name, paper (the four
    bars), paper_change, paper_sign, paper_best (shares), change, ci_low, ci_high, our_sign, our_best
    (shares: the best and those not significantly below it), shares_match, same_sign, same_best,
    verdict (agrees / disagrees / cannot tell), evidence."""
    fig = load_figure1()
    err = 2 * float(fig["provenance"]["reading_error"])
    p_shares = [s / fig["scales"][-1] for s in fig["scales"]]
    shares = shares_of(chain)
    match = len(shares) == len(p_shares) and all(abs(a - b) < 0.01 for a, b in zip(shares, p_shares))
    rows = []
    cats = [c for c in category_order(boots) if c != OVERALL] + ([OVERALL] if OVERALL in boots else [])
    for cat in cats:
        paper = fig["scores"].get(cat)
        means, boot = boots[cat]
        row = {"category": cat, "name": display_name(cat) if cat != OVERALL else "Overall", "paper": paper,
               "shares": shares, "shares_match": match}
        if paper is None or len(means) < 2 or np.isnan(means[[0, -1]]).any():
            rows.append({**row, "verdict": "cannot tell",
                         "evidence": "not in the paper's Figure 1" if paper is None else "fewer than two scales scored"})
            continue
        p_change = paper[-1] - paper[0]
        p_sign = 1 if p_change > err else -1 if p_change < -err else 0
        p_best = [s for s, v in zip(p_shares, paper) if v >= max(paper) - err]
        change, lo, hi = _change(means, boot, 0, len(means) - 1)
        o_sign = _sign(lo, hi)
        best = int(np.nanargmax(means))
        o_best = [s for i, s in enumerate(shares) if i == best or _change(means, boot, i, best)[1] <= 0]
        same_sign = None if o_sign == 0 else bool(o_sign == p_sign)
        same_best = (bool(set(np.round(p_best, 2)) & set(np.round(o_best, 2))) if match and same_sign else None)
        verdict = ("cannot tell" if same_sign is None else "agrees" if same_sign and same_best is not False
                   else "disagrees")
        ev = (f"paper {paper[0]:.3f} \u2192 {paper[-1]:.3f} ({p_change:+.3f}); ours {means[0]:.2f} \u2192 "
              f"{means[-1]:.2f} ({change:+.2f} [{lo:+.2f}, {hi:+.2f}])")
        if same_sign is None:
            ev += ": our interval includes 0"
        elif not same_sign:
            ev += ": opposite directions" if p_sign else ": the paper's change is within its reading error"
        if same_best is not None:
            ev += (f"; best at share {_shares(p_best)} in the paper, {_shares(o_best)} here"
                   + ("" if same_best else " (no common scale)"))
        rows.append({**row, "paper_change": p_change, "paper_sign": p_sign, "paper_best": p_best,
                     "change": change, "ci_low": lo, "ci_high": hi, "our_sign": o_sign, "our_best": o_best,
                     "same_sign": same_sign, "same_best": same_best, "verdict": verdict, "evidence": ev})
    cols = ["category", "name", "paper", "shares", "paper_change", "paper_sign", "paper_best", "change", "ci_low",
            "ci_high", "our_sign", "our_best", "shares_match", "same_sign", "same_best", "verdict", "evidence"]
    return pd.DataFrame(rows, columns=cols)


def _shares(values) -> str:
    return " or ".join(f"{v:g}" for v in values)


def claims_comparison(boots: dict, chain: list[str], trends: pd.DataFrame, flat_tol: float = 0.1) -> pd.DataFrame:
    """Hold each of the paper's 12 claims (``paper_claims.yaml``) against this study.

    * improving: agrees when the trend is labelled improving; disagrees when declining, or a plateau
      whose slope interval rules out a gain of ``flat_tol`` per tenfold data; else cannot tell.
    * rises_until (the paper's scale ``until``, matched to ours by share): agrees when the change up to
      it excludes 0 upwards and the change after it rules out a gain of ``flat_tol``; disagrees when the
      score falls up to it, or keeps rising after it (interval above 0); else cannot tell.
    * good_early: agrees when the change from the smallest to the largest scale rules out a gain of
      ``flat_tol``; disagrees when it is a gain (interval above 0); else cannot tell.

    Columns: category, name, claim, section, basis, label, verdict, reason, and the numbers the verdict rests on
    (``analysis.items_needed`` scales them): ``effect`` with ``effect_ci_low`` / ``effect_ci_high`` (the slope, the
    change from the smallest scale, or the change up to the paper's scale), ``effect_name``, and ``after`` with its
    interval (rises_until: the change after that scale); None where no interval was computed.
    """
    claims = load_claims()
    fig = load_figure1()
    by_trend = {r["category"]: r for r in pd.DataFrame(trends).to_dict("records")}
    shares = shares_of(chain)
    rows = []
    for cat, claim in claims.items():
        r, got = by_trend.get(cat), boots.get(cat)
        verdict, reason, label = "cannot tell", "", None
        stats = dict.fromkeys(STAT_COLUMNS)
        if r is None or got is None:
            reason = "not in this study's eval set"
        elif r["label"] == "unknown" or len(shares) < 2:
            label, reason = "unknown", "fewer than two trained scales: no change to compare"
        else:
            label, (means, boot) = r["label"], got
            last = len(means) - 1
            if claim["shape"] == "improving":
                ci = f"slope {r['slope']:+.3f}/10x data [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
                stats.update(effect_name="slope per tenfold data", effect=r["slope"], effect_ci_low=r["ci_low"],
                             effect_ci_high=r["ci_high"])
                if label == "improving":
                    verdict, reason = "agrees", f"improving: {ci}"
                elif label == "declining":
                    verdict, reason = "disagrees", f"declining: {ci}"
                elif r["ci_high"] < flat_tol:
                    verdict, reason = "disagrees", f"a gain of {flat_tol}/10x is ruled out: {ci}"
                else:
                    reason = f"a gain is not ruled out, nor shown: {ci}"
            elif claim["shape"] == "good_early":
                d, lo, hi = _change(means, boot, 0, last)
                ci = f"change from the smallest to the largest scale {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                stats.update(effect_name="change from the smallest to the largest scale", effect=d, effect_ci_low=lo,
                             effect_ci_high=hi)
                if hi < flat_tol:
                    verdict, reason = "agrees", f"no gain of {flat_tol} after the smallest scale: {ci}"
                elif lo > 0:
                    verdict, reason = "disagrees", f"still gains after the smallest scale: {ci}"
                else:
                    reason = f"a gain after the smallest scale is neither shown nor ruled out: {ci}"
            else:
                k = _knee(shares, claim["until"] / fig["scales"][-1])
                if k is None or k in (0, last):
                    reason = (f"no scale of this study stands for the paper's {_fmt_scale(claim['until'])} "
                              f"(share {claim['until'] / fig['scales'][-1]:g} of the largest; ours: "
                              f"{_shares(round(s, 2) for s in shares)})")
                else:
                    up, ulo, uhi = _change(means, boot, 0, k)
                    after, alo, ahi = _change(means, boot, k, last)
                    stats.update(effect_name=f"change up to share {shares[k]:.2g}", effect=up, effect_ci_low=ulo,
                                 effect_ci_high=uhi, after=after, after_ci_low=alo, after_ci_high=ahi)
                    ci = (f"up to share {shares[k]:.2g}: {up:+.3f} [{ulo:+.3f}, {uhi:+.3f}]; after it: "
                          f"{after:+.3f} [{alo:+.3f}, {ahi:+.3f}]")
                    if ulo > 0 and ahi < flat_tol:
                        verdict, reason = "agrees", f"rises, then no gain of {flat_tol}: {ci}"
                    elif uhi < 0:
                        verdict, reason = "disagrees", f"falls where the paper rises: {ci}"
                    elif alo > 0:
                        verdict, reason = "disagrees", f"keeps rising where the paper stops: {ci}"
                    else:
                        reason = f"neither the rise nor the stop is settled: {ci}"
        rows.append({"category": cat, "name": display_name(cat), "claim": claim_text(claim),
                     "section": claim["section"], "basis": claim["basis"], "label": label,
                     "verdict": verdict, "reason": reason, **stats})
    return pd.DataFrame(rows, columns=["category", "name", "claim", "section", "basis", "label", "verdict", "reason",
                                       *STAT_COLUMNS])


def released_models(checkpoints: dict[str, str] | None) -> dict[str, int]:
    """``{our model: the paper's scale}`` for the models that are BELLE's released checkpoints (by hub
    id, or a local folder named as the checkpoint), from the study's ``model.checkpoints``."""
    by_name = {v.lower(): int(k) for k, v in load_figure1()["released"].items()}
    by_tail = {v.rsplit("/", 1)[-1].lower(): int(k) for k, v in load_figure1()["released"].items()}
    out = {}
    for model, where in (checkpoints or {}).items():
        w = str(where).rstrip("/").lower()
        scale = by_name.get(w) or by_tail.get(w.rsplit("/", 1)[-1])
        if scale:
            out[str(model)] = scale
    return out


def released_comparison(table: list[dict], checkpoints: dict[str, str] | None) -> list[dict]:
    """Score by score against Figure 1 for the models that are the paper's released checkpoints: per use
    case and model, our mean with its 95% interval, the paper's bar, and whether the bar lies within our
    interval widened by its reading error (``reproduces``). Empty when no evaluated model is one."""
    released = released_models(checkpoints)
    if not released:
        return []
    fig = load_figure1()
    err = float(fig["provenance"]["reading_error"])
    rows = []
    for r in table:
        scale = released.get(str(r.get("model")))
        paper = fig["scores"].get(r.get("category"))
        if scale is None or paper is None or r.get("mean") is None:
            continue
        bar = paper[fig["scales"].index(scale)]
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ok = lo is not None and hi is not None and lo - err <= bar <= hi + err
        rows.append({"category": r["category"], "model": r["model"], "checkpoint": fig["released"][str(scale)],
                     "paper": bar, "mean": r["mean"], "ci_low": lo, "ci_high": hi, "diff": r["mean"] - bar,
                     "reproduces": bool(ok)})
    order = {c: i for i, c in enumerate([*CATEGORIES, OVERALL])}
    return sorted(rows, key=lambda x: (order.get(x["category"], 99), examples_of(x["model"])
                                       if x["model"] != "base" else 0))


def agreement_sentence(rows: list[dict]) -> str | None:
    """The headline: how many use cases move the same way as in the paper, with the evidence for each."""
    cats = [r for r in rows if r["category"] != OVERALL and r.get("evidence")]
    if not cats:
        return None
    same = [r for r in cats if r.get("same_sign")]
    opposite = [r for r in cats if r.get("same_sign") is False]
    unsure = [r for r in cats if r.get("same_sign") is None]
    text = (f"{len(same)} of {len(cats)} use cases move the same way as in the paper's Figure 1 from the smallest "
            "to the largest scale (same sign of change, our 95% interval excluding 0)")
    text += (": " + "; ".join(f"{r['name']} ({r['evidence']})" for r in same)) if same else ""
    if opposite:
        text += ". Not the same way: " + "; ".join(f"{r['name']} ({r['evidence']})" for r in opposite)
    if unsure:
        text += f". Cannot tell ({len(unsure)}, our interval includes 0): " + ", ".join(r["name"] for r in unsure)
    best = [r for r in cats if r.get("same_best") is not None]
    if best:
        text += (f". Of those moving the same way, {sum(bool(r['same_best']) for r in best)} of {len(best)} also have "
                 "their best score at a scale the paper's best shares (within its reading error)")
    return text + "."
