"""kshot: dynamic in-context example selection.

For every query, pick the k solved examples that help a language model most, and assemble the
prompt. The public API is listed in ``__all__``; everything else is private.
"""

from kshot._version import __version__
from kshot.api import assemble, build_index, load_index, select
from kshot.errors import (
    BudgetError,
    ConfigError,
    DataError,
    DatasetError,
    EncoderMismatchError,
    FilterError,
    IndexFormatError,
    KshotError,
    MissingDependencyError,
    ModelError,
    NotFoundError,
    QueryError,
    TemplateError,
    UnknownSelectorError,
)
from kshot.index import ExampleIndex, HashingEncoder, SentenceTransformerEncoder
from kshot.prompt import Order, PromptAssembler, PromptTemplate
from kshot.selector import SelectorSpec, available_selectors, build_selector, register
from kshot.types import Example, Prompt, Scored

__all__ = [
    "BudgetError",
    "ConfigError",
    "DataError",
    "DatasetError",
    "EncoderMismatchError",
    "Example",
    "ExampleIndex",
    "FilterError",
    "HashingEncoder",
    "IndexFormatError",
    "KshotError",
    "MissingDependencyError",
    "ModelError",
    "NotFoundError",
    "Order",
    "Prompt",
    "PromptAssembler",
    "PromptTemplate",
    "QueryError",
    "Scored",
    "SelectorSpec",
    "SentenceTransformerEncoder",
    "TemplateError",
    "UnknownSelectorError",
    "__version__",
    "assemble",
    "available_selectors",
    "build_index",
    "build_selector",
    "load_index",
    "register",
    "select",
]
