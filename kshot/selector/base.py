"""The Selector protocol, the spec, the shared hygiene rules, and the registry.

A selector reads an index through :class:`~kshot.selector.view.IndexView` and, for each query,
returns at most ``k`` examples ranked best-first. It never mutates the index. Every selector
honours the same rules:

- filters apply before the top-k cut, so a filtered request returns ``k`` whenever ``k`` match;
- ids in ``exclude`` never come back;
- an example whose input equals the query (after :func:`~kshot.index.normalize_text`: case,
  whitespace and punctuation folded) never comes back, nor do two examples with the same input;
- with ``dedupe_threshold`` set, neither do near-duplicates by embedding, of the query or of each
  other, dropped before the top-k cut;
- ties break by insertion order (earlier first), so results are deterministic.

Parameters are typed (:mod:`kshot.selector.params`); the API, HTTP and CLI build selectors from
the same :class:`SelectorSpec` through :func:`build_selector`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from kshot._ranking import check_k
from kshot.errors import ConfigError, QueryError, UnknownSelectorError
from kshot.selector.fetch import Fetch
from kshot.selector.params import SelectorParams
from kshot.selector.view import HasView, IndexView, view_of
from kshot.types import Filter, Mask, Scored

__all__ = [
    "BaseSelector",
    "Ranking",
    "Selector",
    "SelectorSpec",
    "available_selectors",
    "build_selector",
    "register",
    "selector_class",
]


@dataclass(frozen=True)
class Ranking:
    """One query's ranked slots, best first, and their scores (same length)."""

    slots: tuple[int, ...]
    scores: tuple[float, ...]

    @classmethod
    def of(cls, found: Sequence[tuple[int, float]]) -> Ranking:
        """The ranking of ``(slot, score)`` pairs, best first."""
        return cls(tuple(slot for slot, _ in found), tuple(float(score) for _, score in found))


