"""The LLM judge: an OpenAI-compatible chat model scores answers 0..1 with a rubric per use case.

After Ji et al. (2023), who had ChatGPT score each answer against a per-use-case rubric
and, where one exists, the reference answer, averaging three runs. Everything here
works with any OpenAI-compatible endpoint (``judge.base_url``: OpenAI, vLLM,
llama.cpp's server, ...).

Prompts
    ``judge.prompts_file`` (default ``configs/judge_prompts.jsonl``, written for this
    project) holds one ``{"class": ..., "prompt": ...}`` object per line, BELLE's format,
    so a file in that format can replace ours. Labels are mapped to the canonical names
    (``helpers.categories``: "Open QA", "brainstorm", "数学" ...); an unknown label, a
    label given twice or a use case of the eval set without a prompt is an error. The
    request is one user message: the rubric, then the question, the reference answer
    (left out for generation, brainstorming and rewrite, the use cases without one, and
    wherever the item has none) and the answer under 【问题】/【参考答案】/【待评回答】.
    The rubric asks for the score as ``得分：x``, read by ``helpers.judge.parse_score``.

Requests
    ``openai.AsyncOpenAI`` with the SDK's own retries off (``max_retries=0``) and ours
    instead, so every attempt is counted: at most ``judge.concurrency`` requests in
    flight; a 429, a 5xx, a 408/409, a timeout or a dropped connection is retried up to
    ``judge.max_retries`` times after ``min(backoff_max_s, backoff_base_s * 2**k)``
    (jittered to 50..100%); a ``Retry-After``/``retry-after-ms`` header replaces that wait
    and also pauses every other request until it has passed. A 401/403 (key refused),
    a 404 (model or base_url wrong) or a 429 ``insufficient_quota`` stops the stage at
    once, without retries. A 400/422 fails that request only. The run index is sent as
    ``seed``. The key is read from the environment variable named by
    ``judge.api_key_env`` only, checked before any request, and never written or printed.
    ``ChatEndpoint`` implements these rules; the self-instruct stage's teacher uses it too
    (``helpers.selfinstruct``), as it uses ``RequestCache``.

Nulls
    A reply without a readable score is asked again up to ``judge.parse_retries`` times,
    then stored as ``score: null`` with the last reply as ``raw`` and a ``reason``. A
    request that still fails after its retries is stored the same way (reason
    "request failed ..."); more than ``judge.max_failures`` of those stop the stage with
    an error *without* writing the judgments file: run it again and only the missing
    requests are sent. A null is never a 0.

Cache
    Every completed request (a reply received, with or without a score) is appended to
    ``judge_cache/<judge model>.jsonl`` under the study folder, one line per reply,
    flushed at once and fsynced right behind (``RequestCache``), keyed by the sha256 of
    (judge model, temperature, prompt template, question, reference as sent, answer,
    run index). A rerun, or a run resumed
    after a kill, takes those replies from the cache and never sends a request whose
    reply is cached (only replies in flight when the process is killed, at most
    ``judge.concurrency``, are lost and asked again: tests/test_chaos.py counts them);
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
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai

from helpers.loaders import DataError, canonical_category, load_judge_prompts
from helpers.config import StudyConfig, resolve
from helpers.files import dumps, read_jsonl
from helpers.judge import parse_score

log = logging.getLogger(__name__)

NO_REFERENCE = frozenset({"generation", "brainstorming", "rewrite"})
"""The paper's use cases judged without a reference answer."""
RETRY_AFTER_CAP_S = 600.0
"""A Retry-After longer than this is cut to it (a misconfigured server must not stall the study for hours)."""


class JudgeError(RuntimeError):
    """The judge cannot run or must stop (missing key, refused key, wrong model, bad prompts file)."""


class JudgeIncomplete(JudgeError):
    """More requests failed than ``judge.max_failures`` allows; rerun to send only those again."""


