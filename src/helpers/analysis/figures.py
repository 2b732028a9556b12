"""The analysis stage's figures, each written to a PNG whose path is returned.

Colours, labels and saving are shared with the other stages' figures (``helpers.study.plots``), and
so is the training data's composition (the data notebook shows it too).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from helpers.study.categories import CATEGORIES, category_order, display_name
from helpers.study.files import read_jsonl
from helpers.study.order import OVERALL, examples_of, model_order, strategy_groups
from helpers.study.plots import (
    BASE_COLOR,
    MAX_WIDTH,
    STYLE,
    composition,
    fmt_count,
    message,
    model_label,
    model_palette,
    new_figure,
    save_png,
)

STRATEGY_LINES = {"random": "#2f5f98", "stratified": "#2e7d4f", "quality": "#c4621b"}
PAPER_COLOR = "#6f6f6f"
"""The paper's numbers and their axis, beside ours (``OURS_COLOR``) in ``paper_vs_ours``."""
OURS_COLOR = "#2f5f98"


def figure1(table, path) -> Path:
    """The paper's Figure 1: grouped bars of mean score per category plus Overall.

    ``table`` is ``helpers.analysis.scores.score_table`` output (or its records). One bar per
    model in each group, whiskers = 95% bootstrap CI over items. "Overall" is the
    headline mean over categories.
    """
    t = pd.DataFrame(table)
    t = t[t["category"] != "overall_items"]
    cats = [c for c in category_order(t["category"]) if c != OVERALL] + ([OVERALL] if (t["category"] == OVERALL).any() else [])
    models = model_order(t["model"])
    pal = model_palette(models)
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((min(MAX_WIDTH, max(8, 1.05 * len(cats) + 2)), 4.8))
        ax = fig.add_subplot()
        width = 0.8 / max(len(models), 1)
        x = np.arange(len(cats))
        for i, m in enumerate(models):
            sub = t[t["model"] == m].set_index("category").reindex(cats)
            mean = sub["mean"].to_numpy(float)
            err = np.vstack([np.clip(mean - sub["ci_low"].to_numpy(float), 0, None),
                             np.clip(sub["ci_high"].to_numpy(float) - mean, 0, None)])
            err = np.nan_to_num(err)
            ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(mean), width, yerr=err, color=pal[m],
                   label=model_label(m), capsize=1.5, error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        ax.set_xticks(x, [display_name(c) for c in cats], rotation=30, ha="right")
        if OVERALL in cats:
            ax.axvline(len(cats) - 1.5, color="#555555", lw=0.8, ls=":")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("Use case")
        ax.set_ylabel("Mean judge score (0-1), 95% CI")
        ax.set_title("Score per use case and amount of instruction data")
        fig.legend(title="Training examples", fontsize=8, loc="outside right upper", frameon=False)
    return save_png(fig, path)


