"""The one call each stage notebook's setup cell makes, whether papermill runs it or a person does.

``open_study`` loads the config (with the runner's ``--set`` overrides), finds the study folder,
holds the kernel's lock (under ``make study`` a rerun waits for this kernel; stepped through by
hand it warns of a batch run writing the same files) and starts the stage clock that
``stage_time`` reads in the last cell.
"""
from __future__ import annotations

import time
from pathlib import Path

from helpers.study.config import StudyConfig, is_mixture
from helpers.study.loading import load_config, study_dir
from helpers.study.lock import hold_in_kernel

_started: list[float] = []


def open_study(config: str, root: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> tuple[StudyConfig, Path]:
    """(config, study folder) of a notebook's parameters."""
    _started[:] = [time.perf_counter()]
    cfg = load_config(config, overrides)
    sd = study_dir(cfg, root)
    hold_in_kernel(sd)
    given = f" (--set {' '.join(overrides)})" if overrides else ""
    print(f"study {cfg.study}{given}: files under {sd}")
    return cfg, sd


def pick_model(cfg: StudyConfig, scale: str | None) -> str:
    """The model a per-model notebook works on: ``scale`` as given, else the study's last model on the scale axis
    (the largest scale, of the last strategy in a grid; a mixture model is only ever named)."""
    model = str(scale or [m for m in cfg.models if not is_mixture(m)][-1])
    print(f"model: {model}")
    return model


def pick_models(cfg: StudyConfig, scale: str | None) -> list[str]:
    """The models of the generate notebook: every model of the study for ``scale="all"`` (the runner's
    single execution with the vllm backend, one engine for all, or with ``generate.launcher: slurm``, one job
    array for all), else ``pick_model``'s one."""
    if scale == "all":
        print(f"models: {', '.join(cfg.models)}")
        return list(cfg.models)
    return [pick_model(cfg, scale)]


def stage_time() -> None:
    """Print the seconds since ``open_study``."""
    print(f"stage time: {time.perf_counter() - _started[0]:.0f} s" if _started else "stage time: open_study was not run")
