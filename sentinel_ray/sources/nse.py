"""NSE India's website API: live equity quotes and daily history (prices).

www.nseindia.com has no official public API; its web pages call JSON endpoints under
`/api/`. Those answer only clients that first loaded a page of the site and so hold the
cookies it sets (`nsit`, `nseappid`, Akamai's `bm_*`), and that send browser-like
headers with a Referer from the site. `NseSession` does that handshake once, keeps the
cookies in the HttpClient's jar, and handshakes once more when the API answers 401/403
(the cookies expire after some minutes) before giving up. `filings.py` reuses it for
NSE's corporate announcements.

Endpoints (formats as recorded in NseIndiaApi's samples):

- quote: `GET /api/NextApi/apiClient/GetQuoteApi?functionName=getSymbolData&marketType=N
  &series=EQ&symbol=X` -> `{"equityResponse": [{"metaData": {open, dayHigh, dayLow,
  closePrice, ...}, "orderBook": {lastPrice, ...}, "tradeInfo": {totalTradedVolume, ...},
  "lastUpdateTime": "27-May-2026 11:07:09", ...}]}`. This is the endpoint behind NSE's
  current quote page. The older `/api/quote-equity?symbol=X` lacks the session's traded
  volume (it needs a second `section=trade_info` call), so it is not used.
- history: `GET /api/historical/cm/equity?symbol=X&series=["EQ"]&from=dd-mm-yyyy
  &to=dd-mm-yyyy` -> `{"data": [{"CH_TIMESTAMP": "2025-04-01", "CH_OPENING_PRICE", ...,
  "CH_TOT_TRADED_QTY"}, ...]}`, newest first.

Both become daily ("1d") bars keyed at 00:00 IST of the session date, NSE's own
convention (its `TIMESTAMP` for session 2025-04-01 is 2025-03-31T18:30:00Z) and the
warehouse's day bucket. A quote is a snapshot of the running session: it is emitted as
that session's 1d bar (open, day high, day low, last price -> close, traded volume), so
repeated polls update one row (ReplacingMergeTree keeps the newest `ingested_at`), and
the official bar from history replaces it once NSE publishes it after the close.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Awaitable, Callable, Iterator, Mapping, Sequence

import pyarrow as pa

from sentinel_ray.config import HttpSourceSettings, NseSettings
from sentinel_ray.market import ist_date, ist_midnight_utc, parse_ist, split_suffix
from sentinel_ray.records import FetchResult, RawPayload, SourceError, utc_now
from sentinel_ray.schemas import PRICES
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.sources.http import AuthError, BodyTooLarge, HttpClient, HttpResponse
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    count,
    in_range,
    loads_json,
    note_unparseable,
    note_unreadable,
    number,
    off_loop,
    unreadable_poll,
)

log = logging.getLogger(__name__)

QUOTE_PATH = "/api/NextApi/apiClient/GetQuoteApi"
HISTORY_PATH = "/api/historical/cm/equity"
SERIES = "EQ"  # the normal rolling-settlement equity series every watched ticker trades in
NSE_DATE = "%d-%m-%Y"  # query parameters
NSE_DATETIME = "%d-%b-%Y %H:%M:%S"  # "27-May-2026 11:07:09", IST

# One request a second: NSE throttles and blocks clients that go faster.
NSE_RATE_PER_S = 1.0
NSE_BURST = 2

PAGE_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
}
API_HEADERS = {
    "Accept": "application/json, text/plain, */*",
    "Accept-Language": "en-US,en;q=0.9",
}

Clock = Callable[[], dt.datetime]


# --- times --------------------------------------------------------------------------


def iso_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def from_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- plumbing shared with filings ------------------------------------------------------


def json_body(response: HttpResponse, source: str, what: str) -> Any:
    """The response's JSON, or a SourceError saying what came instead (NSE and BSE answer
    blocked or broken requests with HTML pages and status 200)."""
    try:
        return loads_json(response.body, f"{source}: {what}")
    except PayloadError as e:
        if response.body.lstrip()[:1] in (b"{", b"[") and "not JSON" not in str(e):
            raise SourceError(f"{source}: {what} from {response.url.split('?', 1)[0]} cannot be read: {e}") from None
        head = response.body[:80].decode("utf-8", errors="replace")
        raise SourceError(f"{source}: {what} from {response.url.split('?', 1)[0]} is not JSON "
                          f"({response.content_type}, starts {head!r})") from None


async def read_json(response: HttpResponse, source: str, what: str) -> Any:
    """`json_body`, parsed in a worker thread when the body is big: history and announcement
    lists run to megabytes, and the event loop is shared with every other poller."""
    return await off_loop(lambda _body: json_body(response, source, what), response.body)


async def received(request: Awaitable[HttpResponse], source: str, dataset: str, raw: list[RawPayload]) -> HttpResponse:
    """The answer to `request`, appended to `raw` (`public_raw`). A body too large to read is an
    UnreadablePayload whose head is appended instead, so the raw zone shows what came."""
    try:
        response = await request
    except BodyTooLarge as e:
        raw.append(public_raw(source, dataset, e.response))
        raise UnreadablePayload(str(e), raw) from None
    raw.append(public_raw(source, dataset, response))
    return response


async def read_payload(response: HttpResponse, source: str, what: str, raw: list[RawPayload],
                       shape: Callable[[Any], Any] = lambda doc: doc) -> Any:
    """`shape` of the response's JSON (the response is the last of `raw`); UnreadablePayload when
    the body is not JSON or not of the shape expected (`shape` raises SourceError)."""
    try:
        return shape(await read_json(response, source, what))
    except SourceError as e:  # the whole body: kept in the raw zone by the poller, reported
        raise UnreadablePayload(str(e), raw) from None


def public_raw(source: str, dataset: str, response: HttpResponse) -> RawPayload:
    """The response for the raw zone with its full URL: the exchanges' public endpoints
    carry no secrets in the query, and the query (symbol, dates, page) is what says what
    the body answers (`RawPayload.of` drops it, as query strings elsewhere may hold keys)."""
    return RawPayload(source, dataset, response.received_at, response.body, response.content_type, response.url)


def exchange_http_client(settings: HttpSourceSettings, source: str, *, rate_per_s: float = NSE_RATE_PER_S,
                         burst: int = NSE_BURST) -> HttpClient:
    """An HttpClient for the exchanges' websites, polite by default."""
    return HttpClient.from_settings(source, settings, rate_per_s=rate_per_s, burst=burst)


def nse_symbols(tickers: Sequence[str]) -> list[str]:
    """NSE symbols of the watch list: upper case, a Yahoo-style `.NS`/`.BO` suffix dropped
    (NSE quotes the company whichever exchange the entry names), de-duplicated in order."""
    out: list[str] = []
    for ticker in tickers:
        symbol, _ = split_suffix(ticker.strip().upper())
        if symbol and symbol not in out:
            out.append(symbol)
    return out


def _readable_bars(rows: Any, meta: dict[str, Any], payload: int) -> Iterator[tuple[dt.date, Any]]:
    """(session date, OHLCV) of each history row that can be read; the others are counted in
    `meta` and listed as unparseable (pointing at raw payload `payload`), and skipped."""
    for position, row in enumerate(rows):
        try:
            yield history_bar(row)
        except RECORD_ERRORS as e:
            meta["skipped"] += 1
            note_unparseable(meta, payload, position, e)


class NseSession:
    """NSE's `/api/` endpoints behind the cookie handshake the site requires.

    The first call GETs `warmup_path` (the home page) like a browser would, which sets the
    cookies; API calls then carry them plus a Referer from the site. A 401/403 from the
    API means the cookies went stale: clear them, handshake again, retry once; a second
    refusal is an AuthError (NSE blocks some networks and clients outright).
    """

    def __init__(self, http: HttpClient, base_url: str, *, warmup_path: str = "/") -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.warmup_path = warmup_path
        self.handshakes = 0
        self._ready = False

    async def handshake(self) -> None:
        self.http.session.cookie_jar.clear()  # stale cookies are why a handshake is needed
        try:
            await self.http.get(self.base_url + self.warmup_path, headers=PAGE_HEADERS)
        except AuthError as e:
            raise AuthError(f"{self.http.source}: {self.base_url}{self.warmup_path} refused the cookie handshake "
                            f"({e}); NSE blocks some networks and non-browser clients",
                            status=e.status, body=e.body) from e
        self.handshakes += 1
        self._ready = True

    async def get(self, path: str, params: Mapping[str, Any] | None = None, *,
                  referer_path: str = "/") -> HttpResponse:
        """GET an `/api/...` path with the session's cookies (handshaking first if needed)."""
        if not self._ready:
            await self.handshake()
        headers = {**API_HEADERS, "Referer": self.base_url + referer_path}
        try:
            return await self.http.get(self.base_url + path, params=params, headers=headers)
        except AuthError:
            log.info("%s: %s refused the session cookies; handshaking again", self.http.source, path)
        await self.handshake()
        try:
            return await self.http.get(self.base_url + path, params=params, headers=headers)
        except AuthError as e:
            raise AuthError(f"{self.http.source}: {self.base_url}{path} answered 401/403 even after a fresh cookie "
                            f"handshake; NSE is refusing this client; not retrying",
                            status=e.status, body=e.body) from e

    async def close(self) -> None:
        """Close the HTTP session; the next call handshakes again (its cookies are gone)."""
        await self.http.close()
        self._ready = False


# --- parsing ------------------------------------------------------------------------


class _Bars:
    """Daily bars collected row by row, turned into one PRICES table at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in PRICES.column_names}
        self.keys: set[tuple[str, dt.datetime]] = set()

    def add(self, ticker: str, ts: dt.datetime, ohlcv: tuple[float, float, float, float, int | None],
            ingested_at: dt.datetime, run_id: str | None = None) -> None:
        values = (ticker, "NSE", "1d", ts, *ohlcv, NseSource.name, run_id, ingested_at)
        for name, value in zip(PRICES.column_names, values, strict=True):
            self.cols[name].append(value)
        self.keys.add((ticker, ts))

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=PRICES.record_schema)


def _number(value: Any) -> float | None:
    # NSE prints some numbers as strings ("1,234.50"); NaN, Unicode digits and the like raise
    return number(value)


def quote_record(doc: Any, symbol: str) -> dict[str, Any] | None:
    """The quote object of a getSymbolData response; None when NSE knows no such symbol
    (it answers an empty list, or an empty object)."""
    if doc == {}:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("equityResponse"), list):
        raise SourceError(f"nse: quote for {symbol} has no 'equityResponse' list "
                          f"(keys: {sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__})")
    items = doc["equityResponse"]
    return items[0] if items and isinstance(items[0], dict) else None


def quote_bar(quote: Mapping[str, Any]) -> tuple[dt.datetime, tuple[float, float, float, float, int | None]]:
    """(last update time UTC, OHLCV of the session so far). Raises KeyError/TypeError/ValueError
    when a field is missing or unreadable."""
    meta, trade, book = quote["metaData"], quote["tradeInfo"], quote.get("orderBook") or {}
    updated = in_range(parse_ist(quote["lastUpdateTime"], NSE_DATETIME))
    last = _number(book.get("lastPrice")) or _number(trade.get("lastPrice"))
    # closePrice stays 0 until the session's official close is computed (15:30 IST).
    close = _number(meta.get("closePrice")) or last
    volume = count(_number(trade.get("totalTradedVolume")))
    ohlcv = (_number(meta["open"]), _number(meta["dayHigh"]), _number(meta["dayLow"]), close, volume)
    return updated, ohlcv  # type: ignore[return-value]


def history_rows(doc: Any, symbol: str) -> list[Any]:
    """Rows of a historical/cm/equity response (`{"data": [...]}`; a bare list is accepted too)."""
    rows = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise SourceError(f"nse: history for {symbol} has no 'data' list "
                          f"(got {type(rows).__name__ if rows is not None else 'no data key'})")
    return rows


def history_bar(row: Mapping[str, Any]) -> tuple[dt.date, tuple[float, float, float, float, int]]:
    """(session date, OHLCV) of one CH_* row. Raises KeyError/TypeError/ValueError when unreadable."""
    day = dt.date.fromisoformat(str(row["CH_TIMESTAMP"])[:10])
    in_range(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc))
    prices = [_number(row[k]) for k in ("CH_OPENING_PRICE", "CH_TRADE_HIGH_PRICE", "CH_TRADE_LOW_PRICE",
                                         "CH_CLOSING_PRICE")]
    volume = count(row["CH_TOT_TRADED_QTY"])
    if any(p is None for p in prices) or volume is None:
        raise ValueError("a price or the volume is missing or out of range")
    return day, (*prices, volume)  # type: ignore[return-value]


# --- the source -----------------------------------------------------------------------


class NseSource(HistorySource):
    """Daily bars from NSE: the live quote of each watched ticker every poll, and the
    official daily history (at most every `history_every`, from the cursor's last
    session on) so completed sessions end with NSE's published numbers."""

    name = "nse"
    datasets = (PRICES.name,)
    settings_class = NseSettings

    def __init__(self, settings: NseSettings, *, http: HttpClient | None = None, clock: Clock = utc_now,
                 history_days: int = 7, history_every: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.symbols = nse_symbols(settings.tickers)
        self.http = http or exchange_http_client(settings, self.name)
        self.nse = NseSession(self.http, settings.base_url)
        self.clock = clock
        self.history_days = history_days  # how far back the first poll reads history
        self.history_every = history_every
        # In memory, not in the cursor: it is a politeness throttle, not a position (a
        # restarted poller simply checks history once at start).
        self._history_checked_at: dt.datetime | None = None

    async def close(self) -> None:
        await self.nse.close()

    # -- polling -----------------------------------------------------------------------
    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """Cursor: {"quotes": {symbol: last lastUpdateTime emitted, ISO UTC},
        "history": {symbol: last session date emitted from history, ISO date}}."""
        cursor = cursor or {}
        quotes_seen: dict[str, str] = dict(cursor.get("quotes", {}))
        history_seen: dict[str, str] = dict(cursor.get("history", {}))
        bars, raw, meta = _Bars(), [], {"skipped": 0, "unknown_symbols": [], "untraded": []}
        now = self.clock()
        # One symbol's unreadable answer must not hold back the others': it is noted (and kept in
        # the raw zone by the poller), that symbol's cursor stays, and the poll goes on.
        if self._history_due(now):
            for symbol in self.symbols:
                try:
                    await self._poll_history(symbol, now, history_seen, bars, raw, meta)
                except UnreadablePayload as e:
                    note_unreadable(meta, len(raw) - 1, e)
            self._history_checked_at = now
        for symbol in self.symbols:
            try:
                await self._poll_quote(symbol, quotes_seen, bars, raw, meta)
            except UnreadablePayload as e:
                note_unreadable(meta, len(raw) - 1, e)
        next_cursor: dict[str, Any] | None = {"quotes": quotes_seen, "history": history_seen}
        if not quotes_seen and not history_seen:
            next_cursor = cursor or None  # nothing emitted yet: keep the caller's cursor as it was
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        return FetchResult(raw=raw, records={PRICES.name: bars.table()}, next_cursor=next_cursor, meta=meta)

    def _history_due(self, now: dt.datetime) -> bool:
        return self._history_checked_at is None or now - self._history_checked_at >= self.history_every

    async def _poll_history(self, symbol: str, now: dt.datetime, seen: dict[str, str], bars: _Bars,
                            raw: list[RawPayload], meta: dict[str, Any]) -> None:
        today = ist_date(now)
        last = dt.date.fromisoformat(seen[symbol]) if symbol in seen else None
        start = last + dt.timedelta(days=1) if last else today - dt.timedelta(days=self.history_days)
        if start > today:
            return
        response = await received(self._history(symbol, start, today), self.name, PRICES.name, raw)
        newest = last
        rows = await read_payload(response, self.name, f"history for {symbol}", raw,
                                  lambda doc: history_rows(doc, symbol))
        for day, ohlcv in _readable_bars(rows, meta, len(raw) - 1):
            if (last and day <= last) or day > today:
                continue
            bars.add(symbol, ist_midnight_utc(day), ohlcv, response.received_at)
            newest = max(newest, day) if newest else day
        if newest:
            seen[symbol] = newest.isoformat()

    async def _poll_quote(self, symbol: str, seen: dict[str, str], bars: _Bars, raw: list[RawPayload],
                          meta: dict[str, Any]) -> None:
        request = self.nse.get(QUOTE_PATH, {"functionName": "getSymbolData", "marketType": "N",
                                            "series": SERIES, "symbol": symbol},
                               referer_path=f"/get-quotes/equity?symbol={symbol}")
        response = await received(request, self.name, PRICES.name, raw)
        quote = await read_payload(response, self.name, f"quote for {symbol}", raw,
                                   lambda doc: quote_record(doc, symbol))
        if quote is None:
            meta["unknown_symbols"].append(symbol)
            return
        try:
            updated, ohlcv = quote_bar(quote)
        except RECORD_ERRORS as e:
            meta["skipped"] += 1
            note_unparseable(meta, len(raw) - 1, 0, e)
            return
        if symbol in seen and updated <= from_iso(seen[symbol]):
            return  # the same snapshot as last poll: nothing new to say
        if any(v is None or v <= 0 for v in ohlcv[:4]) or not ohlcv[4]:
            # Before the first trade of a session NSE shows zeros; that is no bar yet.
            meta["untraded"].append(symbol)
            return
        ts = ist_midnight_utc(ist_date(updated))
        # After the close the same poll may already hold NSE's official bar of this
        # session (from history): one row per key per batch, and the official one wins.
        if (symbol, ts) not in bars.keys:
            bars.add(symbol, ts, ohlcv, response.received_at)
        seen[symbol] = iso_utc(updated)

    # -- backfill ------------------------------------------------------------------------
    async def fetch_history(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """The official daily bar of session `day` for every watched ticker (none on holidays)."""
        bars, raw, meta = _Bars(), [], {"skipped": 0}
        try:
            for symbol in self.symbols:
                response = await received(self._history(symbol, day, day), self.name, PRICES.name, raw)
                rows = await read_payload(response, self.name, f"history for {symbol}", raw,
                                          lambda doc, symbol=symbol: history_rows(doc, symbol))
                for session, ohlcv in _readable_bars(rows, meta, len(raw) - 1):
                    if session == day:
                        bars.add(symbol, ist_midnight_utc(session), ohlcv, ingested_at, run_id)
        finally:
            # A backfill runs each day in its own event loop (asyncio.run); an aiohttp
            # session must not outlive its loop, so close it and handshake afresh next day.
            await self.close()
        return FetchResult(raw=raw, records={PRICES.name: bars.table()}, next_cursor=None, meta=meta)

    async def _history(self, symbol: str, start: dt.date, end: dt.date) -> HttpResponse:
        return await self.nse.get(HISTORY_PATH, {"symbol": symbol, "series": json.dumps([SERIES]),
                                                 "from": start.strftime(NSE_DATE), "to": end.strftime(NSE_DATE)},
                                  referer_path=f"/get-quotes/equity?symbol={symbol}")


__all__ = ["NseSession", "NseSource", "exchange_http_client", "json_body", "public_raw", "read_json", "read_payload",
           "received"]