def score_curves(table, path) -> Path:
    """Score against training examples (log x), one panel per category (4 x 3).

    Trained scales are joined by a line with a 95% CI band. A log axis cannot show
    0 examples, so the base model is drawn as a separate point (with its CI) at a
    position a factor 4 left of the smallest scale, ticked "base", not joined to
    the curve, with a dotted line at its level for reference. In a strategy grid each
    strategy is its own line and band in its own colour (legend at the right).
    """
    t = pd.DataFrame(table)
    models = model_order(t["model"])
    pal = model_palette(models)
    chains = {st: [m for m in chain if m != "base"] for st, chain in strategy_groups(models).items()}
    chains = {st: ms for st, ms in chains.items() if ms}
    xs = np.array(sorted({examples_of(m) for ms in chains.values() for m in ms}), float)
    x_base = xs.min() / 4 if len(xs) else 1.0
    cats = [c for c in category_order(t["category"]) if c not in (OVERALL, "overall_items")]
    ncols = 4
    nrows = max(3, math.ceil(len(cats) / ncols))
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((MAX_WIDTH, 2.7 * nrows))
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True).ravel()
        for ax, cat in zip(axes, cats):
            sub = t[t["category"] == cat].set_index("model")
            for strategy, scales in chains.items():
                s = sub.reindex(scales)
                x = np.array([examples_of(m) for m in scales], float)
                band, line = ("#4c72b0", "#333333") if strategy is None else (STRATEGY_LINES[strategy],) * 2
                ax.fill_between(x, s["ci_low"].to_numpy(float), s["ci_high"].to_numpy(float),
                                color=band, alpha=0.18 if strategy is None else 0.12, lw=0)
                ax.plot(x, s["mean"].to_numpy(float), color=line, lw=1.3,
                        label=strategy if ax is axes[0] else None)
                for xv, m in zip(x, scales):
                    ax.plot([xv], [s.loc[m, "mean"]], "o", color=pal[m], ms=6, zorder=3)
            if "base" in sub.index:
                b = sub.loc["base"]
                ax.errorbar([x_base], [b["mean"]], yerr=[[max(b["mean"] - b["ci_low"], 0)],
                                                         [max(b["ci_high"] - b["mean"], 0)]],
                            fmt="s", color=pal["base"], ms=6, capsize=2)
                ax.axhline(b["mean"], color=pal["base"], lw=0.8, ls=":")
            ax.set_title(display_name(cat), fontsize=10)
        for ax in axes[len(cats):]:
            ax.set_visible(False)
        axes[0].set_xscale("log")
        ticks = ([x_base] if "base" in models else []) + list(xs)
        labels = (["base"] if "base" in models else []) + [fmt_count(v) for v in xs]
        axes[0].set_xticks(ticks, labels)
        axes[0].minorticks_off()
        axes[0].set_ylim(-0.02, 1.02)
        if len(ticks):
            axes[0].set_xlim(min(ticks) / 1.8, max(ticks) * 1.8)
        for ax in axes:
            ax.minorticks_off()
            ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        fig.supxlabel("Training examples (log scale; base = untuned model, 0 examples)")
        fig.supylabel("Mean judge score (0-1), 95% CI band")
        if any(st is not None for st in chains):
            fig.legend(title="Selection strategy", fontsize=8, loc="outside right upper", frameon=False)
    return save_png(fig, path)


VERDICT_TEXT = {"log-linear": "log-linear", "logistic": "logistic in log n", "saturating": "saturating (ceiling)",
                "cannot tell": "cannot tell"}


def _curve_panel(ax, fit: dict, rows: pd.DataFrame, scales: list[str], color, pal, x_base: float) -> None:
    """One use case, one strategy: means with CIs, the fitted curve solid over the trained scales and
    dashed beyond them with its band, the 10x forecast with its interval; a flat dotted line at the
    mean where the verdict is "cannot tell"; the base model as a square at ``x_base``, not fitted."""
    s = rows.reindex(scales)
    x = np.array([examples_of(m) for m in scales], float)
    mean = s["mean"].to_numpy(float)
    err = np.nan_to_num(np.vstack([np.clip(mean - s["ci_low"].to_numpy(float), 0, None),
                                   np.clip(s["ci_high"].to_numpy(float) - mean, 0, None)]))
    band = fit.get("band")
    if band:
        gx, gy = np.array(band["examples"]), np.array(band["fit"], float)
        lo, hi = np.array(band["low"], float), np.array(band["high"], float)
        k = int(np.searchsorted(gx, x.max() * 1.0001))  # grid points over the trained scales
        for part, alpha, ls in ((slice(0, k), 0.2, "-"), (slice(max(k - 1, 0), None), 0.08, "--")):
            ax.fill_between(gx[part], lo[part], hi[part], color=color, alpha=alpha, lw=0)
            ax.plot(gx[part], gy[part], color=color, lw=1.5, ls=ls)
        f = fit.get("forecast")
        if f is not None:
            ax.errorbar([fit["forecast_examples"]], [f], yerr=[[max(f - fit["forecast_ci_low"], 0)],
                                                           [max(fit["forecast_ci_high"] - f, 0)]],
                        fmt="D", mfc="white", color=color, ms=6, capsize=2, zorder=4)
    elif fit.get("level") is not None:
        ax.plot([x.min(), x.max()], [fit["level"]] * 2, color=color, lw=1.2, ls=":")
    ax.errorbar(x, mean, yerr=err, fmt="none", ecolor=color, elinewidth=0.9, capsize=2, zorder=3)
    for xv, m, y in zip(x, scales, mean):
        ax.plot([xv], [y], "o", color=pal[m], mec="white", mew=0.6, ms=6, zorder=4)
    if "base" in rows.index and pd.notna(rows.loc["base", "mean"]):
        b = rows.loc["base"]
        ax.errorbar([x_base], [b["mean"]], yerr=[[max(b["mean"] - b["ci_low"], 0)], [max(b["ci_high"] - b["mean"], 0)]],
                    fmt="s", color=pal["base"], ms=5, capsize=2)


