"""The public API is what ``kshot.__all__`` says, and nothing moves without this test changing."""

from __future__ import annotations

import kshot
import kshot.errors

PUBLIC = [
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


def test_what_a_caller_passes_in_is_public() -> None:
    # The protocols of an own encoder or counter, the typed parameters, load_index's read_only.
    import inspect

    import kshot.index
    import kshot.prompt

    assert kshot.Encoder is kshot.index.Encoder
    assert kshot.TokenCounter is kshot.prompt.TokenCounter
    assert issubclass(kshot.MMRParams, kshot.SelectorParams)
    assert "read_only" in inspect.signature(kshot.load_index).parameters
    for error in ("IndexLockedError", "ReadOnlyError", "RemoteError"):
        assert error in kshot.__all__


def test_test_helpers_stay_private_but_the_hashing_encoder() -> None:
    # A deterministic encoder is useful to users' own tests; other helpers are not API.
    assert "HashingEncoder" in kshot.__all__
    assert "as_example" not in kshot.__all__
