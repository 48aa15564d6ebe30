"""Error bodies come from the error's data (class, field, valid), never from its message."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kshot.errors import ConfigError, DataError, FilterError
from kshot.selector.params import SelectorParams
from kshot.server.errors import install_error_handlers


def test_a_bad_parameter_value_names_the_field_and_the_valid_values(client: TestClient) -> None:
    body = {"query": "block my card", "selector": "mmr", "params": {"lambda": 7}}
    error = client.post("/v1/select", json=body).json()["error"]
    assert error["type"] == "config_error"
    assert error["field"] == "lambda"
    assert "valid" not in error  # a range, not a list of values: the message states it


def test_an_unknown_parameter_lists_the_known_ones(client: TestClient) -> None:
    body = {"query": "block my card", "selector": "mmr", "params": {"lamda": 0.3}}
    error = client.post("/v1/select", json=body).json()["error"]
    assert error["field"] == "lamda"
    assert "lambda" in error["valid"]


def test_the_body_uses_the_data_not_the_message() -> None:
    # A message that looks like other context must not leak into the body's fields.
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/data")
    def data() -> None:
        raise DataError("field 'x' is bad; valid values: a, b", field="y", valid=("c",))

    @app.get("/bare")
    def bare() -> None:
        raise ConfigError("field 'x' is bad; valid values: a, b")

    with TestClient(app) as client:
        assert client.get("/data").json()["error"] == {
            "type": "data_error",
            "message": "field 'x' is bad; valid values: a, b",
            "field": "y",
            "valid": ["c"],
        }
        assert set(client.get("/bare").json()["error"]) == {"type", "message"}


def test_selector_param_errors_carry_their_context() -> None:
    from kshot.selector.mmr import MMRParams

    with pytest.raises(ConfigError) as info:
        MMRParams.from_mapping({"fetch_k": "many"}, selector="mmr")
    assert (info.value.field, info.value.value) == ("fetch_k", "many")
    assert issubclass(MMRParams, SelectorParams)
    with pytest.raises(FilterError) as bad:
        from kshot.index.filters import filter_values

        filter_values({"label": [True]})
    assert (bad.value.field, bad.value.value) == ("label", True)