def curve_fits(results: dict, path) -> Path:
    """Fitted scaling curves per use case (small multiples, Overall last) with the 10x forecasts.

    Reads the ``curves`` and ``table`` of ``results.json``. The trained scales' means carry their 95%
    CIs; the chosen curve is solid with its 95% band over the trained scales and dashed with a
    lighter band where it extrapolates (the grey span), ending at the forecast (open diamond, 95%
    interval). "Cannot tell" panels show a dotted line at the mean instead. The base model is the
    square at the left, never fitted (log10(0) is undefined). ``MAX_WIDTH`` wide, legible at 1280 px;
    in a strategy grid each strategy has its colour and its verdict line.
    """
    t = pd.DataFrame(results.get("table") or [])
    fits = results.get("curves") or []
    models = model_order(results.get("models") or (t["model"] if len(t) else []))
    pal = model_palette(models)
    chains = {st: [m for m in chain if m != "base"] for st, chain in strategy_groups(models).items()}
    chains = {st: ms for st, ms in chains.items() if ms}
    cats = [c for c in category_order({f["category"] for f in fits}) if c != OVERALL]
    cats += [OVERALL] if any(f["category"] == OVERALL for f in fits) else []
    ncols = 4
    nrows = max(1, math.ceil(len(cats) / ncols))
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((MAX_WIDTH, 2.55 * nrows + 0.9))
        if not cats or not chains:
            message(fig, "No scaling curves: no trained scale was judged.")
            return save_png(fig, path)
        xs = np.array(sorted({examples_of(m) for ms in chains.values() for m in ms}), float)
        x_base, x_fore = xs.min() / 4, xs.max() * 10
        axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
        for ax, cat in zip(axes, cats):
            rows = t[t["category"] == cat].set_index("model")
            ax.axvspan(xs.max(), x_fore * 1.6, color="#000000", alpha=0.045, lw=0)
            verdicts = []
            for st, scales in chains.items():
                fit = next((f for f in fits if f["category"] == cat and f.get("strategy") == st), None) or {}
                color = "#2f5f98" if st is None else STRATEGY_LINES[st]
                _curve_panel(ax, fit, rows, scales, color, pal, x_base)
                verdict = VERDICT_TEXT.get(fit.get("verdict"), "cannot tell")
                verdicts.append(verdict if st is None else f"{st}: {verdict}")
            title = display_name(cat) if cat != OVERALL else "Overall (mean over use cases)"
            ax.set_title(title + (f" \u2014 {verdicts[0]}" if len(verdicts) == 1 else ""), fontsize=10,
                         fontweight="bold" if cat == OVERALL else "normal")
            if len(verdicts) > 1:
                ax.text(0.02, 0.97, "\n".join(verdicts), transform=ax.transAxes, va="top", fontsize=7)
        for ax in axes[len(cats):]:
            ax.axis("off")
        ax0 = axes[0]
        ax0.set_xscale("log")
        labelled = [xs[0], xs[-1]]  # and the scales in between that are 1.9x from both neighbours' labels
        for v in xs[1:-1]:
            if v / max(u for u in labelled if u < v) >= 1.9 and xs[-1] / v >= 1.9:
                labelled.append(v)
        ticks = [x_base, *xs, x_fore]
        labels = ["base", *[fmt_count(v) if v in labelled else "" for v in xs], f"{fmt_count(x_fore)}\n(10\u00d7)"]
        ax0.set_xticks(ticks, labels)
        for i, ax in enumerate(axes[:len(cats)]):
            if i + ncols >= len(cats):  # nothing below it: label its x axis
                ax.set_xlabel("Training examples (log scale)", fontsize=8)
                ax.tick_params(axis="x", labelbottom=True)
        ax0.set_xlim(x_base / 1.6, x_fore * 1.6)
        ax0.set_ylim(-0.03, 1.05)
        for ax in axes:
            ax.minorticks_off()
            ax.tick_params(axis="x", labelsize=8)
            ax.tick_params(axis="y", labelsize=8)
        handles = [
            Line2D([], [], marker="o", color="#555555", ls="none", label="mean score at a trained scale (95% CI)"),
            Line2D([], [], color="#555555", lw=1.6, label="chosen curve (95% band)"),
            Line2D([], [], color="#555555", lw=1.4, ls="--", label="extrapolation (grey span)"),
            Line2D([], [], marker="D", mfc="white", color="#555555", ls="none", label="forecast at 10\u00d7 (95% CI)"),
            Line2D([], [], color="#555555", lw=1.2, ls=":", label="cannot tell: mean of the scales"),
            Line2D([], [], marker="s", color=BASE_COLOR, ls="none", label="base model (not fitted)"),
        ]
        handles += [Line2D([], [], color=STRATEGY_LINES[st], lw=3, label=st) for st in chains if st is not None]
        if len(axes) - len(cats) >= 2:  # the empty panels hold the legend
            axes[len(cats)].legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
        else:
            fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
        fig.supylabel("Mean judge score (0-1)", fontsize=9)
    return save_png(fig, path)


