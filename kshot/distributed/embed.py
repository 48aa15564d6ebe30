"""Embed a corpus with Ray Data: ``map_batches`` over a pool of encoder actors.

One actor per GPU when the cluster has GPUs, else one per CPU; each loads the encoder once. The
rows carry their position, so the vectors come back in corpus order whatever order the actors
finish in, and equal what the same encoder computes in this process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from kshot.distributed._ray import ray_session
from kshot.errors import ConfigError, KshotError
from kshot.index.encoder import encoder_from_name

__all__ = ["embed_with_ray"]

logger = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]

# Several blocks per actor keep every actor busy to the end without tiny tasks.
_BLOCKS_PER_ACTOR = 4


class _EncodeBatch:
    """A Ray Data actor: loads the encoder once, then embeds one batch of texts per call."""

    def __init__(self, model: str, device: str, batch_size: int) -> None:
        self._encoder = encoder_from_name(model, device=device)
        self._batch_size = batch_size

    def __call__(
        self, batch: dict[str, npt.NDArray[np.generic]]
    ) -> dict[str, npt.NDArray[np.generic]]:
        texts = [str(text) for text in batch["text"]]
        vectors = self._encoder.encode(texts, batch_size=self._batch_size, show_progress=False)
        return {"position": batch["position"], "vector": vectors}


def embed_with_ray(
    texts: Sequence[str],
    model: str,
    dim: int,
    *,
    address: str | None = None,
    device: str = "auto",
    actors: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Matrix:
    """Return the ``(len(texts), dim)`` embeddings of ``texts`` computed on a Ray cluster.

    ``model`` is an encoder name as a manifest records it (a sentence-transformers name or path,
    or ``hashing:DIM``); ``device`` follows sentence-transformers: ``auto`` uses the cluster's
    GPUs when it has any, ``cpu`` forces CPU actors, ``cuda`` requires GPUs. ``address`` is a
    Ray cluster address; ``None`` starts or attaches to a local cluster. ``actors`` caps the pool
    (default: one per GPU, or one per CPU).
    """
    if not texts:
        raise ConfigError("nothing to embed: the corpus is empty")
    if actors is not None and actors < 1:
        raise ConfigError(f"the Ray actor count must be at least 1, got {actors}")
    import pyarrow as pa

    with ray_session(address) as ray:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        wants_gpu = device.startswith("cuda")
        if wants_gpu and gpus == 0:
            raise ConfigError(
                f"--device {device} asks for GPUs, but the Ray cluster has none; "
                "use --device auto or cpu"
            )
        on_gpu = gpus > 0 and (wants_gpu or device == "auto")
        pool = actors or (gpus if on_gpu else max(1, int(resources.get("CPU", 1))))
        # Ray gives each GPU actor one device, visible to it as the first CUDA device.
        actor_device = "cuda" if on_gpu else ("cpu" if device == "auto" else device)
        logger.info("embedding %d texts on %d %s actors", len(texts), pool, actor_device)

        ray.data.DataContext.get_current().enable_progress_bars = show_progress
        rows = pa.table({"position": np.arange(len(texts), dtype=np.int64), "text": list(texts)})
        block = max(1, math.ceil(len(texts) / (pool * _BLOCKS_PER_ACTOR)))
        blocks = [rows.slice(start, block) for start in range(0, len(texts), block)]
        embedded = ray.data.from_arrow(blocks).map_batches(
            _EncodeBatch,
            fn_constructor_kwargs={
                "model": model,
                "device": actor_device,
                "batch_size": batch_size,
            },
            batch_size=batch_size * 4,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=pool),
            num_gpus=1 if on_gpu else None,
            num_cpus=None if on_gpu else 1,
        )
        out = np.zeros((len(texts), dim), dtype=np.float32)
        filled = np.zeros(len(texts), dtype=bool)
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            positions = batch["position"]
            out[positions] = batch["vector"]
            filled[positions] = True
    if not filled.all():
        missing = int((~filled).sum())
        raise KshotError(f"the Ray job returned no vector for {missing} of {len(texts)} rows")
    return out
