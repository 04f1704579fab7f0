"""The HTTP API on Ray Serve, over real HTTP on 127.0.0.1, backed by the backfilled warehouse."""
from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import socket
import time
from typing import Iterable, Iterator
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute below
import pytest
import requests
from pydantic import TypeAdapter

from sentinel_ray.serve.models import StockSummary
from tests.fakes.net import serve_locally

pytestmark = pytest.mark.ray




def _after_a_write(read, ok, within_s: float = 2.0):
    """`read()` until `ok(answer)`: the API answers a write within a second (kept responses
    retire when the replica hears of the write on the cache's channel), not instantly."""
    deadline = time.monotonic() + within_s
    answer = read()
    while not ok(answer) and time.monotonic() < deadline:
        time.sleep(0.05)
        answer = read()
    return answer


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


def test_stocks_lists_the_symbols_with_data_and_all_on_request(api: str) -> None:
    response = requests.get(f"{api}/api/stocks")
    assert response.status_code == 200, response.text
    stocks = {s["ticker"]: s for s in response.json()}
    assert len(stocks) >= 50
    reliance = stocks["RELIANCE"]
    assert reliance["bars"] > 0 and reliance["last_close"] > 0 and "NSE" in reliance["exchanges"]
    assert all(s["bars"] > 0 or s["risk_score"] is not None or s["open_alerts"] for s in stocks.values())
    every = requests.get(f"{api}/api/stocks", params={"all": "true"})
    assert every.status_code == 200, every.text
    universe = {s["ticker"]: s for s in every.json()}
    assert len(universe) > 1500 and set(stocks) < set(universe)  # the tracked symbols, ~2,000
    assert all(universe[t] == s for t, s in stocks.items())
    assert any(s["bars"] == 0 and s["last_ts"] is None for s in universe.values())  # nothing stored yet
    # rendered from pre-made rows plus one model per symbol with data: the very bytes FastAPI
    # makes of list[StockSummary] from the same values
    summaries = TypeAdapter(list[StockSummary])
    for body in (response.content, every.content):
        assert body == summaries.dump_json(summaries.validate_json(body))


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


NOT_A_TIME = "not a valid time: give an RFC 3339 date-time with an offset"


