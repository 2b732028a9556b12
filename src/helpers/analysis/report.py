"""The study's HTML report: one self-contained page that opens from disk.

``build_report`` reads ``results.json`` (and the PNGs under ``<study>/figures/``), copies what it links
to into the report folder and writes ``index.html`` there atomically. No server, no CDN, no script:
inline CSS and relative links only. The page is rendered from Jinja2 templates
(``templates/report.html.j2``, ``templates/report.css``) with autoescape on, so every piece of model or
judge text, file name and config value is escaped unless the template marks it safe; notebook links
whose target does not exist are shown as plain text rather than as dead links. This module gathers
what the page shows; the template says how.

The page reads findings first: plain sentences with their intervals (``analysis.findings``), then
the headline figure (the fitted scaling curves with their forecasts), then the tables that back
them, then the paper beside this study (its Figure 1 against our curves, the agreement table, its
claims, and its released models score by score where they were evaluated). A section with nothing to
show (one judge run, one judge, one selection strategy, no paid requests) is left out with one line
saying why, rather than shown as an empty box or a table of blanks.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from helpers.analysis.curves import SHARE_REPLICATES
from helpers.analysis.findings import findings
from helpers.analysis.items_needed import per_use_case
from helpers.analysis.scores import code_execution_note
from helpers.analysis.transfer import row_label, transfer_sentences
from helpers.study.categories import display_name
from helpers.study.config import StudyConfig
from helpers.study.files import atomic_path, atomic_write_text, read_json, write_json
from helpers.study.order import OVERALL, OVERALL_ITEMS, model_order
from helpers.study.runner import Execution, manifest, stage_times

HEADLINE = ("curve_fits", "Score against training examples per use case with the curve chosen by leave-one-scale-out "
                          "error (95% band), dashed where it extrapolates to 10\u00d7 the largest scale (open diamond: "
                          "the forecast, 95% CI). \u201cCannot tell\u201d: no curve predicts a left-out scale better "
                          "than the mean. The base model (square) is shown, not fitted.")

PAPER_FIGURE = ("paper_vs_ours", "Per use case, the paper's four bars (Figure 1, left axis) beside this study's means "
                                 "with 95% CIs (line, right axis), both against each scale's share of the largest "
                                 "scale. Each side has its own y axis: the shapes are compared, not the levels.")

FIGURES = [
    ("figure1", "Figure 1 (after the paper): mean score per use case for each amount of instruction "
                "data, with 95% bootstrap CIs over items. Overall = mean over use cases."),
    ("score_curves", "Score against training examples (log scale) per use case; the base model "
                     "(0 examples) is the separate square at the left."),
    ("composition", "Training data composition per scale."),
    ("loss_curves", "Training loss per scale."),
    ("judge_spread", "Judge agreement across repeated runs."),
]

TRANSFER_FIGURE = ("transfer_matrix", "The transfer matrix: each row a model trained on as many examples as the full "
                                      "mixture with one use case left out (the others refilled) or otherwise weighted, "
                                      "each column an eval use case; the cell is the score change against the full "
                                      "mixture on the same items, its 95% interval beneath. Red: the score fell "
                                      "without that data (it helped); blue: it rose (it hurt). Boxed: significant at a "
                                      "5% false discovery rate; dotted: the diagonal, a use case's own data.")

_SECRET = re.compile(r"(api[_-]?key|apikey|secret|password|passwd|access[_-]?token|auth[_-]?token|hf[_-]?token)", re.I)


def _num(x, fmt="{:.3f}") -> str:
    """A number in ``fmt``; an en dash where there is none."""
    return "\u2013" if x is None else fmt.format(x)


def _model_head(m) -> str:
    return "base (0)" if m == "base" else str(m)


ENV = Environment(loader=PackageLoader("helpers.analysis", "templates"), autoescape=True, undefined=StrictUndefined,
                  trim_blocks=False, lstrip_blocks=False, keep_trailing_newline=True)
"""Autoescape on for every template: text reaches the page escaped unless the template says ``safe``."""
ENV.filters.update(num=_num, name=display_name, model_head=_model_head, count=lambda x: "{:,}".format(int(x)),
                   mixture_row=row_label)


def _redact(obj):
    """Copy of ``obj`` with values under secret-looking keys replaced."""
    if isinstance(obj, dict):
        return {k: ("***redacted***" if isinstance(k, str) and _SECRET.search(k) and v else _redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def _copy(src: Path, dst: Path) -> None:
    """Copy a file through a temp name + rename."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _score_rows(res: dict) -> tuple[list[str], list[dict]]:
    """The models in column order and, per use case (Overall rows last), the cell of each model and what would
    close its open verdicts (``items_needed.per_use_case``; None where none is open)."""
    table = res.get("table", [])
    models = model_order(res.get("models") or {r["model"] for r in table})
    cell = {(r["category"], r["model"]): r for r in table}
    cats = [c for c in res.get("categories", []) if c not in (OVERALL, OVERALL_ITEMS)] + [OVERALL, OVERALL_ITEMS]
    needed = per_use_case(res.get("items_needed") or [])
    return models, [{"category": c, "cells": [cell.get((c, m)) for m in models], "needed": needed.get(c)}
                    for c in cats]


