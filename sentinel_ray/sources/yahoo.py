"""Yahoo Finance bars for NSE (`.NS`) and BSE (`.BO`) listings, through yfinance.

Yahoo's chart API (`GET /v8/finance/chart/<SYMBOL>?interval=1m|1d&period1=..&period2=..`
or `range=..`) answers `{"chart": {"result": [{"meta": {...}, "timestamp": [...],
"indicators": {"quote": [{"open": [...], "high", "low", "close", "volume"}]}}],
"error": null}}`. The adapter does not speak that protocol itself: yfinance does (cookie
and crumb, retries), and the adapter reads the chart body yfinance received into PRICES
rows the way yfinance's own history does (its fixes for Yahoo's quirks: a live bar appended
after `period2`, bars outside the regular session, DST; see the end of this doc).

How it drives yfinance, and why:

- yfinance talks through a session we give it: a curl_cffi session impersonating Chrome
  (what yfinance itself uses; Yahoo turns away clients that do not look like a browser),
  subclassed so that every call is recorded (`RecordedCall`). The raw zone gets the chart
  response bodies byte for byte from that record, and the status, headers or exception of the
  last chart request decide retry, backoff and errors, because yfinance logs HTTP
  failures and returns an empty frame rather than raising.
- `base_url` (settings.yahoo_base_url) points yfinance elsewhere (a proxy, a test server):
  when it is not a yahoo.com host, the session rebases every request for a `*.yahoo.com`
  host onto it, path and query kept. That covers the chart URL, built from
  `yfinance.const._BASE_URL_` (imported by value into yfinance's modules, so patching the
  constant does not reach them), and the cookie and crumb URLs (fc.yahoo.com,
  query1.../v1/test/getcrumb, guce.yahoo.com/consent), which are literals in yfinance's
  code. Scoped to this adapter's session; nothing in yfinance is modified.
- yfinance keeps one process-wide `YfData` (session, cookie, crumb). Calls are serialised
  on a module lock and point `YfData` at this adapter's session for the call. Its
  response cache is cleared first: it would answer a repeated past range without a
  request, leaving nothing for the raw zone.
- `PriceHistory(..., tz="Asia/Kolkata")` is yfinance's own history code (what
  `Ticker.history` calls), given the exchange's time zone, which is fixed for NSE and
  BSE, instead of letting `Ticker` ask Yahoo for it with an extra request per symbol.
- yfinance is synchronous: each call runs in a worker thread (`asyncio.to_thread`), which
  no asyncio cancellation can stop. So `timeout_s` bounds a whole yfinance call, not only
  each request: the session gives every request yfinance makes (cookie, crumb, consent,
  chart, its re-request; some with yfinance's own 30 s default) at most what is left of
  the call's `timeout_s`, and refuses to start one once it is spent. A cancelled poll's
  thread therefore ends within `timeout_s`, and `close()` waits for it before closing the
  session it is using.

Retries: yfinance itself re-requests once after a 4xx/5xx with a refreshed cookie and
crumb (Yahoo's answer to a stale crumb is 401). On top of that, a last answer of 429/5xx
or a timeout is retried here with exponential backoff and jitter, honouring Retry-After,
up to `retry.max_attempts` calls; 401/403 raise AuthError at once; 404 (unknown or
delisted symbol) skips that symbol; other 4xx raise HttpStatusError.

Bars: `ts` is the bar's open in UTC. Daily bars are keyed at 00:00 IST of the session
date, yfinance's (and NSE's) convention, which is also the warehouse's day bucket. A bar
still forming (the current minute, today's session before 16:00 IST) is not emitted: the
cursor moves past what is emitted, so only complete bars may be.

Records are read from the chart bodies kept for the raw zone, by `parse_payload` (`read_chart`
then `chart_records`), what a replay from the raw zone calls too (see `lineage`): yfinance
does the talking, its frame is not used. `read_chart` makes the bars yfinance's
`PriceHistory.history` makes of the body (with prepost, repair, actions, auto_adjust and
keepna off), step by step: sorted by time, the live bar past `period2` dropped, the DST slip of
daily bars mended, intraday bars outside the regular session dropped, daily bars keyed at
00:00 of their session date in the exchange's zone, a separate live row folded into its bar,
repeated times dropped, missing volume 0, bars with no value at all dropped. The chart's
request URL (the crumb left out) says the symbol, interval and `period2`; its text notes
(`#skip=`) the bars the poll did not emit (still forming, emitted before, outside a
backfill's day) and a backfill's run id and ingestion time. A bar's position is its index in
the body's `timestamp` list.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from yfinance import cache as yf_cache
from yfinance.data import YfData
from yfinance.exceptions import YFPricesMissingError, YFRateLimitError
from yfinance.scrapers.history import PriceHistory

from sentinel_ray.config import YahooSettings
from sentinel_ray.market import DAILY_BAR_FINAL_AFTER, EXCHANGE_TZ, YAHOO_SUFFIX, split_suffix
from sentinel_ray.records import FetchResult, RawPayload, SourceError, utc_now
from sentinel_ray.schemas import PRICES, TIMESTAMP_TYPE
from sentinel_ray.sources.base import HistorySource
from sentinel_ray.sources.lineage import (ParsedPayload, concat_records, cut_short, finish, payload_schema,
                                          positioned, read_whole, request_url, skipping, stamped)
from sentinel_ray.sources.parsing import (
    EARLIEST,
    MAX_COUNT,
    MAX_PAYLOAD_BYTES,
    PayloadError,
    UnreadablePayload,
    as_of,
    latest_allowed,
    loads_json,
    note_unparseable,
    note_unreadable,
    off_loop,
    unreadable_poll,
)
from sentinel_ray.sources.http import (RETRY_STATUSES, TOO_LARGE_HEAD_BYTES, AuthError, HttpStatusError, Retry,
                                      RetryPolicy, Sleep, TokenBucket, retry_after_seconds, with_retries)

try:  # yfinance's preferred backend: curl with a browser's TLS fingerprint
    from curl_cffi import CurlOpt
    from curl_cffi import requests as _http_backend

    # curl itself stops reading a body past the payload bound, declared or not (CURLE_FILESIZE_EXCEEDED):
    # a 10 MB answer is neither held in memory nor parsed
    _SESSION_OPTIONS: dict[str, Any] = {"impersonate": "chrome",
                                        "curl_options": {CurlOpt.MAXFILESIZE_LARGE: MAX_PAYLOAD_BYTES}}
except ImportError:  # pragma: no cover - yfinance falls back the same way
    import requests as _http_backend  # type: ignore[no-redef]

    _SESSION_OPTIONS = {}

log = logging.getLogger(__name__)

CHART_PATH = "/v8/finance/chart/"
INTERVALS = ("1m", "1d")
STEP = {"1m": dt.timedelta(minutes=1), "1d": dt.timedelta(days=1)}
FIRST_RANGE = {"1m": "1d", "1d": "5d"}  # what a poll without cursor asks for
INTRADAY_REACH = dt.timedelta(days=7)  # one 1m request may span at most 8 days
INTRADAY_DAYS = 29  # Yahoo keeps 1m bars about 30 days; older days get the daily bar
# Yahoo tolerates about one request a second per client before answering 429.
YAHOO_RATE_PER_S = 1.0
YAHOO_BURST = 4

# yfinance's YfData is one per process; one call at a time may point it at its session.
_YFINANCE_LOCK = threading.Lock()
_cache_dir_in_use: list[str] = []
_FILESIZE_EXCEEDED = 63  # libcurl's CURLE_FILESIZE_EXCEEDED

Clock = Callable[[], dt.datetime]


def _to_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)


@dataclass(frozen=True)
class YahooSymbol:
    """A watched listing: Yahoo symbol, exchange symbol without suffix, exchange."""

    yahoo: str
    ticker: str
    exchange: str

    @classmethod
    def parse(cls, text: str) -> "YahooSymbol":
        """`RELIANCE.NS` -> NSE, `RELIANCE.BO` -> BSE; a bare `RELIANCE` is the NSE listing."""
        symbol = text.strip().upper()
        base, exchange = split_suffix(symbol)
        if exchange:
            return cls(symbol, base, exchange)
        return cls(f"{symbol}{YAHOO_SUFFIX['NSE']}", symbol, "NSE")


# --- the recording, rebasing session yfinance talks through ---------------------------------


@dataclass(frozen=True)
class RecordedCall:
    """One HTTP request yfinance made and what came back (or the exception it raised)."""

    method: str
    url: str
    status: int | None
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    received_at: dt.datetime
    error: str | None = None
    too_large: bool = False  # the body ran past the payload bound: `body` is its head only

    @property
    def is_chart(self) -> bool:
        return CHART_PATH in urlsplit(self.url).path

    @property
    def audit_url(self) -> str:
        """The URL without yfinance's crumb (a session token); interval and range stay for replay."""
        parts = urlsplit(self.url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "crumb"])
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    def raw(self, source: str) -> RawPayload:
        content_type = self.headers.get("content-type", "application/json").split(";")[0].strip()
        return RawPayload(source, PRICES.name, self.received_at, self.body, content_type, self.audit_url)


