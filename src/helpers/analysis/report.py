"""The study's HTML report: one self-contained page that opens from disk.

``build_report`` reads ``results.json`` (and the PNGs under ``<study>/figures/``),
copies what it links to into the report folder and writes ``index.html`` there
atomically. No server, no CDN, no script: inline CSS and relative links only.
Every piece of model or judge text goes through ``html.escape``; notebook links
whose target does not exist are shown as plain text rather than as dead links.

The page reads findings first: plain sentences with their intervals (``analysis.findings``), then
the headline figure (the fitted scaling curves with their forecasts), then the tables that back
them. A section with nothing to show (one judge run, one judge, one selection strategy, no paid requests) is
left out with one line saying why, rather than shown as an empty box or a table of blanks.
"""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from helpers.analysis.findings import findings
from helpers.analysis.order import OVERALL, OVERALL_ITEMS, model_order
from helpers.analysis.scores import code_execution_note
from helpers.study.categories import display_name
from helpers.study.config import StudyConfig
from helpers.study.files import atomic_path, atomic_write_text, read_json, write_json
from helpers.study.runner import Execution, manifest, stage_times

HEADLINE = ("curve_fits", "Score against training examples per use case with the curve chosen by leave-one-scale-out "
                          "error (95% band), dashed where it extrapolates to 10\u00d7 the largest scale (open diamond: "
                          "the forecast, 95% CI). \u201cCannot tell\u201d: no curve predicts a left-out scale better "
                          "than the mean. The base model (square) is shown, not fitted.")