def _has_spread(res: dict) -> bool:
    return any((r.get("n_items") or 0) > 0 for r in res.get("judge_spread") or [])


def _spread_means(res: dict) -> str:
    """What the run-to-run spread measures, from the headline judge's runs and temperature.

    At temperature 0 every run asks for the most likely reply, as the paper's three runs did (BELLE's scoring
    page calls gpt-3.5-turbo at temperature 0.0), and a server still answers one request differently from run
    to run; that nondeterminism is what the spread shows. Where every run gave every item the same score the
    repeats measured nothing, and the page says so: the one case in which ``judge.runs > 1`` only cost more.
    """
    jr = res.get("judge_runs") or {}
    runs, temp = jr.get("runs"), jr.get("temperature")
    if temp is None:
        text = ("The judge's temperature is not recorded, so it cannot be said whether this spread is the judge's "
                "sampling variability or only the server's nondeterminism.")
    elif temp == 0:
        text = (f"The judge ran {runs} times at temperature 0, as the paper's three ChatGPT runs did (BELLE scored with "
                "gpt-3.5-turbo at temperature 0.0): every run asks for the same (most likely) reply, so this spread "
                "measures the server's nondeterminism at temperature 0 (requests batched differently, floating-point "
                "order), that is how far one run's score of an answer repeats; the scores above average the runs.")
    else:
        text = (f"The judge ran {runs} times at temperature {temp:g}: each run samples a reply, so this spread measures "
                "how much the judge's score for one and the same answer varies from sample to sample.")
    overall = next((r for r in res.get("judge_spread") or [] if r.get("category") == OVERALL), None)
    if overall and (overall.get("n_items") or 0) > 0 and overall.get("mean_std") == 0:
        text += (f" Here every run gave every item the same score: these repeats measured no spread, and "
                 f"judge.runs: 1 would have given the same scores at 1/{runs} of the requests.")
    return text


def _spread_ran(res: dict) -> str:
    runs = max([r.get("runs") or 0 for r in res.get("judge_spread") or []], default=0)
    return "once" if runs <= 1 else f"{runs} times, but no item has two scored runs"


def _usage(res: dict) -> list[tuple[str, dict, bool]]:
    """(label, counts, is the total) per judge, per judge stage, then the total; empty without requests."""
    u = res.get("judge_usage") or {}
    total = u.get("total") or {}
    if not total.get("requests"):
        return []
    rows = [(f"judge {j}", v, False) for j, v in (u.get("by_judge") or {}).items()]
    rows += [(f"stage judge-{m}", v, False) for m, v in (u.get("by_model") or {}).items()]
    return rows + [("total", total, True)]


def _served(res: dict) -> list[tuple[str, str, int]]:
    """(judge, served model / system_fingerprint, judgments) for each model that answered a judge's requests, as
    the server named it: a change of either between two studies means another judge answered."""
    served = (res.get("judge_usage") or {}).get("served") or {}
    return [(j, who, n) for j, counts in served.items() for who, n in counts.items()]


def _lowest(res: dict) -> list[tuple[str, list[dict]]]:
    by_cat: dict[str, list] = {}
    for it in res.get("lowest_items") or []:
        by_cat.setdefault(it["category"], []).append(it)
    return list(by_cat.items())


def _stage_times(times: dict) -> list[tuple[str, str]]:
    rows = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, vv in v.items():
                walk(f"{prefix} / {k}" if prefix else str(k), vv)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append((prefix, f"{v:,.1f} s" + (f" ({v / 60:.1f} min)" if v >= 120 else "")))
        else:
            rows.append((prefix, "" if v is None else str(v)))

    walk("", times or {})
    return rows


def _released_summary(rows: list[dict]) -> str:
    if not rows:
        return ""
    ok = [r for r in rows if r["reproduces"]]
    off = [r for r in rows if not r["reproduces"]]
    text = f"{len(ok)} of {len(rows)} scores reproduce the paper's bar."
    if off:
        text += " Not reproduced: " + ", ".join(f"{display_name(r['category'])} at {r['model']} "
                                                f"({r['mean']:.3f} against {r['paper']:.3f})" for r in off[:12])
        text += f" and {len(off) - 12} more." if len(off) > 12 else "."
    return text


