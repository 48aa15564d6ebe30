from __future__ import annotations

import numpy as np
import pytest
import torch

from kshot.errors import ConfigError
from kshot.index.encoder import (
    DEFAULT_MODEL,
    Encoder,
    HashingEncoder,
    SentenceTransformerEncoder,
    encoder_from_name,
    resolve_device,
)


def test_resolve_device_auto_picks_the_best_available() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto") == expected
    assert resolve_device() == expected


def test_resolve_device_keeps_explicit_names() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_resolve_device_auto_is_cpu_without_accelerators() -> None:
    assert resolve_device("auto") == "cpu"


def test_hashing_encoder_shape_dtype_and_unit_norm(hashing_encoder: HashingEncoder) -> None:
    texts = ["hello world", "Hello, World!", "a completely different sentence", "x"]
    out = hashing_encoder.encode(texts)
    assert out.shape == (4, 64)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    # Case and punctuation do not matter; different texts land elsewhere.
    np.testing.assert_allclose(out[0], out[1])
    assert float(out[0] @ out[2]) < 0.99


def test_hashing_encoder_is_deterministic_across_instances() -> None:
    texts = ["card arrival", "top up failed", "ünïcödé text"]
    first = HashingEncoder(32).encode(texts)
    second = HashingEncoder(32).encode(list(reversed(texts)))[::-1]
    np.testing.assert_array_equal(first, second)
    # Pinned value: the hash is blake2b, not Python's per-process salted hash().
    pinned = np.array([[-2, 0, 2, 1, 0, -1, 0, -1]], np.float32) / np.sqrt(11)
    np.testing.assert_allclose(HashingEncoder(8).encode(["card arrival"]), pinned, rtol=1e-6)


def test_hashing_encoder_text_without_words_gets_a_unit_vector() -> None:
    out = HashingEncoder(16).encode(["?!", "   "])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0)


def test_hashing_encoder_empty_batch() -> None:
    assert HashingEncoder(16).encode([]).shape == (0, 16)


def test_hashing_encoder_rejects_tiny_dim() -> None:
    with pytest.raises(ConfigError, match="at least 2, got 1"):
        HashingEncoder(1)


def test_hashing_name_round_trips_through_encoder_from_name() -> None:
    encoder = encoder_from_name("hashing:48")
    assert isinstance(encoder, HashingEncoder)
    assert encoder.dim == 48
    assert encoder.name == "hashing:48"
    assert isinstance(encoder, Encoder)


def test_encoder_from_name_rejects_a_bad_hashing_name() -> None:
    with pytest.raises(ConfigError, match="hashing:abc"):
        encoder_from_name("hashing:abc")


# -- the real model -------------------------------------------------------------------------------


def test_minilm_loads_from_the_bundled_package(minilm: SentenceTransformerEncoder) -> None:
    assert minilm.name == DEFAULT_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.dim == 384
    assert minilm.device == "cpu"
    assert isinstance(minilm, Encoder)


def test_minilm_output_is_unit_norm_float32(minilm: SentenceTransformerEncoder) -> None:
    texts = ["How do I reset my PIN?", "My card has not arrived", "What is the exchange rate?"]
    out = minilm.encode(texts, batch_size=2)
    assert out.shape == (3, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_minilm_embeddings_are_semantic(minilm: SentenceTransformerEncoder) -> None:
    a, b, c = minilm.encode(
        ["I forgot my card PIN", "How can I change the PIN of my card?", "The weather is sunny"]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_minilm_batch_and_single_agree(minilm: SentenceTransformerEncoder) -> None:
    texts = ["transfer pending", "card declined at the shop"]
    batch = minilm.encode(texts)
    single = np.vstack([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_minilm_query_cache_returns_identical_vectors(minilm: SentenceTransformerEncoder) -> None:
    text = "is there a fee for topping up by card? (cache test)"
    first = minilm.encode([text])
    calls = 0
    model = minilm._model
    original = model.encode

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    model.encode = counting
    try:
        second = minilm.encode([text])
    finally:
        del model.encode
    assert calls == 0, "a repeated single query should be served from the cache"
    np.testing.assert_array_equal(first, second)
    # The cache hands out copies: mutating a result does not poison later answers.
    second[0, 0] = 42.0
    np.testing.assert_array_equal(minilm.encode([text]), first)


def test_minilm_by_short_alias(minilm: SentenceTransformerEncoder) -> None:
    encoder = SentenceTransformerEncoder("all-MiniLM-L6-v2", device="cpu", query_cache_size=0)
    assert encoder.name == minilm.name
    text = ["alias check"]
    np.testing.assert_allclose(encoder.encode(text), minilm.encode(text), atol=1e-6)
