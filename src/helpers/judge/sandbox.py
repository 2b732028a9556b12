"""OS isolation for model-written code: which kind this machine offers, and the command that wraps a run in it.

Model output is untrusted input. ``helpers.judge.code`` runs an answer's code in a child Python; this
module puts that child in OS isolation when the machine offers it:

* ``bubblewrap`` (``bwrap``, Debian's ``bubblewrap``; ``make study`` / ``make test`` install it): new user,
  network, PID, IPC, UTS and mount namespaces; uid/gid 65534 inside; a root filesystem with only
  ``/usr`` (and the ``/lib``, ``/bin`` links or directories), the interpreter's prefix and a minimal
  ``/dev``, all read-only, and no ``/proc`` (mounting one costs ~10 ms a run; nothing legitimate needs
  it); a private size-limited tmpfs ``/tmp`` as the working directory; the runner script's folder
  read-only; no environment (``--clearenv``); no view of the user's home, the
  checkout or the study folder; ``--die-with-parent``, ``--new-session``, ``--disable-userns``, and
  ``--as-pid-1`` (Python is PID 1 of its namespace: no reaper process to start; when it ends, everything
  in the namespace ends).
* ``unshare`` (util-linux), when ``bwrap`` is missing or does not work: the same namespaces, the same
  read-only root built by a few ``mount`` calls in the new mount namespace, ``chroot`` into it and every
  capability dropped (``setpriv``) before Python starts; no ``/proc``. Root inside (without capabilities)
  maps to the calling user outside.

``isolation()`` finds out once per process, by running a probe script inside the sandbox (it must see no
network interface but ``lo``, must not find its own host path, and must be able to write its working
directory), and caches the answer: ``"bubblewrap"``, ``"unshare"`` or None (macOS, a kernel or container
without user namespaces). Older bubblewrap releases lose only the options they lack (``--size``,
``--disable-userns``, ``--clearenv``, ``--as-pid-1``).
``execution_mode(setting)`` turns ``judge.code_execution`` into what happens on this machine:

==================  =====================  ===================================================
setting             isolation available    code answers
==================  =====================  ===================================================
``isolated``        bubblewrap / unshare   run in it (``"bubblewrap"`` / ``"unshare"``)
``isolated``        none                   not run, scored null (``"not run"``)
``unisolated``      (any)                  run without OS isolation (``"unisolated"``): the
                                           Python-level guard, rlimits and seccomp only
==================  =====================  ===================================================

Inside every mode the runner also sets rlimits, a seccomp filter (no fork, vfork, non-thread clone, exec,
mount, chroot or new namespaces) and a Python-level guard (``helpers.judge.code``); outside, a wall-clock
timeout kills the process group (and with it, through ``--die-with-parent`` / ``--kill-child`` and the PID
namespace, everything in the sandbox), and the reader keeps at most ``helpers.judge.code.OUTPUT_LIMIT``
bytes (1 MiB) of what the child writes.

Why seccomp for processes: run as root (as in many containers), the sandbox's uid maps to root outside,
and the kernel does not apply ``RLIMIT_NPROC`` to root; without the filter a fork bomb would be held only
by the PID namespace and the timeout.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

ISOLATED = "isolated"
UNISOLATED = "unisolated"
SETTINGS = (ISOLATED, UNISOLATED)
NOT_RUN = "not run"
KINDS = ("bubblewrap", "unshare")
SANDBOX_UID = 65534
TMP_SIZE = 64 * 1024 * 1024
"""Bytes of the private ``/tmp`` inside the sandbox (a tmpfs; RLIMIT_FSIZE caps each file at 16 MB)."""
PROBE_TIMEOUT_S = 10.0
_MOUNT_POINT = "/sandbox"


def python_paths() -> tuple[str, list[str]]:
    """(the real interpreter, the host folders it needs besides /usr): ``sys.base_prefix`` and the folder
    of the resolved ``sys.executable``; a venv's own folder is not needed (the child runs ``-I -S``)."""
    exe = os.path.realpath(sys.executable)
    dirs = []
    for d in (os.path.realpath(sys.base_prefix), os.path.dirname(exe)):
        if d.startswith("/usr/") or d == "/usr" or any(d == p or d.startswith(p + "/") for p in dirs):
            continue
        dirs.append(d)
    return exe, dirs


