"""The ``kshot`` command line, end to end on a small hashing-encoder index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kshot.cli import app

runner = CliRunner()


def kshot(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rows = [
        {"id": f"c{i}", "input": f"how do I {verb} my card", "output": verb, "label": verb}
        for i, verb in enumerate(["activate", "block", "cancel", "freeze", "renew", "replace"])
    ]
    rows += [
        {
            "id": "t1",
            "input": "send money abroad",
            "output": "transfer",
            "label": "transfer",
            "metadata": {"channel": "app"},
        },
        {
            "id": "t2",
            "input": "wire money to a friend",
            "output": "transfer",
            "label": "transfer",
            "metadata": {"channel": "web"},
        },
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_build_info_select_add_delete(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    out = kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    assert "indexed 8 examples" in out
    info = json.loads(kshot("index", "info", str(index), "--json"))
    assert (info["count"], info["encoder"], info["factory"]) == (8, "hashing:64", "Flat")

    picked = json.loads(kshot("select", str(index), "how to block my card", "-k", "2", "--json"))
    assert picked["examples"][0]["id"] == "c1"
    assert set(picked["examples"][0]) == {"id", "input", "output", "label", "metadata", "score"}

    filtered = json.loads(
        kshot(
            "select",
            str(index),
            "money",
            "-k",
            "5",
            "-s",
            "mmr",
            "-p",
            "lambda=0.3",
            "-f",
            "channel=app",
            "-f",
            "channel=web",
            "--json",
        )
    )
    assert sorted(e["id"] for e in filtered["examples"]) == ["t1", "t2"]

    more = tmp_path / "more.csv"
    more.write_text("text,intent\nlost my card,lost\n", encoding="utf-8")
    kshot("index", "add", str(index), str(more), "--input-field", "text", "--label-field", "intent")
    kshot("index", "delete", str(index), "c0")
    info = json.loads(kshot("index", "info", str(index), "--json"))
    assert info["count"] == 8 and "lost" in info["labels"] and "activate" not in info["labels"]


def test_prompt_chat_json(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    prompt = json.loads(
        kshot(
            "prompt",
            str(index),
            "how do I freeze my card?",
            "-k",
            "2",
            "--format",
            "chat",
            "--instructions",
            "Name the intent.",
            "--max-tokens",
            "200",
            "--json",
        )
    )
    roles = [m["role"] for m in prompt["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt["messages"][-1]["content"] == "how do I freeze my card?"
    assert prompt["token_count"] <= 200


def test_selectors_listing() -> None:
    listing = json.loads(kshot("selectors", "--json"))
    assert {"similarity", "mmr", "jaccard", "bm25", "balanced", "random"} <= set(listing)
    assert listing["mmr"]["params"]["lambda"]["maximum"] == 1.0


def test_errors_are_one_line_and_exit_2(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    done = subprocess.run(
        [sys.executable, "-m", "kshot.cli", "select", str(index), "card", "-k", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: k must be a whole number of at least 1, got 0"
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "kshot.cli",
            "index",
            "build",
            str(corpus),
            "--out",
            str(index),
            "--model",
            "hashing:64",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr


def test_selectors_listing_is_every_selectors_schema() -> None:
    from kshot.selector import available_selectors

    listing = json.loads(kshot("selectors", "--json"))
    expected = {
        name: {key: value for key, value in cls.schema().items() if key != "name"}
        for name, cls in available_selectors().items()
    }
    assert listing == expected
    assert "dedupe_threshold" in listing["bm25"]["params"]
    text = kshot("selectors")
    assert "dedupe_threshold" in text and "lambda" in text


def test_param_values_are_validated_like_the_python_api(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    found = json.loads(
        kshot(
            "select",
            str(index),
            "how do I block my card",
            "-k",
            "3",
            "--selector",
            "mmr",
            "--param",
            "lambda=0.3",
            "--param",
            "dedupe_threshold=0.99",
            "--json",
        )
    )
    assert len(found["examples"]) == 3
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kshot.cli",
            "select",
            str(index),
            "card",
            "--selector",
            "mmr",
            "--param",
            "lambda=2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: selector 'mmr' parameter 'lambda' is 2.0; valid range: [0, 1]"
    )