class _RequestFailed(Exception):
    """One request gave up (non-retryable status or retries exhausted)."""


# ------------------------------------------------------------------------------------ set-up

def check_api_key(cfg: StudyConfig, section: str = "judge", who: str = "the LLM judge",
                  error: type[Exception] = None) -> str:
    """The key from the environment variable named by ``<section>.api_key_env``; a clear error if unset.

    ``section`` is the config section of the endpoint (``judge``, or ``selfinstruct`` for the teacher).
    """
    name = getattr(cfg, section).api_key_env
    key = (os.environ.get(name) or "").strip()
    if not key:
        raise (error or JudgeError)(
            f"{section}.api_key_env: the environment variable {name} is not set or empty; {who} reads its "
            f"API key from there only (export {name}=... before running the {section} stage; for a local server "
            f"without keys any placeholder value works)")
    return key


def load_prompts(path: str | Path) -> dict[str, str]:
    """``{canonical category: rubric prompt}`` from a ``{class, prompt}`` JSONL file (BELLE's format).

    Labels are mapped by ``helpers.loaders``; unknown labels, a second prompt for the same use
    case or an empty prompt stop the stage with the file and record named.
    """
    path = resolve(path)
    if not path.is_file():
        raise JudgeError(f"judge.prompts_file: {path} not found")
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


def request_key(cfg: StudyConfig, template: str, item: dict, answer: str, run: int) -> str:
    """sha256 of what makes a request: judge model, temperature, template, question, reference, answer, run."""
    parts = {"model": cfg.judge.model, "temperature": cfg.judge.temperature, "template": template.strip(),
             "question": str(item["question"]), "reference": str(item.get("reference") or "") if uses_reference(item)
             else None, "answer": str(answer), "run": int(run)}
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def cache_path(cfg: StudyConfig, study_dir: Path) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.judge.model).strip("._") or "judge"
    return Path(study_dir) / "judge_cache" / f"{slug}.jsonl"


# ------------------------------------------------------------------------------------ cache

class JsonlAppender:
    """Whole JSON lines appended to one file, flushed at once and fsynced behind the writes.

    Each ``write`` ends with a flush, so a killed process loses no line it wrote; a background
    thread fsyncs the file behind the writes (group commit: one fsync covers every line written
    since the last), so the disk's sync time (~2 ms here) never stalls the requests; ``close``
    fsyncs a last time. The file is opened on the first write.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None
        self._dirty = threading.Event()
        self._stop = False
        self._syncer: threading.Thread | None = None

    def write(self, records) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            self._syncer = threading.Thread(target=self._sync_loop, args=(self._fh.fileno(),),
                                            name=f"fsync-{self.path.name}", daemon=True)
            self._syncer.start()
        self._fh.write("".join(dumps(r) + "\n" for r in records))
        self._fh.flush()
        self._dirty.set()

    def _sync_loop(self, fd: int) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            if self._stop:
                return
            try:
                os.fsync(fd)
            except OSError:  # closed under us: close() syncs anyway
                return

    def close(self) -> None:
        if self._fh is not None:
            self._stop = True
            self._dirty.set()
            self._syncer.join()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


class RequestCache:
    """Append-only JSONL of completed requests: ``{key, attempt, id, run, text, usage, time}`` per line
    (``JsonlAppender``: a killed process loses no reply it got; a torn last line is dropped on read)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, list[dict]] = {}
        if self.path.exists():
            for rec in read_jsonl(self.path, tolerate_torn_tail=True):
                self.entries.setdefault(rec["key"], []).append(rec)
        self._out = JsonlAppender(self.path)

    def get(self, key: str) -> list[dict]:
        return self.entries.get(key, [])

    def add(self, rec: dict) -> None:
        self._out.write([rec])
        self.entries.setdefault(rec["key"], []).append(rec)

    def close(self) -> None:
        self._out.close()


# ------------------------------------------------------------------------------------ requests

