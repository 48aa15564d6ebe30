"""API keys, anonymous writes, read-only servers and auth="all"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

KEY = "s3cret-key"
ADD = {"examples": [{"input": "a new example", "id": "new"}]}


def writes(client: TestClient, headers: dict[str, Any] | None = None) -> list[int]:
    return [
        client.post("/v1/examples", json=ADD, headers=headers).status_code,
        client.patch("/v1/examples/e1", json={"output": "x"}, headers=headers).status_code,
        client.delete("/v1/examples/e2", headers=headers).status_code,
    ]


def reads(client: TestClient, headers: dict[str, Any] | None = None) -> list[int]:
    return [
        client.get("/readyz", headers=headers).status_code,
        client.get("/metrics", headers=headers).status_code,
        client.get("/v1/index", headers=headers).status_code,
        client.get("/v1/selectors", headers=headers).status_code,
        client.get("/v1/examples/e3", headers=headers).status_code,
        client.post("/v1/select", json={"query": "card"}, headers=headers).status_code,
        client.post("/v1/select:batch", json={"queries": ["a"]}, headers=headers).status_code,
        client.post("/v1/prompt", json={"query": "card"}, headers=headers).status_code,
        client.post("/v1/prompt:batch", json={"queries": ["a"]}, headers=headers).status_code,
    ]


def test_writes_refused_without_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allow_anonymous_writes=False)
    assert writes(client) == [403, 403, 403]
    error = client.post("/v1/examples", json=ADD).json()["error"]
    assert error["type"] == "writes_disabled"
    assert "KSHOT_API_KEY" in error["message"]
    assert "KSHOT_ALLOW_ANONYMOUS_WRITES" in error["message"]
    assert set(reads(client)) == {200}


def test_anonymous_writes(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allow_anonymous_writes=True)
    assert writes(client) == [201, 200, 200]


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": KEY},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": "Bearer ü".encode("latin-1")},
    ],
    ids=["none", "wrong", "basic", "empty", "no scheme", "longer", "non-ascii"],
)
def test_writes_need_the_key(
    make_client: Callable[..., TestClient], headers: dict[str, Any] | None
) -> None:
    client = make_client(api_key=KEY, allow_anonymous_writes=True)
    assert writes(client, headers) == [401, 401, 401]
    r = client.post("/v1/examples", json=ADD, headers=headers)
    assert r.json()["error"]["type"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert KEY not in r.text
    assert set(reads(client, headers)) == {200}  # auth="writes": reads stay open


def test_writes_with_the_key(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_key=KEY)
    assert writes(client, {"Authorization": f"Bearer {KEY}"}) == [201, 200, 200]
    assert writes(client, {"authorization": f"bearer {KEY}"})[1:] == [200, 404]


def test_auth_all_protects_reads_but_not_healthz(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_key=KEY, auth="all")
    assert client.get("/healthz").status_code == 200
    assert set(reads(client)) == {401}
    assert set(reads(client, {"Authorization": "Bearer nope"})) == {401}
    assert set(reads(client, {"Authorization": f"Bearer {KEY}"})) == {200}


def test_read_only_refuses_writes_even_with_the_key(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_key=KEY, read_only=True)
    assert writes(client, {"Authorization": f"Bearer {KEY}"}) == [403, 403, 403]
    error = client.post("/v1/examples", json=ADD).json()["error"]
    assert "read-only" in error["message"]


DOCS = ["/openapi.json", "/docs", "/redoc"]


def test_auth_all_protects_the_api_documents(make_client: Callable[..., TestClient]) -> None:
    client = make_client(api_key=KEY, auth="all")
    for path in DOCS:
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.json()["error"]["type"] == "unauthorized"
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    document = client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert "/v1/select" in document["paths"] and "/docs" not in document["paths"]


def test_auth_writes_leaves_the_api_documents_open(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(api_key=KEY, auth="writes")
    for path in DOCS:
        assert client.get(path).status_code == 200, path
    assert "/openapi.json" in client.get("/docs").text
    assert "/openapi.json" in client.get("/redoc").text
    assert client.get("/openapi.json").json()["info"]["title"] == "kshot"
