"""The findings in plain sentences, for the top of the report: what a reader came to learn, first.

Built from ``results.json`` content only (trends, curves, the comparisons with the paper), so the report and
the notebook say the same thing and every number in a sentence can be found in a table below it.
Each claim carries its interval: "keeps improving" is the slope's 95% CI above the improve
threshold, "flat" a plateau whose CI lies within +-``flat_tol``; what is neither is "not settled".
In a strategy grid every sentence starts with its strategy.
"""
from __future__ import annotations

from helpers.analysis.items_needed import sentences as items_sentences
from helpers.analysis.paper import agreement_sentence
from helpers.analysis.transfer import transfer_sentences
from helpers.study.categories import display_name
from helpers.study.order import OVERALL


def _f(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _slope(r: dict) -> str:
    return f"{_f(r.get('slope'), '{:+.2f}')} [{_f(r.get('ci_low'), '{:+.2f}')}, {_f(r.get('ci_high'), '{:+.2f}')}]"


def _n(x) -> str:
    return "{:,}".format(int(x))


def _names(rows: list[dict], detail) -> str:
    return ", ".join(f"{display_name(r['category'])} ({detail(r)})" for r in rows)


def curve_sentence(c: dict) -> str:
    """What the chosen curve says, in words (the forecast is always called an extrapolation).

    >>> curve_sentence({"form": "log-linear", "forecast": 0.91, "forecast_ci_low": 0.8,
    ...                 "forecast_ci_high": 0.97, "forecast_examples": 6400, "near_ceiling": False})
    'a log-linear fit (no ceiling in sight) forecasts 0.91 [0.80, 0.97] at 6,400 examples (an extrapolation)'
    >>> curve_sentence({"form": "logistic", "forecast": 0.974, "forecast_ci_low": 0.962,
    ...                 "forecast_ci_high": 0.982, "forecast_examples": 6400, "near_ceiling": True})  # doctest: +ELLIPSIS
    'a logistic fit in log n (a straight line would pass 1) forecasts at or near the ceiling: 0.974 [0.962, 0.982] at...'
    >>> curve_sentence({"form": "flat"})
    'no curve forecasts a left-out scale better than a flat line (cannot tell)'
    """
    form = c.get("form")
    if form not in ("log-linear", "logistic", "saturating"):
        return "no curve forecasts a left-out scale better than a flat line (cannot tell)"
    near = bool(c.get("near_ceiling"))
    f = "{:.3f}" if near else "{:.2f}"  # near the bound two decimals would read as a point at 1.00
    fc = ("at or near the ceiling: " if near else "") + (
        f"{_f(c.get('forecast'), f)} [{_f(c.get('forecast_ci_low'), f)}, {_f(c.get('forecast_ci_high'), f)}] at "
        f"{_n(c['forecast_examples'])} examples (an extrapolation)")
    if form == "log-linear":
        return f"a log-linear fit (no ceiling in sight) forecasts {fc}"
    if form == "logistic":
        return f"a logistic fit in log n (a straight line would pass 1) forecasts {fc}"
    n90 = (f"; 90% of it is reached at about {_n(c['n90'])} examples [{_n(c['n90_ci_low'])}, {_n(c['n90_ci_high'])}]"
           if c.get("n90") is not None and c.get("n90_ci_low") is not None and c.get("n90_ci_high") is not None else "")
    return (f"a saturating fit finds a ceiling of {_f(c.get('ceiling'))} [{_f(c.get('ceiling_ci_low'))}, "
            f"{_f(c.get('ceiling_ci_high'))}]{n90}; it forecasts {fc}")


def _one_chain(res: dict, trends: list[dict], curves: list[dict], comparison: list[dict],
               shapes: list[dict]) -> list[str]:
    s = res.get("settings") or {}
    improve, flat_tol = s.get("improve", 0.02), s.get("flat_tol", 0.1)
    out = []
    by_curve = {c["category"]: c for c in curves}
    overall = next((r for r in trends if r["category"] == OVERALL), None)
    if overall and overall.get("slope") is not None:
        verb = {"improving": "rises", "declining": "falls"}.get(overall["label"], "changes")
        base = f"from {_f(overall.get('base_mean'))} for the base model, then " if overall.get("base_mean") is not None else ""
        text = (f"Overall (mean over use cases) the score {verb} {base}from {_f(overall.get('first_mean'))} at "
                f"{_n(overall['first_scale'].rsplit('-', 1)[-1])} to {_f(overall.get('last_mean'))} at "
                f"{_n(overall['last_scale'].rsplit('-', 1)[-1])} training examples: {_slope(overall)} per tenfold "
                "data (95% CI)")
        if OVERALL in by_curve:
            text += "; " + curve_sentence(by_curve[OVERALL])
        out.append(text + ".")
    cats = [r for r in trends if r["category"] != OVERALL and r.get("slope") is not None]
    rising = [r for r in cats if r["label"] == "improving"]
    if rising:
        text = (f"Keep improving with more data (slope per tenfold data, 95% CI above +{improve}): "
                + _names(rising, _slope) + ".")
        ceilings = [by_curve[r["category"]] for r in rising if by_curve.get(r["category"], {}).get("form") == "saturating"]
        if ceilings:
            text += " Levelling off among them: " + "; ".join(
                f"{display_name(c['category'])}: {curve_sentence(c)}" for c in ceilings) + "."
        out.append(text)
    flat = [r for r in cats if r["label"] == "plateau" and r["ci_low"] >= -flat_tol and r["ci_high"] <= flat_tol]
    if flat:
        out.append(f"Flat (slope's 95% CI within +-{flat_tol} per tenfold data): {_names(flat, _slope)}.")
    unsettled = [r for r in cats if r["label"] == "plateau" and r not in flat]
    if unsettled:
        out.append("Not settled (the interval allows both no change and a gain of more than "
                   f"{flat_tol} per tenfold data; more eval items would decide): {_names(unsettled, _slope)}.")
    falling = [r for r in cats if r["label"] == "declining"]
    if falling:
        out.append(f"Decline with more data (95% CI below -{s.get('decline', 0.02)}): {_names(falling, _slope)}.")
    shape = agreement_sentence(shapes)
    return out + ([shape] if shape else []) + _paper_sentences(comparison)


def _paper_sentences(comparison: list[dict]) -> list[str]:
    if not comparison:
        return []
    out = []
    absent = [r for r in comparison if r.get("label") is None and r["verdict"] == "cannot tell"]
    compared = [r for r in comparison if r not in absent]
    agree = [r for r in compared if r["verdict"] == "agrees"]
    disagree = [r for r in compared if r["verdict"] == "disagrees"]
    unsure = [r for r in compared if r["verdict"] == "cannot tell"]
    if agree:
        claims = list(dict.fromkeys(r["claim"] for r in agree))
        out.append(f"Agrees with the paper's claims on {len(agree)} of {len(compared)} use cases: " + "; ".join(
            f"{claim} \u2014 " + ", ".join(f"{r['name']} ({r['reason']})" for r in agree if r["claim"] == claim)
            for claim in claims) + ".")
    if disagree:
        out.append(f"Disagrees with the paper's claims on {len(disagree)}: "
                   + "; ".join(f"{r['name']} (paper: {r['claim']}; here: {r['reason']})" for r in disagree) + ".")
    if unsure:
        out.append(f"Cannot tell against the paper's claims on {len(unsure)}: "
                   + "; ".join(f"{r['name']} ({r['reason']})" for r in unsure) + ".")
    if absent:
        out.append(f"Not compared with the paper (no trend here): {', '.join(r['name'] for r in absent)} "
                   f"({absent[0]['reason'] or 'no trend'}).")
    return out


WEAK_RANK = 0.5
"""Below this Kendall tau-b two judges are said to rank a use case's answers differently."""


def judge_sentences(agreement: dict) -> list[str]:
    r"""One sentence per other judge: how it ranks answers against the headline judge, overall and where least alike.

    >>> s, = judge_sentences({"headline": "gpt", "others": ["offline"], "apart": 0.3, "table": [
    ...     {"judge": "offline", "category": "overall", "n": 40, "spearman": 0.81, "kendall": 0.66, "mad": 0.12,
    ...      "share_apart": 0.1},
    ...     {"judge": "offline", "category": "code", "n": 8, "spearman": 0.2, "kendall": 0.1, "mad": 0.4, "share_apart": 0.5},
    ...     {"judge": "offline", "category": "math", "n": 8, "spearman": None, "kendall": None, "mad": 0.0, "share_apart": 0.0}]})
    >>> print(s.replace(" (", "\n(", 1).replace("; ", ";\n"))
    Judges: offline ranks answers like the headline judge gpt overall
    (Kendall tau-b +0.66, Spearman +0.81, mean |difference| 0.12 over 40 answers);
    least alike on Code (tau-b +0.10, 50% of answers more than 0.3 apart);
    undefined (one judge gave every answer the same score) on Math.
    """
    out = []
    head, apart = agreement.get("headline"), agreement.get("apart")
    for name in agreement.get("others") or []:
        rows = [r for r in agreement.get("table") or [] if r.get("judge") == name]
        overall = next((r for r in rows if r["category"] == OVERALL), None)
        if overall is None or not overall.get("n"):
            out.append(f"Judges: {name} and the headline judge {head} scored no answer in common.")
            continue
        k = overall.get("kendall")
        how = "ranks answers like" if k is not None and k >= WEAK_RANK else "ranks answers unlike"
        text = (f"Judges: {name} {how} the headline judge {head} overall (Kendall tau-b {_f(k, '{:+.2f}')}, "
                f"Spearman {_f(overall.get('spearman'), '{:+.2f}')}, mean |difference| {_f(overall.get('mad'))} over "
                f"{_n(overall['n'])} answers)")
        cats = [r for r in rows if r["category"] != OVERALL]
        weak = sorted((r for r in cats if r.get("kendall") is not None and r["kendall"] < WEAK_RANK),
                      key=lambda r: r["kendall"])
        if weak:
            text += "; least alike on " + ", ".join(
                f"{display_name(r['category'])} (tau-b {_f(r['kendall'], '{:+.2f}')}, "
                f"{_f(r.get('share_apart'), '{:.0%}')} of answers more than {apart} apart)" for r in weak)
        undefined = [r for r in cats if r.get("kendall") is None and r.get("n")]
        if undefined:
            text += ("; undefined (one judge gave every answer the same score) on "
                     + ", ".join(display_name(r["category"]) for r in undefined))
        out.append(text + ".")
    return out


def findings(res: dict) -> list[str]:
    """Plain sentences, overall first, then which use cases keep improving, are flat or not settled,
    how many move the same way as in the paper's Figure 1, where the study agrees or disagrees with
    the paper's claims, each with its 95% interval, how many eval items would close each open verdict
    (``items_needed``), and how far the judges agree where there are several; before all of them, in a study
    with mixture models, what those show against the full mixture (``helpers.analysis.transfer``)."""
    trends, curves, comparison = res.get("trends") or [], res.get("curves") or [], res.get("paper_comparison") or []
    strategies = list(dict.fromkeys(r.get("strategy") for r in trends)) or [None]
    out = []
    for st in strategies:
        def of(rows):
            return [r for r in rows if r.get("strategy") == st]

        sentences = _one_chain(res, of(trends), of(curves), of(comparison), of(res.get("paper_shapes") or []))
        sentences += items_sentences(of(res.get("items_needed") or []))
        out += [f"{st}: {t}" if st else t for t in sentences]
    # the mixture axis first: a study has one only when asked for, and then it is the question the study asks
    return transfer_sentences(res.get("mixture") or {}) + out + judge_sentences(res.get("judge_agreement") or {})
