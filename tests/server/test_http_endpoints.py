"""Every endpoint's happy path, in process."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kshot.index import ExampleIndex
from kshot.selector import available_selectors


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_index_info(client: TestClient) -> None:
    body = client.get("/v1/index").json()
    assert body["count"] == 24
    assert body["labels"] == {"card": 8, "account": 8, "transfer": 8}
    assert body["encoder"] == "hashing:64"
    assert body["dimension"] == 64
    assert body["factory"] == "Flat"
    assert set(body["fields"]) == {"label", "lang", "n"}


def test_selectors_lists_names_descriptions_and_param_schemas(client: TestClient) -> None:
    body = client.get("/v1/selectors").json()
    names = [s["name"] for s in body["selectors"]]
    assert names == sorted(available_selectors())
    mmr = next(s for s in body["selectors"] if s["name"] == "mmr")
    assert mmr["description"]
    assert mmr["params"]["lambda"]["type"] == "number"
    assert mmr["params"]["lambda"]["minimum"] == 0.0
    assert mmr["params"]["fetch_k"]["default"] == 20


def test_select(client: TestClient) -> None:
    r = client.post("/v1/select", json={"query": "block my card", "k": 3})
    assert r.status_code == 200
    examples = r.json()["examples"]
    assert len(examples) == 3
    assert set(examples[0]) == {"id", "input", "output", "label", "metadata", "score"}
    scores = [e["score"] for e in examples]
    assert scores == sorted(scores, reverse=True)


def test_select_with_selector_params_filter_and_exclude(client: TestClient) -> None:
    body = {
        "query": "block my card",
        "k": 4,
        "selector": "mmr",
        "params": {"lambda": 0.3, "fetch_k": 10},
        "filter": {"label": ["card", "account"], "lang": "en"},
        "exclude": ["e1"],
    }
    examples = client.post("/v1/select", json=body).json()["examples"]
    assert len(examples) == 4
    for e in examples:
        assert e["label"] in {"card", "account"}
        assert e["metadata"]["lang"] == "en"
        assert e["id"] != "e1"


def test_select_every_registered_selector(client: TestClient) -> None:
    for name in available_selectors():
        r = client.post("/v1/select", json={"query": "top up my account", "k": 2, "selector": name})
        assert r.status_code == 200, (name, r.text)
        assert 1 <= len(r.json()["examples"]) <= 2


def test_select_batch_equals_single_calls(client: TestClient) -> None:
    queries = ["block my card", "transfer money", "cancel account"]
    batch = client.post("/v1/select:batch", json={"queries": queries, "k": 3}).json()
    assert len(batch["results"]) == 3
    for query, result in zip(queries, batch["results"], strict=True):
        single = client.post("/v1/select", json={"query": query, "k": 3}).json()
        assert [e["id"] for e in result["examples"]] == [e["id"] for e in single["examples"]]


def test_prompt_text(client: TestClient) -> None:
    r = client.post("/v1/prompt", json={"query": "block my card", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["format"] == "text"
    assert body["messages"] is None
    assert body["text"].endswith("Input: block my card\nOutput:")
    assert len(body["examples"]) == 3
    assert body["dropped_ids"] == []
    assert body["token_count"] == len(body["text"].split())
    assert body["tokenizer"] == "whitespace"


def test_prompt_chat_with_template_order_and_budget(client: TestClient) -> None:
    body = {
        "query": "block my card",
        "k": 4,
        "template": {"instructions": "Classify the request.", "example_assistant": "{label}"},
        "order": "similar_first",
        "max_tokens": 25,
        "format": "chat",
    }
    r = client.post("/v1/prompt", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["text"] is None
    assert out["messages"][0] == {"role": "system", "content": "Classify the request."}
    assert out["messages"][-1] == {"role": "user", "content": "block my card"}
    assert out["token_count"] <= 25
    assert out["dropped_ids"]  # four examples do not fit 25 words
    assert len(out["examples"]) + len(out["dropped_ids"]) == 4
    assert out["messages"][2]["content"] in {"card", "account", "transfer"}


def test_prompt_random_order_is_seeded(client: TestClient) -> None:
    body = {"query": "block my card", "k": 5, "order": "random", "seed": 7}
    first = client.post("/v1/prompt", json=body).json()
    second = client.post("/v1/prompt", json=body).json()
    assert first["text"] == second["text"]


def test_prompt_batch(client: TestClient) -> None:
    queries = ["block my card", "transfer money"]
    r = client.post("/v1/prompt:batch", json={"queries": queries, "k": 2, "format": "chat"})
    assert r.status_code == 200
    prompts = r.json()["prompts"]
    assert [p["messages"][-1]["content"] for p in prompts] == queries


def test_add_get_patch_delete(client: TestClient, index: ExampleIndex) -> None:
    new = {"input": "where is my parcel 📦", "output": "track it", "label": "delivery"}
    r = client.post("/v1/examples", json={"examples": [new, {"input": "second", "id": "mine"}]})
    assert r.status_code == 201
    first, second = r.json()["ids"]
    assert second == "mine"
    assert len(index) == 26
    got = client.get(f"/v1/examples/{first}").json()
    assert got["input"] == new["input"]
    assert got["label"] == "delivery"

    found = client.post("/v1/select", json={"query": "where is my parcel", "k": 1}).json()
    assert found["examples"][0]["id"] == first

    r = client.patch(f"/v1/examples/{first}", json={"output": "use the app", "metadata": {"v": 2}})
    assert r.status_code == 200
    assert r.json()["output"] == "use the app"
    assert r.json()["metadata"] == {"v": 2}
    assert r.json()["input"] == new["input"]

    assert client.delete(f"/v1/examples/{first}").json() == {"deleted": first}
    assert client.get(f"/v1/examples/{first}").status_code == 404
    assert len(index) == 25


def test_ids_with_slashes_and_unicode(client: TestClient) -> None:
    r = client.post("/v1/examples", json={"examples": [{"input": "x y z", "id": "a/b ü"}]})
    assert r.status_code == 201
    assert client.get("/v1/examples/a/b ü").json()["id"] == "a/b ü"
    assert client.delete("/v1/examples/a%2Fb%20%C3%BC").status_code == 200


def test_unicode_queries_work(client: TestClient) -> None:
    for query in ["block my card 😀😀", "כיצד לחסום את הכרטיס", "بطاقة", "e\u0301\u200f", "🃏"]:
        r = client.post("/v1/select", json={"query": query, "k": 2})
        assert r.status_code == 200, (query, r.text)
    r = client.post("/v1/examples", json={"examples": [{"input": "שלום 👋 مرحبا", "id": "rtl"}]})
    assert r.status_code == 201
    assert client.get("/v1/examples/rtl").json()["input"] == "שלום 👋 مرحبا"


def test_metrics(client: TestClient) -> None:
    client.post("/v1/select", json={"query": "block my card"})
    client.get("/v1/examples/e0")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'kshot_http_requests_total{method="POST",route="/v1/select",status="200"} 1' in text
    assert 'route="/v1/examples/{example_id:path}",status="200"' in text
    assert 'route="unmatched",status="404"' in text
    assert (
        'kshot_http_request_duration_seconds_bucket{method="POST",route="/v1/select",le="+Inf"} 1'
        in text
    )
    assert "kshot_index_examples 24" in text
    assert "# TYPE kshot_http_request_duration_seconds histogram" in text


def test_access_log(client: TestClient, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level("INFO", logger="kshot.server.access"):
        client.post("/v1/select", json={"query": "block my card"})
    record = next(r for r in caplog.records if r.name == "kshot.server.access")
    line = record.getMessage()
    assert "method=POST path=/v1/select route=/v1/select status=200 duration_ms=" in line
    assert record.http_status == 200  # type: ignore[attr-defined]


def test_openapi_documents_the_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/select:batch" in spec["paths"]
    select = spec["components"]["schemas"]["SelectRequest"]
    assert select["additionalProperties"] is False
    assert select["properties"]["query"]["description"] == "The query text."


def test_selectors_listing_is_every_selectors_schema(client: TestClient) -> None:
    body = client.get("/v1/selectors").json()
    assert body["selectors"] == [cls.schema() for cls in available_selectors().values()]


def test_selector_params_are_validated_like_the_python_api(client: TestClient) -> None:
    body = {"query": "block my card", "k": 2, "params": {"dedupe_threshold": 2}}
    r = client.post("/v1/select", json=body)
    assert 400 <= r.status_code < 500
    error = r.json()["error"]
    assert set(error) >= {"type", "message"}
    assert "'dedupe_threshold'" in error["message"] and "[0, 1]" in error["message"]
    ok = {**body, "selector": "mmr", "params": {"lambda": 0.3, "dedupe_threshold": 0.99}}
    assert len(client.post("/v1/select", json=ok).json()["examples"]) == 2
