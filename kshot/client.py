"""A client of a running ``kshot serve``: selections and prompts over HTTP.

The command line's ``--server URL`` uses it, so that a call costs one HTTP round trip instead of
loading the encoder in a fresh process. Answers come back as the same :class:`~kshot.types.Scored`
and :class:`~kshot.types.Prompt` values that local selection and assembly return. Every failure
(unreachable server, timeout, a refused request, a body that is not kshot's) is a
:class:`~kshot.errors.RemoteError` whose message says what happened, with the server's own
message for a refused request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from kshot._version import __version__
from kshot.errors import ConfigError, RemoteError
from kshot.types import Example, Prompt, PromptFormat, Scored

__all__ = ["KshotClient"]


class KshotClient:
    """Calls ``/v1/select`` and ``/v1/prompt`` on the kshot server at ``base_url``.

    ``base_url`` is the server's address (``http://127.0.0.1:8000``; a trailing ``/v1`` is
    accepted). ``api_key`` is sent as ``Authorization: Bearer`` for servers that guard reads.
    ``transport`` lets tests and embedding applications route the calls (an httpx transport).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = base_url.strip().rstrip("/").removesuffix("/v1")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"server URL {base_url!r} is not a URL ({exc})") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(
                f"server URL {base_url!r} must look like http://HOST:PORT (the address that "
                "`kshot serve` prints)"
            )
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout}")
        self.base_url = url
        self.timeout = timeout
        headers = {"User-Agent": f"kshot/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> KshotClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def select(
        self,
        query: str,
        k: int = 4,
        *,
        selector: str = "similarity",
        params: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude: Iterable[str] = (),
    ) -> list[Scored]:
        """Select up to ``k`` examples for ``query`` on the server, best first."""
        body = _selection(query, k, selector, params, filter, exclude)
        answer = self._post("/v1/select", body)
        return [_scored(row) for row in _field(answer, "examples", list)]

    def prompt(
        self,
        query: str,
        k: int = 4,
        *,
        selector: str = "similarity",
        params: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude: Iterable[str] = (),
        template: Mapping[str, str] | None = None,
        order: str = "similar_last",
        max_tokens: int | None = None,
        format: PromptFormat = "text",
        seed: int = 0,
    ) -> Prompt:
        """Select examples and assemble the prompt on the server (its tokenizer counts)."""
        body = _selection(query, k, selector, params, filter, exclude)
        body.update(
            template=dict(template) if template else None,
            order=order,
            max_tokens=max_tokens,
            format=format,
            seed=seed,
        )
        answer = self._post("/v1/prompt", body)
        messages = answer.get("messages")
        return Prompt(
            format=_field(answer, "format", str),
            text=answer.get("text"),
            messages=None if messages is None else tuple(messages),
            examples=tuple(_scored(row) for row in _field(answer, "examples", list)),
            dropped_ids=tuple(_field(answer, "dropped_ids", list)),
            token_count=_field(answer, "token_count", int),
            max_tokens=answer.get("max_tokens"),
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        where = f"the kshot server at {self.base_url}"
        try:
            response = self._http.post(path, json=body)
        except httpx.TimeoutException as exc:
            raise RemoteError(f"{where} did not answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise RemoteError(
                f"cannot reach {where} ({exc or type(exc).__name__}); is `kshot serve` running "
                "there?"
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, dict):
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if not isinstance(error, dict) or "message" not in error:
            raise RemoteError(
                f"{self.base_url}{path} answered {response.status_code} "
                f"{response.reason_phrase} without a kshot body; is it a kshot server?"
            )
        verb = "refused the request" if response.is_client_error else "failed"
        raise RemoteError(
            f"{where} {verb} ({response.status_code} {error.get('type', 'error')}): "
            f"{error['message']}"
        )


def _selection(
    query: str,
    k: int,
    selector: str,
    params: Mapping[str, Any] | None,
    filter: Mapping[str, Any] | None,
    exclude: Iterable[str],
) -> dict[str, Any]:
    return {
        "query": query,
        "k": k,
        "selector": selector,
        "params": dict(params or {}),
        "filter": None if filter is None else dict(filter),
        "exclude": list(exclude),
    }


def _field(answer: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind):
        raise RemoteError(f"the server's answer has no {name!r} {kind.__name__}; is it kshot?")
    return value


def _scored(row: Any) -> Scored:
    if not isinstance(row, dict):
        raise RemoteError(f"the server's answer lists {row!r} as an example; is it kshot?")
    try:
        example = Example(
            input=row["input"],
            output=row["output"],
            label=row["label"],
            metadata=row["metadata"],
            id=row["id"],
        )
        return Scored(example, float(row["score"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteError(f"the server's answer holds a malformed example ({exc})") from exc
