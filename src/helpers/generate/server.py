"""The server backend: answers from any OpenAI-compatible ``/v1/completions`` endpoint.

Why raw completions and not chat: our models learned the BELLE template
(``helpers.study.prompt``) as plain text; a chat endpoint would wrap the prompt in the
server's own chat template, a text the model never saw. So the prompt goes out as it is,
greedy (temperature 0) unless the config samples, with the use case's token budget and the
template's stop string, the way the hf backend decodes.

Why the judge's client (``helpers.openai_client``): the same rules for concurrency, retries
(429 with Retry-After, 5xx, timeouts, dropped connections), backoff and stops (401/403/404) hold
for a server that answers; here they are not written twice. Every reply goes to a request cache
(``generate_cache/<model>.jsonl``, keyed by served model, prompt and parameters) and its row to
the answers file as it arrives: a rerun after a kill or a failure sends only the requests whose
answer is not stored, and a deleted answers file is rebuilt from the cache without a request.

Before the first request the server is asked what it serves (``GET /v1/models``): a study model
mapped to a name it does not serve, a wrong ``base_url`` or a refused key stop the stage there.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path

import openai

from helpers.generate.backend import GenerateError, write_engine_note
from helpers.openai_client import ChatEndpoint, JsonlAppender, RequestCache, RequestFailed, check_api_key, run_coroutine
from helpers.study.config import StudyConfig
from helpers.study.progress import report
from helpers.study.prompt import STOP, cut_at_stop, format_prompt

SECTION = "generate.server"


def cache_path(study_dir: Path, model_name: str) -> Path:
    return Path(study_dir) / "generate_cache" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', model_name)}.jsonl"


def request_params(cfg: StudyConfig, category: str) -> dict:
    """The sampling part of one request: greedy unless ``generate.do_sample``, the use case's budget, our stop."""
    g = cfg.generate
    params = {"max_tokens": g.tokens_for(category), "stop": [STOP], "seed": cfg.seed}
    params.update({"temperature": g.temperature, "top_p": g.top_p} if g.do_sample else {"temperature": 0.0})
    return params


def request_key(served: str, prompt: str, params: dict) -> str:
    return hashlib.sha256(json.dumps({"model": served, "prompt": prompt, **params}, sort_keys=True,
                                     ensure_ascii=False).encode("utf-8")).hexdigest()


async def check_served(ep: ChatEndpoint, served: str, model_name: str) -> str:
    """Stop before any answer when the server is unreachable, refuses the key or does not serve ``served``;
    returns who the server says owns the model (``vllm`` for vLLM; ``unknown`` without ``/v1/models``)."""
    url = ep.s.base_url
    try:
        page = await ep.client.models.list()
    except (openai.APIConnectionError, openai.APITimeoutError) as e:
        raise GenerateError(f"{SECTION}.base_url: cannot reach the server at {url} ({type(e).__name__}); "
                            "start it or correct the URL. No answer was requested.") from None
    except openai.APIStatusError as e:
        if e.status_code in (401, 403):
            raise GenerateError(f"the server at {url} refused the API key from ${ep.s.api_key_env} "
                                f"({SECTION}.api_key_env, HTTP {e.status_code}). No answer was requested.") from None
        return "unknown"  # a server without /v1/models: a wrong name shows as a 404 on the first request
    names = sorted(m.id for m in page.data)
    if served not in names:
        raise GenerateError(
            f"{SECTION}.models: the server at {url} does not serve {served!r} (study model {model_name!r}); it serves "
            f"{', '.join(map(repr, names)) or 'nothing'}. Map the study model to one of them, e.g. "
            f"generate.server.models: {{{model_name!r}: {names[0]!r}}}" if names else
            f"{SECTION}.models: the server at {url} serves no model. No answer was requested.")
    return str(next(getattr(m, "owned_by", None) for m in page.data if m.id == served) or "unknown")


def server_answers(cfg: StudyConfig, model_name: str, study_dir: Path, todo: list[dict], path: Path) -> int:
    """Answer ``todo`` through the server, appending rows to ``path``; returns the new tokens."""
    s = cfg.generate.server
    key = check_api_key(s, SECTION, "the server backend", GenerateError)
    return run_coroutine(lambda: _answer_all(cfg, model_name, study_dir, todo, path, key))


async def _answer_all(cfg: StudyConfig, model_name: str, study_dir: Path, todo: list[dict], path: Path, key: str) -> int:
    s = cfg.generate.server
    served = s.served_name(model_name)
    ep = ChatEndpoint(s, key, SECTION, "answer server", GenerateError)
    ep.model_hint = f"generate.server.models[{model_name!r}] (served name {served!r})"
    cache, out = RequestCache(cache_path(study_dir, model_name)), JsonlAppender(path)
    failed: list[str] = []
    tokens = done = 0

    async def one(it: dict) -> None:
        nonlocal tokens, done
        prompt, params = format_prompt(it["question"]), request_params(cfg, it["category"])
        k = request_key(served, prompt, params)
        hit = cache.get(k)
        if hit:
            rec = hit[-1]
        else:
            try:
                reply = await ep.complete_text(served, prompt, **params)
            except RequestFailed as e:
                failed.append(f"{it['id']}: {e}")
                return
            rec = {"key": k, "id": it["id"], "model": served, "text": reply.text, "finish_reason": reply.finish_reason,
                   "completion_tokens": reply.usage["completion_tokens"]}
            cache.add(rec)
        n = int(rec["completion_tokens"])
        tokens += n
        out.write([{"id": it["id"], "category": it["category"], "answer": cut_at_stop(rec["text"]), "new_tokens": n,
                    "truncated": rec["finish_reason"] == "length" or n >= params["max_tokens"], "model": model_name}])
        done += 1
        report(f"generate {model_name}", done, len(todo), "item")

    try:
        owner = await check_served(ep, served, model_name)
        write_engine_note(study_dir, model_name, {"backend": "server", "engine": f"OpenAI-compatible server ({owner})",
                                                  "base_url": s.base_url, "served_model": served})
        tasks = [asyncio.ensure_future(one(it)) for it in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # a stop (key, 404) or an interrupt: nothing more goes out or gets written
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    finally:
        out.close()
        cache.close()
        await ep.close()
    if failed:
        raise GenerateError(
            f"{len(failed)} of {len(todo)} answer requests to {s.base_url} failed after their retries "
            f"(first: {failed[0]}); the {len(todo) - len(failed)} answers received are stored: run the stage "
            "again to send only the missing requests")
    return tokens
