"""The LLM judge: an OpenAI-compatible chat model scores answers 0..1 with a rubric per use case.

After Ji et al. (2023), who had ChatGPT score each answer against a per-use-case rubric
and, where one exists, the reference answer, averaging three runs. Everything here
works with any OpenAI-compatible endpoint (``judge.base_url``: OpenAI, vLLM,
llama.cpp's server, ...).

Prompts
    ``judge.prompts_file`` (default ``configs/judge_prompts.jsonl``, written for this
    project) holds one ``{"class": ..., "prompt": ...}`` object per line, BELLE's format,
    so a file in that format can replace ours. Labels are mapped to the canonical names
    (``helpers.study.categories``: "Open QA", "brainstorm", "数学" ...); an unknown label, a
    label given twice or a use case of the eval set without a prompt is an error. The
    request is one user message: the rubric, then the question, the reference answer
    (left out for generation, brainstorming and rewrite, the use cases without one, and
    wherever the item has none) and the answer under 【问题】/【参考答案】/【待评回答】.
    The rubric asks for the score as ``得分：x``, read by ``helpers.judge.parse.parse_score``.

Requests
    ``helpers.openai_client.ChatEndpoint`` with the judge's settings (the ``judge`` section, or its
    entry of ``judge.others``, named so in every message): at most
    ``judge.concurrency`` requests in flight, up to ``judge.max_retries`` retries with
    backoff after a 429, a 5xx, a timeout or a dropped connection, a stop without retries
    on a refused key, a wrong model or an exhausted quota (the rules are that module's,
    shared with the self-instruct stage's teacher). The run index is sent as ``seed``. The
    key is read from the environment variable named by ``judge.api_key_env`` only, checked
    before any request, and never written or printed.

Nulls
    A reply without a readable score is asked again up to ``judge.parse_retries`` times,
    then stored as ``score: null`` with the last reply as ``raw`` and a ``reason``. A
    request that still fails after its retries is stored the same way (reason
    "request failed ..."); more than ``judge.max_failures`` of those stop the stage with
    an error *without* writing the judgments file: run it again and only the missing
    requests are sent. A null is never a 0.

Cache
    Every completed request (a reply received, with or without a score) is appended to
    ``judge_cache/<judge model>.jsonl`` under the study folder (a judge of ``judge.others``:
    ``judge_cache/<its name>/<judge model>.jsonl``, so judges never share a cache), one line per reply
    ``{key, attempt, id, run, text, usage, time}``, flushed at once and fsynced right
    behind (``helpers.openai_client.RequestCache``), keyed by the sha256 of
    (judge model, temperature, prompt template, question, reference as sent, answer,
    run index). A rerun, or a run resumed
    after a kill, takes those replies from the cache and never sends a request whose
    reply is cached (only replies in flight when the process is killed, at most
    ``judge.concurrency``, are lost and asked again: tests/end_to_end/test_chaos.py counts them);
    a torn last line left by a kill is dropped on read. Scores are
    parsed again from the cached text, so a better parser needs no new requests. Keep to
    one judge process per study at a time (the cache file has a single writer).

Usage
    Each judgment row's ``usage`` sums its requests: ``requests``, ``prompt_tokens``,
    ``completion_tokens`` and ``cost`` (USD, from ``judge.price_per_1k_input/output``).
    Cached replies carry their original usage, so a rerun writes the same rows.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

from helpers.judge.parse import parse_score
from helpers.judge.prompts import load_judge_prompts
from helpers.openai_client import ChatEndpoint, RequestCache, RequestFailed, check_api_key, run_coroutine
from helpers.study.categories import canonical_category
from helpers.study.config import StudyConfig
from helpers.study.judges import Judge, study_judges
from helpers.study.paths import resolve
from helpers.study.records import DataError

NO_REFERENCE = frozenset({"generation", "brainstorming", "rewrite"})
"""The paper's use cases judged without a reference answer."""


class JudgeError(RuntimeError):
    """The judge cannot run or must stop (missing key, refused key, wrong model, bad prompts file)."""


class JudgeIncomplete(JudgeError):
    """More requests failed than ``judge.max_failures`` allows; rerun to send only those again."""


def _pick(cfg: StudyConfig, judge: Judge | None) -> Judge:
    """``judge``, or the headline judge when None (every function here serves any judge of the study)."""
    return judge or study_judges(cfg)[0]


