"""The command line under a held writer lock, damaged indexes and empty filters: one line, exit 2.

Every command runs as a real ``python -m kshot.cli`` process, so what is checked is what a user
sees on the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kshot.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
        timeout=timeout,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def index(tmp_path: Path) -> Path:
    rows = [
        {"id": f"r{i}", "input": f"row {i} word{i % 7} thing{i % 11}", "label": f"L{i % 3}"}
        for i in range(200)
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "idx"
    done = cli(
        "index", "build", str(corpus), "--out", str(path), "--model", "hashing:64",
        "--factory", "IVF16,Flat",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


HOLD = """
import sys
from kshot.index import ExampleIndex
index = ExampleIndex.load(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held(index: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(index)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    yield proc
    proc.kill()
    proc.wait()


def test_a_filter_that_matches_nothing_says_so(index: Path) -> None:
    done = cli("select", str(index), "row 3", "-f", "label=nope", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"examples": []}
    assert done.stderr.strip() == "no example matches label='nope'"
    matched = cli("select", str(index), "row 3", "-f", "label=L1", "--json")
    assert matched.returncode == 0 and matched.stderr == ""


def test_writes_beside_a_writer_are_one_line_naming_its_pid(
    index: Path, held: subprocess.Popen[str], tmp_path: Path
) -> None:
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"input": "another row", "output": "an answer"}) + "\n", encoding="utf-8"
    )
    for args in (("index", "add", str(index), str(more)), ("index", "delete", str(index), "r1")):
        line = one_error_line(cli(*args))
        assert f"open for writing by process {held.pid}" in line and "--read-only" in line
    # Reads open read-only and work beside the writer.
    done = cli("select", str(index), "row 3 word3", "-k", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["examples"]) == 2


def test_a_damaged_index_is_one_line(index: Path) -> None:
    (index / "examples.db").write_bytes(b"")
    for extra in index.glob("examples.db-*"):
        extra.unlink()
    for args in (("index", "info", str(index)), ("select", str(index), "row")):
        assert "is empty (0 bytes)" in one_error_line(cli(*args))


def test_a_small_ivf_index_whose_vectors_are_rebuilt_falls_back(index: Path) -> None:
    done = cli("index", "delete", str(index), *[f"r{i}" for i in range(190)])
    assert done.returncode == 0, done.stderr
    for args in (("index", "info", str(index), "--json"), ("select", str(index), "row 195")):
        (index / "vectors.faiss").unlink(missing_ok=True)
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1 and "using Flat" in warnings[0], done.stderr
    assert json.loads(cli("index", "info", str(index), "--json").stdout)["count"] == 10


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(index: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kshot.cli", "serve", str(index), "--port", str(port),
         "--tokenizer", "whitespace", "--device", "cpu", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_twice_the_second_exits_and_read_only_beside_works(index: Path) -> None:
    first, first_url = serve(index)
    try:
        wait_ready(first, first_url)
        second, _ = serve(index)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and f"by process {first.pid}" in lines[0], err
        assert "Traceback" not in err
        reader, reader_url = serve(index, "--read-only")
        try:
            wait_ready(reader, reader_url)
            answer = httpx.post(f"{reader_url}/v1/select", json={"query": "row 5", "k": 2})
            assert answer.status_code == 200 and len(answer.json()["examples"]) == 2
        finally:
            stop(reader)
    finally:
        stop(first)
    assert first.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM once shut down
    with_lock = cli("index", "delete", str(index), "r1")  # the writer released its lock
    assert with_lock.returncode == 0, with_lock.stderr


def test_a_bad_factory_is_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "one.jsonl"
    corpus.write_text(
        json.dumps({"input": "a row", "output": "an answer"}) + "\n", encoding="utf-8"
    )
    line = one_error_line(
        cli("index", "build", str(corpus), "--out", str(tmp_path / "bad"), "--model", "hashing:64",
            "--factory", "NoSuchIndex")
    )  # fmt: skip
    assert "FAISS cannot build factory string 'NoSuchIndex'" in line


def test_python_m_kshot_server_beside_a_writer_is_one_line(
    index: Path, held: subprocess.Popen[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kshot.server", str(index), "--tokenizer", "whitespace",
         "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
        env=ENV,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        line for line in done.stderr.strip().splitlines() if line.startswith("kshot server:")
    ]
    assert f"by process {held.pid}" in done.stderr
