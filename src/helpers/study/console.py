"""What a study run shows on the terminal: one line per stage execution, a progress bar, the rest in a log.

A stage prints a great deal (papermill's cell markers, tables, its own progress). All of it goes to the
execution's log, ``data/<study>/logs/<execution>.log``: papermill's ``log_output`` stream (every output of the
notebook as it comes, and papermill's own remarks) and nbconvert's, while the runner renders the executed notebook
to HTML. The terminal gets one line per execution from the runner. While an execution runs, a terminal also shows
a progress bar (tqdm, with its estimate of the time left) drawn from the progress file the stage writes
(``helpers.study.progress``); where stdout is not a terminal (a pipe, a CI log) nothing bar-like is printed. A
failure prints the last lines of the log and its path. Verbose (``-v``, ``STUDY_VERBOSE=1``) streams everything
to the terminal as well, as it comes, as the runner always did before.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path

from helpers.study import progress
from helpers.study.files import read_json

LOGGERS = ("papermill", "traitlets")
"""papermill's: the notebook's output (``log_output``) and papermill's remarks; traitlets': nbconvert's remarks
while the executed notebook is rendered (such as "Alternative text is missing on 2 image(s)")."""

TAIL = 20
"""Lines of the log a failure prints."""


def verbose_from_env() -> bool:
    """``STUDY_VERBOSE`` set to anything but empty, 0, false or no."""
    return os.environ.get("STUDY_VERBOSE", "").strip().lower() not in ("", "0", "false", "no")


def kernel_config():
    """Configuration for the kernel manager papermill starts: CurveZMQ encryption on the kernel's sockets.

    Why: ipykernel 7 warns on every start that the "Kernel is running over TCP without encryption ... susceptible
    to eavesdropping" (ipykernel's ``kernelapp.init_sockets``: TCP and no CurveZMQ key). jupyter_client starts the
    kernel on 127.0.0.1, so only a process on this machine could listen, and the connection messages are signed
    with a random key already; still, a warning in every stage's output reads as a security problem. jupyter_client
    8.10 can give the kernel CurveZMQ keys itself (``transport_encryption``): ``auto`` does so when the kernel's
    spec declares it supports them (ipykernel's own spec does) and pyzmq has CurveZMQ, so the sockets are encrypted
    and the warning has nothing to say. Where that is not possible (another kernel spec, an older jupyter_client)
    the kernel runs as before and the warning lands in the execution's log, with the rest of its output.
    """
    from traitlets.config import Config

    return Config({"KernelManager": {"transport_encryption": "auto"}})


def kernel_manager(log: Path | None):
    """The kernel manager class papermill starts the stage's kernel with (``log`` None: jupyter_client's own).

    Everything a cell prints reaches papermill as output (ipykernel also captures what the kernel's subprocesses
    write to its file descriptors), but ipykernel logs a few lines of its own to the stderr it was started with,
    outside any cell: "KeyboardInterrupt caught in kernel" as jupyter_client stops it, for one. With a ``log``
    the kernel's stdout and stderr are that file, so those lines are kept with the rest of the output, not
    printed between the runner's lines."""
    from jupyter_client.manager import AsyncKernelManager

    if log is None:
        return AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            with open(log, "a", encoding="utf-8") as f:  # the kernel holds its own copy of the descriptor
                kw.setdefault("stdout", f)
                kw.setdefault("stderr", f)
                return await super().start_kernel(**kw)

    return LoggedKernelManager


class _Plain(logging.Formatter):
    """The notebook's output as it printed it: without the line end papermill's chunks already carry, and with
    tqdm's carriage returns as line ends (each redraw of a text bar on a line of its own in the log)."""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage().replace("\r\n", "\n").replace("\r", "\n").strip("\n")


