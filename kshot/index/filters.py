"""Filters on ``label`` and metadata fields, resolved to masks over index slots.

A filter maps a field to one value (equality) or to a list, tuple or set of values (membership);
all entries must hold. ``label`` means the example's label; any other key names a top-level
metadata field. Values compare by their JSON form, so ``1`` and ``"1"`` differ.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from kshot.errors import FilterError

__all__ = ["LABEL_FIELD", "filter_values", "normalize_text", "value_key"]

LABEL_FIELD = "label"


def normalize_text(text: str) -> str:
    """The form in which two inputs count as the same text.

    NFKC, case-folded, punctuation turned into spaces, spaces folded: ``"My card hasn't
    arrived."`` and ``"my card hasn't  arrived"`` are the same text. Punctuation becomes a space
    rather than nothing so that ``"well-known"`` matches ``"well known"``.
    """
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION_TO_SPACE)
    return " ".join(folded.split())


class _PunctuationToSpace(dict[int, int]):
    """A ``str.translate`` table mapping Unicode punctuation (categories P*) to a space.

    Filled on demand, one entry per code point seen, so that a lookup is a C dict hit after the
    first time; a full table would take seconds to build at import.
    """

    def __missing__(self, code: int) -> int:
        value = 0x20 if unicodedata.category(chr(code)).startswith("P") else code
        self[code] = value
        return value


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


def value_key(value: Any) -> str:
    """The canonical key of a metadata value (its sorted-key JSON form)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        # Corpora repeat a few metadata values across many rows: serialise each once.
        return _scalar_key(type(value).__name__, value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@functools.lru_cache(maxsize=65_536)
def _scalar_key(kind: str, value: Any) -> str:
    # `kind` is part of the cache key so that 1, 1.0 and True keep distinct keys.
    return json.dumps(value, ensure_ascii=False)


def filter_values(filter: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """Normalise a filter into ``field -> accepted values``; malformed filters raise."""
    if filter is None:
        return {}
    if not isinstance(filter, Mapping):
        raise FilterError(
            f"a filter must map fields to values, got {type(filter).__name__}; "
            'example: {"label": "card_arrival"} or {"label": ["a", "b"]}'
        )
    out: dict[str, list[Any]] = {}
    for field, wanted in filter.items():
        if not isinstance(field, str) or not field:
            raise FilterError(f"filter field names must be non-empty strings, got {field!r}")
        if isinstance(wanted, (list, tuple, set, frozenset)):
            values: Sequence[Any] = sorted(wanted, key=value_key)
        elif isinstance(wanted, Mapping):
            raise FilterError(
                f"filter on {field!r}: a value must be a JSON scalar or a list of them, "
                f"got an object {dict(wanted)!r}"
            )
        else:
            values = [wanted]
        out[field] = list(values)
    return out