def _system_dirs() -> list[tuple[str, str]]:
    """``(kind, path)`` for /lib, /lib64, /bin, /sbin, /lib32: "symlink" (merged /usr) or "dir"."""
    out = []
    for p in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(p):
            out.append(("symlink", p))
        elif os.path.isdir(p):
            out.append(("dir", p))
    return out


@functools.cache
def _bwrap_options() -> frozenset[str]:
    """The long options this ``bwrap`` knows (older releases lack ``--disable-userns``, ``--size``,
    ``--clearenv``; each is dropped where missing, the rest of the isolation stays)."""
    try:
        out = subprocess.run([shutil.which("bwrap") or "bwrap", "--help"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"--[a-z][a-z-]+", (out.stdout + out.stderr).decode(errors="replace")))


def bwrap_argv(host_dir: str, workdir_name: str) -> list[str]:
    """The ``bwrap`` command (without the program to run) that binds ``host_dir`` read-only at
    ``/sandbox/<workdir_name>`` and makes ``/tmp`` a private tmpfs and the working directory."""
    known = _bwrap_options()
    argv = [shutil.which("bwrap"), "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID), "--die-with-parent", "--new-session"]
    argv += [o for o in ("--disable-userns", "--clearenv", "--as-pid-1") if o in known]
    argv += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LC_ALL", "C.UTF-8", "--setenv", "HOME", "/nonexistent",
             "--ro-bind", "/usr", "/usr"]
    for kind, p in _system_dirs():
        argv += ["--symlink", os.readlink(p), p] if kind == "symlink" else ["--ro-bind", p, p]
    for d in python_paths()[1]:
        argv += ["--ro-bind", d, d]
    argv += ["--dev", "/dev", *(["--size", str(TMP_SIZE)] if "--size" in known else []), "--tmpfs", "/tmp",
             "--ro-bind", host_dir, f"{_MOUNT_POINT}/{workdir_name}", "--remount-ro", "/",
             "--chdir", "/tmp", "--"]
    return argv


def unshare_argv(host_dir: str, workdir_name: str, command: list[str]) -> list[str]:
    """The ``unshare`` command that runs ``command`` in new namespaces, chrooted into a read-only root built
    under ``host_dir/root`` (a tmpfs mounted inside the new mount namespace only), every capability dropped."""
    import shlex

    root = os.path.join(host_dir, "root")
    os.makedirs(root, exist_ok=True)
    q = shlex.quote
    links = [p for kind, p in _system_dirs() if kind == "symlink"]
    binds = [("/usr", "dir")] + [(p, "dir") for kind, p in _system_dirs() if kind == "dir"]
    binds += [(d, "dir") for d in python_paths()[1]]
    binds += [(f"/dev/{dev}", "file") for dev in ("null", "zero", "random", "urandom")]
    inside = f"{_MOUNT_POINT}/{workdir_name}"
    dirs = ["/tmp", "/dev", inside] + [p for p, kind in binds if kind == "dir"]
    lines = ["set -e", f"R={q(root)}", 'mount -t tmpfs -o mode=755 none "$R"',
             "mkdir -p " + " ".join(f'"$R"{q(d)}' for d in dirs),
             "touch " + " ".join(f'"$R"{q(p)}' for p, kind in binds if kind == "file")]
    lines += [f'ln -s {q(os.readlink(p))} "$R"{q(p)}' for p in links]
    # util-linux mount applies "bind,ro" in one call (bind, then remount read-only)
    lines += [f'mount -o bind,ro {q(p)} "$R"{q(p)}' for p, _ in binds]
    lines += [f'mount -o bind,ro {q(host_dir)} "$R"{q(inside)}',
              f'mount -t tmpfs -o size={TMP_SIZE},mode=1777 none "$R/tmp"',
              'mount -o remount,bind,ro "$R"']
    env, setpriv = shutil.which("env") or "/usr/bin/env", shutil.which("setpriv") or "/usr/bin/setpriv"
    inner = (f"cd /tmp && exec {q(env)} -i PATH=/usr/bin:/bin LC_ALL=C.UTF-8 HOME=/nonexistent "
             f"{q(setpriv)} --bounding-set=-all --inh-caps=-all --no-new-privs -- "
             + " ".join(q(c) for c in command))
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    lines.append(f'exec {q(chroot)} "$R" /bin/sh -c {q(inner)}')
    return [shutil.which("unshare"), "--user", "--map-root-user", "--mount", "--net", "--pid", "--ipc", "--uts",
            "--fork", "--kill-child", "--", "/bin/sh", "-c", "\n".join(lines)]


