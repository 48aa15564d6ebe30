"""Fixtures of the index tests."""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator

import pytest


@pytest.fixture
def logged() -> Iterator[logging.handlers.BufferingHandler]:
    """Every warning kshot logs during the test, in ``.buffer`` (records)."""
    handler = logging.handlers.BufferingHandler(capacity=100_000)
    handler.setLevel(logging.WARNING)
    logging.getLogger("kshot").addHandler(handler)
    yield handler
    logging.getLogger("kshot").removeHandler(handler)
