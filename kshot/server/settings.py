"""Server settings, read from ``KSHOT_*`` environment variables or given in code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_COLLECTION", "CollectionConfig", "ServerSettings", "check_collection_name"]

#: The name of the collection the positional index (``settings.index``) is served as.
DEFAULT_COLLECTION = "default"

#: A collection name: a slug that is safe as a directory name and a URL path segment.
COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

#: The ``tokenizer`` value that selects the approximate whitespace counter.
WHITESPACE_TOKENIZER = "whitespace"

#: The ``local_model`` value that selects the bundled SmolLM2-135M-Instruct.
BUNDLED_LOCAL_MODEL = "bundled"


def check_collection_name(name: str) -> str:
    """``name`` if it is a valid collection name, else a ``ValueError`` saying what is."""
    if not COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"collection name {name!r} is not a slug: use 1-64 characters of a-z, 0-9, '-' and "
            "'_', starting with a letter or digit"
        )
    return name


class CollectionConfig(BaseModel):
    """One named collection: its index directory and the proxy's defaults for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="The index directory of this collection.")
    read_only: bool = Field(default=False, description="Open it read-only (no writer lock).")
    k: int | None = Field(
        default=None, ge=0, description="Examples the proxy inserts (default: proxy_k)."
    )
    selector: str | None = Field(
        default=None, description="Selector the proxy uses (default: proxy_selector)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Selector parameters the proxy uses by default."
    )
    max_example_tokens: int | None = Field(
        default=None, ge=1, description="Example token budget (default: max_example_tokens)."
    )


class ServerSettings(BaseSettings):
    """Everything ``kshot serve`` can be told; each field is also ``KSHOT_<FIELD>`` in the env.

    Writes (``POST/PATCH/DELETE /v1/examples``) need ``api_key`` (then every write carries
    ``Authorization: Bearer <key>``), or ``allow_anonymous_writes``; otherwise they are refused
    with 403. With ``auth="all"`` every read except ``GET /healthz`` needs the key too.

    Several workers (``workers > 1``) are separate processes, each with its own copy of the index
    in memory: a write to one would not be seen by the others. So ``workers > 1`` requires
    ``read_only`` (or a server on which writes are disabled anyway); run one writable worker for
    writes.
    """

    model_config = SettingsConfigDict(env_prefix="KSHOT_", extra="forbid", frozen=True)

    index: Path | None = Field(
        default=None, description="The index directory to serve (built with `kshot index build`)."
    )
    host: str = Field(
        default="127.0.0.1", description="Interface to bind; 0.0.0.0 exposes the server."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free port).")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes; more than 1 requires a read-only server.",
    )
    read_only: bool = Field(
        default=False, description="Refuse every write; required with several workers."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer token required for writes (and for reads with auth='all').",
    )
    auth: Literal["writes", "all"] = Field(
        default="writes", description="What the API key protects: writes only, or all but /healthz."
    )
    allow_anonymous_writes: bool = Field(
        default=False, description="Accept writes without an API key (for local use only)."
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body accepted, in bytes (else 413).",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a client may take to send a request's headers, counted from when the "
            "connection opens or the previous response ends (so it also closes idle connections)."
        ),
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a client may take to send a request body (else 408).",
    )
    keep_alive_timeout: float = Field(
        default=5.0, gt=0, description="Seconds an idle keep-alive connection stays open."
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Most connections and requests in flight per process; more get a 503.",
    )
    max_k: int = Field(default=64, ge=1, description="Largest k a request may ask for.")
    max_query_chars: int = Field(
        default=8_000, ge=1, description="Longest query (and example input) in characters."
    )
    max_batch: int = Field(
        default=256, ge=1, description="Most queries per batch request, and examples per add."
    )
    tokenizer: str | None = Field(
        default=None,
        description=(
            "Tokenizer for token budgets: a Hugging Face name or path, 'whitespace' for the "
            "approximate word counter, or unset for the default model's tokenizer."
        ),
    )
    device: str = Field(
        default="auto", description="Device of the query encoder: auto, cpu, cuda, mps."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        default="info", description="Log level of the server and its access log."
    )
    collections: dict[str, CollectionConfig] = Field(
        default_factory=dict,
        description=(
            "Named collections besides the default one (the index above): name -> "
            "{path, read_only, k, selector, params, max_example_tokens}; JSON in the env."
        ),
    )
    collections_dir: Path | None = Field(
        default=None,
        description=(
            "Directory of the collections created over HTTP (POST /v1/collections); each "
            "subdirectory there is served as a collection of its name. Unset: none are created."
        ),
    )
    # -- the OpenAI-compatible proxy and the local model (see kshot.server.proxy) --------------
    upstream: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL the proxy forwards to (e.g. http://host:8001/v1).",
    )
    upstream_api_key: SecretStr | None = Field(
        default=None, description="Bearer key sent to the upstream (never the client's key)."
    )
    upstream_timeout: float = Field(
        default=120.0, gt=0, description="Seconds to wait for the upstream (connect and read)."
    )
    upstream_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries on connection errors, 429 and 5xx before the answer starts.",
    )
    local_model: str | None = Field(
        default=None,
        description=(
            "Serve a local transformers model on /v1/chat/completions and /v1/completions: a "
            "model name or folder, or 'bundled' for SmolLM2-135M-Instruct."
        ),
    )
    proxy_k: int = Field(default=4, ge=0, description="Examples the proxy inserts by default.")
    proxy_selector: str = Field(
        default="similarity", description="Selector the proxy uses by default."
    )
    max_example_tokens: int = Field(
        default=1024, ge=1, description="Default token budget of the examples the proxy inserts."
    )

    @model_validator(mode="after")
    def _check_workers(self) -> ServerSettings:
        if self.workers > 1 and self.writes_enabled:
            raise ValueError(
                f"workers={self.workers} with writes enabled: each worker process holds its own "
                "copy of the index, so a write would reach only one of them. Set "
                "KSHOT_READ_ONLY=true (--read-only) to serve reads from several workers, or run "
                "one worker to accept writes"
            )
        return self

    @model_validator(mode="after")
    def _check_upstream(self) -> ServerSettings:
        if self.upstream is not None and self.local_model is not None:
            raise ValueError(
                "give either upstream (--upstream URL: forward to that server) or local_model "
                "(--local-model: answer with a model in this process), not both"
            )
        if self.upstream is not None and not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {self.upstream!r}")
        return self

    @model_validator(mode="after")
    def _check_collections(self) -> ServerSettings:
        for name in self.collections:
            check_collection_name(name)
            if name == DEFAULT_COLLECTION and self.index is not None:
                raise ValueError(
                    f"collection {DEFAULT_COLLECTION!r} is the index given as INDEX "
                    "(KSHOT_INDEX); give the other collections other names"
                )
        return self

    @property
    def writes_enabled(self) -> bool:
        """Whether some client may write: not read-only, and a key or anonymous writes."""
        return not self.read_only and (self.api_key is not None or self.allow_anonymous_writes)

    def to_env(self) -> dict[str, str]:
        """These settings as ``KSHOT_*`` environment variables (for worker processes)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, dict):
                if value:  # pydantic-settings reads a dict field from the env as JSON
                    dumped = {k: v.model_dump(mode="json") for k, v in value.items()}
                    env[f"KSHOT_{name.upper()}"] = json.dumps(dumped)
                continue
            env[f"KSHOT_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env