def retry_after_s(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), capped."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return min(RETRY_AFTER_CAP_S, max(0.0, float(value) / scale))
        except ValueError:
            pass
        if name == "retry-after":
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return min(RETRY_AFTER_CAP_S, max(0.0, email.utils.mktime_tz(parsed) - time.time()))
    return None


def classify(err: openai.APIError) -> tuple[str, float | None, str]:
    """``(what, retry_after, reason)`` with what in fatal / retry / fail."""
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        wait = retry_after_s(getattr(err.response, "headers", None))
        if status in (401, 403):
            return "fatal", None, f"HTTP {status}"
        if status == 404:
            return "fatal", None, "HTTP 404"
        if status == 429 and (err.code == "insufficient_quota" or (err.type or "") == "insufficient_quota"):
            return "fatal", None, "HTTP 429 insufficient_quota"
        if status == 429 or status >= 500 or status in (408, 409):
            return "retry", wait, f"HTTP {status}"
        body = err.body if isinstance(err.body, dict) else {}
        msg = body.get("message") or re.sub(r"^Error code: \d+ - ", "", str(err.message))
        return "fail", None, f"HTTP {status}: {str(msg)[:200]}"
    if isinstance(err, openai.APITimeoutError):
        return "retry", None, "timeout"
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__
        return "retry", None, f"connection error ({type(cause).__name__ if cause else 'no response'})"
    return "fail", None, f"{type(err).__name__}"


@dataclass
class Stats:
    sent: int = 0          # requests that got a reply in this session
    attempts: int = 0      # every HTTP attempt in this session
    retries: int = 0
    cached: int = 0        # judgments taken whole from the cache
    failed: int = 0        # judgments whose request gave up
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: list = field(default_factory=list)


@dataclass
class Reply:
    """One completed chat request: the reply text, its token usage and why the model stopped."""
    text: str
    usage: dict
    finish_reason: str | None = None


