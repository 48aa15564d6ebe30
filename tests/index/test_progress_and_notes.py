"""Progress bars while embedding (the encoders and ExampleIndex.add) and index notes."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from kshot.index import ExampleIndex, HashingEncoder
from kshot.index.encoder import PROGRESS_MIN_ROWS, SentenceTransformerEncoder, wants_progress


def test_wants_progress_explicit_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert wants_progress(1, True) and not wants_progress(10**6, False)
    assert not wants_progress(10**6, None)  # no terminal: no bar by default


def test_wants_progress_default_follows_terminal_rows_and_log_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    logger = logging.getLogger("kshot.index.encoder")
    monkeypatch.setattr(logger, "level", logging.INFO)
    assert wants_progress(PROGRESS_MIN_ROWS + 1, None)
    assert not wants_progress(PROGRESS_MIN_ROWS, None)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    assert not wants_progress(PROGRESS_MIN_ROWS + 1, None)


def test_hashing_encoder_draws_a_bar_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    HashingEncoder(8).encode(["a b"] * 300, show_progress=True)
    assert "encoding: 100%" in capsys.readouterr().err
    HashingEncoder(8).encode(["a b"] * 300, show_progress=False)
    assert capsys.readouterr().err == ""


def test_minilm_draws_a_bar_when_asked(
    minilm: SentenceTransformerEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    minilm.encode([f"text {i}" for i in range(PROGRESS_MIN_ROWS + 1)], show_progress=True)
    assert "Batches: 100%" in capsys.readouterr().err


def test_add_passes_show_progress_to_the_encoder(capsys: pytest.CaptureFixture[str]) -> None:
    index = ExampleIndex.build([{"input": "first"}], HashingEncoder(8))
    capsys.readouterr()
    index.add([{"input": f"row {i}"} for i in range(300)], show_progress=True)
    assert "encoding: 100%" in capsys.readouterr().err
    index.add([{"input": f"more {i}"} for i in range(300)], show_progress=False)
    assert "encoding" not in capsys.readouterr().err


def test_notes_are_durable_and_travel_with_saves(tmp_path: Path) -> None:
    index = ExampleIndex.build([{"input": "a"}], HashingEncoder(8))
    assert index.notes() == {} and index.info()["notes"] == {}
    index.set_note("outputs", "the labels")
    index.save(tmp_path / "one")
    index.close()  # the saved copy holds the writer lock of "one" until closed
    loaded = ExampleIndex.load(tmp_path / "one")
    assert loaded.info()["notes"] == {"outputs": "the labels"}
    loaded.set_note("source", "ünïcode.csv")  # durable at once, no save needed
    assert ExampleIndex.load(tmp_path / "one", read_only=True).notes() == {
        "outputs": "the labels",
        "source": "ünïcode.csv",
    }