def judge_spread(spread, path) -> Path:
    """Judge agreement across repeated runs per category (``helpers.analysis.scores.judge_spread``)."""
    s = pd.DataFrame(spread)
    cats = [c for c in s["category"] if c != OVERALL] + ([OVERALL] if (s["category"] == OVERALL).any() else [])
    s = s.set_index("category").reindex(cats)
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((11, 4.2))
        if s["n_items"].fillna(0).sum() == 0:
            runs = int(s["runs"].max()) if len(s) and s["runs"].notna().any() else 0
            message(fig, f"The judge ran {runs} time(s) per item:\nno spread across runs to show.")
            return save_png(fig, path)
        names = [display_name(c) for c in cats]
        ax1, ax2 = fig.subplots(1, 2, sharey=True)
        y = np.arange(len(cats))
        ax1.barh(y, s["mean_std"].fillna(0).to_numpy(float), color="#4c72b0")
        ax2.barh(y, s["share_disagree"].fillna(0).to_numpy(float), color="#dd8452")
        ax1.set_yticks(y, names)
        ax1.invert_yaxis()
        ax1.set_xlabel("Mean std of an item's score across runs")
        ax2.set_xlabel("Share of items whose runs differ by > 0.1")
        ax2.set_xlim(0, 1)
        ax1.set_ylabel("Use case")
        fig.suptitle(f"Judge spread across {int(s['runs'].max())} runs")
    return save_png(fig, path)


def loss_curves(study_dir, scales, path, x: str = "step") -> Path:
    """Training loss per scale against ``x`` ("step" or "tokens_seen").

    Reads ``models/<scale>/train_log.jsonl``; a scale without a log is named in
    the figure instead of being silently left out.
    """
    scales = model_order([s for s in scales if s != "base"])
    pal = model_palette(scales)
    missing = []
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((8, 4.6))
        ax = fig.add_subplot()
        drawn = 0
        for s in scales:
            p = Path(study_dir) / "models" / s / "train_log.jsonl"
            rows = read_jsonl(p) if p.exists() else []
            pts = [(r.get(x), r.get("loss")) for r in rows if r.get(x) is not None and r.get("loss") is not None]
            if not pts:
                missing.append(s)
                continue
            xv, yv = zip(*pts)
            ax.plot(xv, yv, color=pal[s], lw=1.3, label=model_label(s))
            drawn += 1
        if drawn:
            ax.legend(title="Training examples", fontsize=8, frameon=False)
        if missing:
            ax.text(0.99, 0.98, "no training log: " + ", ".join(missing), transform=ax.transAxes,
                    ha="right", va="top", fontsize=8, color="#a33")
        ax.set_xlabel("Optimizer step" if x == "step" else "Tokens seen")
        ax.set_ylabel("Training loss")
        ax.set_title("Training loss per scale")
    return save_png(fig, path)


