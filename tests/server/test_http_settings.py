"""ServerSettings, the app factory's lifespan, and the metrics text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from kshot.errors import ConfigError, IndexFormatError
from kshot.index import ExampleIndex
from kshot.prompt.budget import WhitespaceCounter
from kshot.server import ServerSettings, create_app
from kshot.server.app import load_counter
from kshot.server.metrics import Metrics


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KSHOT_INDEX", str(tmp_path))
    monkeypatch.setenv("KSHOT_PORT", "9123")
    monkeypatch.setenv("KSHOT_API_KEY", "k")
    monkeypatch.setenv("KSHOT_AUTH", "all")
    monkeypatch.setenv("KSHOT_MAX_K", "8")
    monkeypatch.setenv("KSHOT_ALLOW_ANONYMOUS_WRITES", "true")
    settings = ServerSettings()
    assert settings.index == tmp_path
    assert settings.port == 9123
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "k"
    assert "k" not in repr(settings.api_key)
    assert settings.auth == "all"
    assert settings.max_k == 8
    assert settings.allow_anonymous_writes
    assert ServerSettings(**{"max_k": 3}).max_k == 3  # arguments win over the environment


def test_settings_round_trip_through_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = ServerSettings(
        index=tmp_path, api_key="abc", workers=1, max_batch=7, read_only=True, tokenizer="w x"
    )
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert ServerSettings() == settings


@pytest.mark.parametrize(
    "bad",
    [{"auth": "some"}, {"port": 70000}, {"workers": 0}, {"max_k": 0}, {"unknown_option": 1}],
)
def test_bad_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(**bad)  # type: ignore[arg-type]


def test_several_workers_need_a_read_only_server() -> None:
    with pytest.raises(ValidationError, match="own copy of the index"):
        ServerSettings(workers=4, api_key="k")
    with pytest.raises(ValidationError, match="KSHOT_READ_ONLY"):
        ServerSettings(workers=2, allow_anonymous_writes=True)
    assert ServerSettings(workers=4, api_key="k", read_only=True).workers == 4
    assert ServerSettings(workers=4).workers == 4  # no key, no anonymous writes: read-only


def test_counter_choice() -> None:
    assert isinstance(load_counter(ServerSettings(tokenizer="whitespace")), WhitespaceCounter)


def test_lifespan_loads_and_saves(index_dir: Path) -> None:
    app = create_app(
        ServerSettings(index=index_dir, tokenizer="whitespace", allow_anonymous_writes=True)
    )
    manifest = index_dir / "manifest.json"
    before = manifest.read_text()
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/examples", json={"examples": [{"input": "q", "id": "q"}]}).json()
        # durable when the response returns: a read-only opener beside the server sees it
        with ExampleIndex.load(index_dir, read_only=True) as beside:
            assert beside.get(["q"])[0].input == "q"
    after = manifest.read_text()
    assert before != after
    assert '"count": 25' in after
    assert app.state.kshot.ready is False


def test_readyz_is_503_before_start(index_dir: Path) -> None:
    app = create_app(ServerSettings(index=index_dir, tokenizer="whitespace"))
    client = TestClient(app)  # not entered: the lifespan has not run
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "not_ready"
    assert client.post("/v1/select", json={"query": "card"}).status_code == 503
    assert client.get("/healthz").status_code == 200


def test_read_only_server_does_not_save(index_dir: Path) -> None:
    manifest = index_dir / "manifest.json"
    before = manifest.stat().st_mtime_ns
    app = create_app(ServerSettings(index=index_dir, tokenizer="whitespace", read_only=True))
    with TestClient(app) as client:
        assert client.get("/v1/index").json()["count"] == 24
    assert manifest.stat().st_mtime_ns == before


def test_start_up_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KSHOT_INDEX"), TestClient(create_app(ServerSettings())):
        pass
    app = create_app(ServerSettings(index=tmp_path, tokenizer="whitespace"))
    with pytest.raises(IndexFormatError), TestClient(app):
        pass


def test_apps_are_independent(index_dir: Path, index: ExampleIndex) -> None:
    a = create_app(ServerSettings(max_k=2), index=index, counter=WhitespaceCounter())
    b = create_app(ServerSettings(max_k=50), index=index, counter=WhitespaceCounter())
    with TestClient(a) as ca, TestClient(b) as cb:
        assert ca.post("/v1/select", json={"query": "card", "k": 5}).status_code == 422
        assert cb.post("/v1/select", json={"query": "card", "k": 5}).status_code == 200
        text = ca.get("/metrics").text
        assert 'route="/v1/select",status="422"} 1' in text
        assert 'route="/v1/select",status="200"' not in text


def test_metrics_text() -> None:
    metrics = Metrics()
    metrics.observe("GET", '/a"b', 200, 0.003)
    metrics.observe("GET", '/a"b', 200, 20.0)
    text = metrics.render([("g", "a gauge", lambda: 5.0)])
    assert 'kshot_http_requests_total{method="GET",route="/a\\"b",status="200"} 2' in text
    assert 'le="0.0025"} 0' in text
    assert 'le="0.005"} 1' in text
    assert 'le="10"} 1' in text
    assert 'le="+Inf"} 2' in text
    assert "_count{" in text and "_sum{" in text
    assert text.endswith("g 5\n")


def test_slow_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ServerSettings()
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 30.0)
    assert (defaults.keep_alive_timeout, defaults.max_connections) == (5.0, 1000)
    monkeypatch.setenv("KSHOT_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("KSHOT_BODY_TIMEOUT", "4")
    monkeypatch.setenv("KSHOT_KEEP_ALIVE_TIMEOUT", "1")
    monkeypatch.setenv("KSHOT_MAX_CONNECTIONS", "7")
    settings = ServerSettings()
    assert (settings.header_timeout, settings.body_timeout) == (2.5, 4.0)
    assert (settings.keep_alive_timeout, settings.max_connections) == (1.0, 7)
    assert settings.to_env()["KSHOT_HEADER_TIMEOUT"] == "2.5"
    for bad in ({"header_timeout": 0}, {"body_timeout": -1}, {"max_connections": 0}):
        with pytest.raises(ValidationError):
            ServerSettings(**bad)
