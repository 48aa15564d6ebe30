"""The public API is what ``kshot.__all__`` says, and nothing moves without this test changing."""

from __future__ import annotations

import kshot
import kshot.errors

PUBLIC = [
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


def test_all_is_pinned() -> None:
    assert sorted(kshot.__all__) == PUBLIC
    for name in kshot.__all__:
        assert hasattr(kshot, name), name


def test_errors_derive_from_the_builtins_they_mean() -> None:
    assert issubclass(kshot.ConfigError, ValueError)
    assert issubclass(kshot.NotFoundError, KeyError)
    assert issubclass(kshot.MissingDependencyError, ImportError)
    assert issubclass(kshot.EncoderMismatchError, kshot.IndexFormatError)
    for name in kshot.errors.__all__:
        assert issubclass(getattr(kshot.errors, name), kshot.KshotError)
