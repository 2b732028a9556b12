"""Stage 05 (``notebooks/05_analysis.ipynb``): what changed with more data, per use case, and the report.

Reads ``eval.jsonl``, ``data_stats.json``, ``answers/`` and ``judgments/`` of every model (and of
every judge) and the training logs; writes ``results.csv``, ``results.json`` and ``figures/``; ``report`` writes
``manifest.json`` and ``reports/<study>/index.html`` after every run of the study.

stage: ``stage.run(cfg, study_dir, models=None)`` -> the results (``results.json``'s content); ``models``
defaults to every model of the study with judgments.

    stage      the stage: every table into results.csv / results.json (``run``, ``write_results``)
    scores     judgments to item scores, category x model means with bootstrap CIs
    changes    paired changes between scales and between strategies
    trends     the trend per use case: slope per tenfold data and its label
    paper      the paper's Figure 1 and claims (paper_figure1.yaml, paper_claims.yaml) and our shapes against them
    curves     log-linear / logistic / saturating / flat fits per use case, the 10x forecast and the ceiling
    findings   the plain sentences at the top of the report
    items_needed  the eval items a use case that would close each open verdict, from its bootstrap interval
    agreement  each judge of ``judge.others`` against the headline judge, per use case
    bootstrap  seeded percentile bootstrap over items
    figures    the paper's Figure 1 layout, the paper beside this study, and the other PNGs
    report     the HTML report (templates/, Jinja2 with autoescape) and the study's manifest
"""
from helpers.analysis.stage import pretty_table, run, write_results

__all__ = ["run", "write_results", "pretty_table"]
