"""Training on several processes: ``accelerate launch`` of ``python -m helpers train``, the process rank,
and the DeepSpeed ZeRO settings of ``train.accelerate_config``.

On several machines every machine runs one ``accelerate launch`` for its own processes, told the number of
machines, its rank among them and where the main process listens (``Node``); inside a Slurm job all of that
comes from Slurm's variables (``slurm_node``), so no one writes a per-node command by hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers.study.config import StudyConfig


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def zero_settings(accelerate_config: str | None) -> dict | None:
    """``{stage, offload_optimizer, offload_params, bf16}`` of an accelerate config that sets up DeepSpeed, else None.

    Read from the file itself (``distributed_type: DEEPSPEED`` and its ``deepspeed_config``), or from
    the DeepSpeed JSON it names in ``deepspeed_config_file``; the memory check before training and the
    dry run use them. accelerate's own default stage (2) applies when the file names none. ``bf16`` is
    whether it trains in bf16 (None: ``auto``, it follows ``train.bf16``); DeepSpeed refuses a run where
    it and ``train.bf16`` disagree, so the check before loading says so first.
    """
    if not accelerate_config:
        return None
    import yaml

    from helpers.study.paths import resolve

    path = resolve(accelerate_config)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"train.accelerate_config: {path}: cannot read it as YAML ({e})") from e
    if str(raw.get("distributed_type", "")).upper() != "DEEPSPEED":
        return None
    ds = raw.get("deepspeed_config") or {}
    if ds.get("deepspeed_config_file"):
        json_path = resolve(ds["deepspeed_config_file"])
        try:
            zero = json.loads(json_path.read_text(encoding="utf-8")).get("zero_optimization", {})
        except (OSError, ValueError) as e:
            raise ValueError(f"train.accelerate_config: {path}: deepspeed_config_file {json_path}: {e}") from e
        stage = zero.get("stage", 0)
        opt_dev = (zero.get("offload_optimizer") or {}).get("device", "none")
        param_dev = (zero.get("offload_param") or {}).get("device", "none")
        bf16 = json.loads(json_path.read_text(encoding="utf-8")).get("bf16", {}).get("enabled", "auto")
    else:
        stage = ds.get("zero_stage", 2)
        opt_dev, param_dev = ds.get("offload_optimizer_device", "none"), ds.get("offload_param_device", "none")
        bf16 = str(raw.get("mixed_precision", "no")).lower() == "bf16"
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"train.accelerate_config: {path}: ZeRO stage must be 0, 1, 2 or 3, got {stage!r}")
    return {"stage": int(stage), "offload_optimizer": str(opt_dev).lower() not in ("none", ""),
            "offload_params": str(param_dev).lower() not in ("none", ""), "bf16": None if bf16 == "auto" else bool(bf16)}


def under_deepspeed_launch() -> bool:
    """Whether ``accelerate launch`` started this process with a DeepSpeed config (it says so in the environment)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


@dataclass(frozen=True)
class Node:
    """One machine of a multi-machine launch: how many machines, this one's rank, and the main process's address."""
    machines: int
    rank: int
    main_host: str
    port: int

    def arguments(self) -> list[str]:
        return ["--num_machines", str(self.machines), "--machine_rank", str(self.rank),
                "--main_process_ip", self.main_host, "--main_process_port", str(self.port)]


def slurm_port(job_id: str) -> int:
    """The main process's port for a job: ``MASTER_PORT`` if set, else one of 20000..39999 from the job id, so that
    two jobs sharing a node rarely pick the same one."""
    return int(os.environ.get("MASTER_PORT") or 20000 + int(job_id) % 20000)


def slurm_node(env: dict | None = None) -> Node:
    """This node's place in the Slurm job it runs in: ``SLURM_NNODES``, ``SLURM_NODEID``, and the first host of
    ``SLURM_JOB_NODELIST`` (expanded by ``scontrol show hostnames``) as the main process's address."""
    env = os.environ if env is None else env
    missing = [v for v in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_NODEID", "SLURM_JOB_NODELIST") if not env.get(v)]
    if missing:
        raise RuntimeError(f"not inside a Slurm job step ({', '.join(missing)} unset): "
                           "python -m helpers launch runs under srun in the job train.launcher: slurm submits")
    hosts = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], capture_output=True,
                           text=True, check=True).stdout.split()
    return Node(int(env["SLURM_NNODES"]), int(env["SLURM_NODEID"]), hosts[0], slurm_port(env["SLURM_JOB_ID"]))


def launch_command(cfg: StudyConfig, config_path: str | Path, root: str | Path | None, scale: str | None,
                   overrides: tuple[str, ...] | list[str] = (), node: Node | None = None) -> list[str]:
    """The ``accelerate launch`` command that trains on ``train.num_processes`` processes.

    The finetune notebook uses it whenever ``train.accelerate_config`` is set, on one process too:
    a DeepSpeed config only applies in a process that accelerate launched.

    With ``train.accelerate_config`` (configs/accelerate/: DDP, DeepSpeed ZeRO-3, multi-node)
    that file decides the setup; without one, plain multi-process data parallelism, which on
    a machine without GPUs runs on the CPU with the gloo backend. With ``node``, this machine's launch of a
    multi-machine run: ``train.num_processes`` counts the processes of every machine.
    """
    from helpers.study.paths import resolve

    # the accelerate of this interpreter, whether or not its bin/ is on PATH
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.train.num_processes)]
    if cfg.train.accelerate_config:
        cmd += ["--config_file", str(resolve(cfg.train.accelerate_config))]
    else:
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += node.arguments() if node else ([] if cfg.train.accelerate_config else ["--num_machines", "1"])
    cmd += ["-m", "helpers", "train", "--config", str(resolve(config_path))]
    cmd += ["--scale", str(scale)] if scale else []
    cmd += [arg for o in overrides for arg in ("--set", o)]
    return cmd + (["--root", str(root)] if root else [])
