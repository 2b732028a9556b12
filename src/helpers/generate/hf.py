"""The hf backend: the model in this process through transformers, batched, with a token budget per use case.

Greedy answers (the default) go through ``continuous.greedy_stream``: every prompt of the model waits in
one queue, shortest first, and a batch of ``generate.batch_size`` rows is refilled as answers end.
Sampling goes through ``generate`` in batches of prompts with the same token budget and similar lengths
(``plan_batches``, ``answer_batch``; the greedy batch loop there is the benchmark's baseline). Finished
answers are appended to the answers file as they come, so a killed run continues with the items it had
not answered yet.
"""
from __future__ import annotations

from pathlib import Path

import torch

from helpers.generate.backend import write_engine_note
from helpers.generate.continuous import greedy_stream
from helpers.generate.greedy import greedy_decode
from helpers.study.config import StudyConfig
from helpers.study.files import append_jsonl
from helpers.study.models import generation_model, load_tokenizer, tokenizer_source
from helpers.study.progress import ProgressBar
from helpers.study.prompt import STOP, cut_at_stop, format_prompt


def plan_batches(items: list[dict], tok, cfg: StudyConfig) -> list[list[dict]]:
    """Items with the same max_new_tokens, similar prompt lengths together (little padding)."""
    keyed = sorted(
        items, key=lambda it: (cfg.generate.tokens_for(it["category"]), len(tok(format_prompt(it["question"]))["input_ids"]), it["id"]))
    batches, size = [], cfg.generate.batch_size
    for it in keyed:
        if batches and len(batches[-1]) < size and \
                cfg.generate.tokens_for(batches[-1][0]["category"]) == cfg.generate.tokens_for(it["category"]):
            batches[-1].append(it)
        else:
            batches.append([it])
    return batches


@torch.inference_mode()
def answer_batch(model, tok, batch: list[dict], cfg: StudyConfig) -> list[dict]:
    """Answers to one batch: greedy through ``greedy_decode`` (finished rows leave the batch), sampling through
    ``generate``."""
    prompts = [format_prompt(it["question"]) for it in batch]
    enc = tok(prompts, return_tensors="pt", padding=True).to(model.device)
    max_new = cfg.generate.tokens_for(batch[0]["category"])
    if cfg.generate.do_sample:
        out = model.generate(**enc, max_new_tokens=max_new, do_sample=True, temperature=cfg.generate.temperature,
                             top_p=cfg.generate.top_p, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             stop_strings=[STOP], tokenizer=tok)
        new = [[t for t in ids.tolist() if t != tok.pad_token_id] for ids in out[:, enc["input_ids"].shape[1]:]]
    else:
        new = greedy_decode(model, tok, enc, max_new, STOP, {tok.eos_token_id})
    return [_row(it, ids, tok, max_new) for it, ids in zip(batch, new)]


FLUSH = 8
"""Answers written to the file at once by the greedy stream (a kill loses at most these, and the rows that wait for
an earlier one)."""


def answer_stream(model, tok, items: list[dict], cfg: StudyConfig):
    """Greedy answers to ``items`` through ``greedy_stream``, shortest prompt first, in lists of at least ``FLUSH``
    rows (the last one shorter): each list is one write and one fsync of the answers file.

    Rows come out in queue order (an answer that ends early waits for the ones queued before it), so the answers
    file is the same bytes whether it was written in one run or resumed after a kill: a resumed run queues the
    items still missing in the same order."""
    prompts = sorted(((it, tok(format_prompt(it["question"]))["input_ids"]) for it in items),
                     key=lambda p: (len(p[1]), p[0]["id"]))
    queue = [(it, ids, cfg.generate.tokens_for(it["category"])) for it, ids in prompts]
    order, ended, rows = iter([it["id"] for it, _ in prompts]), {}, []
    nxt = next(order, None)
    for answered in greedy_stream(model, tok, queue, cfg.generate.batch_size, STOP, {tok.eos_token_id}):
        ended.update((it["id"], _row(it, ids, tok, cfg.generate.tokens_for(it["category"]))) for it, ids in answered)
        while nxt in ended:
            rows.append(ended.pop(nxt))
            nxt = next(order, None)
        if len(rows) >= FLUSH:
            yield rows
            rows = []
    if rows:
        yield rows


def _row(it: dict, ids: list[int], tok, max_new: int) -> dict:
    text = tok.decode(ids, skip_special_tokens=True)
    return {"id": it["id"], "category": it["category"], "answer": cut_at_stop(text),
            "new_tokens": len(ids), "truncated": len(ids) >= max_new}


def hf_answers(cfg: StudyConfig, model_name: str, study_dir: Path, todo: list[dict], path: Path,
               tokenizers: dict | None = None) -> int:
    """Answer ``todo`` with ``model_name``, appending answers to ``path`` as they end; returns the new tokens
    written. ``tokenizers`` (source -> tokenizer) keeps the tokenizers loaded for the models answered before."""
    tokenizers = {} if tokenizers is None else tokenizers
    source = tokenizer_source(cfg, model_name, study_dir)
    if source not in tokenizers:
        tokenizers[source] = load_tokenizer(source)
    tok = tokenizers[source]
    tok.padding_side = "left"
    model = generation_model(cfg, model_name, study_dir)
    model.eval()
    import transformers

    write_engine_note(study_dir, model_name, {"engine": f"transformers {transformers.__version__}",
                                              "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch.")})
    n_tokens = 0
    if cfg.generate.do_sample:
        answered = (answer_batch(model, tok, batch, cfg) for batch in plan_batches(todo, tok, cfg))
    else:
        answered = answer_stream(model, tok, todo, cfg)
    with ProgressBar(total=len(todo), desc=f"generate {model_name}", unit="item", mininterval=5) as bar:
        for rows in answered:
            for r in rows:
                r["model"] = model_name
            append_jsonl(path, rows)
            n_tokens += sum(r["new_tokens"] for r in rows)
            bar.update(len(rows))
    return n_tokens
