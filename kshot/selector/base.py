"""The Selector protocol, selector parameters, and the registry shared by API, HTTP and CLI.

A selector reads an :class:`~kshot.index.ExampleIndex` and, for each query, returns at most ``k``
examples ranked best-first. It never mutates the index. Every selector honours the same rules:

- filters apply before the top-k cut, so a filtered request returns ``k`` whenever ``k`` match;
- ids in ``exclude`` never come back;
- an example whose input equals the query (after :func:`~kshot.index.normalize_text`) never comes
  back, nor do two examples with the same input;
- ties break by insertion order (earlier first), so results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from kshot.errors import ConfigError, QueryError, UnknownSelectorError
from kshot.index.filters import normalize_text
from kshot.types import Filter, Scored

if TYPE_CHECKING:
    from kshot.index.example_index import ExampleIndex, Mask

__all__ = [
    "BaseSelector",
    "Param",
    "Selector",
    "SelectorSpec",
    "available_selectors",
    "build_selector",
    "register",
    "selector_class",
]


@runtime_checkable
class Selector(Protocol):
    """Picks up to k examples per query."""

    def select(
        self, query: str, k: int, *, filter: Filter | None = None, exclude: Iterable[str] = ()
    ) -> list[Scored]:
        """Return at most ``k`` examples for ``query``, best first."""
        ...

    def select_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Filter | None = None,
        exclude: Iterable[str] = (),
    ) -> list[list[Scored]]:
        """Return :meth:`select`'s answer for each query, computed in one vectorised pass."""
        ...


@dataclass(frozen=True)
class Param:
    """One parameter of a selector: its type, default, range and meaning."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def coerce(self, selector: str, value: Any) -> Any:
        """Convert ``value`` (possibly a CLI string) to this parameter's type and check range."""
        where = f"selector {selector!r} parameter {self.name!r}"
        try:
            converted = _convert(self.kind, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{where} must be {self.kind.__name__}, got {value!r}; {self.describe_range()}"
            ) from exc
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ConfigError(f"{where} must be finite, got {value!r}; {self.describe_range()}")
        if self.minimum is not None and converted < self.minimum:
            raise ConfigError(f"{where} is {converted!r}; {self.describe_range()}")
        if self.maximum is not None and converted > self.maximum:
            raise ConfigError(f"{where} is {converted!r}; {self.describe_range()}")
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(f"{where} is {converted!r}; {self.describe_range()}")
        return converted

    def describe_range(self) -> str:
        """The valid values in words."""
        if self.choices is not None:
            return f"valid values: {', '.join(self.choices)}"
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        if self.kind in (int, float):
            return f"valid range: [{low}, {high}]"
        return f"expected a {self.kind.__name__}"

    def schema(self) -> dict[str, Any]:
        """A JSON-schema-like description, for ``kshot selectors`` and ``GET /v1/selectors``."""
        names = {int: "integer", float: "number", str: "string", bool: "boolean", list: "array"}
        out: dict[str, Any] = {
            "type": names.get(self.kind, self.kind.__name__),
            "default": self.default,
            "description": self.help,
        }
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["enum"] = list(self.choices)
        return out


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    raise TypeError(kind)


