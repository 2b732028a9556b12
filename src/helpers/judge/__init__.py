"""Stage 04 (``notebooks/04_judge.ipynb``): a 0..1 score for every answer.

Reads ``eval.jsonl``, ``answers/<model>.jsonl`` and, for an LLM judge, the rubric prompts file;
writes ``judgments/<model>.jsonl`` ``{id, run, score, raw, judge, usage}``, one row per item per
judge run (LLM replies are cached under ``judge_cache/``); each judge of ``judge.others`` writes
``judgments/<name>/<model>.jsonl`` beside them.

stage: ``stage.run(cfg, study_dir, model)`` -> ``{judge name: judgments file}``, the headline judge first.

    stage         the stage: every judge of the study over one model's answers (``run``; ``judge_answers``: one judge)
    offline       the offline judge: one scorer per kind of ``check``
    text_metrics  character F1 and ROUGE-L for Chinese text
    code          running an answer's code against the item's unit tests
    llm           the LLM judge: rubric prompts, requests, cache
    prompts       the rubric prompts file format
    parse         the score in a judge's reply (``parse_score``)
"""
from helpers.judge.parse import parse_score
from helpers.judge.stage import judge_answers, run

__all__ = ["run", "judge_answers", "parse_score"]
