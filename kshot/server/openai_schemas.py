"""The OpenAI request shapes kshot reads: chat and text completions, and the ``kshot`` field.

The proxy forwards the client's JSON as it came (minus the ``kshot`` field, plus the examples),
so its models check only what kshot itself uses and allow every other field. The local model
endpoint reads the fields it implements and ignores the rest, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kshot.model.generation import GenerationOptions
from kshot.server.schemas import JsonObject, Text
from kshot.server.settings import DEFAULT_COLLECTION

__all__ = [
    "DEFAULT_COLLECTION",
    "ChatRequest",
    "CompletionRequest",
    "KshotOptions",
    "ProxiedChat",
    "message_text",
    "parse",
]


class KshotOptions(BaseModel):
    """Per-request options of the proxy: the body field ``"kshot"`` (``extra_body=`` of openai).

    Unset fields take the collection's defaults (its ``k``, ``selector``, ``params`` and
    ``max_example_tokens`` in ``KSHOT_COLLECTIONS``), else the server's (``KSHOT_PROXY_K``,
    ``KSHOT_PROXY_SELECTOR``, ``KSHOT_MAX_EXAMPLE_TOKENS``).
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    collection: Text = DEFAULT_COLLECTION
    """The collection to select from (``GET /v1/collections``); ``"default"`` is the index."""
    k: int | None = Field(default=None, ge=0)
    """How many examples to insert; 0 forwards the request untouched."""
    selector: Text | None = None
    """A registered selector name (see ``GET /v1/selectors``)."""
    params: JsonObject = Field(default_factory=dict)
    """The selector's parameters."""
    filter: JsonObject | None = None
    """``label`` or metadata field -> a value (equality) or a list of values (membership)."""
    max_example_tokens: int | None = Field(default=None, ge=1)
    """Token budget of the inserted examples (lowest-ranked dropped first to fit)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ProxiedChat(BaseModel):
    """What the proxy checks of a chat request before it selects and forwards."""

    model_config = ConfigDict(extra="allow")

    messages: list[_Message] = Field(min_length=1)
    kshot: KshotOptions | None = None


def message_text(content: str | list[dict[str, Any]] | None) -> str:
    """The text of a message's content: the string, or its text parts joined by newlines."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    def options(self, default_max_tokens: int) -> GenerationOptions:
        """These fields as generation options."""
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        limit = getattr(self, "max_completion_tokens", None) or self.max_tokens
        return GenerationOptions(
            max_new_tokens=limit or default_max_tokens,
            stop=tuple(stop),
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk (``stream_options``)."""
        return bool((self.stream_options or {}).get("include_usage"))


class ChatRequest(_Sampling):
    """A chat completion request to the local model."""

    messages: list[_Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def chat_messages(self) -> list[dict[str, str]]:
        """The conversation as plain role/content messages."""
        return [{"role": m.role, "content": message_text(m.content)} for m in self.messages]


class CompletionRequest(_Sampling):
    """A text completion request to the local model (one prompt)."""

    prompt: str | list[str]
    echo: Literal[False] = False


_M = TypeVar("_M", bound=BaseModel)


def parse(model: type[_M], body: Any) -> _M:
    """Validate ``body`` as ``model``; errors become the server's 422 validation answer."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
