"""A tiny randomly initialised Bloom-architecture model with a tokenizer trained on the spot, no downloads.

The paper's base model is Bloomz-7B1-mt; this is the same architecture at a few hundred
thousand parameters, for smoke runs of the training path where no Hub access exists
(``benchmarks/gpu_smoke.py`` on a GPU machine, the tests on a CPU). Its tokenizer is a
byte-level BPE learned from the given texts in well under a second, so Chinese and every other
text encodes without unknown tokens, with Bloom's special tokens (``<s>``, ``</s>``, ``<pad>``).
"""
from __future__ import annotations

from pathlib import Path


def train_tokenizer(texts: list[str], vocab_size: int = 512):
    """A byte-level BPE ``PreTrainedTokenizerFast`` learned from ``texts``, EOS ``</s>``, padding ``<pad>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def build_tiny_bloom(path: str | Path, texts: list[str], hidden_size: int = 64, layers: int = 2, heads: int = 4,
                     seed: int = 0) -> Path:
    """Save a random ``BloomForCausalLM`` and its tokenizer (trained on ``texts``) to ``path``; returns ``path``."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    tok = train_tokenizer(texts)
    config = BloomConfig(vocab_size=len(tok), hidden_size=hidden_size, n_layer=layers, n_head=heads,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    path = Path(path)
    BloomForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path
