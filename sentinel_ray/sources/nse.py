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

Records are read from the kept answers by `parse_payload`, what a replay from the raw zone
calls too (see `lineage`): the request URL, kept whole (NSE's public query holds no secret),
names the endpoint and the symbol; its text notes (`#skip=`) what the poll had emitted before
and, for a backfill, its run id and ingestion time.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

from sentinel_ray.config import HttpSourceSettings, NseSettings
from sentinel_ray.market import ist_date, ist_midnight_utc, parse_ist, split_suffix
from sentinel_ray.records import FetchResult, RawPayload, SourceError, utc_now
from sentinel_ray.schemas import PRICES
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.sources.http import AuthError, BodyTooLarge, HttpClient, HttpResponse
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, payload_schema,
                                          positioned, read_whole, request_url, skipping, stamped)
from sentinel_ray.sources.parsing import (
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    as_of,
    count,
    in_range,
    loads_json,
    note_unparseable,
    note_unreadable,
    number,
    off_loop,
    record_error,
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


def payload_json(body: bytes, url: str, content_type: str, source: str, what: str) -> Any:
    """The JSON of a body received from `url` (a kept payload's request) as `content_type`, or a
    SourceError saying what came instead (NSE and BSE answer blocked or broken requests with
    HTML pages and status 200)."""
    try:
        return loads_json(body, f"{source}: {what}")
    except PayloadError as e:
        where = request_url(url).split("?", 1)[0]
        if body.lstrip()[:1] in (b"{", b"[") and "not JSON" not in str(e):
            raise SourceError(f"{source}: {what} from {where} cannot be read: {e}") from None
        head = body[:80].decode("utf-8", errors="replace")
        raise SourceError(f"{source}: {what} from {where} is not JSON ({content_type}, starts {head!r})") from None


async def received(request: Awaitable[HttpResponse], source: str, dataset: str, raw: list[RawPayload]) -> HttpResponse:
    """The answer to `request`, appended to `raw` (`public_raw`). A body too large to read is an
    UnreadablePayload whose head is appended instead, so the raw zone shows what came."""
    try:
        response = await request
    except BodyTooLarge as e:
        raw.append(cut_short(public_raw(source, dataset, e.response)))
        raise UnreadablePayload(str(e), raw) from None
    raw.append(public_raw(source, dataset, response))
    return response


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
        self.schema = payload_schema(PRICES)
        self.cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.keys: set[tuple[str, dt.datetime]] = set()

    def add(self, ticker: str, ts: dt.datetime, ohlcv: tuple[float, float, float, float, int | None],
            ingested_at: dt.datetime, run_id: str | None = None) -> None:
        values = (ticker, "NSE", "1d", ts, *ohlcv, NseSource.name, run_id, ingested_at)
        for name, value in zip(self.schema.names, values, strict=True):
            self.cols[name].append(value)
        self.keys.add((ticker, ts))

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.cols, schema=self.schema)


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


# --- kept answers ---------------------------------------------------------------------


Bar = tuple[dt.date, tuple[float, float, float, float, int | None]]  # session date, OHLCV


@dataclass
class Answer:
    """A kept quote or history answer as read: its symbol and, per record in the answer's order,
    its bar or why it could not be read. A quote holds at most one record (position 0): none when
    NSE knows no such symbol (`unknown`) or the session has not traded yet (`untraded`)."""

    kind: str  # "quote" or "history"
    symbol: str
    outcomes: list[Bar | str]
    updated: dt.datetime | None = None  # a quote's last update time
    unknown: bool = False
    untraded: bool = False


def read_answer(payload: RawPayload) -> Answer:
    """A kept quote or history answer (which one, and whose, its request URL says); SourceError
    when the body is not JSON of the shape expected."""
    with as_of(payload.received_at):
        return _read_answer(payload)


