"""Bounded HTTP load test of ``kshot serve`` on a BANKING77 index (loopback only).

What it measures, in this order (each phase bounded by a request count and a time cap):

1. the real server (``python -m kshot.server``, one uvicorn worker, the same code path as
   ``kshot serve``) on 127.0.0.1: requests/s, p50 and p99 of ``POST /v1/select`` and
   ``POST /v1/prompt`` (k=4, selector ``mmr``), from N concurrent client threads, each with its
   own ``httpx.Client`` (keep-alive);
2. a bare FastAPI app returning a constant (one uvicorn worker, a sync endpoint like kshot's),
   under the same load, for scale: the ceiling of the HTTP stack on these cores;
3. in process, after the server is stopped: p50/p99 of encode + select (mmr, k=4) + assemble for
   one query, without HTTP;
4. the encoder alone on the same cores: one query per call (queries/s) and batches of 64 (texts/s).

Every phase uses its own slice of distinct BANKING77 test queries, so the encoder's query cache
never answers. The client threads run on the same machine as the server, so on a small machine
they compete for the same cores; the report says how many cores there were.

Usage::

    python benchmarks/http_load.py [--requests 400] [--concurrency 8] [--time-cap 60]
        [--index DIR] [--out FILE.json]

The index is built once with the real all-MiniLM-L6-v2 model into ``--index`` (default
``$KSHOT_CACHE/bench/banking77-minilm`` or ``~/.cache/kshot/bench/banking77-minilm``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
K = 4
SELECTOR = "mmr"

log = logging.getLogger("http_load")


def cache_root() -> Path:
    root = os.environ.get("KSHOT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "kshot") / "bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def ensure_index(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    from kshot.api import build_index
    from kshot.data import load_dataset

    log.info("building the BANKING77 index with all-MiniLM-L6-v2 into %s ...", path)
    started = time.perf_counter()
    build_index(load_dataset("banking77", "train"), path, device="cpu")
    log.info("built in %.1f s", time.perf_counter() - started)
    return path


def test_queries() -> list[str]:
    from kshot.data import load_dataset

    seen: dict[str, None] = {}
    for example in load_dataset("banking77", "test"):
        seen.setdefault(example.input, None)
    return list(seen)


# -- servers -----------------------------------------------------------------------------------


class Server:
    """A server subprocess on a free loopback port, stopped with SIGTERM."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int) -> None:
        self.url = f"http://{HOST}:{port}"
        self.proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def wait_ready(self, path: str, timeout: float) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{err[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_kshot(
    index: Path, tokenizer: str | None, torch_threads: int | None
) -> tuple[Server, float]:
    port = free_port()
    env = {"KSHOT_INDEX": str(index), "KSHOT_HOST": HOST, "KSHOT_PORT": str(port),
           "KSHOT_DEVICE": "cpu", "KSHOT_LOG_LEVEL": "warning"}  # fmt: skip
    if tokenizer:
        env["KSHOT_TOKENIZER"] = tokenizer
    if torch_threads:
        env["OMP_NUM_THREADS"] = str(torch_threads)  # torch's intra-op pool reads it at start
    server = Server([sys.executable, "-m", "kshot.server"], env, port)
    return server, server.wait_ready("/readyz", 300)


def start_bare() -> tuple[Server, float]:
    port = free_port()
    server = Server([sys.executable, __file__, "--_bare", str(port)], {}, port)
    return server, server.wait_ready("/const", 60)


def run_bare(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/const")
    @app.get("/const")
    def const() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


# -- load --------------------------------------------------------------------------------------


def load(
    url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    time_cap: float,
) -> dict[str, Any]:
    """POST each body once (or until ``time_cap``) from ``concurrency`` threads."""
    lock = threading.Lock()
    next_item = iter(range(len(bodies)))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    deadline = time.perf_counter() + time_cap

    def worker() -> None:
        with httpx.Client(timeout=60) as http:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(next_item, None)
                if i is None:
                    return
                started = time.perf_counter()
                try:
                    r = http.post(url, json=bodies[i])
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = 0
                    errors.append(repr(exc))
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

    # one warm-up request per connection path, outside the measurement
    httpx.post(url, json=bodies[0], timeout=60)
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 1) if wall else None,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": errors[:3],
        "hit_time_cap": len(latencies) < len(bodies),
    }


# -- in process --------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


OVERHEAD_PAIRS = 100


def load_in_process(
    index_dir: Path, tokenizer: str | None, torch_threads: int | None
) -> tuple[Any, Any]:
    """The index (encoder warmed) and a prompt assembler, as the server builds them."""
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    from kshot.index import ExampleIndex
    from kshot.prompt import PromptAssembler, WhitespaceCounter, default_counter
    from kshot.prompt.budget import HFTokenCounter, TokenCounter

    index = ExampleIndex.load(index_dir, device="cpu")
    index.encoder.encode(["warm-up"])
    counter: TokenCounter
    if tokenizer is None:
        counter = default_counter()
    elif tokenizer == "whitespace":
        counter = WhitespaceCounter()
    else:
        counter = HFTokenCounter(tokenizer)
    return index, PromptAssembler(counter=counter)


def interleaved_overhead(
    url: str,
    index_dir: Path,
    tokenizer: str | None,
    queries: list[str],
    torch_threads: int | None,
) -> dict[str, Any]:
    """The server's own cost: HTTP prompt calls and the same work in process, alternated.

    Alternating one HTTP call (one client, nothing else in flight) with one in-process
    encode + select + assemble exposes both to the same background load, so the difference of
    their medians is the HTTP layer's cost, not the machine's mood.
    """
    from kshot.selector import SelectorSpec, build_selector

    index, assembler = load_in_process(index_dir, tokenizer, torch_threads)
    selector = build_selector(index, SelectorSpec(SELECTOR, {}))
    http_ms: list[float] = []
    local_ms: list[float] = []
    with httpx.Client(timeout=60) as client:
        for i, query in enumerate(queries):
            started = time.perf_counter()
            if i % 2 == 0:
                response = client.post(
                    url + "/v1/prompt", json={"query": query, "k": K, "selector": SELECTOR}
                )
                response.raise_for_status()
                http_ms.append((time.perf_counter() - started) * 1000)
            else:
                assembler.assemble(query, selector.select(query, K))
                local_ms.append((time.perf_counter() - started) * 1000)
    http_p50 = statistics.median(http_ms)
    local_p50 = statistics.median(local_ms)
    return {
        "pairs": len(local_ms),
        "http_prompt_p50_ms": round(http_p50, 2),
        "in_process_p50_ms": round(local_p50, 2),
        "overhead_p50_ms": round(http_p50 - local_p50, 2),
    }


def in_process(
    index_dir: Path,
    tokenizer: str | None,
    queries: list[str],
    enc_queries: list[str],
    torch_threads: int | None,
) -> dict[str, Any]:
    import torch

    from kshot.selector import SelectorSpec, build_selector

    index, assembler = load_in_process(index_dir, tokenizer, torch_threads)
    encoder = index.encoder
    it = iter(queries)

    def select_and_assemble() -> None:
        query = next(it)
        selector = build_selector(index, SelectorSpec(SELECTOR, {}))
        found = selector.select(query, K)
        assembler.assemble(query, found)

    half = len(queries) // 2
    full = timed(select_and_assemble, half)
    it2 = iter(queries[half:])

    def select_only() -> None:
        build_selector(index, SelectorSpec(SELECTOR, {})).select(next(it2), K)

    sel = timed(select_only, len(queries) - half)

    singles = enc_queries[:200]
    it3 = iter(singles)
    one = timed(lambda: encoder.encode([next(it3)]), len(singles))
    batch_texts = enc_queries[200:]
    started = time.perf_counter()
    for start in range(0, len(batch_texts), 64):
        encoder.encode(batch_texts[start : start + 64])
    batch_s = time.perf_counter() - started

    return {
        "encode_select_assemble": {
            "n": len(full),
            "p50_ms": round(percentile(full, 50) * 1000, 2),
            "p99_ms": round(percentile(full, 99) * 1000, 2),
        },
        "encode_select": {
            "n": len(sel),
            "p50_ms": round(percentile(sel, 50) * 1000, 2),
            "p99_ms": round(percentile(sel, 99) * 1000, 2),
        },
        "encoder_single": {
            "n": len(one),
            "p50_ms": round(percentile(one, 50) * 1000, 2),
            "queries_per_s": round(len(one) / sum(one), 1),
        },
        "encoder_batch64": {
            "n": len(batch_texts),
            "texts_per_s": round(len(batch_texts) / batch_s, 1),
        },
        "torch_threads": torch.get_num_threads(),
        "tokenizer": assembler.counter.name,
    }


# -- report ------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    http = result["http"]
    ip = result["in_process"]
    rows = [
        "| measurement | req/s (or items/s) | p50 ms | p99 ms | statuses |",
        "|---|---:|---:|---:|---|",
    ]
    for name in ("select", "prompt", "bare_fastapi"):
        r = http[name]
        label = {"select": "HTTP POST /v1/select (mmr, k=4)",
                 "prompt": "HTTP POST /v1/prompt (mmr, k=4)",
                 "bare_fastapi": "HTTP bare FastAPI constant"}[name]  # fmt: skip
        rows.append(
            f"| {label} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['statuses']} |"
        )
    esa, es = ip["encode_select_assemble"], ip["encode_select"]
    rows.append(
        f"| in-process encode+select+assemble | {round(1000 / esa['p50_ms'], 1)} (1 thread) | "
        f"{esa['p50_ms']} | {esa['p99_ms']} | - |"
    )
    rows.append(
        f"| in-process encode+select | {round(1000 / es['p50_ms'], 1)} (1 thread) | "
        f"{es['p50_ms']} | {es['p99_ms']} | - |"
    )
    one, b64 = ip["encoder_single"], ip["encoder_batch64"]
    rows.append(
        f"| encoder alone, 1 query/call | {one['queries_per_s']} | {one['p50_ms']} | - | - |"
    )
    rows.append(f"| encoder alone, batches of 64 | {b64['texts_per_s']} texts/s | - | - | - |")
    over = result.get("overhead")
    if over:
        rows.append(
            f"| interleaved: HTTP /v1/prompt vs in-process, {over['pairs']} pairs | - | "
            f"{over['http_prompt_p50_ms']} vs {over['in_process_p50_ms']} "
            f"(overhead {over['overhead_p50_ms']}) | - | - |"
        )
    env = result["environment"]
    head = (
        f"kshot HTTP load: {result['index']['count']} BANKING77 examples, encoder "
        f"{result['index']['encoder']}, {result['config']['concurrency']} client threads, "
        f"{result['config']['requests']} requests per endpoint, {env['cpus']} CPUs, "
        f"{env['platform']}, torch threads {result['in_process']['torch_threads']}, "
        f"load average before the run {env['loadavg']}"
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per endpoint")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument("--in-process", type=int, default=200, help="in-process queries")
    parser.add_argument("--index", type=Path, default=cache_root() / "banking77-minilm")
    parser.add_argument("--tokenizer", default=None, help="KSHOT_TOKENIZER (default model's)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads for the server (OMP_NUM_THREADS) and in process",
    )
    parser.add_argument("--out", type=Path, default=cache_root() / "http_load.json")
    parser.add_argument("--_bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._bare is not None:
        run_bare(args._bare)
        return 0

    total_started = time.perf_counter()
    index_dir = ensure_index(args.index)
    queries = test_queries()
    n = args.requests
    need = 2 * n + args.in_process + 200 + 640 + OVERHEAD_PAIRS * 2
    if len(queries) < need:
        raise SystemExit(f"only {len(queries)} distinct test queries; lower --requests")
    select_q = queries[:n]
    prompt_q = queries[n : 2 * n]
    inproc_q = queries[2 * n : 2 * n + args.in_process]
    enc_q = queries[2 * n + args.in_process : need - OVERHEAD_PAIRS * 2]
    overhead_q = queries[need - OVERHEAD_PAIRS * 2 : need]

    result: dict[str, Any] = {
        "config": {
            "requests": n,
            "concurrency": args.concurrency,
            "time_cap_s": args.time_cap,
            "k": K,
            "selector": SELECTOR,
            "host": HOST,
            "torch_threads": args.torch_threads,
        },
        "environment": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        "http": {},
    }
    server, ready_s = start_kshot(index_dir, args.tokenizer, args.torch_threads)
    try:
        result["server_ready_s"] = round(ready_s, 2)
        info = httpx.get(server.url + "/v1/index", timeout=10).json()
        result["index"] = {k: info[k] for k in ("count", "encoder", "dimension", "factory")}
        common = {"k": K, "selector": SELECTOR}
        result["http"]["select"] = load(
            server.url + "/v1/select",
            [{"query": q, **common} for q in select_q],
            concurrency=args.concurrency,
            time_cap=args.time_cap,
        )
        log.info("select: %s", result["http"]["select"])
        result["http"]["prompt"] = load(
            server.url + "/v1/prompt",
            [{"query": q, **common} for q in prompt_q],
            concurrency=args.concurrency,
            time_cap=args.time_cap,
        )
        log.info("prompt: %s", result["http"]["prompt"])
        result["overhead"] = interleaved_overhead(
            server.url, index_dir, args.tokenizer, overhead_q, args.torch_threads
        )
        log.info("overhead: %s", result["overhead"])
    finally:
        server.stop()
    bare, _ = start_bare()
    try:
        result["http"]["bare_fastapi"] = load(
            bare.url + "/const",
            [{"query": q} for q in select_q],
            concurrency=args.concurrency,
            time_cap=args.time_cap,
        )
        log.info("bare: %s", result["http"]["bare_fastapi"])
    finally:
        bare.stop()
    result["in_process"] = in_process(
        index_dir, args.tokenizer, inproc_q, enc_q, args.torch_threads
    )
    result["total_s"] = round(time.perf_counter() - total_started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("results\n%s", markdown(result))
    log.info("JSON: %s (total %s s)", args.out, result["total_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