@pytest.mark.parametrize("path, params, status, detail", [
    ("/api/stocks/NOTREAL/prices", {}, 404, "unknown ticker 'NOTREAL'"),
    ("/api/stocks/NOTREAL/posts", {}, 404, "unknown ticker"),
    ("/api/stocks/TCS/prices", {"start": "yesterday"}, 422, f"query parameter start: {NOT_A_TIME}"),
    ("/api/stocks/TCS/prices", {"end": "2026-13-45"}, 422, f"query parameter end: {NOT_A_TIME}"),
    ("/api/stocks/TCS/prices", {"end": "2026-11-05T04:00:00"}, 422, f"query parameter end: {NOT_A_TIME}"),  # naive
    ("/api/stocks/TCS/prices", {"end": "2026-11-05 04:00:00Z"}, 422, f"query parameter end: {NOT_A_TIME}"),
    ("/api/stocks/TCS/prices", {"end": "0.5"}, 422, f"query parameter end: {NOT_A_TIME}"),  # no Unix seconds
    ("/api/stocks/TCS/prices", {"start": "2026-11-05T23:59:60+05:30"}, 422, "query parameter start: not a valid "
                                                                            "time (a leap second is 23:59:60 UTC)"),
    ("/api/stocks/TCS/prices", {"start": "2026-11-06", "end": "2026-11-05"}, 422,
     "start (2026-11-06T00:00:00+00:00) must be before end (2026-11-05T00:00:00+00:00)"),
    ("/api/stocks/TCS/prices", {"start": "2026-01-01", "end": "2026-11-05"}, 422,
     "range of 308 days is more than the 31 days allowed for this interval; narrow start/end"),
    ("/api/stocks/TCS/prices", {"interval": "5m"}, 422, "query parameter interval: Input should be '1m', '1h' or '1d'"),
    ("/api/stocks/TCS/prices", {"exchange": "NYSE"}, 422, "query parameter exchange: String should match pattern"),
    ("/api/stocks/TCS/posts", {"limit": "0"}, 422, "query parameter limit: Input should be greater than or equal to 1"),
    ("/api/stocks/TCS/posts", {"limit": "abc"}, 422, "query parameter limit: Input should be a valid integer"),
    ("/api/data/quarantine", {"dataset": "prices", "end": "2026-11-31"}, 422,
     "query parameter end: not a valid date: give one like 2026-11-05"),
    ("/api/data/quarantine", {}, 422, "query parameter dataset: required"),
    ("/api/nothing/here", {}, 404, "no such path: see /docs for the API's routes"),
])
def test_bad_input_gets_a_clear_4xx(api: str, path: str, params: dict, status: int, detail: str) -> None:
    """Every refusal has one body, {"detail": "<text naming the parameter>"}: ours, FastAPI's
    parameter checks and Starlette's unknown path alike."""
    response = requests.get(f"{api}{path}", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    assert body["detail"].startswith(detail), body


def test_dates_and_offsets_are_read_as_the_times_they_name(api: str) -> None:
    """A date is its midnight UTC; an offset is honoured; the answer's range says so in UTC."""
    for start, end in (("2026-11-05", "2026-11-06"), ("2026-11-05T05:30:00+05:30", "2026-11-05T19:00:00-05:00"),
                       ("2026-11-05T00:00:00z", "2026-11-06t00:00:00Z")):
        body = requests.get(f"{api}/api/stocks/TCS/prices", params={"start": start, "end": end}).json()
        assert (body["start"], body["end"]) == ("2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z"), (start, end)
        assert 370 <= len(body["bars"]) <= 375


def test_a_method_a_path_does_not_have_is_a_405_naming_the_ones_it_has(api: str) -> None:
    response = requests.delete(f"{api}/api/alerts/SUZLON-NSE-20261105T0410Z")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST"
    assert response.json() == {"detail": "method DELETE not allowed here; allowed: GET, POST"}


_TIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _times(value: object) -> Iterator[str]:
    """Every string in a JSON value that reads as a date-time."""
    if isinstance(value, str) and _TIME_TEXT.match(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _times(item)
    elif isinstance(value, list):
        for item in value:
            yield from _times(item)


@pytest.mark.parametrize("path, params", [
    ("/api/stocks", {}),
    ("/api/stocks/RELIANCE/prices", {"start": "2026-11-05", "end": "2026-11-06"}),
    ("/api/stocks/RELIANCE/posts", {"start": "2026-11-05", "end": "2026-11-10"}),
    ("/api/stocks/RELIANCE/features", {"start": "2026-11-05", "end": "2026-11-06"}),
    ("/api/stocks/RELIANCE/features", {"start": "2026-11-01", "end": "2026-11-10", "interval": "1d"}),
    ("/api/trending", {"end": "2026-11-06T00:00:00Z"}),
    ("/api/data/pipelines", {}),
    ("/api/data/pipelines/health", {}),
    ("/api/data/freshness", {}),
    ("/api/data/quality", {}),
    ("/api/data/quality/prices", {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}),
])
def test_every_time_in_a_response_says_it_is_utc(api: str, path: str, params: dict) -> None:
    """RFC 3339 with the offset, UTC: the warehouse's naive times are made aware before they
    are answered, in typed responses and in the untyped ones (pipelines, freshness, quality)."""
    response = requests.get(f"{api}{path}", params=params)
    assert response.status_code == 200, response.text
    times = list(_times(response.json()))
    assert times, f"{path} answered no time to check"
    naive = [t for t in times if not t.endswith(("Z", "+00:00"))]
    assert not naive, naive[:5]


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
    ({"records": [{"text": 123.5}]}, "records[0].text: Input should be a valid string"),
    ({"records": [{"post_id": "x", "likes": 3}]}, "records[0].likes: Extra inputs are not permitted"),
    ({"records": [{"ts": "not a time"}]}, "records[0].ts: not an RFC 3339 date-time with an offset"),
    # the documented schema's types exactly: no naive time, no number for a time, no "5" or false for 5
    ({"records": [WEBHOOK_POSTS[0], {"ts": "2026-11-06T05:00:00"}]}, "records[1].ts: not an RFC 3339 date-time"),
    ({"records": [{"ts": 1793000000}]}, "records[0].ts: not an RFC 3339 date-time"),
    ({"records": [{"engagement": "5"}]}, "records[0].engagement: Input should be a valid integer"),
    ({"records": [{"engagement": False}]}, "records[0].engagement: Input should be a valid integer"),
    ({"records": [{"tickers": "TCS"}]}, "records[0].tickers: Input should be a valid list"),
    ({"source": "", "records": [{"text": "hello world"}]}, "source"),
    ({"source": " \t", "records": [{"text": "hello world"}]}, "source"),
])
def test_webhook_rejects_malformed_bodies(api: str, body: dict, fragment: str) -> None:
    response = requests.post(f"{api}/ingest/posts", json=body, headers=TOKEN)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_webhook_rejects_unknown_datasets_and_non_json(api: str) -> None:
    assert requests.post(f"{api}/ingest/pipeline_runs", json={"records": [{}]}, headers=TOKEN).status_code == 422
    response = requests.post(f"{api}/ingest/posts", data=b"{not json", headers={**TOKEN, "Content-Type":
                                                                                   "application/json"})
    assert response.status_code == 422


