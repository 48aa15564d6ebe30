"""Filters on ``label`` and metadata fields, resolved to masks over index slots.

A filter maps a field to one value (equality) or to a list, tuple or set of values (membership);
all entries must hold. ``label`` means the example's label; any other key names a top-level
metadata field. Values compare by their JSON form, so ``1`` and ``"1"`` differ.

A filter value is a string, a finite number or a boolean (a ``label`` value: a string), or a list
of them. Anything else (null, a nested list, an object, NaN) is refused with a
:class:`~kshot.errors.FilterError` that names the field, since it could never match and a silent
empty answer hides the mistake. For the same reason a value of a kind the field never holds
(``true`` on a field of strings) is refused by :func:`check_value_kinds`.
"""

from __future__ import annotations

import functools
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kshot.errors import FilterError

__all__ = ["LABEL_FIELD", "check_value_kinds", "filter_values", "normalize_text", "value_key"]

LABEL_FIELD = "label"


def normalize_text(text: str) -> str:
    """The form in which two inputs count as the same text.

    NFKC, case-folded, punctuation turned into spaces, spaces folded: ``"My card hasn't
    arrived."`` and ``"my card hasn't  arrived"`` are the same text. Punctuation becomes a space
    rather than nothing so that ``"well-known"`` matches ``"well known"``.
    """
    if text.isascii():
        # The same steps on ASCII, at a third of the cost (an index build codes every input):
        # NFKC leaves ASCII as it is, case folding is lower-casing there, and a byte table turns
        # punctuation into spaces. It also turns the separators U+001C..U+001F into spaces,
        # since str.split counts them as spaces and bytes.split does not.
        return b" ".join(text.lower().encode().translate(_ASCII_TO_SPACE).split()).decode()
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
_ASCII_TO_SPACE = bytes(
    0x20 if unicodedata.category(chr(c)).startswith("P") or 0x1C <= c <= 0x1F else c
    for c in range(256)
)


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


def _kind(value: Any) -> str:
    """The JSON kind of a filter value, as the error messages name it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "list"
    return type(value).__name__


def _check_value(field: str, value: Any) -> None:
    accepted = "a string" if field == LABEL_FIELD else "a string, a number or a boolean"
    kind = _kind(value)
    if field == LABEL_FIELD:
        ok = kind == "string"
    else:
        ok = kind in {"string", "boolean"} or (kind == "number" and math.isfinite(value))
    if not ok:
        finite = kind != "number" or math.isfinite(value)
        shown = (
            "NaN or infinity" if not finite else "null" if value is None else f"{kind} {value!r}"
        )
        raise FilterError(
            f"filter on {field!r}: a value must be {accepted}, or a list of them; got {shown}",
            field=field,
            value=value,
        )


def filter_values(filter: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """Normalise a filter into ``field -> accepted values``; malformed filters raise."""
    if filter is None:
        return {}
    if not isinstance(filter, Mapping):
        raise FilterError(
            f"a filter must map fields to values, got {type(filter).__name__}; "
            'example: {"label": "card_arrival"} or {"label": ["a", "b"]}',
            value=filter,
        )
    out: dict[str, list[Any]] = {}
    for field, wanted in filter.items():
        if not isinstance(field, str) or not field:
            raise FilterError(
                f"filter field names must be non-empty strings, got {field!r}", value=field
            )
        if isinstance(wanted, (list, tuple, set, frozenset)):
            for value in wanted:
                _check_value(field, value)
            values: Sequence[Any] = sorted(wanted, key=value_key)
        else:
            _check_value(field, wanted)
            values = [wanted]
        out[field] = list(values)
    return out


def _key_kind(key: str) -> str:
    # A value key is JSON text, so its first character tells its kind.
    first = key[:1]
    if first == '"':
        return "string"
    if first in "tf":
        return "boolean"
    if first == "n":
        return "null"
    if first == "[":
        return "list"
    if first == "{":
        return "object"
    return "number"


def check_value_kinds(field: str, values: Sequence[Any], keys: Iterable[str]) -> None:
    """Refuse filter ``values`` of a kind that a field (its value keys: ``keys``) never holds.

    Call it when the values matched nothing: a filter of the right kind that matches nothing is a
    legitimate empty answer, one of the wrong kind (``true`` or ``5`` where the field holds
    strings) is a mistake to name.
    """
    held = {_key_kind(key) for key in keys}
    wrong = [value for value in values if _kind(value) not in held]
    if wrong:
        raise FilterError(
            f"filter on {field!r}: {wrong[0]!r} is a {_kind(wrong[0])}, but the field holds only "
            f"{' and '.join(sorted(held))} values; send one of those",
            field=field,
            value=wrong[0],
        )
