"""Slow clients against a real server subprocess: drip-fed headers and bodies are cut off.

uvicorn alone keeps such connections open for as long as the client keeps sending a byte now
and then; the server's header timeout (its h11 protocol) and body timeout (its middleware)
close them. Each test drips far longer than the timeout and checks that the server, not the
client, ended the connection.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

#: How long a client drips before it gives up; far above the timeouts the servers here get.
DRIP_SECONDS = 30.0


def closed_by_server(sock: socket.socket, drip: bytes, interval: float = 0.2) -> bytes:
    """Send ``drip`` one byte at a time until the server closes; return what it answered.

    Fails when the client runs out of time (or of bytes) with the connection still open.
    """
    received = b""
    sock.settimeout(interval)
    deadline = time.monotonic() + DRIP_SECONDS
    for byte in drip:
        assert time.monotonic() < deadline, "the server kept a drip-feeding client connected"
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # reset or broken pipe: closed
            return received
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the server kept a drip-feeding client connected; got {received!r}")


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_drip_fed_headers_are_cut_off(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_HEADER_TIMEOUT="1")
    headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
    with connect(server.url) as sock:
        assert closed_by_server(sock, headers) == b""
    # A connection that sends nothing at all is closed too.
    with connect(server.url) as sock:
        sock.settimeout(DRIP_SECONDS)
        assert sock.recv(100) == b""
    # Prompt clients are unaffected.
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def test_an_idle_keep_alive_connection_is_closed(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_HEADER_TIMEOUT="1", KSHOT_KEEP_ALIVE_TIMEOUT="60")
    with connect(server.url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        # The next request's headers get the header timeout, though keep-alive allows 60 s.
        assert closed_by_server(sock, b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"a" * 1000) == b""


def test_a_drip_fed_body_is_cut_off_with_408(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_BODY_TIMEOUT="1")
    body = b'{"query": "' + b"a" * 2000 + b'"}'
    head = (
        b"POST /v1/select HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with connect(server.url) as sock:
        sock.sendall(head)
        answer = closed_by_server(sock, body)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b'"type":"body_timeout"' in answer and b"connection: close" in answer.lower()
    assert "cut off a slow request body" in server.log.read_text()
    r = httpx.post(f"{server.url}/v1/select", json={"query": "card"}, timeout=10)
    assert r.status_code == 200


def test_connections_over_the_limit_get_503(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_MAX_CONNECTIONS="2")
    held = [connect(server.url) for _ in range(2)]
    try:
        for _ in range(50):  # until the server has accepted the held connections
            r = httpx.get(f"{server.url}/healthz", timeout=10)
            if r.status_code != 200:
                break
            time.sleep(0.1)
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("text/plain")  # as documented
    finally:
        for sock in held:
            sock.close()
    for _ in range(50):
        if httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the server stayed at its connection limit")
