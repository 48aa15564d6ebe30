"""Where the proxy sends requests: a remote OpenAI-compatible server, or the local model.

Both kinds answer ``send(method, path, body)`` with a Starlette response that the proxy returns
as it is. :class:`HttpUpstream` (over :class:`~kshot.server.http_client.UpstreamClient`, one
connection pool for the application's lifetime) passes the answer's bytes through as they are,
streams an event stream through chunk by chunk (nothing is buffered), retries connection
errors, 429 and 5xx answers before any byte of the answer is passed on, and turns failures into
OpenAI-style error answers: the upstream's own status and error body, 502 when it cannot be
reached, 504 when it does not answer in time. It sends its own key (``KSHOT_UPSTREAM_API_KEY``)
and no header of the client's request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from kshot.model.openai_compat import _retry_after
from kshot.server.errors import ApiError
from kshot.server.http_client import (
    UpstreamClient,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamTransportError,
)
from kshot.server.local_model import LocalModel

__all__ = ["HttpUpstream", "LocalUpstream", "Upstream"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
#: Answer headers passed back to the client besides the content type (request ids, timings).
_PASSED_PREFIXES = ("x-request-id", "openai-", "x-ratelimit-")
_MAX_BACKOFF = 8.0
_JSON = "application/json"


class Upstream(Protocol):
    """An OpenAI-compatible endpoint the proxy forwards to."""

    @property
    def name(self) -> str:
        """What to call the upstream in logs and errors."""
        ...

    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> Response:
        """Forward one request (``path`` below ``/v1``, e.g. ``/chat/completions``)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _excerpt(data: bytes, limit: int = 300) -> str:
    text = " ".join(data.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_response(status: int, data: bytes, url: str) -> JSONResponse:
    """The upstream's error answer: its own body when it is an OpenAI-style error, else wrapped."""
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return JSONResponse(parsed, status)
    message = f"the upstream {url} answered {status}: {_excerpt(data) or '(empty body)'}"
    body = {"error": {"message": message, "type": "upstream_error", "param": None, "code": status}}
    return JSONResponse(body, status)


class HttpUpstream:
    """A remote OpenAI-compatible server at ``base_url`` (the URL an openai client would use).

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://localhost:8001/v1``; a URL
            without a path gets ``/v1``.
        api_key: sent as ``Authorization: Bearer``; none when ``None``.
        timeout: seconds to connect, and between bytes of the answer.
        retries: retries after the first attempt (connection errors, 408, 429, 5xx).
        backoff: the first retry's delay in seconds, doubling (a ``Retry-After`` header wins).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        url = base_url.rstrip("/")
        self.base_url = url if urlsplit(url).path not in ("", "/") else url + "/v1"
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = UpstreamClient(self.base_url, headers=headers, timeout=timeout)

    @property
    def name(self) -> str:
        """The base URL."""
        return self.base_url

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _failure(self, exc: UpstreamTransportError, attempts: int) -> ApiError:
        if isinstance(exc, UpstreamTimeout):
            return ApiError(
                504,
                "upstream_timeout",
                f"the upstream {self.base_url} did not answer in time ({attempts} attempt(s)); "
                "raise KSHOT_UPSTREAM_TIMEOUT or check the upstream",
            )
        return ApiError(
            502,
            "upstream_unreachable",
            f"could not reach the upstream {self.base_url} after {attempts} attempt(s): "
            f"{type(exc).__name__}: {exc or 'connection failed'}; check --upstream "
            "(KSHOT_UPSTREAM) and that the server is running",
        )

    async def _open(self, method: str, path: str, body: bytes | None) -> UpstreamResponse:
        url = self.base_url + path
        attempt = 0
        while True:
            try:
                response = await self._client.request(method, path, body, _JSON)
            except UpstreamTransportError as exc:
                if attempt >= self.retries:
                    raise self._failure(exc, attempt + 1) from exc
                retry_after = None
            else:
                if response.status_code not in _RETRY_STATUS or attempt >= self.retries:
                    return response
                retry_after = response.header("retry-after")
                await response.aclose()
            wait = _retry_after(retry_after)
            delay = min(self.backoff * 2**attempt if wait is None else wait, _MAX_BACKOFF)
            logger.warning("%s %s failed (attempt %d); retrying in %.2f s", method, url,
                           attempt + 1, delay)  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1

    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> Response:
        """Forward one request; stream the answer through when it is an event stream."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
        response = await self._open(method, path, data)
        if response.status_code >= 400:
            try:
                answer = await response.read()
            finally:
                await response.aclose()
            url = self.base_url + path
            logger.info("upstream %s %s answered %d", method, url, response.status_code)
            return _error_response(response.status_code, answer, url)
        headers = {k: v for k, v in response.headers if k.startswith(_PASSED_PREFIXES)}
        media_type = response.header("content-type")
        if media_type is not None and media_type.startswith("text/event-stream"):
            return StreamingResponse(
                response.aiter_bytes(),  # identity: the bytes are the upstream's
                response.status_code,
                headers=headers,
                media_type=media_type,
                background=BackgroundTask(response.aclose),
            )
        try:
            answer = await response.read()
        finally:
            await response.aclose()
        return Response(answer, response.status_code, headers=headers, media_type=media_type)


class LocalUpstream:
    """The local model in this process, reached without HTTP."""

    def __init__(self, local: LocalModel) -> None:
        self.local = local

    @property
    def name(self) -> str:
        """The local model's name."""
        return f"local model {self.local.name}"

    async def aclose(self) -> None:
        """Nothing to release (the model lives as long as the app)."""

    async def send(self, method: str, path: str, body: dict[str, Any] | None) -> Response:
        """Answer ``/chat/completions``, ``/completions`` and ``/models`` with the local model."""
        if (method, path) == ("POST", "/chat/completions"):
            return await self.local.chat(body)
        if (method, path) == ("POST", "/completions"):
            return await self.local.completion(body)
        if (method, path) == ("GET", "/models"):
            return JSONResponse(self.local.models())
        raise ApiError(404, "not_found", f"the local model does not serve {method} /v1{path}")
