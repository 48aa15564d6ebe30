"""One pure ASGI middleware: body checks, access log, metrics, and the last-resort 500.

It is pure ASGI (not ``BaseHTTPMiddleware``) so that it adds little latency and can watch the
body while the application reads it: a body must be JSON (``content-type``, else 415), at most
``max_body_bytes`` (else 413) and arrive within ``body_timeout`` seconds of the request's start
(else 408 and the connection is closed), so a client that drip-feeds a body cannot hold a worker
thread. uvicorn has no body timeout of its own; the header timeout lives in
:mod:`kshot.server.protocol`, since no ASGI code runs before the headers are complete.
"""

from __future__ import annotations

import email.message
import functools
import json
import logging
import time
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kshot.server.errors import BODY_SCOPE_KEY, ApiError, BodyTimeout, BodyTooLarge, error_body
from kshot.server.metrics import Metrics

__all__ = ["ACCESS_LOGGER", "ServerMiddleware"]

#: Methods whose body the routes read as JSON.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

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
    """Check the body, time the request, log it and count it; answer 500 if all else failed."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int, body_timeout: float
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "started": False, "bytes_in": 0, "done": False}
        limit = self.max_body_bytes
        deadline = anyio.current_time() + self.body_timeout
        # Kept so that a body the JSON parser rejects can be explained (where it went wrong).
        chunks: list[bytes] = []
        scope[BODY_SCOPE_KEY] = chunks

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
            await send(message)

        async def receive_wrapper() -> Message:
            if state["done"]:  # the body is complete: the app waits for a disconnect
                return await receive()
            with anyio.move_on_after(max(deadline - anyio.current_time(), 0.0)) as waited:
                message = await receive()
            if waited.cancelled_caught:
                logger.warning("cut off a slow request body on %s %s", scope["method"],
                               _field(scope["path"]))  # fmt: skip
                raise BodyTimeout(self.body_timeout)
            if message["type"] == "http.request":
                body = message.get("body", b"")
                state["bytes_in"] += len(body)
                if state["bytes_in"] > limit:
                    raise BodyTooLarge(limit)
                chunks.append(body)
                state["done"] = not message.get("more_body", False)
            return message

        try:
            refusal = _refusal(scope, limit)
            if refusal is not None:
                await _send_json(send_wrapper, refusal)
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
            if access_log.isEnabledFor(logging.INFO):  # the fields cost even when not logged
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


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _is_json(content_type: bytes) -> bool:
    # Cached: clients send the same few values, and the parse costs more than the rest of the
    # checks together.
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _refusal(scope: Scope, limit: int) -> ApiError | None:
    """An answer the request gets before any of its body is read, or ``None`` to go on."""
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        return BodyTooLarge(limit)
    has_body = bool(declared) or _header(scope, b"transfer-encoding") is not None
    if scope["method"] in _BODY_METHODS and has_body:
        content_type = _header(scope, b"content-type")
        if content_type is None or not _is_json(content_type):
            shown = "none" if content_type is None else repr(content_type.decode("latin-1"))
            return ApiError(
                415,
                "unsupported_media_type",
                f"the request body must be JSON sent with 'content-type: application/json' "
                f"(got content-type {shown})",
                headers={"Connection": "close"},
            )
    return None


async def _send_json(send: Send, exc: ApiError) -> None:
    await _send_body(send, exc.status_code, error_body(exc.kind, exc.message, **exc.extra))


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
