"""Bad input that once got a 200 or a vague 400: each gets a 4xx that names what to fix."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.test_http_errors import check_error

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("filter", "words"),
    [
        ({"label": 5}, ["'label'", "a string", "number 5"]),
        ({"label": [["a"]]}, ["'label'", "a string", "list ['a']"]),
        ({"label": None}, ["'label'", "a string", "got null"]),
        ({"lang": None}, ["'lang'", "a string, a number or a boolean", "got null"]),
    ],
)
@pytest.mark.parametrize("route", ["/v1/select", "/v1/prompt"])
def test_filter_values_of_the_wrong_type(
    client: TestClient, route: str, filter: dict[str, Any], words: list[str]
) -> None:
    error = check_error(client.post(route, json={"query": "card", "filter": filter}), 422)
    assert error["message"].startswith("filter: ")
    for word in words:
        assert word in error["message"]
    batch = client.post(route + ":batch", json={"queries": ["card"], "filter": filter})
    check_error(batch, 422)


def test_a_filter_value_of_a_kind_the_field_never_holds(client: TestClient) -> None:
    error = check_error(
        client.post("/v1/select", json={"query": "card", "filter": {"lang": True}}),
        422,
        "filter_error",
    )
    assert "'lang'" in error["message"] and "boolean" in error["message"]
    assert "string" in error["message"]
    # A value of the right kind that nobody has is a legitimate empty answer.
    r = client.post("/v1/select", json={"query": "card", "filter": {"lang": "fr"}})
    assert r.status_code == 200 and r.json() == {"examples": []}
    r = client.post("/v1/select", json={"query": "card", "filter": {"n": [3, 4], "lang": "en"}})
    assert [e["id"] for e in r.json()["examples"]] == ["e3"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "card", "k": True},
        {"query": "card", "k": "4"},
        {"query": "card", "k": 2.0},
        {"query": "card", "max_tokens": True},
        {"query": "card", "seed": False},
    ],
)
def test_strict_numbers(client: TestClient, body: dict[str, Any]) -> None:
    route = "/v1/prompt" if set(body) & {"max_tokens", "seed"} else "/v1/select"
    error = check_error(client.post(route, json=body), 422, "validation_error")
    (field,) = set(body) - {"query"}
    assert error["message"].startswith(f"{field}: ")


def test_text_plain_body_is_415(client: TestClient) -> None:
    for route in ("/v1/select", "/v1/examples"):
        r = client.post(route, content=b'{"query": "card"}', headers={"content-type": "text/plain"})
        error = check_error(r, 415, "unsupported_media_type")
        assert "application/json" in error["message"] and "text/plain" in error["message"]
    r = client.post("/v1/select", content=b'{"query": "card"}', headers={"content-type": ""})
    check_error(r, 415, "unsupported_media_type")
    # JSON with a charset or a +json subtype is fine.
    for kind in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = client.post("/v1/select", content=b'{"query": "card"}', headers={"content-type": kind})
        assert r.status_code == 200, r.text


def test_empty_id_is_refused_and_a_missing_id_is_generated(client: TestClient) -> None:
    r = client.post("/v1/examples", json={"examples": [{"input": "new text", "id": ""}]})
    error = check_error(r, 422, "validation_error")
    assert error["message"].startswith("examples.0.id: ")
    r = client.post("/v1/examples", json={"examples": [{"input": "new text"}]})
    assert r.status_code == 201
    (new_id,) = r.json()["ids"]
    assert new_id and client.get(f"/v1/examples/{new_id}").json()["input"] == "new text"


def test_json_nested_5000_deep_says_depth_and_offset(client: TestClient) -> None:
    raw = b'{"query": "card", "params": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = check_error(client.post("/v1/select", content=raw, headers=JSON), 400, "too_deep")
    assert "5001 levels deep" in error["message"] and "at most 16 levels" in error["message"]
    # The 17th opening bracket is the first one over the limit: the body's "{" plus 16 "[".
    assert error["offset"] == raw.index(b"[") + 15
    assert f"byte offset {error['offset']}" in error["message"]


def test_invalid_utf8_says_encoding_and_offset(client: TestClient) -> None:
    raw = b'{"query": "caf\xe9 card"}'
    error = check_error(
        client.post("/v1/select", content=raw, headers=JSON), 400, "invalid_encoding"
    )
    assert "not valid UTF-8" in error["message"]
    assert error["offset"] == raw.index(b"\xe9")
    assert f"byte offset {error['offset']}" in error["message"]


def test_invalid_json_says_where(client: TestClient) -> None:
    raw = b'{"query": "card", }'
    error = check_error(client.post("/v1/select", content=raw, headers=JSON), 400, "invalid_json")
    assert f"at character {raw.index(b'}')}" in error["message"]
