"""A Trainer whose output projection runs on the labelled positions only.

Gemma's 262k-word vocabulary (Bloom's 250k) makes the projection most of a small model's compute,
and only response tokens carry a label; projecting just those gives the same loss for less work.

The inner network and the projection are found through the model's own API (``get_decoder()``,
``get_output_embeddings()``), not by attribute names (Gemma's ``.model``, Bloom's ``.transformer``),
so any decoder-only architecture on the Hub works. Where it cannot apply, the model's own loss is
used and the log says why, once: a model wrapped for several processes (DDP, DeepSpeed) whose
forward must be the wrapper's, a model without a separate decoder or output embeddings, or one
whose own loss differs on the first batch (an architecture that does more after its projection
than the final-logit soft-capping handled here).
"""
from __future__ import annotations

import contextlib

import torch
from transformers import PreTrainedModel, Trainer

from helpers.finetune.launch import is_main_process, world_size
from helpers.finetune.tokens import IGNORE


def label_only_parts(model) -> tuple | str:
    """``(causal_lm, decoder, head)`` for the label-only loss, or the reason it cannot apply to ``model``."""
    if world_size() > 1:
        return f"{world_size()} processes: the model's forward must be its wrapper's (DDP or DeepSpeed)"
    if "module" in getattr(model, "_modules", {}):  # DDP, DeepSpeedEngine, FSDP keep the model as `.module`
        return f"the model is wrapped by {type(model).__name__}, whose forward must be the one called"
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(causal_lm, PreTrainedModel):
        return f"the model is wrapped by {type(causal_lm).__name__}, whose forward must be the one called"
    name = type(causal_lm).__name__
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else None
    if decoder is None or decoder is causal_lm:
        return f"{name} has no decoder apart from itself (get_decoder())"
    head = causal_lm.get_output_embeddings()
    if head is None:
        return f"{name} has no output embeddings (get_output_embeddings())"
    return causal_lm, decoder, head


def label_only_loss(causal_lm, decoder, head, inputs: dict, labels: torch.Tensor, num_items_in_batch=None,
                    autocast=contextlib.nullcontext) -> torch.Tensor:
    """Causal-LM cross entropy with the vocabulary projection at labelled positions only.

    The sum over labelled tokens is divided by ``num_items_in_batch`` (Trainer's count over the
    whole accumulated batch) when given, else by this batch's labelled tokens: the model's own
    mean. ``autocast`` is the Trainer's mixed-precision context: calling the decoder directly
    bypasses the autocast that accelerate wraps around the model's forward.
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE
    with autocast():
        hidden = decoder(**inputs, use_cache=False).last_hidden_state
        logits = head(hidden[:, :-1][keep])
    logits = logits.float()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    return loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum())


class LabelOnlyHeadTrainer(Trainer):
    """Trainer whose loss projects hidden states to the vocabulary only where a label exists.

    On the first batch it checks the label-only loss against the model's own on one example
    (eval mode, no gradients); any disagreement, or a model it cannot take apart, switches to
    the standard full-vocabulary loss for the whole run, said once on the console.
    """

    tokens_seen = 0
    _parts: tuple | None = None
    _decided = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.tokens_seen += int(inputs["attention_mask"].sum())
        if not self._decided:
            self._decide(model, inputs)
        if self._parts is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        loss = label_only_loss(*self._parts, inputs, labels, num_items_in_batch, self._autocast())
        return (loss, None) if return_outputs else loss

    def _autocast(self):
        accelerator = getattr(self, "accelerator", None)
        return accelerator.autocast if accelerator is not None else contextlib.nullcontext

    def _decide(self, model, inputs) -> None:
        self._decided = True
        parts = label_only_parts(model)
        if isinstance(parts, str):
            return self._fall_back(parts)
        causal_lm = parts[0]
        one = {k: v[:1] for k, v in inputs.items()}
        labels = one.pop("labels")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ours = label_only_loss(*parts, one, labels, autocast=self._autocast())
                with self._autocast()():
                    theirs = model(**one, labels=labels, use_cache=False).loss.float()
        finally:
            model.train(was_training)
        if not torch.allclose(ours, theirs, rtol=2e-3, atol=1e-4):  # bf16 rounding passes, a changed logit does not
            return self._fall_back(f"on the first batch its loss {ours.item():.4f} differed from "
                                   f"{type(causal_lm).__name__}'s own {theirs.item():.4f}")
        self._parts = parts

    def _fall_back(self, why: str) -> None:
        if is_main_process():
            print(f"label-only loss head off, using the model's own loss: {why}", flush=True)
