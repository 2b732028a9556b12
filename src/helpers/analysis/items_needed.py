"""What would close each open verdict: the eval items a use case at which its 95% interval would decide it.

A use case's scaling curve (``curves``), its claim in the paper (``paper.claims_comparison``) and its shape
against the paper's Figure 1 (``paper.shape_agreement``) read "cannot tell" where a 95% percentile bootstrap
interval over items does not yet lie where the rule needs it. More eval items narrow that interval; this module
says how many, per open verdict, so that a researcher knows what ``data.eval_per_category`` to set (with an eval
file of your own: how many items a use case it should hold).

The rule. Every one of these verdicts is decided by where the bounds of an interval lie against thresholds. The
bootstrap's spread of a mean over ``n`` items is ``sd / sqrt(n)``, so with the effect held at its observed value
each side of the interval keeps its distance from the effect in proportion: the lower bound at ``n`` items is
``effect - (effect - lo) * sqrt(n_now / n)`` (the upper likewise). Scaling each side separately keeps the
bootstrap's own quantiles, asymmetry included, instead of assuming 1.96 standard errors. A condition "the lower
bound is above ``t``" then holds from

    n > n_now * ((effect - lo) / (effect - t)) ** 2

and never where the effect itself is not above ``t`` (an upper bound below ``t`` the same way, with ``hi - effect``
and ``t - effect``). A verdict closes when one of its outcomes holds, and an outcome may need several conditions
at once, so the items needed are the smallest ``n`` at which the rule, evaluated in its own order, reaches an
outcome. The outcomes are those of the modules that decide, on the same statistic and the same interval:

* the scaling curve (``curves.fit_scaling``): the chosen curve's rise from the smallest to the largest scale must
  exclude 0. Where no curve predicted a left-out scale better than the flat line, the straight line in log n
  stands for the curve: its rise (the trend's slope times the decades spanned, its interval alike) must exclude 0
  and it must predict left-out scales better than the flat line (``BeatsFlat``), the means keeping the line fitted
  to them (the observed effect) and straying from it by sqrt(n_now / n) of what they do now (the observed spread,
  narrowing as the interval does). Neither rule has a "no change" outcome, so the one the issue asks for is added:
  the rise bounded within +-``BOUND`` (both bounds inside), which reads "no change of ``BOUND`` across the
  scales", not a curve. Whichever comes first counts, so an effect near 0 gets the bound and a larger one the
  exclusion of 0 (for an interval alone they cross at ``BOUND / 2``).
* the paper's claims (``paper.claims_comparison``): "improving" agrees when the trend's slope per tenfold data has
  its lower bound above the improve threshold and disagrees when its upper bound is below ``flat_tol``;
  "rises until" agrees when the change up to the paper's scale is above 0 and the change after it below
  ``flat_tol``, and disagrees when the change up to it is below 0 or the change after it above 0; "good early"
  agrees when the change from the smallest scale is below ``flat_tol`` and disagrees when it is above 0.
* the shape against Figure 1 (``paper.shape_agreement``): our change from the smallest to the largest scale must
  exclude 0; bounded within +-``BOUND`` as for the curve.

The overall rows (the mean over use cases) scale the same way with the items of every use case, so their number is
items a use case too. Numbers are rounded up to a multiple of ``STEP``; above ``CAP`` the verdict reads "more than
10,000 items a use case: the observed effect is too small to decide". No number is given where items would not
change the verdict (fewer than three trained scales for a curve, no scale of this study at the paper's scale, a use
case missing) or where the interval has no width to scale (one item a use case, or every item scoring alike).

This is a forecast at the observed effect, which is the best estimate and no promise: an effect half as large needs
four times the items, and the effect measured on more items will move. It does not rerun the bootstrap; a test
checks it against one (``tests/analysis/test_items_needed.py``: items replicated to the forecast number decide,
half as many do not). Replicated items keep the means exactly, so they check the intervals, not ``BeatsFlat``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from helpers.analysis.curves import FLAT, LOGLINEAR, fit_loglinear, loo_rmse, predict
from helpers.analysis.paper import load_claims
from helpers.study.categories import display_name
from helpers.study.order import OVERALL

BOUND = 0.05
"""An effect bounded within +-this reads "no change" where the verdict's rule has no such outcome."""
WITHIN = f"within \u00b1{BOUND:g}"
"""The outcome of a change bounded within +-``BOUND``."""
STEP = 10
"""Numbers of items are rounded up to a multiple of this."""
CAP = 10_000
"""Above this many items a use case the observed effect is called too small to decide."""
CURVE, CLAIM, SHAPE = "scaling curve", "paper's claim", "shape against Figure 1"
"""The verdicts, as the rows and sentences name them."""


