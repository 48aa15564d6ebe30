"""Any server that speaks the OpenAI wire format: ``/v1/chat/completions``, ``/v1/completions``.

Works with OpenAI, vLLM, llama.cpp's server, Ollama, TGI and the like. Requests are retried
with exponential backoff on 429 and 5xx answers and on connection errors (honouring
``Retry-After``); any other error answer raises :class:`~kshot.errors.ModelError` with the status
and the start of the body.

Label scoring needs the log-probabilities of the prompt's own tokens, which only the legacy
``/v1/completions`` endpoint gives (``echo=true`` with ``logprobs``); chat completions return
log-probabilities of generated tokens only, which cannot score a fixed label. So
:meth:`OpenAICompatibleLM.score_labels` takes text prompts, sends ``prompt + label`` for every
label in one request, and sums the log-probabilities of the echoed tokens that overlap the
label's characters (by ``text_offset``). A server that refuses ``echo`` or returns no prompt
log-probabilities raises a ModelError that says this server cannot score labels; use
:class:`~kshot.model.TransformersLM`, or ``generate`` and compare the answer to the labels.
"""

from __future__ import annotations

import email.utils
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from kshot.errors import ConfigError, ModelError
from kshot.model.base import FloatArray, PromptInput, as_prompt_input, cut_at_stop, is_single_prompt

