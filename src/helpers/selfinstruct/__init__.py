"""Stage 00 (``notebooks/00_selfinstruct.ipynb``, only with ``data.source: generate``): the pool, written by a teacher.

Reads the seed tasks (``selfinstruct.seeds_file``) and the request template
(``selfinstruct.prompt_file``); writes ``generated.jsonl``, ``generated_dropped.jsonl`` (every
dropped task with its reason) and ``generated_stats.json``; replies are cached so a rerun never
pays twice.

stage: ``stage.run(cfg, study_dir, progress=True)`` -> the stats (``generated_stats.json``'s content).

    stage      the stage: the async request loop, resume, stats (``run``)
    seeds      the seed task file and the examples shown per request
    request    the teacher's request built from the template
    parse      the numbered tasks in a teacher's reply
    label      the use case of a generated task (keyword rules)
    filters    the checks a generated task must pass
    collector  parse, label, filter and de-duplicate each reply, keep count per reason
    tables     what the notebook shows: reasons, examples, dropped tasks
"""
from helpers.selfinstruct.stage import run
from helpers.selfinstruct.tables import dropped_examples, examples, read_stats, reason_table

__all__ = ["run", "read_stats", "reason_table", "examples", "dropped_examples"]
