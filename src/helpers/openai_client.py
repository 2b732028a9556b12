"""The OpenAI-compatible client that the LLM judge, the self-instruct teacher and the server backend of
the generate stage share (chat requests; raw-text ``/v1/completions`` for the answers).

The stages (``helpers.judge.llm``, ``helpers.selfinstruct.stage``, ``helpers.generate.server``) talk to an
OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp's server, ...) under the same rules for retries,
backoff, stops, the request cache and resuming after a kill. The rules live here, once; each stage keeps
what is its own (prompts, reading the replies, what a failure means for its results).
``<section>`` below is the stage's config section, ``judge``, ``selfinstruct``
(``helpers.study.config.EndpointConfig``) or ``generate.server`` (``ServerConfig``).

Requests (``ChatEndpoint``)
    ``openai.AsyncOpenAI`` with the SDK's own retries off (``max_retries=0``) and ours
    instead, so every attempt is counted: at most ``<section>.concurrency`` requests in
    flight; a 429, a 5xx, a 408/409, a timeout or a dropped connection is retried up to
    ``<section>.max_retries`` times after ``min(backoff_max_s, backoff_base_s * 2**k)``
    (jittered to 50..100%); a ``Retry-After``/``retry-after-ms`` header replaces that wait
    and also pauses every other request until it has passed. A 401/403 (key refused),
    a 404 (model or base_url wrong) or a 429 ``insufficient_quota`` stops the stage at
    once, without retries. A 400/422 fails that request only (``RequestFailed``). The key is
    read from the environment variable named by ``<section>.api_key_env`` only
    (``check_api_key``), checked before any request, never written or printed, and masked in
    the server's messages.

Preflight (``probe_endpoint``)
    Before a study spends anything, ``helpers.preflight`` sends each endpoint it will use one
    ``GET /models`` (the SDK's ``models.list``; 10 s, no retries): unreachable, a refused key,
    a base_url that is not the API root, or a model the server does not list is reported with
    the setting to fix, in seconds instead of after hours of training.

Cache (``RequestCache``, ``JsonlAppender``)
    Every reply received is appended to a JSONL file as one line, flushed at once and fsynced
    right behind, so a killed process loses only the requests in flight; a torn last line left
    by a kill is dropped on read, and a rerun takes the cached replies instead of sending their
    requests again. One process writes a cache file at a time.

Notebooks (``run_coroutine``)
    The stages run in Jupyter kernels, whose event loop is already running; ``run_coroutine``
    runs a stage's requests there as well as from a plain script.
"""
from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from helpers.study.config import EndpointConfig
from helpers.study.files import dumps, read_jsonl

log = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 600.0
"""A Retry-After longer than this is cut to it (a misconfigured server must not stall the study for hours)."""


class RequestFailed(Exception):
    """One request gave up (non-retryable status or retries exhausted); the caller records it and goes on."""


def check_api_key(settings: EndpointConfig, section: str, who: str, error: type[Exception]) -> str:
    """The key from the environment variable named by ``<section>.api_key_env``; ``error`` if unset.

    ``settings`` is the endpoint's config section, ``section`` its name (``judge``, ``selfinstruct``)
    and ``who`` the words for what needs the key in the message ("the LLM judge").
    """
    name = settings.api_key_env
    key = (os.environ.get(name) or "").strip()
    if not key:
        raise error(
            f"{section}.api_key_env: the environment variable {name} is not set or empty; {who} reads its "
            f"API key from there only (export {name}=... before running the {section} stage; for a local server "
            f"without keys any placeholder value works)")
    return key


PROBE_TIMEOUT_S = 10.0
"""The preflight's one request to an endpoint (``probe_endpoint``) waits at most this long."""


