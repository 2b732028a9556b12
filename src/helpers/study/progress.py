"""How far a long stage has got, for the runner's progress bar.

A stage runs in a papermill kernel, and sometimes in processes that kernel starts (accelerate's ranks, the
vLLM worker, a Slurm job on another node). Rather than parse what each of them prints, the runner names a
small JSON file in ``$STUDY_PROGRESS`` (``data/<study>/logs/<execution>.progress.json``) before it starts the
kernel: every process of the stage inherits the variable, and the study folder is the one every node shares.
A long loop (training steps, answers, judgments, a teacher's tasks) writes ``{"desc", "n", "total", "unit"}``
there as it goes, through ``report`` or through ``ProgressBar``, the tqdm bar the stages draw for a person reading the
notebook; the runner polls the file and draws one bar on its terminal (``helpers.study.console``). Outside the
runner (JupyterLab, nbval, the tests) the variable is unset and nothing is written.

Only the standard library and tqdm: the vLLM worker imports this in vLLM's own environment.
"""
from __future__ import annotations

import os
import time

from tqdm import tqdm

from helpers.study.files import write_json

ENV = "STUDY_PROGRESS"

MIN_INTERVAL_S = 1.0
"""At most one write a second per loop (a GPU trains many steps a second); the first and the last always."""

_last = {"desc": None, "t": 0.0}


def report(desc: str, n: int, total: int | None, unit: str = "it") -> None:
    """Tell the runner that ``desc`` is at ``n`` of ``total`` (``unit``s); nothing when no runner asked.

    The file is replaced whole (``write_json``), so the runner never reads half of it. A failed write (a full
    disk, the folder removed) is ignored: the bar is a convenience, and the stage's own output says the same in
    its log."""
    path = os.environ.get(ENV)
    if not path:
        return
    now = time.monotonic()
    if desc == _last["desc"] and n != total and now - _last["t"] < MIN_INTERVAL_S:
        return
    _last.update(desc=desc, t=now)
    try:
        write_json(path, {"desc": desc, "n": n, "total": total, "unit": unit})
    except OSError:
        pass


class ProgressBar(tqdm):
    """tqdm's text bar that also ``report``s, each time it redraws (every ``mininterval``) and when it closes."""

    def display(self, msg=None, pos=None):
        report(self.desc, self.n, self.total, self.unit)
        return super().display(msg, pos)
