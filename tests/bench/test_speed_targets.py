"""The speed report's target table: the small-index goal beside the others; an earlier run's
figures beside the new ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kshot.bench.speed.report import previous_targets, targets, targets_table
from kshot.errors import ConfigError


def test_the_small_index_ratio_is_a_target_with_its_verdict() -> None:
    def compare(ratio: float) -> dict[str, object]:
        vector = {"latency_ratio_p50": ratio, "latency_ratio_p50_cpu": ratio}
        return {"compare": {"10000": {"n": 10_000, "similarity": {"vector": vector}}}}

    name = "similarity vs LangChain at 10,000: per-query latency >= 2x lower (vector in hand)"
    met = {row[0]: row for row in targets(compare(2.4))}[name]
    assert met[1:] == ("2.4x (cpu 2.4x)", "met")
    assert {row[0]: row for row in targets(compare(0.8))}[name][2] == "missed"
    assert name not in {row[0] for row in targets({})}


def _compare(ratio: float) -> dict[str, object]:
    vector = {"latency_ratio_p50": ratio, "latency_ratio_p50_cpu": ratio}
    run = {"started": "2026-11-24T10:00:00+00:00", "config": {}, "machine": {}}
    return {
        "compare": {"10000": {"n": 10_000, "similarity": {"vector": vector}}},
        "compare_run": run,
    }


def test_an_earlier_runs_figures_sit_beside_the_new_ones(tmp_path: Path) -> None:
    earlier = tmp_path / "results-2026-11-24.json"
    earlier.write_text(json.dumps(_compare(0.8)))
    results = {**_compare(1.5), "previous": previous_targets(earlier)}
    report = "\n".join(targets_table(results))
    assert "Before: `results-2026-11-24.json`, measured 2026-11-24T10:00:00+00:00" in report
    row = next(line for line in report.splitlines() if "at 10,000: per-query latency" in line)
    assert row.endswith("| 0.8x (cpu 0.8x) | 1.5x (cpu 1.5x) | missed |")


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"scale": {}}'])
def test_a_previous_file_that_is_not_a_speed_run_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="--previous"):
        previous_targets(path)
    with pytest.raises(ConfigError, match="not a readable"):
        previous_targets(tmp_path / "missing.json")
