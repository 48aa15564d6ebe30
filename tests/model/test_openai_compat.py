"""OpenAICompatibleLM against a real HTTP server on 127.0.0.1 speaking the OpenAI wire format."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from kshot.errors import ConfigError, ModelError
from kshot.model import OpenAICompatibleLM


class FakeServer:
    """Answers chat and text completions; scripted failures are served first, in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.failures: list[tuple[int, dict[str, str], str]] = []
        self.echo = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body, dict(self.headers)))
                if server.failures:
                    status, headers, text = server.failures.pop(0)
                    self._send(status, text.encode(), headers)
                    return
                if self.path == "/v1/chat/completions":
                    last = body["messages"][-1]["content"]
                    answer = {"message": {"role": "assistant", "content": f"echo: {last}\nmore"}}
                    self._json({"id": "c1", "object": "chat.completion", "choices": [answer]})
                elif self.path == "/v1/completions" and body.get("echo"):
                    if not server.echo:
                        self._json({"error": {"message": "echo is not supported"}}, 400)
                        return
                    self._json({"choices": [score(p, i) for i, p in enumerate(body["prompt"])]})
                elif self.path == "/v1/completions":
                    self._json({"choices": [{"index": 0, "text": " yes\nQ: next"}]})
                else:
                    self._json({"error": "not found"}, 404)

            def _json(self, obj: Any, status: int = 200) -> None:
                self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def score(text: str, index: int) -> dict[str, Any]:
    """Echo ``text`` as whitespace tokens (leading space attached), logprob = -len(token)."""
    tokens: list[str] = []
    offsets: list[int] = []
    pos = 0
    for word in text.split(" "):
        tok = word if pos == 0 else " " + word
        tokens.append(tok)
        offsets.append(pos)
        pos += len(tok)
    logprobs: list[float | None] = [None] + [-float(len(t)) for t in tokens[1:]]
    tokens.append(" gen")
    offsets.append(pos)
    logprobs.append(-0.5)
    return {
        "index": index,
        "text": text + " gen",
        "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "text_offset": offsets},
    }


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


def make(server: FakeServer, **kw: Any) -> OpenAICompatibleLM:
    kw.setdefault("backoff", 0.01)
    return OpenAICompatibleLM(server.url, "tiny", api_key="sk-test", timeout=5, **kw)


def test_chat_and_text_generation(server: FakeServer) -> None:
    with make(server) as lm:
        out = lm.generate(["Q: hi\nA:", [{"role": "user", "content": "hello"}]], max_new_tokens=5)
    assert out == [" yes\nQ: next", "echo: hello\nmore"]
    (p1, b1, h1), (p2, b2, _) = server.requests
    assert p1 == "/v1/completions" and b1["prompt"] == "Q: hi\nA:" and b1["max_tokens"] == 5
    assert b1["temperature"] == 0 and b1["model"] == "tiny"
    assert p2 == "/v1/chat/completions" and b2["messages"] == [{"role": "user", "content": "hello"}]
    assert h1["Authorization"] == "Bearer sk-test"


def test_stop_strings_cut_the_answer(server: FakeServer) -> None:
    lm = make(server)
    assert lm.generate(["x"], stop=["\n"]) == [" yes"]
    assert server.requests[0][1]["stop"] == ["\n"]


def test_base_url_with_v1_and_env_key(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KSHOT_LLM_API_KEY", "from-env")
    lm = OpenAICompatibleLM(server.url + "/v1/", "tiny")
    lm.generate(["x"])
    assert server.requests[0][0] == "/v1/completions"
    assert server.requests[0][2]["Authorization"] == "Bearer from-env"


def test_retries_429_then_succeeds(server: FakeServer) -> None:
    server.failures = [(429, {"Retry-After": "0"}, "slow down"), (503, {}, "busy")]
    out = make(server).generate([[{"role": "user", "content": "hi"}]])
    assert out == ["echo: hi\nmore"]
    assert len(server.requests) == 3


def test_gives_up_after_max_retries(server: FakeServer) -> None:
    server.failures = [(500, {}, "boom")] * 3
    with pytest.raises(ModelError, match=r"500 after 2 attempts: 'boom'"):
        make(server, max_retries=1).generate(["x"])
    assert len(server.requests) == 2


def test_400_is_not_retried_and_reports_status_and_body(server: FakeServer) -> None:
    server.failures = [(400, {}, '{"error": {"message": "bad model name"}}')]
    with pytest.raises(ModelError) as info:
        make(server).generate(["x"])
    assert "400" in str(info.value) and "bad model name" in str(info.value)
    assert len(server.requests) == 1


def test_connection_errors_are_retried_then_reported() -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lm = OpenAICompatibleLM(f"http://127.0.0.1:{port}", "m", max_retries=2, backoff=0.01)
    with pytest.raises(ModelError, match="after 3 attempt"):
        lm.generate(["x"])


def test_score_labels_with_echo_logprobs(server: FakeServer) -> None:
    lm = make(server)
    scores = lm.score_labels(["Answer:", "Q: A:"], [" yes", " nope", " two words"])
    # each label token scores -len(token): " yes" -> -4, " nope" -> -5, " two"+" words" -> -10
    np.testing.assert_allclose(scores, [[-4, -5, -10], [-4, -5, -10]])
    body = server.requests[0][1]
    assert body["echo"] is True and body["prompt"] == [
        "Answer: yes",
        "Answer: nope",
        "Answer: two words",
    ]
    assert len(server.requests) == 2


def test_score_labels_unsupported(server: FakeServer) -> None:
    server.echo = False
    with pytest.raises(ModelError, match=r"cannot score labels.*400.*echo is not supported"):
        make(server).score_labels(["Answer:"], [" yes"])
    with pytest.raises(ModelError, match="chat prompts"):
        make(server).score_labels([[{"role": "user", "content": "x"}]], ["yes"])
    with pytest.raises(ConfigError):
        make(server).score_labels("Answer:", [" yes"])  # type: ignore[arg-type]
