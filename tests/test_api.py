"""kshot.api.build_index: overwriting an index directory, progress bars."""

from __future__ import annotations

from pathlib import Path

import pytest

from kshot import ExampleIndex, HashingEncoder, build_index, load_index
from kshot.errors import ConfigError, DataError


def rows(n: int, word: str = "row") -> list[dict[str, str]]:
    return [{"input": f"{word} number {i}", "label": word} for i in range(n)]


def test_an_existing_index_is_refused_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(rows(3), path, encoder=HashingEncoder(16)).close()  # releases its writer lock
    with pytest.raises(ConfigError, match="already exists"):
        build_index(rows(5), path, encoder=HashingEncoder(16))
    index = build_index(rows(5, "new"), path, encoder=HashingEncoder(16), overwrite=True)
    assert index.path == path and len(index) == 5
    assert load_index(path, read_only=True).labels() == {"new": 5}


def test_overwrite_builds_a_new_directory_too(tmp_path: Path) -> None:
    index = build_index(rows(2), tmp_path / "fresh", encoder=HashingEncoder(16), overwrite=True)
    assert len(ExampleIndex.load(tmp_path / "fresh", read_only=True)) == len(index) == 2


def test_a_failed_overwrite_leaves_the_old_index(tmp_path: Path) -> None:
    path = tmp_path / "idx"
    build_index(rows(3), path, encoder=HashingEncoder(16)).close()
    with pytest.raises(DataError, match="empty"):
        build_index([], path, encoder=HashingEncoder(16), overwrite=True)
    assert len(load_index(path)) == 3


def test_show_progress(capsys: pytest.CaptureFixture[str]) -> None:
    build_index(rows(300), encoder=HashingEncoder(16), show_progress=True)
    assert "encoding: 100%" in capsys.readouterr().err
    build_index(rows(300), encoder=HashingEncoder(16), show_progress=False)
    assert "encoding" not in capsys.readouterr().err
