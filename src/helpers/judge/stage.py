"""Stage 04: scoring every answer 0..1, one row per item per judge run.

Two judges write the same rows ``{id, run, score (0..1 or null), raw, judge, usage}``
to ``judgments/<model>.jsonl`` (atomically, at the end):

* ``judge.kind: offline`` (the default): deterministic, no network (``helpers.judge.offline``);
  it checks each answer against the item's machine-checkable ``check`` and reference,
  gives the same numbers every time and runs once (run 0); ``usage`` is ``{}``. Rows of
  code items (``python_tests`` checks) also carry ``code_execution``: how the answer's code ran
  (``"bubblewrap"``, ``"unshare"``, ``"unisolated"``, or ``"not run"`` with a null score; see
  ``helpers.judge.sandbox`` and ``judge.code_execution``).
* ``judge.kind: openai``: an LLM behind any OpenAI-compatible endpoint scores each
  answer with the rubric prompt of its use case, ``judge.runs`` times
  (``helpers.judge.llm``: concurrency, retries, the request cache, token usage and
  cost). Its reply is read by ``parse_score``; a reply without a readable score is
  stored as a null with the text and a ``reason``, never as 0.

Every judge of the study scores the same answers (``run``): the headline judge
(the ``judge`` section) into ``judgments/<model>.jsonl``, each judge of ``judge.others`` into
``judgments/<name>/<model>.jsonl`` (``helpers.study.judges``), so the analysis can set them against
each other (``helpers.analysis.agreement``) while every other table reads the headline judge's files.
"""
from __future__ import annotations

from pathlib import Path

from helpers.study.config import StudyConfig
from helpers.study.files import read_jsonl, write_jsonl
from helpers.study.judges import Judge, study_judges

OFFLINE = "offline"


def load_answers(cfg: StudyConfig, model_name: str, study_dir: Path) -> tuple[dict[str, dict], list[dict]]:
    """(eval items by id, answers in file order); every item answered, every answer an item."""
    items = {it["id"]: it for it in read_jsonl(study_dir / "eval.jsonl")}
    answers_file = study_dir / "answers" / f"{model_name}.jsonl"
    answers = read_jsonl(answers_file)
    missing = sorted(set(items) - {a["id"] for a in answers})
    if missing:
        raise ValueError(f"{answers_file}: {len(missing)} eval items have no answer, e.g. {missing[:5]}")
    seen = set()
    for i, a in enumerate(answers, start=1):
        if a["id"] not in items:
            raise ValueError(f"{answers_file}: line {i}: id {a['id']!r} is not in eval.jsonl")
        if a["id"] in seen:
            raise ValueError(f"{answers_file}: line {i}: id {a['id']!r} is answered twice")
        seen.add(a["id"])
    return items, answers


def judge_answers(cfg: StudyConfig, model_name: str, study_dir: Path, judge: Judge | None = None) -> Path:
    """Write one judge's judgments of the answers of ``model_name`` (``judge`` None: the headline judge's
    ``judgments/<model>.jsonl``); returns the file."""
    study_dir = Path(study_dir)
    judge = judge or study_judges(cfg)[0]
    settings = judge.settings
    if settings.kind == OFFLINE:
        items, answers = load_answers(cfg, model_name, study_dir)
        from helpers.judge.offline import score_answer
        from helpers.judge.sandbox import execution_mode

        setting = settings.code_execution
        from helpers.study.progress import report

        rows = []
        report(f"judge offline {model_name}", 0, len(answers), "answer")
        for a in answers:
            item = items[a["id"]]
            score, why = score_answer(item, a["answer"], code_execution=setting)
            row = {"id": a["id"], "run": 0, "score": score, "raw": why, "judge": OFFLINE, "usage": {}}
            if (item.get("check") or {}).get("type") == "python_tests":
                row["code_execution"] = execution_mode(setting)
            rows.append(row)
            report(f"judge offline {model_name}", len(rows), len(answers), "answer")
    else:
        from helpers.judge.llm import judge_key, judge_with_llm

        judge_key(cfg, judge)  # before reading anything, so a missing key fails fast
        items, answers = load_answers(cfg, model_name, study_dir)
        rows = judge_with_llm(cfg, items, answers, study_dir, judge)
    path = judge.judgments(study_dir, model_name)
    write_jsonl(path, rows)
    return path


def run(cfg: StudyConfig, study_dir: Path, model: str) -> dict[str, Path]:
    """Every judge of the study over the answers of ``model``: ``{judge name: judgments file}``, the
    headline judge first. Each LLM judge's key is checked before any judge starts, so a missing second key
    does not stop the stage after the first judge has spent its requests."""
    judges = study_judges(cfg)
    llm = [j for j in judges if j.settings.kind != OFFLINE]
    if llm:
        from helpers.judge.llm import judge_key

        for j in llm:
            judge_key(cfg, j)
    return {j.name: judge_answers(cfg, model, study_dir, j) for j in judges}
