"""YahooSource: the real yfinance code against a local fixture server standing in for Yahoo."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from sentinel_ray.config import Settings, YahooSettings
from sentinel_ray.schemas import PRICES
from sentinel_ray.sources import make_source
from sentinel_ray.records import SourceError
from sentinel_ray.records import RAW_POS, RawPayload
from sentinel_ray.sources import parser_for
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError, RetryPolicy
from sentinel_ray.sources.yahoo import YahooSource, YahooSymbol
from tests.fakes.server import Reply
from sentinel_ray.market import IST
from tests.sources.helpers import UTC, RecordingSleep, assert_replays, fetch_once as run, payloads, skipped

AFTER_CLOSE = dt.datetime(2025, 2, 3, 10, 30, tzinfo=UTC)  # 16:00 IST on Monday 2025-02-03
CHART = "/v8/finance/chart/RELIANCE.NS"


payload = payloads("yahoo")


def ist(hour: int, minute: int, day: int = 3, month: int = 2) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, minute, tzinfo=IST).astimezone(UTC)


def serve_yahoo(fake, *chart: Reply, path: str = CHART) -> None:
    """The cookie (fc.yahoo.com), crumb and chart endpoints yfinance calls, rebased onto `fake`."""
    fake.route("GET", "/", Reply(body=b"", headers={"Set-Cookie": "A3=d=fixture; Path=/"}))
    fake.route("GET", "/v1/test/getcrumb", Reply(body=b"fixture-crumb", content_type="text/plain"))
    fake.route("GET", path, *chart)


def chart_by_interval(bodies: dict[str, bytes]):
    def handler(request):
        return Reply(body=bodies[request.query["interval"]], content_type="application/json")
    return handler


def make(fake, tmp_path: Path, *, symbols=("RELIANCE.NS",), intervals=("1m",), now=AFTER_CLOSE,
         attempts: int = 4, timeout_s: float = 5.0) -> tuple[YahooSource, RecordingSleep]:
    sleep = RecordingSleep()
    clock = now if callable(now) else (lambda: now)
    settings = YahooSettings(tickers=list(symbols), base_url=fake.url, timeout_s=timeout_s)
    source = YahooSource(settings, intervals=intervals, retry=RetryPolicy(max_attempts=attempts, base_delay_s=1.0),
                         rate_per_s=1000, burst=1000, cache_dir=tmp_path / "yfinance", sleep=sleep, clock=clock, seed=1)
    return source, sleep


def rows(result) -> list[dict]:
    return result.records["prices"].to_pylist()


def chart_requests(fake, path: str = CHART):
    return fake.seen(path)


def test_symbols_name_their_exchange() -> None:
    assert YahooSymbol.parse("reliance.ns") == YahooSymbol("RELIANCE.NS", "RELIANCE", "NSE")
    assert YahooSymbol.parse("RELIANCE.BO") == YahooSymbol("RELIANCE.BO", "RELIANCE", "BSE")
    assert YahooSymbol.parse("BAJAJ-AUTO") == YahooSymbol("BAJAJ-AUTO.NS", "BAJAJ-AUTO", "NSE")


def test_intraday_and_daily_bars_for_nse_and_bse(fake_service, tmp_path) -> None:
    bodies = {"1m": payload("chart_1m_first.json"), "1d": payload("chart_1d.json")}
    serve_yahoo(fake_service, chart_by_interval(bodies))
    fake_service.route("GET", "/v8/finance/chart/RELIANCE.BO", chart_by_interval(bodies))
    source, sleep = make(fake_service, tmp_path, symbols=("RELIANCE.NS", "RELIANCE.BO"), intervals=("1m", "1d"))
    result = run(source)

    table = result.records["prices"]
    assert table.schema == record_schema(PRICES)
    got = rows(result)
    assert len(got) == 2 * (5 + 3)
    first = got[0]
    assert (first["ticker"], first["exchange"], first["interval"]) == ("RELIANCE", "NSE", "1m")
    assert first["source"] == "yahoo"
    assert first["ts"] == ist(9, 15)
    assert (first["open"], first["high"], first["low"], first["close"], first["volume"]) == (
        1230.0, 1233.5, 1228.1, 1232.35, 412345)
    received = result.raw[0].received_at
    assert first["run_id"] is None
    assert first["ingested_at"] == received.replace(microsecond=received.microsecond // 1000 * 1000)
    daily = [r for r in got if r["interval"] == "1d" and r["exchange"] == "NSE"]
    # Daily bars are keyed at 00:00 IST of the session date.
    assert [r["ts"].astimezone(IST).strftime("%Y-%m-%d %H:%M")
            for r in daily] == ["2025-01-30 00:00", "2025-01-31 00:00", "2025-02-03 00:00"]
    assert [r["close"] for r in daily] == [1248.55, 1255.7, 1235.65]
    assert {r["exchange"] for r in got} == {"NSE", "BSE"}

    # raw zone: each chart body byte for byte, the crumb kept out of the audit URL
    assert [p.body for p in result.raw] == [bodies["1m"], bodies["1d"]] * 2
    assert all(p.source == "yahoo" and p.dataset == "prices" and "crumb" not in p.request for p in result.raw)
    sent = chart_requests(fake_service)
    assert [r.query["interval"] for r in sent] == ["1m", "1d"]
    assert sent[0].query["range"] == "1d" and sent[0].query["crumb"] == "fixture-crumb"
    assert result.next_cursor == {"last_ts": {
        "RELIANCE.NS": {"1m": int(ist(9, 19).timestamp() * 1000), "1d": int(ist(0, 0).timestamp() * 1000)},
        "RELIANCE.BO": {"1m": int(ist(9, 19).timestamp() * 1000), "1d": int(ist(0, 0).timestamp() * 1000)}}}
    assert sleep.calls == []


def test_cursor_resume_emits_only_newer_complete_bars(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(body=payload("chart_1m_first.json")), Reply(body=payload("chart_1m_next.json")))
    first, _ = make(fake_service, tmp_path, now=ist(9, 20))
    one = run(first)
    assert [r["ts"] for r in rows(one)] == [ist(9, m) for m in range(15, 20)]

    # Next poll at 09:22:30: the 09:18 and 09:19 bars come again, 09:22 is still forming.
    second, _ = make(fake_service, tmp_path, now=ist(9, 22) + dt.timedelta(seconds=30))
    two = run(second, one.next_cursor)
    assert [r["ts"] for r in rows(two)] == [ist(9, 20), ist(9, 21)]
    assert rows(two)[0]["volume"] == 70115
    assert two.next_cursor == {"last_ts": {"RELIANCE.NS": {"1m": int(ist(9, 21).timestamp() * 1000)}}}
    # The second request asked from the bar after the cursor.
    resumed = chart_requests(fake_service)[-1].query
    assert int(resumed["period1"]) == int(ist(9, 20).timestamp()) and "range" not in resumed


def test_bars_still_forming_are_not_emitted(fake_service, tmp_path) -> None:
    bodies = {"1m": payload("chart_1m_first.json"), "1d": payload("chart_1d.json")}
    serve_yahoo(fake_service, chart_by_interval(bodies))
    source, _ = make(fake_service, tmp_path, intervals=("1m", "1d"), now=ist(9, 17) + dt.timedelta(seconds=30))
    got = rows(run(source))
    assert [(r["interval"], r["ts"]) for r in got if r["interval"] == "1m"] == [("1m", ist(9, 15)), ("1m", ist(9, 16))]
    # Today's daily bar is not final before 16:00 IST; the two earlier sessions are.
    assert len([r for r in got if r["interval"] == "1d"]) == 2


def test_intraday_cursor_older_than_a_week_asks_for_the_last_seven_days(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(body=payload("chart_empty.json")))
    source, _ = make(fake_service, tmp_path)
    stale = {"last_ts": {"RELIANCE.NS": {"1m": int(dt.datetime(2024, 12, 1, tzinfo=UTC).timestamp() * 1000)}}}
    run(source, stale)
    period1 = int(chart_requests(fake_service)[0].query["period1"])
    assert period1 == int((AFTER_CLOSE - dt.timedelta(days=7)).timestamp())


def test_429_with_retry_after_is_honoured(fake_service, tmp_path) -> None:
    limited = Reply(429, body=b"Too Many Requests", headers={"Retry-After": "7"})
    serve_yahoo(fake_service, limited, limited, Reply(body=payload("chart_1m_first.json")))
    source, sleep = make(fake_service, tmp_path)
    result = run(source)
    assert len(rows(result)) == 5
    # yfinance re-asks once by itself (fresh crumb); the second 429 makes us wait as told.
    assert sleep.calls == [7.0]
    assert len(chart_requests(fake_service)) == 3


def test_a_wait_longer_than_max_server_wait_s_gives_up(fake_service, tmp_path) -> None:
    # the retry policy built from the settings carries max_server_wait_s, as every other adapter's does
    limited = Reply(429, body=b"Too Many Requests", headers={"Retry-After": "120"})
    serve_yahoo(fake_service, limited)
    settings = YahooSettings(tickers=["RELIANCE.NS"], base_url=fake_service.url, max_attempts=4,
                             max_server_wait_s=60)
    sleep = RecordingSleep()
    source = YahooSource(settings, intervals=("1m",), rate_per_s=1000, burst=1000, cache_dir=tmp_path / "yfinance",
                         sleep=sleep, clock=lambda: AFTER_CLOSE, seed=1)
    assert (source.retry.max_attempts, source.retry.max_retry_after_s) == (4, 60)
    with pytest.raises(FetchError, match="asks to retry after 120s; giving up for now"):
        run(source)
    assert sleep.calls == [] and len(chart_requests(fake_service)) == 2  # yfinance's own re-ask, none of ours
    assert YahooSource.from_settings(Settings(data_dir=tmp_path, max_server_wait_s=45)).retry.max_retry_after_s == 45


def test_5xx_backs_off_then_succeeds(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(503), Reply(500), Reply(body=payload("chart_1m_first.json")))
    source, sleep = make(fake_service, tmp_path)
    assert len(rows(run(source))) == 5
    assert len(sleep.calls) == 1 and 0 <= sleep.calls[0] <= 1.0


def test_500_once_is_absorbed_by_yfinance_own_retry(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(500), Reply(body=payload("chart_1m_first.json")))
    source, sleep = make(fake_service, tmp_path)
    assert len(rows(run(source))) == 5
    assert sleep.calls == [] and len(chart_requests(fake_service)) == 2


def test_persistent_5xx_is_a_fetch_error(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(502))
    source, sleep = make(fake_service, tmp_path, attempts=3)
    with pytest.raises(FetchError, match=r"RELIANCE.NS \(1m\) failed after 3 attempts .last: HTTP 502"):
        run(source)
    assert len(sleep.calls) == 2 and len(chart_requests(fake_service)) == 6


def test_timeout_is_retried(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(delay_s=1.0, body=b"{}"), Reply(body=payload("chart_1m_first.json")))
    source, sleep = make(fake_service, tmp_path, timeout_s=0.3)
    assert len(rows(run(source))) == 5
    assert len(sleep.calls) == 1


def test_timeout_bounds_the_whole_yfinance_call(fake_service, tmp_path) -> None:
    # every endpoint slow: cookie, crumb, consent and chart would each get yfinance's 30 s default;
    # within one call they share the adapter's timeout, so the worker thread cannot outlive it
    fake_service.route("GET", "/", Reply(delay_s=5.0, body=b""))
    for path in ("/v1/test/getcrumb", "/consent", CHART):
        fake_service.route("GET", path, Reply(delay_s=5.0, body=b"late"))
    source, _ = make(fake_service, tmp_path, timeout_s=0.5, attempts=1)
    started = time.monotonic()
    with pytest.raises(FetchError, match="failed after 1 attempts"):
        run(source)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(fake_service, tmp_path, status: int) -> None:
    serve_yahoo(fake_service, Reply(status, body=b'{"finance":{"error":{"code":"Unauthorized"}}}'))
    source, sleep = make(fake_service, tmp_path)
    with pytest.raises(AuthError, match=f"HTTP {status} .* Yahoo refuses this client"):
        run(source)
    # One call: yfinance's single re-request with a fresh cookie and crumb, no backoff of ours.
    assert sleep.calls == [] and len(chart_requests(fake_service)) == 2


@pytest.mark.parametrize("body, message", [
    (b"<html><body>Will be right back</body></html>", "not JSON"),
    (b'{"finance": {"result": null}}', "no 'chart' object"),
])
def test_malformed_chart_is_a_source_error(fake_service, tmp_path, body: bytes, message: str) -> None:
    serve_yahoo(fake_service, Reply(body=body, content_type="text/html"))
    source, _ = make(fake_service, tmp_path)
    with pytest.raises(SourceError, match=message):
        run(source)


def test_empty_chart_gives_empty_table_and_keeps_the_cursor(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(body=payload("chart_empty.json")))
    cursor = {"last_ts": {"RELIANCE.NS": {"1m": int(ist(15, 29, day=31, month=1).timestamp() * 1000)}}}
    for given in (None, cursor):
        source, _ = make(fake_service, tmp_path)
        result = run(source, given)
        assert result.records["prices"].num_rows == 0
        assert result.records["prices"].schema == record_schema(PRICES)
        assert result.next_cursor == given
        assert len(result.raw) == 1


def test_unknown_symbol_is_skipped_and_reported(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(body=payload("chart_1m_first.json")))
    fake_service.route("GET", "/v8/finance/chart/NOSUCH.NS", Reply(404, body=payload("chart_not_found.json")))
    source, sleep = make(fake_service, tmp_path, symbols=("NOSUCH.NS", "RELIANCE.NS"))
    result = run(source)
    assert len(rows(result)) == 5 and result.meta["missing_symbols"] == ["NOSUCH.NS"]
    assert [p.body for p in result.raw] == [payload("chart_1m_first.json")]  # no error bodies in the raw zone
    assert sleep.calls == []


def test_history_of_a_recent_day_is_its_1m_bars(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, chart_by_interval({"1m": payload("chart_1m_first.json")}))
    source, _ = make(fake_service, tmp_path, now=dt.datetime(2025, 2, 10, tzinfo=UTC))
    result = asyncio.run(source.fetch_history(dt.date(2025, 2, 3), run_id="bf-1", ingested_at=AFTER_CLOSE))
    got = rows(result)
    assert len(got) == 5 and {r["interval"] for r in got} == {"1m"}
    assert {r["run_id"] for r in got} == {"bf-1"} and {r["ingested_at"] for r in got} == {AFTER_CLOSE}
    query = chart_requests(fake_service)[0].query
    assert int(query["period1"]) == int(dt.datetime(2025, 2, 3, tzinfo=UTC).timestamp())
    assert int(query["period2"]) == int(dt.datetime(2025, 2, 4, tzinfo=UTC).timestamp())
    assert result.next_cursor is None and result.raw[0].body == payload("chart_1m_first.json")


def test_history_older_than_yahoo_keeps_minutes_is_the_daily_bar(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, chart_by_interval({"1d": payload("chart_1d.json")}))
    source, _ = make(fake_service, tmp_path, now=dt.datetime(2025, 6, 1, tzinfo=UTC))
    result = asyncio.run(source.fetch_history(dt.date(2025, 1, 31), run_id="bf-2", ingested_at=AFTER_CLOSE))
    got = rows(result)
    assert [(r["interval"], r["close"], r["volume"]) for r in got] == [("1d", 1255.7, 12039455)]
    assert got[0]["ts"] == dt.datetime(2025, 1, 30, 18, 30, tzinfo=UTC)  # 00:00 IST on the 31st
    assert result.meta["interval"] == "1d"


def test_from_settings_needs_no_credentials(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, watch_tickers=["RELIANCE", "TCS.BO"], yahoo_base_url="http://127.0.0.1:9")
    source = make_source("yahoo", settings)
    assert isinstance(source, YahooSource) and source.credentials == ()
    assert [s.yahoo for s in source.symbols] == ["RELIANCE.NS", "TCS.BO"]
    assert source.base_url == "http://127.0.0.1:9"


# --- real recorded Yahoo chart responses (node-yahoo-finance2 fixtures) --------------------------


def _real_charts(shared: Path) -> list[Path]:
    return sorted((shared / "yahoo_finance2_chart").glob("*chart-*.json"))


def test_real_chart_responses_parse(fake_service, tmp_path, shared_fixtures) -> None:
    files = _real_charts(shared_fixtures)
    assert len(files) >= 20
    checked = 0
    for path in files:
        recorded = json.loads(path.read_text())
        body = json.dumps(recorded["response"]["bodyJson"]).encode()
        result_doc = recorded["response"]["bodyJson"]["chart"]["result"][0]
        interval = result_doc["meta"]["dataGranularity"]
        stamps = result_doc.get("timestamp", [])
        quote = result_doc["indicators"]["quote"][0]

        fake_service.requests.clear()
        serve_yahoo(fake_service, Reply(body=body, content_type="application/json"))
        source, _ = make(fake_service, tmp_path, intervals=(interval,), now=dt.datetime(2025, 2, 21, tzinfo=UTC))
        result = run(source)
        got = rows(result)
        assert result.raw[0].body == body, path.name
        expected = [i for i in range(len(stamps)) if any(quote[k][i] is not None for k in ("open", "close"))]
        assert len(got) == len(expected), path.name
        for row, i in zip(got, expected, strict=True):
            assert row["open"] == pytest.approx(quote["open"][i]), path.name
            assert row["high"] == pytest.approx(quote["high"][i]), path.name
            assert row["low"] == pytest.approx(quote["low"][i]), path.name
            assert row["close"] == pytest.approx(quote["close"][i]), path.name
            assert row["volume"] == quote["volume"][i], path.name
            # Daily bars land on the session date, in the exchange's own time zone.
            zone = ZoneInfo(result_doc["meta"]["exchangeTimezoneName"])
            bar_day = dt.datetime.fromtimestamp(stamps[i], zone).date()
            assert row["ts"].astimezone(zone).date() == bar_day, path.name
        checked += len(got)
    assert checked >= 49 + 20


def test_real_chart_49_daily_bars_values(fake_service, tmp_path, shared_fixtures) -> None:
    recorded = json.loads((shared_fixtures / "yahoo_finance2_chart" / "chart-AAPL-2020-08-31-to-2020-11-07.json")
                          .read_text())
    body = json.dumps(recorded["response"]["bodyJson"]).encode()
    serve_yahoo(fake_service, Reply(body=body, content_type="application/json"))
    source, _ = make(fake_service, tmp_path, intervals=("1d",), now=dt.datetime(2025, 2, 21, tzinfo=UTC))
    table = run(source).records["prices"]
    assert table.num_rows == 49
    ts = table.column("ts").to_pylist()
    new_york = dt.timezone(dt.timedelta(hours=-4))  # EDT: the first bars are in September
    assert ts[0].astimezone(new_york) == dt.datetime(2020, 8, 31, tzinfo=new_york)
    assert table.column("volume").to_pylist()[0] == recorded["response"]["bodyJson"]["chart"]["result"][0][
        "indicators"]["quote"][0]["volume"][0]
    assert pa.compute.all(pa.compute.less_equal(table.column("low"), table.column("high"))).as_py()


def test_real_intraday_response_without_bars_is_empty(fake_service, tmp_path, shared_fixtures) -> None:
    recorded = json.loads((shared_fixtures / "yahoo_finance2_chart" /
                           "chart-AAPL-2025-02-01-to-2025-02-02-includePrePost-false-interval-1m.json").read_text())
    serve_yahoo(fake_service, Reply(body=json.dumps(recorded["response"]["bodyJson"]).encode()))
    source, _ = make(fake_service, tmp_path)
    result = run(source)
    assert result.records["prices"].num_rows == 0 and result.next_cursor is None


def test_a_chart_past_the_payload_bound_is_not_read_past_it(fake_service, tmp_path) -> None:
    from sentinel_ray.sources.http import TOO_LARGE_HEAD_BYTES
    from sentinel_ray.sources.parsing import UnreadablePayload

    huge = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    serve_yahoo(fake_service, Reply(body=huge, content_type="application/json"))
    source, sleep = make(fake_service, tmp_path)
    with pytest.raises(UnreadablePayload, match="chart of RELIANCE.NS is larger than the 8,388,608 bytes") as e:
        run(source)
    [kept] = e.value.raw  # kept for the raw zone: at most its head, not 10 MB
    assert len(kept.body) <= TOO_LARGE_HEAD_BYTES and huge.startswith(kept.body) and sleep.calls == []


# --- replay from the raw zone -------------------------------------------------------------------


def _bar_time(payload: RawPayload, position: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(json.loads(payload.body)["chart"]["result"][0]["timestamp"][position], UTC)


def _same_bar(payload: RawPayload, position: int) -> str:
    """The bar the body lists at `position`: its minute, or for a daily bar its session date (IST)."""
    interval = "1d" if "interval=1d" in payload.request else "1m"
    moment = _bar_time(payload, position)
    return moment.astimezone(IST).date().isoformat() if interval == "1d" else moment.isoformat()


def _row_bar(row: dict) -> str:
    return row["ts"].astimezone(IST).date().isoformat() if row["interval"] == "1d" else row["ts"].isoformat()


def test_kept_charts_parse_to_the_polls_records(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, Reply(body=payload("chart_1m_first.json")), Reply(body=payload("chart_1m_next.json")))
    one = run(make(fake_service, tmp_path, now=ist(9, 20))[0])
    two = run(make(fake_service, tmp_path, now=ist(9, 22) + dt.timedelta(seconds=30))[0], one.next_cursor)
    # every row is the bar at its raw_pos in the chart its raw_id names
    assert assert_replays("yahoo", one, _same_bar, _row_bar) == {"prices": 5}
    assert assert_replays("yahoo", two, _same_bar, _row_bar) == {"prices": 2}
    # the chart's request says what was asked (symbol, interval, window), never yfinance's crumb
    [chart] = two.raw
    asked = request_url(chart.request)
    assert CHART in asked and "interval=1m" in asked and f"period1={int(ist(9, 20).timestamp())}" in asked
    assert "period2=" in asked and "crumb" not in chart.request
    # 09:18 and 09:19 were emitted by the first poll, 09:22 is still forming: read, not emitted, said so
    assert request_context(chart.request) == {"skip": "0-1,4"}
    assert [r["ts"] for r in skipped("yahoo", chart, "prices")] == [ist(9, 18), ist(9, 19), ist(9, 22)]
    assert [(r["ts"], r[RAW_POS]) for r in two.records["prices"].to_pylist()] == [(ist(9, 20), 2), (ist(9, 21), 3)]


def test_a_daily_chart_skips_the_bar_still_forming(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, chart_by_interval({"1d": payload("chart_1d.json")}))
    result = run(make(fake_service, tmp_path, intervals=("1d",), now=ist(11, 0))[0])
    assert assert_replays("yahoo", result, _same_bar, _row_bar) == {"prices": 2}
    assert request_context(result.raw[0].request) == {"skip": "2"}  # today's session, before 16:00 IST


def test_a_backfill_keeps_its_run_id_and_ingestion_time_in_the_request(fake_service, tmp_path) -> None:
    serve_yahoo(fake_service, chart_by_interval({"1d": payload("chart_1d.json")}))
    source, _ = make(fake_service, tmp_path, now=dt.datetime(2025, 6, 1, tzinfo=UTC))
    result = asyncio.run(source.fetch_history(dt.date(2025, 1, 31), run_id="bf-2", ingested_at=AFTER_CLOSE))
    assert assert_replays("yahoo", result, _same_bar, _row_bar) == {"prices": 1}
    assert request_context(result.raw[0].request) == {"skip": "0", "run_id": "bf-2",
                                                      "ingested_at": AFTER_CLOSE.isoformat()}
    [row] = parser_for("yahoo")(result.raw[0])["prices"].to_pylist()
    assert (row["run_id"], row["ingested_at"], row[RAW_POS]) == ("bf-2", AFTER_CLOSE, 1)


def test_a_chart_too_large_to_read_is_no_payload_a_replay_reads(fake_service, tmp_path) -> None:
    from sentinel_ray.sources.parsing import UnreadablePayload

    serve_yahoo(fake_service, Reply(body=b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}',
                                    content_type="application/json"))
    with pytest.raises(UnreadablePayload) as e:
        run(make(fake_service, tmp_path)[0])
    [kept] = e.value.raw
    assert request_context(kept.request) == {"cut_short": "1"}
    with pytest.raises(UnreadablePayload, match="only the first .* bytes of the answer were kept"):
        parser_for("yahoo")(kept)
