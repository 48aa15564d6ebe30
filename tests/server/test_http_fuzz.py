"""schemathesis against a real ``python -m kshot.server``: the OpenAPI document tells the truth.

Bounded (a fixed seed, few examples per operation) so that it fits the default suite; every phase
runs (examples, coverage, fuzzing, stateful), with and without the API key, and any finding of
the checks below fails the test with what schemathesis reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.engine import events, from_schema  # noqa: E402

KEY = "fuzz-key"
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
#: Examples per operation and phase; with the coverage phase this gives a few hundred cases.
MAX_EXAMPLES = 3


@dataclass
class Outcome:
    cases: int = 0
    findings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: set[str] = field(default_factory=set)


def fuzz(url: str, document: dict[str, Any], headers: dict[str, str]) -> Outcome:
    """Run every phase against ``url``, sending ``headers``; collect cases and findings."""
    config = SchemathesisConfig.from_dict(
        {
            "base-url": url,
            "seed": 1,
            "workers": 1,
            "cache": {"enabled": False},
            "headers": headers,
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": 4},
            },
        }
    )
    schema = schemathesis.openapi.from_dict(document, config=config)
    outcome = Outcome()
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseStarted):
            outcome.phases.add(event.phase.name.value)
        recorder = getattr(event, "recorder", None)
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)) and recorder:
            outcome.cases += len(recorder.cases)
            for checks in recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        outcome.findings.append(
                            f"{check.name}: {failure.title}: {failure.message}\n"
                            f"{check.failure_info.code_sample}"
                        )
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            outcome.errors.append(repr(getattr(event, "value", getattr(event, "exception", ""))))
    return outcome


@pytest.mark.parametrize(
    "with_key",
    # Without a key the same routes are fuzzed minus the auth checks: slow (about 20 s) and
    # mostly covered by the keyed run, so it runs with -m slow.
    [True, pytest.param(False, marks=pytest.mark.slow)],
    ids=["with key", "without key"],
)
def test_the_openapi_document_holds_under_fuzzing(
    real_server: Callable[..., Any], with_key: bool, tmp_path: Path
) -> None:
    # With a collections directory, so that creating collections is fuzzed too.
    server = real_server(
        KSHOT_API_KEY=KEY,
        KSHOT_AUTH="all",
        KSHOT_LOG_LEVEL="warning",
        KSHOT_COLLECTIONS_DIR=str(tmp_path / "collections"),
    )
    key = {"Authorization": f"Bearer {KEY}"}
    # The document is behind the key too (auth="all"): fetch it with the key, fuzz with or without.
    document = httpx.get(f"{server.url}/openapi.json", headers=key, timeout=30).json()
    outcome = fuzz(server.url, document, key if with_key else {})
    print(f"schemathesis: {outcome.cases} cases, phases {sorted(outcome.phases)}")
    assert not outcome.errors, outcome.errors[:3]
    assert not outcome.findings, "\n\n".join(outcome.findings[:5])
    assert outcome.cases >= 100


def test_every_error_is_documented_with_the_real_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["ErrorBody"]["required"]) == {"type", "message"}
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"413", "503"} <= set(responses), (method, path)
            if method in {"post", "patch"}:
                assert {"400", "408", "415", "422"} <= set(responses), (method, path)
            if method in {"post", "patch", "delete"} and path.startswith("/v1/examples"):
                assert {"401", "403"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == ref
    # The server answers each kind with that body.
    r = client.post("/v1/select", json={"k": True})
    assert r.status_code == 422 and set(r.json()["error"]) >= {"type", "message"}