@dataclass(frozen=True)
class Stat:
    """A statistic a verdict rests on: its name, observed value and 95% interval at the current items."""
    name: str
    effect: float
    lo: float
    hi: float
    short: str = ""
    """The name in a sentence (``name`` where empty)."""

    def __post_init__(self):
        if not self.short:
            object.__setattr__(self, "short", self.name)

    def ok(self) -> bool:
        return all(v is not None and math.isfinite(v) for v in (self.effect, self.lo, self.hi))

    def bounds_at(self, n: float, n_now: int) -> tuple[float, float]:
        """The interval at ``n`` items a use case, each side's distance from the effect scaled by sqrt(n_now / n)."""
        f = math.sqrt(n_now / n)
        return self.effect - (self.effect - self.lo) * f, self.effect + (self.hi - self.effect) * f


ALREADY = "already decided"
"""The note of a verdict whose interval already reaches an outcome: for an open verdict, the bound within
+-``BOUND`` that its own rule does not have."""
ABOVE, BELOW = "above", "below"
"""A condition's side: the interval's lower bound above its threshold, or its upper bound below it."""


def items_for(stat: Stat, side: str, threshold: float, n_now: int) -> float:
    """The item count (real) beyond which the interval of ``stat`` has its ``side`` bound past ``threshold``:
    ``n_now * (gap / room) ** 2``; inf where the effect itself is not past the threshold.

    >>> round(items_for(Stat("change", 0.03, -0.01, 0.07), ABOVE, 0.0, 30), 2)  # the gap 0.04 must shrink below 0.03
    53.33
    >>> items_for(Stat("change", 0.03, -0.01, 0.07), BELOW, 0.0, 30)
    inf
    """
    room = stat.effect - threshold if side == ABOVE else threshold - stat.effect
    gap = stat.effect - stat.lo if side == ABOVE else stat.hi - stat.effect
    if room <= 0:
        return math.inf
    return n_now * (max(gap, 0.0) / room) ** 2


def holds(stat: Stat, side: str, threshold: float, n: float, n_now: int) -> bool:
    """Whether the condition holds at ``n`` items a use case."""
    lo, hi = stat.bounds_at(n, n_now)
    return lo > threshold if side == ABOVE else hi < threshold


@dataclass(frozen=True)
class BeatsFlat:
    """The condition a curve's form is chosen by (``curves.select_form``): the straight line in log n predicts a
    left-out scale better than the flat line does. At ``n`` items a use case the means keep the line fitted to
    them (the observed effect) and stray from it by sqrt(n_now / n) of what they do now (the observed spread)."""
    examples: tuple
    means: tuple

    def holds(self, n: float, n_now: int) -> bool:
        x, y = np.asarray(self.examples, float), np.asarray(self.means, float)
        line = predict(LOGLINEAR, fit_loglinear(x, y), x, x.max())
        y = line + (y - line) * math.sqrt(n_now / n)
        return loo_rmse(LOGLINEAR, x, y, x.max()) < loo_rmse(FLAT, x, y, x.max())

    def items(self, n_now: int) -> float:
        """The item count (real, to within 1%) from which it holds; inf where it never does (a level line)."""
        if self.holds(n_now, n_now):
            return 0.0
        hi = 2.0 * n_now
        while not self.holds(hi, n_now):
            hi *= 2
            if hi > 1e9:
                return math.inf
        lo = hi / 2
        while hi / lo > 1.01:
            mid = math.sqrt(lo * hi)
            lo, hi = (lo, mid) if self.holds(mid, n_now) else (mid, hi)
        return hi


def _items(cond, n_now: int) -> float:
    return cond.items(n_now) if isinstance(cond, BeatsFlat) else items_for(*cond, n_now)


def _holds(cond, n: float, n_now: int) -> bool:
    return cond.holds(n, n_now) if isinstance(cond, BeatsFlat) else holds(*cond, n, n_now)


