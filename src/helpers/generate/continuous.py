"""Greedy decoding with the batch kept full: a finished answer's row is refilled with a waiting prompt.

``greedy.greedy_decode`` answers one batch until its last row ends; rows that end early leave the batch,
so a batch of 96 spends its last steps decoding a handful of rows. A decoding step costs a fixed part
(every weight read once, whatever the batch) plus a part per row, so those thin steps are the dear ones:
on the reference machines the fixed part is 70-130 ms and a row 1-9 ms. Here every prompt of a model
waits in one queue and the batch never thins while prompts wait: once ``capacity // 8`` rows have
ended, the waiting prompts are prefilled together and their rows joined to the batch (as vLLM's
continuous batching does, without its paged cache).

Rows stay right-aligned in one transformers ``DynamicCache``: joining left-pads the shorter side with
masked zeros, and when rows leave, the columns that only padding still uses are cut off, so the cache is
never longer than the longest live row. Each row keeps its own positions (from its own prompt), its own
token budget and its own end, as in ``greedy_decode``: the EOS token or the first token whose decoded
tail holds the stop string. In fp32 the answers are those of ``greedy_decode`` (a test compares them);
the arithmetic differs only in the padding a prompt was prefilled with.
"""
from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterator

import torch

from helpers.generate.greedy import TAIL


def _left_pad(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def _pad_columns(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """``t`` with ``n`` zero columns put in front along ``dim``."""
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class _Batch:
    """The live rows: their cache, attention mask, last positions and next tokens, and what each has answered."""

    def __init__(self):
        self.cache = None
        self.mask = self.pos = self.nxt = None
        self.keys: list = []  # the caller's key of each row
        self.answers: list[list[int]] = []
        self.budgets: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (indices into the batch), then cut the columns no live row uses."""
        if len(rows) == len(self):
            return
        idx = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.keys = [self.keys[i] for i in rows]
        self.answers = [self.answers[i] for i in rows]
        self.budgets = [self.budgets[i] for i in rows]
        if not rows:
            self.cache = self.mask = self.pos = self.nxt = None
            return
        self.mask, self.pos, self.nxt = self.mask[idx], self.pos[idx], self.nxt[idx]
        unused = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns of padding alone
        for layer in self.cache.layers:
            layer.keys = layer.keys[idx, :, unused:]
            layer.values = layer.values[idx, :, unused:]
        self.mask = self.mask[:, unused:]

    def join(self, other: _Batch) -> None:
        """Append ``other``'s rows, left-padding whichever cache is shorter."""
        if not len(other):
            return
        if not len(self):
            self.__dict__.update(other.__dict__)
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        a, b = width - self.mask.shape[1], width - other.mask.shape[1]
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_columns(mine.keys, a, 2), _pad_columns(theirs.keys, b, 2)])
            mine.values = torch.cat([_pad_columns(mine.values, a, 2), _pad_columns(theirs.values, b, 2)])
        self.mask = torch.cat([_pad_columns(self.mask, a, 1), _pad_columns(other.mask, b, 1)])
        self.pos, self.nxt = torch.cat([self.pos, other.pos]), torch.cat([self.nxt, other.nxt])
        self.keys += other.keys
        self.answers += other.answers
        self.budgets += other.budgets


@torch.inference_mode()
def greedy_stream(model, tok, prompts: list[tuple[object, list[int], int]], capacity: int, stop: str,
                  eos: set[int]) -> Iterator[list[tuple[object, list[int]]]]:
    """Answer ``prompts`` (``(key, prompt token ids, token budget)``, in the order given) greedily with at most
    ``capacity`` rows at once; yields, after each step, the ``(key, new tokens)`` of the answers that ended in it
    (the last token included: one of ``eos``, or the one that completed ``stop``)."""
    from transformers import DynamicCache

    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers 5.2x renamed it
    extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    with_positions = "position_ids" in params  # Bloom has none: ALiBi reads the attention mask
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos))
    waiting = deque(prompts)
    batch = _Batch()
    refill_at = max(1, capacity // 8)

    def forward(ids, mask, positions, cache):
        kw = dict(extra, position_ids=positions) if with_positions else extra
        out = model(input_ids=ids, attention_mask=mask, use_cache=True, **{cache_arg: cache}, **kw)
        return out.logits[:, -1].argmax(-1), out.cache if "cache" in out else out.past_key_values

    def settle(b: _Batch, tokens: torch.Tensor) -> list[tuple[object, list[int]]]:
        """Add each row's token; rows that ended leave ``b`` and are returned."""
        ended, live = [], []
        for j, token in enumerate(tokens.tolist()):
            answer = b.answers[j]
            answer.append(token)
            if token in eos or len(answer) >= b.budgets[j] or stop in tok.decode(answer[-TAIL:]):
                ended.append((b.keys[j], answer))
            else:
                live.append(j)
        b.nxt = tokens
        b.keep(live)
        return ended

    while waiting or len(batch):
        done = []
        if waiting and (not len(batch) or capacity - len(batch) >= refill_at):
            take = [waiting.popleft() for _ in range(min(capacity - len(batch), len(waiting)))]
            new = _Batch()
            ids, new.mask = _left_pad([p for _, p, _ in take], pad, model.device)
            new.pos = (new.mask.cumsum(-1) - 1).clamp(min=0)
            first, new.cache = forward(ids, new.mask, new.pos, DynamicCache())
            new.pos = new.pos[:, -1]
            new.keys, new.answers, new.budgets = [k for k, _, _ in take], [[] for _ in take], [n for _, _, n in take]
            done += settle(new, first)
            batch.join(new)
        if len(batch):
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch), 1))], dim=-1)
            batch.pos = batch.pos + 1
            tokens, batch.cache = forward(batch.nxt[:, None], batch.mask, batch.pos[:, None], batch.cache)
            done += settle(batch, tokens)
        if done:
            yield done