@dataclass(frozen=True)
class SelectorSpec:
    """A selector by registered name plus its parameters, as API, HTTP and CLI give it.

    The spec only carries the request; names and parameters are validated when a selector is
    built from it (:func:`build_selector`), against the index it will read.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a selector name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.params, Mapping):
            raise ConfigError(
                f"selector {self.name!r} parameters must be a mapping of name to value, "
                f"got {type(self.params).__name__}"
            )
        bad = [key for key in self.params if not isinstance(key, str)]
        if bad:
            raise ConfigError(f"selector {self.name!r} parameter names must be strings: {bad!r}")
        # A private copy, so that the caller mutating their dict cannot change the spec.
        object.__setattr__(self, "params", dict(self.params))


class BaseSelector:
    """Shared machinery: parameter validation, query checks, and the hygiene rules."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, index: ExampleIndex, **params: Any) -> None:
        self.index = index
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ConfigError(
                f"selector {self.name!r} has no parameter {unknown[0]!r}; valid parameters: {valid}"
            )
        self.config: dict[str, Any] = {
            p.name: p.coerce(self.name, params[p.name]) if p.name in params else copy(p.default)
            for p in self.params
        }

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """Name, description and parameter schemas, for ``kshot selectors`` and HTTP."""
        return {
            "name": cls.name,
            "description": cls.description,
            "params": {p.name: p.schema() for p in cls.params},
        }

    def select(
        self, query: str, k: int, *, filter: Filter | None = None, exclude: Iterable[str] = ()
    ) -> list[Scored]:
        """Return at most ``k`` examples for ``query``, best first."""
        return self.select_batch([query], k, filter=filter, exclude=exclude)[0]

    def select_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        filter: Filter | None = None,
        exclude: Iterable[str] = (),
    ) -> list[list[Scored]]:
        """Answer many queries at once; equals calling :meth:`select` on each."""
        check_k(k)
        queries = list(queries)
        for position, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise QueryError(
                    f"query {position} is empty or whitespace only; give some text to select for"
                )
        if not queries:
            return []
        # A lone id string is one id, not an iterable of one-character ids.
        excluded = [exclude] if isinstance(exclude, str) else list(exclude)
        with self.index.reading():
            mask = self.index.resolve(filter, excluded)
            picks = self._pick(queries, int(k), mask)
            return self._to_scored(picks)

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        """Return ``(slot, score)`` pairs per query, best first, hygiene applied."""
        raise NotImplementedError

    def _to_scored(self, picks: list[list[tuple[int, float]]]) -> list[list[Scored]]:
        # One store read for the whole batch, then split per query.
        examples = iter(self.index.examples_at([slot for found in picks for slot, _ in found]))
        return [[Scored(next(examples), float(score)) for _, score in found] for found in picks]

    # -- hygiene ---------------------------------------------------------------------------------
    def banned_slots(self, query: str) -> set[int]:
        """Slots whose input equals the query: never returned, to prevent leakage."""
        return set(self.index.slots_matching_text(query))

    def clean(
        self, query: str, ranked: Iterable[tuple[int, float]], k: int
    ) -> list[tuple[int, float]]:
        """Keep the first ``k`` candidates that are neither the query nor a repeated input."""
        banned = self.banned_slots(query)
        seen_texts: set[str] = set()
        kept: list[tuple[int, float]] = []
        for slot, score in ranked:
            if slot < 0 or slot in banned:
                continue
            text = normalize_text(self.index.slot_text(slot))
            if text in seen_texts:
                continue
            seen_texts.add(text)
            kept.append((slot, score))
            if len(kept) == k:
                break
        return kept

    def ranked_with_refill(
        self,
        queries: list[str],
        k: int,
        fetch: Callable[[int], tuple[npt.NDArray[Any], npt.NDArray[np.int64]]],
        available: int,
    ) -> list[list[tuple[int, float]]]:
        """Fetch top candidates for all queries, widening the fetch until hygiene leaves ``k``.

        ``fetch(n)`` returns ``(scores, slots)`` of shape ``(len(queries), n)`` with ``-1`` slots
        for padding; ``available`` bounds how many candidates can exist at all.
        """
        if available <= 0:
            return [[] for _ in queries]
        want = min(available, k + max(4, k // 2))
        while True:
            scores, slots = fetch(want)
            picks = [
                self.clean(q, zip(slots[i].tolist(), scores[i].tolist(), strict=True), k)
                for i, q in enumerate(queries)
            ]
            lacking = [i for i, p in enumerate(picks) if len(p) < k]
            # A padded row means the index returned everything it can reach for that query (an
            # approximate index may reach fewer than `available`): asking for more cannot help.
            reached_all = all((slots[i] < 0).any() for i in lacking)
            if not lacking or reached_all or want >= available:
                return picks
            want = min(available, want * 4)


def check_k(k: int) -> None:
    """Refuse k below 1 with a clear message."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise QueryError(f"k must be a whole number of at least 1, got {k!r}")


_SelectorClass = TypeVar("_SelectorClass", bound=type[BaseSelector])
_REGISTRY: dict[str, type[BaseSelector]] = {}


def register(name: str) -> Callable[[_SelectorClass], _SelectorClass]:
    """Class decorator: make a selector available under ``name``."""

    def decorate(cls: _SelectorClass) -> _SelectorClass:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"a selector named {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_selectors() -> dict[str, type[BaseSelector]]:
    """Registered selectors by name, sorted."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def selector_class(name: str) -> type[BaseSelector]:
    """The class registered under ``name``; unknown names raise with the list of known ones."""
    known = available_selectors()
    if name not in known:
        raise UnknownSelectorError(
            f"unknown selector {name!r}; known selectors: {', '.join(known)}"
        )
    return known[name]


def build_selector(index: ExampleIndex, spec: SelectorSpec | str, **params: Any) -> BaseSelector:
    """Build a selector over ``index`` from a spec or a name plus parameters."""
    if isinstance(spec, str):
        spec = SelectorSpec(spec, params)
    elif params:
        spec = SelectorSpec(spec.name, {**spec.params, **params})
    return selector_class(spec.name)(index, **dict(spec.params))


def _load_builtin() -> None:
    # Importing the strategy modules runs their @register decorators.
    from kshot.selector import strategies  # noqa: F401
