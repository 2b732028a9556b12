"""The runner's terminal: the stage's progress file, the bar drawn from it, the stage log."""
import io
import logging
import os
import threading
import time

from helpers.study import console, progress
from helpers.study.files import read_json, write_json


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_stage_reports_only_when_the_runner_asks(tmp_path, monkeypatch):
    path = tmp_path / "logs" / "finetune-4.progress.json"
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.report("train 4", 1, 3, "step")
    assert not path.exists()

    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "_last", {"desc": None, "t": 0.0})
    progress.report("train 4", 1, 3, "step")
    assert read_json(path) == {"desc": "train 4", "n": 1, "total": 3, "unit": "step"}
    progress.report("train 4", 2, 3, "step")  # within a second of the last: skipped
    assert read_json(path)["n"] == 1
    progress.report("train 4", 3, 3, "step")  # the last always
    assert read_json(path)["n"] == 3
    progress.report("train 12", 0, 5, "step")  # another loop at once
    assert read_json(path) == {"desc": "train 12", "n": 0, "total": 5, "unit": "step"}


def test_the_stages_tqdm_bar_reports_as_it_draws(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "_last", {"desc": None, "t": 0.0})
    out = io.StringIO()
    with progress.ProgressBar(total=4, desc="generate base", unit="item", file=out, mininterval=60) as bar:
        assert read_json(path) == {"desc": "generate base", "n": 0, "total": 4, "unit": "item"}
        bar.update(4)
    assert read_json(path)["n"] == 4 and "4/4" in out.getvalue()  # its own text bar, as tqdm's


def test_the_runner_draws_the_stages_progress_on_a_terminal_only(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    path = tmp_path / "logs" / "finetune.progress.json"
    screen = FakeTerminal()
    with console.Bar("finetune", path, screen, poll_s=0.02):
        assert progress.ENV in os.environ  # what the kernel papermill starts inherits
        time.sleep(0.1)
        write_json(path, {"desc": "train 640", "n": 3, "total": 10, "unit": "step"})
        time.sleep(0.2)
        write_json(path, {"desc": "train 640", "n": 6, "total": 10, "unit": "step"})
        time.sleep(0.2)
    drawn = screen.getvalue()
    assert "finetune [00:00]" in drawn  # before the stage's first report: the time so far
    assert "finetune · train 640:  30%|" in drawn and "3/10 step [" in drawn and "6/10 step [" in drawn
    assert "<" in drawn.split("6/10 step [")[1].split("]")[0]  # elapsed<remaining: tqdm's estimate
    assert progress.ENV not in os.environ and not path.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("progress ")]

    with console.Bar("finetune", path, None):  # stdout is not a terminal: nothing set, nothing drawn
        assert progress.ENV not in os.environ


def test_a_stage_log_keeps_everything_and_the_terminal_only_when_verbose(tmp_path, caplog):
    log = tmp_path / "logs" / "data.log"
    pm = logging.getLogger("papermill")
    with caplog.at_level(logging.INFO):
        with console.StageLog(log, verbose=False, header="data: 01_data.ipynb"):
            pm.info("Executing Cell 1---")
            pm.warning("\rgenerate base:   0%|  | 0/12\rgenerate base: 100%|##| 12/12\n")
        assert "Executing Cell" not in caplog.text  # not propagated: not on the terminal
        with console.StageLog(log, verbose=True, header="data again"):
            pm.info("loaded 60 pool items\n")
        assert "loaded 60 pool items" in caplog.text
    text = log.read_text()
    assert text.startswith("=== data: 01_data.ipynb, ")
    assert "Executing Cell 1---\ngenerate base:   0%|  | 0/12\ngenerate base: 100%|##| 12/12\n=== data again" in text
    assert text.endswith("loaded 60 pool items\n")
    assert pm.handlers == [] and pm.propagate  # as before the block
    last = console.tail(log, 2)
    assert last[0].startswith("=== data again, ") and last[1] == "loaded 60 pool items"
