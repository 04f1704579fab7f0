"""Yahoo Finance bars for NSE (`.NS`) and BSE (`.BO`) listings, through yfinance.

Yahoo's chart API (`GET /v8/finance/chart/<SYMBOL>?interval=1m|1d&period1=..&period2=..`
or `range=..`) answers `{"chart": {"result": [{"meta": {...}, "timestamp": [...],
"indicators": {"quote": [{"open": [...], "high", "low", "close", "volume"}]}}],
"error": null}}`. The adapter does not speak that protocol itself: yfinance does (cookie
and crumb, its fixes for Yahoo's quirks: a live bar appended after `period2`, bars outside
the regular session, DST), and the adapter turns yfinance's frame into PRICES rows.

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
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
from sentinel_ray.sources.parsing import (
    EARLIEST,
    MAX_COUNT,
    MAX_PAYLOAD_BYTES,
    RECORD_ERRORS,
    PayloadError,
    UnreadablePayload,
    epoch_seconds,
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
        try:
            kwargs["timeout"] = self._timeout_within_budget(kwargs.get("timeout"))
            response = super().request(method, url, *args, **kwargs)
        except Exception as e:
            answer = getattr(e, "response", None)
            if getattr(e, "code", None) == _FILESIZE_EXCEEDED and answer is not None:
                headers = {str(k).lower(): str(v) for k, v in answer.headers.items()}
                head = (answer.content or b"")[:TOO_LARGE_HEAD_BYTES]
                self.calls.append(RecordedCall(method, url, answer.status_code, headers, head, utc_now(),
                                               f"{type(e).__name__}: {e}", too_large=True))
            else:
                self.calls.append(RecordedCall(method, url, None, {}, b"", utc_now(), f"{type(e).__name__}: {e}"))
            raise
        headers = {str(k).lower(): str(v) for k, v in response.headers.items()}
        self.calls.append(RecordedCall(method, url, response.status_code, headers, response.content, utc_now()))
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


@dataclass
class _Chart:
    """One symbol and interval's answer: yfinance's frame (None: no such symbol, 404), the recorded
    chart call it came from, and the positions of bars in the body whose time is not a real one."""

    frame: pd.DataFrame | None
    call: RecordedCall
    unreal: list[int]


# --- frames to rows --------------------------------------------------------------------------


def _frame_ms(frame: pd.DataFrame) -> np.ndarray:
    index = pd.DatetimeIndex(frame.index)
    return index.tz_convert("UTC").as_unit("ms").asi8


def _column(frame: pd.DataFrame, name: str, keep: np.ndarray) -> np.ndarray:
    """A numeric column of the kept rows; what is not a finite number becomes NaN (null in the table)."""
    if name not in frame.columns:
        return np.full(int(keep.sum()), np.nan)
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)[keep]
    return np.where(np.isfinite(values), values, np.nan)


def _real_times(ms: np.ndarray) -> np.ndarray:
    """Rows whose bar time is a real one (1990 to tomorrow): Yahoo's zeros and sentinels are no bars."""
    lo, hi = int(EARLIEST.timestamp() * 1000), int(latest_allowed().timestamp() * 1000)
    return (ms >= lo) & (ms <= hi)


def bars_table(frame: pd.DataFrame | None, symbol: YahooSymbol, interval: str, keep: np.ndarray | None,
               ingested_at: dt.datetime, run_id: str | None = None) -> pa.Table:
    """The rows of `frame` selected by `keep` as a PRICES table."""
    if frame is None or frame.empty:
        return PRICES.record_schema.empty_table()
    keep = np.ones(len(frame), dtype=bool) if keep is None else keep
    keep = keep & _real_times(_frame_ms(frame))
    n = int(keep.sum())
    volume = np.rint(_column(frame, "Volume", keep))
    volume = np.where((volume >= 0) & (volume < MAX_COUNT), volume, np.nan)  # 2^63-1 is no volume
    cols = {
        "ticker": pa.array([symbol.ticker] * n, pa.string()),
        "exchange": pa.array([symbol.exchange] * n, pa.string()),
        "interval": pa.array([interval] * n, pa.string()),
        "ts": pa.array(_frame_ms(frame)[keep], pa.int64()).cast(TIMESTAMP_TYPE),
        **{name.lower(): pa.array(_column(frame, name, keep), pa.float64(), from_pandas=True)
           for name in ("Open", "High", "Low", "Close")},
        "volume": pa.array(volume, pa.float64(), from_pandas=True).cast(pa.int64()),
        "source": pa.array([YahooSource.name] * n, pa.string()),
        "run_id": pa.array([run_id] * n, pa.string()),
        "ingested_at": pa.array([ingested_at] * n, TIMESTAMP_TYPE),
    }
    return pa.Table.from_pydict(cols, schema=PRICES.record_schema)


def check_chart_body(body: bytes, symbol: YahooSymbol) -> list[int]:
    """A 2xx chart body must be Yahoo's chart JSON; anything else is a clear SourceError. Returns
    the positions (in its `timestamp` list) of bars whose time is not a real one: yfinance keeps
    them in its frame, the adapter drops them and notes them as unparseable."""
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
    times = result[0].get("timestamp")
    return [i for i, t in enumerate(times) if not _real_time(t)] if isinstance(times, list) else []


def _real_time(value: Any) -> bool:
    try:
        epoch_seconds(value)
    except RECORD_ERRORS:
        return False
    return True