FIGURES = [
    ("figure1", "Figure 1 (after the paper): mean score per use case for each amount of instruction "
                "data, with 95% bootstrap CIs over items. Overall = mean over use cases."),
    ("score_curves", "Score against training examples (log scale) per use case; the base model "
                     "(0 examples) is the separate square at the left."),
    ("composition", "Training data composition per scale."),
    ("loss_curves", "Training loss per scale."),
    ("judge_spread", "Judge agreement across repeated runs."),
]

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}
tr.overall td{font-weight:600;background:#fafafa}
img{max-width:100%;border:1px solid #eee}figure{margin:1em 0}figcaption{color:#555;font-size:13px}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;margin:2px 0;max-height:22em;overflow:auto}
ul.findings li{margin:.35em 0}
.agrees{color:#1a7f37}.disagrees{color:#b42318}.cannot{color:#8a6d00}.note{color:#555}.warn{color:#8a6d00}
"""

_SECRET = re.compile(r"(api[_-]?key|apikey|secret|password|passwd|access[_-]?token|auth[_-]?token|hf[_-]?token)", re.I)


def _e(x) -> str:
    """Escaped text of anything (None -> empty)."""
    return html.escape("" if x is None else str(x), quote=True)


def _num(x, fmt="{:.3f}") -> str:
    return "&ndash;" if x is None else _e(fmt.format(x))


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


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    """HTML table; cells are already-escaped HTML."""
    out = ["<table><thead><tr>", *(f"<th>{h}</th>" for h in header), "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _model_head(m: str) -> str:
    return "base (0)" if m == "base" else _e(m)


def _headline(res: dict) -> str:
    table = res.get("table", [])
    models = model_order(res.get("models") or {r["model"] for r in table})
    cell = {(r["category"], r["model"]): r for r in table}
    cats = [c for c in res.get("categories", []) if c not in (OVERALL, OVERALL_ITEMS)] + [OVERALL, OVERALL_ITEMS]
    rows, classes = [], []
    for c in cats:
        row = [f"<td>{_e(display_name(c))}</td>"]
        for m in models:
            r = cell.get((c, m))
            if r is None or r.get("mean") is None:
                row.append('<td class="num">&ndash;</td>')
                continue
            nulls = f", {r['n_null']} null" if r.get("n_null") else ""
            row.append(f'<td class="num">{_num(r["mean"], "{:.2f}")} '
                       f'<small>[{_num(r.get("ci_low"), "{:.2f}")}, {_num(r.get("ci_high"), "{:.2f}")}]</small>'
                       f'<br><small>n={_e(r.get("n"))}{_e(nulls)}</small></td>')
        rows.append(row)
        classes.append("overall" if c in (OVERALL, OVERALL_ITEMS) else "")
    head = ["Use case"] + [f"{_model_head(m)}" for m in models]
    return (
        "<p>Mean judge score (0&ndash;1) per use case and model (column: training examples), "
        "95% bootstrap CI over items in brackets, n = items scored. <b>The headline <i>Overall</i> is the "
        "mean over use cases</b> (each use case weighs the same, as in the paper); <i>Overall (per item)</i> "
        "is the mean over all items. Failed judgments (null) are counted, never scored as 0.</p>"
        + _table(head, rows, classes))


def _left_out(section: str, why: str) -> str:
    """The one line that stands for a section with nothing to show."""
    return f'<p class="note"><b>{_e(section)}</b>: left out &mdash; {_e(why)}.</p>'


def _findings(res: dict) -> str:
    items = res.get("findings")
    if items is None:  # a results.json written before findings existed
        items = findings(res)
    if not items:
        return _left_out("Findings", "no trend could be computed (fewer than two trained scales were judged)")
    return "<ul class=\"findings\">" + "".join(f"<li>{_e(t)}</li>" for t in items) + "</ul>"


def _interval(r: dict, key: str, fmt: str = "{:.2f}") -> str:
    if r.get(key) is None:
        return "&ndash;"
    return (f"{_num(r[key], fmt)} <small>[{_num(r.get(key + '_ci_low'), fmt)}, "
            f"{_num(r.get(key + '_ci_high'), fmt)}]</small>")


def _curves(res: dict) -> str:
    """The forecast table: per use case the chosen form, the 10x forecast, the ceiling and why."""
    rows, classes = [], []
    for r in res.get("curves") or []:
        verdict = r.get("verdict") or "cannot tell"
        fc = _interval(r, "forecast") + (" <small>(capped at 1)</small>" if r.get("forecast_capped") else "")
        rows.append(_strategy_cell(res, r) + [
            f"<td>{_e(display_name(r['category']))}</td>",
            f'<td class="{"cannot" if verdict == "cannot tell" else ""}">{_e(verdict)}</td>',
            f'<td class="num">{_e("{:,}".format(int(r["forecast_examples"]))) if r.get("forecast_examples") else "&ndash;"}</td>',
            f'<td class="num">{fc}</td>', f'<td class="num">{_interval(r, "ceiling")}</td>',
            f'<td class="num">{_interval(r, "n90", "{:,.0f}")}</td>',
            f"<td><small>{_e(r.get('reason'))}</small></td>"])
        classes.append("overall" if r["category"] == OVERALL else "")
    if not rows:
        return _left_out("Scaling curves", "results.json has no curves (rerun the analysis stage)")
    return ("<p>Per use case, log-linear (score = a + b log10 n) and saturating (score = c &minus; k n<sup>&minus;"
            "&alpha;</sup>) curves are fitted to the trained scales and chosen between, and against a flat line, by "
            "how well each predicts a scale left out; a curve must also rise (or fall) across the scales with a 95% "
            "interval that excludes 0, else <i>cannot tell</i>. The base model is not fitted (log10 0 is undefined). "
            "<b>Forecasts are extrapolations</b> to 10&times; the largest scale, with 95% bootstrap intervals over "
            "items; the ceiling and the examples needed to reach 90% of it exist only where the saturating form "
            "was chosen.</p>"
            + _table(_strategy_head(res) + ["Use case", "Chosen form", "Forecast at", "Forecast (extrapolation)",
                                            "Ceiling", "Examples to 90% of ceiling", "Why"], rows, classes))


def _strategy_cell(res: dict, r: dict) -> list[str]:
    """A leading Strategy cell in a strategy grid, nothing otherwise."""
    return [f"<td>{_e(r.get('strategy'))}</td>"] if res.get("strategies") else []


def _strategy_head(res: dict) -> list[str]:
    return ["Strategy"] if res.get("strategies") else []


def _trends(res: dict) -> str:
    s = res.get("settings", {})
    rows = []
    for r in res.get("trends", []):
        rows.append(_strategy_cell(res, r) + [f"<td>{_e(display_name(r['category']))}</td>",
                     f'<td class="num">{_num(r.get("slope"), "{:+.3f}")}</td>',
                     f'<td class="num">[{_num(r.get("ci_low"), "{:+.3f}")}, {_num(r.get("ci_high"), "{:+.3f}")}]</td>',
                     f"<td>{_e(r.get('label'))}</td>",
                     f'<td class="num">{_num(r.get("base_mean"), "{:.2f}")}</td>',
                     f'<td class="num">{_num(r.get("first_mean"), "{:.2f}")}</td>',
                     f'<td class="num">{_num(r.get("last_mean"), "{:.2f}")}</td>'])
    intro = (f"<p>Slope of the mean score against log10(training examples) over the trained scales "
             f"(score per tenfold more data; the base model is left out because log10(0) is undefined). "
             f"Improving: CI lower bound &gt; {_e(s.get('improve'))}; declining: CI upper bound &lt; "
             f"&minus;{_e(s.get('decline'))}; otherwise plateau.</p>")
    t = _table(_strategy_head(res) + ["Use case", "Slope / 10&times;", "95% CI", "Label", "Base", "First scale",
                                      "Last scale"], rows)
    comp = []
    for r in res.get("paper_comparison", []):
        cls = {"agrees": "agrees", "disagrees": "disagrees"}.get(r.get("verdict"), "cannot")
        comp.append(_strategy_cell(res, r) + [f"<td>{_e(r.get('name') or display_name(r['category']))}</td>",
                     f"<td>{_e(r.get('claim'))}</td>", f"<td>{_e(r.get('label'))}</td>",
                     f'<td class="{cls}">{_e(r.get("verdict"))}</td>', f"<td>{_e(r.get('reason'))}</td>"])
    return (intro + t + "<h3>Against the paper's claims</h3>"
            + _table(_strategy_head(res) + ["Use case", "Paper says", "Our label", "Verdict", "Why"], comp))


def _versus(res: dict) -> str:
    """The strategy grid's question: at equal data, does a selection strategy beat the reference?"""
    rows = res.get("strategy_comparison") or []
    if not rows:
        return _left_out("Selection strategies at equal data",
                         "this study trains with one selection strategy; a strategy grid compares them")
    ref = rows[0].get("reference")
    cells, classes = [], []
    for r in rows:
        sign = "" if not r.get("significant") else ("agrees" if (r.get("diff") or 0) > 0 else "disagrees")
        cells.append([f'<td class="num">{_e("{:,}".format(r["examples"]))}</td>', f"<td>{_e(r['strategy'])}</td>",
                      f"<td>{_e(display_name(r['category']))}</td>",
                      f'<td class="num {sign}">{_num(r.get("diff"), "{:+.3f}")}</td>',
                      f'<td class="num">[{_num(r.get("ci_low"), "{:+.3f}")}, {_num(r.get("ci_high"), "{:+.3f}")}]</td>',
                      f'<td class="num">{_e(r.get("n_pairs"))}</td>'])
        classes.append("overall" if r["category"] == OVERALL else "")
    same = "".join(
        f"<p class=\"warn\"><b>{_e(d['strategy'])}</b> trained on the same items in the same order as "
        f"<b>{_e(d['same_as'])}</b> at {_e(', '.join('{:,}'.format(n) for n in d['scales']))} examples (its "
        "selection changed nothing in this pool), so its rows there are 0 by construction, not a finding.</p>"
        for d in res.get("identical_subsets") or [])
    return ("<h2>Selection strategies at equal data</h2>"
            f"<p>Score of each strategy minus <b>{_e(ref)}</b> on the same items at the same number of training "
            "examples (paired bootstrap 95% CI). Green or red: the CI excludes 0.</p>" + same
            + _table(["Examples", "Strategy", "Use case", f"Change vs {_e(ref)}", "95% CI", "Items"], cells, classes))


def _changes(res: dict) -> str:
    rows = []
    for r in res.get("changes", []):
        rows.append([f"<td>{_e(display_name(r['category']))}</td>",
                     f"<td>{_model_head(r['from'])} &rarr; {_model_head(r['to'])}</td>",
                     f'<td class="num">{_num(r.get("diff"), "{:+.3f}")}</td>',
                     f'<td class="num">[{_num(r.get("ci_low"), "{:+.3f}")}, {_num(r.get("ci_high"), "{:+.3f}")}]</td>',
                     f'<td class="num">{_e(r.get("n_pairs"))}</td>',
                     f"<td>{'yes' if r.get('significant') else ''}</td>"])
    return ("<details><summary>Paired change between consecutive models (same items, paired bootstrap CI)"
            "</summary>" + _table(["Use case", "Step", "Change", "95% CI", "Items", "CI excludes 0"], rows)
            + "</details>")


def _has_spread(res: dict) -> bool:
    return any((r.get("n_items") or 0) > 0 for r in res.get("judge_spread") or [])


def _spread(res: dict) -> str:
    if not _has_spread(res):
        runs = max([r.get("runs") or 0 for r in res.get("judge_spread") or []], default=0)
        ran = "once" if runs <= 1 else f"{runs} times, but no item has two scored runs"
        return _left_out("Judge agreement across repeated runs",
                         f"the judge ran {ran} per item, so there is no spread across runs to show")
    rows = []
    for r in res.get("judge_spread", []):
        rows.append([f"<td>{_e(display_name(r['category']))}</td>", f'<td class="num">{_e(r.get("runs"))}</td>',
                     f'<td class="num">{_e(r.get("n_items"))}</td>',
                     f'<td class="num">{_num(r.get("mean_std"))}</td>',
                     f'<td class="num">{_num(r.get("share_disagree"), "{:.2f}")}</td>'])
    return "<h2>Judge spread</h2>" + _table(["Use case", "Runs", "Items with &ge;2 runs", "Mean std across runs",
                                             "Share of items with runs differing by &gt; 0.1"], rows)


def _agreement(res: dict) -> str:
    """Each other judge against the headline judge per use case, then the answers they disagree on most."""
    a = res.get("judge_agreement") or {}
    if not a.get("others"):
        return _left_out("Judges checked against each other",
                         "the study has one judge; list another under judge.others (the offline judge beside an "
                         "LLM judge, or a second LLM) to see per use case how far they agree")
    head, apart = a.get("headline"), a.get("apart")
    out = ["<h2>Judges checked against each other</h2>",
           f"<p>Every judge scored the same answers (each model's answer to each eval item); the headline judge "
           f"<b>{_e(head)}</b> is set against each other judge per use case: rank correlation over answers "
           "(Spearman's &rho;, Kendall's &tau;-b, which allows for tied scores), the mean absolute difference, and "
           f"the share of answers whose scores differ by more than {_e(apart)}. <i>Overall</i> pools every answer. "
           "&ndash; : a correlation is undefined (under two answers, or a judge that gives them all one score). "
           "Answers either judge left null are not compared (column Null).</p>"]
    for name in a["others"]:
        rows, classes = [], []
        for r in (x for x in a.get("table") or [] if x.get("judge") == name):
            rows.append([f"<td>{_e(display_name(r['category']))}</td>", f'<td class="num">{_e(r.get("n"))}</td>',
                         f'<td class="num">{_num(r.get("spearman"), "{:+.2f}")}</td>',
                         f'<td class="num">{_num(r.get("kendall"), "{:+.2f}")}</td>',
                         f'<td class="num">{_num(r.get("mad"), "{:.2f}")}</td>',
                         f'<td class="num">{_num(r.get("share_apart"), "{:.2f}")}</td>',
                         f'<td class="num">{_num(r.get("mean_headline"), "{:.2f}")}</td>',
                         f'<td class="num">{_num(r.get("mean_other"), "{:.2f}")}</td>',
                         f'<td class="num">{_e(r.get("n_null"))}</td>'])
            classes.append("overall" if r["category"] == OVERALL else "")
        out.append(f"<h3>{_e(head)} (headline) against {_e(name)}</h3>")
        out.append(_table(["Use case", "Answers", "Spearman &rho;", "Kendall &tau;-b", "Mean |difference|",
                           f"Share differing by &gt; {_e(apart)}", f"Mean {_e(head)}", f"Mean {_e(name)}", "Null"],
                          rows, classes))
        out.append(_worst(a, head, name))
    return "".join(out)


def _worst(a: dict, head: str, name: str) -> str:
    """The answers two judges score furthest apart, per use case, side by side (every text escaped)."""
    worst = [w for w in a.get("disagreements") or [] if w.get("judge") == name]
    if not worst:
        return _left_out(f"Where {head} and {name} disagree most", "no answer was scored by both")
    rows = [[f"<td>{_e(display_name(w['category']))}</td>", f"<td>{_model_head(str(w.get('model')))}<br>"
             f"<small>{_e(w.get('id'))}</small></td>", f"<td><pre>{_e(w.get('question'))}</pre></td>",
             f"<td><pre>{_e(w.get('answer'))}</pre></td>", f'<td class="num">{_num(w.get("headline"), "{:.2f}")}</td>',
             f'<td class="num">{_num(w.get("other"), "{:.2f}")}</td>', f"<td><pre>{_e(w.get('headline_raw'))}</pre></td>",
             f"<td><pre>{_e(w.get('other_raw'))}</pre></td>"] for w in worst]
    return (f"<details><summary>Where {_e(head)} and {_e(name)} disagree most: the {_e(a.get('k'))} answers per use "
            "case with the largest difference</summary>"
            + _table(["Use case", "Model", "Question", "Answer", _e(head), _e(name), f"{_e(head)} says",
                      f"{_e(name)} says"], rows) + "</details>")


def _usage(res: dict) -> str:
    """Judge tokens and cost per judge model and per judge stage (model judged)."""
    u = res.get("judge_usage") or {}
    total = u.get("total") or {}
    if not total.get("requests"):
        return _left_out("Judge tokens and cost", "no judge API requests were made (the offline judge costs nothing)")

    def row(label, v):
        cells = ["{:,}".format(int(v.get(k) or 0)) for k in ("requests", "prompt_tokens", "completion_tokens")]
        cells.append("${:,.4f}".format(float(v.get("cost") or 0)))
        return [f"<td>{label}</td>"] + [f'<td class="num">{_e(c)}</td>' for c in cells]

    rows = [row(f"judge {_e(j)}", v) for j, v in (u.get("by_judge") or {}).items()]
    rows += [row(f"stage judge-{_e(m)}", v) for m, v in (u.get("by_model") or {}).items()]
    rows.append(row("<b>total</b>", total))
    return ("<h2>Judge tokens and cost</h2><p>Requests that got a reply (retries for a missing score included), tokens as reported by the "
            "endpoint, cost in USD at the config's prices. Replies taken from the judge cache on a rerun are "
            "counted once, when they were paid for.</p>"
            + _table(["", "Requests", "Input tokens", "Output tokens", "Cost"], rows,
                     [""] * (len(rows) - 1) + ["overall"]) + _served(u))


def _served(u: dict) -> str:
    """Which model answered each judge's requests, as the server named it, and its ``system_fingerprint``."""
    served = u.get("served") or {}
    if not served:
        return ""
    rows = [[f"<td>{_e(j)}</td>", f"<td>{_e(who)}</td>", f'<td class="num">{n:,}</td>']
            for j, counts in served.items() for who, n in counts.items()]
    return ("<p>The model that answered, as the server named it, and its system_fingerprint (a change of either "
            "between two studies means another judge answered):</p>"
            + _table(["Judge", "Served model / system_fingerprint", "Judgments"], rows))


def _errors(res: dict) -> str:
    ea = res.get("error_analysis") or {}
    items = res.get("lowest_items") or []
    if not items:
        return _left_out("Error analysis", "no judged item has a score to rank")
    out = ["<h2>Error analysis</h2>", f"<p>The {_e(ea.get('k'))} lowest-scoring items per use case for model "
           f"<b>{_model_head(str(ea.get('model')))}</b>, next to the base model's answer.</p>"]
    by_cat: dict[str, list] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    for cat, its in by_cat.items():
        out.append(f"<details><summary>{_e(display_name(cat))} ({len(its)})</summary>")
        for it in its:
            out.append(
                f"<table><tr><th>id</th><td>{_e(it.get('id'))} &mdash; score {_num(it.get('score'), '{:.2f}')}</td></tr>"
                f"<tr><th>Question</th><td><pre>{_e(it.get('question'))}</pre></td></tr>"
                f"<tr><th>Reference</th><td><pre>{_e(it.get('reference'))}</pre></td></tr>"
                f"<tr><th>Answer</th><td><pre>{_e(it.get('answer'))}</pre></td></tr>"
                f"<tr><th>Base answer</th><td><pre>{_e(it.get('base_answer'))}</pre></td></tr>"
                f"<tr><th>Judge</th><td><pre>{_e(it.get('rationale'))}</pre></td></tr></table>")
        out.append("</details>")
    return "".join(out)


def _stage_times(stage_times: dict) -> str:
    rows = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, vv in v.items():
                walk(f"{prefix} / {k}" if prefix else str(k), vv)
        else:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                val = f"{v:,.1f} s" + (f" ({v / 60:.1f} min)" if v >= 120 else "")
            else:
                val = "" if v is None else str(v)
            rows.append([f"<td>{_e(prefix)}</td>", f'<td class="num">{_e(val)}</td>'])

    walk("", stage_times or {})
    return _table(["Stage", "Time"], rows) if rows else "<p>No stage times recorded.</p>"


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
            links.append(f'<li><a href="{_e(name)}">{_e(name)}</a></li>')

    fig_dir = study_dir / "figures"
    pngs = {p.stem: p for p in sorted(fig_dir.glob("*.png"))} if fig_dir.is_dir() else {}
    if not _has_spread(res):
        pngs.pop("judge_spread", None)  # nothing to show: its section says why in one line
    captions = dict([HEADLINE, *FIGURES])

    def figure(name: str) -> str:
        _copy(pngs[name], report_dir / "figures" / pngs[name].name)
        src = "figures/" + pngs[name].name
        return (f'<figure><img src="{_e(src)}" alt="{_e(name)}">'
                f"<figcaption>{_e(captions.get(name, name))}</figcaption></figure>")

    headline = figure(HEADLINE[0]) if HEADLINE[0] in pngs else ""
    order = [n for n, _ in FIGURES if n in pngs] + [n for n in pngs if n not in captions]
    figs = [figure(name) for name in order]

    nb = []
    for n in notebooks or []:
        href, t = n.get("href"), n.get("title") or n.get("href")
        if href and (report_dir / href).is_file():
            nb.append(f'<li><a href="{_e(href)}">{_e(t)}</a></li>')
        else:
            nb.append(f'<li>{_e(t)} <span class="note">(not rendered)</span></li>')

    judges = (res.get("judges") or {}).get("all") or []
    others = (res.get("judge_agreement") or {}).get("others") or []
    judge_note = ""
    if "offline" in judges:
        judge_note = (" The offline judge scores answers against the reference without an LLM (one run per "
                      "item), so its numbers are not comparable with the paper's ChatGPT scores.")
    nulls = res.get("null_counts") or {}
    missing = {m: n for m, n in (res.get("missing_judgments") or {}).items() if n}
    engines = "; ".join(f"{m}: {g.get('backend')} ({g.get('engine')}{', ' + g['device'] if g.get('device') else ''})"
                        for m, g in ((manifest or {}).get("generation") or {}).items())
    manifest_json = json.dumps(_redact(manifest or {}), indent=2, ensure_ascii=False, default=str, sort_keys=True)

    code_note = code_execution_note(res.get("code_execution"))
    body = [
        f"<h1>{_e(title)}</h1>",
        *([f'<p class="{"warn" if "NOT run" in code_note or "WITHOUT" in code_note else "note"}">'
           f"{_e(code_note)}</p>"] if code_note else []),
        f"<p>Scores produced by judge: <b>{_e(', '.join(judges) or 'unknown')}</b>.{_e(judge_note)} "
        + (f"Checked against: {_e(', '.join(others))} (section Judges checked against each other). " if others else "")
        + f"Null judgments: {_e(nulls.get('total', 0))} of {_e(nulls.get('judgments', 0))}."
        + (f" Items without any judgment: {_e(missing)}." if missing else "")
        + (f" Answers generated by: {_e(engines)}." if engines else "") + "</p>",
        "<h2>Findings</h2>", _findings(res), headline,
        "<h2>Scores per use case</h2>", _headline(res),
        "<h2>Scaling curves and forecasts</h2>", _curves(res),
        "<h2>Figures</h2>", "".join(figs) or "<p>No figures found.</p>",
        "<h2>Trends with the amount of data</h2>", _trends(res), _changes(res), _versus(res),
        _spread(res), _agreement(res), _usage(res), _errors(res),
        "<h2>Notebooks</h2>", f"<ul>{''.join(nb)}</ul>" if nb else "<p>None listed.</p>",
        "<h2>Data</h2>", f"<ul>{''.join(links)}</ul>" if links else "<p>No results files.</p>",
        "<h2>Stage times</h2>", _stage_times(stage_times),
        "<h2>Provenance</h2>",
        f"<details><summary>Manifest (config, seed, versions)</summary><pre>{_e(manifest_json)}</pre></details>",
    ]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    index = report_dir / "index.html"
    atomic_write_text(index, page)
    return index


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
