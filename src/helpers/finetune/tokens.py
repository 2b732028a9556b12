"""Prompt + response token ids with labels on the response and EOS only (``IGNORE`` elsewhere)."""
from __future__ import annotations

from helpers.study.prompt import format_prompt

IGNORE = -100


def tokenize(records: list[dict], tok, max_length: int) -> list[dict]:
    """Prompt tokens get label -100 (no loss); response tokens and the appended EOS are learned."""
    rows = []
    for r in records:
        prompt = tok(format_prompt(r["instruction"], r.get("input", "")))["input_ids"]
        answer = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE] * len(prompt) + answer)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows
