"""``kshot select`` / ``kshot prompt --server URL`` against a real ``python -m kshot.server``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from kshot.cli import app
from kshot.client import KshotClient
from kshot.errors import ConfigError, RemoteError

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def stdout_of(*args: str, env: dict[str, str] | None = None) -> str:
    result = invoke(*args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.stdout


def refusal(*args: str, env: dict[str, str] | None = None) -> str:
    """The message of the kshot error a command ends with (main() prints it as one line)."""
    result = invoke(*args, env=env)
    assert isinstance(result.exception, RemoteError | ConfigError), result.output
    return str(result.exception)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KSHOT_API_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "kshot.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_select_and_prompt_through_a_running_server(
    real_server: Callable[..., Any], index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KSHOT_API_KEY", raising=False)
    server = real_server(KSHOT_API_KEY="k3y", KSHOT_AUTH="all")
    select_args = ["how do I block my card", "-k", "3", "-s", "mmr", "-p", "lambda=0.4",
                   "-f", "label=card", "-f", "label=account", "--exclude", "e0"]  # fmt: skip
    prompt_args = [*select_args, "--format", "chat", "--max-tokens", "40",
                   "--example-assistant", "Label: {label}"]  # fmt: skip
    local_json = stdout_of("select", str(index_dir), *select_args, "--json")
    local_text = stdout_of("select", str(index_dir), *select_args)
    local_prompt = stdout_of(
        "prompt", str(index_dir), *prompt_args, "--tokenizer", "whitespace", "--json"
    )

    # From here on nothing may open the index or load an encoder in this process.
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the --server path loaded the index locally")

    monkeypatch.setattr("kshot.index.ExampleIndex.load", refuse)
    monkeypatch.setattr("kshot.index.example_index.encoder_from_name", refuse)
    remote = ["--server", server.url, "--api-key", "k3y"]

    remote_json = stdout_of("select", *select_args, *remote, "--json")
    assert remote_json == local_json
    assert [e["id"] for e in json.loads(remote_json)["examples"]] != []
    assert stdout_of("select", *select_args, *remote) == local_text

    # The key also comes from KSHOT_API_KEY, and a trailing /v1 on the URL is accepted.
    keyed = {"KSHOT_API_KEY": "k3y"}
    remote_prompt = stdout_of(
        "prompt", *prompt_args, "--server", server.url + "/v1/", "--json", env=keyed
    )
    assert remote_prompt == local_prompt
    prompt = json.loads(remote_prompt)
    assistant = [m["content"] for m in prompt["messages"] if m["role"] == "assistant"]
    assert assistant and all(text.startswith("Label: ") for text in assistant)
    assert prompt["token_count"] <= 40

    # The server's refusals come back as its own message.
    unauthorized = refusal("select", "card", "--server", server.url)
    assert unauthorized.startswith(f"the kshot server at {server.url} refused the request (401")
    bad_k = refusal("select", "card", "-k", "0", *remote)
    assert "(422 validation_error): k: " in bad_k
    unknown = refusal("prompt", "card", "-s", "nearest", *remote)
    assert "unknown_selector_error" in unknown and "'nearest'" in unknown
    bad_param = refusal("select", "card", "-s", "mmr", "-p", "lambda=2", *remote)
    assert "lambda" in bad_param and "(422 " in bad_param

    # As a user's shell sees it: one line on stderr, exit code 2.
    done = run_cli("select", "card", "-k", "0", "--server", server.url, "--api-key", "k3y")
    assert done.returncode == 2
    assert done.stderr.startswith("error: the kshot server at") and done.stderr.count("\n") == 1


def test_an_unreachable_server_is_one_line_and_exit_2(real_server: Callable[..., Any]) -> None:
    server = real_server()
    server.stop()  # a port that just served kshot and now refuses connections
    url = server.url
    done = run_cli("prompt", "card", "--server", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot reach the kshot server at {url} (")
    assert done.stderr.rstrip().endswith("is `kshot serve` running there?")
    assert done.stderr.count("\n") == 1


def test_server_option_misuse_is_explained(index_dir: Path) -> None:
    assert "give the query only, not the index directory" in refusal(
        "select", str(index_dir), "card", "--server", "http://127.0.0.1:1"
    )
    assert "must look like http://HOST:PORT" in refusal("select", "card", "--server", "ftp://x")
    assert "give an index directory and the query text" in refusal("select", str(index_dir))
    assert "--tokenizer counts tokens here" in refusal(
        "prompt", "card", "--server", "http://127.0.0.1:1", "--tokenizer", "whitespace"
    )


def test_the_client_refuses_a_server_that_is_not_kshot() -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>nothing here</html>")

    client = KshotClient("http://other:80", transport=httpx.MockTransport(answer))
    with client, pytest.raises(RemoteError, match=r"answered 404 Not Found without a kshot body"):
        client.select("card")
