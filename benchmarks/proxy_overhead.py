"""What the OpenAI-compatible proxy adds to a chat request, beside the selection it does.

Three measurements, sequential requests over one keep-alive connection each (loopback only):

1. direct: ``POST /v1/chat/completions`` straight to a fast stand-in upstream (a constant
   chat completion from a minimal Starlette app under uvicorn, in its own process);
2. proxied: the same request through ``kshot serve INDEX --upstream <stand-in>`` (a real server
   process), which selects k examples, inserts them and forwards;
3. selection, in this process: the proxy's own select + assemble-within-budget step for the
   same queries, index and token counter, without HTTP.

``added = proxied - direct`` is what the proxy costs; ``added - selection`` is the cost of the
proxying itself (parsing, forwarding, the second hop), the figure the goal (<= 2 ms at p50)
is about. Queries cycle through distinct texts. The client, the proxy and the stand-in share the
machine's cores; on a shared machine the figures move with the load of others, so the arms are
interleaved request by request (direct, proxied, ...), each meeting the same load.

``--baseline SRC`` also serves the proxy from another kshot source tree (e.g. the commit before
a change, from ``git worktree add`` or ``git archive``) as a fourth arm, interleaved with the
others, and measures that tree's selection step too: before and after in the same sitting.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/proxy_overhead.py [--requests 300] [--examples 2000]
        [--k 4] [--baseline SRC] [--out benchmarks/results/proxy]

The index is built with the deterministic hashing encoder (``--encoder hashing``, no model) or
the bundled all-MiniLM-L6-v2 (``--encoder minilm``); budgets count SmolLM2 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
ACTIONS = ["activate", "block", "top up", "cancel", "order", "find", "freeze", "replace", "close"]
THINGS = ["card", "account", "transfer", "pin", "loan", "statement", "payment"]
ANSWER = {
    "id": "chatcmpl-0",
    "object": "chat.completion",
    "created": 0,
    "model": "stand-in",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stand_in(port: int) -> None:
    """Run the fast stand-in upstream (this file with ``--stand-in PORT``)."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(ANSWER)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def wait_until(url: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not up after {timeout} s")


def queries(n: int) -> list[str]:
    return [
        f"how can I {ACTIONS[i % len(ACTIONS)]} the {THINGS[(i // 3) % len(THINGS)]} today {i}"
        for i in range(n)
    ]


def corpus(n: int) -> list[dict[str, Any]]:
    return [
        {
            "input": f"please {ACTIONS[i % len(ACTIONS)]} my {THINGS[i % len(THINGS)]} ref {i}",
            "output": f"To {ACTIONS[i % len(ACTIONS)]} it, open the app and choose option {i % 9}.",
            "label": THINGS[i % len(THINGS)],
        }
        for i in range(n)
    ]


