"""Prompt + response token ids with labels on the response and EOS only (``IGNORE`` elsewhere)."""
from __future__ import annotations

from helpers.study.prompt import format_prompt

IGNORE = -100


def encode(tok, texts: list[str], special: bool) -> list[list[int]]:
    """Token ids of each text, as ``tok(texts, add_special_tokens=special)["input_ids"]`` gives them.

    A fast tokenizer whose backend has no truncation or padding set encodes through the backend's
    ``encode_batch_fast`` (no character offsets computed): the same ids in about two thirds of the
    time, which is most of the cost of tokenizing a 2M-record pool. Any other tokenizer: ``tok(...)``.
    """
    backend = getattr(tok, "backend_tokenizer", None) if getattr(tok, "is_fast", False) else None
    if backend is not None and hasattr(backend, "encode_batch_fast") and backend.truncation is None \
            and backend.padding is None:
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=special)]
    return tok(texts, add_special_tokens=special)["input_ids"]


def tokenize(records: list[dict], tok, max_length: int) -> list[dict]:
    """Prompt tokens get label -100 (no loss); response tokens and the appended EOS are learned.

    The prompts and the answers are each encoded in one batched call: a fast tokenizer encodes a
    batch exactly as it encodes each text alone (no padding, no truncation here), in a fraction of
    the time at millions of records (``helpers.finetune.cache`` tokenizes whole pools with this).
    """
    if not records:
        return []
    prompts = encode(tok, [format_prompt(r["instruction"], r.get("input") or "") for r in records], True)
    answers = encode(tok, [r["output"] for r in records], False)
    rows = []
    for prompt, answer in zip(prompts, answers):
        answer = answer + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE] * len(prompt) + answer)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows
