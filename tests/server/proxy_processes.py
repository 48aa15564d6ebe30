"""Real processes for the proxy tests: ``kshot serve`` and the recording stand-in upstream."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A server subprocess on a free loopback port, ready once ``ready_path`` answers 200."""

    def __init__(self, args: list[str], log: Path, ready_path: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "KSHOT_DEVICE": "cpu", "KSHOT_TOKENIZER": "whitespace", **env}
        argv = [a.replace("{port}", str(self.port)) for a in args]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=out)
        self._wait(ready_path)

    def _wait(self, path: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def kshot_serve(log: Path, *args: str, **env: str) -> Process:
    """``kshot serve ARGS --port <free>`` (the console entry point, argv as a user types it)."""
    cmd = [sys.executable, "-c", "from kshot.cli import main; main()", "serve", *args]
    return Process([*cmd, "--port", "{port}"], log, "/healthz", **env)


def recording_upstream(log: Path) -> Process:
    """The stand-in remote API of ``recording_upstream.py``."""
    script = str(HERE / "recording_upstream.py")
    return Process([sys.executable, script, "{port}"], log, "/_received")
