"""kshot: dynamic in-context example selection.

For every query, pick the k solved examples that help a language model most, and assemble the
prompt. The public API is listed in ``__all__``; everything else is private.

It holds what a caller writes or passes in: the calls of :mod:`kshot.api` (sync and async), the
values (:class:`Example`, :class:`Scored`, :class:`Prompt`), the protocols a caller implements to
pass in its own encoder or token counter (:class:`Encoder`, :class:`TokenCounter`), each
selector's typed parameters, and every error class. One helper meant for tests stays public on
purpose: :class:`HashingEncoder`, a deterministic encoder with no model, lets users' own tests
build real indexes in milliseconds, as httpx ships ``MockTransport`` for its users' tests.
"""

from kshot._version import __version__
from kshot.api import (
    aassemble,
    aselect,
    aselect_batch,
    assemble,
    build_index,
    build_prompt,
    load_index,
    select,
    select_batch,
)
from kshot.errors import (
    BudgetError,
    ConfigError,
    DataError,
    DatasetError,
    EncoderMismatchError,
    FilterError,
    IndexFormatError,
    IndexLockedError,
    KshotError,
    MissingDependencyError,
    ModelError,
    NotFoundError,
    QueryError,
    ReadOnlyError,
    RemoteError,
    TemplateError,
    UnknownSelectorError,
)
from kshot.index import Encoder, ExampleIndex, HashingEncoder, SentenceTransformerEncoder
from kshot.prompt import Order, PromptAssembler, PromptTemplate, TokenCounter
from kshot.selector import (
    BalancedParams,
    CoverageParams,
    DPPParams,
    HybridParams,
    MMRParams,
    RandomParams,
    SelectorParams,
    SelectorSpec,
    available_selectors,
    build_selector,
    register,
)
from kshot.types import Example, Prompt, Scored

__all__ = [
    "BalancedParams",
    "BudgetError",
    "ConfigError",
    "CoverageParams",
    "DPPParams",
    "DataError",
    "DatasetError",
    "Encoder",
    "EncoderMismatchError",
    "Example",
    "ExampleIndex",
    "FilterError",
    "HashingEncoder",
    "HybridParams",
    "IndexFormatError",
    "IndexLockedError",
    "KshotError",
    "MMRParams",
    "MissingDependencyError",
    "ModelError",
    "NotFoundError",
    "Order",
    "Prompt",
    "PromptAssembler",
    "PromptTemplate",
    "QueryError",
    "RandomParams",
    "ReadOnlyError",
    "RemoteError",
    "Scored",
    "SelectorParams",
    "SelectorSpec",
    "SentenceTransformerEncoder",
    "TemplateError",
    "TokenCounter",
    "UnknownSelectorError",
    "__version__",
    "aassemble",
    "aselect",
    "aselect_batch",
    "assemble",
    "available_selectors",
    "build_index",
    "build_prompt",
    "build_selector",
    "load_index",
    "register",
    "select",
    "select_batch",
]
