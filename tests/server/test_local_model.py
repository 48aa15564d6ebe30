"""``kshot serve --local-model`` (the bundled SmolLM2) as the proxy's upstream, end to end with
the official openai client: a model-only server process, and a proxy process in front of it.

Slow (two processes, one loads the language model on CPU): ``pytest -m slow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest
from proxy_processes import Process, kshot_serve

from kshot.index import ExampleIndex, HashingEncoder

pytestmark = pytest.mark.slow

EXAMPLES = [
    {"input": "What is the capital of Italy?", "output": "Rome"},
    {"input": "What is the capital of Spain?", "output": "Madrid"},
    {"input": "What is 2 + 2?", "output": "4"},
]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = kshot_serve(tmp_path_factory.mktemp("lm") / "local.log", "--local-model")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, local: Process) -> Iterator[Process]:
    path = tmp_path_factory.mktemp("lm-proxy") / "index"
    ExampleIndex.build(EXAMPLES, HashingEncoder(64), path=path)
    process = kshot_serve(
        path.parent / "proxy.log", str(path), "--upstream", f"{local.url}/v1", "--read-only"
    )
    yield process
    process.stop()


def client(server: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_the_proxy_answers_with_examples_from_the_local_model(proxy: Process) -> None:
    chat = client(proxy).chat.completions
    raw = chat.with_raw_response.create(
        model="any", messages=QUESTION, max_tokens=8, temperature=0, extra_body={"kshot": {"k": 2}}
    )
    answer = raw.parse()
    assert len(raw.headers["x-kshot-example-ids"].split(",")) == 2
    assert answer.object == "chat.completion" and answer.model.startswith("SmolLM2")
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 1 <= answer.usage.completion_tokens <= 8
    bare = chat.create(
        model="any", messages=QUESTION, max_tokens=1, temperature=0, extra_body={"kshot": {"k": 0}}
    )
    assert bare.usage is not None
    assert answer.usage.prompt_tokens > bare.usage.prompt_tokens  # the examples reached the model


def test_streaming_through_the_proxy_in_chunks_with_usage(proxy: Process) -> None:
    async def run() -> list[openai.types.chat.ChatCompletionChunk]:
        async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x") as aclient:
            stream = await aclient.chat.completions.create(
                model="any",
                messages=QUESTION,
                max_tokens=6,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"kshot": {"k": 0}},  # with examples the answer is one word
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 2
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and set(finishes[:-1]) == {None}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= len(pieces)
    greedy = client(proxy).chat.completions.create(
        model="any", messages=QUESTION, max_tokens=6, temperature=0, extra_body={"kshot": {"k": 0}}
    )
    assert "".join(pieces) == greedy.choices[0].message.content  # same greedy decode


def test_completions_stop_max_tokens_and_seeded_sampling(local: Process) -> None:
    completions = client(local).completions
    prompt = "Q: What is the capital of France?\nA: The capital of France is"
    greedy = completions.create(model="any", prompt=prompt, max_tokens=5, temperature=0)
    text = greedy.choices[0].text
    assert greedy.usage is not None and greedy.usage.completion_tokens <= 5
    assert text and greedy.object == "text_completion"
    cut = text.strip()[:2]
    stopped = completions.create(model="any", prompt=prompt, max_tokens=5, temperature=0, stop=cut)
    assert stopped.choices[0].text == text[: text.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"

    def sample(seed: int) -> str:
        done = completions.create(
            model="any", prompt=prompt, max_tokens=6, temperature=1.0, top_p=0.9, seed=seed
        )
        return done.choices[0].text

    assert sample(7) == sample(7)
    assert [m.id for m in client(local).models.list()] == [greedy.model]
    assert httpx.get(f"{local.url}/v1/index").status_code == 404  # a model-only server