def _read_answer(payload: RawPayload) -> Answer:
    url = request_url(payload.request)
    parts = urlsplit(url)
    symbol = dict(parse_qsl(parts.query)).get("symbol", "")
    if parts.path.endswith(QUOTE_PATH):
        doc = payload_json(payload.body, url, payload.content_type, NseSource.name, f"quote for {symbol}")
        quote = quote_record(doc, symbol)
        if quote is None:
            return Answer("quote", symbol, [], unknown=True)
        try:
            updated, ohlcv = quote_bar(quote)
        except RECORD_ERRORS as e:
            return Answer("quote", symbol, [record_error(e)])
        if any(v is None or v <= 0 for v in ohlcv[:4]) or not ohlcv[4]:
            # Before the first trade of a session NSE shows zeros; that is no bar yet.
            return Answer("quote", symbol, [], updated, untraded=True)
        return Answer("quote", symbol, [(ist_date(updated), ohlcv)], updated)
    if parts.path.endswith(HISTORY_PATH):
        doc = payload_json(payload.body, url, payload.content_type, NseSource.name, f"history for {symbol}")
        outcomes: list[Bar | str] = []
        for row in history_rows(doc, symbol):
            try:
                outcomes.append(history_bar(row))
            except RECORD_ERRORS as e:
                outcomes.append(record_error(e))
        return Answer("history", symbol, outcomes)
    raise SourceError(f"nse: {url[:200]} is no quote or history the adapter reads")


