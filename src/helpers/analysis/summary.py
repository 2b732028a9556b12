"""The three lines a study run ends with on the terminal, under the report's path.

The overall score of every model, and the use cases that moved most between the base model and the last model
(the largest scale; in a strategy grid, the last strategy's): read from ``results.json``, so they are the report's
numbers, without the intervals and the verdicts, which the report gives.
"""
from __future__ import annotations

from pathlib import Path

from helpers.study.categories import display_name
from helpers.study.files import read_json
from helpers.study.order import OVERALL
from helpers.study.plots import model_label

MOVED = 3
"""Use cases named on each of the two lines of changes."""


def summary_lines(study_dir: str | Path) -> list[str]:
    """Three lines from ``results.json`` (none before the analysis stage has written it)::

        overall score (the mean of the use-case means, 0 to 1): base (0) 0.10 · 4 0.23 · 12 0.23
        most gained from base (0) to 12: Extraction +1.00, Open QA +0.40, Closed QA +0.30
        most lost: Generation -0.10, Translation -0.02
    """
    path = Path(study_dir) / "results.json"
    if not path.exists():
        return []
    results = read_json(path)
    models = results["models"]
    mean = {(r["category"], r["model"]): r["mean"] for r in results["table"]}
    scores = " · ".join(f"{model_label(m)} {_score(mean.get((OVERALL, m)))}" for m in models)
    lines = [f"overall score (the mean of the use-case means, 0 to 1): {scores}"]
    first, last = models[0], models[-1]
    if first == last:
        return lines
    moves = sorted((mean[(c, last)] - mean[(c, first)], display_name(c)) for c in results["categories"]
                   if mean.get((c, first)) is not None and mean.get((c, last)) is not None)
    gained = [f"{name} {d:+.2f}" for d, name in reversed(moves) if d > 0][:MOVED]
    lost = [f"{name} {d:+.2f}" for d, name in moves if d < 0][:MOVED]
    lines.append(f"most gained from {model_label(first)} to {model_label(last)}: {', '.join(gained) or 'none'}")
    lines.append(f"most lost: {', '.join(lost) or 'none'}")
    return lines


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
