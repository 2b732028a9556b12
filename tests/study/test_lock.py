"""One batch run per study: the study lock, the kernel lock and the clean-up of killed writes."""
import os
import platform
import subprocess
import sys
import textwrap
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.study.lock import KERNEL_ENV, KERNELS, StudyBusy, hold_in_kernel, remove_leftovers, study_lock
from helpers.study.paths import REPO


def hold(tmp_path, code: str) -> subprocess.Popen:
    """A separate process that runs ``code`` (with ``sd``, the study folder, defined) and then sleeps;
    returns once it printed 'held'. The code keeps its lock in a variable: a lock object that is
    garbage-collected releases its lock."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from helpers.study.lock import *
        sd = Path({str(tmp_path / 'sd')!r})
    """) + textwrap.dedent(code) + "\nprint('held', flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_of_the_same_study_stops_at_once_and_names_the_first(tmp_path):
    first = hold(tmp_path, "cm = study_lock(sd, 'configs/first.yaml'); cm.__enter__()")
    try:
        t0 = time.monotonic()
        with pytest.raises(StudyBusy) as e:
            with study_lock(tmp_path / "sd", "second.yaml"):
                pass
        assert time.monotonic() - t0 < 5
        assert f"pid {first.pid}" in str(e.value) and "configs/first.yaml" in str(e.value)
    finally:
        first.kill()
        first.wait()
    with study_lock(tmp_path / "sd", "second.yaml"):  # a killed holder leaves nothing to remove by hand
        assert os.environ[KERNEL_ENV] == str(tmp_path / "sd" / KERNELS)
    assert KERNEL_ENV not in os.environ


def test_the_cli_exits_non_zero_when_the_study_is_busy(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("study: busy\nscales: [4]\n")
    sd = tmp_path / "data" / "busy"
    first = hold(tmp_path, f"cm = study_lock(Path({str(sd)!r}), 'other'); cm.__enter__()")
    try:
        out = subprocess.run([sys.executable, "-m", "helpers", "run", "--config", str(config), "--root", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        first.kill()
        first.wait()
    assert out.returncode == 1, out.stderr
    assert "in use by another run of this study" in out.stderr and f"pid {first.pid}" in out.stderr
    assert not (sd / "pool.jsonl").exists()


def test_a_run_waits_for_every_process_of_a_killed_run(tmp_path, monkeypatch):
    """A kernel killed with the runner, and the training process it launched, still running."""
    monkeypatch.setenv(KERNEL_ENV, str(tmp_path / "sd" / KERNELS))
    kernel = hold(tmp_path, "hold_in_kernel(sd)")
    training = hold(tmp_path, "hold_in_kernel(sd)")
    monkeypatch.delenv(KERNEL_ENV)
    locks = tmp_path / "sd" / KERNELS
    host = platform.node()  # named by host too: pids repeat across the nodes sharing a study folder
    assert sorted(p.name for p in locks.iterdir()) == sorted([f"{host}-{kernel.pid}.lock", f"{host}-{training.pid}.lock"])
    try:
        with pytest.raises(StudyBusy, match=f"process pid {kernel.pid} on {host} of an earlier run"):
            with study_lock(tmp_path / "sd", "c.yaml", kernel_wait_s=0.5):
                pass
        t0 = time.monotonic()
        kernel.kill()
        subprocess.Popen(["sh", "-c", f"sleep 1.5; kill -9 {training.pid}"])
        with study_lock(tmp_path / "sd", "c.yaml", kernel_wait_s=30):
            waited = time.monotonic() - t0
            assert list(locks.iterdir()) == []  # the dead processes' lock files are gone
    finally:
        for proc in (kernel, training):
            proc.kill()
            proc.wait()
    assert 1.0 < waited < 20


@pytest.mark.slow  # a notebook through papermill
def test_kernels_started_by_papermill_under_the_lock_hold_the_kernel_lock(tmp_path):
    import papermill as pm

    sd = tmp_path / "sd"
    nb = new_notebook(cells=[new_code_cell(
        "from pathlib import Path\nfrom helpers.study import lock\n"
        f"lock.hold_in_kernel(Path({str(sd)!r}))\nprint('held:', len(lock._held))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    with study_lock(sd, "c.yaml"):
        pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            cwd=str(REPO), progress_bar=False)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"] == "held: 1\n"
    assert len(list((sd / KERNELS).glob("*.lock"))) == 1  # the kernel's own (it has exited since)


def test_a_notebook_stepped_through_by_hand_warns_of_a_batch_run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(KERNEL_ENV, raising=False)
    hold_in_kernel(tmp_path / "sd")
    assert capsys.readouterr().out == ""
    first = hold(tmp_path, "cm = study_lock(sd, 'batch.yaml'); cm.__enter__()")
    try:
        hold_in_kernel(tmp_path / "sd")
    finally:
        first.kill()
        first.wait()
    out = capsys.readouterr().out
    assert "a batch run of this study is in progress" in out and f"pid {first.pid}" in out


def test_leftovers_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    keep = ["pool.jsonl", ".stages/data.json", "models/.prefix.tmp/run.json",
            "models/.prefix.tmp/trainer/checkpoint-2/trainer_state.json", "models/8/adapter_model.safetensors",
            "notebooks/data.ipynb", ".study.lock", ".kernels/123.lock", "notes.tmp"]
    litter = [".pool.jsonl.k2j3h4.tmp", "figures/.composition.abc.png.tmp", "notebooks/.data.ipynb.tmp.ipynb",
              "models/.prefix.tmp/.run.json.x1y2.tmp", "models/.8.publish/adapter_model.safetensors",
              "models/.8.old.publish/adapter_config.json"]
    for name in keep + litter:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    removed = remove_leftovers(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(
        [n for n in litter if "publish" not in n] + ["models/.8.publish", "models/.8.old.publish"])
    assert all((tmp_path / n).exists() for n in keep)
    assert not any((tmp_path / n).exists() for n in litter)


def test_a_run_cleans_the_study_and_report_folders_before_it_starts(tmp_path):
    sd, rd = tmp_path / "data" / "s", tmp_path / "reports" / "s"
    for p in (sd / ".pool.jsonl.abc.tmp", rd / ".index.html.abc.tmp", sd / "pool.jsonl"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    with study_lock(sd, "c.yaml", clean_dirs=(rd,)):
        assert sorted(p.name for p in sd.iterdir() if p.is_file()) == [".study.lock", ".study.lock.json", "pool.jsonl"]
        assert list(rd.iterdir()) == []
