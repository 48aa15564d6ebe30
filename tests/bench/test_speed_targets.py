"""The speed report's target table names the small-index goal beside the others."""

from __future__ import annotations

from kshot.bench.speed.report import targets


def test_the_small_index_ratio_is_a_target_with_its_verdict() -> None:
    def compare(ratio: float) -> dict[str, object]:
        vector = {"latency_ratio_p50": ratio, "latency_ratio_p50_cpu": ratio}
        return {"compare": {"10000": {"n": 10_000, "similarity": {"vector": vector}}}}

    name = "similarity vs LangChain at 10,000: per-query latency >= 2x lower (vector in hand)"
    met = {row[0]: row for row in targets(compare(2.4))}[name]
    assert met[1:] == ("2.4x (cpu 2.4x)", "met")
    assert {row[0]: row for row in targets(compare(0.8))}[name][2] == "missed"
    assert name not in {row[0] for row in targets({})}
