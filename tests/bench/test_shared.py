"""The helpers every benchmark shares: the look-up encoder, the environment, scoped imports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from kshot.bench._imports import import_from
from kshot.bench.environment import capture_environment
from kshot.bench.lookup import LookupEncoder
from kshot.errors import ConfigError
from kshot.index import ExampleIndex, HashingEncoder
from kshot.types import Example


class CountingEncoder(HashingEncoder):
    """The hashing encoder, counting the texts it was asked to encode."""

    def __init__(self) -> None:
        super().__init__(32)
        self.calls: list[list[str]] = []

    def encode(self, texts, *, batch_size=64, show_progress=None):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        return super().encode(texts, batch_size=batch_size, show_progress=show_progress)


def test_lookup_encoder_encodes_each_text_once() -> None:
    inner = CountingEncoder()
    enc = LookupEncoder(inner)
    assert enc.name == inner.name and enc.dim == 32
    first = enc.encode(["a card", "a fee", "a card"])
    again = enc.encode(["a fee", "a card"])
    assert inner.calls == [["a card", "a fee"]]
    np.testing.assert_array_equal(first[[1, 0]], again)
    np.testing.assert_allclose(first, HashingEncoder(32).encode(["a card", "a fee", "a card"]))


def test_lookup_encoder_without_lookup_always_runs_the_model() -> None:
    inner = CountingEncoder()
    enc = LookupEncoder(inner)
    enc.remember(["q"])
    enc.lookup = False
    enc.encode(["q"])
    enc.encode(["q"])
    assert inner.calls == [["q"], ["q"], ["q"]]


def test_lookup_encoder_from_a_table_alone() -> None:
    vector = np.ones(4, dtype=np.float32) / 2
    enc = LookupEncoder(table={"known": vector}, name="real-model")
    assert enc.name == "real-model" and enc.dim == 4
    np.testing.assert_array_equal(enc.encode(["known"]), vector[None])
    with pytest.raises(ConfigError, match="not in the lookup table"):
        enc.encode(["unknown"])
    with pytest.raises(ConfigError, match="name"):
        LookupEncoder(table={"known": vector})
    # An index built through it records the real model's name.
    index = ExampleIndex.build([Example(input="known", output="x")], enc, show_progress=False)
    assert index.encoder.name == "real-model"


def test_environment_has_one_set_of_keys() -> None:
    env = capture_environment({"k": 4}, "cpu")
    assert set(env) == {"config", "versions", "machine", "device"}
    assert env["config"] == {"k": 4} and env["device"] == "cpu"
    versions = env["versions"]
    assert isinstance(versions, dict) and versions["numpy"] == np.__version__
    assert isinstance(env["machine"], dict) and env["machine"]["cpu_count"]


def test_import_from_leaves_the_import_path_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "kshot_bench_extra_pkg.py").write_text("VALUE = 7\n")
    before = list(sys.path)
    try:
        (module,) = import_from(str(tmp_path), "kshot_bench_extra_pkg")
        assert module.VALUE == 7
        assert sys.path == before
        with pytest.raises(ImportError):
            import_from(str(tmp_path), "kshot_bench_no_such_pkg")
        assert sys.path == before
    finally:
        sys.modules.pop("kshot_bench_extra_pkg", None)
