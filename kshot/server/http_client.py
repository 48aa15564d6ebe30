"""The proxy's HTTP/1.1 client for its upstream: a keep-alive pool, one write per request.

The proxy used ``httpx.AsyncClient``, whose layers (request and URL models, auth and redirect
handling, the ``httpcore`` pool with its locks, ``anyio`` streams with a timeout scope per read
and write, the request head and body written separately) made one forwarded request cost about
as much as the upstream round trip itself (see ``benchmarks/results/proxy``). The proxy needs
little of that: one base URL, a JSON body it already holds as bytes, the answer passed through.
So this client writes the request head and body in one ``write``, parses the answer with ``h11``
(the HTTP/1.1 state machine uvicorn uses here too) and keeps idle connections for the next
request. It sends ``accept-encoding: identity``: the answer's bytes are the client's.

Errors: :class:`UpstreamTimeout` (connect or between bytes of the answer) and
:class:`UpstreamConnectionError` (refused, reset, closed early, malformed); both are
:class:`UpstreamTransportError`. A request on a reused idle connection that the upstream had
closed in the meantime (no byte of the answer came back) is sent again once on a new connection,
as browsers do, so an idle timeout on the upstream's side is never an error here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from kshot._version import __version__

__all__ = [
    "UpstreamClient",
    "UpstreamConnectionError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamTransportError",
]

logger = logging.getLogger(__name__)

_READ_SIZE = 65536
#: Idle connections kept for reuse; more concurrent requests open (then drop) extra ones.
_MAX_IDLE = 32


class UpstreamTransportError(Exception):
    """The request could not be sent or its answer not read."""


class UpstreamTimeout(UpstreamTransportError):
    """Connecting, or the next byte of the answer, took longer than the timeout."""


class UpstreamConnectionError(UpstreamTransportError):
    """The connection was refused, reset or closed early, or the answer was not HTTP."""


class _StaleConnection(UpstreamConnectionError):
    """A reused idle connection closed before any byte of the answer (safe to resend)."""


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    reused: bool = False
    #: Bytes of the current answer read so far (0: the upstream has said nothing yet).
    received: int = 0
    closed_by_peer: bool = False

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """An answer whose status and headers are read; its body is read by iterating or ``read``.

    Always end with :meth:`aclose` (also after :meth:`read`): it hands a fully read connection
    back to the pool, and closes one that is not.
    """

    def __init__(
        self,
        client: UpstreamClient,
        connection: _Connection,
        status: int,
        headers: list[tuple[str, str]],
        timeout: float,
    ) -> None:
        self._client = client
        self._connection: _Connection | None = connection
        self.status_code = status
        #: The answer's headers, names lower-cased, in order.
        self.headers = headers
        self._timeout = timeout
        self._done = False

    def header(self, name: str) -> str | None:
        """The first value of the header ``name`` (lower-case), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (chunked transfer decoded)."""
        connection = self._connection
        if connection is None or self._done:
            return
        while True:
            event = await _next_event(connection, self._timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
                return
            else:
                raise UpstreamConnectionError(f"unexpected {type(event).__name__} in the answer")

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Release the connection: back to the pool when the answer was read to its end."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._done and connection.h11.our_state is h11.DONE:
            try:
                connection.h11.start_next_cycle()
            except h11.LocalProtocolError:  # the upstream said "connection: close"
                connection.close()
                return
            self._client._release(connection)
        else:
            connection.close()


async def _next_event(connection: _Connection, timeout: float) -> object:
    """The next h11 event of the answer, reading from the socket as needed."""
    while True:
        try:
            event = connection.h11.next_event()
        except h11.RemoteProtocolError as exc:
            if connection.closed_by_peer:
                raise UpstreamConnectionError(
                    "the upstream closed the connection before its answer was complete"
                ) from exc
            raise UpstreamConnectionError(f"the upstream sent a malformed answer: {exc}") from exc
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(timeout):
                data = await connection.reader.read(_READ_SIZE)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"no answer within {timeout:g} s") from exc
        except OSError as exc:
            raise UpstreamConnectionError(f"{type(exc).__name__}: {exc}") from exc
        connection.received += len(data)
        connection.closed_by_peer = not data
        connection.h11.receive_data(data)  # b"" is the end of the stream


class UpstreamClient:
    """Requests to one base URL (``http`` or ``https``), over pooled keep-alive connections.

    Args:
        base_url: scheme, host, optional port and path prefix, e.g. ``http://127.0.0.1:8001/v1``.
        headers: sent with every request (e.g. ``authorization``).
        timeout: seconds to connect, and between bytes of the answer.
    """

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 120.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"an upstream URL must be http(s)://host[:port][/path], not {base_url!r}"
            )
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        default_port = self.port == (443 if self._ssl else 80)
        authority = self.host if default_port else f"{self.host}:{self.port}"
        if ":" in self.host and not default_port:  # an IPv6 literal
            authority = f"[{self.host}]:{self.port}"
        given = {k.lower(): (k, v) for k, v in (headers or {}).items()}
        fixed = {
            "host": ("Host", authority),
            "user-agent": ("User-Agent", f"kshot/{__version__}"),
            "accept": ("Accept", "*/*"),
            "accept-encoding": ("Accept-Encoding", "identity"),
            **given,
        }
        # Names keep their usual spelling on the wire (h11 sends them as given).
        self._headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in fixed.values()]
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                    limit=_READ_SIZE,
                )
        except TimeoutError as exc:
            raise UpstreamTimeout(f"could not connect within {self.timeout:g} s") from exc
        except OSError as exc:
            raise UpstreamConnectionError(f"{type(exc).__name__}: {exc}") from exc
        return _Connection(reader, writer)

    def _release(self, connection: _Connection) -> None:
        if self._closed or len(self._idle) >= _MAX_IDLE or not connection.usable():
            connection.close()
            return
        connection.reused = True
        self._idle.append(connection)

    async def _checkout(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return await self._connect()

    async def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> UpstreamResponse:
        """Send one request to ``base_url + path``; return once the answer's headers are read."""
        headers = list(self._headers)
        if body is not None:
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
            if content_type is not None:
                headers.append((b"Content-Type", content_type.encode("latin-1")))
        target = (self.prefix + path).encode("ascii")
        while True:
            connection = await self._checkout()
            try:
                return await self._exchange(connection, method, target, headers, body)
            except _StaleConnection:
                connection.close()
                logger.debug("an idle connection to %s:%d had closed; resending", self.host,
                             self.port)  # fmt: skip
            except BaseException:
                connection.close()
                raise

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
    ) -> UpstreamResponse:
        conn = connection.h11
        connection.received = 0
        data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
        if body:
            data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        try:
            connection.writer.write(data)
            await connection.writer.drain()
            event = await _next_event(connection, self.timeout)
        except UpstreamConnectionError as exc:
            if connection.reused and connection.received == 0:
                raise _StaleConnection(str(exc)) from exc
            raise
        except OSError as exc:
            if connection.reused:
                raise _StaleConnection(str(exc)) from exc
            raise UpstreamConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(event, h11.Response):  # 1xx answers are not sent to a POST like ours
            raise UpstreamConnectionError(f"unexpected {type(event).__name__} instead of an answer")
        names = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        return UpstreamResponse(self, connection, event.status_code, names, self.timeout)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their answer is closed."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
