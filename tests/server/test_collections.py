"""Named collections against a real ``kshot serve`` process: several indexes side by side.

One server holds the default index (bank questions), ``tickets`` (``--collection NAME=DIR``),
``faq`` (read-only, from a TOML file with proxy defaults) and a collections directory where
``POST /v1/collections`` creates new ones; its upstream is the recording stand-in.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from proxy_processes import Process, kshot_serve, recording_upstream

from kshot.index import ExampleIndex, HashingEncoder

KEY = "collections-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BANK = [{"id": f"bank{i}", "input": f"how do I block my card {i}", "output": "b"} for i in range(6)]
TICKETS = [
    {"id": f"ticket{i}", "input": f"my printer on floor {i} is jammed", "output": "t"}
    for i in range(5)
]
FAQ = [
    {"id": f"faq{i}", "input": f"when is the office open on day {i}", "output": "f"}
    for i in range(4)
]


def build(path: Path, rows: list[dict[str, Any]]) -> Path:
    ExampleIndex.build(rows, HashingEncoder(64), path=path).close()
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("collections")
    config = root / "collections.toml"
    # A relative path: relative to the file's directory.
    config.write_text('[faq]\npath = "faq"\nread_only = true\nk = 1\n')
    return {
        "root": root,
        "bank": build(root / "bank", BANK),
        "tickets": build(root / "tickets", TICKETS),
        "faq": build(root / "faq", FAQ),
        "config": config,
        "created": root / "created",
    }


@pytest.fixture(scope="module")
def upstream(dirs: dict[str, Path]) -> Iterator[Process]:
    process = recording_upstream(dirs["root"] / "upstream.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def server(dirs: dict[str, Path], upstream: Process) -> Iterator[Process]:
    process = kshot_serve(
        dirs["root"] / "server.log",
        str(dirs["bank"]),
        "--collection",
        f"tickets={dirs['tickets']}",
        "--collections",
        str(dirs["config"]),
        "--collections-dir",
        str(dirs["created"]),
        "--upstream",
        f"{upstream.url}/v1",
        KSHOT_API_KEY=KEY,
        KSHOT_UPSTREAM_RETRIES="0",
    )
    yield process
    process.stop()


def select_ids(server: Process, prefix: str, query: str, k: int = 3) -> list[str]:
    r = httpx.post(f"{server.url}{prefix}/select", json={"query": query, "k": k})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["examples"]]


def test_lists_every_collection(server: Process) -> None:
    r = httpx.get(f"{server.url}/v1/collections")
    assert r.status_code == 200, r.text
    listed = {c["name"]: c for c in r.json()["collections"]}
    assert {n: (c["count"], c["read_only"]) for n, c in listed.items() if n != "new"} == {
        "default": (6, False),
        "faq": (4, True),
        "tickets": (5, False),
    }
    assert listed["tickets"]["encoder"] == "hashing:64"


def test_each_collection_answers_from_its_own_index(server: Process) -> None:
    query = "printer jammed"
    assert all(i.startswith("ticket") for i in select_ids(server, "/v1/collections/tickets", query))
    assert all(i.startswith("faq") for i in select_ids(server, "/v1/collections/faq", query))
    assert all(i.startswith("bank") for i in select_ids(server, "/v1", query))
    # The current routes are the default collection, also reachable by its name.
    assert select_ids(server, "/v1/collections/default", query) == select_ids(server, "/v1", query)
    r = httpx.post(
        f"{server.url}/v1/collections/tickets/prompt:batch",
        json={"queries": [query, "printer on floor 2"], "k": 2},
    )
    assert r.status_code == 200, r.text
    assert all(e["id"].startswith("ticket") for p in r.json()["prompts"] for e in p["examples"])
    info = httpx.get(f"{server.url}/v1/collections/faq/index").json()
    assert info["count"] == 4


def test_a_write_to_one_collection_leaves_the_others_alone(server: Process) -> None:
    new = {"id": "ticket-new", "input": "the scanner is broken again", "output": "t"}
    r = httpx.post(
        f"{server.url}/v1/collections/tickets/examples", json={"examples": [new]}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    got = httpx.get(f"{server.url}/v1/collections/tickets/examples/ticket-new")
    assert got.status_code == 200 and got.json()["input"] == new["input"]
    assert httpx.get(f"{server.url}/v1/examples/ticket-new").status_code == 404
    assert httpx.get(f"{server.url}/v1/index").json()["count"] == 6
    assert "ticket-new" in select_ids(server, "/v1/collections/tickets", "scanner broken")
    r = httpx.delete(f"{server.url}/v1/collections/tickets/examples/ticket-new", headers=AUTH)
    assert r.status_code == 200, r.text
    # A write needs the key here as on the default routes; a read-only collection refuses it.
    r = httpx.post(f"{server.url}/v1/collections/tickets/examples", json={"examples": [new]})
    assert r.status_code == 401
    r = httpx.post(
        f"{server.url}/v1/collections/faq/examples", json={"examples": [new]}, headers=AUTH
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"]["type"]


def test_an_unknown_collection_is_a_404_naming_the_known_ones(server: Process) -> None:
    for method, path in [
        ("POST", "/v1/collections/nope/select"),
        ("GET", "/v1/collections/nope/examples/x"),
        ("GET", "/v1/collections/nope/index"),
    ]:
        body = {"query": "printer"} if method == "POST" else None
        r = httpx.request(method, f"{server.url}{path}", json=body)
        assert r.status_code == 404, (path, r.text)
        error = r.json()["error"]
        assert error["type"] == "unknown_collection"
        assert "'nope'" in error["message"]
        assert all(f"'{n}'" in error["message"] for n in ("default", "faq", "tickets"))


def test_create_an_empty_collection_then_write_and_select(server: Process) -> None:
    body = {"name": "new", "encoder": "hashing:64"}
    assert httpx.post(f"{server.url}/v1/collections", json=body).status_code == 401
    r = httpx.post(f"{server.url}/v1/collections", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json() == {
        "name": "new",
        "count": 0,
        "encoder": "hashing:64",
        "dimension": 64,
        "factory": "Flat",
        "read_only": False,
    }
    assert select_ids(server, "/v1/collections/new", "anything") == []
    rows = [{"id": "n1", "input": "reset my password"}, {"id": "n2", "input": "lunch menu"}]
    r = httpx.post(
        f"{server.url}/v1/collections/new/examples", json={"examples": rows}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    assert select_ids(server, "/v1/collections/new", "password reset", k=1) == ["n1"]
    assert len(select_ids(server, "/v1", "password reset", k=10)) == 6  # the default is untouched
    # The name is taken (also by a configured collection), and a bad name says what is valid.
    for name in ("new", "tickets", "default"):
        r = httpx.post(f"{server.url}/v1/collections", json={"name": name}, headers=AUTH)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["type"] == "collection_exists"
    r = httpx.post(f"{server.url}/v1/collections", json={"name": "../up"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("name")
    r = httpx.post(
        f"{server.url}/v1/collections", json={"name": "x", "encoder": "hashing:?"}, headers=AUTH
    )
    assert r.status_code == 422 and "hashing" in r.json()["error"]["message"]
    # A model no collection serves is not loaded on a client's word.
    r = httpx.post(
        f"{server.url}/v1/collections",
        json={"name": "y", "encoder": "someone/some-model"},
        headers=AUTH,
    )
    assert r.status_code == 422 and "'hashing:64'" in r.json()["error"]["message"]
    assert "y" not in {
        c["name"] for c in httpx.get(f"{server.url}/v1/collections").json()["collections"]
    }


def test_the_proxy_selects_from_the_named_collection(server: Process, upstream: Process) -> None:
    def chat(kshot: dict[str, Any]) -> list[str]:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "stand-in",
                "messages": [{"role": "user", "content": "printer jammed on floor"}],
                "kshot": kshot,
            },
        )
        assert r.status_code == 200, r.text
        return [unquote(i) for i in r.headers["x-kshot-example-ids"].split(",") if i]

    ids = chat({"collection": "tickets", "k": 2})
    assert len(ids) == 2 and all(i.startswith("ticket") for i in ids)
    sent = httpx.get(f"{upstream.url}/_received").json()[-1]["body"]["messages"]
    assert [m["content"] for m in sent[:-1:2]] == [
        t["input"] for i in reversed(ids) for t in TICKETS if t["id"] == i
    ]
    # faq's defaults (k = 1) apply when the request leaves k unset.
    faq = chat({"collection": "faq"})
    assert len(faq) == 1 and faq[0].startswith("faq")
    assert all(i.startswith("bank") for i in chat({"k": 2}))
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "kshot": {"collection": "nope"},
        },
    )
    assert r.status_code == 404 and "'tickets'" in r.json()["error"]["message"]


def test_a_created_collection_survives_a_restart(tmp_path: Path) -> None:
    """A server with only a collections directory: create, write, stop, start again, read."""
    created = tmp_path / "created"

    def start() -> Process:
        return kshot_serve(
            tmp_path / "server.log", "--collections-dir", str(created), KSHOT_API_KEY=KEY
        )

    server = start()
    try:
        # Nothing to take the encoder from, and no default collection behind /v1/select.
        r = httpx.post(f"{server.url}/v1/collections", json={"name": "kb"}, headers=AUTH)
        assert r.status_code == 422 and "encoder" in r.json()["error"]["message"]
        r = httpx.post(f"{server.url}/v1/select", json={"query": "q"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "unknown_collection"
        body = {"name": "kb", "encoder": "hashing:32"}
        assert (
            httpx.post(f"{server.url}/v1/collections", json=body, headers=AUTH).status_code == 201
        )
        r = httpx.post(
            f"{server.url}/v1/collections/kb/examples",
            json={"examples": [{"id": "k1", "input": "vpn does not connect"}]},
            headers=AUTH,
        )
        assert r.status_code == 201, r.text
    finally:
        server.stop()
    server = start()
    try:
        listed = httpx.get(f"{server.url}/v1/collections").json()["collections"]
        assert [(c["name"], c["count"]) for c in listed] == [("kb", 1)]
        assert select_ids(server, "/v1/collections/kb", "vpn", k=1) == ["k1"]
    finally:
        server.stop()


def test_serve_refuses_a_bad_collection_option_in_one_line(tmp_path: Path) -> None:
    cli = [sys.executable, "-c", "from kshot.cli import main; main()", "serve"]
    for args, says in [
        (["--collection", "tickets"], "expected NAME=DIR"),
        (["--collection", "Bad Name=x"], "not a slug"),
        (["--collections", str(tmp_path / "missing.json")], "cannot read"),
    ]:
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], done.stderr
