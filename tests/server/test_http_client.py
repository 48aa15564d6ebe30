"""The proxy's upstream client against real TCP servers started by each test (asyncio, loopback).

Each server here is a few lines of asyncio that answer by hand, so a test controls exactly what
the client sees: keep-alive or not, a connection closed while idle, a chunked answer in pieces,
silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from proxy_processes import free_port

from kshot.server.http_client import UpstreamClient, UpstreamConnectionError, UpstreamTimeout

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (content-length bodies only, as the client sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def run(handler: Handler, test: Callable[[str], Awaitable[Any]]) -> Any:
    """Serve ``handler`` on a free loopback port and run ``test(base_url)`` against it."""

    async def main() -> Any:
        port = free_port()
        server = await asyncio.start_server(handler, "127.0.0.1", port)
        async with server:
            return await test(f"http://127.0.0.1:{port}/v1")

    return asyncio.run(main())


def test_requests_share_one_keep_alive_connection_and_send_the_body() -> None:
    connections: list[int] = []
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                seen.append(await read_request(reader))
                writer.write(OK)
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    async def test(url: str) -> list[bytes]:
        client = UpstreamClient(url, headers={"Authorization": "Bearer k"}, timeout=5)
        bodies = []
        for i in range(5):
            response = await client.request("POST", "/chat", b'{"n":%d}' % i, "application/json")
            bodies.append(await response.read())
            await response.aclose()
        await client.aclose()
        return bodies

    assert run(handler, test) == [b'{"ok":true}'] * 5
    assert len(connections) == 1
    head, body = seen[-1]
    assert head.startswith(b"POST /v1/chat HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer k\r\n" in head
    assert b"\r\nAccept-Encoding: identity\r\n" in head
    assert body == b'{"n":4}'


async def three_posts(url: str, pause: float = 0.0) -> list[int]:
    """The statuses of three POSTs through one client, ``pause`` seconds after each."""
    client = UpstreamClient(url, timeout=5)
    statuses = []
    for _ in range(3):
        response = await client.request("POST", "/chat", b"{}", "application/json")
        await response.read()
        await response.aclose()
        statuses.append(response.status_code)
        if pause:
            await asyncio.sleep(pause)
    await client.aclose()
    return statuses


def test_an_idle_connection_the_upstream_closed_is_replaced_without_an_error() -> None:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(OK)  # keep-alive by HTTP/1.1 rules, then closed as an idle timeout would
        await writer.drain()
        writer.close()

    # the pause lets the close reach the idle connection
    assert run(handler, lambda url: three_posts(url, pause=0.05)) == [200, 200, 200]
    assert len(connections) == 3


def test_a_request_a_reused_connection_drops_unanswered_is_sent_again() -> None:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        number = len(connections)
        answered = 0
        try:
            while True:
                await read_request(reader)
                if number == 1 and answered == 1:  # the reused connection drops the request
                    writer.close()
                    return
                writer.write(OK)
                await writer.drain()
                answered += 1
        except asyncio.IncompleteReadError:
            writer.close()

    assert run(handler, three_posts) == [200, 200, 200]
    assert len(connections) == 2


def test_a_chunked_answer_streams_through_as_it_arrives() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n"
        )
        await writer.drain()
        await release.wait()  # the second chunk only after the client has read the first
        writer.write(b"7\r\n[DONE]\n\r\n0\r\n\r\n")
        await writer.drain()

    async def test(url: str) -> tuple[list[bytes], str | None]:
        client = UpstreamClient(url, timeout=5)
        response = await client.request("POST", "/chat", b"{}", "application/json")
        chunks = []
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            release.set()
        await response.aclose()
        await client.aclose()
        return chunks, response.header("content-type")

    chunks, media_type = run(handler, test)
    assert chunks == [b"data: ", b"[DONE]\n"]
    assert media_type == "text/event-stream"


def test_an_http10_answer_read_to_the_close_of_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def test(url: str) -> bytes:
        client = UpstreamClient(url, timeout=5)
        response = await client.request("GET", "/models")
        body = await response.read()
        await response.aclose()
        await client.aclose()
        return body

    assert run(handler, test) == b"until the end"


def test_silence_is_a_timeout_and_a_closed_port_a_connection_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)  # never answers in time

    async def test(url: str) -> None:
        client = UpstreamClient(url, timeout=0.2)
        with pytest.raises(UpstreamTimeout, match=r"no answer within 0\.2 s"):
            await client.request("POST", "/chat", b"{}", "application/json")
        await client.aclose()
        dead = UpstreamClient(f"http://127.0.0.1:{free_port()}/v1", timeout=2)
        with pytest.raises(UpstreamConnectionError):
            await dead.request("GET", "/models")

    run(handler, test)


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        UpstreamClient("ftp://example.com/v1")
