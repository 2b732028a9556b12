"""GPU memory for model states (weights, gradients, Adam states) per GPU, and the check before training.

A ZeRO config with a model that does not fit fails minutes into a run, after the model has
loaded, with an out-of-memory trace that does not say which setting to change. The rule below
(from the ZeRO paper, Rajbhandari et al. 2020) tells it before training from the parameter
counts alone; ``python -m helpers run --dry-run`` can print the same figure from the config.
Activations, the CUDA context and fragmentation come on top, so passing the check is necessary,
not sufficient.
"""
from __future__ import annotations

GIB = 2**30


def model_state_memory(params: float, trainable: float, stage: int, n_gpus: int, weight_bytes: int = 2,
                       offload_optimizer: bool = False, offload_params: bool = False, largest_layer: float = 0) -> float:
    """Bytes per GPU of weights, gradients and Adam states under ZeRO ``stage`` (0 = plain data parallel).

    The rule, for AdamW with ``weight_bytes`` per weight (2 for bf16/fp16, 4 for fp32):

    - weights: ``weight_bytes`` x ``params`` (frozen ones too);
    - gradients: ``weight_bytes`` x ``trainable``;
    - optimizer: 8 x ``trainable`` (fp32 momentum and variance), plus 4 x ``trainable`` for the
      fp32 master copy when the weights are in 16 bits.

    A full fine-tune costs 16 bytes per parameter either way (2 + 2 + 12, or 4 + 4 + 8); LoRA
    costs the frozen weights plus 16 bytes per adapter parameter. ZeRO splits over ``n_gpus``:
    stage 1 the optimizer states, stage 2 the gradients as well, stage 3 the weights as well.
    ``offload_optimizer`` keeps the optimizer states in CPU memory, ``offload_params`` (stage 3)
    the weights.

    ZeRO-3 with 16-bit weights keeps each gradient partition in fp32 (4 bytes, not 2): 18 bytes per
    parameter, and it gathers one whole layer at a time, ``largest_layer`` parameters at 4 bytes (for
    Bloom the 250,880 x 4,096 embedding). That is DeepSpeed's own estimator
    (``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs``), which a test compares.

    Bloomz-7B1 fully fine-tuned under ZeRO-3 on 8 GPUs: 18 x 7.07e9 / 8 bytes + 4 x 1.03e9, about 18.7 GiB.

    >>> round(model_state_memory(7.07e9, 7.07e9, stage=3, n_gpus=8, largest_layer=250880 * 4096) / 2**30, 2)
    18.64
    >>> round(model_state_memory(7.07e9, 7.07e9, stage=0, n_gpus=8) / 2**30, 2)
    105.35
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be at least 1, got {n_gpus}")
    weights = weight_bytes * params
    grads = (4 if stage == 3 else weight_bytes) * trainable
    optimizer = (8 + (4 if weight_bytes < 4 else 0)) * trainable
    if offload_optimizer:  # under ZeRO-3 the fp32 gradient partitions go to the CPU with the optimizer
        optimizer = 0.0
        grads = 0.0 if stage == 3 else grads
    if offload_params and stage == 3:
        weights = 0.0
    optimizer /= n_gpus if stage >= 1 else 1
    grads /= n_gpus if stage >= 2 else 1
    weights /= n_gpus if stage >= 3 else 1
    gathered = 4 * largest_layer if stage == 3 else 0.0
    return weights + grads + optimizer + gathered


LOGIT_BYTES = 10
"""Bytes per logit while the loss is computed: the bf16 logits (2), their fp32 copy for the cross-entropy (4)
and its fp32 gradient (4)."""


def logits_memory(per_device_batch: int, max_length: int, vocab: int) -> float:
    """Bytes per GPU the output layer's logits take at their peak: every position of a full batch of
    ``max_length`` tokens times the vocabulary. The label-only head (``helpers.finetune.head``) skips the
    prompt positions, but only on one process; under DDP or DeepSpeed the model's own forward computes them
    all. Bloom at 8 x 1,024 tokens: 8 x 1,024 x 250,880 x 10 bytes, about 19 GiB per GPU.

    >>> size(logits_memory(8, 1024, 250880))
    '19.1 GiB'
    """
    return float(per_device_batch) * max_length * vocab * LOGIT_BYTES


def size(n: float) -> str:
    """Bytes as GiB, or MiB below one GiB.

    >>> size(14.14e9), size(2_127_872)
    ('13.2 GiB', '2.0 MiB')
    """
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.1f} MiB"


def gpu_memory() -> int | None:
    """Total memory of this process's GPU in bytes, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def check_fits(method: str, accelerate_config: str | None, params: float, trainable: float, zero: dict | None,
               n_gpus: int, weight_bytes: int, gpu_bytes: int | None, largest_layer: float = 0,
               logits: float = 0) -> float:
    """Bytes per GPU of model states and the logits' peak (``logits``, from ``logits_memory``); raises ValueError
    naming the settings when they exceed ``gpu_bytes``.

    ``zero`` is ``launch.zero_settings``'s answer (None: no DeepSpeed, every GPU holds everything).
    ``gpu_bytes`` None (no GPU) checks nothing: the CPU's memory is the operating system's business.
    """
    zero = zero or {"stage": 0, "offload_optimizer": False, "offload_params": False}
    need = model_state_memory(params, trainable, zero["stage"], n_gpus, weight_bytes,
                              zero["offload_optimizer"], zero["offload_params"], largest_layer) + logits
    if gpu_bytes is not None and need > gpu_bytes:
        setup = f"ZeRO stage {zero['stage']}" if zero["stage"] else "no ZeRO sharding (each GPU holds every state)"
        raise ValueError(
            f"the model does not fit: its weights, gradients and optimizer states"
            f"{f' and {size(logits)} of logits' if logits else ''} need {size(need)} per GPU "
            f"({params:,.0f} parameters, {trainable:,.0f} trained, {setup}, {n_gpus} GPU(s)) but a GPU has "
            f"{size(gpu_bytes)}. Change train.method (now {method}; lora trains far fewer), "
            f"train.accelerate_config (now {accelerate_config}; DeepSpeed ZeRO-3 shards every state, "
            f"configs/accelerate/deepspeed_zero3.yaml), train.num_processes (more GPUs share the states under ZeRO) "
            f"or train.per_device_batch_size / train.max_length (the logits)")
    return need