_PROBE = ("import os, socket, sys\n"
          "names = [n for _, n in socket.if_nameindex()]\n"
          "assert names in ([], ['lo']), names\n"
          "assert not os.path.exists(sys.argv[1]), 'the host folder is visible at its own path'\n"
          "open('probe.txt', 'w').write('ok')\n"
          "print('isolated', os.getuid())\n")


def _probe(kind: str) -> bool:
    """Run the probe in ``kind``: it must see no network interface but ``lo`` and must not see the host's
    copy of its own script (so the host filesystem is not there), and it must be able to write its working
    directory."""
    exe = python_paths()[0]
    with tempfile.TemporaryDirectory(prefix="helpers-probe-") as d:
        name = os.path.basename(d)
        script = os.path.join(d, "probe.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(_PROBE)
        inner = [exe, "-I", "-S", f"{_MOUNT_POINT}/{name}/probe.py", os.path.realpath(script)]
        argv = bwrap_argv(d, name) + inner if kind == "bubblewrap" else unshare_argv(d, name, inner)
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S,
                                 env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError):
            return False
        return res.returncode == 0 and res.stdout.startswith(b"isolated")


@functools.cache
def available(kind: str) -> bool:
    """Whether ``kind`` (``"bubblewrap"`` or ``"unshare"``) works here: its tools exist and a probe run inside
    it sees only ``lo`` and not the host filesystem (run once per process and kind, then cached)."""
    if not sys.platform.startswith("linux"):
        return False
    tools = {"bubblewrap": ("bwrap",), "unshare": ("unshare", "setpriv", "mount")}[kind]
    chroot = shutil.which("chroot") or (os.path.exists("/usr/sbin/chroot") and "/usr/sbin/chroot")
    return all(shutil.which(t) for t in tools) and (kind != "unshare" or bool(chroot)) and _probe(kind)


def isolation() -> str | None:
    """``"bubblewrap"``, ``"unshare"`` or None: the OS isolation this machine offers (probed once per process)."""
    return next((k for k in KINDS if available(k)), None)


def execution_mode(setting: str = ISOLATED) -> str:
    """How code answers run here under ``judge.code_execution: setting``: ``"bubblewrap"``, ``"unshare"``,
    ``"unisolated"`` or ``"not run"`` (``isolated`` asked for, none available)."""
    if setting not in SETTINGS:
        raise ValueError(f"judge.code_execution must be one of {SETTINGS}, got {setting!r}")
    if setting == UNISOLATED:
        return UNISOLATED
    return isolation() or NOT_RUN


NOT_RUN_REASON = ("not run: no OS isolation on this machine (bubblewrap or unshare namespaces); "
                  "set judge.code_execution: unisolated to run model code without it")


def wrap(mode: str, host_dir: str, workdir_name: str, command: list[str]) -> tuple[list[str], str]:
    """(argv, working directory on the host) for running ``command`` (whose paths under ``host_dir`` are given
    as ``/sandbox/<workdir_name>/...``) in ``mode``."""
    if mode == "bubblewrap":
        return bwrap_argv(host_dir, workdir_name) + command, host_dir
    if mode == "unshare":
        return unshare_argv(host_dir, workdir_name, command), host_dir
    raise ValueError(f"no sandbox command for mode {mode!r}")
