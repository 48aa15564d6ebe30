"""The proxy's own answers before anything is forwarded: bad ``kshot`` fields, collections, no
upstream, no user message; and the message insertion rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from proxy_processes import free_port

from kshot.server.proxy import insert_examples

QUERY = {"role": "user", "content": "how do I block my card"}
# A closed port: a request that passes validation fails with 502; a refused one never gets there.
DEAD = f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture
def proxy(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(upstream=DEAD, upstream_retries=0)


@pytest.mark.parametrize(
    ("kshot", "where"),
    [
        ({"k": -1}, "kshot.k"),
        ({"k": "many"}, "kshot.k"),
        ({"max_example_tokens": 0}, "kshot.max_example_tokens"),
        ({"selektor": "mmr"}, "kshot.selektor"),
        ("four", "kshot"),
    ],
)
def test_a_bad_kshot_field_is_a_422(proxy: TestClient, kshot: object, where: str) -> None:
    r = proxy.post("/v1/chat/completions", json={"messages": [QUERY], "kshot": kshot})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["type"] == "validation_error" and error["message"].startswith(where)


def test_selection_errors_name_what_to_fix(proxy: TestClient) -> None:
    r = proxy.post("/v1/chat/completions", json={"messages": [QUERY], "kshot": {"k": 999}})
    assert r.status_code == 422 and r.json()["error"]["limit"] == "max_k"
    r = proxy.post(
        "/v1/chat/completions", json={"messages": [QUERY], "kshot": {"selector": "nope"}}
    )
    assert r.status_code == 422 and "nope" in r.json()["error"]["message"]


def test_an_unknown_collection_is_a_404_naming_the_known_ones(proxy: TestClient) -> None:
    body = {"messages": [QUERY], "kshot": {"collection": "tickets"}}
    r = proxy.post("/v1/chat/completions", json=body)
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "unknown_collection"
    assert "'tickets'" in r.json()["error"]["message"]
    assert "holds: 'default'" in r.json()["error"]["message"]


def test_no_user_message_is_a_422_unless_k_is_0(proxy: TestClient) -> None:
    system_only = {"messages": [{"role": "system", "content": "hi"}]}
    r = proxy.post("/v1/chat/completions", json=system_only)
    assert r.status_code == 422 and '"k": 0' in r.json()["error"]["message"]
    r = proxy.post("/v1/chat/completions", json={**system_only, "kshot": {"k": 0}})
    assert r.status_code == 502  # validated, then forwarded to the dead upstream


def test_bad_json_and_missing_messages(proxy: TestClient) -> None:
    r = proxy.post(
        "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
    r = proxy.post("/v1/chat/completions", json={"model": "x"})
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("messages")


def test_without_an_upstream_the_routes_say_how_to_get_one(client: TestClient) -> None:
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
        r = client.request(method, path, json={"messages": [QUERY]})
        assert r.status_code == 404
        assert "--upstream URL" in r.json()["error"]["message"]


def test_examples_go_after_the_leading_system_messages() -> None:
    ex = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    sys_ = {"role": "system", "content": "s"}
    dev = {"role": "developer", "content": "d"}
    past = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}]
    assert insert_examples([sys_, dev, *past, QUERY], ex) == [sys_, dev, *ex, *past, QUERY]
    assert insert_examples([QUERY], ex) == [*ex, QUERY]
    late_system = [QUERY, sys_, QUERY]
    assert insert_examples(late_system, ex) == [*ex, *late_system]


def test_both_upstream_and_local_model_is_refused() -> None:
    from pydantic import ValidationError

    from kshot.server import ServerSettings

    with pytest.raises(ValidationError, match="not both"):
        ServerSettings(upstream="http://x/v1", local_model="bundled")
    with pytest.raises(ValidationError, match="http"):
        ServerSettings(upstream="localhost:8001")


def test_serve_takes_local_model_without_a_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from kshot.cli import main

    argv = ["kshot", "serve", "--local-model", "--upstream", "http://x/v1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not both" in err  # parsed, then refused by settings


def test_a_silent_upstream_is_a_504(make_client: Callable[..., TestClient]) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        proxy = make_client(upstream=url, upstream_retries=0, upstream_timeout=0.5)
        r = proxy.post("/v1/chat/completions", json={"messages": [QUERY]})
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "upstream_timeout"
    assert "KSHOT_UPSTREAM_TIMEOUT" in r.json()["error"]["message"]
