"""A Trainer whose output projection runs on the labelled positions only.

Gemma's 262k-word vocabulary makes the projection most of a small model's compute, and only
response tokens carry a label; projecting just those gives the same loss for less work.
"""
from __future__ import annotations

import torch
from transformers import Trainer

from helpers.finetune.launch import world_size
from helpers.finetune.tokens import IGNORE


class LabelOnlyHeadTrainer(Trainer):
    """Trainer whose loss projects hidden states to the vocabulary only where a label exists.

    In a multi-process run the model is wrapped (DDP, DeepSpeed) and its forward must be
    the wrapper's, so there the standard full-vocabulary loss is used instead.
    """

    tokens_seen = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.tokens_seen += int(inputs["attention_mask"].sum())
        if world_size() > 1:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        hidden = causal_lm.model(**inputs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = causal_lm.lm_head(hidden[:, :-1][keep]).float()
        softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum())
        return (loss, None) if return_outputs else loss