def _post(api: str, raw: bytes, dataset: str = "posts", content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{api}/ingest/{dataset}", data=raw, headers={**TOKEN, "Content-Type": content_type})


def _body(*records, source: str = "fuzz-bot") -> bytes:
    """JSON as Python writes it: lone surrogates escaped (\\ud800), NaN and Infinity allowed."""
    return json.dumps({"source": source, "records": list(records)}).encode()


def _max_body_bytes(backfilled) -> int:
    settings, *_ = backfilled
    return getattr(settings, "webhook_max_body_bytes", 8 * 1024 * 1024)


def _stream_entries(backfilled, dataset: str, source: str) -> list:
    """The entries of `dataset`'s stream that `source` pushed (consuming them does not delete them)."""
    from sentinel_ray.ingest.streams import Entry, StreamStore
    from sentinel_ray.storage.redis import connect_redis

    settings, *_ = backfilled
    streams = StreamStore(connect_redis(settings.resolved_redis_url), settings.redis_key_prefix)
    entries = [Entry.from_redis(i, f) for i, f in streams.redis.xrange(streams.stream_key(dataset))]
    return [e for e in entries if e.source == source]


def _raw_request(api: str, head: str, body: Iterable[bytes] = ()) -> tuple[int, dict]:
    """Send a request by hand (headers, then `body` as given, never finished by us) and read the answer."""
    url = urlparse(api)
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(head.encode())
        for part in body:
            sock.sendall(part)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


@pytest.mark.parametrize("field", ["text", "author"])
def test_webhook_lone_surrogate_is_a_422_naming_the_record_and_field(api: str, backfilled, field: str) -> None:
    records = [{**r, "post_id": f"sur-{field}/{i}"} for i, r in enumerate(WEBHOOK_POSTS * 2)]
    records[3][field] = "pump \ud800 now"
    response = _post(api, _body(*records, source="surrogate-bot"))
    assert response.status_code == 422, response.text
    assert response.json() == {"detail": f"records[3].{field}: not valid Unicode (lone surrogate)"}
    assert _stream_entries(backfilled, "posts", "surrogate-bot") == []  # nothing of the body is kept


def test_webhook_body_over_the_limit_is_a_413_before_it_is_read(api: str, backfilled) -> None:
    limit = _max_body_bytes(backfilled)
    head = ("POST /ingest/posts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test-token\r\n"
            "Content-Type: application/json\r\n")
    # Content-Length says too much: answered with none of the body sent.
    status, body = _raw_request(api, head + f"Content-Length: {limit + 1}\r\n\r\n")
    assert status == 413 and body == {"detail": f"body larger than {limit} bytes: send fewer records per request"}
    # Chunked, no Content-Length: cut off once the bytes pass the limit; the body never even ends.
    payload = (b'{"records": [{"text": "' + b"x" * limit)[:limit + 1]  # passes the limit at its last byte
    step = 1024 * 1024
    chunks = [b"%x\r\n%s\r\n" % (len(payload[i:i + step]), payload[i:i + step]) for i in range(0, limit + 1, step)]
    status, body = _raw_request(api, head + "Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert status == 413 and body["detail"].startswith("body larger than")
    # A huge string through requests (Content-Length set): the same 413.
    huge = _body({"platform": "x", "post_id": "huge", "text": "x" * (limit + 1)}, source="huge-bot")
    response = _post(api, huge)
    assert response.status_code == 413, response.text[:300]
    # A chunked body under the limit is read whole and accepted.
    chunked = iter([_body({**WEBHOOK_POSTS[0], "post_id": "chunk/1"}, source="chunk-bot")])
    response = requests.post(f"{api}/ingest/posts", data=chunked, headers={**TOKEN, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    assert [e.rows for e in _stream_entries(backfilled, "posts", "chunk-bot")] == [1]
    assert _stream_entries(backfilled, "posts", "huge-bot") == []


DEEP = b"[" * 50_000 + b"]" * 50_000
POST = {"platform": "telegram", "post_id": "fuzz/bad", "text": "hello there", "ts": "2026-11-06T05:00:00Z"}
MALFORMED: list[tuple[str, bytes, str]] = [  # dataset, body, Content-Type
    *[("posts", raw, "application/json") for raw in (
        b"", b"{not json", b"[]", b"null", b'"records"', b"123", b"{}", DEEP, b'{"records": ' + DEEP + b"}",
        b'{"records": [{"text": "\xff\xfe"}]}', b'{"records": [' + b"9" * 5000 + b"]}", b'{"records": NaN}',
        _body(), _body(source=""), _body(POST, source=5), _body(POST, source="s" * 65),
        _body(POST, source="bot\ud800"), json.dumps({"records": "x"}).encode(), json.dumps({"records": {}}).encode(),
        _body(1, 2), _body([]), _body(None), _body("text"),
        _body({**POST, "text": "\ud800"}), _body({**POST, "author": "\udfff"}), _body({**POST, "post_id": "\udc00"}),
        _body({**POST, "tickers": ["SUZLON", "\ud800"]}), _body({**POST, "\ud800": 1}),
        _body({**POST, "engagement": float("nan")}), _body({**POST, "engagement": float("inf")}),
        _body({**POST, "engagement": float("-inf")}), _body({**POST, "engagement": 2**63}),
        _body({**POST, "engagement": -(2**63) - 1}), _body({**POST, "engagement": 1.5}),
        _body({**POST, "engagement": "many"}), _body({**POST, "text": 123}), _body({**POST, "text": {"a": [1]}}),
        _body({**POST, "tickers": "SUZLON"}), _body({**POST, "tickers": json.loads(DEEP[:800] + DEEP[-800:])}),
        _body({**POST, "ts": "0001-01-01T00:00:00+05:00"}), _body({**POST, "ts": "9999-12-31T23:59:59-05:00"}),
        _body({**POST, "ts": 1e20}), _body({**POST, "ts": True}), _body({**POST, "ts": "yesterday"}),
        _body({**POST, "likes": 3}), _body({**POST, "ingested_at": "2026-11-06T05:00:00Z"}),
        _body(*[{}] * 10_001),
    )],
    ("posts", _body(POST), "text/plain"),
    ("posts", _body(POST), "application/x-www-form-urlencoded"),
    ("pipeline_runs", _body(POST), "application/json"),
    ("nope", _body(POST), "application/json"),
    ("POSTS", _body(POST), "application/json"),
    ("prices", _body({"ticker": "TCS", "close": float("nan")}), "application/json"),
    ("prices", _body({"ticker": "TCS", "volume": 2**63}), "application/json"),
    ("filings", _body({"exchange": "NSE", "subject": "\ud800"}), "application/json"),
]


def test_webhook_fuzz_never_a_500_and_only_the_good_posts_are_kept(api: str, backfilled) -> None:
    good = [{**r, "post_id": f"fuzz/{i}"} for i, r in enumerate(WEBHOOK_POSTS)]
    statuses = []
    for n, (dataset, raw, content_type) in enumerate(MALFORMED):
        if n in (10, 30):  # good posts between the bad ones
            assert _post(api, _body(*good[:2] if n == 10 else good[2:])).status_code == 202
        response = _post(api, raw, dataset, content_type)
        assert 400 <= response.status_code < 500, (n, response.status_code, response.text[:300])
        body = response.json()
        assert list(body) == ["detail"] and isinstance(body["detail"], str) and len(body["detail"]) < 2000, n
        statuses.append(response.status_code)
    assert set(statuses) == {415, 422}
    entries = _stream_entries(backfilled, "posts", "fuzz-bot")
    assert [e.rows for e in entries] == [2, 1]
    assert [pid for e in entries for pid in e.table.column("post_id").to_pylist()] == ["fuzz/0", "fuzz/1", "fuzz/2"]
    assert _stream_entries(backfilled, "prices", "fuzz-bot") == _stream_entries(backfilled, "filings", "fuzz-bot") == []


def test_webhook_records_reach_the_warehouse_through_the_stream(api: str, backfilled) -> None:
    from sentinel_ray.ingest.supervisor import Supervisor
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    consumers = Supervisor(settings.model_copy(update={"sources_enabled": [], "batch_max_wait_s": 0.2}))
    consumers.start()
    try:
        for bad in ({"text": "\ud800"}, {"engagement": float("nan")}, {"ts": "9999-12-31T23:59:59-05:00"}):
            refused = [*WEBHOOK_POSTS, {**WEBHOOK_POSTS[0], "post_id": "hook/bad", **bad}]
            assert _post(api, _body(*refused, source="tg-bot")).status_code == 422  # none of these rows is kept
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
    from sentinel_ray.ingest.serving import serving_for
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
    serving = serving_for(settings, wh)  # as every writer does: roll-ups, cache, then the version moves
    serving.on_prices(yahoo, batch_key="test-yahoo-infy")
    serving.on_stored()

    both = _after_a_write(lambda: requests.get(f"{api}/api/stocks/INFY/prices", params=params).json()["bars"],
                          lambda bars: bars and abs(bars[0]["close"] - replay[0]["close"] - 0.05) < 1e-6)
    assert len(both) == len(replay)  # one bar per minute, not two
    assert all(abs(b["close"] - r["close"] - 0.05) < 1e-6 for b, r in zip(both, replay))  # Yahoo is preferred
    hourly = requests.get(f"{api}/api/stocks/INFY/prices", params={**params, "interval": "1h"}).json()["bars"]
    assert sum(b["volume"] for b in hourly) == sum(b["volume"] for b in replay)  # volume not doubled
    assert hourly[-1]["close"] == both[-1]["close"]  # the roll-ups follow the preferred source too
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

    from sentinel_ray.ingest.serving import serving_for
    from sentinel_ray.schemas import PRICES
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    params = {"start": "2026-11-01", "end": "2026-11-12", "interval": "1d"}
    before = requests.get(f"{api}/api/stocks/TCS/prices", params=params).json()["bars"]
    session = dt.datetime(2026, 11, 4, 18, 30, tzinfo=dt.timezone.utc)
    official = {"ticker": "TCS", "exchange": "NSE", "interval": "1d", "ts": session, "open": 1.0, "high": 3.0,
                "low": 0.5, "close": 2.0, "volume": 123, "source": "nse", "run_id": "t",
                "ingested_at": dt.datetime.now(dt.timezone.utc)}
    wh = connect_warehouse(settings)
    wh.insert("prices", pa.Table.from_pylist([official], schema=PRICES.arrow_schema))
    serving_for(settings, wh).on_stored()  # as every writer does: kept responses retire
    after = _after_a_write(lambda: requests.get(f"{api}/api/stocks/TCS/prices", params=params).json()["bars"],
                           lambda bars: any(b["volume"] == 123 for b in bars))
    assert len(after) == len(before)
    day = next(b for b in after if b["ts"].startswith("2026-11-04T18:30"))
    assert (day["open"], day["close"], day["volume"]) == (1.0, 2.0, 123)
    assert [b for b in after if b is not day] == [b for b in before if not b["ts"].startswith("2026-11-04T18:30")]


def test_lineage_of_a_stored_row(api: str, backfilled) -> None:
    settings, *_ = backfilled
    from sentinel_ray.storage.warehouse import connect_warehouse

    row = connect_warehouse(settings).query_rows(
        "SELECT ticker, ts, close, raw_id, raw_pos FROM {db}.prices FINAL WHERE interval = '1m' AND source = 'replay' "
        "ORDER BY ticker, ts LIMIT 1")[0]
    ts = row["ts"].replace(tzinfo=dt.timezone.utc).isoformat()
    r = requests.get(f"{api}/api/lineage/prices", params=[("key", v) for v in (row["ticker"], "NSE", "1m", "replay", ts)])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["raw"]["raw_id"] == row["raw_id"] and body["raw"]["raw_pos"] == row["raw_pos"]
    assert body["raw"]["record"]["close"] == row["close"] and body["run"]["pipeline"] == "backfill"
    assert body["raw"]["received_at"].endswith(("Z", "+00:00"))
    missing = requests.get(f"{api}/api/lineage/prices",
                           params=[("key", v) for v in ("TCS", "NSE", "1m", "replay", "2001-01-01T00:00:00Z")])
    assert missing.status_code == 404 and "no prices row" in missing.json()["detail"]
    short = requests.get(f"{api}/api/lineage/prices", params={"key": "TCS"})
    assert short.status_code == 422 and "keyed by ticker, exchange" in short.json()["detail"]


def test_latest_value_cache_answers_like_the_warehouse_and_follows_writes(api: str, backfilled) -> None:
    """/api/stocks and the risk route read the Redis cache the writers keep: it says what the
    warehouse says, moves with a stored batch (once, however often the batch is stored), and
    is rebuilt from the warehouse when Redis has lost it."""
    import redis

    from sentinel_ray.ingest.serving import latest_risks, open_alert_counts, serving_for
    from sentinel_ray.schemas import PRICES
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, *_ = backfilled
    wh = connect_warehouse(settings)

    def truth(ticker: str) -> dict:
        [row] = wh.query_rows("SELECT uniqExact(ts) AS bars, argMax(close, ts) AS close FROM (SELECT ts, close FROM "
                              "{db}.prices FINAL WHERE ticker = {t:String} AND exchange = 'NSE' AND interval = '1m' "
                              "ORDER BY ts, source = 'yahoo' DESC LIMIT 1 BY ts)", {"t": ticker})
        return row

    def summary(ticker: str) -> dict:
        return {s["ticker"]: s for s in requests.get(f"{api}/api/stocks").json()}[ticker]

    risks = {r["ticker"]: r for r in latest_risks(wh) if r["exchange"] == "NSE"}
    alerts = open_alert_counts(wh)
    for ticker in ("RELIANCE", "SUZLON", "TCS"):
        got, want = summary(ticker), truth(ticker)
        assert (got["bars"], got["last_close"]) == (want["bars"], want["close"])
        assert got["open_alerts"] == alerts.get((ticker, "NSE"), 0)
        if ticker in risks:
            [newest] = wh.query_rows("SELECT score, ts FROM {db}.risk_1m FINAL WHERE ticker = {t:String} "
                                     "AND exchange = 'NSE' ORDER BY ts DESC LIMIT 1", {"t": ticker})
            assert (risks[ticker]["score"], risks[ticker]["ts"].replace(tzinfo=None)) == (newest["score"],
                                                                                           newest["ts"])
            assert got["risk_score"] == risks[ticker]["score"]
            risk = requests.get(f"{api}/api/stocks/{ticker}/risk").json()
            assert (risk["score"], dt.datetime.fromisoformat(risk["ts"])) == (risks[ticker]["score"],
                                                                              risks[ticker]["ts"])

    # a new bar, stored the way the consumers store: counted once, however often it is stored
    newest = dt.datetime.fromisoformat(summary("TCS")["last_ts"])
    bar = {"ticker": "TCS", "exchange": "NSE", "interval": "1m", "ts": newest + dt.timedelta(days=1), "open": 1.0,
           "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10, "source": "replay", "run_id": "cache-test",
           "ingested_at": dt.datetime.now(dt.timezone.utc)}
    table = pa.Table.from_pylist([bar], schema=PRICES.arrow_schema)
    serving = serving_for(settings, wh)
    before = summary("TCS")["bars"]
    for key in ("cache-test-1", "cache-test-1", "cache-test-2"):  # redelivered, then re-stored under a new key
        wh.insert("prices", table)
        serving.on_prices(table, batch_key=key)
        serving.on_stored()
        got = _after_a_write(lambda: summary("TCS"), lambda g: g["bars"] == before + 1)
        assert (got["bars"], got["last_close"], dt.datetime.fromisoformat(got["last_ts"])) == (before + 1, 1.5,
                                                                                                bar["ts"]), key

    time.sleep(1.1)  # past the kept responses' bound: a count doubled by the re-stores would show now
    assert summary("TCS")["bars"] == before + 1

    # Redis lost the cache (a flushed or new server): the first read rebuilds it from the warehouse
    client = redis.Redis.from_url(settings.resolved_redis_url)
    keys = f"{settings.redis_key_prefix}:latest:{settings.warehouse_database}:"
    assert client.exists(f"{keys}ready")
    client.delete(*client.keys(f"{keys}*"))
    client.publish(f"{keys}changed", "lost")  # what replicas hear when Redis restarts: their watch resets
    got = summary("TCS")
    assert (got["bars"], got["last_close"]) == (before + 1, 1.5) == (truth("TCS")["bars"], truth("TCS")["close"])
