"""The application factory: :func:`create_app` builds one FastAPI app from :class:`ServerSettings`.

Nothing here is a module-level singleton: each app holds its own settings, index, token counter
and metrics in ``app.state.kshot`` (a :class:`~kshot.server.deps.ServerState`), so tests can run
several apps side by side. :func:`app_from_env` is the factory uvicorn imports when it runs
several worker processes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import FastAPI

from kshot._version import __version__
from kshot.errors import ConfigError
from kshot.index.example_index import ExampleIndex
from kshot.prompt.budget import HFTokenCounter, TokenCounter, WhitespaceCounter, default_counter
from kshot.server.collections import Collection, configured
from kshot.server.deps import LockedCounter, ServerState
from kshot.server.errors import install_error_handlers
from kshot.server.middleware import ServerMiddleware
from kshot.server.proxy import ProxyState
from kshot.server.proxy import router as proxy_router
from kshot.server.routes import collections as collection_routes
from kshot.server.routes import docs as docs_routes
from kshot.server.routes import examples as examples_routes
from kshot.server.routes import health as health_routes
from kshot.server.routes import index as index_routes
from kshot.server.routes import prompt as prompt_routes
from kshot.server.routes import select as select_routes
from kshot.server.routes import selectors as selectors_routes
from kshot.server.settings import DEFAULT_COLLECTION, WHITESPACE_TOKENIZER, ServerSettings

if TYPE_CHECKING:
    from kshot.model.transformers_lm import TransformersLM

__all__ = [
    "app_from_env",
    "close_index",
    "create_app",
    "load_counter",
    "open_collections",
    "open_index",
]

logger = logging.getLogger("kshot.server")


def load_counter(settings: ServerSettings) -> TokenCounter:
    """The token counter ``settings.tokenizer`` names (unset: the default model's tokenizer)."""
    if settings.tokenizer is None:
        return default_counter()
    if settings.tokenizer == WHITESPACE_TOKENIZER:
        return WhitespaceCounter()
    return HFTokenCounter(settings.tokenizer)


def _start(
    state: ServerState,
    index: ExampleIndex | None,
    counter: TokenCounter | None,
    named: dict[str, ExampleIndex] | None,
) -> None:
    settings = state.settings
    started = time.perf_counter()
    if index is None and settings.index is None and settings.local_model is not None:
        state.ready = True  # a model server only (see kshot.server.proxy)
        return
    named_given = named or settings.collections or settings.collections_dir is not None
    if index is None and (settings.index is not None or not named_given):
        index = open_index(settings)  # with nothing to serve, this is the error saying so
    state.index = index
    if index is not None:
        state.collections.add(Collection(DEFAULT_COLLECTION, index))
    configs = configured(settings)
    for name, opened in (open_collections(settings) if named is None else named).items():
        state.collections.add(Collection(name, opened, configs.get(name)))
    for collection in state.collections.by_name.values():
        # Load each model and its kernels before traffic.
        collection.index.encoder.encode(["warm-up query"])
    state.counter = LockedCounter(counter if counter is not None else load_counter(settings))
    state.ready = True
    for collection in state.collections.by_name.values():
        logger.info(
            "serving %d examples as %r from %s (encoder %s)",
            len(collection.index),
            collection.name,
            collection.index.path or "memory",
            collection.index.encoder_name,
        )
    logger.info(
        "ready after %.1f s (tokenizer %s)", time.perf_counter() - started, state.counter.name
    )


def open_index(settings: ServerSettings) -> ExampleIndex:
    """Open ``settings.index``: for writing (holding its writer lock) unless read-only.

    Several workers are several processes, and only one may hold the lock; the settings allow
    several only where no write is accepted, so each of them opens the index read-only.
    """
    if settings.index is None:
        raise ConfigError(
            "no index to serve: set KSHOT_INDEX (or ServerSettings(index=...)), or name "
            "collections (KSHOT_COLLECTIONS, KSHOT_COLLECTIONS_DIR)"
        )
    read_only = settings.read_only or settings.workers > 1
    return ExampleIndex.load(settings.index, device=settings.device, read_only=read_only)


def open_collections(settings: ServerSettings) -> dict[str, ExampleIndex]:
    """Open every named collection (see :mod:`kshot.server.collections`), as :func:`open_index`.

    On any failure the ones already opened are closed (releasing their locks) before it raises.
    """
    opened: dict[str, ExampleIndex] = {}
    try:
        for name, config in configured(settings).items():
            read_only = config.read_only or settings.read_only or settings.workers > 1
            opened[name] = ExampleIndex.load(
                config.path, device=settings.device, read_only=read_only
            )
    except BaseException:
        for index in opened.values():
            index.close()
        raise
    return opened


def close_index(index: ExampleIndex) -> None:
    """Save a writable index (vector file and manifest), then close it and release its lock."""
    try:
        if not index.read_only and index.path is not None:
            started = time.perf_counter()
            index.save()
            logger.info("saved %d examples to %s in %.2f s", len(index), index.path,
                        time.perf_counter() - started)  # fmt: skip
    finally:
        index.close()


def _stop(state: ServerState, owned: bool) -> None:
    state.ready = False
    for collection in list(state.collections.by_name.values()):
        if collection.index is not state.index or owned:
            try:
                close_index(collection.index)
            except Exception:
                # One failed save must not keep the others from saving and unlocking.
                logger.exception("could not save the collection %r", collection.name)


def create_app(
    settings: ServerSettings,
    *,
    index: ExampleIndex | None = None,
    counter: TokenCounter | None = None,
    local_lm: TransformersLM | None = None,
    own_index: bool = False,
    collections: dict[str, ExampleIndex] | None = None,
) -> FastAPI:
    """Build the HTTP application.

    At start-up the lifespan loads the index from ``settings.index`` (unless ``index`` is given),
    warms its encoder with one encode, and loads the token counter (unless ``counter`` is given);
    at shutdown it saves the index it loaded (vector file and manifest; the store is already
    durable), unless the server is read-only, and closes it (releasing its writer lock). An
    ``index`` passed in is the caller's to save and close, unless ``own_index`` hands it over.
    ``local_lm`` is a loaded model to serve as ``settings.local_model`` would load one (see
    :mod:`kshot.server.proxy`); the model loads before the index, so readiness covers both.
    ``collections`` are the named collections already opened (by :func:`open_collections`),
    handed over to the app to save and close; unset, the lifespan opens them.
    """
    state = ServerState(settings)
    proxy = ProxyState()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(proxy.load, settings, local_lm)
        await anyio.to_thread.run_sync(_start, state, index, counter, collections)
        try:
            yield
        finally:
            await proxy.aclose()
            await anyio.to_thread.run_sync(_stop, state, index is None or own_index)

    app = FastAPI(
        title="kshot",
        version=__version__,
        summary="Dynamic in-context example selection over HTTP.",
        lifespan=lifespan,
        # Served by routes.docs instead, behind the read key.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.kshot = state
    app.state.proxy = proxy
    install_error_handlers(app)
    app.add_middleware(
        ServerMiddleware,
        metrics=state.metrics,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
    )
    index_routers = (index_routes, selectors_routes, select_routes, prompt_routes, examples_routes)
    # A model-only server (--local-model, no index) has no index routes to answer 503 forever.
    serves_index = (
        index is not None
        or settings.index is not None
        or settings.local_model is None
        or bool(collections or settings.collections or settings.collections_dir)
    )
    for routes in (docs_routes, health_routes, *(index_routers if serves_index else ())):
        app.include_router(routes.router)
    if serves_index:
        app.include_router(collection_routes.router)
        for routes in (select_routes, prompt_routes, examples_routes, index_routes):
            app.include_router(collection_routes.in_collection(routes.router))
    app.include_router(proxy_router)
    return app


def app_from_env() -> FastAPI:
    """Build the app from ``KSHOT_*`` environment variables (uvicorn ``factory=True`` target)."""
    return create_app(ServerSettings())