def answer_records(payload: RawPayload, answer: Answer) -> ParsedPayload:
    """The daily bars of an answer read by `read_answer`, as its poll emitted them."""
    bars, positions = _Bars(), []
    for position, bar in enumerate(answer.outcomes):
        if not isinstance(bar, str):
            day, ohlcv = bar
            bars.add(answer.symbol, ist_midnight_utc(day), ohlcv, payload.received_at)
            positions.append(position)
    return finish(payload, {PRICES.name: positioned(bars.table(), positions)},
                  [(position, error) for position, error in enumerate(answer.outcomes) if isinstance(error, str)])


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The daily bars of one kept quote or history answer (see `lineage`)."""
    return answer_records(payload, read_whole(payload, read_answer))


async def _read(raw: list[RawPayload]) -> Answer:
    """The last of `raw`, read (off the event loop when big); UnreadablePayload when it cannot be."""
    payload = raw[-1]
    try:
        return await off_loop(lambda _body: read_answer(payload), payload.body)
    except SourceError as e:  # the whole body: kept in the raw zone by the poller, reported
        raise UnreadablePayload(str(e), raw) from None


def _note_unparseable(answer: Answer, meta: dict[str, Any], payload: int) -> None:
    for position, error in enumerate(answer.outcomes):
        if isinstance(error, str):
            meta["skipped"] += 1
            note_unparseable(meta, payload, position, error)


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
        tables: list[pa.Table] = []
        keys: set[tuple[str, dt.date]] = set()  # (symbol, session) of the bars emitted
        raw: list[RawPayload] = []
        meta: dict[str, Any] = {"skipped": 0, "unknown_symbols": [], "untraded": []}
        now = self.clock()
        # One symbol's unreadable answer must not hold back the others': it is noted (and kept in
        # the raw zone by the poller), that symbol's cursor stays, and the poll goes on.
        if self._history_due(now):
            for symbol in self.symbols:
                try:
                    await self._poll_history(symbol, now, history_seen, tables, keys, raw, meta)
                except UnreadablePayload as e:
                    note_unreadable(meta, len(raw) - 1, e)
            self._history_checked_at = now
        for symbol in self.symbols:
            try:
                await self._poll_quote(symbol, quotes_seen, tables, keys, raw, meta)
            except UnreadablePayload as e:
                note_unreadable(meta, len(raw) - 1, e)
        next_cursor: dict[str, Any] | None = {"quotes": quotes_seen, "history": history_seen}
        if not quotes_seen and not history_seen:
            next_cursor = cursor or None  # nothing emitted yet: keep the caller's cursor as it was
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        return FetchResult(raw=raw, records={PRICES.name: concat_records(tables, PRICES)}, next_cursor=next_cursor,
                           meta=meta)

    def _history_due(self, now: dt.datetime) -> bool:
        return self._history_checked_at is None or now - self._history_checked_at >= self.history_every

    async def _poll_history(self, symbol: str, now: dt.datetime, seen: dict[str, str], tables: list[pa.Table],
                            keys: set[tuple[str, dt.date]], raw: list[RawPayload], meta: dict[str, Any]) -> None:
        today = ist_date(now)
        last = dt.date.fromisoformat(seen[symbol]) if symbol in seen else None
        start = last + dt.timedelta(days=1) if last else today - dt.timedelta(days=self.history_days)
        if start > today:
            return
        await received(self._history(symbol, start, today), self.name, PRICES.name, raw)
        answer, index = await _read(raw), len(raw) - 1
        _note_unparseable(answer, meta, index)
        newest, skip = last, []
        for position, bar in enumerate(answer.outcomes):
            if isinstance(bar, str):
                continue
            day = bar[0]
            if (last and day <= last) or day > today:
                skip.append(position)
                continue
            keys.add((symbol, day))
            newest = max(newest, day) if newest else day
        raw[index] = skipping(raw[index], skip)
        tables.append(answer_records(raw[index], answer)[PRICES.name])
        if newest:
            seen[symbol] = newest.isoformat()

    async def _poll_quote(self, symbol: str, seen: dict[str, str], tables: list[pa.Table],
                          keys: set[tuple[str, dt.date]], raw: list[RawPayload], meta: dict[str, Any]) -> None:
        request = self.nse.get(QUOTE_PATH, {"functionName": "getSymbolData", "marketType": "N",
                                            "series": SERIES, "symbol": symbol},
                               referer_path=f"/get-quotes/equity?symbol={symbol}")
        await received(request, self.name, PRICES.name, raw)
        answer, index = await _read(raw), len(raw) - 1
        if answer.unknown:
            meta["unknown_symbols"].append(symbol)
            return
        _note_unparseable(answer, meta, index)
        updated = answer.updated
        if updated is None:
            return  # unreadable: noted
        if symbol in seen and updated <= from_iso(seen[symbol]):
            raw[index] = skipping(raw[index], range(len(answer.outcomes)))
            return  # the same snapshot as last poll: nothing new to say
        if answer.untraded:
            meta["untraded"].append(symbol)
            return
        # After the close the same poll may already hold NSE's official bar of this
        # session (from history): one row per key per batch, and the official one wins.
        if (symbol, ist_date(updated)) in keys:
            raw[index] = skipping(raw[index], [0])
        else:
            keys.add((symbol, ist_date(updated)))
            tables.append(answer_records(raw[index], answer)[PRICES.name])
        seen[symbol] = iso_utc(updated)

    # -- backfill ------------------------------------------------------------------------
    async def fetch_history(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """The official daily bar of session `day` for every watched ticker (none on holidays)."""
        tables, raw, meta = [], [], {"skipped": 0}
        try:
            for symbol in self.symbols:
                await received(self._history(symbol, day, day), self.name, PRICES.name, raw)
                answer, index = await _read(raw), len(raw) - 1
                _note_unparseable(answer, meta, index)
                skip = [i for i, bar in enumerate(answer.outcomes) if not isinstance(bar, str) and bar[0] != day]
                raw[index] = stamped(skipping(raw[index], skip), run_id=run_id, ingested_at=ingested_at)
                tables.append(answer_records(raw[index], answer)[PRICES.name])
        finally:
            # A backfill runs each day in its own event loop (asyncio.run); an aiohttp
            # session must not outlive its loop, so close it and handshake afresh next day.
            await self.close()
        return FetchResult(raw=raw, records={PRICES.name: concat_records(tables, PRICES)}, next_cursor=None, meta=meta)

    async def _history(self, symbol: str, start: dt.date, end: dt.date) -> HttpResponse:
        return await self.nse.get(HISTORY_PATH, {"symbol": symbol, "series": json.dumps([SERIES]),
                                                 "from": start.strftime(NSE_DATE), "to": end.strftime(NSE_DATE)},
                                  referer_path=f"/get-quotes/equity?symbol={symbol}")


__all__ = ["NseSession", "NseSource", "exchange_http_client", "parse_payload", "payload_json", "public_raw", "received"]