class ChatEndpoint:
    """One OpenAI-compatible chat endpoint under the request rules of this module (see Requests).

    Shared by the judge and the self-instruct stage's teacher: ``settings`` is that stage's config
    section (``model``, ``base_url``, ``concurrency``, ``timeout_s``, ``max_retries``,
    ``backoff_base_s``, ``backoff_max_s``, ``api_key_env``), ``section`` its name and ``what`` the
    word for the endpoint in messages ("judge", "teacher"); a stop raises ``error``.
    """

    def __init__(self, settings, key: str, section: str = "judge", what: str = "judge",
                 error: type[Exception] = None):
        self.s, self.section, self.what, self.error = settings, section, what, error or JudgeError
        self.client = openai.AsyncOpenAI(api_key=key, base_url=settings.base_url, max_retries=0,
                                         timeout=settings.timeout_s)
        self.sem = asyncio.Semaphore(settings.concurrency)
        self.pause_until = 0.0
        self.fatal: Exception | None = None
        self.stopped = False  # set by a caller that has what it needs: attempts not yet sent are not sent
        self.stats = Stats()
        self._redact = lambda text: text.replace(key, "***")  # server messages may echo the key

    def _where(self) -> str:
        return self.s.base_url or "the OpenAI API"

    async def _paused(self) -> None:
        loop = asyncio.get_running_loop()
        while (d := self.pause_until - loop.time()) > 0:
            await asyncio.sleep(d)

    async def complete(self, prompt: str, seed: int, **params) -> Reply:
        """One request with retries; returns the ``Reply`` or raises _RequestFailed / ``self.error``.

        ``params`` go to ``chat.completions.create`` as they are (temperature, max_tokens, top_p).
        """
        s = self.s
        loop = asyncio.get_running_loop()
        for attempt in range(s.max_retries + 1):
            await self._paused()
            async with self.sem:
                await self._paused()
                if self.fatal is not None:  # another request hit a stop: send nothing more
                    raise self.fatal
                if self.stopped:
                    raise _RequestFailed("not sent: the caller stopped")
                self.stats.attempts += 1
                try:
                    resp = await self.client.chat.completions.create(
                        model=s.model, messages=[{"role": "user", "content": prompt}], seed=seed, **params)
                except openai.APIError as e:
                    what, wait, reason = classify(e)
                    reason = self._redact(reason)
                else:
                    choice = resp.choices[0] if resp.choices else None
                    text = (choice.message.content if choice else None) or ""
                    u = resp.usage
                    usage = {"prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
                             "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0)}
                    self.stats.sent += 1
                    self.stats.prompt_tokens += usage["prompt_tokens"]
                    self.stats.completion_tokens += usage["completion_tokens"]
                    return Reply(text, usage, getattr(choice, "finish_reason", None))
                if what == "fatal":  # set before the slot is released, so no queued request goes out
                    self.fatal = self.fatal or self._fatal_error(reason)
                    raise self.fatal
            if what == "fail":
                raise _RequestFailed(f"{reason} (not retried)")
            if attempt == s.max_retries:
                raise _RequestFailed(f"{reason} after {attempt + 1} attempts")
            if wait is None:
                wait = min(s.backoff_max_s, s.backoff_base_s * 2 ** attempt) * random.uniform(0.5, 1.0)
            else:  # Retry-After: everyone waits
                self.pause_until = max(self.pause_until, loop.time() + wait)
            self.stats.retries += 1
            log.info("%s request: %s, retry %d of %d in %.2f s", self.what, reason, attempt + 1, s.max_retries, wait)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _fatal_error(self, reason: str) -> Exception:
        where, sec = self._where(), self.section
        if reason.startswith(("HTTP 401", "HTTP 403")):
            return self.error(
                f"the {self.what} endpoint ({where}) refused the API key from ${self.s.api_key_env} "
                f"({reason}); check the key and its permissions. Stopped without retrying.")
        if reason == "HTTP 404":
            return self.error(f"the {self.what} endpoint ({where}) answered 404: check {sec}.model "
                              f"({self.s.model!r}) and {sec}.base_url. Stopped without retrying.")
        return self.error(f"the {self.what} endpoint ({where}) says the account's quota is used up "
                          f"({reason}). Stopped without retrying.")

    async def close(self) -> None:
        await self.client.close()


class _Judge:
    def __init__(self, cfg: StudyConfig, key: str, prompts: dict[str, str], cache: RequestCache, progress=None):
        self.cfg, self.j = cfg, cfg.judge
        self.prompts, self.cache, self.progress = prompts, cache, progress
        self.api = ChatEndpoint(self.j, key)
        self.stats = self.api.stats

    async def call(self, prompt: str, run: int) -> tuple[str, dict]:
        """One request with retries; returns (reply text, usage) or raises _RequestFailed / JudgeError."""
        r = await self.api.complete(prompt, run, temperature=self.j.temperature, max_tokens=self.j.max_tokens)
        return r.text, r.usage

    def _usage(self, recs: list[dict]) -> dict:
        pi = sum(int(r["usage"].get("prompt_tokens", 0)) for r in recs)
        po = sum(int(r["usage"].get("completion_tokens", 0)) for r in recs)
        cost = pi / 1000 * self.j.price_per_1k_input + po / 1000 * self.j.price_per_1k_output
        return {"requests": len(recs), "prompt_tokens": pi, "completion_tokens": po, "cost": round(cost, 8)}

    def _row(self, item_id, run, score, raw, recs, reason=None) -> dict:
        row = {"id": item_id, "run": run, "score": score, "raw": raw, "judge": self.j.model, "usage": self._usage(recs)}
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
        key = request_key(self.cfg, template, item, answer, run)
        recs = list(self.cache.get(key))
        for i, r in enumerate(recs):
            score = parse_score(r["text"])
            if score is not None:
                self.stats.cached += 1
                return self._row(item["id"], run, score, r["text"], recs[: i + 1])
        prompt = build_prompt(template, item, answer)
        max_replies = 1 + self.j.parse_retries
        if len(recs) >= max_replies:
            self.stats.cached += 1
        while len(recs) < max_replies:
            try:
                text, usage = await self.call(prompt, run)
            except _RequestFailed as e:
                self.stats.failed += 1
                self.stats.failures.append(f"{item['id']} run {run}: {e}")
                return self._row(item["id"], run, None, recs[-1]["text"] if recs else None, recs,
                                 reason=f"request failed: {e}")
            rec = {"key": key, "attempt": len(recs), "id": item["id"], "run": run, "text": text, "usage": usage,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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


def _run_coroutine(make):
    """``asyncio.run(make())``, also from inside a running loop (a Jupyter kernel): then in a
    worker thread, and an interrupt of the caller cancels the work there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict = {}
    loop = asyncio.new_event_loop()

    def worker():
        asyncio.set_event_loop(loop)
        try:
            box["task"] = loop.create_task(make())
            box["result"] = loop.run_until_complete(box["task"])
        except BaseException as e:  # handed to the caller
            box["error"] = e
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    t = threading.Thread(target=worker, name="llm-judge", daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.2)
    except BaseException:
        if "task" in box and not loop.is_closed():
            loop.call_soon_threadsafe(box["task"].cancel)
        t.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["result"]


# ------------------------------------------------------------------------------------ the stage

def judge_with_llm(cfg: StudyConfig, items: dict[str, dict], answers: list[dict], study_dir: Path) -> list[dict]:
    """Judgment rows for ``answers`` (``judge.runs`` per answer, in answer order)."""
    key = check_api_key(cfg)
    prompts = load_prompts(cfg.judge.prompts_file)
    cats = {canonical_category(it["category"]) or it["category"] for it in items.values()}
    missing = sorted(cats - set(prompts))
    if missing:
        raise JudgeError(f"judge.prompts_file {resolve(cfg.judge.prompts_file)}: no prompt for use case(s) {missing} "
                         f"of eval.jsonl")
    cache = RequestCache(cache_path(cfg, study_dir))
    jobs = [(items[a["id"]], a.get("answer") or "", run) for a in answers for run in range(cfg.judge.runs)]
    from tqdm import tqdm

    t0 = time.perf_counter()
    with tqdm(total=len(jobs), desc=f"judge {cfg.judge.model}", unit="req", mininterval=5) as bar:
        judge = None

        async def main():
            nonlocal judge
            judge = _Judge(cfg, key, prompts, cache, progress=bar)
            return await judge.judge_all(jobs)

        try:
            rows = _run_coroutine(main)
        finally:
            cache.close()
    s = judge.stats
    cost = (s.prompt_tokens / 1000 * cfg.judge.price_per_1k_input
            + s.completion_tokens / 1000 * cfg.judge.price_per_1k_output)
    nulls = sum(r["score"] is None for r in rows)
    print(f"judge {cfg.judge.model}: {len(rows)} judgments ({len(answers)} answers x {cfg.judge.runs} runs), "
          f"{nulls} null; {s.sent} requests answered now ({s.attempts} attempts, {s.retries} retries), "
          f"{s.cached} judgments from the cache ({cache.path}); this session: {s.prompt_tokens} input + "
          f"{s.completion_tokens} output tokens, ${cost:.4f}; {time.perf_counter() - t0:.1f} s")
    if s.failed > cfg.judge.max_failures:
        raise JudgeIncomplete(
            f"{s.failed} of {len(rows)} judge requests failed after their retries (judge.max_failures is "
            f"{cfg.judge.max_failures}), e.g. {s.failures[:3]}. Every reply received is cached in {cache.path}: "
            f"run the stage again to send only the missing requests.")
    return rows
