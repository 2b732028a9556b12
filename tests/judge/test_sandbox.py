"""Model-written code in OS isolation (helpers.judge.sandbox): an escape corpus, each case checked from outside.

Every escape runs in each isolation kind this machine offers (bubblewrap; unshare namespaces). On Linux
at least one must be there (``make test`` installs bubblewrap), so these tests run rather than skip in CI.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from helpers.data.suite import build_suite
from helpers.judge import code as code_mod
from helpers.judge import sandbox
from helpers.judge.code import run_python_tests
from helpers.judge.offline import score_answer
from helpers.study.config import StudyConfig
from helpers.study.paths import REPO

LINUX = sys.platform.startswith("linux")
pytestmark = pytest.mark.skipif(not LINUX, reason="OS isolation is Linux-only (bubblewrap, namespaces)")

ADD5 = {"type": "python_tests", "entry": "add_5",
        "tests": ["assert add_5(1) == 6", "assert add_5(-2) == 3", "assert add_5(0) == 5"]}
LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"


@pytest.fixture(params=sandbox.KINDS)
def kind(request):
    if not sandbox.available(request.param):
        pytest.skip(f"{request.param} isolation is not available here")
    return request.param


@pytest.fixture
def marker(monkeypatch):
    """A unique prefix for the sandbox's temporary folder, so its processes can be found in /proc."""
    m = f"helpers-score-test-{uuid.uuid4().hex[:12]}-"
    monkeypatch.setattr(code_mod, "_TMP_PREFIX", m)
    return m


