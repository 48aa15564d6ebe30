"""Imports every built-in strategy so that its ``@register`` runs."""

from kshot.selector import balanced, lexical, mmr, randomized, similarity

__all__ = ["balanced", "lexical", "mmr", "randomized", "similarity"]
