"""What a study run shows on the terminal (``helpers.study.console``): one line per stage execution, a progress bar
on a terminal, everything a stage prints in ``data/<study>/logs/``, the end of that log when a stage fails, and
the whole stream with ``-v``."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from helpers.study.files import write_jsonl
from helpers.study.loading import load_config
from helpers.study.paths import REPO
from helpers.study.runner import plan

LINES_AT_MOST = 60
"""The issue's bound for a fresh clone's `make study`."""


def runner(root, *args):
    return [sys.executable, "-m", "helpers", "run", "--config", "configs/micro.yaml", "--root", str(root), *args]


def quiet_env():
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    env.pop("STUDY_VERBOSE", None)
    return env


def on_a_terminal(cmd: list[str], env: dict, timeout: float = 900) -> str:
    """``cmd``'s stdout and stderr as a terminal 100 columns wide shows them (carriage returns and all): ``cmd`` runs
    in a session of its own whose controlling terminal is a new pseudo-terminal, as in a terminal window."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(1, termios.TIOCSCTTY, 0))
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode("utf-8", errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines left on the screen: a redrawn line (``\\r``) shows its last state; a bar erased at the end is gone."""
    return [seg for line in raw.replace("\r\n", "\n").split("\n") if (seg := line.split("\r")[-1].strip())]


def test_one_line_per_stage_execution_and_a_log_for_each(micro_study):
    root, index, lines = micro_study
    sd = root / "data" / "micro"
    labels = [r.label for r in plan(load_config("configs/micro.yaml"), sd)]
    for label in labels:
        mine = [line for line in lines if re.match(rf"\[\w+ ?\] {re.escape(label)}( |:|$)", line)]
        assert len(mine) == 1 and re.fullmatch(rf"\[done\] {re.escape(label)} in \d+ s", mine[0]), (label, lines)
        log = (sd / "logs" / f"{label}.log").read_text(encoding="utf-8")
        assert log.startswith(f"=== {label}: ") and "Executing Cell 1" in log and "stage time:" in log, label
    assert not [line for line in lines if "Executing Cell" in line or "stage time" in line]  # the stream is in the logs
    assert lines[-4:-3] == [f"report: {index}"] and lines[-3].startswith("overall score (the mean of the use-case means")
    assert lines[-2].startswith("most gained from base (0) to 12: ") and lines[-1].startswith("most lost: ")
    assert len(lines) <= LINES_AT_MOST
    finetune = (sd / "logs" / "finetune-12.log").read_text(encoding="utf-8")
    assert "step 3/3" in finetune  # the stage's own progress lines (helpers.finetune.log.TrainLog)
    every = "".join(p.read_text(encoding="utf-8") for p in (sd / "logs").glob("*.log"))
    assert "without encryption" not in every  # the kernel's sockets use CurveZMQ (console.kernel_config)
    assert not list((sd / "logs").glob("*.progress.json"))  # each removed when its execution ended


def test_a_failing_stage_prints_the_end_of_its_log_and_verbose_streams_everything(micro_copy):
    sd = micro_copy / "data" / "micro"
    write_jsonl(sd / "answers" / "base.jsonl", [{"id": "not-an-item", "category": "math", "answer": "1"}])
    log = sd / "logs" / "judge-base.log"
    runs_before = log.read_text(encoding="utf-8").count("=== judge-base: ")  # the micro study's own run
    out = subprocess.run(runner(micro_copy, "--only", "judge"), cwd=REPO, env=quiet_env(), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    tail_at = lines.index(next(line for line in lines if line.startswith("[fail] judge-base: ")))
    assert lines[tail_at].endswith(f"lines of its log, {log}:")
    assert any("12 eval items have no answer" in line for line in lines[tail_at + 1:])  # the traceback's last line
    assert "Executing Cell" not in out.stdout + out.stderr and "[run ]" not in out.stdout
    assert "error: stage judge-base failed: ValueError: " in out.stderr and f"log: {log}" in out.stderr
    assert "12 eval items have no answer" in log.read_text(encoding="utf-8").splitlines()[-1]

    out = subprocess.run(runner(micro_copy, "--only", "judge", "-v"), cwd=REPO, env=quiet_env(), capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "[run ] judge-base ..." in out.stdout and "[fail]" not in out.stdout
    assert "Executing Cell 1" in out.stderr and "study micro: files under" in out.stderr  # papermill's stream, live
    assert log.read_text(encoding="utf-8").count("=== judge-base: ") == runs_before + 2  # in the log all the same


@pytest.mark.slow  # the generate notebook through the command line
def test_on_a_terminal_a_progress_bar_runs_while_a_stage_works(micro_copy):
    sd = micro_copy / "data" / "micro"
    (sd / "answers" / "base.jsonl").unlink()  # the base model answers again: 12 items in one batch, tens of seconds
    raw = on_a_terminal(runner(micro_copy, "--only", "generate"), quiet_env())
    bars = re.findall(r"generate-\w+(?: · generate base)?: +\d+%\|[^|\r\n]*\| \d+/12 item \[\d\d:\d\d<[^\]]+\]", raw)
    assert bars, raw[-3000:]  # n of total, tqdm's elapsed<remaining
    shown = screen_lines(raw)
    assert [line for line in shown if line.startswith("[done] generate-")], shown
    assert not [line for line in shown if "%|" in line]  # each bar erased before the execution's line
    assert "Executing Cell" not in raw and "without encryption" not in raw and "Kernel" not in raw
    assert shown[-4].startswith("report: ") and shown[-1].startswith("most lost: ")
    assert len(shown) <= LINES_AT_MOST, shown