def all_figures(study_dir, results: dict, data_stats: dict | None = None, out_dir=None) -> dict[str, Path]:
    """Write every figure from ``results.json`` content into ``out_dir``
    (default ``<study_dir>/figures``); returns ``{name: path}``."""
    out = Path(out_dir) if out_dir else Path(study_dir) / "figures"
    scales = [m for m in results["models"] if m != "base"]
    return {
        "figure1": figure1(results["table"], out / "figure1.png"),
        "score_curves": score_curves(results["table"], out / "score_curves.png"),
        "curve_fits": curve_fits(results, out / "curve_fits.png"),
        "composition": composition(data_stats or {}, out / "composition.png"),
        "loss_curves": loss_curves(study_dir, scales, out / "loss_curves.png"),
        "judge_spread": judge_spread(results["judge_spread"], out / "judge_spread.png"),
        "paper_vs_ours": paper_vs_ours(results, out / "paper_vs_ours.png"),
    }


def paper_vs_ours(results: dict, path) -> Path:
    """Per use case (Overall last), the paper's Figure 1 scores beside this study's means, on a common x axis.

    x is each scale's share of the largest (the paper's 0.2M / 0.6M / 1M / 2M are 0.1 / 0.3 / 0.5 / 1);
    the paper's four scores use the left y axis, ours (means with 95% CIs, joined by a line, one per
    strategy in a grid) a right y axis of their own, each scaled to its own data: a 270M model judged
    on the built-in suite is compared with the paper's shapes, not its levels. Since neither axis starts at
    0, the paper's scores are drawn as points, not bars (a bar on such an axis has a length that is not its
    value: Math's bars started at 0.30), and each axis is labelled with whose numbers it holds. Reads
    ``paper_figure1``, ``table`` and ``models`` of ``results.json``.
    """
    fig1 = results.get("paper_figure1") or {}
    t = pd.DataFrame(results.get("table") or [])
    models = model_order(results.get("models") or (t["model"] if len(t) else []))
    chains = {st: [m for m in chain if m != "base"] for st, chain in strategy_groups(models).items()}
    chains = {st: ms for st, ms in chains.items() if ms}
    cats = [c for c in CATEGORIES if len(t) and (t["category"] == c).any()] + [OVERALL]
    ncols = 4
    nrows = math.ceil(len(cats) / ncols)
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((MAX_WIDTH, 2.4 * nrows + 0.8))
        if not fig1 or not chains:
            message(fig, "No comparison with the paper: no trained scale was judged.")
            return save_png(fig, path)
        p_shares = np.array(fig1["scales"], float) / max(fig1["scales"])
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, cat in zip(axes, cats):
            paper = np.array(fig1["scores"][cat], float)
            ax.plot(p_shares, paper, color=PAPER_COLOR, marker="s", ms=5, lw=1.0, ls="--")
            lo, hi = paper.min(), paper.max()
            ax.set_ylim(lo - 0.4 * (hi - lo) - 0.01, hi + 0.4 * (hi - lo) + 0.01)
            ax.tick_params(axis="y", labelsize=7, colors=PAPER_COLOR)
            ax.set_ylabel("paper", fontsize=7, color=PAPER_COLOR, labelpad=1)
            ours = ax.twinx()
            ours.grid(False)
            ours.set_ylabel("this study", fontsize=7, color=OURS_COLOR, labelpad=1)
            rows = t[t["category"] == cat].set_index("model")
            for st, scales in chains.items():
                s = rows.reindex(scales)
                x = np.array([examples_of(m) for m in scales], float) / max(examples_of(m) for m in scales)
                mean = s["mean"].to_numpy(float)
                err = np.nan_to_num(np.vstack([np.clip(mean - s["ci_low"].to_numpy(float), 0, None),
                                               np.clip(s["ci_high"].to_numpy(float) - mean, 0, None)]))
                color = OURS_COLOR if st is None else STRATEGY_LINES[st]
                ours.errorbar(x, mean, yerr=err, color=color, marker="o", ms=4, lw=1.4, capsize=2)
            ours.tick_params(axis="y", labelsize=7, colors=OURS_COLOR)
            ax.set_xlim(0, 1.08)
            ax.set_xticks(p_shares, [f"{v:g}" for v in p_shares])
            ax.tick_params(axis="x", labelsize=7)
            ax.set_title(display_name(cat) if cat != OVERALL else "Overall (mean over use cases)", fontsize=9,
                         fontweight="bold" if cat == OVERALL else "normal")
        for ax in axes[len(cats):]:
            ax.axis("off")
        handles = [Line2D([], [], color=PAPER_COLOR, marker="s", ls="--", label="paper, Figure 1 (left axis: paper)"),
                   Line2D([], [], color=OURS_COLOR, marker="o",
                          label="this study, mean with 95% CI (right axis: this study)")]
        handles += [Line2D([], [], color=STRATEGY_LINES[st], lw=3, label=st) for st in chains if st is not None]
        if len(axes) > len(cats):  # an empty panel holds the legend
            axes[len(cats)].legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
        else:
            fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=8, frameon=False)
        fig.supxlabel("Share of the largest scale (paper: 0.2M / 0.6M / 1M / 2M)", fontsize=9)
    return save_png(fig, path)


