"""The HTTP part of ``kshot bench speed``: the bare FastAPI peer and the report's rows."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from kshot.bench.speed.http_peer import build_app
from kshot.bench.speed.report import targets, write_markdown
from kshot.index import ExampleIndex, HashingEncoder
from kshot.server.app import create_app
from kshot.server.settings import ServerSettings

ROWS = [{"input": f"how do I {verb} my card {i}", "output": verb} for i, verb in
        enumerate(["block", "top up", "activate", "cancel", "replace", "freeze"] * 3)]  # fmt: skip


def test_the_peer_makes_the_same_call_as_kshots_route(tmp_path: Path) -> None:
    ExampleIndex.build(ROWS, HashingEncoder(64), path=tmp_path / "index").close()
    body = {"query": "block the card", "k": 3, "selector": "similarity"}
    with TestClient(build_app(tmp_path / "index")) as peer:
        bare = peer.post("/v1/select", json=body).json()
    settings = ServerSettings(index=tmp_path / "index", read_only=True, tokenizer="whitespace")
    with TestClient(create_app(settings)) as kshot:
        served = kshot.post("/v1/select", json=body).json()
    assert len(bare["examples"]) == 3
    assert bare == served


def test_the_report_sets_the_figure_beside_its_goal(tmp_path: Path) -> None:
    arm = {"n": 300, "p50_ms": 2.0, "p99_ms": 3.0, "mean_ms": 2.1}
    http = {
        "n": 10_000, "encoder": "hashing:384", "selector": "similarity", "k": 4,
        "arms": {"kshot": arm, "bare_fastapi": {**arm, "p50_ms": 1.8}, "in_process": arm},
        "kshot_overhead_p50_ms": 1.2, "bare_fastapi_round_trip_p50_ms": 1.0,
        "kshot_minus_bare_p50_ms": 0.2, "kshot_minus_bare_paired_median_ms": 0.21,
        "ratio_p50": 1.11, "goal_ms": 0.3, "goal_met": True, "loadavg_after": [1.0, 1.0, 1.0],
    }  # fmt: skip
    rows = {name: (measured, verdict) for name, measured, verdict in targets({"http": http})}
    name = (
        "HTTP: kshot's server overhead within 0.3 ms of a bare FastAPI round trip (paired median)"
    )
    assert rows[name][1] == "met"
    assert "0.20 ms apart" in rows[name][0]
    missed = {**http, "kshot_minus_bare_paired_median_ms": 0.9, "goal_met": False}
    assert dict((n, v) for n, _, v in targets({"http": missed}))[name] == "missed"
    assert dict((n, v) for n, _, v in targets({}))[name] == "not measured"
    write_markdown({"http": http}, tmp_path / "results.md")
    text = (tmp_path / "results.md").read_text()
    assert "## HTTP: `kshot serve` vs a bare FastAPI app" in text
    assert "| bare_fastapi | 1.800 |" in text


def test_markdown_names_the_machine_from_the_run_record(tmp_path: Path) -> None:
    """The header reads the machine fields that ``capture_environment`` writes."""
    from kshot.bench.environment import capture_environment

    run = capture_environment({"threads": 1}, "cpu")
    write_markdown({"http_run": run}, tmp_path / "results.md")
    text = (tmp_path / "results.md").read_text()
    machine = run["machine"]
    assert isinstance(machine, dict)
    assert f"{machine['cpu_count']} CPUs" in text
    assert f"load average at start {machine['load_average_at_start']}" in text
