"""Every reply parsed, labelled, filtered and de-duplicated against the seeds and all kept so far.

Counts every dropped task per reason (``REASONS``); the order of replies decides nothing but
which of two near duplicates is kept.
"""
from __future__ import annotations

from collections import Counter

from helpers.selfinstruct.filters import FILTER_REASONS, filter_reason
from helpers.selfinstruct.label import heuristic_category
from helpers.selfinstruct.parse import PARSE_REASONS, parse_tasks
from helpers.selfinstruct.request import SelfInstructError
from helpers.study.categories import CATEGORIES, canonical_category
from helpers.study.config import StudyConfig
from helpers.study.prompt import question

DEDUP_REASONS = ("seed_duplicate", "exact_duplicate", "near_duplicate")

REASONS = PARSE_REASONS + FILTER_REASONS + DEDUP_REASONS + ("over_target",)
"""Every reason a task is dropped for, in the order the checks run."""

REASON_TEXT = {
    "truncated": "last task of a reply cut off by the token limit",
    "missing_instruction": "block without an instruction (指令)",
    "missing_output": "block without an output (输出)",
    "self_reference": "output talks about being an AI model",
    "multimodal": "task needs an image, link, file, audio or video",
    "instruction_too_short": "instruction shorter than selfinstruct.min_instruction_chars",
    "instruction_too_long": "instruction longer than selfinstruct.max_instruction_chars",
    "input_too_long": "input longer than selfinstruct.max_input_chars",
    "output_too_short": "output shorter than selfinstruct.min_output_chars",
    "output_too_long": "output longer than selfinstruct.max_output_chars",
    "language_mismatch": "instruction not Chinese, or answered in English (translation and code excepted)",
    "seed_duplicate": "exact or near duplicate of a seed task",
    "exact_duplicate": "same instruction + input as a kept item (normalised)",
    "near_duplicate": "character n-gram Jaccard >= selfinstruct.dedup_threshold with a kept item",
    "over_target": "in the reply that reached the target, after it",
}


