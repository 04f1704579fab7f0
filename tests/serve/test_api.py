"""The HTTP API on Ray Serve, over real HTTP on 127.0.0.1, backed by the backfilled warehouse."""
from __future__ import annotations

import time
from typing import Iterator

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below
import pytest
import requests

from tests.fakes.net import serve_locally

pytestmark = pytest.mark.ray




@pytest.fixture(scope="module")
def api(backfilled) -> Iterator[str]:
    from sentinel_ray.serve.deployments import build_app

    settings, *_ = backfilled
    with serve_locally(build_app(settings), name="sentinel-test", ready_path="/health") as base:
        yield base


def test_health_and_ready(api: str) -> None:
    assert requests.get(f"{api}/health").json() == {"status": "ok"}
    ready = requests.get(f"{api}/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "checks": {"redis": True, "warehouse": True, "lake": True}}


def test_openapi_docs(api: str) -> None:
    response = requests.get(f"{api}/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    for path in ("/api/stocks", "/api/stocks/{ticker}/prices", "/api/stocks/{ticker}/posts", "/health", "/ready",
                 "/api/data/pipelines"):
        assert path in spec["paths"], path
    assert requests.get(f"{api}/docs").status_code == 200


def test_stocks_lists_known_symbols_with_latest_price(api: str) -> None:
    stocks = {s["ticker"]: s for s in requests.get(f"{api}/api/stocks").json()}
    assert len(stocks) >= 50
    reliance = stocks["RELIANCE"]
    assert reliance["bars"] > 0 and reliance["last_close"] > 0 and "NSE" in reliance["exchanges"]


def test_prices_by_interval(api: str, backfilled) -> None:
    _, _, start, end = backfilled
    params = {"start": "2026-11-05", "end": "2026-11-06"}
    minute = requests.get(f"{api}/api/stocks/tcs/prices", params=params).json()
    assert minute["ticker"] == "TCS" and minute["interval"] == "1m"
    assert 370 <= len(minute["bars"]) <= 375  # a few injected bad bars may be missing
    hourly = requests.get(f"{api}/api/stocks/TCS/prices", params={**params, "interval": "1h"}).json()["bars"]
    assert len(hourly) == 7  # 03:45-09:59 UTC touches hours 3..9
    assert sum(b["volume"] for b in hourly) == sum(b["volume"] for b in minute["bars"])
    assert max(b["high"] for b in hourly) == max(b["high"] for b in minute["bars"])
    daily = requests.get(f"{api}/api/stocks/TCS/prices",
                         params={"start": "2026-11-01", "end": "2026-11-12", "interval": "1d"}).json()["bars"]
    assert 1 <= len(daily) <= 3  # trading days of 5..9 Nov, in IST
    assert daily[0]["open"] == minute["bars"][0]["open"]


def test_posts_mentioning_a_ticker(api: str) -> None:
    body = requests.get(f"{api}/api/stocks/RELIANCE/posts",
                        params={"start": "2026-11-05", "end": "2026-11-10", "limit": 5}).json()
    assert 1 <= len(body["posts"]) <= 5
    assert all("RELIANCE" in p["tickers"] for p in body["posts"])
    assert [p["ts"] for p in body["posts"]] == sorted((p["ts"] for p in body["posts"]), reverse=True)


def test_pipelines_lists_the_backfill(api: str, backfilled) -> None:
    _, summary, *_ = backfilled
    runs = requests.get(f"{api}/api/data/pipelines").json()
    assert summary.run_id in {r["run_id"] for r in runs}


@pytest.mark.parametrize("path, params, status, fragment", [
    ("/api/stocks/NOTREAL/prices", {}, 404, "unknown ticker 'NOTREAL'"),
    ("/api/stocks/NOTREAL/posts", {}, 404, "unknown ticker"),
    ("/api/stocks/TCS/prices", {"start": "yesterday"}, 422, "start"),
    ("/api/stocks/TCS/prices", {"start": "2026-11-06", "end": "2026-11-05"}, 422, "must be before end"),
    ("/api/stocks/TCS/prices", {"start": "2026-01-01", "end": "2026-11-05"}, 422, "narrow start/end"),
    ("/api/stocks/TCS/prices", {"interval": "5m"}, 422, "interval"),
    ("/api/stocks/TCS/prices", {"exchange": "NYSE"}, 422, "exchange"),
    ("/api/stocks/TCS/posts", {"limit": "0"}, 422, "limit"),
    ("/api/stocks/TCS/posts", {"limit": "abc"}, 422, "limit"),
])
def test_bad_input_gets_a_clear_4xx(api: str, path: str, params: dict, status: int, fragment: str) -> None:
    response = requests.get(f"{api}{path}", params=params)
    assert response.status_code == status, response.text
    assert fragment in response.text


TOKEN = {"Authorization": "Bearer test-token"}
WEBHOOK_POSTS = [
    {"platform": "telegram", "post_id": "hook/1", "author": "bot", "text": "$SUZLON target 80 by Friday",
     "ts": "2026-11-06T05:00:00+05:30", "tickers": ["SUZLON"]},
    {"platform": "telegram", "post_id": "hook/2", "text": "YESBANK operator news, buy now", "ts": "2026-11-06T05:01:00Z",
     "tickers": ["YESBANK"], "engagement": 12},
    {"platform": "telegram", "post_id": "hook/3", "text": "gm", "ts": "2026-11-06T05:02:00Z", "tickers": []},
]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "test-token"}])
def test_webhook_refuses_a_wrong_or_missing_token(api: str, headers: dict) -> None:
    response = requests.post(f"{api}/ingest/posts", json={"records": WEBHOOK_POSTS}, headers=headers)
    assert response.status_code == 401 and "token" in response.json()["detail"]


