"""The HTTP server: ``create_app(settings)`` for ASGI hosts and tests, ``serve(settings)`` to run.

Needs the ``server`` extra (``pip install 'kshot[server]'``). Settings come from
:class:`ServerSettings` (``KSHOT_*`` environment variables or arguments).

Workers: ``serve`` runs one process by default. With ``workers > 1`` uvicorn starts several
processes, each importing :func:`kshot.server.app.app_from_env` (the settings travel as
``KSHOT_*`` variables) and each holding its own copy of the index in memory; a write would reach
only one of them, so several workers are allowed only on a read-only server (``read_only=True``,
or no API key and no anonymous writes). Send writes to a single writable server.

CPU threads: requests run in FastAPI's thread pool and each encodes its query with torch; on a
small or shared CPU, set ``OMP_NUM_THREADS=1`` (or a few) so that concurrent requests do not
oversubscribe the cores (measured on a loaded 2-core machine: single-query encode p50 876 ms with
2 torch threads, 39 ms with 1).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from kshot.errors import missing_extra

try:
    from kshot.server.app import create_app, open_collections, open_index
    from kshot.server.settings import ServerSettings
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name in {"fastapi", "starlette", "pydantic", "pydantic_settings", "anyio"}:
        raise missing_extra(str(exc.name), "server") from exc
    raise

__all__ = ["ServerSettings", "create_app", "serve"]


def log_config(level: str) -> dict[str, Any]:
    """The logging configuration plus the ``kshot`` loggers (access log included)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["kshot"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def serve(settings: ServerSettings) -> None:
    """Run the server with uvicorn until it is stopped (SIGINT / SIGTERM: graceful shutdown).

    Slow clients are cut off: request headers must arrive within ``header_timeout`` seconds and
    a body within ``body_timeout``; idle keep-alive connections close after
    ``keep_alive_timeout``; past ``max_connections`` connections or requests uvicorn answers 503.
    """
    try:
        import uvicorn

        from kshot.server.protocol import header_timeout_protocol
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise missing_extra("uvicorn", "server") from exc
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "access_log": False,  # the app writes its own structured access log
        "server_header": False,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.max_connections,
    }
    if settings.workers > 1:
        # Worker processes import the protocol by name and read its timeout from the env.
        os.environ.update(settings.to_env())
        uvicorn.run(
            "kshot.server.app:app_from_env",
            factory=True,
            workers=settings.workers,
            http="kshot.server.protocol:HeaderTimeoutProtocol",
            **common,
        )
    else:
        protocol = header_timeout_protocol(settings.header_timeout)
        # Opened before uvicorn starts, so that a held writer lock or a broken index ends the
        # command at once with one line (the CLI's error), not a lifespan traceback.
        # A model-only server (--local-model, no index) has none to open.
        index = None if settings.index is None else open_index(settings)
        try:
            collections = open_collections(settings)
        except BaseException:
            if index is not None:
                index.close()
            raise
        app = create_app(settings, index=index, own_index=True, collections=collections)
        uvicorn.run(app, http=protocol, **common)