def transfer_matrix(mixture: dict, path) -> Path:
    """The transfer matrix (``results.json``'s ``mixture``, ``helpers.analysis.transfer``): one row per mixture model
    (``without Math``: trained without math data, the other use cases refilled to the same count; then any ``only``
    and weighted mixtures), one column per eval use case; each cell the score change against the full mixture on the
    same items, with its 95% interval beneath. Red: the score fell without that data (the data helped); blue: it
    rose (the data hurt). A significant cell (5% false discovery rate) is boxed in black with its number in bold;
    the diagonal (a use case's own data on its own items) is dotted."""
    from matplotlib.patches import Rectangle

    from helpers.analysis.transfer import row_label

    cells = pd.DataFrame(mixture.get("cells") or [])
    with sns.axes_style("white"):
        if not len(cells):
            fig = new_figure((8, 2))
            message(fig, mixture.get("note") or "No mixture models: nothing to set against the full mixture.")
            return save_png(fig, path)
        cells = cells[cells["category"] != OVERALL]
        rows = [m for m in mixture["models"] if m in set(cells["model"])]
        cols = [c for c in CATEGORIES if c in set(cells["category"])] + \
            [c for c in category_order(cells["category"]) if c not in CATEGORIES]
        at = {(r["model"], r["category"]): r for r in cells.to_dict("records")}
        diff = np.array([[at.get((m, c), {}).get("diff", np.nan) for c in cols] for m in rows], float)
        span = max(0.1, float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.1)
        fig = new_figure((MAX_WIDTH, 0.62 * len(rows) + 2.4))
        ax = fig.add_subplot()
        sns.heatmap(diff, ax=ax, cmap="RdBu", vmin=-span, vmax=span, center=0, cbar_kws={
            "label": f"score change against the full mixture {mixture.get('reference')}", "shrink": 0.8},
            linewidths=0.5, linecolor="white", xticklabels=[display_name(c) for c in cols],
            yticklabels=[row_label(m) for m in rows])
        for i, m in enumerate(rows):
            for j, c in enumerate(cols):
                r = at.get((m, c))
                if r is None or r.get("diff") is None or not np.isfinite(r["diff"]):
                    continue
                strong = abs(r["diff"]) > 0.6 * span
                ci = f"\n[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" if r.get("ci_low") is not None else ""
                ax.text(j + 0.5, i + 0.5, f"{r['diff']:+.2f}{ci}", ha="center", va="center", fontsize=6.5,
                        color="white" if strong else "#222222", fontweight="bold" if r.get("significant") else "normal")
                if r.get("significant"):
                    ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False, lw=1.6, ec="black"))
                elif r.get("diagonal"):
                    ax.add_patch(Rectangle((j + 0.04, i + 0.04), 0.92, 0.92, fill=False, lw=0.9, ec="#555555",
                                           ls=":"))
        ax.set_xlabel("Eval use case")
        ax.set_ylabel("Trained on the full mixture ...")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        ax.set_title(f"Which training data each use case depends on: each mixture of {mixture.get('examples')} "
                     f"examples minus the full mixture (95% CI); boxed: significant at a 5% false discovery rate",
                     fontsize=9)
    return save_png(fig, path)