class RecordingSession(_http_backend.Session):  # type: ignore[misc,name-defined]
    """The session yfinance uses: records every call, rebases Yahoo URLs onto `base_url`,
    and keeps every request within the current call's time budget (`deadline`)."""

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(**{**_SESSION_OPTIONS, **options})
        base = urlsplit(base_url.rstrip("/"))
        # Against Yahoo itself nothing is rewritten: fc.yahoo.com and friends must stay.
        self.rebase_to = None if _is_yahoo_host(base.hostname) else base
        self.calls: list[RecordedCall] = []
        self.deadline: float | None = None  # time.monotonic() by which the current call must be done

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        url = self._rebased(url)
        asked = _with_query(url, kwargs.get("params"))  # yfinance passes the query as params: recorded with it
        try:
            kwargs["timeout"] = self._timeout_within_budget(kwargs.get("timeout"))
            response = super().request(method, url, *args, **kwargs)
        except Exception as e:
            answer = getattr(e, "response", None)
            if getattr(e, "code", None) == _FILESIZE_EXCEEDED and answer is not None:
                headers = {str(k).lower(): str(v) for k, v in answer.headers.items()}
                head = (answer.content or b"")[:TOO_LARGE_HEAD_BYTES]
                self.calls.append(RecordedCall(method, asked, answer.status_code, headers, head, utc_now(),
                                               f"{type(e).__name__}: {e}", too_large=True))
            else:
                self.calls.append(RecordedCall(method, asked, None, {}, b"", utc_now(), f"{type(e).__name__}: {e}"))
            raise
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        self.calls.append(RecordedCall(method, asked, response.status_code, headers, response.content, utc_now()))
        return response

    def _timeout_within_budget(self, requested: Any) -> Any:
        if self.deadline is None:
            return requested
        left = self.deadline - time.monotonic()
        if left <= 0:
            # TimeoutError: yfinance treats it as the network timing out (no crumb, or no chart)
            raise TimeoutError("the call's time budget is spent")
        return min(requested, left) if isinstance(requested, (int, float)) else left

    def _rebased(self, url: str) -> str:
        parts = urlsplit(url)
        if self.rebase_to is None or not _is_yahoo_host(parts.hostname):
            return url
        base = self.rebase_to
        return urlunsplit((base.scheme, base.netloc, base.path + parts.path, parts.query, parts.fragment))


def _with_query(url: str, params: Any) -> str:
    """`url` with the query `params` added, as the request line carries them."""
    if not params:
        return url
    items = params.items() if isinstance(params, Mapping) else params
    query = urlencode([(k, v) for k, v in items if v is not None])
    return f"{url}{'&' if urlsplit(url).query else '?'}{query}" if query else url


def _is_yahoo_host(host: str | None) -> bool:
    return bool(host) and (host == "yahoo.com" or host.endswith(".yahoo.com"))  # type: ignore[union-attr]


def _use_cache_dir(path: str) -> None:
    """Keep yfinance's on-disk caches (Yahoo cookie, ...) under the platform's data dir."""
    if _cache_dir_in_use != [path]:
        Path(path).mkdir(parents=True, exist_ok=True)
        yf_cache.set_cache_location(path)
        _cache_dir_in_use[:] = [path]


def _close_when_idle(session: RecordingSession) -> None:
    # A call cancelled by its caller (a timeout) may still be using the session in its
    # thread; closing curl handles under a running transfer is unsafe, so wait for it
    # (at most the rest of its time budget).
    with _YFINANCE_LOCK:
        session.close()


@dataclass
class _Call:
    frame: pd.DataFrame | None
    calls: list[RecordedCall]
    error: BaseException | None


# --- chart bodies to rows --------------------------------------------------------------------


_PRICE_KEYS = ("open", "high", "low", "close")


@dataclass
class Chart:
    """A chart body as read (`read_chart`): the listing and interval its request asked for, the
    bars yfinance would make of it, each with its position in the body's `timestamp` list, and
    the positions of bars whose time is not a real one (they are no bars)."""

    symbol: YahooSymbol
    interval: str
    zone: str  # the exchange's time zone
    positions: np.ndarray  # int64
    ms: np.ndarray  # bar open, epoch ms (a daily bar: 00:00 of its session date in `zone`)
    prices: dict[str, np.ndarray]  # open, high, low, close: float64, NaN where there is none
    volume: np.ndarray  # float64
    unreal: list[int]

    @property
    def empty(self) -> bool:
        return len(self.ms) == 0

    def dates(self) -> np.ndarray:
        """Each bar's date in the exchange's zone (a daily bar's session date)."""
        return np.array(pd.DatetimeIndex(pd.to_datetime(self.ms, unit="ms", utc=True)).tz_convert(self.zone).date)


def chart_result(body: bytes, symbol: YahooSymbol) -> dict[str, Any]:
    """A 2xx chart body's result object; SourceError when the body is not Yahoo's chart JSON."""
    try:
        doc = loads_json(body, f"yahoo: chart of {symbol.yahoo}")
    except PayloadError as e:
        head = body[:80].decode("utf-8", errors="replace")
        what = "is not JSON" if "not JSON" in str(e) else f"cannot be read ({e})"
        raise SourceError(f"yahoo: chart of {symbol.yahoo} {what} (starts {head!r})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("chart"), dict):
        raise SourceError(f"yahoo: chart of {symbol.yahoo} has no 'chart' object")
    error = doc["chart"].get("error")
    if error:
        raise SourceError(f"yahoo: chart of {symbol.yahoo} reports an error: {error}")
    result = doc["chart"].get("result")
    if not isinstance(result, list) or not result or not isinstance(result[0], dict):
        raise SourceError(f"yahoo: chart of {symbol.yahoo} has no result")
    return result[0]


def _numbers(values: Any, n: int, what: str) -> np.ndarray:
    """A column of the body as float64: what is not a finite number is NaN (absent: all NaN)."""
    if values is None:
        return np.full(n, np.nan)
    if not isinstance(values, list) or len(values) != n:
        raise SourceError(f"yahoo: chart's {what} is not a list of {n} values")
    out = np.fromiter((_float(v) for v in values), dtype="float64", count=n)
    return np.where(np.isfinite(out), out, np.nan)


def _float(value: Any) -> float:
    """A number as yfinance's frame holds it (a numeric string too); NaN for anything else."""
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii():
            return math.nan  # float() reads Unicode digits
    try:
        return float(value)  # a bool is 0 or 1, as in yfinance's frame
    except (TypeError, ValueError, OverflowError):  # 10**400 is no float
        return math.nan


def _step_ms(interval: str) -> int | None:
    unit = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}.get(interval[-1:])
    return int(interval[:-1]) * unit if unit and interval[:-1].isdigit() else None


def read_chart(payload: RawPayload) -> Chart:
    """The bars of a kept chart body, as yfinance's history makes them (see the module doc), and
    the positions of those whose time is not a real one; SourceError when the body is not a chart."""
    url = request_url(payload.request)
    parts = urlsplit(url)
    symbol = YahooSymbol.parse(unquote(parts.path.rsplit("/", 1)[-1]))
    query = dict(parse_qsl(parts.query))
    with as_of(payload.received_at):
        result = chart_result(payload.body, symbol)
        meta = result.get("meta") if isinstance(result.get("meta"), dict) else {}
        interval = query.get("interval") or str(meta.get("dataGranularity") or "1d")
        zone = _zone(meta.get("exchangeTimezoneName"))
        times = result.get("timestamp") if isinstance(result.get("timestamp"), list) else []
        secs = _numbers(times, len(times), "timestamp")
        lo, hi = EARLIEST.timestamp(), latest_allowed().timestamp()
        real = (secs >= lo) & (secs <= hi)  # Yahoo's zeros and sentinels are no bars
    unreal = np.flatnonzero(~real).tolist()
    indicators = result.get("indicators") if isinstance(result.get("indicators"), dict) else {}
    quotes = indicators.get("quote")
    quote = quotes[0] if isinstance(quotes, list) and quotes and isinstance(quotes[0], dict) else {}
    n = len(times)
    if not n or not quote:
        return _chart(symbol, interval, zone, np.empty(0, np.int64), np.empty(0, np.int64),
                      {k: np.empty(0) for k in (*_PRICE_KEYS, "adjclose", "volume")}, unreal)
    cols = {k: _numbers(quote.get(k), n, k) for k in (*_PRICE_KEYS, "volume")}
    adjusted = indicators.get("adjclose")
    adjclose = adjusted[0].get("adjclose") if isinstance(adjusted, list) and adjusted \
        and isinstance(adjusted[0], dict) else None
    cols["adjclose"] = _numbers(adjclose, n, "adjclose") if adjclose is not None else cols["close"]
    order = np.flatnonzero(real)
    order = order[np.argsort(secs[order], kind="stable")]
    ms = (secs[order] * 1000).astype(np.int64)
    cols = {k: v[order] for k, v in cols.items()}
    positions = order.astype(np.int64)

    def keep(mask: np.ndarray) -> None:
        nonlocal ms, positions, cols
        ms, positions, cols = ms[mask], positions[mask], {k: v[mask] for k, v in cols.items()}

    period2 = query.get("period2", "")
    if period2.isascii() and period2.isdigit() and len(ms) and ms[-1] >= int(period2) * 1000:
        keep(np.arange(len(ms)) < len(ms) - 1)  # Yahoo appends the latest price even past the end asked for
    intraday = interval[-1:] in ("m", "h")
    local = pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True)).tz_convert(zone)
    if interval in ("1d", "1w", "1wk"):
        # daily bars start at 00:00; a few zones get them at 22:00 or 23:00 the day before (DST)
        slip = np.where((local.minute == 0) & np.isin(local.hour, (22, 23)), 24 - local.hour, 0)
        ms = ms + slip.astype(np.int64) * 3_600_000
        local = pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True)).tz_convert(zone)
    prepost = intraday and query.get("includePrePost", "").lower() == "true"
    if intraday and not prepost:
        keep(~_outside_session(ms, local, meta, zone, _step_ms(interval) or 60_000))
        local = pd.DatetimeIndex(pd.to_datetime(ms, unit="ms", utc=True)).tz_convert(zone)
    if not intraday:
        midnight = pd.to_datetime(local.date).tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        ms = np.asarray(midnight.tz_convert("UTC").as_unit("ms").asi8, dtype=np.int64)
        by_time = np.argsort(ms, kind="stable")
        keep(by_time)
    _fold_live_row(ms, cols, interval, prepost, keep)
    if len(ms):
        keep(np.concatenate([[True], ms[1:] != ms[:-1]]))  # a time twice: the first stays
    cols["volume"] = np.where(np.isnan(cols["volume"]), 0.0, cols["volume"])
    values = np.stack([cols[k] for k in (*_PRICE_KEYS, "adjclose", "volume")]) if len(ms) else np.empty((6, 0))
    keep(~np.all(np.isnan(values) | (values == 0), axis=0))  # no value at all: no bar
    return _chart(symbol, interval, zone, positions, ms, cols, unreal)