def _note_unreal_bars(chart: _Chart, meta: dict[str, Any], payload: int) -> None:
    for position in chart.unreal:
        note_unparseable(meta, payload, position, "ValueError: the bar's time is not a real one (before 1990, "
                                                  "after tomorrow, or not a number)")


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
                    chart = await self._chart(symbol, interval, window, raw)
                except UnreadablePayload as e:
                    # one listing's unreadable chart must not hold back the others': noted (kept in the
                    # raw zone by the poller), its cursor stays, the poll goes on
                    note_unreadable(meta, len(raw) - 1, e)
                    continue
                if chart.frame is None:  # 404: nothing to keep but the fact
                    missing.append(symbol.yahoo)
                    continue
                raw.append(chart.call.raw(self.name))
                _note_unreal_bars(chart, meta, len(raw) - 1)
                meta["skipped"] += len(chart.unreal)
                if chart.frame.empty:  # yfinance's empty frame has no time zone: nothing to look at
                    continue
                keep = self._complete(chart.frame, interval, now, since)
                table = bars_table(chart.frame, symbol, interval, keep, chart.call.received_at)
                if table.num_rows:
                    tables.append(table)
                    newest = pc.max(table.column("ts").cast(pa.int64())).as_py()
                    last.setdefault(symbol.yahoo, {})[interval] = newest
        unreadable = unreadable_poll(raw, meta)
        if unreadable is not None:
            raise unreadable
        records = pa.concat_tables(tables) if tables else PRICES.record_schema.empty_table()
        next_cursor = {"last_ts": last} if last else cursor
        meta["missing_symbols"] = sorted(set(missing))
        return FetchResult(raw=raw, records={PRICES.name: records}, next_cursor=next_cursor, meta=meta)

    @staticmethod
    def _poll_window(since: int | None, interval: str, now: dt.datetime) -> dict[str, Any] | None:
        if since is None:
            return {"period": FIRST_RANGE[interval]}
        start = _from_ms(since) + STEP[interval]
        if interval == "1m":
            start = max(start, now - INTRADAY_REACH)  # older gaps are the backfill's job
        return None if start >= now else {"start": start}

    @staticmethod
    def _complete(frame: pd.DataFrame, interval: str, now: dt.datetime, since: int | None) -> np.ndarray:
        ms = _frame_ms(frame)
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
            chart = await self._chart(symbol, interval, window, raw)
            frame = chart.frame
            if frame is None:
                missing.append(symbol.yahoo)
                continue
            raw.append(chart.call.raw(self.name))
            _note_unreal_bars(chart, meta, len(raw) - 1)
            meta["skipped"] += len(chart.unreal)
            if frame.empty:
                continue
            ms = _frame_ms(frame)
            if intraday:
                keep = (ms >= lo) & (ms < hi)
            else:
                keep = np.array([d == day for d in pd.DatetimeIndex(frame.index).date], dtype=bool)
            tables.append(bars_table(frame, symbol, interval, keep, ingested_at, run_id))
        records = pa.concat_tables(tables) if tables else PRICES.record_schema.empty_table()
        return FetchResult(raw=raw, records={PRICES.name: records}, next_cursor=None, meta=meta)

    # -- one chart, with retries -----------------------------------------------------------
    async def _chart(self, symbol: YahooSymbol, interval: str, window: Mapping[str, Any],
                     raw: list[RawPayload]) -> _Chart:
        """yfinance's frame for one symbol and interval plus the recorded chart call it came from;
        frame None when Yahoo knows no such symbol (404). A 2xx body that cannot be read is
        appended to `raw` and raised as UnreadablePayload."""

        async def attempt() -> _Chart | Retry:
            call = await asyncio.to_thread(self._history_blocking, symbol.yahoo, interval, dict(window))
            self.requests_made += len(call.calls)
            chart = next((x for x in reversed(call.calls) if x.is_chart), None)
            if chart is None:
                raise SourceError(f"yahoo: yfinance made no chart request for {symbol.yahoo}"
                                  + (f" ({call.error!r})" if call.error else ""))
            if chart.too_large and chart.status is not None and chart.status < 300:
                raw.append(chart.raw(self.name))  # its head: kept in the raw zone by the poller, reported
                raise UnreadablePayload(f"yahoo: chart of {symbol.yahoo} is larger than the {MAX_PAYLOAD_BYTES:,} "
                                        f"bytes a payload may hold; not read further", raw)
            if chart.status is None:
                return Retry(chart.error or "no response")
            if chart.status < 300:
                try:
                    # up to 8 MiB of JSON: read off the event loop, which other pollers share
                    unreal = await off_loop(check_chart_body, chart.body, symbol)
                    if call.error is not None:
                        raise SourceError(f"yahoo: yfinance could not read the chart of {symbol.yahoo}: "
                                          f"{call.error!r}")
                except SourceError as e:  # the whole body: kept in the raw zone by the poller, reported
                    raw.append(chart.raw(self.name))
                    raise UnreadablePayload(str(e), raw) from call.error
                return _Chart(call.frame, chart, unreal)
            if chart.status in (401, 403):
                raise AuthError(f"yahoo: HTTP {chart.status} from {chart.url.split('?', 1)[0]} even with a fresh "
                                f"cookie and crumb; Yahoo refuses this client; not retrying",
                                status=chart.status, body=chart.body)
            if chart.status == 404:
                log.warning("yahoo: no such symbol %s (HTTP 404)", symbol.yahoo)
                return _Chart(None, chart, [])
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

