"""Stage 00 (optional): new Chinese instruction data from seed tasks, the paper's way (self-instruct).

Ji et al. (2023) trained on Chinese instructions made Alpaca-style: seed tasks shown to ChatGPT
as in-context examples, the new tasks it wrote filtered and de-duplicated. This module does the
same with any teacher behind an OpenAI-compatible endpoint and writes ``generated.jsonl``, the
pool of a study with ``data.source: generate`` (the data stage then treats it like any train file).

One request
    Request ``i`` shows ``selfinstruct.examples_per_request`` (k) seed tasks, sampled with
    ``random.Random(f"{seed}|selfinstruct|{i}")`` (one instance each), and asks for
    ``tasks_per_request`` new tasks as a numbered list of 指令 / 输入 / 输出 blocks (the prompt is data:
    ``selfinstruct.prompt_file``). Only seed tasks are shown, never generated ones (the original
    self-instruct mixed those in): the request of index ``i`` is then a pure function of the
    config, so a resumed run sends exactly the request it would have sent, and the cache answers it.

Parsing (``parse_tasks``, pure)
    Blocks start at a 指令 label; half- and full-width colons, markdown decoration, a number on its
    own line, fields run together on one line, a missing 指令 label after a number and numbering
    that restarts are all read, and so is the Alpaca / BELLE layout (``###`` between blocks, the task
    number before every label, each field's text on the lines under its label). A block without an
    instruction or an output is dropped with that reason; the last block of a reply cut off by the
    token limit (``finish_reason: length``) is dropped as ``truncated`` even when it looks complete
    (its output may end mid-sentence), unless a ``###`` line closed it before the cut.

Filters (``filter_reason``, pure; the first that applies names the reason)
    The checks of the ``quality`` selection strategy (``helpers.study.cleaning.check_reason``) with this
    section's limits: ``self_reference`` (the output talks about being an AI model), ``multimodal``
    (the task needs an image, link, file, audio or video), the length limits of the
    config (``instruction_too_short`` ... ``output_too_long``), ``language_mismatch`` (an instruction
    that is not Chinese, or a Chinese one answered in English outside translation and code). Then
    de-duplication of instruction + input against the seed tasks and every item kept so far
    (``helpers.study.dedup.Deduper``, incremental MinHash LSH; no all-pairs scoring): ``seed_duplicate``,
    ``exact_duplicate``, ``near_duplicate``. Tasks of the reply that reaches the target beyond it are
    ``over_target``. Every dropped task is written to ``generated_dropped.jsonl`` with its reason (the
    file is written, empty, when no task was dropped).

Labels
    Each kept item gets a use case: ``heuristic_category`` (keyword rules, pure), or with
    ``selfinstruct.label: teacher`` the teacher's own 类别 line (asked for in the same request; the
    rules fill in where it is missing or unknown). ``label_by`` says which.

Order, resume, cost
    Up to ``concurrency`` requests are in flight (``helpers.openai_client.ChatEndpoint``: the
    judge's retry, backoff and stop rules), but replies are *processed* in request order (the
    ones that are ready together, one de-duplication call for all of them). So the result is
    the same at any concurrency and after any kill: kept items, drops and ids depend only on the
    config and the teacher's replies. Every reply is appended to ``selfinstruct/cache/<model>.jsonl``
    as it arrives (``RequestCache``); each processed request then appends its kept and dropped items
    and finally one line to ``selfinstruct/requests.jsonl`` (the ledger). A rerun after a kill keeps
    the ledger's requests, cuts the items of a half-written one, rebuilds the de-duplication index
    from the kept items and carries on; replies in the cache are never requested again. Changed
    settings (seeds, prompt, teacher, filters...) rebuild the outputs from the cache; a changed
    target continues or rebuilds. No new request is sent once the target is reached (those in
    flight are finished and cached); ``max_requests`` bounds the cost of a teacher whose tasks are
    mostly filtered out. The key comes from the environment only (``selfinstruct.api_key_env``).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.selfinstruct.collector import Collector
from helpers.selfinstruct.request import (
    PromptParts,
    SelfInstructError,
    SelfInstructIncomplete,
    build_request,
    load_prompt,
    request_key,
)
from helpers.selfinstruct.seeds import load_seed_tasks, sample_examples
from helpers.study.config import StudyConfig
from helpers.study.files import read_json, read_jsonl, write_json, write_jsonl
from helpers.study.paths import resolve


@dataclass
class Paths:
    """Where the stage writes, under the study folder."""
    generated: Path
    dropped: Path
    stats: Path
    ledger: Path
    state: Path
    cache: Path

    @classmethod
    def of(cls, cfg: StudyConfig, study_dir: Path) -> "Paths":
        sd = Path(study_dir)
        return cls(sd / "generated.jsonl", sd / "generated_dropped.jsonl", sd / "generated_stats.json",
                   sd / "selfinstruct" / "requests.jsonl", sd / "selfinstruct" / "state.json",
                   sd / "selfinstruct" / "cache" / f"{cfg.selfinstruct.cache_name('teacher')}.jsonl")


def settings_hash(cfg: StudyConfig, seeds: list[dict], parts: PromptParts) -> str:
    """What the processed outputs depend on besides the target: a change rebuilds them from the cache."""
    s = cfg.selfinstruct.model_dump(mode="json")
    for k in ("target", "base_url", "api_key_env", "concurrency", "max_requests", "max_retries", "timeout_s",
              "backoff_base_s", "backoff_max_s", "max_failures", "price_per_1k_input", "price_per_1k_output",
              "seeds_file", "prompt_file"):
        s.pop(k)
    blob = {"selfinstruct": s, "seed": cfg.seed, "seeds": seeds, "prompt": parts.__dict__,
            "category_map": cfg.data.category_map}
    return hashlib.sha256(json.dumps(blob, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def _resume_state(paths: Paths, settings: str, target: int) -> tuple[list[dict], list[dict]]:
    """(kept items, ledger) to continue from; rewrites the outputs when a kill or a change left them unusable."""
    def fresh(why: str | None):
        if why:
            print(f"self-instruct: {why}; rebuilding the outputs (the cached replies are reused)", flush=True)
        for p in (paths.generated, paths.dropped, paths.ledger):
            p.unlink(missing_ok=True)
        write_json(paths.state, {"settings": settings})
        return [], []

    if not paths.state.exists() or not paths.ledger.exists():
        return fresh(None if not paths.generated.exists() else "no ledger of processed requests")
    if read_json(paths.state).get("settings") != settings:
        return fresh("the settings changed (seeds, prompt, teacher, sampling, filters or de-duplication)")
    ledger = read_jsonl(paths.ledger, tolerate_torn_tail=True)
    if [e["request"] for e in ledger] != list(range(len(ledger))):
        return fresh("the ledger is not a run of consecutive requests")
    kept = read_jsonl(paths.generated, tolerate_torn_tail=True) if paths.generated.exists() else []
    dropped = read_jsonl(paths.dropped, tolerate_torn_tail=True) if paths.dropped.exists() else []
    done = n_ledger = len(ledger)
    last = ledger[-1] if ledger else {}
    if last.get("dropped", {}).get("over_target") and len(kept) < target:
        done -= 1  # the target grew: the reply that reached the old one is processed again
        ledger = ledger[:-1]
    keep_k = [r for r in kept if r["request"] < done]
    keep_d = [r for r in dropped if r["request"] < done]
    if len(keep_k) != sum(e.get("kept", 0) for e in ledger):
        return fresh("generated.jsonl does not match the ledger")
    if len(keep_k) > target:
        return fresh(f"the target shrank to {target} below the {len(keep_k)} items kept")
    if len(keep_k) != len(kept) or len(keep_d) != len(dropped) or done != n_ledger:
        # a half-processed request (or the reprocessed last one): cut its lines from every file
        write_jsonl(paths.generated, keep_k)
        write_jsonl(paths.dropped, keep_d)
        write_jsonl(paths.ledger, ledger)
    return keep_k, ledger


def max_requests(cfg: StudyConfig) -> int:
    """``selfinstruct.max_requests``, or 4 x target / tasks_per_request (+ concurrency) when unset."""
    s = cfg.selfinstruct
    return s.max_requests or math.ceil(4 * s.target / s.tasks_per_request) + s.concurrency


class _Run:
    """The request loop: keeps requests in flight, hands replies to the collector in request order."""

    def __init__(self, cfg, seeds, parts, collector: Collector, cache, key: str | None, progress=None):
        self.cfg, self.s, self.seeds, self.parts = cfg, cfg.selfinstruct, seeds, parts
        self.collector, self.cache, self.key, self.progress = collector, cache, key, progress
        self.api = None
        self.sent_now = 0
        self.from_cache = 0
        self.unused = 0
        self.failures: list[str] = []

    def prompt(self, index: int) -> str:
        examples = sample_examples(self.seeds, self.s.examples_per_request, self.cfg.seed, index)
        return build_request(self.parts, examples, self.s.tasks_per_request, self.s.label == "teacher")

    async def fetch(self, index: int):
        """(text, finish_reason, usage, cached) of request ``index``, or the failure reason as a str."""
        from helpers.openai_client import RequestFailed

        prompt = self.prompt(index)
        key = request_key(self.cfg, prompt, index)
        hit = self.cache.get(key)
        if hit:
            r = hit[-1]
            return r["text"], r.get("finish_reason"), r.get("usage") or {}, True
        if self.api is None:
            raise SelfInstructError(f"request {index} is not in the cache and no endpoint was opened")
        try:
            reply = await self.api.complete(prompt, index, temperature=self.s.temperature, top_p=self.s.top_p,
                                            max_tokens=self.s.max_tokens)
        except RequestFailed as e:
            return str(e)
        self.cache.add({"key": key, "request": index, "text": reply.text, "finish_reason": reply.finish_reason,
                        "usage": reply.usage, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.sent_now += 1
        return reply.text, reply.finish_reason, reply.usage, False

    def _take(self, batch: list[tuple]) -> None:
        if batch:
            taken = self.collector.process_many(batch)
            self.from_cache += sum(r[-1] for r in batch[:taken])
            self.unused += len(batch) - taken

    def _wanted(self, outstanding: int) -> bool:
        """Whether to send one more request: the replies on their way are not expected to reach the target."""
        c = self.collector
        answered = c.requests - c.failed
        per_request = c.kept / answered if answered > 0 else 0.7 * self.s.tasks_per_request  # a guess until replies come
        return c.kept + 0.9 * outstanding * max(per_request, 0.1) < c.target

    def _show(self, kept_before: int) -> None:
        if self.progress is None:
            return
        c = self.collector
        drops = ", ".join(f"{r} {n}" for r, n in c.dropped.most_common(3) if n)
        cost = self.s.cost(c.usage["prompt_tokens"], c.usage["completion_tokens"])
        self.progress.set_postfix_str(
            f"req {c.requests} ({self.from_cache} cached, {c.failed} failed), dropped {sum(c.dropped.values())}"
            f"{f' ({drops})' if drops else ''}, tokens {c.usage['prompt_tokens']}+{c.usage['completion_tokens']}, "
            f"${cost:.4f}", refresh=False)
        self.progress.update(c.kept - kept_before)

    async def run(self) -> None:
        from helpers.openai_client import ChatEndpoint

        c, s = self.collector, self.s
        if self.key is not None:
            self.api = ChatEndpoint(s, self.key, section="selfinstruct", what="teacher", error=SelfInstructError)
        limit = max_requests(self.cfg)
        window = 2 * s.concurrency  # issued but not yet processed; the endpoint keeps `concurrency` in flight
        pending: dict[int, asyncio.Future] = {}
        head = nxt = c.requests
        finished = False
        try:
            while c.kept < c.target:
                while len(pending) < window and nxt < limit and self._wanted(len(pending)):
                    pending[nxt] = asyncio.ensure_future(self.fetch(nxt))
                    nxt += 1
                if head not in pending:
                    break  # max_requests reached
                ready = [(head, await pending.pop(head))]
                while head + len(ready) in pending and pending[head + len(ready)].done() and len(ready) < window:
                    ready.append((head + len(ready), pending.pop(head + len(ready)).result()))
                before = c.kept
                batch = []
                for index, result in ready:  # replies in request order; a failure ends a batch
                    if not isinstance(result, str):
                        batch.append((index, *result))
                        continue
                    self._take(batch)
                    batch = []
                    if c.kept >= c.target:
                        break
                    self.failures.append(f"request {index}: {result}")
                    if len(self.failures) > s.max_failures:
                        raise SelfInstructIncomplete(
                            f"{len(self.failures)} teacher requests failed after their retries (selfinstruct."
                            f"max_failures is {s.max_failures}), e.g. {self.failures[:3]}. Every reply received is "
                            f"cached in {self.cache.path} and {c.kept} items are kept: run the stage again to "
                            f"continue from request {index}.")
                    c.fail(index, result)
                self._take(batch)
                head += len(ready)
                self._show(before)
            finished = True
        finally:
            if self.api is not None:
                self.api.stopped = True  # requests not yet sent are not sent
            if not finished:  # an error or an interrupt: stop everything now
                for f in pending.values():
                    f.cancel()
            # at the target, the requests in flight are finished and cached (they are paid for)
            done = await asyncio.gather(*pending.values(), return_exceptions=True)
            self.unused += sum(isinstance(r, tuple) for r in done)
            if self.api is not None:
                await self.api.close()


def run(cfg: StudyConfig, study_dir: Path, progress: bool = True) -> dict:
    """Run (or resume) the stage: ``generated.jsonl``, ``generated_dropped.jsonl``, ``generated_stats.json``.

    Returns the stats written to ``generated_stats.json``.
    """
    from helpers.openai_client import JsonlAppender, RequestCache, check_api_key, run_coroutine

    s = cfg.selfinstruct
    seeds = load_seed_tasks(cfg)
    parts = load_prompt(s.prompt_file)
    paths = Paths.of(cfg, study_dir)
    t0 = time.perf_counter()
    kept, ledger = _resume_state(paths, settings_hash(cfg, seeds, parts), s.target)
    outs = [JsonlAppender(p) for p in (paths.generated, paths.dropped, paths.ledger)]
    collector = Collector(cfg, seeds, s.target, *outs)
    collector.restore(kept, ledger)
    resumed = collector.requests
    cache = RequestCache(paths.cache)
    key = check_api_key(s, "selfinstruct", "the self-instruct stage's teacher", SelfInstructError) \
        if collector.kept < s.target else None
    from helpers.study.progress import ProgressBar

    bar = ProgressBar(total=s.target, initial=collector.kept, desc=f"self-instruct {s.model}", unit="item",
               mininterval=5, disable=not progress)
    loop = _Run(cfg, seeds, parts, collector, cache, key, progress=bar)
    try:
        run_coroutine(loop.run)
    finally:
        bar.close()
        for o in outs:
            o.close()
        cache.close()
    paths.dropped.touch()  # no task dropped is an outcome too: the file is there, empty (its appender never opened it)
    summary = collector.summary()
    cost = s.cost(summary["tokens"]["prompt"], summary["tokens"]["completion"])
    api = loop.api.stats if loop.api is not None else None
    stats = {
        "teacher": s.model, "target": s.target, "reached_target": collector.kept >= s.target, **summary,
        "cost": round(cost, 6),
        "requests": {"processed": collector.requests, "resumed_from": resumed, "sent_now": loop.sent_now,
                     "from_cache": loop.from_cache, "failed": collector.failed, "unused_in_cache": loop.unused,
                     "attempts_now": api.attempts if api else 0, "retries_now": api.retries if api else 0,
                     "max_requests": max_requests(cfg)},
        "seeds": {"file": str(resolve(s.seeds_file)), "tasks": len(seeds)},
        "settings": {k: v for k, v in s.model_dump(mode="json").items() if k not in ("base_url",)},
        "files": {"generated": str(paths.generated), "dropped": str(paths.dropped), "ledger": str(paths.ledger),
                  "cache": str(paths.cache)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(paths.stats, stats)
    drops = ", ".join(f"{r} {n}" for r, n in stats["dropped"].items() if n) or "none"
    print(f"self-instruct {s.model}: {collector.kept} of {s.target} items kept from {summary['tasks_parsed']} tasks in "
          f"{collector.requests} replies ({loop.sent_now} requested now, {loop.from_cache} from the cache, "
          f"{collector.failed} failed); dropped: {drops}; {summary['tokens']['prompt']} input + "
          f"{summary['tokens']['completion']} output tokens, ${cost:.4f}; {stats['seconds']} s", flush=True)
    if not stats["reached_target"]:
        print(f"self-instruct: the target of {s.target} items was NOT reached within selfinstruct.max_requests "
              f"{max_requests(cfg)}; raise it (or look at the drop reasons) and run the stage again: it continues",
              flush=True)
    return stats
