
"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

``FakeOpenAI`` runs ``http.server.ThreadingHTTPServer`` in a daemon thread on
127.0.0.1 and a free port, speaking enough of ``POST /v1/chat/completions`` for the
real ``openai`` client. Every reply is deterministic: the score is derived from the
prompt (``score_for``), the token usage from the lengths of prompt and reply.

It counts every request per *request key* ``(prompt, seed)`` (the judge sends the run
index as ``seed``, so the three runs of one item are three keys), and separately the
ones answered with a 200 that reached the client's socket (``answered``).

Faults, for any request or only those whose prompt contains ``match``:

* ``inject(["429", "500", "ok"], match=...)``: the first requests of each matching key
  get these actions in order, later ones are answered normally

* ``fail_after(n, "500")``: once ``n`` requests were let through, every request gets the action;
* ``on_request``: a callable ``f(n)`` run as the n-th request arrives (each n exactly once).

Hooks for crash tests: ``delivered_at[key]`` lists the ``time.monotonic()`` of every 200
written to the client's socket, and ``on_answered`` (a callable ``f(key, n)``) runs right
after the n-th such write, before the handler does anything else. ``to_closed[key]`` counts
those 200s written after the client had already closed its connection (a killed client: the
server did the work, and a hosted API bills it, but nobody can read the reply).

Actions: ``"ok"``; ``"429"`` (with ``Retry-After: <retry_after>``); ``"500"``, ``"503"``;
``"401"``, ``"403"``, ``"400"``; ``"drop"`` (the socket is closed without any response);
``"slow:<seconds>"`` (answer after that long); ``"noscore"`` (a 200 whose text has no score).