@runtime_checkable
class Selector(Protocol):
    """Picks up to k examples per query."""

    def rank_batch(self, queries: Sequence[str], k: int, mask: Mask | None) -> list[Ranking]:
        """Rank at most ``k`` slots inside ``mask`` per query, hygiene applied.

        The slot-level answer :meth:`select_batch` builds on, for selectors that compose others:
        call it inside the index view's ``reading()``, with checked queries.
        """
        ...

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
    """Shared machinery: parameter validation, query checks, and the hygiene rules.

    A strategy subclass sets ``Params`` (its :class:`~kshot.selector.params.SelectorParams`
    subclass), narrows the ``params`` annotation to it, and implements :meth:`_pick` (or, to
    compose other selectors through their public interface, :meth:`rank_batch`).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[SelectorParams]] = SelectorParams
    params: SelectorParams

    def __init__(
        self, index: IndexView | HasView, params: SelectorParams | Mapping[str, Any] | None = None
    ) -> None:
        self.index = view_of(index)
        if isinstance(params, SelectorParams):
            if type(params) is not self.Params:
                raise ConfigError(
                    f"selector {self.name!r} takes {self.Params.__name__}, "
                    f"got {type(params).__name__}"
                )
            self.params = params
        elif params is None or (isinstance(params, Mapping) and not params):
            # Parameters are frozen, so one default object serves every selector built per call.
            self.params = _default_params(self.Params)
        else:
            self.params = self.Params.from_mapping(params, selector=self.name)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """Name, description and parameter schemas, for ``kshot selectors`` and HTTP."""
        return {
            "name": cls.name,
            "description": cls.description,
            "params": {p.name: p.schema() for p in cls.Params.fields()},
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
        k = check_k(k)
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
            rankings = self.rank_batch(queries, k, mask)
            # One store read for the whole batch, then split per query.
            examples = iter(self.index.examples_at([s for r in rankings for s in r.slots]))
            return [[Scored(next(examples), score) for score in r.scores] for r in rankings]

    def rank_batch(self, queries: Sequence[str], k: int, mask: Mask | None) -> list[Ranking]:
        """Rank at most ``k`` slots inside ``mask`` per query, best first, hygiene applied.

        :meth:`select_batch` is this plus the store read of the examples; a selector composing
        another ranks through this (inside ``self.index.reading()``, with checked queries), so
        that it reads only the examples it returns.
        """
        return [Ranking.of(found) for found in self._pick(list(queries), check_k(k), mask)]

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        """Return ``(slot, score)`` pairs per query, best first, hygiene applied."""
        raise NotImplementedError

    # -- hygiene ---------------------------------------------------------------------------------
    def banned_slots(self, query: str) -> set[int]:
        """Slots whose input equals the query: never returned, to prevent leakage."""
        return set(self.index.slots_matching_text(query))

    def dedupe_vectors(
        self, queries: list[str], vectors: npt.NDArray[np.float32] | None = None
    ) -> npt.NDArray[np.float32] | None:
        """The query vectors :meth:`clean` needs: ``None`` while ``dedupe_threshold`` is off.

        Pass the vectors a strategy already has, so that they are not encoded twice.
        """
        if self.params.dedupe_threshold is None:
            return None
        return self.index.encode_queries(queries) if vectors is None else vectors

    def clean(
        self,
        query: str,
        ranked: Iterable[tuple[int, float]],
        k: int,
        query_vector: npt.NDArray[np.float32] | None = None,
    ) -> list[tuple[int, float]]:
        """Keep the first ``k`` candidates that are neither the query nor a repeated input.

        With ``dedupe_threshold`` set and ``query_vector`` given (see :meth:`dedupe_vectors`), a
        candidate whose embedding is that similar to the query's or to a kept one's is a
        near-duplicate and is skipped too.
        """
        banned = self.banned_slots(query)
        threshold = self.params.dedupe_threshold
        seen_texts: set[int] = set()
        kept: list[tuple[int, float]] = []
        kept_vectors: list[npt.NDArray[np.float32]] = []
        for slot, score in ranked:
            if slot < 0 or slot in banned:
                continue
            text = self.index.slot_text_code(slot)
            if text in seen_texts:
                continue
            if threshold is not None and query_vector is not None:
                vector = self.index.slot_vectors([slot])[0]
                if float(vector @ query_vector) >= threshold or any(
                    float(vector @ other) >= threshold for other in kept_vectors
                ):
                    continue
                kept_vectors.append(vector)
            seen_texts.add(text)
            kept.append((slot, score))
            if len(kept) == k:
                break
        return kept

    def ranked_with_refill(
        self,
        queries: list[str],
        k: int,
        fetch: Fetch,
        available: int,
        vectors: npt.NDArray[np.float32] | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Fetch top candidates for all queries, widening the fetch until hygiene leaves ``k``.

        ``fetch(n)`` returns ``(scores, slots)`` of shape ``(len(queries), n)`` with ``-1`` slots
        for padding; ``available`` bounds how many candidates can exist at all; ``vectors`` are
        the query vectors when the strategy has them (for the near-duplicate check).
        """
        if available <= 0:
            return [[] for _ in queries]
        dedupe = self.dedupe_vectors(queries, vectors)
        want = min(available, k + max(4, k // 2))
        while True:
            scores, slots = fetch(want)
            picks = [
                self.clean(
                    q,
                    zip(slots[i].tolist(), scores[i].tolist(), strict=True),
                    k,
                    None if dedupe is None else dedupe[i],
                )
                for i, q in enumerate(queries)
            ]
            lacking = [i for i, p in enumerate(picks) if len(p) < k]
            # A padded row means the index returned everything it can reach for that query (an
            # approximate index may reach fewer than `available`): asking for more cannot help.
            reached_all = all((slots[i] < 0).any() for i in lacking)
            if not lacking or reached_all or want >= available:
                return picks
            want = min(available, want * 4)


_DEFAULTS: dict[type[SelectorParams], SelectorParams] = {}


def _default_params(cls: type[SelectorParams]) -> SelectorParams:
    found = _DEFAULTS.get(cls)
    if found is None:
        found = _DEFAULTS[cls] = cls()
    return found


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
    """Registered selectors by name, sorted (the built-ins register when kshot.selector loads)."""
    return dict(sorted(_REGISTRY.items()))


def selector_class(name: str) -> type[BaseSelector]:
    """The class registered under ``name``; unknown names raise with the list of known ones."""
    known = available_selectors()
    if name not in known:
        raise UnknownSelectorError(
            f"unknown selector {name!r}; known selectors: {', '.join(known)}"
        )
    return known[name]


def build_selector(
    index: IndexView | HasView,
    spec: SelectorSpec | str,
    params: SelectorParams | Mapping[str, Any] | None = None,
) -> BaseSelector:
    """Build a selector over ``index`` from a spec, or from a name and its parameters.

    ``index`` is an :class:`~kshot.index.ExampleIndex` (the selector reads its ``view``) or any
    :class:`~kshot.selector.view.IndexView`.

    ``params`` is a mapping (``{"lambda": 0.3}``) or the selector's typed parameters object
    (``MMRParams(lambda_=0.3)``); with a spec, a mapping is merged over the spec's parameters.
    """
    if isinstance(spec, str):
        return selector_class(spec)(index, params)
    if params is None:
        return selector_class(spec.name)(index, spec.params)
    if isinstance(params, SelectorParams):
        return selector_class(spec.name)(index, params)
    return selector_class(spec.name)(index, {**spec.params, **params})
