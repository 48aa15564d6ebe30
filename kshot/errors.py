"""Errors raised by kshot.

Every error derives from :class:`KshotError`, and each also derives from the builtin it means, so
callers who catch ``ValueError`` or ``KeyError`` keep working. Messages name the bad value and say
how to fix it. The HTTP layer maps each class to exactly one status code.

Where an error is about one input, it also carries that input as data, as httpx errors carry their
request: ``field`` (the parameter, filter field or column at fault), ``value`` (what was given)
and ``valid`` (the accepted values, when they can be listed). The server builds its JSON error
body from these attributes and the class, never by reading the message.

::

    KshotError
    ├── ConfigError (ValueError)          a parameter or setting is out of range or unknown
    │   ├── UnknownSelectorError          no selector registered under that name
    │   ├── FilterError                   a filter names a field no example has, or is malformed
    │   └── TemplateError                 a template uses an unknown field or forbidden syntax
    ├── DataError (ValueError)            a corpus row is missing a field, duplicates an id, ...
    ├── QueryError (ValueError)           an empty / whitespace query, k < 1
    ├── BudgetError (ValueError)          the query alone does not fit the token budget
    ├── NotFoundError (KeyError)          an example id that the index does not hold
    ├── IndexFormatError (ValueError)     a directory that is not a kshot index, or a broken one
    │   └── EncoderMismatchError          an index built with another encoder or dimension
    ├── IndexLockedError (RuntimeError)   another writer holds the index directory's lock
    ├── ReadOnlyError (PermissionError)   a write to an index opened read-only
    ├── DatasetError (RuntimeError)       a data set could not be fetched or verified
    ├── ModelError (RuntimeError)         a language model backend failed
    ├── RemoteError (RuntimeError)        a kshot server could not be reached or refused a call
    └── MissingDependencyError (ImportError)  an optional extra is not installed
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "BudgetError",
    "ConfigError",
    "DataError",
    "DatasetError",
    "EncoderMismatchError",
    "FilterError",
    "IndexFormatError",
    "IndexLockedError",
    "KshotError",
    "MissingDependencyError",
    "ModelError",
    "NotFoundError",
    "QueryError",
    "ReadOnlyError",
    "RemoteError",
    "TemplateError",
    "UnknownSelectorError",
]


class KshotError(Exception):
    """Base class of every error kshot raises on purpose.

    ``field``, ``value`` and ``valid`` are the context of the error when it concerns one input
    (all ``None`` otherwise); ``valid`` is a tuple of the accepted values.
    """

    field: str | None
    value: Any
    valid: tuple[Any, ...] | None

    def __init__(
        self,
        message: str = "",
        *,
        field: str | None = None,
        value: Any = None,
        valid: Iterable[Any] | None = None,
    ) -> None:
        """Keep ``message`` as the only argument (``str(exc)``) and the context as attributes."""
        super().__init__(message)
        self.field = field
        self.value = value
        self.valid = None if valid is None else tuple(valid)


class ConfigError(KshotError, ValueError):
    """A parameter or setting is unknown or out of range."""


class UnknownSelectorError(ConfigError):
    """No selector is registered under the requested name."""


class FilterError(ConfigError):
    """A filter is malformed or names a field that no example has."""


class TemplateError(ConfigError):
    """A template uses an unknown field or syntax other than plain named fields."""


class DataError(KshotError, ValueError):
    """A corpus row is invalid: a missing field, a duplicate id, an empty corpus."""


class QueryError(KshotError, ValueError):
    """A query cannot be answered as given: empty text, k below 1."""


class BudgetError(KshotError, ValueError):
    """The token budget cannot hold even the query and the fixed parts of the prompt."""


class NotFoundError(KshotError, KeyError):
    """An example id that the index does not hold."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class IndexFormatError(KshotError, ValueError):
    """A directory that is not a kshot index, or whose files are broken beyond repair."""


class EncoderMismatchError(IndexFormatError):
    """The index was built with another encoder (name or dimension) than the one requested."""


class IndexLockedError(KshotError, RuntimeError):
    """Another writer (process or object) holds the index directory's writer lock."""


class ReadOnlyError(KshotError, PermissionError):
    """A write to an index opened read-only."""


class DatasetError(KshotError, RuntimeError):
    """A data set could not be fetched, verified or parsed."""


class ModelError(KshotError, RuntimeError):
    """A language model backend failed to load or to answer."""


class RemoteError(KshotError, RuntimeError):
    """A kshot server could not be reached, or refused or failed a request; the message says why."""


class MissingDependencyError(KshotError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def missing_extra(package: str, extra: str) -> MissingDependencyError:
    """Build the error for a missing optional dependency, with the install hint."""
    return MissingDependencyError(
        f"{package!r} is not installed; install it with: pip install 'kshot[{extra}]'"
    )
