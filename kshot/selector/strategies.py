"""Imports every built-in strategy so that its ``@register`` runs (see the package's import)."""

import kshot.selector.balanced
import kshot.selector.coverage
import kshot.selector.dpp
import kshot.selector.hybrid
import kshot.selector.lexical
import kshot.selector.mmr
import kshot.selector.randomized
import kshot.selector.similarity  # noqa: F401
