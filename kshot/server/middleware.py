"""One pure ASGI middleware: body-size limit, access log, metrics, and the last-resort 500.

It is pure ASGI (not ``BaseHTTPMiddleware``) so that it adds little latency and can count the
body while the application reads it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kshot.server.errors import BodyTooLarge, error_body
from kshot.server.metrics import Metrics

__all__ = ["ACCESS_LOGGER", "ServerMiddleware"]

#: The logger of the access log: one INFO line per request.
ACCESS_LOGGER = "kshot.server.access"

access_log = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger("kshot.server")


def _field(value: object) -> str:
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text)  # quoted and escaped: no log injection through the path


class ServerMiddleware:
    """Limit the body, time the request, log it and count it; answer 500 if all else failed."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False, "bytes_in": 0}
        limit = self.max_body_bytes

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["bytes_in"] += len(message.get("body", b""))
                if state["bytes_in"] > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                await _send_json(send_wrapper, 413, BodyTooLarge(limit))
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if state["started"]:
                raise
            body = error_body("internal_error", "the server failed to answer; see its log")
            await _send_body(send_wrapper, 500, body)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            status = int(state["status"])
            self.metrics.observe(scope["method"], route, status, seconds)
            access_log.info(
                "method=%s path=%s route=%s status=%d duration_ms=%.2f bytes_in=%d client=%s",
                scope["method"],
                _field(scope["path"]),
                _field(route),
                status,
                seconds * 1000.0,
                state["bytes_in"],
                _field(scope["client"][0] if scope.get("client") else "-"),
                extra={
                    "http_method": scope["method"],
                    "http_path": scope["path"],
                    "http_route": route,
                    "http_status": status,
                    "duration_ms": round(seconds * 1000.0, 3),
                },
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_json(send: Send, status: int, exc: BodyTooLarge) -> None:
    await _send_body(send, status, error_body(exc.kind, exc.message, **exc.extra))


async def _send_body(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