class Collector:
    """Parse, label, filter and de-duplicate teacher replies in request order; write what it finds.

    ``kept_out``, ``dropped_out`` and ``ledger_out`` have ``write(records)`` (``JsonlAppender``).
    The de-duplication index starts with the seed tasks; ``restore`` replays kept items on resume.
    """

    def __init__(self, cfg: StudyConfig, seeds: list[dict], target: int, kept_out, dropped_out, ledger_out):
        from helpers.study.dedup import Deduper

        self.s, self.target = cfg.selfinstruct, target
        self.kept_out, self.dropped_out, self.ledger_out = kept_out, dropped_out, ledger_out
        self.dedup = Deduper(threshold=self.s.dedup_threshold, ngram=self.s.dedup_ngram, num_perm=self.s.dedup_num_perm)
        texts, keys = [], []
        for sd in seeds:
            for j, inst in enumerate(sd["instances"]):
                texts.append(question(sd["instruction"], inst["input"]))
                keys.append(f"seed:{sd['id']}#{j}")
        self.dedup.add_many(texts, keys)
        self.kept = 0
        self.requests = 0          # requests processed (the ledger's length)
        self.failed = 0
        self.parsed = 0            # blocks read from replies
        self.dropped = Counter()
        self.by_category = Counter()
        self.label_by = Counter()
        self.usage = Counter()     # tokens of the processed replies (cached ones with their original usage)
        self.finish = Counter()

    def restore(self, kept: list[dict], ledger: list[dict]) -> None:
        """State of a resumed run: kept items re-enter the index in order (they were kept, so they are kept again)."""
        decisions = self.dedup.add_many([question(r["instruction"], r["input"]) for r in kept], [r["id"] for r in kept])
        lost = sum(not d.kept for d in decisions)
        if lost:
            raise SelfInstructError(f"resume: {lost} kept items are duplicates of earlier ones (a changed "
                                    f"de-duplication?); delete generated.jsonl to rebuild from the cache")
        for r in kept:
            self.by_category[r["category"]] += 1
            self.label_by[r.get("label_by", "heuristic")] += 1
        for e in ledger:
            self._count(e)
        self.kept = len(kept)

    def _count(self, entry: dict) -> None:
        self.requests += 1
        if "failed" in entry:
            self.failed += 1
            return
        self.parsed += entry["parsed"]
        self.dropped.update(entry["dropped"])
        self.usage.update(entry.get("usage") or {})
        self.finish[str(entry.get("finish_reason"))] += 1

    def _screen(self, index: int, text: str, finish_reason: str | None) -> tuple[list[dict], list[dict], int]:
        """(candidates, dropped, blocks) of one reply: parsed, labelled and filtered, not yet de-duplicated."""
        tasks, bad = parse_tasks(text, finish_reason)
        dropped = [{**b, "request": index} for b in bad]
        candidates = []
        teacher = self.s.label == "teacher"
        for t in tasks:
            label = t.pop("label", None)
            cat = canonical_category(label) if (label and teacher) else None
            t["category"] = cat or heuristic_category(t["instruction"], t["input"], t["output"])
            t["label_by"] = "teacher" if cat else "heuristic" if not teacher else \
                "heuristic (no teacher label)" if label is None else "heuristic (teacher label unknown)"
            reason = filter_reason(t, self.s)
            if reason:
                dropped.append({**t, "request": index, "reason": reason})
            else:
                t["id"] = f"gen-{index:07d}-{t['position']:02d}"
                candidates.append(t)
        return candidates, dropped, len(tasks) + len(bad)

    def process_many(self, replies: list[tuple]) -> int:
        """Take consecutive replies ``(index, text, finish_reason, usage, cached)`` in order; returns how many
        were taken (all, unless the target is reached before the last: the rest stay unprocessed).

        The candidates of all the replies go through the de-duplication index in one ``add_many`` call
        (the per-call cost of the vectorised signatures is paid once); its greedy pass in input order
        makes the same decisions as one call per reply.
        """
        screened = [self._screen(index, text, finish) for index, text, finish, *_ in replies]
        cands = [t for c, _, _ in screened for t in c]
        decisions = iter(self.dedup.add_many([question(t["instruction"], t["input"]) for t in cands],
                                             [t["id"] for t in cands]) if cands and self.kept < self.target else [])
        taken = 0
        for (index, _, finish_reason, usage, cached), (candidates, dropped, blocks) in zip(replies, screened):
            if self.kept >= self.target:
                break  # the candidates of the rest entered the index: harmless, the run ends here
            kept = []
            for t in candidates:
                d = next(decisions)
                if self.kept + len(kept) >= self.target:
                    dropped.append({**t, "request": index, "reason": "over_target"})
                elif d.kept:
                    kept.append({k: t[k] for k in ("id", "instruction", "input", "output", "category")}
                                | {"request": index, "label_by": t["label_by"]})
                else:
                    dup = str(d.duplicate_of)
                    reason = "seed_duplicate" if dup.startswith("seed:") else f"{d.reason}_duplicate"
                    dropped.append({**t, "request": index, "reason": reason, "duplicate_of": dup,
                                    "similarity": d.similarity})
            dropped.sort(key=lambda r: r["position"])
            for r in dropped:
                r.pop("id", None)
            if kept:
                self.kept_out.write(kept)
            if dropped:
                self.dropped_out.write(dropped)
            entry = {"request": index, "parsed": blocks, "kept": len(kept),
                     "dropped": dict(Counter(r["reason"] for r in dropped)), "finish_reason": finish_reason,
                     "usage": usage or {}, "cached": cached}
            self.ledger_out.write([entry])  # last: a request in the ledger has all its lines written
            for r in kept:
                self.by_category[r["category"]] += 1
                self.label_by[r["label_by"]] += 1
            self.kept += len(kept)
            self._count(entry)
            taken += 1
        return taken

    def fail(self, index: int, reason: str) -> None:
        """A request that gave up after its retries (within ``max_failures``): recorded, no items."""
        entry = {"request": index, "failed": reason}
        self.ledger_out.write([entry])
        self._count(entry)

    def summary(self) -> dict:
        return {"kept": self.kept, "requests_processed": self.requests, "requests_failed": self.failed,
                "tasks_parsed": self.parsed, "dropped": {r: self.dropped.get(r, 0) for r in REASONS},
                "kept_by_category": {c: self.by_category[c] for c in CATEGORIES if self.by_category[c]},
                "label_by": dict(self.label_by), "finish_reasons": dict(self.finish),
                "tokens": {"prompt": self.usage.get("prompt_tokens", 0),
                           "completion": self.usage.get("completion_tokens", 0)}}
