"""The one door to ``ray``: import it on demand and hold a connection for the length of a job."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from kshot.errors import ConfigError, KshotError, missing_extra

__all__ = ["import_ray", "ray_session", "reraise_kshot_error"]

logger = logging.getLogger(__name__)


def import_ray() -> Any:
    """Return the ``ray`` module, or raise the install hint for the ``ray`` extra."""
    try:
        import ray
        import ray.data
        import ray.util
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Yield ``ray`` connected to the cluster at ``address`` (``None``: start or attach locally).

    A session already open in this process (a notebook, a test) is reused and left open; one
    opened here is shut down at the end, so the job's local cluster does not outlive it.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise ConfigError(
            f"could not connect to {where}: {exc}; check the address (host:port of the head, "
            "or 'auto') or leave it out to start a local cluster"
        ) from exc
    logger.info("connected to Ray: %s", ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


def reraise_kshot_error(exc: BaseException) -> None:
    """Raise the kshot error a Ray task failed with, so the caller sees its message, not Ray's."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, KshotError):
        raise cause from None
