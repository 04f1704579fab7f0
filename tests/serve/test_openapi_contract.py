"""The OpenAPI contract, held by schemathesis against the real Ray Serve app on 127.0.0.1.

Every operation of /openapi.json gets its examples, the coverage phase (boundary values and
schema violations) and fuzzing (positive and negative data), bounded and deterministic, with
every schemathesis check enabled: no 5xx, only documented statuses, bodies and content types
as documented (times are RFC 3339 with an offset), schema-violating requests refused and
schema-valid ones accepted, 405s with a true Allow header, the token ignored nowhere, and
answers within a time limit. One check of our own on top: every error body is
{"detail": "<message>"}, and a schema-valid request is refused (422) only for what no schema
can say, naming it (start not before end, a range over its maximum, a time beyond UTC's years
1-9999, text with a lone surrogate).
The write routes run with the test token; their data is a database and stream prefix of this
module's own.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterator

import pyarrow as pa
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sentinel_ray.config import Settings
from tests.fakes.net import serve_locally
from tests.serve.test_alerts_api import RANGE, seed

pytestmark = pytest.mark.ray

TOKEN = "test-token"
UTC = dt.timezone.utc
# Refusals of schema-valid requests that no JSON schema can express: how two time
# parameters relate, a range's maximum (per interval), whether a valid time exists in UTC,
# and text that JSON can carry but storage cannot (lone surrogates).
_RECORD_REFUSAL = (r"(records\[\d+\]\.\w+|source): (not valid Unicode \(lone surrogate\)"
                   r"|out of the supported range \(years 1 to 9999 in UTC\))")
CROSS_PARAMETER_REFUSALS = re.compile(
    r"start \(.+\) must (be before|not be after) end \(.+\)"
    r"|range of \d+ days is more than the \d+ days allowed for this interval; narrow start/end"
    r"|start/end out of the supported range \(years 1 to 9999 in UTC\)"
    r"|query parameter (start|end|ts): out of the supported range \(years 1 to 9999 in UTC\)"
    rf"|{_RECORD_REFUSAL}(; {_RECORD_REFUSAL})*"
    # a lineage key's values are one per column of the dataset's natural key, typed by that column
    r"|\w+ rows are keyed by [\w, ]+: give \d+ values, got \d+"
    r"|\w+: (not an RFC 3339 time \(.*\)|give the time with its offset \(.+\)|not an integer \(.*\)"
    r"|out of the supported range \(years 1 to 9999 in UTC\)|not valid Unicode \(lone surrogate\))")
SCHEMA_CANNOT_SAY = ["/api/alerts", "/api/data/quality/{dataset}", "/api/data/quarantine", "/api/trending",
                     "/api/stocks/{ticker}/prices", "/api/stocks/{ticker}/posts", "/api/stocks/{ticker}/features",
                     "/api/stocks/{ticker}/filings", "/api/stocks/{ticker}/risk/history", "/api/features/asof",
                     "/api/lineage/{dataset}",
                     "/ingest/prices", "/ingest/posts",
                     "/ingest/filings"]
POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default


@pytest.fixture(scope="module")
def contract_settings(ray_session: None, embedded_redis: str, base_settings: Settings,
                      tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return base_settings.model_copy(update={"warehouse_database": "openapi_contract", "redis_key_prefix": "contract",
                                            "lake_uri": str(tmp_path_factory.mktemp("contract-lake"))})


def _openapi_spec() -> dict[str, Any]:
    from sentinel_ray.serve.routes import api

    return api.openapi()


def _seed_prices(warehouse) -> None:
    from sentinel_ray.schemas import PRICES

    lineage = {"source": "replay", "run_id": "contract", "ingested_at": dt.datetime(2026, 11, 6, tzinfo=UTC)}
    first = dt.datetime(2026, 11, 5, 3, 45, tzinfo=UTC)
    bars = [{"ticker": ticker, "exchange": "NSE", "interval": "1m", "ts": first + dt.timedelta(minutes=i),
             "open": 50.0 + i, "high": 51.0 + i, "low": 49.0 + i, "close": 50.5 + i, "volume": 1000 + i, **lineage}
            for ticker in ("SUZLON", "YESBANK") for i in range(30)]
    warehouse.insert("prices", pa.Table.from_pylist(bars, schema=PRICES.arrow_schema))


@pytest.fixture(scope="module")
def contract_api(contract_settings: Settings) -> Iterator[str]:
    """The Serve app over prices, posts, filings, features, risk and two alerts (one of them the
    alert id the spec gives as its example, so its GET and POST reach a real alert)."""
    from sentinel_ray.detect.run import detect_range
    from sentinel_ray.serve.deployments import build_app
    from sentinel_ray.storage.warehouse import connect_warehouse

    warehouse = connect_warehouse(contract_settings)
    seed(warehouse)
    _seed_prices(warehouse)
    detect_range(warehouse, *RANGE)
    with serve_locally(build_app(contract_settings), name="sentinel-contract-test", ready_path="/health") as base:
        yield base


def _contract_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 20261105,
        "generation": {"mode": "all", "deterministic": True, "database": "none"},
        # every check on, the response time's too (generous: a 2-core machine running Ray)
        "checks": {"enabled": True, "max_response_time": 15.0},
        "auth": {"openapi": {"bearerToken": {"bearer": TOKEN}}},
        "request-timeout": 30,
        # a 422 for schema-valid data only where the schema cannot say it all (and errors_have_one_shape
        # holds those 422s to the reasons CROSS_PARAMETER_REFUSALS lists)
        "operations": [{"include-path": path, "checks": {"positive_data_acceptance": {
            "expected-statuses": [*POSITIVE_ACCEPTED, "422"]}}} for path in SCHEMA_CANNOT_SAY],
    })


# The spec the app serves, read in-process so pytest can parametrize by operation when it
# collects (schemathesis' lazy fixture loader does not run on pytest 9); the requests go to
# the Serve app over HTTP, and test_the_served_spec_is_the_apps checks it serves this spec.
schema = schemathesis.openapi.from_dict(_openapi_spec(), config=_contract_config())


def errors_have_one_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                          case: schemathesis.Case) -> bool | None:
    """Every error is {"detail": "<non-empty text>"}, documented or not (an unknown path's 404, a 405);
    a schema-valid request is refused (422) only for a cross-parameter reason, which it names."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["detail"] and isinstance(body["detail"], str) \
        and body["detail"].strip(), f"error body is not ErrorResponse: {response.text[:300]}"
    meta = case.meta
    if response.status_code == 422 and meta is not None and meta.generation.mode.is_positive:
        assert CROSS_PARAMETER_REFUSALS.fullmatch(body["detail"]), \
            f"schema-valid request refused for a reason the schema could state: {body['detail'][:300]}"
    return None


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_keeps_the_openapi_contract(case: schemathesis.Case, contract_api: str) -> None:
    case.call_and_validate(base_url=contract_api, additional_checks=[errors_have_one_shape])


def test_the_served_spec_is_the_apps_and_documents_every_error(contract_api: str) -> None:
    """The replicas serve the spec tested above, and it lists each route's errors with one body:
    422 wherever there is a parameter or body, 503 wherever a backend answers, 401 and 503 where
    a token is needed, 404 where a ticker or alert is looked up; FastAPI's own 422 body is gone."""
    import requests

    served = requests.get(f"{contract_api}/openapi.json", timeout=30)
    assert served.status_code == 200 and served.json() == _openapi_spec()
    spec = served.json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    error_body = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            errors = {int(status): r for status, r in responses.items() if int(status) >= 400}
            if path == "/ready":  # its 503 is the readiness report itself
                assert list(errors) == [503], where
                continue
            assert all(r["content"]["application/json"]["schema"] == error_body for r in errors.values()), where
            if path != "/health":
                assert 503 in errors, where
            if operation.get("parameters") or operation.get("requestBody"):
                assert 422 in errors, where
            if operation.get("security"):
                assert {401, 503} <= set(errors), where
            if "{ticker}" in path or "{alert_id}" in path or path == "/api/alerts":
                assert 404 in errors, where

