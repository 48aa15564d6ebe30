"""The real server in a subprocess (``python -m kshot.server``), over loopback with httpx."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import httpx


def test_state_survives_a_restart(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_ALLOW_ANONYMOUS_WRITES="true")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/v1/index").json()["count"] == 24
        new = {"input": "my parcel never arrived 📦", "output": "track it", "label": "delivery"}
        r = http.post("/v1/examples", json={"examples": [new]})
        assert r.status_code == 201
        (new_id,) = r.json()["ids"]
        found = http.post("/v1/select", json={"query": "my parcel never arrived", "k": 1})
        assert found.json()["examples"][0]["id"] == new_id
        assert http.delete("/v1/examples/e5").status_code == 200
        assert http.patch("/v1/examples/e6", json={"output": "changed"}).status_code == 200
        bad = http.post("/v1/select", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_json"
        assert "kshot_index_examples 24" in http.get("/metrics").text
    assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
    log = server.log.read_text()
    assert "Application shutdown complete" in log
    assert "saved 24 examples" in log
    assert "method=POST path=/v1/examples route=/v1/examples status=201" in log

    server.start()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/v1/index").json()["count"] == 24
        assert http.get(f"/v1/examples/{new_id}").json()["input"] == new["input"]
        assert http.get("/v1/examples/e5").status_code == 404
        assert http.get("/v1/examples/e6").json()["output"] == "changed"
        assert http.delete(f"/v1/examples/{new_id}").status_code == 200
    server.stop()
    assert "rebuilding" not in server.log.read_text()  # the shutdown save kept vectors in step


def test_api_key_on_the_real_server(real_server: Callable[..., Any]) -> None:
    server = real_server(KSHOT_API_KEY="k3y", KSHOT_AUTH="all")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/index").status_code == 401
        ok = {"Authorization": "Bearer k3y"}
        assert http.get("/v1/index", headers=ok).status_code == 200
        add = {"examples": [{"input": "x"}]}
        assert http.post("/v1/examples", json=add).status_code == 401
        assert http.post("/v1/examples", json=add, headers=ok).status_code == 201


def test_concurrent_writers_and_readers(real_server: Callable[..., Any]) -> None:
    """Writers add and patch, readers select and get; no 5xx, no lost write, no torn read.

    Each writer PATCHes ``output`` and ``label`` together, so a reader must see a matching pair.
    """
    server = real_server(KSHOT_ALLOW_ANONYMOUS_WRITES="true")
    n_writers, per_writer, n_readers = 2, 15, 4
    problems: list[str] = []
    statuses: list[int] = []
    done = threading.Event()
    lock = threading.Lock()

    def record(r: httpx.Response) -> None:
        with lock:
            statuses.append(r.status_code)
        if r.status_code >= 500:
            problems.append(f"{r.request.method} {r.request.url}: {r.status_code} {r.text}")

    def writer(w: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(per_writer):
                ex_id = f"w{w}-{i}"
                body = {"input": f"writer {w} note {i} about cards", "id": ex_id,
                        "output": "v1", "label": "one", "metadata": {"w": w}}  # fmt: skip
                r = http.post("/v1/examples", json={"examples": [body]})
                record(r)
                if r.status_code != 201:
                    problems.append(f"add {ex_id}: {r.status_code} {r.text}")
                r = http.patch(f"/v1/examples/{ex_id}", json={"output": "v2", "label": "two"})
                record(r)
                if r.status_code != 200:
                    problems.append(f"patch {ex_id}: {r.status_code} {r.text}")

    def check_example(e: dict[str, Any]) -> None:
        if e["id"].startswith("w") and (e["output"], e["label"]) not in {
            ("v1", "one"),
            ("v2", "two"),
        }:
            problems.append(f"torn read: {e}")

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        last_count = 0
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not done.is_set():
                r = http.post(
                    "/v1/select",
                    json={"query": f"writer {rng.randrange(2)} note about cards", "k": 5,
                          "selector": rng.choice(["similarity", "mmr", "bm25"])},
                )  # fmt: skip
                record(r)
                if r.status_code == 200:
                    ids = [e["id"] for e in r.json()["examples"]]
                    if len(ids) != len(set(ids)) or len(ids) > 5:
                        problems.append(f"bad selection {ids}")
                    for e in r.json()["examples"]:
                        check_example(e)
                r = http.get("/v1/index")
                record(r)
                count = r.json()["count"]
                if count < last_count:
                    problems.append(f"count went back from {last_count} to {count}")
                last_count = count

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    readers = [threading.Thread(target=reader, args=(s,)) for s in range(n_readers)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(120)
    done.set()
    for t in readers:
        t.join(60)
    assert not problems, problems[:5]
    assert len(statuses) > 2 * n_writers * per_writer and max(statuses) < 500
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/v1/index").json()["count"] == 24 + n_writers * per_writer
        for w in range(n_writers):
            for i in range(per_writer):
                e = http.get(f"/v1/examples/w{w}-{i}").json()
                assert (e["output"], e["label"]) == ("v2", "two")