def processes_with(text: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if text.encode() in (p / "cmdline").read_bytes():
                found.append(int(p.name))
        except OSError:
            pass
    return found


def assert_no_leftovers(marker: str) -> None:
    deadline = time.monotonic() + 3
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == [], "sandbox processes outlived the run"


def run(kind, code, tests, timeout=5.0):
    return run_python_tests(code, tests, timeout=timeout, mode=kind)


def test_isolation_is_available_on_linux():
    assert sandbox.isolation() in sandbox.KINDS, (
        "no OS isolation for model code on this Linux machine: install bubblewrap (make test does, as root)")
    assert sandbox.execution_mode("isolated") == sandbox.isolation()
    assert sandbox.execution_mode("unisolated") == "unisolated"


def test_shell_command_through_ctypes_creates_nothing(kind, tmp_path, marker):
    targets = [tmp_path / "pwned", REPO / f"pwned-{uuid.uuid4().hex[:8]}"]
    cmd = "; ".join(f"touch {t}" for t in targets)
    try:
        res = run(kind, LIBC + f"rc = libc.system({cmd.encode()!r})\n", ["assert rc != 0, rc"])
        assert res["status"] == "ok" and res["passed"] == [True], res
        assert not any(t.exists() for t in targets)
    finally:
        for t in targets:
            t.unlink(missing_ok=True)
    assert_no_leftovers(marker)


def test_raw_socket_through_ctypes_reaches_no_listener(kind, marker):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    got, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.settimeout(1)
            try:
                got.append(conn.recv(100) or b"<connected>")
            except OSError:
                got.append(b"<connected>")
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    code = LIBC + (
        "import struct, socket as _s\n"
        "fd = libc.socket(2, 1, 0)\n"
        f"addr = struct.pack('<HH4s8x', 2, _s.htons({port}), bytes([127, 0, 0, 1]))\n"
        "rc = libc.connect(fd, addr, len(addr))\n"
        "sent = libc.send(fd, b'secret', 6, 0) if rc == 0 else -1\n")
    try:
        res = run(kind, code, ["assert rc != 0, rc", "assert sent == -1"])
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(2)
        srv.close()
    assert got == [], f"the listener received {got}"
    assert res["status"] == "ok" and res["passed"] == [True, True], res
    assert_no_leftovers(marker)


def test_fork_through_ctypes_fails(kind, marker):
    code = LIBC + "pid = libc.fork()\nif pid == 0:\n    libc._exit(0)\n"
    res = run(kind, code, ["assert pid == -1, pid"])
    assert res["status"] == "ok" and res["passed"] == [True] and res["seccomp"] is True, res
    assert_no_leftovers(marker)


def test_home_files_and_environment_secrets_are_out_of_sight(kind, marker, monkeypatch):
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("HELPERS_TEST_SECRET", secret)
    home = Path(os.path.expanduser("~"))
    note = home / f".helpers-sandbox-test-{uuid.uuid4().hex[:8]}"
    note.write_text(secret)
    # another process of the user holding the secret in its environment (a notebook kernel with an API key)
    holder = subprocess.Popen(["sleep", "60"], env={"PATH": "/usr/bin:/bin", "HELPERS_TEST_SECRET": secret})
    code = (
        "import os, glob\n"
        "seen = []\n"
        f"for p in [{str(note)!r}, {str(REPO / 'README.md')!r}, {str(REPO / 'pyproject.toml')!r}]:\n"
        "    try:\n"
        "        seen.append(open(p).read()[:40])\n"
        "    except OSError:\n"
        "        pass\n"
        "envs = dict(os.environ)\n"
        "for p in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        envs[p] = open(p, 'rb').read().decode('latin-1')\n"
        "    except OSError:\n"
        "        pass\n")
    try:
        res = run(kind, code, ["assert seen == [], seen",
                               f"assert not any({secret!r} in str(v) for v in envs.values()), envs",
                               "assert 'HELPERS_TEST_SECRET' not in envs"])
    finally:
        note.unlink(missing_ok=True)
        holder.kill()
        holder.wait()
    assert res["status"] == "ok" and res["passed"] == [True, True, True], res
    assert_no_leftovers(marker)


def test_writes_outside_the_tmp_dir_fail(kind, tmp_path, marker):
    home = Path(os.path.expanduser("~"))
    targets = [tmp_path / "escaped", REPO / f"escaped-{uuid.uuid4().hex[:8]}",
               home / f".escaped-{uuid.uuid4().hex[:8]}", Path("/usr") / f"escaped-{uuid.uuid4().hex[:8]}"]
    code = LIBC + (
        "rcs = []\n"
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    rcs.append(libc.open(p.encode(), 0o1 | 0o100, 0o644))\n"  # O_WRONLY | O_CREAT, past the Python guard
        "ok = libc.open(b'/tmp/inside.txt', 0o1 | 0o100, 0o644)\n")
    try:
        res = run(kind, code, ["assert all(rc == -1 for rc in rcs), rcs", "assert ok >= 0, ok"])
        assert not any(t.exists() for t in targets)
    finally:
        for t in targets:
            try:
                t.unlink(missing_ok=True)
            except OSError:
                pass
    assert res["status"] == "ok" and res["passed"] == [True, True], res
    assert_no_leftovers(marker)


def test_privileged_calls_fail(kind, marker):
    """No way back out: remounting the read-only root or /usr writable, a new user namespace, chroot."""
    code = LIBC + (
        "MS_REMOUNT, MS_BIND = 32, 4096\n"
        "rcs = [libc.mount(None, b'/usr', None, MS_REMOUNT | MS_BIND, None),\n"
        "       libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None),\n"
        "       libc.umount2(b'/usr', 2),\n"
        "       libc.unshare(0x10000000 | 0x00020000),\n"  # CLONE_NEWUSER | CLONE_NEWNS
        "       libc.chroot(b'/tmp')]\n")
    res = run(kind, code, ["assert rcs == [-1] * 5, rcs"])
    assert res["status"] == "ok" and res["passed"] == [True], res
    assert_no_leftovers(marker)


def test_fork_bomb_is_contained(kind, marker):
    code = LIBC + "def add_5(x):\n    while True:\n        libc.fork()\n"
    start = time.monotonic()
    res = run(kind, code, ["assert add_5(1) == 6"], timeout=2.0)
    assert time.monotonic() - start < 5
    assert res["status"] == "timeout", res
    assert_no_leftovers(marker)


def test_memory_bomb_fails_cleanly(kind, marker):
    start = time.monotonic()
    res = run(kind, "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 ** 2))\n", ["assert True"])
    assert res["status"] == "ok" and "MemoryError" in (res["error"] or ""), res
    assert time.monotonic() - start < 5
    res = run(kind, LIBC + "p = libc.malloc(ctypes.c_size_t(8 * 1024 ** 3))\n", ["assert p is None or p == 0, p"])
    assert res["passed"] == [True], res
    assert_no_leftovers(marker)


@pytest.mark.parametrize("how", ["stdout", "result pipe"])
def test_endless_output_is_bounded_and_stopped(kind, marker, how):
    if how == "stdout":
        code = "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n    print('y' * 65536)\n"
    else:  # the runner's own result pipe, found through __main__
        code = "import os, __main__\nwhile True:\n    os.write(__main__._out_fd, b'x' * 65536)\n"
    start = time.monotonic()
    res = run(kind, code, ["assert True"], timeout=2.0)
    assert time.monotonic() - start < 5
    assert res["status"] in ("timeout", "crash") and res["passed"] == [], res
    assert_no_leftovers(marker)


def test_closing_the_result_pipe_and_running_on_is_a_timeout(kind, marker):
    res = run(kind, "import os, __main__\nos.close(__main__._out_fd)\nwhile True:\n    pass\n", ["assert True"],
              timeout=1.5)
    assert res["status"] == "timeout", res
    assert_no_leftovers(marker)


def test_tmpfs_is_size_limited(kind, marker):
    code = ("n = 0\ntry:\n    for i in range(100):\n        open(f'f{i}', 'wb').write(b'x' * 8 * 1024 ** 2)\n"
            "        n += 1\nexcept OSError as e:\n    err = str(e)\n")
    res = run(kind, code, [f"assert n * 8 * 1024 ** 2 <= {sandbox.TMP_SIZE}, n"])
    assert res["passed"] == [True], res


def test_legitimate_answers_still_pass(kind, marker):
    res = run(kind, "import math, json, re, collections\ndef add_5(x):\n    open('scratch.txt', 'w').write('ok')\n"
                    "    return math.floor(x) + 5\n", ADD5["tests"])
    assert res["status"] == "ok" and res["passed"] == [True] * 3, res
    threads = ("import threading\nout = []\nt = threading.Thread(target=lambda: out.append(1))\nt.start()\n"
               "t.join()\n")
    assert run(kind, threads, ["assert out == [1]"])["passed"] == [True]
    assert_no_leftovers(marker)


def test_default_study_code_items_score_the_same_isolated_and_not(monkeypatch):
    """The default study's code items with their reference solutions: every one passes in isolation, as without."""
    cfg = StudyConfig.model_validate({"study": "default", "scales": [4]})
    _, ev = build_suite(0, 0, 10)
    code_items = [e for e in ev if e["category"] == "code"]
    assert code_items and all(e["check"]["type"] == "python_tests" for e in code_items)
    isolated = [score_answer(e, e["reference"], code_execution=cfg.judge.code_execution) for e in code_items]
    plain = [score_answer(e, e["reference"], code_execution="unisolated") for e in code_items]
    assert [s for s, _ in isolated] == [s for s, _ in plain] == [1.0] * len(code_items), isolated


def test_without_isolation_code_items_are_null_unless_opted_in(monkeypatch):
    monkeypatch.setattr(sandbox, "isolation", lambda: None)
    it = {"id": "c1", "category": "code", "check": ADD5}
    score, why = score_answer(it, "def add_5(x):\n    return x + 5")
    assert score is None and why == sandbox.NOT_RUN_REASON and "unisolated" in why
    assert score_answer(it, "")[0] is None  # never 0 for a code item that could not be run
    assert score_answer(it, "def add_5(x):\n    return x + 5", code_execution="unisolated") == (1.0, "3/3 tests passed")
    with pytest.raises(ValueError, match="not run"):
        run_python_tests("x = 1", ["assert x"], mode=sandbox.NOT_RUN)
    with pytest.raises(ValueError, match="not run"):  # the default mode is the machine's isolation, none here
        run_python_tests("x = 1", ["assert x"])


def test_judge_rows_and_report_say_how_code_ran(tmp_path, monkeypatch):
    from helpers.analysis.scores import code_execution, code_execution_note
    from helpers.judge.stage import judge_answers
    from helpers.study.files import read_jsonl, write_jsonl

    _, ev = build_suite(0, 0, 1)
    write_jsonl(tmp_path / "eval.jsonl", ev)
    write_jsonl(tmp_path / "answers" / "base.jsonl",
                [{"id": e["id"], "category": e["category"], "answer": e["reference"]} for e in ev])
    cfg = StudyConfig.model_validate({"study": "t", "scales": [4]})
    rows = read_jsonl(judge_answers(cfg, "base", tmp_path))
    code_rows = [r for r in rows if r["id"].startswith("eval-code")]
    assert code_rows and all(r["code_execution"] == sandbox.isolation() and r["score"] == 1.0 for r in code_rows)
    assert all("code_execution" not in r for r in rows if r not in code_rows)
    summary = code_execution(tmp_path, ["base"])
    assert summary["modes"] == {sandbox.isolation(): len(code_rows)} and summary["not_run"] == 0
    assert code_execution_note(summary).startswith("Code answers ran in OS isolation")

    monkeypatch.setattr(sandbox, "isolation", lambda: None)
    rows = read_jsonl(judge_answers(cfg, "base", tmp_path))
    assert all(r["score"] is None and r["code_execution"] == "not run" for r in rows if r["id"].startswith("eval-code"))
    note = code_execution_note(code_execution(tmp_path, ["base"]))
    assert "NOT run" in note and "unisolated" in note


def test_the_setting_has_two_values():
    assert StudyConfig.model_validate({"study": "t", "scales": [4]}).judge.code_execution == "isolated"
    cfg = StudyConfig.model_validate({"study": "t", "scales": [4], "judge": {"code_execution": "unisolated"}})
    assert cfg.judge.code_execution == "unisolated"
    with pytest.raises(ValueError, match="code_execution"):
        StudyConfig.model_validate({"study": "t", "scales": [4], "judge": {"code_execution": "none"}})
    with pytest.raises(ValueError, match="must be one of"):
        sandbox.execution_mode("off")
