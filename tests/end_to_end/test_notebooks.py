"""nbval over every notebook on the micro config: each notebook's cells run top to bottom in one kernel and none
may raise (``--nbval-lax``: outputs are not compared; the notebooks are stored without them).

It runs as a test of its own, in a scratch root so nothing under ``data/`` is touched, so that ``make test-all``'s
workers run it beside the other slow tests instead of after all of them (a minute on one core)."""
import os
import subprocess
import sys

import pytest

from helpers.study.paths import REPO


@pytest.mark.slow  # the micro study once more, a notebook at a time
def test_every_notebook_runs_top_to_bottom_on_the_micro_config(tmp_path):
    env = {**os.environ, "STUDY_CONFIG": "configs/micro.yaml", "STUDY_ROOT": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "notebooks"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    notebooks = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").glob("*.ipynb"))
    assert len(notebooks) >= 6 and all(f"{nb} ." in done.stdout for nb in notebooks), done.stdout[-6000:]
    assert (tmp_path / "data" / "micro" / "results.json").exists()  # in the scratch root, as the notebooks were told