def needed(outcomes: list[tuple[str, list[tuple[Stat, str, float]]]], n_now: int) -> dict:
    """The items a use case at which the first of ``outcomes`` (label, conditions that must all hold), taken in
    the rule's order, holds.

    Returns ``needed`` (a multiple of ``STEP``, or None), ``outcome`` (the label reached there), ``more_than``
    (``CAP`` where the number would exceed it) and ``note`` (why there is no number: already decided, no spread,
    or an effect on a threshold of the rule).
    """
    stats = {c[0] for _, conds in outcomes for c in conds if not isinstance(c, BeatsFlat)}
    out = {"needed": None, "outcome": None, "more_than": None, "note": None}
    if not n_now or not stats or not all(s.ok() for s in stats):
        out["note"] = "no interval to scale"
        return out
    if all(s.hi - s.lo <= 0 for s in stats):
        out["note"] = (f"no spread to scale: every resample of {n_now} item{'s' if n_now != 1 else ''} a use case "
                       "gives the same value")
        return out
    first = _first(outcomes, n_now, n_now)
    if first is not None:
        out.update(outcome=first, note=ALREADY)
        return out
    reach = min(max(_items(c, n_now) for c in conds) for _, conds in outcomes)
    if math.isinf(reach):
        out["note"] = "at the observed effect no number of items decides (it sits on a threshold of the rule)"
        return out
    n = math.ceil((math.floor(reach) + 1) / STEP) * STEP
    if n > CAP:
        out.update(more_than=CAP, note=f"more than {CAP:,} items a use case: the observed effect is too small to decide")
        return out
    out.update(needed=n, outcome=_first(outcomes, n, n_now))
    return out


def _first(outcomes, n: float, n_now: int) -> str | None:
    for label, conds in outcomes:
        if all(_holds(c, n, n_now) for c in conds):
            return label
    return None


def _stat(name: str, effect, lo, hi, factor: float = 1.0, short: str = "") -> Stat:
    def v(x):
        return math.nan if x is None else float(x) * factor
    return Stat(name, v(effect), v(lo), v(hi), short)


def _change_outcomes(stat: Stat, rise: str, fall: str, also: tuple = ()) -> list:
    """Exclude 0 either way (with the conditions ``also``), or bound within +-BOUND (the rule has no "no change"
    outcome of its own)."""
    return [(rise, [(stat, ABOVE, 0.0), *also]), (fall, [(stat, BELOW, 0.0), *also]),
            (WITHIN, [(stat, ABOVE, -BOUND), (stat, BELOW, BOUND)])]


def curve_verdict(curve: dict, trend: dict | None) -> tuple[list, str | None]:
    """(outcomes, why not by items) for an open scaling-curve verdict (``curves`` row, the chain's ``trends`` row)."""
    if (curve.get("n_scales") or 0) < 3:
        return [], f"{curve.get('n_scales') or 0} trained scale(s): a curve needs 3, more items do not add scales"
    ex = curve.get("examples") or []
    span = f"from {min(ex):,} to {max(ex):,} examples" if ex else "across the scales"
    if curve.get("rise") is not None:
        stat = _stat(f"rise {span}", curve["rise"], curve.get("rise_ci_low"), curve.get("rise_ci_high"), short="rise")
        return _change_outcomes(stat, "a rise", "a fall"), None
    if trend is None or trend.get("slope") is None or len(ex) < 2 or len(curve.get("means") or []) != len(ex):
        return [], "no rise was measured"
    decades = math.log10(max(ex) / min(ex))
    stat = _stat(f"rise of the straight line in log n {span}", trend["slope"], trend.get("ci_low"),
                 trend.get("ci_high"), decades, short="rise")
    return _change_outcomes(stat, "a rise", "a fall", (BeatsFlat(tuple(ex), tuple(curve["means"])),)), None


def claim_verdict(claim: dict, improve: float, flat_tol: float) -> tuple[list, str | None]:
    """(outcomes, why not by items) for an open verdict on one of the paper's claims (``claims_comparison`` row)."""
    if claim.get("effect") is None:
        return [], claim.get("reason") or "no interval"
    name = claim.get("effect_name") or "effect"
    eff = _stat(name, claim["effect"], claim.get("effect_ci_low"), claim.get("effect_ci_high"),
                short="change" if name.startswith("change from") else name)
    if claim.get("after") is not None:  # rises until the paper's scale, then stops
        after = _stat("change after it", claim["after"], claim.get("after_ci_low"), claim.get("after_ci_high"),
                      short="after it")
        return [("agrees", [(eff, ABOVE, 0.0), (after, BELOW, flat_tol)]), ("disagrees", [(eff, BELOW, 0.0)]),
                ("disagrees", [(after, ABOVE, 0.0)])], None
    if load_claims()[claim["category"]]["shape"] == "improving":
        return [("agrees", [(eff, ABOVE, improve)]), ("disagrees", [(eff, BELOW, flat_tol)])], None
    return [("agrees", [(eff, BELOW, flat_tol)]), ("disagrees", [(eff, ABOVE, 0.0)])], None  # good early


