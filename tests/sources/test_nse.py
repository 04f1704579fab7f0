"""NseSource and the NSE cookie handshake, against a local fixture server standing in for www.nseindia.com."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re

import pytest

from sentinel_ray.config import NseSettings, Settings
from sentinel_ray.schemas import PRICES
from sentinel_ray.sources import make_source
from sentinel_ray.records import RAW_POS, RawPayload, SourceError
from sentinel_ray.sources import parser_for
from sentinel_ray.sources.lineage import record_schema, request_context, request_url
from sentinel_ray.sources.http import AuthError, FetchError
from sentinel_ray.sources.nse import HISTORY_PATH, QUOTE_PATH, NseSource, nse_symbols
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.market import parse_ist
from tests.fakes.server import Reply
from sentinel_ray.market import IST
from tests.sources.helpers import (UTC, RecordingSleep, assert_replays, fast_client, fetch_once as run, payloads,
                                   skipped)

MORNING = dt.datetime(2025, 2, 3, 5, 40, tzinfo=UTC)  # 11:10 IST, Monday
UA = "Mozilla/5.0 (X11; Linux x86_64) sentinel-ray/test"


payload = payloads("nse")


def session_ts(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=IST).astimezone(UTC)


def serve_home(fake) -> None:
    fake.route("GET", "/", Reply(body=payload("home.html"), content_type="text/html",
                                 headers={"Set-Cookie": "nsit=fixture-nsit; Path=/"}))


def by_symbol(bodies: dict[str, bytes]):
    def handler(request):
        return Reply(body=bodies[request.query["symbol"]], content_type="application/json")
    return handler


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make(fake, symbols=("RELIANCE",), now=MORNING, attempts: int = 4, timeout_s: float = 5.0,
         history_every=dt.timedelta(hours=1)) -> tuple[NseSource, RecordingSleep, Clock]:
    sleep = RecordingSleep()
    http = fast_client("nse", sleep, timeout_s=timeout_s, max_attempts=attempts, headers={"User-Agent": UA})
    clock = Clock(now)
    source = NseSource(NseSettings(tickers=list(symbols), base_url=fake.url), http=http, clock=clock,
                       history_every=history_every)
    return source, sleep, clock


def rows(result) -> list[dict]:
    return result.records["prices"].to_pylist()


def test_nse_symbols_drop_yahoo_suffixes() -> None:
    assert nse_symbols(["RELIANCE", "reliance.ns", "TCS.BO", "M&M"]) == ["RELIANCE", "TCS", "M&M"]
    assert parse_ist("01-Apr-2025 17:12:45", "%d-%b-%Y %H:%M:%S") == dt.datetime(2025, 4, 1, 11, 42, 45, tzinfo=UTC)


def test_first_poll_handshakes_then_reads_history_and_quotes(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, by_symbol({"RELIANCE": payload("history_reliance.json"),
                                                       "TCS": payload("history_empty.json")}))
    fake_service.route("GET", QUOTE_PATH, by_symbol({"RELIANCE": payload("quote_reliance.json"),
                                                     "TCS": payload("quote_tcs.json")}))
    source, sleep, _ = make(fake_service, symbols=("RELIANCE", "TCS"))
    result = run(source)

    table = result.records["prices"]
    assert table.schema == record_schema(PRICES)
    got = rows(result)
    history = [r for r in got if r["ts"] < session_ts("2025-02-03")]
    assert [(r["ticker"], r["ts"], r["close"], r["volume"]) for r in history] == [
        ("RELIANCE", session_ts("2025-01-31"), 1255.7, 12039455),
        ("RELIANCE", session_ts("2025-01-30"), 1248.55, 9871234),
        ("RELIANCE", session_ts("2025-01-29"), 1241.2, 8412990),
    ]
    quotes = [r for r in got if r["ts"] == session_ts("2025-02-03")]
    reliance = next(r for r in quotes if r["ticker"] == "RELIANCE")
    # A quote is today's daily bar so far: open, day high/low, last price as close, volume traded.
    assert (reliance["open"], reliance["high"], reliance["low"], reliance["close"], reliance["volume"]) == (
        1230.0, 1241.9, 1226.0, 1236.4, 4519337)
    assert {(r["exchange"], r["interval"], r["source"]) for r in got} == {("NSE", "1d", "nse")}
    assert all(r["run_id"] is None for r in got)
    assert len(quotes) == 2

    # handshake first, then the API with its cookie and a browser's headers
    paths = [r.path for r in fake_service.requests]
    assert paths[0] == "/" and paths.count("/") == 1
    api = [r for r in fake_service.requests if r.path.startswith("/api/")]
    assert all("nsit=fixture-nsit" in r.headers.get("Cookie", "") for r in api)
    assert all(r.headers["User-Agent"] == UA and r.headers["Referer"].startswith(fake_service.url + "/get-quotes/")
               and r.headers["Accept"].startswith("application/json") and r.headers["Accept-Language"] for r in api)
    hist_query = fake_service.seen(HISTORY_PATH)[0].query
    assert hist_query["series"] == '["EQ"]' and hist_query["from"] == "27-01-2025" and hist_query["to"] == "03-02-2025"
    quote_query = fake_service.seen(QUOTE_PATH)[0].query
    assert quote_query == {"functionName": "getSymbolData", "marketType": "N", "series": "EQ", "symbol": "RELIANCE"}

    assert [p.body for p in result.raw] == [payload("history_reliance.json"), payload("history_empty.json"),
                                            payload("quote_reliance.json"), payload("quote_tcs.json")]
    # the raw zone keeps the query: it says which symbol and dates a body answers
    assert "symbol=RELIANCE" in result.raw[0].request and "from=27-01-2025" in result.raw[0].request
    assert "symbol=TCS" in result.raw[3].request
    assert result.next_cursor == {
        "quotes": {"RELIANCE": "2025-02-03T05:37:09Z", "TCS": "2025-02-03T05:37:08Z"},
        "history": {"RELIANCE": "2025-01-31"}}
    assert sleep.calls == []


def test_polls_resume_from_the_cursor_without_duplicates(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_reliance.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_reliance.json")),
                       Reply(body=payload("quote_reliance.json")), Reply(body=payload("quote_reliance_later.json")))
    source, _, clock = make(fake_service)

    async def polls():
        try:
            one = await source.fetch(None)
            clock.now += dt.timedelta(minutes=2)
            two = await source.fetch(one.next_cursor)  # quote unchanged, history not due
            clock.now += dt.timedelta(hours=1)
            three = await source.fetch(two.next_cursor)  # quote moved on, history due again
            return one, two, three
        finally:
            await source.close()

    one, two, three = asyncio.run(polls())
    assert len(rows(one)) == 4
    assert rows(two) == [] and two.next_cursor == one.next_cursor
    assert [(r["close"], r["volume"]) for r in rows(three)] == [(1238.15, 4802214)]
    assert three.next_cursor["quotes"]["RELIANCE"] == "2025-02-03T05:42:10Z"
    # History was asked twice (first poll, and once an hour later) from the day after the cursor.
    history_calls = fake_service.seen(HISTORY_PATH)
    assert len(history_calls) == 2 and history_calls[1].query["from"] == "01-02-2025"
    assert len(fake_service.seen("/")) == 1  # one handshake for the whole session


def test_quote_before_the_first_trade_is_not_a_bar(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_preopen.json")))
    source, _, _ = make(fake_service, symbols=("TCS",))
    result = run(source)
    assert rows(result) == [] and result.meta["untraded"] == ["TCS"] and result.next_cursor is None


def test_429_with_retry_after_is_honoured(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(429, headers={"Retry-After": "7"}),
                       Reply(body=payload("quote_reliance.json")))
    source, sleep, _ = make(fake_service)
    assert len(rows(run(source))) == 1
    assert sleep.calls == [7.0]


def test_500_then_success(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(500), Reply(body=payload("history_reliance.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_reliance.json")))
    source, sleep, _ = make(fake_service)
    assert len(rows(run(source))) == 4
    assert len(sleep.calls) == 1 and len(fake_service.seen(HISTORY_PATH)) == 2


def test_timeout_is_retried_then_gives_up(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(delay_s=1.0, body=b"{}"))
    source, sleep, _ = make(fake_service, attempts=2, timeout_s=0.2)
    with pytest.raises(FetchError, match="failed after 2 attempts .last: (TimeoutError|ServerTimeoutError)"):
        run(source)
    assert len(sleep.calls) == 1


def test_timeout_then_success(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(delay_s=1.0, body=b"{}"), Reply(body=payload("quote_reliance.json")))
    source, sleep, _ = make(fake_service, timeout_s=0.2)
    assert len(rows(run(source))) == 1 and len(sleep.calls) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_api_handshakes_once_more_then_raises(fake_service, status: int) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(status, body=b'{"message": "Access Denied"}'))
    source, sleep, _ = make(fake_service)
    with pytest.raises(AuthError, match="even after a fresh cookie handshake") as e:
        run(source)
    assert len(fake_service.seen(HISTORY_PATH)) == 2 and len(fake_service.seen("/")) == 2
    assert sleep.calls == []
    assert e.value.status == status and e.value.body == b'{"message": "Access Denied"}'


def test_stale_cookies_are_renewed_by_a_second_handshake(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(401), Reply(body=payload("history_reliance.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_reliance.json")))
    source, sleep, _ = make(fake_service)
    assert len(rows(run(source))) == 4
    assert len(fake_service.seen("/")) == 2 and sleep.calls == []


def test_refused_handshake_says_so(fake_service) -> None:
    fake_service.route("GET", "/", Reply(403, body=b"<html>Access Denied</html>", content_type="text/html"))
    source, _, _ = make(fake_service)
    with pytest.raises(AuthError, match="refused the cookie handshake"):
        run(source)
    assert len(fake_service.seen("/")) == 1 and fake_service.seen(HISTORY_PATH) == []


MALFORMED = [
    (QUOTE_PATH, Reply(body=b"<html><body>Resource not found</body></html>", content_type="text/html"), "not JSON"),
    (QUOTE_PATH, Reply(json={"error": "bad"}), "no 'equityResponse' list"),
    (HISTORY_PATH, Reply(json={"error": "bad"}), "no 'data' list"),
]


@pytest.mark.parametrize("path, reply, message", MALFORMED)
def test_a_malformed_payload_is_noted_and_the_other_request_goes_on(fake_service, path: str, reply: Reply,
                                                                     message: str) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_reliance.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_reliance.json")))
    fake_service.route("GET", path, reply)
    source, _, _ = make(fake_service)
    result = run(source)
    [note] = result.meta["unreadable"]
    assert re.search(message, note["error"]) and path in result.raw[note["payload"]].request
    assert result.raw[note["payload"]].body == reply.render().body  # kept as received, for the raw zone
    assert len(result.raw) == 2
    if path == QUOTE_PATH:  # history's 3 sessions arrive; the quote's cursor stays unset
        assert len(rows(result)) == 3 and result.next_cursor["quotes"] == {}
    else:  # the quote's bar arrives; history's cursor stays unset, so the next due check asks again
        assert [r["ts"] for r in rows(result)] == [session_ts("2025-02-03")] and result.next_cursor["history"] == {}


@pytest.mark.parametrize("path, reply, message", MALFORMED)
def test_a_poll_with_nothing_readable_raises_carrying_every_payload(fake_service, path: str, reply: Reply,
                                                                    message: str) -> None:
    serve_home(fake_service)
    other = HISTORY_PATH if path == QUOTE_PATH else QUOTE_PATH
    fake_service.route("GET", other, Reply(body=b"<html>Service Unavailable</html>", content_type="text/html"))
    fake_service.route("GET", path, reply)
    source, _, _ = make(fake_service)
    with pytest.raises(UnreadablePayload, match=message) as e:
        run(source)
    assert isinstance(e.value, SourceError) and len(e.value.raw) == 2 and e.value.next_cursor is None
    assert sorted(p.body for p in e.value.raw) == sorted([reply.render().body, b"<html>Service Unavailable</html>"])


def test_one_unreadable_history_row_is_skipped_and_counted(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_one_bad_row.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_unknown.json")))
    source, _, _ = make(fake_service)
    result = run(source)
    assert [r["ts"] for r in rows(result)] == [session_ts("2025-01-31"), session_ts("2025-01-29")]
    assert result.meta["skipped"] == 1


@pytest.mark.parametrize("unknown_quote", [payload("quote_unknown.json"), b"{}"])
def test_empty_answers_give_an_empty_table_and_keep_the_cursor(fake_service, unknown_quote: bytes) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=unknown_quote))
    cursor = {"quotes": {"RELIANCE": "2025-01-31T10:00:00Z"}, "history": {"RELIANCE": "2025-01-31"}}
    for given in (None, cursor):
        source, _, _ = make(fake_service)
        result = run(source, given)
        assert result.records["prices"].num_rows == 0
        assert result.records["prices"].schema == record_schema(PRICES)
        assert result.next_cursor == given
        assert result.meta["unknown_symbols"] == ["RELIANCE"]


def test_fetch_history_is_the_official_bar_of_that_day(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_reliance.json")))
    source, _, _ = make(fake_service, symbols=("RELIANCE", "TCS"))
    ingested = dt.datetime(2025, 2, 4, tzinfo=UTC)
    result = asyncio.run(source.fetch_history(dt.date(2025, 1, 30), run_id="bf-7", ingested_at=ingested))
    got = rows(result)
    # The fixture answers the same three sessions whatever is asked; only the asked day is kept.
    assert [(r["ticker"], r["ts"], r["open"], r["run_id"], r["ingested_at"]) for r in got] == [
        ("RELIANCE", session_ts("2025-01-30"), 1241.0, "bf-7", ingested),
        ("TCS", session_ts("2025-01-30"), 1241.0, "bf-7", ingested)]
    asked = [(q.query["from"], q.query["to"]) for q in fake_service.seen(HISTORY_PATH)]
    assert asked == [("30-01-2025", "30-01-2025")] * 2
    assert result.next_cursor is None and len(result.raw) == 2


def test_from_settings_needs_no_credentials() -> None:
    settings = Settings(watch_tickers=["RELIANCE", "TCS.BO"], nse_base_url="http://127.0.0.1:9",
                        http_user_agent="UA/1", http_max_attempts=3, http_timeout_s=7)
    source = make_source("nse", settings)
    assert isinstance(source, NseSource) and source.credentials == ()
    assert source.symbols == ["RELIANCE", "TCS"] and source.nse.base_url == "http://127.0.0.1:9"
    assert source.http.headers["User-Agent"] == "UA/1" and source.http.retry.max_attempts == 3
    assert source.http.timeout_s == 7


# --- real recorded NSE responses (NseIndiaApi samples) ----------------------------------------


def test_real_quote_sample_parses(fake_service, shared_fixtures) -> None:
    sample = json.loads((shared_fixtures / "NseIndiaApi_samples" / "quote.json").read_text())
    # NseIndiaApi stores `equityResponse[0]` of getSymbolData; the API wraps it.
    body = json.dumps({"equityResponse": [sample]}).encode()
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_empty.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=body, content_type="application/json"))
    source, _, _ = make(fake_service, symbols=("HDFCBANK",), now=dt.datetime(2026, 5, 27, 6, 0, tzinfo=UTC))
    result = run(source)
    (bar,) = rows(result)
    assert bar["ticker"] == "HDFCBANK" and bar["ts"] == session_ts("2026-05-27")
    # closePrice is 0 mid-session, so the close so far is the last traded price
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (
        sample["metaData"]["open"], sample["metaData"]["dayHigh"], sample["metaData"]["dayLow"],
        sample["orderBook"]["lastPrice"], sample["tradeInfo"]["totalTradedVolume"])
    assert (bar["open"], bar["close"], bar["volume"]) == (769.5, 764.9, 24095932)
    assert result.next_cursor["quotes"]["HDFCBANK"] == "2026-05-27T05:37:09Z"
    assert result.raw[-1].body == body


def test_real_historical_sample_parses(fake_service, shared_fixtures) -> None:
    sample = json.loads((shared_fixtures / "NseIndiaApi_samples" / "fetch_equity_historical_data.json").read_text())
    body = json.dumps({"data": sample}).encode()
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=body, content_type="application/json"))
    source, _, _ = make(fake_service, symbols=("HDFCBANK",))
    result = asyncio.run(source.fetch_history(dt.date(2025, 4, 1), run_id="r", ingested_at=MORNING))
    (bar,) = rows(result)
    row = sample[0]
    assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == (
        row["CH_OPENING_PRICE"], row["CH_TRADE_HIGH_PRICE"], row["CH_TRADE_LOW_PRICE"], row["CH_CLOSING_PRICE"],
        row["CH_TOT_TRADED_QTY"])
    # NSE's own TIMESTAMP of the session is 00:00 IST, the key used for daily bars
    assert bar["ts"] == dt.datetime.fromisoformat(row["TIMESTAMP"].replace("Z", "+00:00"))


# --- replay from the raw zone -------------------------------------------------------------------


def _session(payload: RawPayload, position: int) -> str:
    doc = json.loads(payload.body)
    if HISTORY_PATH in payload.request:
        return doc["data"][position]["CH_TIMESTAMP"][:10]
    assert position == 0  # a quote is one record
    return parse_ist(doc["equityResponse"][0]["lastUpdateTime"], "%d-%b-%Y %H:%M:%S").astimezone(IST).date().isoformat()


def _row_session(row: dict) -> str:
    return row["ts"].astimezone(IST).date().isoformat()


def test_kept_answers_parse_to_the_polls_records(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_reliance.json")))
    fake_service.route("GET", QUOTE_PATH, Reply(body=payload("quote_reliance.json")),
                       Reply(body=payload("quote_reliance.json")), Reply(body=payload("quote_reliance_later.json")))
    source, _, clock = make(fake_service)

    async def polls():
        try:
            one = await source.fetch(None)
            clock.now += dt.timedelta(minutes=2)
            two = await source.fetch(one.next_cursor)
            clock.now += dt.timedelta(hours=1)
            return one, two, await source.fetch(two.next_cursor)
        finally:
            await source.close()

    one, two, three = asyncio.run(polls())
    # every row is the session at its raw_pos in the answer its raw_id names
    assert assert_replays("nse", one, _session, _row_session) == {"prices": 4}
    assert assert_replays("nse", two, _session, _row_session) == {"prices": 0}
    assert assert_replays("nse", three, _session, _row_session) == {"prices": 1}
    assert [r[RAW_POS] for r in rows(one)] == [0, 1, 2, 0]  # three sessions of history, then the quote
    # the unchanged quote: read, and not emitted (the same snapshot as before)
    [quote] = two.raw
    assert request_context(quote.request) == {"skip": "0"} and "symbol=RELIANCE" in request_url(quote.request)
    assert [r["close"] for r in skipped("nse", quote, "prices")] == [r["close"] for r in rows(one)][-1:]
    # history asked again from the day after the cursor: the fixture still lists the sessions emitted before
    history = three.raw[0]
    assert {r["ts"] for r in skipped("nse", history, "prices")} == {r["ts"] for r in rows(one)[:3]}


def test_a_backfill_keeps_its_run_id_and_ingestion_time_in_the_request(fake_service) -> None:
    serve_home(fake_service)
    fake_service.route("GET", HISTORY_PATH, Reply(body=payload("history_reliance.json")))
    source, _, _ = make(fake_service, symbols=("RELIANCE", "TCS"))
    ingested = dt.datetime(2025, 2, 4, 1, 2, 3, 456789, tzinfo=UTC)
    result = asyncio.run(source.fetch_history(dt.date(2025, 1, 30), run_id="bf-7", ingested_at=ingested))
    assert assert_replays("nse", result, _session, _row_session) == {"prices": 2}
    for payload_ in result.raw:  # the other two sessions of the answer are outside the day
        assert request_context(payload_.request) == {"skip": "0,2", "run_id": "bf-7",
                                                      "ingested_at": "2025-02-04T01:02:03.456789+00:00"}
    replayed = parser_for("nse")(result.raw[0])["prices"].to_pylist()
    assert [(r["ticker"], r["run_id"], r["ingested_at"]) for r in replayed] == [
        ("RELIANCE", "bf-7", ingested.replace(microsecond=456000))]
