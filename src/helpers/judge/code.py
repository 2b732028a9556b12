"""The code use case: an answer's Python run against the item's unit tests, in a child process.

The child runs in OS isolation (``helpers.judge.sandbox``: bubblewrap or unshare namespaces), or, only when
``judge.code_execution: unisolated`` opts in, without it. In every mode it gets rlimits (CPU, memory,
files, processes), a seccomp filter (no fork, exec, non-thread clone, mount or new namespaces), a timeout,
its own process group, a temporary working directory, a bounded output pipe, and inside, blocked ``os``
functions and sockets. The OS isolation is the security boundary; the rest is a guard against accidents.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time

from helpers.judge.sandbox import NOT_RUN, NOT_RUN_REASON, UNISOLATED, execution_mode, python_paths, wrap

CODE_TIMEOUT_S = 5.0

CODE_MEMORY_MB = 512


def extract_code(answer: str) -> str | None:
    """The Python code in an answer: the first ```python fence, else from the first
    line that starts like Python (``def``, ``import``, ``from``, ``class``, ``@`` or an
    assignment), with trailing lines dropped until it compiles (``compile`` only parses;
    nothing runs here). None when there is no code or nothing compiles.

    >>> extract_code("代码如下：\\n```python\\ndef f(x):\\n    return x + 1\\n```")
    'def f(x):\\n    return x + 1'
    >>> extract_code("def f(x):\\n    return x + 1\\n这个函数返回x加1。")
    'def f(x):\\n    return x + 1'
    """
    fence = re.search(r"```[ \t]*(?:python|py|python3)?[^\n]*\n(.*?)(?:```|\Z)", answer, re.S | re.I)
    if fence:
        code = fence.group(1)
    else:
        lines = answer.splitlines()
        start = next((i for i, ln in enumerate(lines) if _CODE_START.match(ln)), None)
        if start is None:
            return None
        code = "\n".join(lines[start:])
    lines = code.rstrip().splitlines()
    while lines:
        src = "\n".join(lines).strip("\n")
        try:
            compile(src, "<answer>", "exec")
        except (SyntaxError, ValueError):
            lines.pop()
            continue
        return src if src.strip() else None
    return None


_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@|[A-Za-z_][\w.]*\s*=[^=])")

_SECCOMP = r"""
def _seccomp():
    # A classic-BPF seccomp filter: fork, vfork, exec, clone without CLONE_THREAD and the namespace and
    # mount calls fail with EPERM, clone3 with ENOSYS (so libc falls back to clone, whose flags a filter
    # can read: threads stay possible); a system call of another ABI kills the process.
    import ctypes, os, struct
    m = os.uname().machine.lower()
    # denied: fork vfork execve execveat, and mount umount2 pivot_root chroot unshare setns
    if m in ("x86_64", "amd64"):
        arch, clone, deny = 0xC000003E, 56, (57, 58, 59, 322, 165, 166, 155, 161, 272, 308)
    elif m in ("aarch64", "arm64"):
        arch, clone, deny = 0xC00000B7, 220, (221, 281, 40, 39, 41, 51, 97, 268)
    else:
        return False
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38, 0x80000000
    prog = [("ld", 4), ("jeq", arch, 1, 0), ("ret", kill), ("ld", 0), ("jge", 0x40000000, "EPERM", 0),
            ("jeq", 435, "ENOSYS", 0), ("jeq", clone, "CLONE", 0)]
    prog += [("jeq", nr, "EPERM", 0) for nr in deny]
    prog += [("ret", allow), ("CLONE",), ("ld", 16), ("jset", 0x10000, "ALLOW", "EPERM"),
             ("ALLOW",), ("ret", allow), ("EPERM",), ("ret", eperm), ("ENOSYS",), ("ret", enosys)]
    labels, pc = {}, 0
    for ins in prog:
        if len(ins) == 1:
            labels[ins[0]] = pc
        else:
            pc += 1
    code, pc = [], 0
    ops = {"ld": 0x20, "jeq": 0x15, "jge": 0x35, "jset": 0x45, "ret": 0x06}
    for ins in prog:
        if len(ins) == 1:
            continue
        jt, jf = (ins[2], ins[3]) if len(ins) == 4 else (0, 0)
        jt, jf = [labels[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf)]
        code.append(struct.pack("HBBI", ops[ins[0]], jt, jf, ins[1]))
        pc += 1

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(b"".join(code))
    fprog = _Prog(len(code), ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    return libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


try:
    _SECCOMP_ON = _seccomp()
except Exception:
    _SECCOMP_ON = False
"""

_SANDBOX = r"""
import builtins, io, json, os, resource, socket, sys
for _lim, _val in ((resource.RLIMIT_AS, _MEM), (resource.RLIMIT_CPU, _CPU),
                   (resource.RLIMIT_FSIZE, 16 * 1024 * 1024), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    try:
        resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
_out_fd, _write, _exit, _real_open, _real_os_open = os.dup(1), os.write, os._exit, builtins.open, os.open
_root = os.path.realpath(os.getcwd())
_devnull = _real_open(os.devnull, "w")
os.dup2(_devnull.fileno(), 1)
os.dup2(_devnull.fileno(), 2)


def _deny(*args, **kwargs):
    raise PermissionError("blocked by the scoring sandbox")


def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)


def _open(file, mode="r", *args, **kwargs):
    if not isinstance(file, int) and any(c in mode for c in "wax+") and not _inside(file):
        raise PermissionError("writing outside the sandbox directory")
    return _real_open(file, mode, *args, **kwargs)


def _os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC) and not _inside(path):
        raise PermissionError("writing outside the sandbox directory")
    return _real_os_open(path, flags, *args, **kwargs)


def _guard_path(fn):
    def guarded(path, *args, **kwargs):
        if not _inside(path):
            raise PermissionError("writing outside the sandbox directory")
        return fn(path, *args, **kwargs)
    return guarded


builtins.open = io.open = _open
os.open = _os_open
os.mkdir, os.makedirs = _guard_path(os.mkdir), _guard_path(os.makedirs)
for _n in ("remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "system", "popen", "fork",
           "forkpty", "kill", "killpg", "chmod", "chown", "lchown", "link", "symlink", "truncate", "mkfifo", "mknod",
           "chdir", "chroot", "setuid", "putenv", "unsetenv", "posix_spawn", "posix_spawnp", "spawnv", "spawnve",
           "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "execv", "execve", "execvp", "execvpe",
           "execl", "execle", "execlp", "execlpe"):
    if hasattr(os, _n):
        setattr(os, _n, _deny)
for _n in ("socket", "create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
    setattr(socket, _n, _deny)
import _socket
_socket.socket = _socket.socketpair = _deny
import _posixsubprocess
_posixsubprocess.fork_exec = _deny

sys.stdout = sys.stderr = _devnull
_result = {"error": None, "passed": [], "failures": [], "seccomp": _SECCOMP_ON}
_ns = {"__name__": "solution"}
try:
    exec(compile(_CODE, "solution.py", "exec"), _ns)
except BaseException as _e:
    _result["error"] = (type(_e).__name__ + ": " + str(_e))[:300]
else:
    for _t in _TESTS:
        try:
            exec(compile(_t, "test.py", "exec"), _ns)
            _result["passed"].append(True)
        except BaseException as _e:
            _result["passed"].append(False)
            _result["failures"].append((_t + " -> " + type(_e).__name__ + ": " + str(_e))[:300])
_write(_out_fd, (_NONCE + json.dumps(_result) + "\n").encode("utf-8"))
_exit(0)
"""

OUTPUT_LIMIT = 1024 * 1024
"""Bytes of the child's output kept by the parent; the child writes one short result line, so more means
the answer's code wrote to the result pipe itself and the run counts as a crash."""

_TMP_PREFIX = "helpers-score-"


def run_python_tests(code: str, tests: list[str], timeout: float = CODE_TIMEOUT_S,
                     memory_mb: int = CODE_MEMORY_MB, mode: str | None = None) -> dict:
    """Run ``code`` then each test in a sandboxed ``python -I -S`` subprocess.

    ``mode`` (``helpers.judge.sandbox.execution_mode``): ``"bubblewrap"`` or ``"unshare"`` run the child in
    that OS isolation, ``"unisolated"`` without (the Python-level guard, rlimits and seccomp only); None
    (the default): the isolation this machine offers, and a ``ValueError`` where it offers none.
    Returns ``{"status": "ok" | "timeout" | "crash", "error": str | None, "passed": [bool],
    "failures": [str], "seccomp": bool}``; ``error`` is set when the code itself raised on definition.
    """
    if mode is None:
        mode = execution_mode()
    if mode == NOT_RUN:
        raise ValueError(f"run_python_tests: mode 'not run': nothing may run ({NOT_RUN_REASON})")
    nonce = "@@" + secrets.token_hex(16) + "@@"
    script = (f"_CODE = {code!r}\n_TESTS = {list(tests)!r}\n_NONCE = {nonce!r}\n"
              f"_MEM = {memory_mb * 1024 * 1024}\n_CPU = {int(timeout) + 1}\n{_SECCOMP}\n{_SANDBOX}")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory(prefix=_TMP_PREFIX, ignore_cleanup_errors=True) as d:
        path = os.path.join(d, "_sandbox_runner.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script)
        if mode == UNISOLATED:
            argv, cwd = [sys.executable, "-I", "-S", path], d
        else:
            name = os.path.basename(d)
            argv, cwd = wrap(mode, d, name, [python_paths()[0], "-I", "-S", f"/sandbox/{name}/_sandbox_runner.py"])
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out, status = _read_bounded(proc, timeout)
        finally:
            _kill_group(proc)
            proc.stdout.close()
            proc.wait()
    if status == "timeout":
        return {"status": "timeout", "error": None, "passed": [], "failures": [], "seccomp": None}
    if status == "too much output":
        return {"status": "crash", "error": f"more than {OUTPUT_LIMIT} bytes of output", "passed": [],
                "failures": [], "seccomp": None}
    for line in out.decode("utf-8", errors="replace").splitlines():
        if line.startswith(nonce):
            res = json.loads(line[len(nonce):])
            return {"status": "ok", **res}
    return {"status": "crash", "error": f"no result (exit code {proc.returncode})", "passed": [], "failures": [],
            "seccomp": None}


def _read_bounded(proc: subprocess.Popen, timeout: float) -> tuple[bytes, str]:
    """(what the child wrote, "eof" | "timeout" | "too much output"), reading until end of file, the deadline
    or ``OUTPUT_LIMIT`` bytes, whichever comes first; the parent never holds more than that."""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    chunks, size = [], 0
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"".join(chunks), "timeout"
            if not sel.select(left):
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
            if size > OUTPUT_LIMIT:
                return b"".join(chunks), "too much output"
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except subprocess.TimeoutExpired:  # it closed its output but goes on running
        return b"".join(chunks), "timeout"
    return b"".join(chunks), "eof"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def score_python_tests(item: dict, check: dict, answer: str,
                       code_execution: str = "isolated") -> tuple[float | None, str]:
    """Fraction of ``check["tests"]`` passed by the answer's code (``extract_code``), run as
    ``code_execution`` allows here (``helpers.judge.sandbox.execution_mode``); None with the reason when
    that is "not run" (``isolated`` asked for, no OS isolation on this machine).

    ``check["timeout_s"]`` overrides the 5 s limit. For ``add_5`` with three tests:
    "def add_5(x):\\n    return x + 5" -> 1.0 ("3/3 tests passed");
    "def add_5(x):\\n    return x + 4" -> 0.0; "def add_5(x):\\n    while True: pass" -> 0.0 ("timeout");
    "我不会写" -> 0.0 ("no code found").
    """
    tests = check.get("tests") or []
    if not tests:
        raise ValueError(f"item {item.get('id')!r}: python_tests check without tests")
    mode = execution_mode(code_execution)
    if mode == NOT_RUN:
        return None, NOT_RUN_REASON
    code = extract_code(answer)
    if code is None:
        return 0.0, "no code found (or it does not parse)"
    res = run_python_tests(code, tests, timeout=float(check.get("timeout_s", CODE_TIMEOUT_S)), mode=mode)
    if res["status"] == "timeout":
        return 0.0, "timeout"
    if res["status"] == "crash":
        return 0.0, res["error"]
    if res["error"]:
        return 0.0, f"code raised: {res['error'][:120]}"
    k = sum(res["passed"])
    why = f"{k}/{len(tests)} tests passed"
    if res["failures"]:
        why += f"; first failure: {res['failures'][0][:120]}"
    return k / len(tests), why
