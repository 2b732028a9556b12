"""A check at the start of training that every rank sees the same study folder.

On one machine it always does. On a cluster, the ranks of other nodes read the tokenized subset, write
checkpoints and wait for files that rank 0 writes (``run.json``, the published model): a study folder on a
node-local disk makes them wait for files that never appear (a hang, not an error) or train into a folder
nobody reads. So before anything is loaded each rank writes a token (its rank and host) into the folder,
and every rank looks for every token; one that misses any stops the whole launch with the hosts named.

A token written on one node may take a moment to show on another (NFS caches directory lookups for a few
seconds), so a rank looks for up to ``wait_s`` seconds before it calls a token missing.
"""
from __future__ import annotations

import contextlib
import platform
import shutil
import time
import uuid
from pathlib import Path

from helpers.study.files import atomic_write_text

CHECKS = ".shared-check"


class FolderNotShared(RuntimeError):
    pass


def check_shared(folder: Path, wait_s: float = 30.0) -> None:
    """Raise ``FolderNotShared`` on every rank when some rank does not see the others' tokens in ``folder``.

    Needs the ranks' process group (``torch.distributed``, set up by ``TrainingArguments`` under accelerate
    launch); a single process has nothing to check.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    rank, world, host = dist.get_rank(), dist.get_world_size(), platform.node()
    name = [uuid.uuid4().hex if rank == 0 else None]
    dist.broadcast_object_list(name, src=0)
    tokens = Path(folder) / CHECKS / name[0]
    tokens.mkdir(parents=True, exist_ok=True)
    atomic_write_text(tokens / f"rank-{rank}", host)
    dist.barrier()
    deadline = time.monotonic() + wait_s
    while True:
        missing = [r for r in range(world) if not (tokens / f"rank-{r}").exists()]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    seen: list = [None] * world
    dist.all_gather_object(seen, (host, missing))
    dist.barrier()
    (tokens / f"rank-{rank}").unlink(missing_ok=True)
    if rank == 0 or missing:
        shutil.rmtree(tokens, ignore_errors=True)
        with contextlib.suppress(OSError):  # gone already, or another check's tokens are in it
            (Path(folder) / CHECKS).rmdir()
    blind = [(r, h, m) for r, (h, m) in enumerate(seen) if m]
    if blind:
        hosts = [h for h, _ in seen]
        lines = [f"rank {r} on host {h} does not see the token(s) of rank(s) "
                 f"{', '.join(f'{o} (host {hosts[o]})' for o in m)}" for r, h, m in blind]
        raise FolderNotShared(
            f"the study folder {folder} is not shared by every rank of this training:\n  " + "\n  ".join(lines) +
            "\n  every node must see the study folder at the same path on a shared file system (NFS, Lustre, GPFS): "
            "put data/ there, or pass --root to a folder on it (docs/cluster.md)")
