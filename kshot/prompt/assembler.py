"""Assemble a query and ranked examples into a prompt that fits a token budget."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

from kshot.errors import BudgetError, ConfigError
from kshot.prompt.budget import TokenCounter, count_messages, default_counter
from kshot.prompt.order import Order, order_examples
from kshot.prompt.template import PromptTemplate, example_fields, query_fields
from kshot.types import ChatMessage, Example, Prompt, PromptFormat, Scored

__all__ = ["PromptAssembler"]

logger = logging.getLogger(__name__)

_FORMATS: tuple[str, ...] = get_args(PromptFormat)

#: A built prompt: its text (text format), its messages (chat format) and its token count.
_Built = tuple[str | None, tuple[ChatMessage, ...] | None, int]
_Builder = Callable[[int], _Built]


@dataclass(frozen=True)
class _Rendered:
    """One example rendered once: a text block, or a user and an assistant message."""

    scored: Scored
    block: str
    user: str
    assistant: str


class PromptAssembler:
    """Turns a query and examples ranked best-first into a :class:`~kshot.types.Prompt`.

    ``counter`` counts tokens; by default the tokenizer of the default language model
    (SmolLM2-135M-Instruct) is loaded on first use. Pass the counter of the model you will feed
    (``HFTokenCounter("your/model")``) so that budgets mean that model's tokens.

    Budget rule: when the prompt exceeds ``max_tokens``, the lowest-ranked example is dropped,
    again and again, until it fits; a prompt that does not fit even with no examples raises
    :class:`~kshot.errors.BudgetError`. The reported ``token_count`` is always the real count of
    the final prompt.
    """

    def __init__(
        self, template: PromptTemplate | None = None, counter: TokenCounter | None = None
    ) -> None:
        self.template = template if template is not None else PromptTemplate()
        if not isinstance(self.template, PromptTemplate):
            raise ConfigError(
                f"template must be a PromptTemplate, got {type(self.template).__name__}"
            )
        self._counter = counter

    @property
    def counter(self) -> TokenCounter:
        """The token counter in use (the default model's tokenizer when none was given)."""
        if self._counter is None:
            self._counter = default_counter()
        return self._counter

    # -- rendering ---------------------------------------------------------------------------

    def _render(self, scored: Scored, fmt: PromptFormat) -> _Rendered:
        values = example_fields(scored.example)
        t = self.template
        if fmt == "text":
            return _Rendered(scored, t.compiled("example").render(values), "", "")
        user = t.compiled("example_user").render(values)
        assistant = t.compiled("example_assistant").render(values)
        return _Rendered(scored, "", user, assistant)

    def _text(self, ordered: Sequence[_Rendered], query_text: str) -> str:
        parts = [self.template.instructions] if self.template.instructions else []
        parts.extend(r.block for r in ordered)
        parts.append(query_text)
        return self.template.separator.join(parts)

    def _messages(self, ordered: Sequence[_Rendered], query_text: str) -> tuple[ChatMessage, ...]:
        messages: list[ChatMessage] = []
        if self.template.instructions:
            messages.append({"role": "system", "content": self.template.instructions})
        for r in ordered:
            messages.append({"role": "user", "content": r.user})
            messages.append({"role": "assistant", "content": r.assistant})
        messages.append({"role": "user", "content": query_text})
        return tuple(messages)

    def _build(self, ordered: Sequence[_Rendered], query_text: str, fmt: PromptFormat) -> _Built:
        if fmt == "text":
            text = self._text(ordered, query_text)
            return text, None, self.counter.count(text)
        messages = self._messages(ordered, query_text)
        return None, messages, count_messages(self.counter, messages)

    def _part_costs(self, rendered: Sequence[_Rendered], fmt: PromptFormat) -> list[int]:
        texts = (
            [r.block for r in rendered]
            if fmt == "text"
            else [s for r in rendered for s in (r.user, r.assistant)]
        )
        batch = getattr(self.counter, "count_batch", None)
        counts: list[int] = (
            list(batch(texts)) if callable(batch) else [self.counter.count(s) for s in texts]
        )
        if fmt == "text":
            return counts
        return [counts[2 * i] + counts[2 * i + 1] for i in range(len(rendered))]

    # -- public ------------------------------------------------------------------------------

    def assemble(
        self,
        query: str | Example,
        examples: Sequence[Scored],
        *,
        order: Order | str = Order.SIMILAR_LAST,
        max_tokens: int | None = None,
        format: PromptFormat = "text",
        seed: int = 0,
    ) -> Prompt:
        """Assemble ``query`` and ``examples`` (ranked best-first) into a prompt.

        Args:
            query: the query text, or an :class:`~kshot.types.Example` whose fields the query
                template may use.
            examples: the selector's output, best first.
            order: ``similar_last`` (default), ``similar_first`` or ``random``.
            max_tokens: the token budget of the whole prompt, or ``None`` for no budget.
            format: ``"text"`` (one string) or ``"chat"`` (messages).
            seed: the seed of the ``random`` order.

        Raises:
            BudgetError: the prompt exceeds ``max_tokens`` even without examples.
            TemplateError: a template uses a field the examples or the query do not have.
            ConfigError: an unknown order or format, or a budget below 1.
        """
        fmt = _check_format(format)
        policy = Order.parse(order)
        if max_tokens is not None and (isinstance(max_tokens, bool) or max_tokens < 1):
            raise ConfigError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
        ranked = [_as_scored(s) for s in examples]
        query_text = self.template.compiled("query" if fmt == "text" else "query_user").render(
            query_fields(query)
        )
        rendered = [self._render(s, fmt) for s in ranked]

        def build(m: int) -> _Built:
            return self._build(order_examples(rendered[:m], policy, seed=seed), query_text, fmt)

        n = len(rendered)
        keep = n
        text, messages, count = build(n)
        if max_tokens is not None and count > max_tokens:
            keep, text, messages, count = self._fit(rendered, build, count, max_tokens, fmt)
        kept = order_examples(rendered[:keep], policy, seed=seed)
        dropped = tuple(r.scored.example.id for r in reversed(rendered[keep:]))
        if dropped:
            logger.debug("dropped %d example(s) to fit %d tokens", len(dropped), max_tokens)
        return Prompt(
            format=fmt,
            text=text,
            messages=messages,
            examples=tuple(r.scored for r in kept),
            dropped_ids=dropped,
            token_count=count,
            max_tokens=max_tokens,
        )

    def _fit(
        self,
        rendered: Sequence[_Rendered],
        build: _Builder,
        full_count: int,
        max_tokens: int,
        fmt: PromptFormat,
    ) -> tuple[int, str | None, tuple[ChatMessage, ...] | None, int]:
        """Find how many top-ranked examples fit, with few full counts.

        Each example's own token count plus a per-example overhead (calibrated from the full and
        the empty prompt) estimates the prompt's length for every number of examples; the
        estimate is then checked and corrected with real counts of whole prompts (usually two).
        The result keeps ``m`` examples where ``m`` fits and ``m + 1`` does not.
        """
        n = len(rendered)
        zero = build(0)
        if zero[2] > max_tokens:
            raise BudgetError(
                f"the prompt needs {zero[2]} tokens without any example "
                f"(counted with {self.counter.name}), more than the budget of {max_tokens} "
                f"tokens; shorten the query or the instructions, or raise max_tokens"
            )
        costs = self._part_costs(rendered, fmt)
        overhead = (full_count - zero[2] - sum(costs)) / n
        m, estimate = 0, float(zero[2])
        for i in range(n - 1):
            estimate += costs[i] + overhead
            if estimate > max_tokens:
                break
            m = i + 1
        best = zero if m == 0 else build(m)
        if best[2] > max_tokens:
            while best[2] > max_tokens:
                m -= 1
                best = zero if m == 0 else build(m)
        else:
            while m + 1 < n:
                nxt = build(m + 1)
                if nxt[2] > max_tokens:
                    break
                m, best = m + 1, nxt
        return m, best[0], best[1], best[2]

    def with_query(self, prompt: Prompt, query: str | Example) -> Prompt:
        """Return ``prompt`` with the same examples, in the same order, around another query.

        Meant for contextual calibration: ``with_query(prompt, "N/A")`` is the content-free
        version of ``prompt``. No budget is applied; ``max_tokens`` is carried over as is.
        """
        fmt = _check_format(prompt.format)
        query_text = self.template.compiled("query" if fmt == "text" else "query_user").render(
            query_fields(query)
        )
        rendered = [self._render(s, fmt) for s in prompt.examples]
        text, messages, count = self._build(rendered, query_text, fmt)
        return Prompt(
            format=fmt,
            text=text,
            messages=messages,
            examples=prompt.examples,
            dropped_ids=prompt.dropped_ids,
            token_count=count,
            max_tokens=prompt.max_tokens,
        )


def _check_format(value: str) -> PromptFormat:
    if value not in _FORMATS:
        raise ConfigError(f"unknown prompt format {value!r}; choose one of: {', '.join(_FORMATS)}")
    return value  # type: ignore[return-value]


def _as_scored(item: Scored | Example) -> Scored:
    if isinstance(item, Scored):
        return item
    if isinstance(item, Example):
        return Scored(item, 0.0)
    raise ConfigError(f"examples must be Scored (or Example) values, got {type(item).__name__}")
