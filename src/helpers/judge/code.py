"""The code use case: an answer's Python run against the item's unit tests, in a child process.

The child gets rlimits (CPU, memory, files, processes), a timeout, its own process group and
a temporary working directory; inside it, blocked ``os`` functions and sockets. This is a
guard against accidents, not a security boundary.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile

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

_SANDBOX = r'''
import builtins, io, json, os, resource, socket, sys
for _lim, _val in ((resource.RLIMIT_AS, {mem}), (resource.RLIMIT_CPU, {cpu}),
                   (resource.RLIMIT_FSIZE, 16 * 1024 * 1024), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    try:
        resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
_out_fd, _write, _exit, _real_open, _real_os_open = os.dup(1), os.write, os._exit, builtins.open, os.open
_root = os.path.realpath(os.getcwd())
_devnull = _real_open(os.devnull, "w")


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
_result = {{"error": None, "passed": [], "failures": []}}
_ns = {{"__name__": "solution"}}
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
'''


def run_python_tests(code: str, tests: list[str], timeout: float = CODE_TIMEOUT_S,
                     memory_mb: int = CODE_MEMORY_MB) -> dict:
    """Run ``code`` then each test in a sandboxed ``python -I -S`` subprocess.

    Returns ``{"status": "ok" | "timeout" | "crash", "error": str | None, "passed": [bool],
    "failures": [str]}``; ``error`` is set when the code itself raised on definition.
    """
    nonce = "@@" + secrets.token_hex(16) + "@@"
    body = _SANDBOX.format(mem=memory_mb * 1024 * 1024, cpu=int(timeout) + 1)
    script = f"_CODE = {code!r}\n_TESTS = {list(tests)!r}\n_NONCE = {nonce!r}\n{body}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory(prefix="helpers-score-", ignore_cleanup_errors=True) as d:
        path = os.path.join(d, "_sandbox_runner.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(script)
        proc = subprocess.Popen([sys.executable, "-I", "-S", path], cwd=d, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            return {"status": "timeout", "error": None, "passed": [], "failures": []}
        finally:
            _kill_group(proc)
    for line in out.decode("utf-8", errors="replace").splitlines():
        if line.startswith(nonce):
            res = json.loads(line[len(nonce):])
            return {"status": "ok", **res}
    return {"status": "crash", "error": f"no result (exit code {proc.returncode})", "passed": [], "failures": []}


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def score_python_tests(item: dict, check: dict, answer: str) -> tuple[float, str]:
    """Fraction of ``check["tests"]`` passed by the answer's code (``extract_code``).

    ``check["timeout_s"]`` overrides the 5 s limit. For ``add_5`` with three tests:
    "def add_5(x):\\n    return x + 5" -> 1.0 ("3/3 tests passed");
    "def add_5(x):\\n    return x + 4" -> 0.0; "def add_5(x):\\n    while True: pass" -> 0.0 ("timeout");
    "我不会写" -> 0.0 ("no code found").
    """
    tests = check.get("tests") or []
    if not tests:
        raise ValueError(f"item {item.get('id')!r}: python_tests check without tests")
    code = extract_code(answer)
    if code is None:
        return 0.0, "no code found (or it does not parse)"
    res = run_python_tests(code, tests, timeout=float(check.get("timeout_s", CODE_TIMEOUT_S)))
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
