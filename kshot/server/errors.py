"""HTTP errors: every error a client sees is JSON ``{"error": {"type", "message", ...}}``.

Each :class:`~kshot.errors.KshotError` class maps to exactly one status code
(:data:`STATUS_OF`), and its body is built from the error's data: the class gives ``type``, and
the ``field`` and ``valid`` it carries are added when set (the message is passed on, never
parsed). The server's own refusals (auth, limits, body size) are
:class:`ApiError` values; anything else becomes a generic 500 whose trace goes to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kshot.errors import (
    BudgetError,
    ConfigError,
    DataError,
    DatasetError,
    EncoderMismatchError,
    FilterError,
    IndexFormatError,
    IndexLockedError,
    KshotError,
    MissingDependencyError,
    ModelError,
    NotFoundError,
    QueryError,
    ReadOnlyError,
    RemoteError,
    TemplateError,
    UnknownSelectorError,
)

__all__ = [
    "BODY_SCOPE_KEY",
    "STATUS_OF",
    "ApiError",
    "BodyTimeout",
    "BodyTooLarge",
    "LimitExceeded",
    "context_of",
    "error_body",
    "install_error_handlers",
    "kind_of",
    "status_of",
]

logger = logging.getLogger("kshot.server")

#: The ASGI scope key under which the middleware keeps the chunks of the request body.
BODY_SCOPE_KEY = "kshot.body_chunks"

#: The nesting reported as the limit when the JSON parser gives up on a deep body; it matches
#: the depth the schemas accept for JSON values.
JSON_DEPTH_LIMIT = 16

#: One status code per error class; a subclass not listed takes its nearest listed base's code.
STATUS_OF: dict[type[KshotError], int] = {
    KshotError: 500,
    ConfigError: 422,
    UnknownSelectorError: 422,
    FilterError: 422,
    TemplateError: 422,
    DataError: 422,
    QueryError: 422,
    BudgetError: 422,
    NotFoundError: 404,
    IndexFormatError: 500,
    EncoderMismatchError: 500,
    IndexLockedError: 409,
    ReadOnlyError: 403,
    DatasetError: 502,
    ModelError: 502,
    RemoteError: 502,
    MissingDependencyError: 501,
}

_HTTP_TYPES = {
    400: "bad_request",
    408: "request_timeout",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    503: "unavailable",
}


def status_of(exc: KshotError) -> int:
    """The status code of a kshot error: that of the nearest class in :data:`STATUS_OF`."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def kind_of(exc: KshotError) -> str:
    """The ``type`` of a kshot error in a response: its class name in snake case."""
    name = type(exc).__name__
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).lower()


def context_of(exc: KshotError) -> dict[str, Any]:
    """The context a kshot error carries as data, as response fields: ``field`` and ``valid``."""
    out: dict[str, Any] = {}
    if exc.field is not None:
        out["field"] = exc.field
    if exc.valid is not None:
        out["valid"] = list(exc.valid)
    return out


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {"error": {"type": kind, "message": message, **extra}}


class ApiError(StarletteHTTPException):
    """A refusal by the server itself, with a machine-readable type and extra fields.

    It derives from Starlette's HTTPException so that FastAPI passes it through untouched, even
    when it is raised while the request body is read.
    """

    def __init__(
        self,
        status_code: int,
        kind: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code, message, headers=headers)
        self.kind = kind
        self.message = message
        self.extra = extra


class LimitExceeded(ApiError):
    """A request over one of the server's limits (422, naming the limit and its value)."""

    def __init__(self, limit: str, value: int, message: str) -> None:
        super().__init__(
            422,
            "limit_exceeded",
            f"{message} (server limit {limit}={value})",
            limit=limit,
            value=value,
        )


class BodyTooLarge(ApiError):
    """A request body over ``max_body_bytes`` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"the request body is larger than the server limit of {limit} bytes",
            limit="max_body_bytes",
            value=limit,
        )


class BodyTimeout(ApiError):
    """A request body that did not arrive within ``body_timeout`` seconds (408, then close)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            "body_timeout",
            f"the request body did not arrive within the server's {seconds:g} s",
            headers={"Connection": "close"},
            limit="body_timeout",
            value=seconds,
        )


def _deepest(body: bytes, limit: int) -> tuple[int, int]:
    """The deepest JSON nesting in ``body`` and the byte offset where it first passes ``limit``."""
    depth = deepest = 0
    offset = -1
    in_string = escaped = False
    for position, byte in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if depth > limit and offset < 0:
                offset = position
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest, offset


def _unparsable(request: Request, cause: BaseException | None) -> ApiError | None:
    """Say what is wrong with a body the JSON parser refused, and where; ``None``: unknown."""
    if isinstance(cause, UnicodeDecodeError):
        return ApiError(
            400,
            "invalid_encoding",
            f"the request body is not valid UTF-8: {cause.reason} at byte offset {cause.start}",
            offset=cause.start,
        )
    if isinstance(cause, RecursionError):
        body = b"".join(request.scope.get(BODY_SCOPE_KEY, ()))
        deepest, offset = _deepest(body, JSON_DEPTH_LIMIT)
        return ApiError(
            400,
            "too_deep",
            f"the request body nests JSON {deepest} levels deep, too deep to parse; JSON values "
            f"may nest at most {JSON_DEPTH_LIMIT} levels (passed at byte offset {offset})",
            limit="json_depth",
            value=JSON_DEPTH_LIMIT,
            offset=offset,
        )
    return None


async def _kshot_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KshotError)
    status = status_of(exc)
    kind = kind_of(exc)
    if status >= 500:
        logger.error("%s on %s %s", kind, request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(kind, "the server failed to answer; see its log"), status)
    return JSONResponse(error_body(kind, str(exc), **context_of(exc)), status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and not isinstance(exc, ApiError):
        exc = _unparsable(request, exc.__cause__) or exc
    if isinstance(exc, ApiError):
        body = error_body(exc.kind, exc.message, **exc.extra)
    else:
        kind = _HTTP_TYPES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        body = error_body(kind, detail)
    return JSONResponse(body, exc.status_code, headers=exc.headers)


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    # Never echo the input back (it may be megabytes, or not JSON-serialisable).
    loc = [part for part in error.get("loc", ()) if part != "body"]
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    return {"loc": loc, "message": message, "type": str(error.get("type", ""))}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean(e) for e in exc.errors()]
    invalid = [e for e in exc.errors() if e.get("type") == "json_invalid"]
    if invalid:
        where = invalid[0].get("loc", ("body", "?"))[-1]
        reason = invalid[0].get("ctx", {}).get("error", "JSON decode error")
        return JSONResponse(
            error_body(
                "invalid_json",
                f"the request body is not valid JSON: {reason} at character {where}",
                details=errors,
            ),
            400,
        )
    first = errors[0] if errors else {"loc": [], "message": "invalid request"}
    where = ".".join(str(p) for p in first["loc"]) or "request"
    return JSONResponse(
        error_body("validation_error", f"{where}: {first['message']}", details=errors), 422
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "the server failed to answer; see its log"), 500
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(KshotError, _kshot_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
