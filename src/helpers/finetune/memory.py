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
                       offload_optimizer: bool = False, offload_params: bool = False) -> float:
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

    Bloomz-7B1 fully fine-tuned under ZeRO-3 on 8 GPUs: 16 x 7.07e9 / 8 bytes, about 13.2 GiB.

    >>> round(model_state_memory(7.07e9, 7.07e9, stage=3, n_gpus=8) / 2**30, 2)
    13.17
    >>> round(model_state_memory(7.07e9, 7.07e9, stage=0, n_gpus=8) / 2**30, 2)
    105.35
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be at least 1, got {n_gpus}")
    weights = weight_bytes * params
    grads = weight_bytes * trainable
    optimizer = (8 + (4 if weight_bytes < 4 else 0)) * trainable
    if offload_optimizer:
        optimizer = 0.0
    if offload_params and stage == 3:
        weights = 0.0
    optimizer /= n_gpus if stage >= 1 else 1
    grads /= n_gpus if stage >= 2 else 1
    weights /= n_gpus if stage >= 3 else 1
    return weights + grads + optimizer


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
               n_gpus: int, weight_bytes: int, gpu_bytes: int | None) -> float:
    """Bytes per GPU of model states; raises ValueError naming the settings when they exceed ``gpu_bytes``.

    ``zero`` is ``launch.zero_settings``'s answer (None: no DeepSpeed, every GPU holds everything).
    ``gpu_bytes`` None (no GPU) checks nothing: the CPU's memory is the operating system's business.
    """
    zero = zero or {"stage": 0, "offload_optimizer": False, "offload_params": False}
    need = model_state_memory(params, trainable, zero["stage"], n_gpus, weight_bytes,
                              zero["offload_optimizer"], zero["offload_params"])
    if gpu_bytes is not None and need > gpu_bytes:
        setup = f"ZeRO stage {zero['stage']}" if zero["stage"] else "no ZeRO sharding (each GPU holds every state)"
        raise ValueError(
            f"the model does not fit: its weights, gradients and optimizer states need {size(need)} per GPU "
            f"({params:,.0f} parameters, {trainable:,.0f} trained, {setup}, {n_gpus} GPU(s)) but a GPU has "
            f"{size(gpu_bytes)}. Change train.method (now {method}; lora trains far fewer), "
            f"train.accelerate_config (now {accelerate_config}; DeepSpeed ZeRO-3 shards every state, "
            f"configs/accelerate/deepspeed_zero3.yaml) or train.num_processes (more GPUs share the states under ZeRO)")
    return need
