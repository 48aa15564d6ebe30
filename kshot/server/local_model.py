"""A local transformers model behind OpenAI's wire format (``kshot serve --local-model``).

:class:`LocalModel` answers chat and text completions, whole or streamed as server-sent events
in OpenAI's chunk shapes (``chat.completion.chunk``, ``text_completion``, then
``data: [DONE]``), with usage token counts. Generation runs in worker threads, one decoding step
at a time under a lock (the tokenizer is not re-entrant), so concurrent streams interleave and
the event loop never blocks. The proxy uses the same object as its in-process upstream and for
``POST /v1/completions`` (see :mod:`kshot.server.proxy`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.to_thread
from fastapi.responses import JSONResponse, Response, StreamingResponse

from kshot.model.base import PromptInput
from kshot.model.generation import Generation, GenerationOptions
from kshot.model.transformers_lm import GenerationStream, TransformersLM
from kshot.server.errors import ApiError
from kshot.server.openai_schemas import ChatRequest, CompletionRequest, parse

__all__ = ["LocalModel", "sse"]

#: ``max_tokens`` when a request gives none (OpenAI's default for text completions is 16).
DEFAULT_CHAT_TOKENS = 256
DEFAULT_COMPLETION_TOKENS = 16

_DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``payload`` as JSON."""
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


class LocalModel:
    """One loaded :class:`~kshot.model.TransformersLM` served in OpenAI's shapes."""

    def __init__(self, lm: TransformersLM) -> None:
        self.lm = lm
        self.created = int(time.time())
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The model id reported in answers and by ``/v1/models``."""
        return self.lm.name

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` answer: this one model."""
        entry = {"id": self.name, "object": "model", "created": self.created, "owned_by": "kshot"}
        return {"object": "list", "data": [entry]}

    # -- generation in worker threads ----------------------------------------------------------

    def _complete(self, prompt: PromptInput, options: GenerationOptions) -> Generation:
        with self._lock:
            return self.lm.complete(prompt, options)

    def _step(self, stream: Iterator[str]) -> str | None:
        with self._lock:
            return next(stream, None)

    async def _pieces(self, stream: GenerationStream) -> AsyncIterator[str]:
        while True:
            piece = await anyio.to_thread.run_sync(self._step, stream)
            if piece is None:
                return
            yield piece

    # -- chat ----------------------------------------------------------------------------------

    async def chat(self, body: Any) -> Response:
        """Answer a ``/v1/chat/completions`` body (a dict), whole or streamed."""
        request = parse(ChatRequest, body)
        messages = request.chat_messages()
        options = request.options(DEFAULT_CHAT_TOKENS)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if request.stream:
            stream = self.lm.stream(messages, options)
            events = self._chat_events(stream, ident, created, request.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        done = await anyio.to_thread.run_sync(self._complete, messages, options)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": done.text},
            "logprobs": None,
            "finish_reason": done.finish_reason,
        }
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": self.name,
                "choices": [choice],
                "usage": _usage(done.prompt_tokens, done.completion_tokens),
            }
        )

    async def _chat_events(
        self, stream: GenerationStream, ident: str, created: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        head = {"id": ident, "object": "chat.completion.chunk", "created": created}
        head["model"] = self.name

        def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**head, "choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        async for piece in self._pieces(stream):
            yield chunk({"content": piece})
        yield chunk({}, stream.finish_reason)
        if include_usage:
            usage = _usage(stream.prompt_tokens, stream.completion_tokens)
            yield sse({**head, "choices": [], "usage": usage})
        yield _DONE

    # -- text completions ----------------------------------------------------------------------

    async def completion(self, body: Any) -> Response:
        """Answer a ``/v1/completions`` body (one prompt), whole or streamed."""
        request = parse(CompletionRequest, body)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if len(prompts) != 1:
            raise ApiError(
                422, "validation_error", "prompt: give one prompt per request (a string)"
            )
        if not prompts[0]:
            raise ApiError(422, "validation_error", "prompt: the prompt is empty")
        options = request.options(DEFAULT_COMPLETION_TOKENS)
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": ident, "object": "text_completion", "created": created, "model": self.name}
        if request.stream:
            stream = self.lm.stream(prompts[0], options)
            events = self._completion_events(stream, head, request.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        done = await anyio.to_thread.run_sync(self._complete, prompts[0], options)
        choice = {"text": done.text, "index": 0, "logprobs": None}
        return JSONResponse(
            {
                **head,
                "choices": [{**choice, "finish_reason": done.finish_reason}],
                "usage": _usage(done.prompt_tokens, done.completion_tokens),
            }
        )

    async def _completion_events(
        self, stream: GenerationStream, head: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[bytes]:
        def chunk(text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return sse({**head, "choices": [choice]})

        async for piece in self._pieces(stream):
            yield chunk(piece)
        yield chunk("", stream.finish_reason)
        if include_usage:
            usage = _usage(stream.prompt_tokens, stream.completion_tokens)
            yield sse({**head, "choices": [], "usage": usage})
        yield _DONE