def _chart(symbol: YahooSymbol, interval: str, zone: str, positions: np.ndarray, ms: np.ndarray,
           cols: dict[str, np.ndarray], unreal: list[int]) -> Chart:
    return Chart(symbol, interval, zone, positions, ms, {k: cols[k] for k in _PRICE_KEYS}, cols["volume"], unreal)


def _zone(name: Any) -> str:
    if isinstance(name, str) and name:
        try:
            ZoneInfo(name)
            return name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return EXCHANGE_TZ  # NSE's and BSE's, which every watched listing trades in


def _outside_session(ms: np.ndarray, local: pd.DatetimeIndex, meta: Mapping[str, Any], zone: str,
                     step_ms: int) -> np.ndarray:
    """Intraday bars outside their day's regular session (meta.tradingPeriods): Yahoo sends
    some despite includePrePost=false. Days the meta lists no session for are kept."""
    periods = meta.get("tradingPeriods")
    regular = periods.get("regular") if isinstance(periods, dict) else periods
    sessions: dict[dt.date, tuple[float, float]] = {}
    for day in regular if isinstance(regular, list) else []:
        for period in day if isinstance(day, list) else [day]:
            start, end = (period.get("start"), period.get("end")) if isinstance(period, dict) else (None, None)
            try:
                date = dt.datetime.fromtimestamp(start, ZoneInfo(zone)).date()
                sessions.setdefault(date, (float(start) * 1000.0, float(end) * 1000.0))
            except (TypeError, ValueError, OverflowError, OSError):  # no session time: a day without one
                continue
    if not sessions:
        return np.zeros(len(ms), dtype=bool)
    bounds = np.array([sessions.get(d, (np.nan, np.nan)) for d in local.date], dtype="float64").reshape(-1, 2)
    return (ms >= bounds[:, 1]) | (ms + step_ms <= bounds[:, 0])  # NaN compares False: kept


