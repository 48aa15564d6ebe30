"""Application state and the dependencies routes declare with ``Annotated[..., Depends(...)]``.

Every dependency is ``async def``, though none of them awaits anything: FastAPI runs a plain
``def`` dependency in its worker thread pool, and a hop there and back costs two thread wake-ups
per dependency per request (on a busy machine, milliseconds); none of them blocks.
"""

from __future__ import annotations

import functools
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Request

from kshot.index.example_index import ExampleIndex
from kshot.prompt.budget import ChatTokenCounter, TokenCounter, count_messages
from kshot.server.collections import Collection, Collections
from kshot.server.errors import ApiError, LimitExceeded
from kshot.server.metrics import Metrics
from kshot.server.settings import ServerSettings
from kshot.types import ChatMessage

__all__ = [
    "CollectionAccess",
    "IndexDep",
    "LockedCounter",
    "ReadAccess",
    "ServerState",
    "SettingsDep",
    "StateDep",
    "WriteAccess",
    "check_batch",
    "check_k",
    "check_query",
    "get_state",
    "state_of",
]


class LockedCounter:
    """A token counter used by one thread at a time (HF fast tokenizers are not re-entrant)."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        # Decided once: a runtime protocol check costs more than counting a short chat.
        self._count_messages: Callable[[Sequence[ChatMessage]], int] = (
            inner.count_messages
            if isinstance(inner, ChatTokenCounter)
            else functools.partial(count_messages, inner)
        )

    @property
    def name(self) -> str:
        """The inner counter's name."""
        return self.inner.name

    def count(self, text: str) -> int:
        """Count the tokens of ``text``."""
        with self._lock:
            return self.inner.count(text)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens of each text."""
        batch = getattr(self.inner, "count_batch", None)
        with self._lock:
            if callable(batch):
                return list(batch(texts))
            return [self.inner.count(t) for t in texts]

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Count the tokens of chat ``messages``."""
        with self._lock:
            return self._count_messages(messages)


@dataclass
class ServerState:
    """What one application instance holds: its settings, collections, counter and metrics.

    ``index`` is the default collection's index (``None`` when the server has none).
    """

    settings: ServerSettings
    metrics: Metrics = field(default_factory=Metrics)
    index: ExampleIndex | None = None
    collections: Collections = field(default_factory=Collections)
    counter: LockedCounter | None = None
    ready: bool = False
    writes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_write(self) -> None:
        """Count one accepted write (for ``/metrics``)."""
        with self._lock:
            self.writes += 1


# Every dependency reads the state from the request itself rather than through another
# dependency: FastAPI resolves each dependency of a request anew (tens of microseconds each), and a
# flat set of them is a measurable part of a selection's round trip (kshot bench speed's HTTP arm).
def state_of(request: Request) -> ServerState:
    """The state of the application serving ``request``."""
    state: ServerState = request.app.state.kshot
    return state


async def get_state(request: Request) -> ServerState:
    """The state of the application serving ``request`` (the dependency)."""
    return state_of(request)


StateDep = Annotated[ServerState, Depends(get_state)]


async def get_settings(request: Request) -> ServerSettings:
    """The settings of this application."""
    return state_of(request).settings


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]


def _check_ready(state: ServerState) -> None:
    if not state.ready:
        raise ApiError(
            503,
            "not_ready",
            "the index is not loaded yet; retry shortly",
            headers={"Retry-After": "1"},
        )


async def bind_collection(
    request: Request,
    collection: Annotated[str, Path(description="The collection's name (GET /v1/collections).")],
) -> None:
    """Resolve the route's ``{collection}`` for :func:`get_index` (404 naming the known ones)."""
    state = state_of(request)
    _check_ready(state)
    request.state.kshot_collection = state.collections.get(collection)


#: The dependency of the routes under ``/v1/collections/{collection}``.
CollectionAccess = Depends(bind_collection)


async def get_index(request: Request) -> ExampleIndex:
    """The index of the route's collection (the default one without), or 503 while loading."""
    state = state_of(request)
    _check_ready(state)
    bound: Collection | None = getattr(request.state, "kshot_collection", None)
    if bound is not None:
        return bound.index
    if state.index is None:
        raise ApiError(
            404,
            "unknown_collection",
            "this server has no default collection (it was started without an INDEX); use "
            f"/v1/collections/{{name}}/..., one of: {', '.join(sorted(state.collections.by_name))}",
        )
    return state.index


IndexDep = Annotated[ExampleIndex, Depends(get_index)]


def _bearer_ok(request: Request, settings: ServerSettings) -> None:
    assert settings.api_key is not None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "this endpoint needs the header 'Authorization: Bearer <api key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    expected = settings.api_key.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected):
        raise ApiError(
            401,
            "unauthorized",
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


async def require_read(request: Request) -> None:
    """With ``auth="all"`` and a key configured, reads need the bearer key."""
    settings = state_of(request).settings
    if settings.auth == "all" and settings.api_key is not None:
        _bearer_ok(request, settings)


async def require_write(request: Request) -> None:
    """Writes need the key when one is set; without one, ``allow_anonymous_writes``."""
    settings = state_of(request).settings
    if settings.read_only:
        raise ApiError(
            403,
            "writes_disabled",
            "this server is read-only (KSHOT_READ_ONLY=true); send writes to a writable server",
        )
    if settings.api_key is not None:
        _bearer_ok(request, settings)
        return
    if not settings.allow_anonymous_writes:
        raise ApiError(
            403,
            "writes_disabled",
            "writes are disabled on this server: set KSHOT_API_KEY=<secret> (then send "
            "'Authorization: Bearer <secret>') or, for local use only, "
            "KSHOT_ALLOW_ANONYMOUS_WRITES=true, and restart it",
        )


ReadAccess = Depends(require_read)
WriteAccess = Depends(require_write)


def check_k(settings: ServerSettings, k: int) -> None:
    """Refuse k above ``max_k``."""
    if k > settings.max_k:
        raise LimitExceeded("max_k", settings.max_k, f"k={k} is larger than allowed")


def check_query(settings: ServerSettings, text: str, what: str = "query") -> None:
    """Refuse a text longer than ``max_query_chars``."""
    if len(text) > settings.max_query_chars:
        raise LimitExceeded(
            "max_query_chars",
            settings.max_query_chars,
            f"the {what} has {len(text)} characters, more than allowed",
        )


def check_batch(settings: ServerSettings, n: int, what: str = "queries") -> None:
    """Refuse more than ``max_batch`` items in one request."""
    if n > settings.max_batch:
        raise LimitExceeded("max_batch", settings.max_batch, f"{n} {what} in one request")
