"""Fixtures of the model tests: the bundled SmolLM2 model, loaded once per session."""

from __future__ import annotations

import pytest

from kshot.model import TransformersLM


@pytest.fixture(scope="session")
def smollm2_lm() -> TransformersLM:
    """The bundled SmolLM2-135M-Instruct on the CPU (float32), from kshot's model cache."""
    return TransformersLM(device="cpu")
