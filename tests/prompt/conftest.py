"""Fixtures of the prompt tests: the real SmolLM2 tokenizer, loaded once."""

from __future__ import annotations

import pytest

from kshot.prompt import HFTokenCounter, smollm2_tokenizer


@pytest.fixture(scope="session")
def smollm2_counter() -> HFTokenCounter:
    """A counter with the bundled SmolLM2 tokenizer (from kshot's cache after the first run)."""
    return HFTokenCounter(smollm2_tokenizer())