Raw completions (``POST /v1/completions``, the generate stage's server backend) take the
same faults, keyed by ``(prompt, seed)``; the text is ``completion_for(prompt, max_tokens)``.
``served_models`` (a list) makes ``GET /v1/models`` list those names and a completion for any
other name a 404 as vLLM answers it; None (the default) has no ``/v1/models`` and serves any name.

A fake teacher for the self-instruct stage: set ``responder`` to a callable
``f(prompt, seed) -> (text, finish_reason)`` (e.g. ``teacher_reply`` below, which writes a
numbered list of tasks in the layouts real teachers use, with their usual faults) and every
200 carries its text and finish reason instead of a judge reply.

``GET /v1/models`` (the SDK's ``models.list``, the runner's preflight) lists ``models`` (empty by
default, as some servers do) with the same key check; it is counted in ``model_lists`` only, never
in the request counts above.

The server stops by itself after ``lifetime_s`` and idle keep-alive connections are
closed after 10 s, so nothing outlives a test run. Use it as a context manager.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = "test-SECRET-9f3b2c7d1e5a-not-a-real-key"  # the key the ``server`` fixture (tests/conftest.py) requires
ENV = "STUDY_TEST_API_KEY"                        # the environment variable the fixture puts it in


def score_for(prompt: str) -> float:
    """The deterministic score the server gives a prompt: one of 0.0, 0.1, ..., 1.0."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 11 / 10


def reply_for(prompt: str) -> str:
    return f"回答基本符合题目要求，但仍有可改进之处。\n得分：{score_for(prompt)}"


NO_SCORE_REPLY = "抱歉，我无法判断这个回答的质量。"


def completion_for(prompt: str, max_tokens: int) -> tuple[str, int, str]:
    """``(text, completion_tokens, finish_reason)`` of a raw completion: one token per character, cut at max_tokens."""
    full = f"答案是{int(hashlib.sha256(prompt.encode('utf-8')).hexdigest()[:6], 16)}。"
    text = full[:max_tokens]
    return text, len(text), "length" if len(text) < len(full) else "stop"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def handle_error(self, request, client_address):  # a client that went away (timeouts, cancels): quiet
        pass


class FakeOpenAI:
    def __init__(self, api_key: str = "sk-test-key", delay: float = 0.0, retry_after: str = "1",
                 lifetime_s: float = 600.0):
        self.api_key = api_key
        self.delay = delay
        self.retry_after = retry_after
        self.lifetime_s = lifetime_s
        self.on_request = None
        self.bodies: list[dict] = []         # the body of every /v1/completions request, in arrival order
        self.served_models = None            # names GET /v1/models lists and completions accept; None: any
        self.responder = None                # f(prompt, seed) -> (text, finish_reason): a fake teacher
        self.snapshots = {}                  # alias -> the dated model a chat reply names (as OpenAI's do)
        self.fingerprint = "fp_fake0"        # the system_fingerprint of every chat reply
        self.models: list[str] | None = []   # what GET /v1/models lists without served_models; None: no such route
        self.model_lists = 0                 # GET /v1/models requests
        self.on_answered = None              # f(key, n) after the n-th 200 reached the socket
        self.lock = threading.Lock()
        self.requests: Counter = Counter()   # key -> every request that arrived
        self.answered: Counter = Counter()   # key -> 200 replies written to the socket
        self.actions: Counter = Counter()    # action -> count
        self.times: dict = {}                # key -> arrival times (time.monotonic())
        self.delivered_at: dict = {}         # key -> times a 200 reached the socket (time.monotonic())
        self.delivered = 0                   # 200 replies written to the socket, in all
        self.to_closed: Counter = Counter()  # key -> 200s written after the client had closed the connection
        self.total = 0
        self._scripts: list[tuple[str | None, list[str]]] = []
        self._pos: Counter = Counter()
        self._fail_after: tuple[int, str] | None = None
        self._admitted = 0  # requests let through to a 200 (what fail_after counts)
        self._server = None
        self._thread = None
        self._timer = None

    # ------------------------------------------------------------------ control
    def inject(self, actions: list[str], match: str | None = None) -> None:
        self._scripts.append((match, list(actions)))

    def fail_after(self, n: int | None, action: str = "500") -> None:
        """From now on, after ``n`` more requests were let through to a 200, every request gets ``action``."""
        self._fail_after = None if n is None else (n, action)
        self._admitted = 0

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.answered.clear()
            self.actions.clear()
            self.times.clear()
            self.delivered_at.clear()
            self.to_closed.clear()
            self.total = self.delivered = 0

    def clear_faults(self) -> None:
        self._scripts, self._fail_after = [], None
        self._pos.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ decisions
    def _decide(self, key) -> tuple[str, int]:
        """The action for this request and its number (1, 2, ... in arrival order, each given once)."""
        with self.lock:
            self.total += 1
            self.requests[key] += 1
            self.times.setdefault(key, []).append(time.monotonic())
            if self._fail_after and self._admitted >= self._fail_after[0]:
                action = self._fail_after[1]
            else:
                action = "ok"
                for i, (match, actions) in enumerate(self._scripts):
                    if match is None or match in key[0]:
                        n = self._pos[(i, key)]
                        self._pos[(i, key)] += 1
                        if n < len(actions):
                            action = actions[n]
                        break
            if action == "ok" or action == "noscore" or action.startswith("slow:"):
                self._admitted += 1
            self.actions[action] += 1
            return action, self.total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end by themselves
    server_state: FakeOpenAI

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms a reply
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, obj: dict, headers: dict | None = None) -> bool:
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            return False

    def _error(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        self._send(status, {"error": {"message": message, "type": "fake_error", "code": code}}, headers)

    def do_GET(self):
        """``GET /v1/models``: ``served_models`` when set (a server for the generate stage), else ``models``."""
        state = self.server_state
        with state.lock:
            state.model_lists += 1
        listed = state.served_models if state.served_models is not None else state.models
        if not self.path.rstrip("/").endswith("/models") or listed is None:
            return self._error(404, f"no route {self.path}")
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                                                    for m in listed]})

    def do_POST(self):
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if len(raw) < length:
            # the client died between its headers and the end of its body: a real server never
            # sees such a request as one, so it is neither counted nor answered
            self.close_connection = True
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self._error(400, "body is not JSON")
        raw_completion = self.path.rstrip("/").endswith("/v1/completions")
        if not raw_completion and not self.path.rstrip("/").endswith("/chat/completions"):
            return self._error(404, f"no route {self.path}")
        if raw_completion:
            prompt = str(body.get("prompt") or "")
            with state.lock:
                state.bodies.append(body)
            if state.served_models is not None and body.get("model") not in state.served_models:
                return self._error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        else:
            messages = body.get("messages") or [{}]
            prompt = str(messages[-1].get("content") or "")
        key = (prompt, body.get("seed"))
        action, n = state._decide(key)
        if state.on_request:
            state.on_request(n)
        if self.headers.get("Authorization") != f"Bearer {state.api_key}" and action == "ok":
            action = "401"
        if action == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if action.startswith("slow:"):
            time.sleep(float(action.split(":", 1)[1]))
            action = "ok"
        if action == "429":
            return self._error(429, "Rate limit reached, retry later.", "rate_limit_exceeded",
                               {"Retry-After": state.retry_after})
        if action in ("401", "403", "400", "500", "503"):
            msgs = {"401": "Incorrect API key provided.", "403": "Forbidden.", "400": "Bad request.",
                    "500": "The server had an error.", "503": "Overloaded."}
            return self._error(int(action), msgs[action], "invalid_api_key" if action == "401" else None)
        if state.delay:
            time.sleep(state.delay)
        finish = "stop"
        if raw_completion:
            text, c, finish = completion_for(prompt, int(body.get("max_tokens") or 16))
            return self._answer(state, key, {
                "id": f"cmpl-fake-{state.total}", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", "fake"), "choices": [{"index": 0, "text": text, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": c, "total_tokens": len(prompt) + c}})
        if state.responder is not None and action != "noscore":
            text, finish = state.responder(prompt, body.get("seed"))
        else:
            text = NO_SCORE_REPLY if action == "noscore" else reply_for(prompt)
        p, c = max(1, len(prompt) // 2), max(1, len(text) // 2)
        self._answer(state, key, {
            "id": f"chatcmpl-fake-{state.total}", "object": "chat.completion", "created": int(time.time()),
            "model": state.snapshots.get(body.get("model"), body.get("model", "fake")),
            "system_fingerprint": state.fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})

    def _answer(self, state: FakeOpenAI, key, reply: dict) -> None:
        """Send a 200 and count it as answered (and for a closed client) once it reached the socket."""
        gone = _peer_closed(self.connection)
        ok = self._send(200, reply)
        if ok:
            t = time.monotonic()
            with state.lock:
                state.answered[key] += 1
                state.delivered_at.setdefault(key, []).append(t)
                state.delivered += 1
                n = state.delivered
                if gone:
                    state.to_closed[key] += 1
            if state.on_answered:
                state.on_answered(key, n)


def _peer_closed(sock) -> bool:
    """True when the client has already closed its end of the connection (EOF or reset pending)."""
    import select

    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


# ---------------------------------------------------------------------- a fake self-instruct teacher

TEACHER_CONTEXTS = [
    "我叫{name}，在{city}做{job}，", "{name}下个月要去{city}参加{event}，", "我最近买了一个{product}，",
    "{name}周末常在{city}{hobby}，", "作为一名{job}，{name}想知道：", "{name}在{city}开了一家小店，",
    "听说{city}最近要办{event}，", "{name}的爱好是{hobby}，", "我是{city}人，做{job}已经{years}年了，",
]
"""Context clauses put before many generated instructions, so the tasks differ as a real teacher's do."""


def teacher_tasks(rng, n: int, examples: list[tuple[str, str, str]] = (), context_share: float = 0.7,
                  noise: bool = True) -> list[tuple[str, str, str | None]]:
    """``n`` tasks ``(instruction, input, output or None)`` from the built-in suite's generators (pool split).

    With ``noise``, about one task in seven has a fault a filter must catch: an image task, an
    output that talks about being an AI, an English answer, a two-character instruction, no
    output, a copy of a shown example (``examples``) or a near copy of the task before it.
    """
    from helpers.data.suite import CITIES, EVENTS, GENERATORS, GIVEN, HOBBIES, JOBS, PRODUCTS, SURNAMES, Vocab, _knobs
    from helpers.study.categories import CATEGORIES

    vocab, knobs = Vocab("pool"), _knobs(None)
    out: list[tuple[str, str, str | None]] = []
    for _ in range(n):
        cat = CATEGORIES[rng.randrange(len(CATEGORIES))]
        ins, inp, output, _check = GENERATORS[cat](rng, vocab, knobs)
        if rng.random() < context_share:
            ctx = rng.choice(TEACHER_CONTEXTS).format(
                name=rng.choice(SURNAMES["pool"]) + rng.choice(GIVEN), city=rng.choice(CITIES["pool"]),
                job=rng.choice(JOBS), event=rng.choice(EVENTS), product=rng.choice(PRODUCTS["pool"]),
                hobby=rng.choice(HOBBIES), years=rng.randint(2, 30))
            ins = ctx + ins
        u = rng.random() if noise else 1.0
        if u < 0.02:
            ins, inp = f"描述一下这张照片里{rng.choice(CITIES['pool'])}的街景。", ""
        elif u < 0.04:
            output = "作为一个AI语言模型，我无法亲自体验，但可以提供一些一般性的信息。"
        elif u < 0.06:
            ins, inp = f"{rng.choice(CITIES['pool'])}有什么好玩的地方？", ""
            output = "There are many interesting places to visit, such as parks, museums and old streets."
        elif u < 0.07:
            ins = "写诗"
        elif u < 0.08:
            output = None
        elif u < 0.11 and examples:
            ins, inp, output = rng.choice(list(examples))
        elif u < 0.14 and out:
            ins, inp, output = "请" + out[-1][0], out[-1][1], out[-1][2]
        out.append((ins, inp, output))
    return out


_EXAMPLE = re.compile(r"\d+\. 指令：(?P<i>[^\n]*)\n输入：(?P<n>[^\n]*)\n输出：(?P<o>[^\n]*)")


def teacher_reply(prompt: str, seed, n: int = 20, truncate_every: int = 0, context_share: float = 0.7,
                  noise: bool = True) -> tuple[str, str]:
    """``(text, finish_reason)``: a numbered task list as a teacher might write it, deterministic in (prompt, seed).

    The layout varies by reply: as asked (``1. 指令：``), half-width colons without blank lines,
    markdown headers (``### 任务 1`` / ``**指令**：``), all fields on one line, numbering that
    restarts halfway, a preamble, different no-input markers. With ``truncate_every`` k, about one
    reply in k is cut in the middle of its last task, with ``finish_reason: length``.
    """
    import random

    h = int(hashlib.sha256(f"{seed}|{prompt}".encode("utf-8")).hexdigest()[:16], 16)
    rng = random.Random(h)
    shown = [(m["i"], "" if m["n"] == "<无输入>" else m["n"], m["o"]) for m in _EXAMPLE.finditer(prompt)
             if m["i"] != "……"]  # the examples, not the layout
    items = teacher_tasks(rng, n, shown, context_share, noise)
    style = rng.randrange(4)
    restart = rng.random() < 0.2
    none = rng.choice(["<无输入>", "<无输入>", "无", "（无）"])
    parts = ["好的，以下是新的任务：\n\n"] if rng.random() < 0.5 else []
    for k, (ins, inp, output) in enumerate(items):
        num = k + 1 - (n // 2 if restart and k >= n // 2 else 0)
        inp = inp or none
        if style == 3 and output is not None and "\n" not in output + inp:
            block = f"{num}. 指令：{ins} 输入：{inp} 输出：{output}\n"
        elif style == 2:
            block = f"### 任务 {num}\n**指令**：{ins}\n**输入**：{inp}\n" + \
                (f"**输出**：{output}\n" if output is not None else "") + "\n"
        else:
            colon = ":" if style == 1 else "："
            block = f"{num}. 指令{colon}{ins}\n输入{colon}{inp}\n" + \
                (f"输出{colon}{output}\n" if output is not None else "") + ("" if style == 1 else "\n")
        parts.append(block)
    if truncate_every and h % truncate_every == 0:
        parts[-1] = parts[-1][: max(4, len(parts[-1]) * 3 // 5)]
        return "".join(parts), "length"
    return "".join(parts).rstrip("\n"), "stop"