def build_report(study_dir, report_dir, title: str, notebooks: list[dict],
                 stage_times: dict, manifest: dict) -> Path:
    """Write ``report_dir/index.html`` for the study in ``study_dir``; return its path.

    Copies ``results.csv``, ``results.json`` and the PNGs of ``<study_dir>/figures``
    into ``report_dir`` and links them relatively. ``notebooks`` entries are
    ``{"title", "href"}`` with ``href`` relative to ``report_dir``; a missing
    target is listed without a link. ``manifest`` is shown as JSON with values
    under secret-looking keys redacted.
    """
    study_dir, report_dir = Path(study_dir), Path(report_dir)
    res = read_json(study_dir / "results.json")
    report_dir.mkdir(parents=True, exist_ok=True)

    links = []
    for name in ("results.csv", "results.json"):
        if (study_dir / name).exists():
            _copy(study_dir / name, report_dir / name)
            links.append(name)

    fig_dir = study_dir / "figures"
    pngs = {p.stem: p for p in sorted(fig_dir.glob("*.png"))} if fig_dir.is_dir() else {}
    if not _has_spread(res):
        pngs.pop("judge_spread", None)  # nothing to show: its section says why in one line
    captions = dict([HEADLINE, PAPER_FIGURE, TRANSFER_FIGURE, *FIGURES])
    mixture = res.get("mixture") or {}
    if not mixture.get("cells"):
        pngs.pop(TRANSFER_FIGURE[0], None)  # a figure left from an earlier mixture: nothing here to back it

    def figure(name: str) -> dict | None:
        if name not in pngs:
            return None
        _copy(pngs[name], report_dir / "figures" / pngs[name].name)
        return {"name": name, "src": "figures/" + pngs[name].name, "caption": captions.get(name, name)}

    order = [n for n, _ in FIGURES if n in pngs] + [n for n in pngs if n not in captions]
    nb = [{"title": n.get("title") or n.get("href"), "href": n.get("href"),
           "linked": bool(n.get("href") and (report_dir / n["href"]).is_file())} for n in notebooks or []]
    judges = (res.get("judges") or {}).get("all") or []
    missing = {m: n for m, n in (res.get("missing_judgments") or {}).items() if n}
    engines = "; ".join(f"{m}: {g.get('backend')} ({g.get('engine')}{', ' + g['device'] if g.get('device') else ''})"
                        for m, g in ((manifest or {}).get("generation") or {}).items())
    models, score_rows = _score_rows(res)
    released = res.get("released_comparison") or []
    context = {
        "title": title, "code_note": code_execution_note(res.get("code_execution")), "judges": judges,
        "others": (res.get("judge_agreement") or {}).get("others") or [], "nulls": res.get("null_counts") or {},
        "missing": missing, "engines": engines,
        "findings": res["findings"] if res.get("findings") is not None else findings(res),
        "headline_figure": figure(HEADLINE[0]), "models": models, "score_rows": score_rows,
        "has_needed": "items_needed" in res,
        "grid": bool(res.get("strategies")), "curves": res.get("curves") or [], "share_replicates": SHARE_REPLICATES,
        "paper": res.get("paper_figure1"), "paper_headline": res.get("paper_headline") or [],
        "paper_figure": figure(PAPER_FIGURE[0]), "paper_shapes": res.get("paper_shapes") or [],
        "claims": res.get("paper_comparison") or [], "released": released,
        "released_summary": _released_summary(released),
        "figures": [figure(n) for n in order], "mixture": mixture, "transfer_figure": figure(TRANSFER_FIGURE[0]),
        "mixture_sentences": transfer_sentences(mixture), "settings": res.get("settings") or {}, "trends": res.get("trends") or [],
        "changes": res.get("changes") or [], "versus": res.get("strategy_comparison") or [],
        "identical_subsets": res.get("identical_subsets") or [],
        "spread": res.get("judge_spread") if _has_spread(res) else [], "spread_means": _spread_means(res),
        "spread_ran": _spread_ran(res), "agreement": res.get("judge_agreement") or {}, "usage": _usage(res), "served": _served(res),
        "lowest": _lowest(res), "error_analysis": res.get("error_analysis") or {}, "notebooks": nb, "links": links,
        "stage_times": _stage_times(stage_times),
        "produced_by": (manifest or {}).get("produced_by", {}).get("text", ""),
        "manifest_json": json.dumps(_redact(manifest or {}), indent=2, ensure_ascii=False, default=str, sort_keys=True),
    }
    page = _render(context)
    index = report_dir / "index.html"
    atomic_write_text(index, page)
    return index


def _render(context: dict) -> str:
    """The page from ``templates/report.html.j2``."""
    return ENV.get_template("report.html.j2").render(**context)


def build_index(cfg: StudyConfig, config_path: Path, sd: Path, rd: Path, runs: list[Execution],
                overrides: tuple[str, ...] = ()) -> Path:
    """Write ``manifest.json`` and the report index of a study the runner has just brought up to date."""
    man = manifest(cfg, config_path, sd, runs, overrides)
    if (sd / "results.json").exists():
        man["code_execution"] = read_json(sd / "results.json").get("code_execution")
    write_json(sd / "manifest.json", man)
    notebooks = [{"title": r.label, "href": f"notebooks/{r.label}.html"}
                 for r in runs if (rd / "notebooks" / f"{r.label}.html").exists()]
    return build_report(sd, rd, title=f"Instruction-data scaling study: {cfg.study}", notebooks=notebooks,
                        stage_times=stage_times(sd, runs), manifest=man)