def judge_key(cfg: StudyConfig, judge: Judge | None = None) -> str:
    """The judge's API key from the environment variable named by its ``api_key_env``; JudgeError if unset."""
    j = _pick(cfg, judge)
    return check_api_key(j.settings, j.section, "the LLM judge", JudgeError)


def load_prompts(path: str | Path, section: str = "judge") -> dict[str, str]:
    """``{canonical category: rubric prompt}`` from a ``{class, prompt}`` JSONL file (BELLE's format).

    Labels are mapped by ``helpers.data.loaders``; unknown labels, a second prompt for the same use
    case or an empty prompt stop the stage with the file and record named; ``section`` is the judge's config
    section, named in the message (``judge``, ``judge.others.gpt``).
    """
    path = resolve(path)
    if not path.is_file():
        raise JudgeError(f"{section}.prompts_file: {path} not found")
    try:
        records, _ = load_judge_prompts(path)
    except DataError as e:
        raise JudgeError(str(e)) from None
    return {r["category"]: r["prompt"].strip() for r in records}


def uses_reference(item: dict) -> bool:
    cat = canonical_category(item.get("category")) or item.get("category")
    return cat not in NO_REFERENCE and bool(str(item.get("reference") or "").strip())


def build_prompt(template: str, item: dict, answer: str) -> str:
    """The one user message: rubric, question, reference (where used), answer."""
    parts = [template.strip(), "", "【问题】", str(item["question"]).strip(), ""]
    if uses_reference(item):
        parts += ["【参考答案】", str(item["reference"]).strip(), ""]
    parts += ["【待评回答】", str(answer).strip() or "（空回答）"]
    return "\n".join(parts)


def request_key(cfg: StudyConfig, template: str, item: dict, answer: str, run: int, judge: Judge | None = None) -> str:
    """sha256 of what makes a request: judge model, temperature, template, question, reference, answer, run."""
    j = _pick(cfg, judge).settings
    parts = {"model": j.model, "temperature": j.temperature, "template": template.strip(),
             "question": str(item["question"]), "reference": str(item.get("reference") or "") if uses_reference(item)
             else None, "answer": str(answer), "run": int(run)}
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def cache_path(cfg: StudyConfig, study_dir: Path, judge: Judge | None = None) -> Path:
    """The judge's reply cache: ``judge_cache/<model>.jsonl``, in a folder of its own for judges of ``judge.others``
    (two judges asking the same model with other settings never share a file)."""
    j = _pick(cfg, judge)
    return j.cache_dir(study_dir) / f"{j.settings.cache_name('judge')}.jsonl"


