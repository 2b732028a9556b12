"""What every stage's figures share: colours per model and per use case, labels, saving a PNG, and the
figures two stages show (the training data's composition: the data notebook and the report).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot's
global state, so importing this does not switch a notebook's backend; show a figure in a notebook with
``IPython.display.Image(path)``. Every PNG is saved to a temporary name beside the target and renamed over it.

Colours: one per model, the same in every figure -- ``base`` is grey and the trained scales run from dark
to light along viridis in order of example count; in a strategy grid each strategy has its own hue
(``STRATEGY_COLORMAPS``), darker for more data. Category names are the paper's
(``helpers.study.categories.display_name``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from helpers.study.categories import CATEGORIES, category_order, display_name
from helpers.study.config import is_mixture
from helpers.study.files import atomic_path
from helpers.study.order import examples_of, model_order, strategy_groups, strategy_of

BASE_COLOR = "#8c8c8c"

STYLE = {"axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False}

STRATEGY_COLORMAPS = {"random": "Blues", "stratified": "Greens", "quality": "Oranges"}

DPI = 110
MAX_WIDTH = 12.0
"""Inches. The report's column is at most 1200 CSS px, so on a 1280 px screen a 12 in figure (1320 px
at ``DPI``) is shown at >= 0.85 of its size and 8 pt labels stay above 10 px; a wider one shrinks
until they cannot be read (a 12-scale strategy grid made composition 29 in wide)."""


def model_palette(models) -> dict[str, tuple]:
    """``{model: colour}``: base grey; scales along viridis by example count, or in a
    strategy grid along the strategy's own colormap (light to dark with more data); mixture models
    (``mix-<name>``) a hue each."""
    pal = {"base": BASE_COLOR} if "base" in models else {}
    for strategy, chain in strategy_groups(models).items():
        scales = [m for m in chain if m != "base"]
        if strategy is None:
            cmap, pos = colormaps["viridis"], np.linspace(0.05, 0.85, len(scales)) if len(scales) > 1 else [0.35]
        else:
            cmap, pos = colormaps[STRATEGY_COLORMAPS[strategy]], np.linspace(0.45, 0.95, len(scales)) \
                if len(scales) > 1 else [0.7]
        pal.update({m: tuple(cmap(p)) for m, p in zip(scales, pos)})
    mixtures = [m for m in model_order(models) if is_mixture(m)]  # on no scale chain: one hue each
    pal.update(zip(mixtures, sns.color_palette("husl", len(mixtures))))
    return pal


def category_palette(categories=CATEGORIES) -> dict[str, tuple]:
    """A fixed colour per category (the paper's 12 first, in order)."""
    cats = list(dict.fromkeys(list(CATEGORIES) + list(categories)))
    cols = sns.color_palette("tab20", len(cats)) if len(cats) > 10 else sns.color_palette("tab10", len(cats))
    return dict(zip(cats, cols))


def fmt_count(n: int) -> str:
    """200000 -> '200k', 2000000 -> '2M', 600 -> '600'."""
    n = int(n)
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1_000 and n % 100 == 0:
        return f"{n / 1e3:g}k"
    return str(n)


def model_label(model: str) -> str:
    """``base (0)``, ``640``, ``quality 640`` in a strategy grid, or a mixture model's name."""
    if model == "base":
        return "base (0)"
    if is_mixture(model):
        return model
    strategy = strategy_of(model)
    return f"{strategy} {fmt_count(examples_of(model))}" if strategy else fmt_count(examples_of(model))


def new_figure(figsize) -> Figure:
    """A figure on the Agg canvas, outside pyplot's global state."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path) -> Path:
    """Write ``fig`` as a PNG at ``DPI`` to a temporary name beside ``path``, then rename it over ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def message(fig: Figure, text: str) -> None:
    """A figure that says why there is nothing to draw."""
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)


def composition(data_stats: dict, path) -> Path:
    """Training data per scale: stacked bars of examples per category.

    Left: counts (total over each bar). Right: the same as shares of each subset,
    since subsets that grow tenfold make the small ones unreadable in counts.
    """
    subsets = (data_stats or {}).get("subsets", {})
    scales = model_order(subsets.keys())
    cats = category_order({c for s in scales for c in (subsets[s].get("categories") or {})})
    pal = category_palette(cats)
    with sns.axes_style("whitegrid", STYLE):
        fig = new_figure((min(MAX_WIDTH, max(9, 2 * len(scales) + 5)), 4.6))
        if not scales:
            message(fig, "No training subsets recorded in data_stats.json.")
            return save_png(fig, path)
        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(scales))
        counts = np.array([[(subsets[s].get("categories") or {}).get(c, 0) for s in scales] for c in cats], float)
        totals = counts.sum(axis=0)
        shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        for ax, data in ((ax1, counts), (ax2, shares)):
            bottom = np.zeros(len(scales))
            for c, v in zip(cats, data):
                ax.bar(x, v, 0.6, bottom=bottom, color=pal[c], label=display_name(c) if ax is ax1 else None)
                bottom += v
            ax.set_xticks(x, [model_label(s) for s in scales], rotation=30 if len(scales) > 6 else 0)
            ax.set_xlabel("Training subset (examples)")
        for xi, t in zip(x, totals):
            ax1.text(xi, t, f"{int(t):,}", ha="center", va="bottom", fontsize=8)
        ax1.set_ylabel("Examples per use case")
        ax2.set_ylabel("Share of the subset")
        ax2.set_ylim(0, 1)
        fig.suptitle("Training data composition per scale")
        fig.legend(title="Use case", fontsize=8, loc="outside right upper", frameon=False)
    return save_png(fig, path)
