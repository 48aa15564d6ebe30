"""Bad input: every case is a 4xx with a JSON error body, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import kshot.errors as kerrors
from kshot.server.errors import STATUS_OF, kind_of, status_of

Q = "block my card"


def check_error(r: Any, status: int, kind: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    if kind is not None:
        assert error["type"] == kind, error
    assert "Traceback" not in r.text
    return dict(error)


@pytest.fixture
def serving(client: TestClient) -> Iterator[TestClient]:
    yield client
    # whatever the test sent, the server still answers
    assert client.post("/v1/select", json={"query": Q, "k": 2}).status_code == 200


BAD_SELECT: list[tuple[str, Any, int, str]] = [
    ("missing query", {"k": 2}, 422, "validation_error"),
    ("empty query", {"query": ""}, 422, "validation_error"),
    ("whitespace query", {"query": "   \n\t"}, 422, "query_error"),
    ("query not a string", {"query": 12}, 422, "validation_error"),
    ("query a list", {"query": ["a"]}, 422, "validation_error"),
    ("k zero", {"query": Q, "k": 0}, 422, "validation_error"),
    ("k negative", {"query": Q, "k": -3}, 422, "validation_error"),
    ("k a string", {"query": Q, "k": "four"}, 422, "validation_error"),
    ("k a float", {"query": Q, "k": 2.5}, 422, "validation_error"),
    ("k huge", {"query": Q, "k": 10**9}, 422, "limit_exceeded"),
    ("k beyond int64", {"query": Q, "k": 10**30}, 422, "limit_exceeded"),
    ("unknown field", {"query": Q, "kk": 3}, 422, "validation_error"),
    ("unknown selector", {"query": Q, "selector": "nope"}, 422, "unknown_selector_error"),
    ("unknown parameter", {"query": Q, "selector": "mmr", "params": {"x": 1}}, 422, "config_error"),
    (
        "parameter out of range",
        {"query": Q, "selector": "mmr", "params": {"lambda": 5}},
        422,
        "config_error",
    ),
    (
        "parameter wrong type",
        {"query": Q, "selector": "mmr", "params": {"fetch_k": "many"}},
        422,
        "config_error",
    ),
    ("params not an object", {"query": Q, "params": [1]}, 422, "validation_error"),
    ("filter on unknown field", {"query": Q, "filter": {"color": "red"}}, 422, "filter_error"),
    ("filter with an object value", {"query": Q, "filter": {"label": {"a": 1}}}, 422, None),
    ("filter not an object", {"query": Q, "filter": "label=card"}, 422, "validation_error"),
    ("exclude not a list", {"query": Q, "exclude": "e1"}, 422, "validation_error"),
    ("NUL in query", {"query": "block\u0000card"}, 422, "validation_error"),
    ("lone surrogate in query", b'{"query": "block \\ud800 card"}', 422, "validation_error"),
    ("escaped NUL in query", b'{"query": "a\\u0000b"}', 422, "validation_error"),
    ("query over max_query_chars", {"query": "a " * 5000}, 422, "limit_exceeded"),
    ("body is a list", [Q], 422, "validation_error"),
    ("body is null", None, 422, "validation_error"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "kind"), BAD_SELECT, ids=[c[0] for c in BAD_SELECT]
)
def test_bad_select(
    serving: TestClient, case: str, body: Any, status: int, kind: str | None
) -> None:
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        r = serving.post("/v1/select", content=body, headers=headers)
    else:
        r = serving.post("/v1/select", json=body)
    check_error(r, status, kind)


def test_limit_error_names_the_limit(serving: TestClient) -> None:
    error = check_error(serving.post("/v1/select", json={"query": Q, "k": 10**9}), 422)
    assert error["limit"] == "max_k"
    assert error["value"] == 64
    assert "max_k=64" in error["message"]
    error = check_error(serving.post("/v1/select", json={"query": "x" * 9000}), 422)
    assert (error["limit"], error["value"]) == ("max_query_chars", 8000)


def test_validation_error_names_the_field(serving: TestClient) -> None:
    error = check_error(serving.post("/v1/select", json={"query": Q, "k": 0}), 422)
    assert error["message"].startswith("k: ")
    assert error["details"][0]["loc"] == ["k"]


def test_unknown_selector_lists_known_ones(serving: TestClient) -> None:
    error = check_error(serving.post("/v1/select", json={"query": Q, "selector": "nope"}), 422)
    assert "mmr" in error["message"] and "similarity" in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b'{"query": "a"', b"{query: 1}", b"\xff\xfe", b'{"query": "a"} trailing', b"[" * 100_000],
    ids=["truncated", "unquoted", "not utf-8", "trailing", "deep nesting"],
)
def test_malformed_json(serving: TestClient, raw: bytes) -> None:
    r = serving.post("/v1/select", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["type"] in {"invalid_json", "too_deep", "validation_error"}


def test_non_json_content_type(serving: TestClient) -> None:
    r = serving.post("/v1/select", content=b"query=a", headers={"content-type": "text/plain"})
    check_error(r, 415, "unsupported_media_type")


def test_nan_in_json_is_refused(serving: TestClient) -> None:
    raw = b'{"examples": [{"input": "x", "metadata": {"score": NaN}}]}'
    r = serving.post("/v1/examples", content=raw, headers={"content-type": "application/json"})
    check_error(r, 422, "validation_error")
    raw = b'{"query": "a", "k": Infinity}'
    r = serving.post("/v1/select", content=raw, headers={"content-type": "application/json"})
    check_error(r, 422, "validation_error")


def test_ten_megabyte_query_is_413(serving: TestClient) -> None:
    r = serving.post("/v1/select", json={"query": "a" * 10_000_000})
    error = check_error(r, 413, "payload_too_large")
    assert (error["limit"], error["value"]) == ("max_body_bytes", 1_048_576)


def test_chunked_body_over_limit_is_413(serving: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(40):
            yield b"a" * 65_536
        yield b'"}'

    r = serving.post("/v1/select", content=chunks(), headers={"content-type": "application/json"})
    check_error(r, 413, "payload_too_large")


def test_batch_limits(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_batch=3)
    error = check_error(client.post("/v1/select:batch", json={"queries": ["a"] * 4}), 422)
    assert (error["limit"], error["value"]) == ("max_batch", 3)
    check_error(client.post("/v1/prompt:batch", json={"queries": ["a"] * 4}), 422)
    check_error(client.post("/v1/select:batch", json={"queries": []}), 422, "validation_error")
    check_error(
        client.post("/v1/select:batch", json={"queries": ["ok", ""]}), 422, "validation_error"
    )
    examples = [{"input": f"x{i}"} for i in range(4)]
    check_error(client.post("/v1/examples", json={"examples": examples}), 422, "limit_exceeded")
    assert client.post("/v1/select:batch", json={"queries": ["a", "b", "c"]}).status_code == 200


BAD_PROMPT: list[tuple[str, dict[str, Any], str]] = [
    ("unknown order", {"order": "backwards"}, "validation_error"),
    ("unknown format", {"format": "xml"}, "validation_error"),
    ("max_tokens zero", {"max_tokens": 0}, "validation_error"),
    ("budget too small for the query", {"max_tokens": 1}, "budget_error"),
    ("unknown template field", {"template": {"example": "{nope}"}}, "template_error"),
    ("attribute access in template", {"template": {"example": "{input.__class__}"}}, None),
    ("format spec in template", {"template": {"query": "{input:>99999999}"}}, "template_error"),
    ("unknown template key", {"template": {"footer": "x"}}, "validation_error"),
    ("seed a string", {"seed": "x"}, "validation_error"),
]


@pytest.mark.parametrize(("case", "extra", "kind"), BAD_PROMPT, ids=[c[0] for c in BAD_PROMPT])
def test_bad_prompt(
    serving: TestClient, case: str, extra: dict[str, Any], kind: str | None
) -> None:
    check_error(serving.post("/v1/prompt", json={"query": Q, **extra}), 422, kind)


def test_bad_writes(serving: TestClient) -> None:
    post = serving.post
    check_error(post("/v1/examples", json={"examples": []}), 422, "validation_error")
    check_error(post("/v1/examples", json={"examples": [{"output": "x"}]}), 422, "validation_error")
    check_error(post("/v1/examples", json={"examples": [{"input": "a", "x": 1}]}), 422)
    check_error(post("/v1/examples", json={"examples": [{"input": "   "}]}), 422, "data_error")
    check_error(post("/v1/examples", json={"examples": [{"input": "a\u0000"}]}), 422)
    check_error(
        post("/v1/examples", json={"examples": [{"input": "a", "metadata": {"k\u0000": 1}}]}), 422
    )
    check_error(post("/v1/examples", json={"examples": [{"input": "x", "metadata": [1]}]}), 422)
    deep: Any = 1
    for _ in range(40):
        deep = {"d": deep}
    check_error(post("/v1/examples", json={"examples": [{"input": "x", "metadata": deep}]}), 422)
    check_error(post("/v1/examples", json={"examples": [{"input": "dup", "id": "e1"}]}), 422)
    same = [{"input": "a", "id": "z"}, {"input": "b", "id": "z"}]
    check_error(post("/v1/examples", json={"examples": same}), 422, "data_error")
    check_error(serving.patch("/v1/examples/nope", json={"output": "x"}), 404, "not_found_error")
    check_error(serving.patch("/v1/examples/e1", json={"input": ""}), 422, "validation_error")
    check_error(serving.patch("/v1/examples/e1", json={"colour": "x"}), 422, "validation_error")
    check_error(serving.delete("/v1/examples/nope"), 404, "not_found_error")
    check_error(serving.get("/v1/examples/nope"), 404, "not_found_error")
    # nothing above changed the index
    assert serving.get("/v1/index").json()["count"] == 24


def test_unknown_route_and_method(serving: TestClient) -> None:
    check_error(serving.get("/v2/select"), 404, "not_found")
    r = serving.get("/v1/select")
    check_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["allow"]


def test_unexpected_error_is_a_generic_500(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    client = make_client(raise_server_exceptions=False)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr("kshot.server.routes.select.select_all", boom)
    with caplog.at_level("ERROR"):
        r = client.post("/v1/select", json={"query": Q})
    error = check_error(r, 500, "internal_error")
    assert "secret" not in r.text
    assert error["message"] == "the server failed to answer; see its log"
    assert any("secret internal detail" in str(rec.exc_info) for rec in caplog.records)
    monkeypatch.undo()
    assert client.post("/v1/select", json={"query": Q}).status_code == 200


def test_server_side_kshot_error_hides_its_message(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(raise_server_exceptions=False)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise kerrors.IndexFormatError("/secret/path/vectors.faiss is corrupt")

    monkeypatch.setattr("kshot.server.routes.select.select_all", broken)
    r = client.post("/v1/select", json={"query": Q})
    check_error(r, 500, "index_format_error")
    assert "/secret" not in r.text


def test_every_kshot_error_class_has_one_status() -> None:
    classes = [
        getattr(kerrors, name)
        for name in kerrors.__all__
        if isinstance(getattr(kerrors, name), type)
    ]
    for cls in classes:
        assert cls in STATUS_OF, cls
        assert status_of(cls("x")) == STATUS_OF[cls]
    assert status_of(kerrors.NotFoundError("x")) == 404
    assert status_of(kerrors.UnknownSelectorError("x")) == 422
    assert kind_of(kerrors.UnknownSelectorError("x")) == "unknown_selector_error"

    class Custom(kerrors.FilterError):
        pass

    assert status_of(Custom("x")) == 422


def test_surrogates_in_metadata_and_filters_are_refused(serving: TestClient) -> None:
    headers = {"content-type": "application/json"}
    raw = b'{"examples": [{"input": "x", "metadata": {"a": "\\udc00"}}]}'
    check_error(serving.post("/v1/examples", content=raw, headers=headers), 422)
    raw = b'{"query": "x", "filter": {"label": "\\ud83d"}}'
    check_error(serving.post("/v1/select", content=raw, headers=headers), 422)