def interleaved(
    client: httpx.Client,
    urls: dict[str, str],
    bodies: list[dict[str, Any]],
    warm: int,
    pids: dict[str, int],
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each body sent to every URL in turn (the order rotating): milliseconds per arm, and
    the CPU milliseconds per request each server process (``pids``) spent after the warm-up.

    CPU time is what the machine's load does not inflate: a busy machine makes every wake-up
    wait for a core, which wall time counts and CPU time does not.
    """
    from kshot.bench.speed.timing import process_cpu_seconds as cpu_seconds

    names = list(urls)
    out: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = {}
    for i, body in enumerate(bodies):
        if i == warm:
            cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            start = time.perf_counter()
            client.post(urls[name], json=body).raise_for_status()
            if i >= warm:
                out[name].append((time.perf_counter() - start) * 1000)
    served = len(bodies) - warm
    per_request = {
        name: (cpu_seconds(pid) - cpu[name]) * 1000 / served for name, pid in pids.items()
    }
    return out, per_request


def summary(ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": statistics.median(ms), "p99": cuts[98], "mean": statistics.fmean(ms)}


def selection_ms(index_dir: Path, texts: list[str], k: int, budget: int, warm: int) -> list[float]:
    """The proxy's select + assemble step in process, with the server's own code and counter."""
    from kshot.index import ExampleIndex
    from kshot.server.app import load_counter
    from kshot.server.collections import DEFAULT_COLLECTION, Collection
    from kshot.server.deps import LockedCounter, ServerState
    from kshot.server.openai_schemas import KshotOptions
    from kshot.server.proxy import _examples_for
    from kshot.server.settings import ServerSettings

    settings = ServerSettings(index=index_dir, device="cpu")
    index = ExampleIndex.load(index_dir, device="cpu", read_only=True)
    state = ServerState(settings, index=index, ready=True)
    collection = Collection(DEFAULT_COLLECTION, index)
    state.counter = LockedCounter(load_counter(settings))
    options = KshotOptions(k=k, max_example_tokens=budget)
    for text in texts[:warm]:
        _examples_for(state, collection, text, options)
    out = []
    cpu_start = time.process_time()
    for text in texts[warm:]:
        start = time.perf_counter()
        _examples_for(state, collection, text, options)
        out.append((time.perf_counter() - start) * 1000)
    # The last entry: CPU milliseconds per call (every thread of this process).
    out.append((time.process_time() - cpu_start) * 1000 / (len(texts) - warm))
    return out


def baseline_selection_ms(
    src: Path, index_dir: Path, texts: list[str], k: int, budget: int, warm: int
) -> list[float]:
    """:func:`selection_ms` run by the baseline tree's own code, in a subprocess."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from proxy_overhead import "
        "selection_ms; from pathlib import Path; a = json.loads(sys.argv[2]); "
        "print(json.dumps(selection_ms(Path(a['index']), a['texts'], a['k'], a['budget'], "
        "a['warm'])))"
    )
    args = {"index": str(index_dir), "texts": texts, "k": k, "budget": budget, "warm": warm}
    env = {**os.environ, "PYTHONPATH": str(src)}
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", code, here, json.dumps(args)],
        env=env, cwd=src, check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def build_index(path: Path, n: int, encoder: str) -> None:
    from kshot.index import ExampleIndex, HashingEncoder, SentenceTransformerEncoder

    enc = HashingEncoder(256) if encoder == "hashing" else SentenceTransformerEncoder(device="cpu")
    ExampleIndex.build(corpus(n), enc, path=path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warm-up", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-example-tokens", type=int, default=400)
    parser.add_argument("--encoder", choices=["hashing", "minilm"], default="hashing")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy"))
    parser.add_argument("--baseline", type=Path, help="another kshot source tree to compare")
    parser.add_argument("--stand-in", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stand_in:
        stand_in(args.stand_in)
        return 0
    n = args.requests + args.warm_up
    texts = queries(n)
    kshot_opts = {"k": args.k, "max_example_tokens": args.max_example_tokens}
    bodies = [
        {"model": "stand-in", "messages": [{"role": "user", "content": t}], "kshot": kshot_opts}
        for t in texts
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        build_index(index_dir, args.examples, args.encoder)
        up_port = free_port()
        try:
            procs.append(
                subprocess.Popen([sys.executable, __file__, "--stand-in", str(up_port)], env=env)
            )
            up = f"http://{HOST}:{up_port}"
            wait_until(up + "/", procs[-1])
            urls = {"direct": up + "/v1/chat/completions"}
            pids = {"direct": procs[-1].pid}
            trees = {"proxied": None} if args.baseline is None else {
                "proxied": None, "baseline_proxied": args.baseline}  # fmt: skip
            for name, src in trees.items():
                port = free_port()
                serve = ["-c", "from kshot.cli import main; main()", "serve", str(index_dir)]
                serve += ["--port", str(port), "--read-only", "--device", "cpu"]
                serve += ["--upstream", up + "/v1"]
                tree_env = {**env, "KSHOT_LOG_LEVEL": "warning"}
                if src is not None:
                    tree_env["PYTHONPATH"] = str(src)
                # ``python -c`` imports from its working directory first: run in the tree.
                procs.append(subprocess.Popen([sys.executable, *serve], env=tree_env, cwd=src))
                proxy = f"http://{HOST}:{port}"
                wait_until(proxy + "/healthz", procs[-1])
                urls[name] = proxy + "/v1/chat/completions"
                pids[name] = procs[-1].pid
            with httpx.Client(timeout=30) as client:
                ms, cpu = interleaved(client, urls, bodies, args.warm_up, pids)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
        budget = args.max_example_tokens
        ms["selection"] = selection_ms(index_dir, texts, args.k, budget, args.warm_up)
        cpu["selection"] = ms["selection"].pop()
        if args.baseline is not None:
            ms["baseline_selection"] = baseline_selection_ms(
                args.baseline, index_dir, texts, args.k, budget, args.warm_up
            )
            cpu["baseline_selection"] = ms["baseline_selection"].pop()
    figures = {name: summary(values) for name, values in ms.items()}
    d = figures["direct"]

    def minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {q: a[q] - b[q] for q in ("p50", "p99", "mean")}

    figures["added"] = minus(figures["proxied"], d)
    figures["added_beyond_selection"] = minus(figures["added"], figures["selection"])
    beyond = figures["added_beyond_selection"]
    if args.baseline is not None:
        figures["baseline_added"] = minus(figures["baseline_proxied"], d)
        figures["baseline_added_beyond_selection"] = minus(
            figures["baseline_added"], figures["baseline_selection"]
        )
    cpu_beyond = {"proxied": cpu["proxied"] - cpu["selection"]}
    if args.baseline is not None:
        cpu_beyond["baseline_proxied"] = cpu["baseline_proxied"] - cpu["baseline_selection"]
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/proxy_overhead.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "stand_in"
        },
        "ms": figures,
        "cpu_ms_per_request": cpu,
        "cpu_ms_beyond_selection": cpu_beyond,
        "goal": "added_beyond_selection p50 <= 2 ms",
        "goal_met": beyond["p50"] <= 2.0,
        "versions": {
            pkg: version(pkg)
            for pkg in ("kshot", "fastapi", "uvicorn", "httpx", "starlette", "torch", "faiss-cpu")
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "omp_num_threads": env["OMP_NUM_THREADS"],
            "note": "client, proxies and stand-in share these cores; the machine was "
            "shared with other work while this ran; arms interleaved request by request",
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        f"| {name} | {v['p50']:.2f} | {v['p99']:.2f} | {v['mean']:.2f} |"
        for name, v in result["ms"].items()
    ]
    md = [
        "# Proxy overhead",
        "",
        f"`{result['command']}`",
        "",
        f"{args.requests} sequential requests per arm after {args.warm_up} warm-up, k={args.k}, "
        f"{args.examples} examples ({args.encoder} encoder), example budget "
        f"{args.max_example_tokens} SmolLM2 tokens; {os.cpu_count()} CPU cores shared by the "
        "client, the proxy and the stand-in upstream, on a machine shared with other work "
        f"(load average {result['machine']['loadavg_after'][0]} at the end); the arms are "
        "interleaved request by request, so each meets the same load"
        + (
            "; `baseline_*` rows are the proxy served from the tree given as `--baseline`."
            if args.baseline is not None
            else "."
        ),
        "",
        "| ms | p50 | p99 | mean |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        "CPU milliseconds per request of each server process (user + system, after the "
        "warm-up; `selection`: this process's CPU per selection step), which the machine's "
        "load does not inflate as it does wall time; `direct` is the stand-in upstream's own:",
        "",
        "| process | CPU ms per request | beyond selection |",
        "|---|---:|---:|",
        *[
            f"| {name} | {value:.2f} | "
            + (f"{cpu_beyond[name]:.2f} |" if name in cpu_beyond else "- |")
            for name, value in cpu.items()
        ],
        "",
        "Goal (added beyond selection, p50 <= 2 ms): "
        + ("met." if result["goal_met"] else "not met."),
        "The p99 rows of `added` are differences of two p99s, not a p99 of differences.",
        "",
    ]
    (args.out / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