def shape_verdict(shape: dict) -> tuple[list, str | None]:
    """(outcomes, why not by items) for an open shape verdict against Figure 1 (``shape_agreement`` row)."""
    if shape.get("change") is None:
        return [], shape.get("evidence") or "no change measured"
    stat = _stat("change from the smallest to the largest scale", shape["change"], shape.get("ci_low"),
                 shape.get("ci_high"), short="change")
    return _change_outcomes(stat, "a rise", "a fall"), None


COLUMNS = ["category", "name", "verdict", "statistic", "n_now", "needed", "outcome", "more_than", "note", "text"]
"""The columns of ``open_verdicts`` (a ``strategy`` column leads in a strategy grid)."""


def open_verdicts(res: dict) -> list[dict]:
    """One row per open verdict of ``results.json``'s content (``trends``, ``curves``, ``paper_comparison``,
    ``paper_shapes``, ``settings``): what it rests on and the items a use case that would decide it.

    Columns: (strategy,) category, name, verdict (``CURVE``, ``CLAIM`` or ``SHAPE``), statistic (its name, observed
    value and 95% interval), n_now (items a use case now), needed (items a use case: the ``eval_per_category``
    to set; None where no number), outcome (where the verdict would land: "a rise", "agrees", "within +-0.05"...),
    more_than (``CAP`` where the number exceeds it), note (why there is no number) and text (a sentence piece).
    """
    s = res.get("settings") or {}
    improve, flat_tol = s.get("improve", 0.02), s.get("flat_tol", 0.1)
    trends = {(r.get("strategy"), r["category"]): r for r in res.get("trends") or []}
    n_items = {}
    for (st, cat), r in trends.items():
        if cat != OVERALL and r.get("n_items"):
            n_items.setdefault(st, {})[cat] = int(r["n_items"])

    def n_now(st, cat):
        per = n_items.get(st) or {}
        if cat == OVERALL:
            return round(sum(per.values()) / len(per)) if per else 0
        return per.get(cat, 0)

    todo = []
    for c in res.get("curves") or []:
        if c.get("verdict") in (None, "cannot tell"):
            todo.append((c, CURVE, curve_verdict(c, trends.get((c.get("strategy"), c["category"])))))
    for c in res.get("paper_comparison") or []:  # a claim on a use case this study does not evaluate is not its verdict
        if c.get("verdict") == "cannot tell" and (c.get("strategy"), c["category"]) in trends:
            todo.append((c, CLAIM, claim_verdict(c, improve, flat_tol)))
    for c in res.get("paper_shapes") or []:
        if c.get("verdict") == "cannot tell":
            todo.append((c, SHAPE, shape_verdict(c)))
    rows = []
    for src, verdict, (outcomes, why) in todo:
        st, cat = src.get("strategy"), src["category"]
        n0 = n_now(st, cat)
        got = needed(outcomes, n0) if outcomes else {"needed": None, "outcome": None, "more_than": None, "note": why}
        stats = list(dict.fromkeys(c[0] for _, conds in outcomes for c in conds if not isinstance(c, BeatsFlat)))
        row = {"category": cat, "name": display_name(cat), "verdict": verdict,
               "statistic": "; ".join(f"{x.name} {x.effect:+.3f} [{x.lo:+.3f}, {x.hi:+.3f}]" for x in stats),
               "n_now": n0, **got}
        row["text"] = piece(row, stats)
        rows.append(({"strategy": st} if "strategy" in src else {}) | row)
    return rows