def probe_endpoint(settings: EndpointConfig, section: str, key: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """One cheap request (``GET /models``, the openai SDK's ``models.list``), before a stage spends anything.

    Returns None when the endpoint answers, accepts the key and lists ``<section>.model`` (or lists
    nothing, as some servers do), else the problem, starting with the setting to fix. No retries: a
    preflight must come back in seconds, and a server that is down now is worth knowing about now.
    The key is never part of the message (a 401's body may echo it, so only the status is kept).
    """
    where = settings.base_url or "the OpenAI API"
    listed, problem = list_models(settings, section, key, timeout_s)
    if problem:
        return problem
    if listed and settings.model not in listed:
        shown = ", ".join(repr(m) for m in sorted(listed)[:8]) + (" ..." if len(listed) > 8 else "")
        return (f"{section}.model: {settings.model!r} is not among the {len(listed)} models {where} lists "
                f"({shown}); use the name the server lists (a single-model server such as llama.cpp's answers "
                f"to that name too)")
    return None


def list_models(settings, section: str, key: str, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[list[str], str | None]:
    """``(names the endpoint lists, None)``, or ``([], the problem)`` naming ``<section>.base_url`` or
    ``<section>.api_key_env``; one ``GET /models`` without retries (``probe_endpoint``)."""
    where = settings.base_url or "the OpenAI API"
    client = openai.OpenAI(api_key=key, base_url=settings.base_url, max_retries=0, timeout=timeout_s)
    try:
        return [m.id for m in client.models.list()], None
    except openai.APIStatusError as e:
        status = e.status_code
        if status in (401, 403):
            return [], (f"{section}.api_key_env: {where} refused the key in ${settings.api_key_env} (HTTP {status} to "
                        f"GET /models); check the key and its permissions")
        if status == 404:
            return [], (f"{section}.base_url: {where} answered 404 to GET /models; base_url must be the API root "
                        f"(such as http://host:8000/v1)")
        return [], f"{section}.base_url: {where} answered HTTP {status} to GET /models"
    except openai.APITimeoutError:
        return [], f"{section}.base_url: {where} did not answer GET /models within {timeout_s:g} s"
    except openai.APIConnectionError as e:
        cause = e.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause else "no response"
        return [], f"{section}.base_url: {where} is not reachable ({why[:160]})"
    finally:
        client.close()


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
    """Append-only JSONL of completed requests, one line per reply, each with the caller's ``key``
    (a hash of what makes the request; the caller chooses the other fields). ``JsonlAppender``: a
    killed process loses no reply it got; a torn last line is dropped on read."""

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
class RequestStats:
    """What one ``ChatEndpoint`` did in this session (cached replies are the caller's to count)."""
    sent: int = 0          # requests that got a reply
    attempts: int = 0      # every HTTP attempt
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Reply:
    """One completed chat request: the reply text, its token usage and why the model stopped, and which model
    answered: the name the server gives (a dated snapshot behind an alias) and its ``system_fingerprint``
    (the backend configuration), so that two runs months apart can be told apart."""
    text: str
    usage: dict
    finish_reason: str | None = None
    served_model: str | None = None
    system_fingerprint: str | None = None


class ChatEndpoint:
    """One OpenAI-compatible chat endpoint under the request rules of this module (see Requests).

    ``settings`` is the stage's config section, ``section`` its name (``judge``, ``selfinstruct``)
    and ``what`` the word for the endpoint in messages ("judge", "teacher"); a stop raises ``error``.
    """

    def __init__(self, settings: EndpointConfig, key: str, section: str, what: str, error: type[Exception]):
        self.s, self.section, self.what, self.error = settings, section, what, error
        self.client = openai.AsyncOpenAI(api_key=key, base_url=settings.base_url, max_retries=0,
                                         timeout=settings.timeout_s)
        self.sem = asyncio.Semaphore(settings.concurrency)
        self.pause_until = 0.0
        self.fatal: Exception | None = None
        self.stopped = False  # set by a caller that has what it needs: attempts not yet sent are not sent
        self.stats = RequestStats()
        self.model_hint: str | None = None  # the setting naming the model, for the 404 message (default: <section>.model)
        self._redact = lambda text: text.replace(key, "***")  # server messages may echo the key

    def _where(self) -> str:
        return self.s.base_url or "the OpenAI API"

    async def _paused(self) -> None:
        loop = asyncio.get_running_loop()
        while (d := self.pause_until - loop.time()) > 0:
            await asyncio.sleep(d)

    async def complete(self, prompt: str, seed: int, **params) -> Reply:
        """One chat request with retries; returns the ``Reply`` or raises RequestFailed / ``self.error``.

        ``params`` go to ``chat.completions.create`` as they are (temperature, max_tokens, top_p).
        """
        return await self._request(lambda: self.client.chat.completions.create(
            model=self.s.model, messages=[{"role": "user", "content": prompt}], seed=seed, **params), _chat_text)

    async def complete_text(self, model: str, prompt: str, **params) -> Reply:
        """One raw-text request to ``/v1/completions`` (no chat template around ``prompt``), same rules as ``complete``."""
        return await self._request(lambda: self.client.completions.create(model=model, prompt=prompt, **params),
                                   lambda choice: choice.text)

    async def _request(self, send, text_of) -> Reply:
        s = self.s
        loop = asyncio.get_running_loop()
        for attempt in range(s.max_retries + 1):
            await self._paused()
            async with self.sem:
                await self._paused()
                if self.fatal is not None:  # another request hit a stop: send nothing more
                    raise self.fatal
                if self.stopped:
                    raise RequestFailed("not sent: the caller stopped")
                self.stats.attempts += 1
                try:
                    resp = await send()
                except openai.APIError as e:
                    what, wait, reason = classify(e)
                    reason = self._redact(reason)
                else:
                    choice = resp.choices[0] if resp.choices else None
                    text = (text_of(choice) if choice else None) or ""
                    u = resp.usage
                    usage = {"prompt_tokens": int(getattr(u, "prompt_tokens", 0) or 0),
                             "completion_tokens": int(getattr(u, "completion_tokens", 0) or 0)}
                    self.stats.sent += 1
                    self.stats.prompt_tokens += usage["prompt_tokens"]
                    self.stats.completion_tokens += usage["completion_tokens"]
                    return Reply(text, usage, getattr(choice, "finish_reason", None), getattr(resp, "model", None),
                                 getattr(resp, "system_fingerprint", None))
                if what == "fatal":  # set before the slot is released, so no queued request goes out
                    self.fatal = self.fatal or self._fatal_error(reason)
                    raise self.fatal
            if what == "fail":
                raise RequestFailed(f"{reason} (not retried)")
            if attempt == s.max_retries:
                raise RequestFailed(f"{reason} after {attempt + 1} attempts")
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
            model = self.model_hint or f"{sec}.model ({self.s.model!r})"
            return self.error(f"the {self.what} endpoint ({where}) answered 404: check {model} "
                              f"and {sec}.base_url. Stopped without retrying.")
        return self.error(f"the {self.what} endpoint ({where}) says the account's quota is used up "
                          f"({reason}). Stopped without retrying.")

    async def close(self) -> None:
        await self.client.close()


def _chat_text(choice) -> str | None:
    return choice.message.content


def run_coroutine(make):
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

    t = threading.Thread(target=worker, name="run-coroutine", daemon=True)
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
