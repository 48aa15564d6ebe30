"""A plain HTTP server standing in for a remote OpenAI API; it records what it receives.

Run as ``python recording_upstream.py PORT``. Every request is kept (method, path, headers, JSON
body) and ``GET /_received`` returns them all. The request's ``model`` chooses the answer:

- ``fail-400`` / ``fail-500``: an OpenAI-style error body with that status
- ``text-502``: a plain-text 502 (not JSON)
- ``flaky``: 503 on the first request of that model, then a normal answer
- anything else: a chat completion whose content says how many messages came; with
  ``"stream": true`` an event stream of three content chunks, each flushed on its own.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVED: list[dict[str, Any]] = []
LOCK = threading.Lock()
SEEN_MODELS: set[str] = set()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", "req-123")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_received":
            with LOCK:
                self._send(200, RECEIVED)
            return
        self._record(None)
        if self.path == "/v1/models":
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": "stand-in", "object": "model", "created": 0, "owned_by": "test"}
                    ],
                },
            )
        else:
            self._send(404, {"error": {"message": f"no {self.path}", "type": "not_found"}})

    def _record(self, body: Any) -> None:
        with LOCK:
            RECEIVED.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        self._record(body)
        model = body.get("model", "")
        if model in ("fail-400", "fail-500"):
            status = int(model[-3:])
            error = {
                "message": f"upstream says {status}",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
            self._send(status, {"error": error})
            return
        if model == "text-502":
            self._send(502, b"Bad Gateway from the load balancer", "text/plain")
            return
        if model == "flaky":
            with LOCK:
                first = model not in SEEN_MODELS
                SEEN_MODELS.add(model)
            if first:
                self._send(503, {"error": {"message": "busy", "type": "overloaded"}})
                return
        content = f"got {len(body['messages'])} messages"
        head = {"id": "chatcmpl-1", "created": 1, "model": model}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for piece in ("got ", f"{len(body['messages'])} ", "messages"):
                chunk = {
                    **head,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            return
        self._send(
            200,
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
            },
        )


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()