class _Judge:
    def __init__(self, cfg: StudyConfig, judge: Judge, key: str, prompts: dict[str, str], cache: RequestCache,
                 progress=None):
        self.cfg, self.judge, self.j = cfg, judge, judge.settings
        self.prompts, self.cache, self.progress = prompts, cache, progress
        self.api = ChatEndpoint(self.j, key, section=judge.section, what="judge", error=JudgeError)
        self.cached = 0     # judgments taken whole from the cache
        self.failed = 0     # judgments whose request gave up
        self.failures: list[str] = []

    async def call(self, prompt: str, run: int) -> tuple[str, dict, dict]:
        """One request with retries; returns (reply text, usage, who answered: ``served_model`` and
        ``system_fingerprint``) or raises RequestFailed / JudgeError."""
        r = await self.api.complete(prompt, run, temperature=self.j.temperature, max_tokens=self.j.max_tokens)
        return r.text, r.usage, {"served_model": r.served_model, "system_fingerprint": r.system_fingerprint}

    def _usage(self, recs: list[dict]) -> dict:
        pi = sum(int(r["usage"].get("prompt_tokens", 0)) for r in recs)
        po = sum(int(r["usage"].get("completion_tokens", 0)) for r in recs)
        cost = self.j.cost(pi, po)
        return {"requests": len(recs), "prompt_tokens": pi, "completion_tokens": po, "cost": round(cost, 8)}

    def _row(self, item_id, run, score, raw, recs, reason=None) -> dict:
        row = {"id": item_id, "run": run, "score": score, "raw": raw, "judge": self.j.model, "usage": self._usage(recs)}
        if recs:  # the model that answered the reply this row keeps (from the cache: the one that answered then)
            row["served_model"] = recs[-1].get("served_model")
            row["system_fingerprint"] = recs[-1].get("system_fingerprint")
        if score is None:
            row["reason"] = reason
        return row

    async def judge_one(self, item: dict, answer: str, run: int) -> dict:
        row = await self._judge_one(item, answer, run)
        if self.progress is not None:
            self.progress.update(1)
        return row

    async def _judge_one(self, item: dict, answer: str, run: int) -> dict:
        template = self.prompts[canonical_category(item["category"]) or item["category"]]
        key = request_key(self.cfg, template, item, answer, run, self.judge)
        recs = list(self.cache.get(key))
        for i, r in enumerate(recs):
            score = parse_score(r["text"])
            if score is not None:
                self.cached += 1
                return self._row(item["id"], run, score, r["text"], recs[: i + 1])
        prompt = build_prompt(template, item, answer)
        max_replies = 1 + self.j.parse_retries
        if len(recs) >= max_replies:
            self.cached += 1
        while len(recs) < max_replies:
            try:
                text, usage, served = await self.call(prompt, run)
            except RequestFailed as e:
                self.failed += 1
                self.failures.append(f"{item['id']} run {run}: {e}")
                return self._row(item["id"], run, None, recs[-1]["text"] if recs else None, recs,
                                 reason=f"request failed: {e}")
            rec = {"key": key, "attempt": len(recs), "id": item["id"], "run": run, "text": text, "usage": usage,
                   **served, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            self.cache.add(rec)
            recs.append(rec)
            score = parse_score(text)
            if score is not None:
                return self._row(item["id"], run, score, text, recs)
        return self._row(item["id"], run, None, recs[-1]["text"], recs,
                         reason=f"no score found in {len(recs)} replies (parse_score)")

    async def judge_all(self, jobs: list[tuple[dict, str, int]]) -> list[dict]:
        tasks = [asyncio.ensure_future(self.judge_one(*job)) for job in jobs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            await self.api.close()


def judge_with_llm(cfg: StudyConfig, items: dict[str, dict], answers: list[dict], study_dir: Path,
                   which: Judge | None = None) -> list[dict]:
    """Judgment rows for ``answers`` by the LLM judge ``which`` (default: the headline judge), ``runs`` per
    answer, in answer order."""
    which = _pick(cfg, which)
    settings = which.settings
    key = judge_key(cfg, which)
    prompts = load_prompts(settings.prompts_file, which.section)
    cats = {canonical_category(it["category"]) or it["category"] for it in items.values()}
    missing = sorted(cats - set(prompts))
    if missing:
        raise JudgeError(f"{which.section}.prompts_file {resolve(settings.prompts_file)}: no prompt for use case(s) "
                         f"{missing} of eval.jsonl")
    cache = RequestCache(cache_path(cfg, study_dir, which))
    jobs = [(items[a["id"]], a.get("answer") or "", run) for a in answers for run in range(settings.runs)]
    from helpers.study.progress import ProgressBar

    t0 = time.perf_counter()
    with ProgressBar(total=len(jobs), desc=f"judge {which.name}", unit="req", mininterval=5) as bar:
        judge = None

        async def main():
            nonlocal judge
            judge = _Judge(cfg, which, key, prompts, cache, progress=bar)
            return await judge.judge_all(jobs)

        try:
            rows = run_coroutine(main)
        finally:
            cache.close()
    s = judge.api.stats
    cost = settings.cost(s.prompt_tokens, s.completion_tokens)
    nulls = sum(r["score"] is None for r in rows)
    print(f"judge {which.name} ({settings.model}): {len(rows)} judgments ({len(answers)} answers x {settings.runs} runs), "
          f"{nulls} null; {s.sent} requests answered now ({s.attempts} attempts, {s.retries} retries), "
          f"{judge.cached} judgments from the cache ({cache.path}); this session: {s.prompt_tokens} input + "
          f"{s.completion_tokens} output tokens, ${cost:.4f}; {time.perf_counter() - t0:.1f} s")
    if judge.failed > settings.max_failures:
        raise JudgeIncomplete(
            f"{judge.failed} of {len(rows)} judge requests failed after their retries ({which.section}.max_failures "
            f"is {settings.max_failures}), e.g. {judge.failures[:3]}. Every reply received is cached in {cache.path}: "
            f"run the stage again to send only the missing requests.")
    return rows
