"""The start-of-training check that every rank sees the study folder: two ranks (torchrun, gloo on the CPU), each
with a folder of its own standing in for two nodes whose study folders are node-local disks, and with one folder."""
import platform
import subprocess
import sys
import textwrap

import pytest

from helpers.study.paths import REPO

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch.distributed as dist

    from helpers.finetune.shared import FolderNotShared, check_shared

    dist.init_process_group("gloo")
    folders = sys.argv[1:]
    folder = Path(folders[dist.get_rank() % len(folders)])
    try:
        check_shared(folder, wait_s=1)
    except FolderNotShared as e:
        print(f"rank {dist.get_rank()} refused: {e}", flush=True)
        sys.exit(3)
    print(f"rank {dist.get_rank()} shared", flush=True)
""")


def two_ranks(tmp_path, *folders):
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), *map(str, folders)], cwd=REPO, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_two_ranks_on_one_folder_pass_and_leave_nothing_behind(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    done = two_ranks(tmp_path, shared)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "rank 0 shared" in done.stdout and "rank 1 shared" in done.stdout
    assert list(shared.iterdir()) == []


@pytest.mark.slow
def test_ranks_on_different_folders_stop_with_the_hosts_named(tmp_path):
    node_a, node_b = tmp_path / "node-a", tmp_path / "node-b"
    node_a.mkdir()
    node_b.mkdir()
    done = two_ranks(tmp_path, node_a, node_b)
    assert done.returncode != 0
    host = platform.node()
    for rank, other in ((0, 1), (1, 0)):  # every rank stops, so no rank waits in a collective for the others
        assert f"rank {rank} refused: the study folder {node_a if rank == 0 else node_b} is not shared" in done.stdout
    assert f"rank 0 on host {host} does not see the token(s) of rank(s) 1 (host {host})" in done.stdout
    assert f"rank 1 on host {host} does not see the token(s) of rank(s) 0 (host {host})" in done.stdout
    assert "shared file system" in done.stdout
