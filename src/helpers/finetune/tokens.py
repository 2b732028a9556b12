"""Prompt + response token ids with labels on the response and EOS only (``IGNORE`` elsewhere)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

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


class SavedOnce:
    """The run's tokenizer's ``save_pretrained``: written once into a folder of the training's work folder, then
    copied into every checkpoint and published model (AutoTokenizer and vLLM load those folders).

    The Trainer saves its ``processing_class`` with every checkpoint and model, and Gemma 3's 33 MB ``tokenizer.json``
    takes 0.9 s to serialize each time (a third of a small training's own time); a copy of the files takes
    milliseconds and gives the same bytes. Installed on the tokenizer object itself (``tok.save_pretrained``) so the
    Trainer still aligns the model's special tokens with it as before."""

    def __init__(self, tok, folder):
        self.save, self.folder = tok.save_pretrained, Path(folder)

    def __call__(self, out, *args, **kwargs):
        if not self.folder.is_dir():  # written whole or not at all: a killed save leaves only the .tmp
            tmp = self.folder.with_name(f".{self.folder.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.save(str(tmp), *args, **kwargs)
            os.replace(tmp, self.folder)
        Path(out).mkdir(parents=True, exist_ok=True)
        return tuple(str(shutil.copyfile(f, Path(out) / f.name)) for f in self.folder.iterdir())
