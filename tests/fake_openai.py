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
  get these actions in order, later ones are answered normally;
* ``fail_after(n, "500")``: once ``n`` requests were let through, every request gets the action;
* ``on_request``: a callable ``f(n)`` run as the n-th request arrives (each n exactly once).

Actions: ``"ok"``; ``"429"`` (with ``Retry-After: <retry_after>``); ``"500"``, ``"503"``;
``"401"``, ``"403"``, ``"400"``; ``"drop"`` (the socket is closed without any response);
``"slow:<seconds>"`` (answer after that long); ``"noscore"`` (a 200 whose text has no score).

The server stops by itself after ``lifetime_s`` and idle keep-alive connections are
closed after 10 s, so nothing outlives a test run. Use it as a context manager.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def score_for(prompt: str) -> float:
    """The deterministic score the server gives a prompt: one of 0.0, 0.1, ..., 1.0."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 11 / 10


def reply_for(prompt: str) -> str:
    return f"回答基本符合题目要求，但仍有可改进之处。\n得分：{score_for(prompt)}"


NO_SCORE_REPLY = "抱歉，我无法判断这个回答的质量。"


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
        self.lock = threading.Lock()
        self.requests: Counter = Counter()   # key -> every request that arrived
        self.answered: Counter = Counter()   # key -> 200 replies written to the socket
        self.actions: Counter = Counter()    # action -> count
        self.times: dict = {}                # key -> arrival times (time.monotonic())
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
            self.requests.clear(); self.answered.clear(); self.actions.clear(); self.times.clear()
            self.total = 0

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

    def do_POST(self):
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self._error(400, "body is not JSON")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._error(404, f"no route {self.path}")
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
        text = NO_SCORE_REPLY if action == "noscore" else reply_for(prompt)
        p, c = max(1, len(prompt) // 2), max(1, len(text) // 2)
        ok = self._send(200, {
            "id": f"chatcmpl-fake-{state.total}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
        if ok:
            with state.lock:
                state.answered[key] += 1
