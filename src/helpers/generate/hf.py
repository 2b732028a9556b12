"""The hf backend: the model in this process through transformers, batched with a token budget per use case.

Prompts are grouped by their token budget and sorted by length, then answered in batches with
left padding and the KV cache: on a 2-core CPU a batch of 16 answers about 7x faster than one
prompt at a time. Greedy (``greedy.greedy_decode``) unless the config samples. Each finished
batch is appended to the answers file, so a killed run continues with the items it had not
answered yet.
"""
from __future__ import annotations

from pathlib import Path

import torch

from helpers.generate.backend import write_engine_note
from helpers.generate.greedy import greedy_decode
from helpers.study.config import StudyConfig
from helpers.study.files import append_jsonl
from helpers.study.models import load_for_generation
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
    rows = []
    for it, ids in zip(batch, new):
        text = tok.decode(ids, skip_special_tokens=True)
        rows.append({"id": it["id"], "category": it["category"], "answer": cut_at_stop(text),
                     "new_tokens": len(ids), "truncated": len(ids) >= max_new})
    return rows


def hf_answers(cfg: StudyConfig, model_name: str, study_dir: Path, todo: list[dict], path: Path) -> int:
    """Answer ``todo`` with ``model_name`` in length-sorted batches, each appended to ``path`` as it finishes;
    returns the new tokens written."""
    model, tok = load_for_generation(cfg, model_name, study_dir)
    model.eval()
    tok.padding_side = "left"
    import transformers

    write_engine_note(study_dir, model_name, {"engine": f"transformers {transformers.__version__}",
                                              "device": str(model.device), "dtype": str(model.dtype).removeprefix("torch.")})
    n_tokens = 0
    with ProgressBar(total=len(todo), desc=f"generate {model_name}", unit="item", mininterval=5) as bar:
        for batch in plan_batches(todo, tok, cfg):
            rows = answer_batch(model, tok, batch, cfg)
            for r in rows:
                r["model"] = model_name
            append_jsonl(path, rows)
            n_tokens += sum(r["new_tokens"] for r in rows)
            bar.update(len(batch))
    return n_tokens