@pytest.mark.parametrize("body, fragment", [
    ({"records": "not a list"}, "records"),
    ({"records": []}, "records"),
    ({"records": [{"text": 123.5}]}, "text"),
    ({"records": [{"post_id": "x", "likes": 3}]}, "likes"),
    ({"records": [{"ts": "not a time"}]}, "ts"),
    ({"source": "", "records": [{"text": "hello world"}]}, "source"),
])
def test_webhook_rejects_malformed_bodies(api: str, body: dict, fragment: str) -> None:
    response = requests.post(f"{api}/ingest/posts", json=body, headers=TOKEN)
    assert response.status_code == 422, response.text
    assert fragment in response.text


def test_webhook_rejects_unknown_datasets_and_non_json(api: str) -> None:
    assert requests.post(f"{api}/ingest/pipeline_runs", json={"records": [{}]}, headers=TOKEN).status_code == 422
    response = requests.post(f"{api}/ingest/posts", data=b"{not json", headers={**TOKEN, "Content-Type":
                                                                                   "application/json"})
    assert response.status_code == 422


def test_webhook_records_reach_the_warehouse_through_the_stream(api: str, backfilled) -> None:
    from sentinel_ray.ingest.supervisor import Supervisor
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    consumers = Supervisor(settings.model_copy(update={"sources_enabled": [], "batch_max_wait_s": 0.2}))
    consumers.start()
    try:
        response = requests.post(f"{api}/ingest/posts", json={"source": "tg-bot", "records": WEBHOOK_POSTS},
                                 headers=TOKEN)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 3
        wh = connect_warehouse(settings)
        deadline = time.monotonic() + 60
        rows: list = []
        while time.monotonic() < deadline:
            rows = wh.query_rows("SELECT post_id, source, ts FROM {db}.posts FINAL WHERE source = 'tg-bot' "
                                 "ORDER BY post_id")
            if len(rows) == 2:
                break
            time.sleep(0.2)
        assert [r["post_id"] for r in rows] == ["hook/1", "hook/2"]
        assert rows[0]["ts"].replace(tzinfo=None).isoformat() == "2026-11-05T23:30:00"  # +05:30 -> UTC
        quarantined = Lake(settings.resolved_lake_uri).read("quarantine", "posts")
        mine = quarantined.filter(pa.compute.equal(quarantined.column("source"), "tg-bot")).to_pylist()
        assert [(r["post_id"], r["reject_reason"]) for r in mine] == [("hook/3", "text_length")]
    finally:
        consumers.stop()


def test_freshness_per_dataset_and_source(api: str) -> None:
    rows = requests.get(f"{api}/api/data/freshness").json()
    replay = {r["dataset"]: r for r in rows if r["source"] == "replay"}
    assert replay["prices"]["rows"] > 0 and replay["prices"]["age_s"] >= 0
    assert replay["posts"]["newest_event_ts"] is not None


def test_quality_overview_and_per_dataset(api: str, backfilled) -> None:
    overview = requests.get(f"{api}/api/data/quality").json()
    prices = overview["datasets"]["prices"]
    assert prices["rows_in"] > 0 and prices["rejected"]["duplicate"] > 0
    assert {s["source"] for s in prices["sources"]} >= {"replay"}
    assert prices["completeness"]["ticker"] == 1.0
    detail = requests.get(f"{api}/api/data/quality/prices", params={"bucket": "day"}).json()
    assert detail["rejected"] == prices["rejected"] and detail["trend"][-1]["rows_in"] > 0
    assert requests.get(f"{api}/api/data/quality/prices", params={"bucket": "week"}).status_code == 422
    assert requests.get(f"{api}/api/data/quality/nope").status_code == 422


def test_quarantine_listing(api: str, backfilled) -> None:
    rows = requests.get(f"{api}/api/data/quarantine", params={"dataset": "prices", "rule": "ohlc_inconsistent",
                                                              "limit": 5}).json()
    assert 1 <= len(rows) <= 5 and {r["reject_reason"] for r in rows} == {"ohlc_inconsistent"}
    assert all(r["high"] < r["low"] for r in rows)
    assert requests.get(f"{api}/api/data/quarantine").status_code == 422  # dataset is required
    bad = requests.get(f"{api}/api/data/quarantine", params={"dataset": "prices", "start": "2026-11-09",
                                                             "end": "2026-11-01"})
    assert bad.status_code == 422