def _fold_live_row(ms: np.ndarray, cols: dict[str, np.ndarray], interval: str, prepost: bool,
                   keep: Callable[[np.ndarray], None]) -> None:
    """Yahoo often sends the live price as a row of its own after the last bar: a daily chart's
    last two rows on one date keep the last; an intraday row inside the previous bar's minute
    is folded into that bar (yfinance's fix_Yahoo_returning_live_separate)."""
    if len(ms) < 2:
        return
    last, prev = len(ms) - 1, len(ms) - 2
    mask = np.ones(len(ms), dtype=bool)
    if interval == "1d":
        if ms[last] == ms[prev]:  # keyed at their session date: the same date
            mask[prev] = False
            keep(mask)
        return
    step = _step_ms(interval)
    if step is None or ms[last] - ms[prev] >= step or ms[last] == ms[prev]:
        return
    if prepost and ms[last] % 60_000 == 0:
        return  # the start of the post-market session, no live row
    if np.isnan(cols["open"][prev]):
        cols["open"][prev] = cols["open"][last]
    if not np.isnan(cols["high"][last]):
        cols["high"][prev] = np.nanmax([cols["high"][last], cols["high"][prev]])
    if not np.isnan(cols["low"][last]):
        cols["low"][prev] = np.nanmin([cols["low"][last], cols["low"][prev]])
    cols["close"][prev] = cols["close"][last]
    cols["adjclose"][prev] = cols["adjclose"][last]
    cols["volume"][prev] += cols["volume"][last]
    mask[last] = False
    keep(mask)


def chart_records(payload: RawPayload, chart: Chart) -> ParsedPayload:
    """The PRICES rows of a chart read by `read_chart`, as its poll emitted them."""
    n = len(chart.ms)
    volume = np.rint(chart.volume)
    volume = np.where((volume >= 0) & (volume < MAX_COUNT), volume, np.nan)  # 2^63-1 is no volume
    cols = {
        "ticker": pa.array([chart.symbol.ticker] * n, pa.string()),
        "exchange": pa.array([chart.symbol.exchange] * n, pa.string()),
        "interval": pa.array([chart.interval] * n, pa.string()),
        "ts": pa.array(chart.ms, pa.int64()).cast(TIMESTAMP_TYPE),
        **{name: pa.array(chart.prices[name], pa.float64(), from_pandas=True) for name in _PRICE_KEYS},
        "volume": pa.array(volume, pa.float64(), from_pandas=True).cast(pa.int64()),
        "source": pa.array([YahooSource.name] * n, pa.string()),
        "run_id": pa.nulls(n, pa.string()),
        "ingested_at": pa.array([payload.received_at] * n, TIMESTAMP_TYPE),
    }
    table = pa.Table.from_pydict(cols, schema=payload_schema(PRICES))
    return finish(payload, {PRICES.name: positioned(table, chart.positions)})


def parse_payload(payload: RawPayload) -> ParsedPayload:
    """The bars of one kept chart body (see `lineage`); bars whose time is not a real one are
    the unparseable records."""
    chart = read_whole(payload, read_chart)
    records = chart_records(payload, chart)
    records.unparseable = [(position, UNREAL_BAR) for position in chart.unreal]
    return records


UNREAL_BAR = "ValueError: the bar's time is not a real one (before 1990, after tomorrow, or not a number)"


@dataclass
class _Chart:
    """One symbol and interval's answer: its bars (None: no such symbol, 404) and the payload they
    were read from, as recorded."""

    chart: Chart | None
    payload: RawPayload


def _note_unreal_bars(chart: Chart, meta: dict[str, Any], payload: int) -> None:
    for position in chart.unreal:
        note_unparseable(meta, payload, position, UNREAL_BAR)


# --- the source ------------------------------------------------------------------------------