class StageLog:
    """While the block runs, every record of ``LOGGERS`` is appended to ``path``; to the terminal too only when
    ``verbose`` (the loggers then propagate to the root logger's handler, as before)."""

    def __init__(self, path: Path, verbose: bool, header: str):
        self.path, self.verbose, self.header = path, verbose, header
        self.handler: logging.Handler | None = None
        self.saved: list[tuple[logging.Logger, bool, int]] = []

    def __enter__(self) -> StageLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        self.handler.setFormatter(_Plain())
        for name in LOGGERS:
            lg = logging.getLogger(name)
            self.saved.append((lg, lg.propagate, lg.level))
            lg.addHandler(self.handler)
            lg.setLevel(logging.INFO)
            lg.propagate = self.verbose
        self.write(f"=== {self.header}, {time.strftime('%Y-%m-%d %H:%M:%S')} ===")
        return self

    def write(self, text: str) -> None:
        """A line of the runner's own (a header, the error of a failed execution) in the log only."""
        self.handler.stream.write(text.rstrip("\n") + "\n")
        self.handler.flush()

    def __exit__(self, *exc) -> None:
        for lg, propagate, level in self.saved:
            lg.removeHandler(self.handler)
            lg.propagate, lg.level = propagate, level
        self.handler.close()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_traceback(lines: list[str]) -> str:
    """A kernel's traceback (ANSI-coloured lines) as plain text for the log."""
    return _ANSI.sub("", "\n".join(lines))


def tail(path: Path, n: int = TAIL) -> list[str]:
    """The last ``n`` non-empty lines of a log."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-n:]


def terminal():
    """sys.stdout where it is a terminal (a bar is drawn there), else None."""
    try:
        return sys.stdout if sys.stdout.isatty() else None
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return None


class Bar:
    """One progress bar for one execution, on ``stream`` (None: no bar, nothing set, nothing written).

    While the block runs, ``$STUDY_PROGRESS`` names ``path`` (the kernel papermill starts inherits it, and every
    process the stage starts) and a thread reads the file every ``poll_s`` seconds: until the stage's first
    report the bar shows the label and the time so far (the kernel starting, the model loading); then the stage's
    loop, n of total, and tqdm's estimate of the time left. A new loop (another model, another judge) starts the
    bar again. The bar is erased when the block ends, where the runner prints the execution's line.
    """

    UNKNOWN = "{desc} [{elapsed}]"
    KNOWN = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}]"

    def __init__(self, label: str, path: Path, stream=None, poll_s: float = 0.5):
        self.label, self.path, self.stream, self.poll_s = label, path, stream, poll_s
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.before: str | None = None

    def __enter__(self) -> Bar:
        if self.stream is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a killed run's
        self.before = os.environ.get(progress.ENV)
        os.environ[progress.ENV] = str(self.path)
        self.thread = threading.Thread(target=self._draw, name=f"progress {self.label}", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is None:
            return
        self.stop.set()
        self.thread.join()
        if self.before is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = self.before
        self.path.unlink(missing_ok=True)

    def _read(self) -> dict | None:
        try:
            state = read_json(self.path)
        except (OSError, ValueError):  # not written yet (or a writer of another format): the time so far
            return None
        return state if isinstance(state, dict) and isinstance(state.get("n"), int) else None

    def _draw(self) -> None:
        from tqdm import tqdm

        size = shutil.get_terminal_size()  # a terminal that reports no size (0 x 0, where tqdm draws nothing): 80 x 24
        bar = tqdm(total=None, desc=self.label, file=self.stream, leave=False, bar_format=self.UNKNOWN, mininterval=0,
                   ncols=size.columns, nrows=size.lines)
        loop = None
        try:
            while not self.stop.is_set():
                bar.ncols = shutil.get_terminal_size().columns  # resized
                state = self._read()
                if state is not None:
                    key = (state.get("desc"), state.get("total"))
                    if key != loop or state["n"] < bar.n:  # a new loop: the estimate starts again
                        loop = key
                        bar.reset(total=state.get("total"))
                        bar.bar_format = self.KNOWN if state.get("total") else self.UNKNOWN
                        bar.unit = state.get("unit") or "it"
                        desc = str(state.get("desc") or "")
                        same = not desc or desc.replace(" ", "-") == self.label  # "generate base" of generate-base
                        bar.set_description_str(self.label if same else f"{self.label} · {desc}", refresh=False)
                    if state["n"] > bar.n:
                        bar.update(state["n"] - bar.n)
                bar.refresh()
                self.stop.wait(self.poll_s)
        finally:
            bar.close()
