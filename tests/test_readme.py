"""The README's Python example runs, and runs again in the same directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kshot.index.encoder import SentenceTransformerEncoder
from kshot.types import Example

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's Python section has no python block"
    return found.group(1)


def test_the_python_example_reruns(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    banking_train: list[Example],
    minilm: SentenceTransformerEncoder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A slice of BANKING77 with the labels the example filters on keeps the embedding short;
    # the session's MiniLM stands in for loading the same model again.
    wanted = {"card_arrival", "card_delivery_estimate", "lost_or_stolen_card"}
    subset = [ex for ex in banking_train if ex.label in wanted][:90]
    built: list[int] = []

    def load_dataset(name: str, split: str) -> list[Example]:
        assert (name, split) == ("banking77", "train")
        built.append(1)
        return subset

    def encoder(*_: Any, **__: Any) -> SentenceTransformerEncoder:
        return minilm

    monkeypatch.setattr("kshot.data.load_dataset", load_dataset)
    monkeypatch.setattr("kshot.api.SentenceTransformerEncoder", encoder)
    monkeypatch.setattr("kshot.index.example_index.encoder_from_name", encoder)
    monkeypatch.chdir(tmp_path)
    code = compile(python_example(), str(README), "exec")

    exec(code, {"__name__": "readme_run_1"})
    first = capsys.readouterr().out
    exec(code, {"__name__": "readme_run_2"})  # before the fix: "banking-index already exists"
    second = capsys.readouterr().out

    assert (tmp_path / "banking-index" / "manifest.json").is_file()
    assert built == [1]  # the rerun loaded the index instead of building it again
    assert first == second and "my card still hasn't arrived" in first
