"""A local OpenAI-compatible judge for the rehearsal: ``GET /v1/models`` and ``POST /v1/chat/completions`` on
127.0.0.1, answered by the real ``openai`` client of the judge stage with no key and no network.

It answers as a paid endpoint does where the study depends on it: a score marker the judge parses
(``得分：0.x``, a different score per prompt so the analysis has something to average), token usage, the
name of the model that answered (``served_model``) and a ``system_fingerprint``. It counts the requests so
the rehearsal can compare them with the judge's runs and its cache.
"""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FINGERPRINT = "fp_rehearsal"


class StandIn:
    """``with StandIn(["gpt-3.5-turbo-0125"]) as s: s.base_url`` serves those models until the block ends."""

    def __init__(self, models: list[str]):
        self.models = list(models)
        self.requests = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "StandIn":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def score_of(prompt: str) -> float:
    """A score in 0..1 fixed by the prompt, so a rerun sees the same one."""
    return int(hashlib.sha256(prompt.encode()).hexdigest()[:4], 16) % 11 / 10


def _handler(state: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # the rehearsal prints its own table
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                              "owned_by": "rehearsal"} for m in state.models]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            if body.get("model") not in state.models:
                return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                  "type": "invalid_request_error", "code": "model_not_found"}})
            prompt = "".join(m.get("content", "") for m in body.get("messages", []))
            with state.lock:
                state.requests += 1
            text = f"回答基本符合要求。\n得分：{score_of(prompt)}"
            self._send(200, {"id": f"chatcmpl-rehearsal-{state.requests}", "object": "chat.completion", "created": 0,
                             "model": body["model"], "system_fingerprint": FINGERPRINT,
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": len(prompt.encode()), "completion_tokens": len(text.encode()),
                                       "total_tokens": len(prompt.encode()) + len(text.encode())}})

    return Handler