def test_pipeline_health_and_runs(api: str, backfilled) -> None:
    _, summary, *_ = backfilled
    health = {p["pipeline"]: p for p in requests.get(f"{api}/api/data/pipelines/health").json()}
    assert health["backfill"]["status"] == "healthy" and health["backfill"]["runs"] >= 1
    runs = requests.get(f"{api}/api/data/pipelines/backfill/runs", params={"limit": 10}).json()
    assert summary.run_id in {r["run_id"] for r in runs}
    assert requests.get(f"{api}/api/data/pipelines/Bad-Name/runs").status_code == 422


def test_requests_are_measured_per_route() -> None:
    from sentinel_ray.serve.http_metrics import RequestMetricsMiddleware
    from sentinel_ray.serve.routes import api

    assert any(m.cls is RequestMetricsMiddleware for m in api.user_middleware)


@pytest.mark.parametrize("path, params", [
    ("/api/stocks/TCS/prices", {"start": "0001-01-01T00:00:00+05:00", "end": "2026-11-06"}),
    ("/api/stocks/TCS/prices", {"end": "0001-01-01"}),
])
def test_extreme_dates_are_a_422_not_a_5xx(api: str, path: str, params: dict) -> None:
    assert requests.get(f"{api}{path}", params=params).status_code == 422


def test_webhook_out_of_range_numbers_are_a_422(api: str) -> None:
    body = {"records": [{"platform": "x", "post_id": "big", "text": "hello there", "engagement": 10 ** 20}]}
    response = requests.post(f"{api}/ingest/posts", json=body, headers=TOKEN)
    assert response.status_code == 422 and "engagement" in response.text


def test_two_sources_of_the_same_bars_are_not_counted_twice(api: str, backfilled) -> None:
    """Runs last in this module: it adds Yahoo bars for INFY beside the replay's."""
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    params = {"start": "2026-11-05", "end": "2026-11-06"}
    replay = requests.get(f"{api}/api/stocks/INFY/prices", params=params).json()["bars"]
    wh = connect_warehouse(settings)
    table = wh.query_arrow("SELECT * FROM {db}.prices FINAL WHERE ticker = 'INFY' AND toDate(ts) = '2026-11-05'")
    yahoo = table.set_column(table.schema.get_field_index("source"), "source",
                             pa.array(["yahoo"] * table.num_rows))
    yahoo = yahoo.set_column(yahoo.schema.get_field_index("close"), "close",
                             pa.compute.add(yahoo.column("close"), 0.05))
    wh.insert("prices", yahoo)

    both = requests.get(f"{api}/api/stocks/INFY/prices", params=params).json()["bars"]
    assert len(both) == len(replay)  # one bar per minute, not two
    assert all(abs(b["close"] - r["close"] - 0.05) < 1e-6 for b, r in zip(both, replay))  # Yahoo is preferred
    hourly = requests.get(f"{api}/api/stocks/INFY/prices", params={**params, "interval": "1h"}).json()["bars"]
    assert sum(b["volume"] for b in hourly) == sum(b["volume"] for b in replay)  # volume not doubled
    only_replay = requests.get(f"{api}/api/stocks/INFY/prices", params={**params, "source": "replay"}).json()
    assert [b["close"] for b in only_replay["bars"]] == [b["close"] for b in replay]
    assert both[0]["ts"].endswith(("Z", "+00:00"))  # times say they are UTC
    stocks = {s["ticker"]: s for s in requests.get(f"{api}/api/stocks").json()}
    [distinct] = wh.query_rows("SELECT uniqExact(ts) AS n FROM {db}.prices FINAL WHERE ticker = 'INFY' "
                               "AND interval = '1m'")
    assert stocks["INFY"]["bars"] == distinct["n"]  # every minute once, whichever sources have it


def test_official_daily_bars_are_preferred_to_roll_ups(api: str, backfilled) -> None:
    """Runs last: adds an NSE daily bar for TCS on 2026-11-05 (00:00 IST = 18:30 UTC the day before)."""
    import datetime as dt

    from sentinel_ray.schemas import PRICES
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    params = {"start": "2026-11-01", "end": "2026-11-12", "interval": "1d"}
    before = requests.get(f"{api}/api/stocks/TCS/prices", params=params).json()["bars"]
    session = dt.datetime(2026, 11, 4, 18, 30, tzinfo=dt.timezone.utc)
    official = {"ticker": "TCS", "exchange": "NSE", "interval": "1d", "ts": session, "open": 1.0, "high": 3.0,
                "low": 0.5, "close": 2.0, "volume": 123, "source": "nse", "run_id": "t",
                "ingested_at": dt.datetime.now(dt.timezone.utc)}
    connect_warehouse(settings).insert("prices", pa.Table.from_pylist([official], schema=PRICES.arrow_schema))
    after = requests.get(f"{api}/api/stocks/TCS/prices", params=params).json()["bars"]
    assert len(after) == len(before)
    day = next(b for b in after if b["ts"].startswith("2026-11-04T18:30"))
    assert (day["open"], day["close"], day["volume"]) == (1.0, 2.0, 123)
    assert [b for b in after if b is not day] == [b for b in before if not b["ts"].startswith("2026-11-04T18:30")]
