"""Speed benchmark: kshot against LangChain's example selectors, and kshot alone at scale.

One run (:func:`run_speed`) measures, on the same corpus and the same embeddings:

- **vs LangChain** at each size in ``sizes`` (default 10k and 100k): ``similarity`` against
  ``SemanticSimilarityExampleSelector`` and ``mmr`` against ``MaxMarginalRelevanceExampleSelector``,
  both over ``langchain_community.vectorstores.FAISS`` built from the *same* precomputed vectors:
  per-query p50/p99 latency, batch throughput and pick agreement. Two modes:

  - ``vector`` ("with the query vector in hand"): both sides get the query embedding from a
    lookup table of precomputed vectors (a kshot ``Encoder`` and a LangChain ``Embeddings`` that
    read the same table), so the encoder is excluded and everything else is included;
  - ``e2e`` (end to end): both sides run the same MiniLM model on the query text (kshot's query
    LRU cache disabled); kshot's batch call encodes the batch in one model call.

- **MMR re-ranking alone**: kshot's :func:`~kshot._ranking.mmr_batch` (one query at a time)
  against LangChain's ``maximal_marginal_relevance`` on the same ``fetch_k`` candidates (20 and
  1000), same picks.
- **Lexical**: ``jaccard`` against ``NGramOverlapExampleSelector`` on a 4k-example corpus (its
  per-query cost is quadratic in the corpus); ``bm25`` timed alongside.
- **Scale** (``scale``, e.g. 1,000,000): kshot alone: build rate from precomputed vectors, p50/p99
  of ``similarity``, ``mmr``, ``jaccard``, ``bm25``, recall@k of the approximate index against
  exact search, resident memory.
- **HTTP** (``http``): ``POST /v1/select`` on a real ``kshot serve`` process beside a bare
  FastAPI app making the same in-process call (:mod:`kshot.bench.speed.http_peer`) and the call
  itself without HTTP, interleaved: the server's overhead next to the bare round trip.
- **Encoder**: MiniLM sentences/s on CPU (torch), and ONNX fp32 / int8 (dynamic quantisation)
  when ``onnxruntime`` and ``onnx`` import, with top-10 neighbour agreement against torch fp32.

Every timing records wall time (``perf_counter``) and the calling thread's CPU time
(``process_time``: every thread of this process, so FAISS / BLAS / torch worker threads count);
on a shared machine CPU time is the steadier of the two. Ratios compare
numbers taken in the same process, interleaved query by query.

Output directory: ``results.json`` (every number, config, seeds, versions, machine),
``results.md`` (tables, targets met or missed) and ``latency_vs_size.png``.
"""

from kshot.bench.speed.config import SpeedConfig
from kshot.bench.speed.run import main, run_from_argv, run_speed

__all__ = ["SpeedConfig", "main", "run_from_argv", "run_speed"]
