"""Watching a run while it trains: ``train.report_to`` handed to Trainer (none, tensorboard or wandb).

Trainer's own integrations do the reporting; this module only checks, before anything is loaded, that the
chosen one can work here, and points it at the study: TensorBoard's event files go to
``<study>/tensorboard/<run>/`` (on the shared study folder, so ``tensorboard --logdir data/<study>/tensorboard``
on any machine that mounts it shows a cluster run live), and a W&B run is named after the study and the run
and filed under the project ``WANDB_PROJECT`` (default: the study's name).

The W&B key is read from the environment only (``WANDB_API_KEY``), as every secret of the study; with
``WANDB_MODE=offline`` W&B writes locally and needs no key.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from helpers.study.config import StudyConfig

TENSORBOARD = "tensorboard"


def report_problem(cfg: StudyConfig) -> str | None:
    """What stops ``train.report_to`` from working in this environment, in words; None when nothing does."""
    to = cfg.train.report_to
    if to == "tensorboard" and not (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        return ("train.report_to: tensorboard, but neither tensorboard nor tensorboardX is installed in this "
                "environment (pip install tensorboard); set report_to: none, or install it")
    if to == "wandb":
        if importlib.util.find_spec("wandb") is None:
            return ("train.report_to: wandb, but the wandb package is not installed in this environment "
                    "(pip install wandb); set report_to: none or tensorboard, or install it")
        if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE", "").lower() not in ("offline", "disabled"):
            return ("train.report_to: wandb, but WANDB_API_KEY is not set (the key is read from the environment only); "
                    "export WANDB_API_KEY, or WANDB_MODE=offline to log locally, or set report_to: none")
    return None


def check_report_to(cfg: StudyConfig) -> None:
    """Raise ``ValueError`` when ``train.report_to`` cannot work here (before the model loads)."""
    found = report_problem(cfg)
    if found:
        raise ValueError(found)


def report_arguments(cfg: StudyConfig, study_dir: Path, run: str) -> dict:
    """``report_to`` and ``run_name`` for ``TrainingArguments``; points the chosen integration at the study.

    transformers' TensorBoard callback takes its folder from ``TENSORBOARD_LOGGING_DIR`` and W&B its project
    from ``WANDB_PROJECT``; both are set here (the latter only when the user has not set it).
    """
    to = cfg.train.report_to
    if to == "tensorboard":
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(study_dir / TENSORBOARD / run)
    elif to == "wandb":
        os.environ.setdefault("WANDB_PROJECT", cfg.study)
    return {"report_to": to, "run_name": f"{cfg.study}-{run}"}
