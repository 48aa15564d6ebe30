"""uvicorn's h11 protocol with a header timeout: a client must finish its request headers in time.

uvicorn bounds only the idle time after a response (``timeout_keep_alive``), and any byte a client
sends cancels that timer, so a client that sends one header byte every few seconds, or opens a
connection and sends nothing, holds it forever. ASGI code cannot help: the application is called
only once the headers are complete. So this protocol arms a timer when the connection opens and
again after each response, disarms it when a request's headers are complete, and closes the
connection when it fires. The body has its own timeout in :mod:`kshot.server.middleware`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from kshot.server.settings import ServerSettings

__all__ = ["HeaderTimeoutProtocol", "header_timeout_protocol"]

logger = logging.getLogger(__name__)

#: The environment variable that worker processes read the timeout from.
_ENV = "KSHOT_HEADER_TIMEOUT"


class HeaderTimeoutProtocol(H11Protocol):
    """An h11 connection that is closed when a request's headers take over ``header_timeout``."""

    #: Seconds; ``None`` reads ``KSHOT_HEADER_TIMEOUT`` (how worker processes get it).
    header_timeout: ClassVar[float | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        timeout = type(self).header_timeout
        if timeout is None:
            default = ServerSettings.model_fields["header_timeout"].default
            timeout = float(os.environ.get(_ENV, default))
        self._header_seconds = timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_seconds, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        logger.info("closed a connection whose request headers took over %g s",
                    self._header_seconds)  # fmt: skip
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Open the connection and start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11; once a request's headers are complete, stop the clock."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        """After a response, the next request's headers get the same time."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class with a header timeout of ``seconds``."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