__all__ = ["OpenAICompatibleLM"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleLM:
    """A language model behind an OpenAI-compatible HTTP API.

    Args:
        base_url: the server, with or without the ``/v1`` suffix
            (``http://localhost:8000`` or ``https://api.openai.com/v1``).
        model: the model name the server expects.
        api_key: sent as a bearer token; default ``$KSHOT_LLM_API_KEY``, else
            ``$OPENAI_API_KEY``, else none.
        timeout: seconds per request.
        max_retries: retries after the first attempt on 429, 5xx and connection errors.
        backoff: the first retry's delay in seconds; it doubles with each retry (capped at
            ``max_backoff``); a ``Retry-After`` header takes precedence, within the same cap.
        transport: an ``httpx`` transport, e.g. ``httpx.MockTransport`` in tests.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url or not model:
            raise ConfigError("OpenAICompatibleLM needs a base_url and a model name")
        if max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ConfigError("max_retries must be >= 0, timeout > 0 and backoff >= 0")
        url = base_url.rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        key = api_key or os.environ.get("KSHOT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    @property
    def name(self) -> str:
        """The model name sent to the server."""
        return self.model

    def __repr__(self) -> str:
        return f"OpenAICompatibleLM({self.base_url!r}, {self.model!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAICompatibleLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{path}"
        attempt = 0
        while True:
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise ModelError(
                        f"POST {url} failed after {attempt + 1} attempt(s): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                delay = self._delay(attempt, None)
                logger.warning("POST %s: %s; retrying in %.2f s", url, exc, delay)
            else:
                status = response.status_code
                if status < 400:
                    try:
                        body = response.json()
                    except ValueError:
                        raise ModelError(
                            f"POST {url} answered {status} with a body that is not JSON: "
                            f"{_excerpt(response.text)!r}"
                        ) from None
                    if not isinstance(body, dict):
                        raise ModelError(f"POST {url} answered {status} with {_excerpt(str(body))}")
                    return body
                if status not in _RETRY_STATUS or attempt >= self.max_retries:
                    tried = f" after {attempt + 1} attempts" if attempt else ""
                    raise ModelError(
                        f"POST {url} answered {status}{tried}: {_excerpt(response.text)!r}",
                    )
                delay = self._delay(attempt, response.headers.get("retry-after"))
                logger.warning("POST %s answered %d; retrying in %.2f s", url, status, delay)
            time.sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        wait = _retry_after(retry_after)
        if wait is None:
            wait = self.backoff * (2**attempt)
        return min(wait, self.max_backoff)

    # -- generation --------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[PromptInput],
        *,
        max_new_tokens: int = 32,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        """Complete each prompt with temperature 0; return only the new text.

        Chat prompts go to ``/v1/chat/completions``, text prompts to ``/v1/completions``. The
        answer is also cut before the first ``stop`` string here, whatever the server did.
        """
        if is_single_prompt(prompts):
            raise ConfigError("prompts must be a sequence of prompts; wrap a single prompt in [ ]")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        out: list[str] = []
        for prompt in prompts:
            value = as_prompt_input(prompt)
            payload: dict[str, Any] = {
                "model": self.model,
                "max_tokens": max_new_tokens,
                "temperature": 0,
            }
            if stop:
                payload["stop"] = list(stop)[:4]
            if isinstance(value, str):
                body = self._post("completions", {**payload, "prompt": value})
                text = self._choice(body, "completions").get("text")
            else:
                body = self._post("chat/completions", {**payload, "messages": value})
                message = self._choice(body, "chat/completions").get("message") or {}
                text = message.get("content") if isinstance(message, dict) else None
            if not isinstance(text, str):
                raise ModelError(f"{self.base_url} answered without text: {_excerpt(str(body))}")
            out.append(cut_at_stop(text, stop))
        return out

    def _choice(self, body: dict[str, Any], path: str) -> dict[str, Any]:
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ModelError(
                f"{self.base_url}/{path} answered without choices: {_excerpt(str(body))}"
            )
        first: dict[str, Any] = choices[0]
        return first

    # -- scoring -----------------------------------------------------------------------------

    def score_labels(self, prompts: Sequence[PromptInput], labels: Sequence[str]) -> FloatArray:
        """Return the total log-probability of each label after each text prompt.

        One ``/v1/completions`` request per prompt with ``echo=true``, ``logprobs=0`` and the
        label continuations as a list of prompts. Labels are appended verbatim (give them a
        leading space after ``"Answer:"``).

        Raises:
            ModelError: a chat prompt (chat endpoints cannot score given text), or a server that
                does not return the echoed prompt's log-probabilities.
        """
        if is_single_prompt(prompts):
            raise ConfigError("prompts must be a sequence of prompts; wrap a single prompt in [ ]")
        if isinstance(labels, str):
            raise ConfigError("labels must be a sequence of strings")
        out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
        if not labels:
            return out
        for i, prompt in enumerate(prompts):
            value = as_prompt_input(prompt)
            if not isinstance(value, str):
                raise ModelError(
                    "OpenAICompatibleLM cannot score labels after chat prompts: chat endpoints "
                    "return no log-probabilities for given text; assemble a text prompt instead"
                )
            payload = {
                "model": self.model,
                "prompt": [value + label for label in labels],
                "max_tokens": 1,
                "temperature": 0,
                "echo": True,
                "logprobs": 0,
            }
            try:
                body = self._post("completions", payload)
            except ModelError as exc:
                raise ModelError(
                    f"this server cannot score labels (echo + logprobs): {exc}"
                ) from exc
            choices = body.get("choices")
            if not isinstance(choices, list) or len(choices) != len(labels):
                raise ModelError(
                    f"this server cannot score labels: expected {len(labels)} choices, got "
                    f"{_excerpt(str(choices))}"
                )
            for pos, choice in enumerate(choices):
                j = choice.get("index", pos) if isinstance(choice, dict) else pos
                out[i, j] = _label_logprob(choice, len(value), len(value) + len(labels[j]))
        return out


def _label_logprob(choice: Any, start: int, end: int) -> float:
    """Sum the echoed token log-probabilities overlapping the characters ``[start, end)``."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    if not isinstance(logprobs, dict):
        raise ModelError(
            "this server cannot score labels: /v1/completions returned no logprobs with echo"
        )
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    offsets = logprobs.get("text_offset")
    if not (isinstance(tokens, list) and isinstance(values, list) and isinstance(offsets, list)):
        raise ModelError(
            "this server cannot score labels: echoed logprobs lack tokens, token_logprobs or "
            "text_offset"
        )
    total = 0.0
    for token, value, offset in zip(tokens, values, offsets, strict=False):
        if start >= end:
            break
        if offset >= end or offset + len(token) <= start:
            continue
        if value is None:
            raise ModelError(
                "this server cannot score labels: it gave no log-probability for a label token "
                "(an empty prompt has no first-token probability)"
            )
        total += float(value)
    return total
