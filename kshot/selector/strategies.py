"""Imports every built-in strategy so that its ``@register`` runs."""

from kshot.selector import (
    balanced,
    coverage,
    dpp,
    hybrid,
    lexical,
    mmr,
    randomized,
    similarity,
)

__all__ = [
    "balanced",
    "coverage",
    "dpp",
    "hybrid",
    "lexical",
    "mmr",
    "randomized",
    "similarity",
]