class YahooSource(HistorySource):
    """1-minute and daily bars of every watched NSE/BSE listing, from Yahoo via yfinance."""

    name = "yahoo"
    datasets = (PRICES.name,)
    settings_class = YahooSettings

    def __init__(self, settings: YahooSettings, *, retry: RetryPolicy | None = None,
                 rate_per_s: float = YAHOO_RATE_PER_S, burst: int = YAHOO_BURST, intervals: Sequence[str] = INTERVALS,
                 cache_dir: str | Path | None = None, sleep: Sleep = asyncio.sleep, clock: Clock = utc_now,
                 seed: int | None = None) -> None:
        self.symbols = list(dict.fromkeys(YahooSymbol.parse(s) for s in settings.tickers))
        bad = [i for i in intervals if i not in INTERVALS]
        if bad:
            raise SourceError(f"yahoo: intervals must be among {INTERVALS}, got {bad}")
        self.intervals = tuple(intervals)
        self.base_url = settings.base_url
        self.timeout_s = settings.timeout_s
        self.retry = retry or RetryPolicy(max_attempts=settings.max_attempts,
                                          max_retry_after_s=settings.max_server_wait_s)
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.sleep, self.clock = sleep, clock
        self._bucket = TokenBucket(rate_per_s, burst)
        self._rng = random.Random(seed)
        self._session = RecordingSession(self.base_url)
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings: Any) -> "YahooSource":
        # No HttpClient and no custom User-Agent: yfinance's curl session presents Chrome's
        # TLS fingerprint with Chrome's headers, and a mismatched User-Agent gets refused.
        return cls(YahooSettings.of(settings), cache_dir=settings.resolved_data_dir / "yfinance")

    async def close(self) -> None:
        session, self._session = self._session, RecordingSession(self.base_url)  # usable again after close
        await asyncio.to_thread(_close_when_idle, session)

    # -- polling ---------------------------------------------------------------------------
    async def fetch(self, cursor: dict[str, Any] | None) -> FetchResult:
        """Cursor: {"last_ts": {"RELIANCE.NS": {"1m": epoch ms, "1d": epoch ms}}}, the open
        time of the newest bar emitted per symbol and interval; a poll emits only newer,
        complete bars (without a cursor: the latest session's 1m bars, 5 days of 1d bars)."""
        last: dict[str, dict[str, int]] = {k: dict(v) for k, v in ((cursor or {}).get("last_ts") or {}).items()}
        tables, raw, missing = [], [], []
        meta: dict[str, Any] = {"missing_symbols": [], "skipped": 0}
        for symbol in self.symbols:
            for interval in self.intervals:
                since = last.get(symbol.yahoo, {}).get(interval)
                now = self.clock()
                window = self._poll_window(since, interval, now)
                if window is None:
                    continue
                try:
                    answer = await self._chart(symbol, interval, window, raw)
                except UnreadablePayload as e:
                    # one listing's unreadable chart must not hold back the others': noted (kept in the
                    # raw zone by the poller), its cursor stays, the poll goes on
                    note_unreadable(meta, len(raw) - 1, e)
                    continue
                chart = answer.chart
                if chart is None:  # 404: nothing to keep but the fact
                    missing.append(symbol.yahoo)
                    continue
                raw.append(answer.payload)
                _note_unreal_bars(chart, meta, len(raw) - 1)
                meta["skipped"] += len(chart.unreal)
                if chart.empty:
                    continue
                keep = self._complete(chart.ms, interval, now, since)
                raw[-1] = skipping(raw[-1], chart.positions[~keep].tolist())
                table = chart_records(raw[-1], chart)[PRICES.name]
                if table.num_rows:
                    tables.append(table)
                    newest = pc.max(table.column("ts").cast(pa.int64())).as_py()
                    last.setdefault(symbol.yahoo, {})[interval] = newest
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        next_cursor = {"last_ts": last} if last else cursor
        meta["missing_symbols"] = sorted(set(missing))
        return FetchResult(raw=raw, records={PRICES.name: concat_records(tables, PRICES)}, next_cursor=next_cursor,
                           meta=meta)

    @staticmethod
    def _poll_window(since: int | None, interval: str, now: dt.datetime) -> dict[str, Any] | None:
        if since is None:
            return {"period": FIRST_RANGE[interval]}
        start = _from_ms(since) + STEP[interval]
        if interval == "1m":
            start = max(start, now - INTRADAY_REACH)  # older gaps are the backfill's job
        return None if start >= now else {"start": start}

    @staticmethod
    def _complete(ms: np.ndarray, interval: str, now: dt.datetime, since: int | None) -> np.ndarray:
        final_after = STEP["1m"] if interval == "1m" else DAILY_BAR_FINAL_AFTER
        keep = ms + int(final_after.total_seconds() * 1000) <= _to_ms(now)
        return keep & (ms > since) if since is not None else keep

    # -- backfill --------------------------------------------------------------------------
    async def fetch_history(self, day: dt.date, *, run_id: str, ingested_at: dt.datetime) -> FetchResult:
        """1m bars of the UTC day for every watched listing while Yahoo still has them
        (about 30 days); for older days, the session's daily bar."""
        intraday = (self.clock().date() - day).days <= INTRADAY_DAYS
        interval = "1m" if intraday else "1d"
        if intraday:
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
            window: dict[str, Any] = {"start": start, "end": start + dt.timedelta(days=1)}
        else:  # dates are read in the exchange's time zone: exactly session `day`
            window = {"start": day, "end": day + dt.timedelta(days=1)}
        lo, hi = (_to_ms(window["start"]), _to_ms(window["end"])) if intraday else (None, None)
        tables, raw, missing = [], [], []
        meta: dict[str, Any] = {"interval": interval, "missing_symbols": missing, "skipped": 0}
        for symbol in self.symbols:
            answer = await self._chart(symbol, interval, window, raw)
            chart = answer.chart
            if chart is None:
                missing.append(symbol.yahoo)
                continue
            raw.append(answer.payload)
            _note_unreal_bars(chart, meta, len(raw) - 1)
            meta["skipped"] += len(chart.unreal)
            if chart.empty:
                continue
            keep = (chart.ms >= lo) & (chart.ms < hi) if intraday else chart.dates() == day
            raw[-1] = stamped(skipping(raw[-1], chart.positions[~keep].tolist()), run_id=run_id,
                              ingested_at=ingested_at)
            tables.append(chart_records(raw[-1], chart)[PRICES.name])
        return FetchResult(raw=raw, records={PRICES.name: concat_records(tables, PRICES)}, next_cursor=None, meta=meta)

    # -- one chart, with retries -----------------------------------------------------------
    async def _chart(self, symbol: YahooSymbol, interval: str, window: Mapping[str, Any],
                     raw: list[RawPayload]) -> _Chart:
        """The bars of one symbol and interval (read from the chart body yfinance received) and
        the payload for the raw zone; bars None when Yahoo knows no such symbol (404). A 2xx body
        that cannot be read is appended to `raw` and raised as UnreadablePayload."""

        async def attempt() -> _Chart | Retry:
            call = await asyncio.to_thread(self._history_blocking, symbol.yahoo, interval, dict(window))
            self.requests_made += len(call.calls)
            chart = next((x for x in reversed(call.calls) if x.is_chart), None)
            if chart is None:
                raise SourceError(f"yahoo: yfinance made no chart request for {symbol.yahoo}"
                                  + (f" ({call.error!r})" if call.error else ""))
            payload = chart.raw(self.name)
            if chart.too_large and chart.status is not None and chart.status < 300:
                raw.append(cut_short(payload))  # its head: kept in the raw zone by the poller, reported
                raise UnreadablePayload(f"yahoo: chart of {symbol.yahoo} is larger than the {MAX_PAYLOAD_BYTES:,} "
                                        f"bytes a payload may hold; not read further", raw)
            if chart.status is None:
                return Retry(chart.error or "no response")
            if chart.status < 300:
                try:
                    # up to 8 MiB of JSON: read off the event loop, which other pollers share
                    bars = await off_loop(lambda _body: read_chart(payload), payload.body)
                    if call.error is not None:
                        raise SourceError(f"yahoo: yfinance could not read the chart of {symbol.yahoo}: "
                                          f"{call.error!r}")
                except SourceError as e:  # the whole body: kept in the raw zone by the poller, reported
                    raw.append(payload)
                    raise UnreadablePayload(str(e), raw) from call.error
                return _Chart(bars, payload)
            if chart.status in (401, 403):
                raise AuthError(f"yahoo: HTTP {chart.status} from {chart.url.split('?', 1)[0]} even with a fresh "
                                f"cookie and crumb; Yahoo refuses this client; not retrying",
                                status=chart.status, body=chart.body)
            if chart.status == 404:
                log.warning("yahoo: no such symbol %s (HTTP 404)", symbol.yahoo)
                return _Chart(None, payload)
            if chart.status in RETRY_STATUSES:
                return Retry(f"HTTP {chart.status}", retry_after_seconds(chart.headers.get("retry-after")))
            raise HttpStatusError(chart.status, chart.url.split("?", 1)[0], chart.body)

        return await with_retries(f"yahoo: chart of {symbol.yahoo} ({interval})", attempt, retry=self.retry,
                                  bucket=self._bucket, sleep=self.sleep, rng=self._rng)

    def _history_blocking(self, yahoo_symbol: str, interval: str, window: dict[str, Any]) -> _Call:
        """One yfinance history call (worker thread). Never raises: the caller judges."""
        with _YFINANCE_LOCK:
            session = self._session
            if self.cache_dir:
                _use_cache_dir(self.cache_dir)
            YfData.cache_get.cache_clear()
            session.calls = []
            session.deadline = time.monotonic() + self.timeout_s
            frame, error = None, None
            try:
                history = PriceHistory(YfData(session=session), yahoo_symbol, EXCHANGE_TZ, session=session)
                frame = history.history(interval=interval, prepost=False, actions=False, auto_adjust=False,
                                        back_adjust=False, repair=False, keepna=False, rounding=False,
                                        timeout=self.timeout_s, **window)
            except (YFRateLimitError, YFPricesMissingError):
                pass  # the recorded call says what happened
            except Exception as e:  # noqa: BLE001 - handed to the caller with the recorded calls
                error = e
            finally:
                session.deadline = None
            return _Call(frame, list(session.calls), error)

