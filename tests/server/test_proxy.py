"""The proxy end to end: the official openai client -> ``kshot serve --upstream`` -> a recording
HTTP server process, so each test sees exactly what was forwarded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import openai
import pytest
from proxy_processes import Process, free_port, kshot_serve, recording_upstream

from kshot.index import ExampleIndex, HashingEncoder
from kshot.selector.base import SelectorSpec, build_selector

#: Every input has 6 words and every output 2: each inserted example costs 8 (whitespace) tokens.
EXAMPLES = [
    {"id": f"ex {i}/{verb}", "input": f"how to {verb} my {thing} now", "output": f"answer {i}"}
    for i, (verb, thing) in enumerate(
        (v, t) for v in ("block", "freeze", "renew", "close") for t in ("card", "account", "pin")
    )
]
CLIENT_KEY = "client-kshot-key"
UPSTREAM_KEY = "upstream-secret"
QUERY = "how to block my card"
SYSTEM = {"role": "system", "content": "You answer banking questions."}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy") / "index"
    ExampleIndex.build(EXAMPLES, HashingEncoder(64), path=path)
    return path


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = recording_upstream(tmp_path_factory.mktemp("up") / "upstream.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def proxy(index_dir: Path, upstream: Process) -> Iterator[Process]:
    process = kshot_serve(
        index_dir.parent / "proxy.log",
        str(index_dir),
        "--upstream",
        f"{upstream.url}/v1",
        "--read-only",
        KSHOT_UPSTREAM_API_KEY=UPSTREAM_KEY,
        KSHOT_API_KEY=CLIENT_KEY,
        KSHOT_AUTH="all",
        KSHOT_UPSTREAM_RETRIES="1",
    )
    yield process
    process.stop()


def client(proxy: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=CLIENT_KEY, max_retries=0)


def forwarded(upstream: Process) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = httpx.get(f"{upstream.url}/_received").json()
    return received


def last_forwarded(upstream: Process) -> dict[str, Any]:
    return forwarded(upstream)[-1]


def expected_examples(index_dir: Path, k: int, budget: int) -> list[str]:
    """The ids the proxy should insert, best first: the top k, cut to the word budget."""
    index = ExampleIndex.load(index_dir)
    found = build_selector(index, SelectorSpec("similarity", {})).select(QUERY, k)
    kept, used = [], 0
    for s in found:
        cost = len(s.example.input.split()) + len(s.example.output.split())
        if used + cost > budget:
            break
        kept.append(s.example.id)
        used += cost
    return kept


def test_forwards_the_examples_in_order_within_the_budget(
    proxy: Process, upstream: Process, index_dir: Path
) -> None:
    budget = 20  # each example costs 8: two of the four fit
    want = expected_examples(index_dir, 4, budget)
    assert len(want) == 2
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="stand-in",
        messages=[SYSTEM, {"role": "user", "content": QUERY}],
        extra_body={"kshot": {"k": 4, "max_example_tokens": budget}},
    )
    answer = raw.parse()
    ids = [unquote(i) for i in raw.headers["x-kshot-example-ids"].split(",")]
    assert ids == want
    sent = last_forwarded(upstream)
    assert sent["path"] == "/v1/chat/completions"
    assert "kshot" not in sent["body"]
    assert sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in str(sent["headers"])
    index = ExampleIndex.load(index_dir)
    turns: list[dict[str, str]] = []
    for ex in index.get(list(reversed(want))):  # best example next to the query
        turns += [
            {"role": "user", "content": ex.input},
            {"role": "assistant", "content": ex.output},
        ]
    assert sent["body"]["messages"] == [SYSTEM, *turns, {"role": "user", "content": QUERY}]
    assert answer.choices[0].message.content == "got 6 messages"
    assert raw.headers["x-request-id"] == "req-123"


def test_text_parts_and_defaults_from_settings(proxy: Process, upstream: Process) -> None:
    parts = [{"type": "text", "text": "how to block"}, {"type": "text", "text": "my card"}]
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="stand-in", messages=[{"role": "user", "content": parts}]
    )
    ids = raw.headers["x-kshot-example-ids"].split(",")
    assert len(ids) == 4  # KSHOT_PROXY_K's default
    messages = last_forwarded(upstream)["body"]["messages"]
    assert len(messages) == 9 and messages[-1]["content"] == parts


def test_k0_passes_the_request_through_untouched(proxy: Process, upstream: Process) -> None:
    messages = [SYSTEM, {"role": "user", "content": QUERY}]
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="stand-in", messages=messages, temperature=0.2, extra_body={"kshot": {"k": 0}}
    )
    assert raw.headers["x-kshot-example-ids"] == ""
    assert last_forwarded(upstream)["body"] == {
        "model": "stand-in", "messages": messages, "temperature": 0.2
    }  # fmt: skip


def test_async_client_streams_several_chunks(proxy: Process, upstream: Process) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=f"{proxy.url}/v1", api_key=CLIENT_KEY, max_retries=0
        ) as aclient:
            stream = await aclient.chat.completions.create(
                model="stand-in",
                messages=[{"role": "user", "content": QUERY}],
                stream=True,
                extra_body={"kshot": {"k": 2}},
            )
            return [c.choices[0].delta.content or "" async for c in stream]

    pieces = asyncio.run(run())
    assert pieces == ["got ", "5 ", "messages"]
    assert last_forwarded(upstream)["body"]["stream"] is True


def test_models_come_from_the_upstream(proxy: Process) -> None:
    assert [m.id for m in client(proxy).models.list()] == ["stand-in"]


def test_upstream_errors_keep_their_status_and_body(proxy: Process, upstream: Process) -> None:
    ask = {"messages": [{"role": "user", "content": QUERY}]}
    with pytest.raises(openai.BadRequestError) as bad:
        client(proxy).chat.completions.create(model="fail-400", **ask)  # type: ignore[call-overload]
    assert bad.value.status_code == 400 and bad.value.code == "model_not_found"
    assert "upstream says 400" in bad.value.message
    before = len(forwarded(upstream))
    with pytest.raises(openai.InternalServerError) as failed:
        client(proxy).chat.completions.create(model="fail-500", **ask)  # type: ignore[call-overload]
    assert failed.value.status_code == 500
    assert len(forwarded(upstream)) == before + 2  # KSHOT_UPSTREAM_RETRIES=1: one retry
    with pytest.raises(openai.APIStatusError) as text:
        client(proxy).chat.completions.create(model="text-502", **ask)  # type: ignore[call-overload]
    assert text.value.status_code == 502
    assert "Bad Gateway from the load balancer" in text.value.message


def test_a_retried_5xx_then_succeeds(proxy: Process, upstream: Process) -> None:
    answer = client(proxy).chat.completions.create(
        model="flaky", messages=[{"role": "user", "content": QUERY}]
    )
    assert answer.choices[0].message.content == "got 9 messages"  # 4 examples by default
    assert [r["body"]["model"] for r in forwarded(upstream)[-2:]] == ["flaky", "flaky"]


def test_the_client_key_is_required(proxy: Process) -> None:
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"messages": []})
    assert r.status_code == 401


def test_an_unreachable_upstream_is_a_502(index_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    process = kshot_serve(
        index_dir.parent / "dead.log", str(index_dir), "--upstream", dead, "--read-only",
        KSHOT_UPSTREAM_RETRIES="0",
    )  # fmt: skip
    try:
        with pytest.raises(openai.APIStatusError) as failed:
            openai.OpenAI(base_url=f"{process.url}/v1", api_key="x", max_retries=0).models.list()
    finally:
        process.stop()
    assert failed.value.status_code == 502
    body = failed.value.body
    assert isinstance(body, dict) and body["type"] == "upstream_unreachable"
    assert dead in body["message"] and "--upstream" in body["message"]