def piece(row: dict, stats: list[Stat]) -> str:
    """The verdict's part of the findings, e.g. "430 items a use case would decide the scaling curve at the observed
    rise -0.030"."""
    what, observed = f"the {row['verdict']}", " and ".join(f"{x.short} {x.effect:+.3f}" for x in stats)
    if row["needed"] is not None:
        n = f"{row['needed']:,} items a use case"
        if row["outcome"] == WITHIN:
            return f"{n} would bound {what}'s {observed} within \u00b1{BOUND:g}"
        lands = f" (it would {row['outcome'].removesuffix('s')})" if row["verdict"] == CLAIM else ""
        return f"{n} would decide {what} at the observed {observed}{lands}"
    if row["note"] == ALREADY:
        if row["outcome"] == WITHIN:
            return f"{what}'s {observed} is already within \u00b1{BOUND:g}"
        return f"{what}: its interval already reaches '{row['outcome']}'"
    if row["more_than"] is not None:
        return f"more than {row['more_than']:,} items a use case: the observed {observed} is too small to decide {what}"
    return f"{what}: {row['note']}"


def _also(r: dict) -> str:
    if r["needed"] is None:
        return f"the {r['verdict']}: more than {r['more_than']:,}"
    lands = f", {r['outcome']}" if r["verdict"] == CLAIM or r["outcome"] == WITHIN else ""
    return f"the {r['verdict']}: {r['needed']:,}{lands}"


def sentences(rows: list[dict]) -> list[str]:
    """The findings' sentences on what would close the open verdicts of one chain: per use case, the verdict that
    needs the most items (what to set to decide them all) with its observed effect, and the others' numbers; the
    setting that decides every one of them; those already bounded within +-``BOUND``; those more items would not
    close, and why."""
    if not rows:
        return []
    by_items = [r for r in rows if r["needed"] is not None or r["more_than"] is not None]
    bounded = [r for r in rows if r["note"] == ALREADY]
    other = [r for r in rows if r not in by_items and r not in bounded]
    out = []
    if by_items:
        parts = []
        for name in dict.fromkeys(r["name"] for r in by_items):
            mine = sorted((r for r in by_items if r["name"] == name),
                          key=lambda r: -(r["needed"] if r["needed"] is not None else math.inf))
            parts.append(f"{name}: {mine[0]['text']}" + (f" ({'; '.join(_also(r) for r in mine[1:])})"
                                                          if mine[1:] else ""))
        numbers = [r["needed"] for r in by_items if r["needed"] is not None]
        text = ("More eval items would close these open verdicts, at the observed effect and spread (the bootstrap's "
                f"95% interval narrowing as 1/sqrt(items)): {'; '.join(parts)}.")
        if numbers:
            text += (f" data.eval_per_category: {max(numbers):,} would decide "
                     + ("all of them" if len(numbers) == len(by_items) else f"the {len(numbers)} with a number") + ".")
        out.append(text)
    if bounded:
        out.append("Open verdicts whose interval already rules out a change of more than "
                   f"{BOUND:g} either way (their rule has no such outcome, so they still read cannot tell): "
                   + "; ".join(f"{r['name']} ({r['text']})" for r in bounded) + ".")
    if other:
        groups = list(dict.fromkeys((r["verdict"], r["note"]) for r in other))
        out.append("Open verdicts that more eval items would not close: " + "; ".join(
            f"the {verdict} of " + ", ".join(r["name"] for r in other if (r["verdict"], r["note"]) == (verdict, note))
            + f" ({note})" for verdict, note in groups) + ".")
    return out


def per_use_case(rows: list[dict]) -> dict[str, dict]:
    """``{category: {"needed", "more_than", "parts"}}`` over every open verdict of the use case (every strategy):
    the most items a use case any of them needs (what to set to decide them all), whether one needs more than
    ``CAP``, and one short part per verdict ("curve 430", "claim > 10,000", "shape: not by items")."""
    tags = {CURVE: "curve", CLAIM: "claim", SHAPE: "shape"}
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(r["category"], {"needed": None, "more_than": None, "parts": []})
        tag = (f"{r['strategy']} " if r.get("strategy") else "") + tags[r["verdict"]]
        if r["note"] == ALREADY:
            d["parts"].append(f"{tag}: {r['outcome']}")
        elif r["needed"] is not None:
            d["needed"] = max(d["needed"] or 0, r["needed"])
            d["parts"].append(f"{tag} {r['needed']:,}")
        elif r["more_than"] is not None:
            d["more_than"] = r["more_than"]
            d["parts"].append(f"{tag} > {r['more_than']:,}")
        else:
            d["parts"].append(f"{tag}: not by items")
    return out
