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


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kshot.cli`` in a subprocess, as a user's shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "kshot.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def labelled_csv(path: Path, rows: int = 6) -> Path:
    """A CSV with text and intent columns and no output column."""
    verbs = ["activate", "block", "cancel", "freeze", "renew", "replace"]
    lines = ["text,intent"] + [
        f"how do I {verbs[i % 6]} my card {i},{verbs[i % 6]}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_version() -> None:
    from kshot import __version__

    assert kshot("--version").strip() == f"kshot {__version__}"
    done = run_cli("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"kshot {__version__}")


def test_missing_column_error_names_the_cli_flag(tmp_path: Path) -> None:
    source = labelled_csv(tmp_path / "c.csv")
    done = run_cli(
        "index", "build", str(source), "--out", str(tmp_path / "i"), "--model", "hashing:8"
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "row 1 has no 'input' field (it has: intent, text)" in done.stderr
    assert "pass --input-field to read another column" in done.stderr
    assert "input_field=" not in done.stderr


def test_labels_are_the_outputs_of_a_file_without_outputs(tmp_path: Path) -> None:
    source = labelled_csv(tmp_path / "train.csv")
    index = tmp_path / "idx"
    kshot(
        "index", "build", str(source), "--out", str(index), "--model", "hashing:64",
        "--input-field", "text", "--label-field", "intent",
    )  # fmt: skip
    info = json.loads(kshot("index", "info", str(index), "--json"))
    assert info["notes"] == {"outputs": "the labels ('intent'), as train.csv has no 'output' field"}
    assert "outputs: the labels ('intent'), as train.csv" in kshot("index", "info", str(index))

    prompt = json.loads(
        kshot("prompt", str(index), "how do I block my card", "-k", "2", "--format", "chat",
              "--tokenizer", "whitespace", "--json")
    )  # fmt: skip
    answers = [m["content"] for m in prompt["messages"] if m["role"] == "assistant"]
    assert answers == [e["label"] for e in prompt["examples"]] and "block" in answers
    assert all(e["output"] == e["label"] for e in prompt["examples"])

    # Rows added from another such file get their labels too, and the note says so.
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"text": "lost my card", "intent": "lost"}) + "\n", "utf-8")
    kshot("index", "add", str(index), str(more), "--input-field", "text", "--label-field", "intent")
    added = json.loads(kshot("select", str(index), "I lost my card", "-k", "1", "--json"))
    assert added["examples"][0]["output"] == "lost"
    notes = json.loads(kshot("index", "info", str(index), "--json"))["notes"]
    assert notes["outputs"].endswith("; the labels ('intent'), as more.jsonl has no 'output' field")


def test_a_file_with_outputs_leaves_no_note(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    assert json.loads(kshot("index", "info", str(index), "--json"))["notes"] == {}
    assert "notes" not in kshot("index", "info", str(index))


def test_empty_outputs_warn_on_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    source.write_text(json.dumps({"input": "hello"}) + "\n" + json.dumps({"input": "bye"}) + "\n")
    done = run_cli(
        "index", "build", str(source), "--out", str(tmp_path / "i"), "--model", "hashing:8"
    )
    assert done.returncode == 0, done.stderr
    assert "every example in" in done.stderr and "empty output" in done.stderr
    assert done.stderr.rstrip().endswith("name the column that holds them with --output-field")


def test_prompt_template_options(tmp_path: Path, corpus: Path) -> None:
    index = tmp_path / "idx"
    kshot("index", "build", str(corpus), "--out", str(index), "--model", "hashing:64")
    text = kshot(
        "prompt", str(index), "how to block my card", "-k", "1", "--tokenizer", "whitespace",
        "--template", r"Q: {input}\nA: {label}", "--query-template", r"Q: {input}\nA:",
        "--separator", "\n---\n",
    )  # fmt: skip
    assert text.startswith(
        "Q: how do I block my card\nA: block\n---\nQ: how to block my card\nA:\n"
    )
    chat = json.loads(
        kshot("prompt", str(index), "freeze it", "-k", "1", "--format", "chat", "--tokenizer",
              "whitespace", "--example-user", "Request: {input}", "--example-assistant",
              "Intent: {label}", "--query-user", "Request: {input}", "--json")
    )  # fmt: skip
    contents = [m["content"] for m in chat["messages"]]
    assert contents[0].startswith("Request: ") and contents[1].startswith("Intent: ")
    assert contents[-1] == "Request: freeze it"
    bad = runner.invoke(app, ["prompt", str(index), "q", "--template", "{input.x}"])
    assert bad.exit_code != 0 and "attribute or index access" in str(bad.exception)


def test_progress_bar_follows_the_flag_and_the_terminal(tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    rows = [{"input": f"question number {i}", "label": f"l{i % 3}"} for i in range(300)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["index", "build", str(source), "--model", "hashing:16"]

    shown = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--progress"])
    assert shown.exit_code == 0, shown.output
    assert "encoding: 100%" in shown.stderr and "300/300" in shown.stderr
    # Captured output is no terminal: no bar unless asked for.
    for extra in ([], ["--no-progress"]):
        quiet = runner.invoke(app, [*base, "--out", str(tmp_path / f"q{len(extra)}"), *extra])
        assert quiet.exit_code == 0 and "encoding" not in quiet.stderr

    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"input": f"more {i}"}) + "\n" for i in range(300)))
    added = runner.invoke(app, ["index", "add", str(tmp_path / "a"), str(more), "--progress"])
    assert added.exit_code == 0 and "encoding: 100%" in added.stderr


def test_progress_default_is_a_terminal_with_a_few_hundred_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kshot.cli.options import wants_progress as _progress
    from kshot.index.encoder import PROGRESS_MIN_ROWS

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _progress(None, PROGRESS_MIN_ROWS + 1) and not _progress(None, PROGRESS_MIN_ROWS)
    assert not _progress(False, 10_000) and _progress(True, 1)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not _progress(None, 10_000)


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


def test_the_cli_is_a_package_of_modules_under_500_lines() -> None:
    import kshot.cli

    package = Path(kshot.cli.__file__).parent
    assert package.name == "cli" and (package / "__main__.py").is_file()
    long = {
        path.name: lines
        for path in package.glob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not long, f"split these command modules: {long}"


def test_index_tune_measures_recall_on_a_query_file_and_saves_it(tmp_path: Path) -> None:
    rows = [{"input": f"message number {i} about topic {i % 7}"} for i in range(200)]
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    queries = tmp_path / "queries.csv"
    queries.write_text("text\nmessage about topic 3\nnumber 12\nsomething else\n", encoding="utf-8")
    index = tmp_path / "idx"
    kshot(
        "index", "build", str(source), "--out", str(index), "--model", "hashing:64",
        "--factory", "IVF4,Flat",
    )  # fmt: skip
    out = kshot("index", "tune", str(index), str(queries), "--input-field", "text")
    assert out.startswith("recall@10 ") and "on 3 queries (IVF4,Flat, nprobe 4)" in out
    info = json.loads(kshot("index", "info", str(index), "--json"))
    assert info["recall_queries"] == 3
    assert f"recall@10 {info['recall_at_10']:.3f}" in out
    done = run_cli("index", "tune", str(index), str(queries), "--input-field", "text",
                   "--target", "1.5")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: target must be in (0, 1], not 1.5"
