"""Training on several processes: ``accelerate launch`` of ``python -m helpers train`` and the process rank."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from helpers.study.config import StudyConfig


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_command(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, scale: str | None,
                   overrides: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The ``accelerate launch`` command that trains on ``train.num_processes`` processes.

    With ``train.accelerate_config`` (configs/accelerate/: DDP, DeepSpeed ZeRO-3, multi-node)
    that file decides the setup; without one, plain multi-process data parallelism, which on
    a machine without GPUs runs on the CPU with the gloo backend.
    """
    from helpers.study.config import resolve

    # the accelerate of this interpreter, whether or not its bin/ is on PATH
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.train.num_processes)]
    if cfg.train.accelerate_config:
        cmd += ["--config_file", str(resolve(cfg.train.accelerate_config))]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["-m", "helpers", "train", "--config", str(resolve(config_path))]
    cmd += ["--scale", str(scale)] if scale else []
    cmd += [arg for o in overrides for arg in ("--set", o)]
    return cmd + (["--root", str(root)] if root else [])
