"""Fixtures for the HTTP server tests: a small hashing-encoder index and app clients."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kshot.index import ExampleIndex, HashingEncoder
from kshot.prompt.budget import WhitespaceCounter
from kshot.server import ServerSettings, create_app

ACTIONS = ["activate", "block", "top up", "cancel", "order", "find", "freeze", "replace"]
LABELS = ["card", "account", "transfer"]


def corpus(n: int = 24) -> list[dict[str, Any]]:
    return [
        {
            "id": f"e{i}",
            "input": f"how do I {ACTIONS[i % len(ACTIONS)]} my {LABELS[i % 3]} number {i}",
            "output": f"answer {i}",
            "label": LABELS[i % 3],
            "metadata": {"lang": "en" if i % 2 else "de", "n": i},
        }
        for i in range(n)
    ]


@pytest.fixture
def index() -> ExampleIndex:
    return ExampleIndex.build(corpus(), HashingEncoder(64))


@pytest.fixture
def make_client(index: ExampleIndex) -> Iterator[Callable[..., TestClient]]:
    """Build a started TestClient over the ``index`` fixture with the given settings."""
    clients: list[TestClient] = []

    def make(raise_server_exceptions: bool = True, **settings: Any) -> TestClient:
        settings.setdefault("allow_anonymous_writes", True)
        app = create_app(ServerSettings(**settings), index=index, counter=WhitespaceCounter())
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    path = tmp_path / "index"
    ExampleIndex.build(corpus(), HashingEncoder(64), path=path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RealServer:
    """``python -m kshot.server`` in a subprocess on a free loopback port."""

    def __init__(self, index: Path, log: Path, **env: str) -> None:
        self.index = index
        self.log = log
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "KSHOT_INDEX": str(self.index),
            "KSHOT_HOST": "127.0.0.1",
            "KSHOT_PORT": str(self.port),
            "KSHOT_TOKENIZER": "whitespace",
            "KSHOT_DEVICE": "cpu",
            **self.env,
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kshot.server"], env=env, stdout=log, stderr=log
            )
        key = self.env.get("KSHOT_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", headers=headers, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn shuts down gracefully, the lifespan saves
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


@pytest.fixture
def real_server(tmp_path: Path, index_dir: Path) -> Iterator[Callable[..., RealServer]]:
    servers: list[RealServer] = []

    def start(**env: str) -> RealServer:
        server = RealServer(index_dir, tmp_path / "server.log", **env)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
