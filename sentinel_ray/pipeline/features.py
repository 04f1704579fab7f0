"""Point-in-time features per ticker per minute bar and per session day.

One library, two drivers. `session_features(prices, posts, state)` takes new 1m bars, the
posts around them and the trailing context (`FeatureState`), and returns the features of
the new bars, the day rows of the sessions they touch and the updated state. The backfill
calls it once for its range with a state warmed up from the warehouse; the stream calls
it per micro-batch with the state it keeps. Both go through the same per-session code on
the same values, so a day streamed and the same day backfilled give identical rows.

What "point in time" means here: a bar's features use bars at or before it and posts
published before its close (ts + 1 minute), nothing later. Every lookback is bounded and
exact (the bar N trading minutes earlier, the 20 sessions before, the 20 days before), so
the state needed to continue is bounded too: the last 21 sessions of bars per ticker.

Trading positions: a bar's position is `session ordinal * 375 + minute of session`
(`market.SESSION_BARS`), sessions counted on the NSE calendar, so "60 minutes earlier"
at 09:15 is 14:15 of the previous session. Only session bars (09:15-15:29 IST of a
trading day) get features.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import IST_OFFSET, MS_PER_DAY, MS_PER_MIN, NSE_HOLIDAYS, SESSION_BARS, SESSION_OPEN
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M, TIMESTAMP_TYPE

WINDOW_SESSIONS = 20  # trailing sessions of every price baseline (volume, daily medians)
POST_DAYS = 20  # trailing calendar days of the posts baseline
MIN_BASELINE = 5  # fewer same-minute volumes than this: no volume_z / volume_ratio
RET_MINUTES = (1, 5, 15, 60)
POSTS_STD_FLOOR = 1.0  # posts per hour: a ticker silent so far still scores the posts it gets
_IST_MS = int(IST_OFFSET.total_seconds() * 1000)
_OPEN_MIN = SESSION_OPEN.hour * 60 + SESSION_OPEN.minute
_CLOSE_MS_OF_DAY = (_OPEN_MIN + SESSION_BARS) * MS_PER_MIN  # 15:30 IST, from local midnight
_HOLIDAYS = np.array(sorted(NSE_HOLIDAYS), dtype="datetime64[D]")
_EPOCH = np.datetime64("1970-01-01", "D")
_TS_BITS = 42  # ticker << 42 | epoch ms
_SLOTS = WINDOW_SESSIONS + 1  # ring slots: a session and the 20 before it
_NO_SESSION = np.iinfo(np.int32).min  # an unused slot

# the state as bars (`FeatureState.bars`, its IPC form): the ring's contents, nothing more
STATE_SCHEMA = pa.schema([
    pa.field("ticker", pa.string(), False), pa.field("exchange", pa.string(), False),
    pa.field("day", pa.int32(), False),  # trading-session ordinal (sessions since 1970-01-01)
    pa.field("minute", pa.int16(), False),  # 0..374 within the session
    pa.field("open", pa.float64()),  # on the session's first bar only: the one open a feature reads
    pa.field("close", pa.float64(), False),
    pa.field("volume", pa.int64(), False),
])


class FeatureState:
    """The trailing context: each (ticker, exchange)'s 1m bars of its last 21 sessions, dense.

    Per key a ring of WINDOW_SESSIONS + 1 = 21 slots (slot = session ordinal % 21) x
    SESSION_BARS = 375 minutes: close (float64), volume (int64), present (bool), 17 bytes
    a minute; and per slot the session it holds, its first and last minute, the open of its
    first bar and its volume so far, 24 bytes. That is 21 x (375 x 17 + 24) = 134,379 bytes
    (~131 KB) per key however many bars it has, ~9.4 MB for the 70-ticker replay universe,
    ~265 MB for all 1,972 listed securities. A key with no bar left in the window gives its
    row to the next new key, so rows never outnumber the keys of the last 21 sessions.

    The window ends at `newest`, the latest session ever stored: bars of sessions before
    newest - 20 are gone (no lookback from a session at or after them reaches that far).
    A bar of an older session than that has no context left to continue from: it gets the
    features its own call's bars give it and is not kept. Lookups are indexing, so a call
    costs in proportion to its own bars, not to the state.

    `session_features` updates the state in place and returns it (`copy()` to branch).
    Posts windows and daily post counts are read from stored posts, so a restart rebuilds
    this from the warehouse (`pipeline.features_store.state_from_bars`).
    """

    def __init__(self) -> None:
        self.newest = _NO_SESSION  # the latest session stored
        self._names: list[tuple[str, str]] = []  # row -> (ticker, exchange)
        self._index: dict[tuple[str, str], int] = {}
        self._session = np.zeros((0, _SLOTS), np.int32)  # the session each slot holds
        self._close = np.zeros((0, _SLOTS, SESSION_BARS))
        self._volume = np.zeros((0, _SLOTS, SESSION_BARS), np.int64)
        self._present = np.zeros((0, _SLOTS, SESSION_BARS), bool)
        self._first = np.zeros((0, _SLOTS), np.int16)  # first minute with a bar
        self._last = np.zeros((0, _SLOTS), np.int16)  # last minute with a bar
        self._open = np.zeros((0, _SLOTS))  # open of the first bar
        self._day_volume = np.zeros((0, _SLOTS), np.int64)  # volume of the slot's bars

    _ARRAYS = ("_session", "_close", "_volume", "_present", "_first", "_last", "_open", "_day_volume")

    @classmethod
    def empty(cls) -> "FeatureState":
        return cls()

    def copy(self) -> "FeatureState":
        other = FeatureState()
        other.newest, other._names, other._index = self.newest, list(self._names), dict(self._index)
        for name in self._ARRAYS:
            setattr(other, name, getattr(self, name).copy())
        return other

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._ARRAYS)

    def _live_slots(self) -> np.ndarray:
        """(rows, slots): the slot holds a session of the window."""
        s = self._session[:len(self._names)]
        return (s != _NO_SESSION) & (s >= self.newest - WINDOW_SESSIONS)

    @property
    def keys(self) -> int:
        return int(self._live_slots().any(axis=1).sum())

    def max_bars_per_key(self) -> int:
        n = len(self._names)
        if n == 0:
            return 0
        return int((self._present[:n] & self._live_slots()[:, :, None]).sum(axis=(1, 2)).max())

    @property
    def bars(self) -> pa.Table:
        """The bars held, sorted by (ticker, exchange, day, minute)."""
        n = len(self._names)
        row, slot, minute = np.nonzero(self._present[:n] & self._live_slots()[:, :, None])
        first = minute == self._first[row, slot]
        tickers = np.array([t for t, _ in self._names], object)
        exchanges = np.array([e for _, e in self._names], object)
        t = pa.table({
            "ticker": pa.array(tickers[row], pa.string()), "exchange": pa.array(exchanges[row], pa.string()),
            "day": pa.array(self._session[row, slot], pa.int32()), "minute": pa.array(minute, pa.int16()),
            "open": pa.array(np.where(first, self._open[row, slot], 0.0), pa.float64(), mask=~first),
            "close": pa.array(self._close[row, slot, minute], pa.float64()),
            "volume": pa.array(self._volume[row, slot, minute], pa.int64())}, schema=STATE_SCHEMA)
        return t.sort_by([("ticker", "ascending"), ("exchange", "ascending"), ("day", "ascending"),
                          ("minute", "ascending")])

    def to_ipc(self) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, STATE_SCHEMA) as writer:
            writer.write_table(self.bars)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_ipc(cls, data: bytes) -> "FeatureState":
        return cls.of_bars(pa.ipc.open_stream(data).read_all())

    @classmethod
    def of_bars(cls, bars: pa.Table) -> "FeatureState":
        """The state holding `bars` (STATE_SCHEMA columns, one per key and position) of the
        21 sessions up to their latest."""
        state = cls()
        if bars.num_rows == 0:
            return state
        last = pc.max(bars.column("day")).as_py()
        bars = bars.filter(pc.greater_equal(bars.column("day"), last - WINDOW_SESSIONS))
        bars = bars.sort_by([("ticker", "ascending"), ("exchange", "ascending"), ("day", "ascending"),
                             ("minute", "ascending")])
        for d, part, keys, lengths in _by_session(bars):
            floor = max(d, state.newest) - WINDOW_SESSIONS
            rows = np.repeat(state._rows(keys, floor), lengths)
            state._write(rows, d, part.column("minute").to_numpy().astype(np.int64),
                         pc.fill_null(part.column("open"), np.nan).to_numpy(), part.column("close").to_numpy(),
                         part.column("volume").to_numpy())
        return state

    # -- the ring ---------------------------------------------------------------------

    def _rows(self, keys: list[tuple[str, str]], floor: int) -> np.ndarray:
        """The row of each key, new keys taking the rows of keys with no session >= floor
        (they can never be read again), else new rows."""
        rows = np.array([self._index.get(k, -1) for k in keys], np.int64)
        missing = np.flatnonzero(rows < 0)
        if len(missing) == 0:
            return rows
        n = len(self._names)
        dead = np.flatnonzero(self._session[:n].max(axis=1, initial=_NO_SESSION) < floor)
        dead = dead[~np.isin(dead, rows)][:len(missing)]
        for r in dead:
            del self._index[self._names[r]]
        grow = len(missing) - len(dead)
        if n + grow > len(self._session):
            self._grow(max(n + grow, len(self._session) + len(self._session) // 4))
        fresh = np.concatenate([dead, np.arange(n, n + grow)])
        self._names.extend([("", "")] * grow)
        self._session[fresh] = _NO_SESSION
        for i, r in zip(missing, fresh):
            self._names[r] = keys[i]
            self._index[keys[i]] = int(r)
        rows[missing] = fresh
        return rows

    def _grow(self, capacity: int) -> None:
        for name in self._ARRAYS:
            old = getattr(self, name)
            new = np.zeros((capacity, *old.shape[1:]), old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def _write(self, rows: np.ndarray, d: int, minute: np.ndarray, open_: np.ndarray, close: np.ndarray,
               volume: np.ndarray) -> None:
        """Store session d's bars; rows in runs of one key, minutes ascending and distinct in a
        run. A bar already held (same key and minute) is replaced."""
        s = d % _SLOTS
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        key = rows[starts]
        reuse = key[self._session[key, s] != d]
        self._session[reuse, s] = d
        self._present[reuse, s] = False
        self._first[reuse, s] = SESSION_BARS
        self._last[reuse, s] = -1
        self._open[reuse, s] = np.nan
        self._day_volume[reuse, s] = 0
        held = self._present[rows, s, minute]
        delta = volume - np.where(held, self._volume[rows, s, minute], 0)
        self._day_volume[key, s] += np.add.reduceat(delta, starts)
        first = minute[starts]
        earlier = first <= self._first[key, s]
        self._open[key[earlier], s] = open_[starts[earlier]]
        self._first[key, s] = np.minimum(self._first[key, s], first)
        self._last[key, s] = np.maximum(self._last[key, s], minute[ends - 1])
        self._close[rows, s, minute] = close
        self._volume[rows, s, minute] = volume
        self._present[rows, s, minute] = True
        self.newest = max(self.newest, d)

    def _window(self, key: np.ndarray, d: int, floor: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots of sessions d-20..d and (keys, 21): the key's slot holds that session."""
        sessions = np.arange(d - WINDOW_SESSIONS, d + 1)
        slots = sessions % _SLOTS
        return slots, (self._session[key][:, slots] == sessions) & (sessions >= floor)


def _by_session(bars: pa.Table) -> Iterator[tuple[int, pa.Table, list[tuple[str, str]], np.ndarray]]:
    """`bars` sorted by (ticker, exchange, position) -> per session, ascending: the session,
    its bars (same order), the (ticker, exchange) of each run of one key, the run lengths."""
    day = bars.column("day").to_numpy()
    if len(day) > 1 and (day[1:] < day[:-1]).any():
        order = np.argsort(day, kind="stable")
        bars, day = bars.take(order), day[order]
    ticker, exchange = _strings(bars.column("ticker")), _strings(bars.column("exchange"))
    n = len(day)
    change = np.ones(n, bool)
    if n > 1:
        change[1:] = ((day[1:] != day[:-1]) | pc.not_equal(ticker[1:], ticker[:-1]).to_numpy(zero_copy_only=False)
                      | pc.not_equal(exchange[1:], exchange[:-1]).to_numpy(zero_copy_only=False))
    starts = np.flatnonzero(change)
    lengths = np.diff(np.r_[starts, n])
    keys = list(zip(ticker.take(starts).to_pylist(), exchange.take(starts).to_pylist()))
    bounds = np.r_[np.flatnonzero(day[1:] != day[:-1]) + 1, n] if n else np.zeros(0, np.int64)
    lo, run = 0, 0
    for hi in bounds:
        k = np.searchsorted(starts, hi)
        yield int(day[lo]), bars.slice(lo, hi - lo), keys[run:k], lengths[run:k]
        lo, run = int(hi), int(k)


# -- calendar -------------------------------------------------------------------------

def session_ordinal(dates: np.ndarray) -> np.ndarray:
    """Trading sessions before each date since 1970-01-01 (NSE calendar): consecutive per session."""
    return np.busday_count(_EPOCH, dates.astype("datetime64[D]"), holidays=_HOLIDAYS).astype(np.int32)


def session_date(ordinals: np.ndarray) -> np.ndarray:
    return np.busday_offset(_EPOCH, ordinals.astype(np.int64), roll="forward", holidays=_HOLIDAYS)


def session_day(day: dt.date) -> int:
    return int(session_ordinal(np.array([day], dtype="datetime64[D]"))[0])


def last_session_reading(day: dt.date) -> dt.date:
    """The last session whose features read the bars of `day`: the WINDOW_SESSIONS-th after
    it (its volume and daily baselines hold `day`'s bars)."""
    return session_date(np.array([session_day(day) + WINDOW_SESSIONS]))[0].astype(object)


def sessions_reading(days: Iterable[dt.date], until: dt.date) -> list[dt.date]:
    """Every day from each of `days` to the last session whose features read its bars, up to
    `until` (days without sessions included: a caller skips those without bars)."""
    reached: set[dt.date] = set()
    for day in set(days):
        last = min(last_session_reading(day), until)
        reached.update(day + dt.timedelta(days=k) for k in range((last - day).days + 1))
    return sorted(reached)


def warmup_start(first_day: dt.date) -> dt.date:
    """The first date whose rows the features of `first_day` can depend on: the session
    WINDOW_SESSIONS before it (which is at least POST_DAYS calendar days before)."""
    d = session_date(np.array([session_day(first_day) - WINDOW_SESSIONS]))[0]
    return min(d.astype(object), first_day - dt.timedelta(days=POST_DAYS))


def _by_date(calendar: Callable[[np.ndarray], np.ndarray], days: np.ndarray) -> np.ndarray:
    """calendar(dates) for int64 days since 1970, computed once per distinct date of a short span."""
    if len(days) == 0:
        return calendar(days.astype("datetime64[D]"))
    lo, hi = int(days.min()), int(days.max())
    if hi - lo > 4 * len(days):
        return calendar(days.astype("datetime64[D]"))
    return calendar(np.arange(lo, hi + 1).astype("datetime64[D]"))[days - lo]


def _is_session_day(days: np.ndarray) -> np.ndarray:
    return _by_date(lambda dates: np.is_busday(dates, holidays=_HOLIDAYS), days)


def _ms(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)


def _ist_date(ms: np.ndarray) -> np.ndarray:
    return ((ms + _IST_MS) // MS_PER_DAY).astype("datetime64[D]")


def _strings(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One string array (a warehouse may hand back binary or dictionary-encoded columns)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return arr if arr.type == pa.string() else arr.cast(pa.string())


def _lex_codes(*cols: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(sorted distinct strings, each column's values as int64 indices into them): hashing
    in Arrow, sorting only the few distinct values (tickers) in Python."""
    chunks = [_strings(col) for col in cols]
    lengths = [len(c) for c in cols]
    if sum(lengths) == 0:
        return np.array([], object), [np.zeros(0, np.int64) for _ in cols]
    enc = pc.dictionary_encode(pa.concat_arrays(chunks) if len(chunks) > 1 else chunks[0])
    names = enc.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[enc.indices.to_numpy(zero_copy_only=False)]
    return names[order], np.split(codes, np.cumsum(lengths)[:-1])


# -- inputs ----------------------------------------------------------------------------

def session_bars(prices: pa.Table) -> pa.Table:
    """The 1m session bars of `prices` (state columns + ts, high, low), one per (ticker,
    exchange, ts): where sources disagree, the first source by name wins."""
    if prices.num_rows == 0:
        return _bars_schema().empty_table()
    t = prices.select([c for c in ("ticker", "exchange", "ts", "source", "open", "high", "low", "close", "volume")
                       if c in prices.column_names])
    ms = _ms(t.column("ts"))
    local = ms + _IST_MS
    minute = (local % MS_PER_DAY) // MS_PER_MIN - _OPEN_MIN
    keep = (minute >= 0) & (minute < SESSION_BARS) & (ms % MS_PER_MIN == 0) & _is_session_day(local // MS_PER_DAY)
    if "interval" in prices.column_names:
        keep &= pc.fill_null(pc.equal(prices.column("interval"), "1m"), False).to_numpy(zero_copy_only=False)
    if not keep.all():
        t = t.filter(pa.array(keep))
    if t.num_rows == 0:
        return _bars_schema().empty_table()
    # sort by (ticker, exchange, ts, source) on order-preserving integer codes; keep the first
    # row of each (ticker, exchange, ts)
    ms = ms[keep]
    _, (ticker,) = _lex_codes(t.column("ticker"))
    _, (exchange,) = _lex_codes(t.column("exchange"))
    _, (source,) = (_lex_codes(t.column("source")) if "source" in t.column_names
                    else (None, (np.zeros(t.num_rows, np.int64),)))
    order = np.lexsort((source, ms, exchange, ticker))
    ticker, exchange, ms = ticker[order], exchange[order], ms[order]
    first = np.ones(len(order), bool)
    first[1:] = (ticker[1:] != ticker[:-1]) | (exchange[1:] != exchange[:-1]) | (ms[1:] != ms[:-1])
    if first.all() and (order[1:] > order[:-1]).all():
        pass  # sorted already, no duplicates
    else:
        t = t.take(pa.array(order[first]))
        ms = ms[first]
    local = ms + _IST_MS
    day = _by_date(session_ordinal, local // MS_PER_DAY)
    minute = ((local % MS_PER_DAY) // MS_PER_MIN - _OPEN_MIN).astype(np.int16)
    return pa.table({"ticker": t.column("ticker"), "exchange": t.column("exchange"), "day": pa.array(day, pa.int32()),
                     "minute": pa.array(minute, pa.int16()), "open": t.column("open"), "close": t.column("close"),
                     "volume": t.column("volume"), "ts": t.column("ts").cast(TIMESTAMP_TYPE),
                     "high": t.column("high"), "low": t.column("low")})


def _bars_schema() -> pa.Schema:
    return pa.schema([*STATE_SCHEMA, pa.field("ts", TIMESTAMP_TYPE), pa.field("high", pa.float64()),
                      pa.field("low", pa.float64())])


@dataclass
class _Posts:
    """Posts exploded to one row per (post, ticker), sorted by (ticker, ts, platform, post_id)."""

    names: np.ndarray  # object (str): the distinct tickers, sorted
    code: np.ndarray  # int64: each row's ticker as an index into `names` (ascending)
    ts: np.ndarray  # int64 ms
    author: np.ndarray  # int64 code, -1 when unknown
    platform: np.ndarray  # int64 code
    sentiment: np.ndarray  # float64, NaN when unknown
    promo: np.ndarray  # bool

    @classmethod
    def of(cls, posts: pa.Table | None) -> "_Posts":
        if posts is None or posts.num_rows == 0:
            ints = np.zeros(0, np.int64)
            return cls(np.array([], object), ints, ints, ints, ints, np.zeros(0), np.zeros(0, bool))
        cols = posts.column_names
        n = posts.num_rows
        sentiment = posts.column("sentiment").cast(pa.float64()) if "sentiment" in cols else pa.nulls(n, pa.float64())
        promo = (pc.fill_null(posts.column("is_pump_signal").cast(pa.bool_()), False) if "is_pump_signal" in cols
                 else pa.repeat(pa.scalar(False), n))
        # posts stored twice (re-delivered) count once: the last copy of each (platform, post_id)
        _, (platform,) = _lex_codes(posts.column("platform"))
        post_id = _hash_codes(posts.column("post_id"))
        _, last = np.unique((platform * (post_id.max() + 2) + post_id + 1)[::-1], return_index=True)
        keep = np.sort(n - 1 - last)
        tickers = posts.column("tickers").take(pa.array(keep)).combine_chunks()
        flat = pc.list_flatten(tickers)
        parent = keep[pc.list_parent_indices(tickers).to_numpy()]
        valid = pc.is_valid(flat).to_numpy(zero_copy_only=False)
        if not valid.all():
            flat, parent = flat.filter(pa.array(valid)), parent[valid]
        names, (code,) = _lex_codes(flat)
        # a ticker listed twice in one post counts once
        _, once = np.unique(parent * (len(names) + 1) + code, return_index=True)
        parent, code = parent[once], code[once]
        ts = _ms(posts.column("ts").cast(TIMESTAMP_TYPE))[parent]
        platform = platform[parent]
        order = np.lexsort((platform, ts, code))
        order = _by_post_id(order, code, ts, platform, posts.column("post_id"), parent)
        parent, code, ts, platform = parent[order], code[order], ts[order], platform[order]
        author = _hash_codes(posts.column("author"))[parent]
        sentiment = pc.fill_null(sentiment, np.nan).to_numpy(zero_copy_only=False).astype(np.float64)[parent]
        promo = promo.to_numpy(zero_copy_only=False).astype(bool)[parent]
        return cls(names, code, ts, author, platform, sentiment, promo)

    @functools.cached_property
    def key(self) -> np.ndarray:
        return (self.code << _TS_BITS) | self.ts  # ascending: rows are sorted by (ticker, ts)


def _hash_codes(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Equal strings -> equal int64 codes (in no particular order), null -> -1."""
    enc = pc.dictionary_encode(_strings(col))
    return pc.fill_null(enc.indices.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)


def _by_post_id(order: np.ndarray, code: np.ndarray, ts: np.ndarray, platform: np.ndarray,
                post_id: pa.ChunkedArray, parent: np.ndarray) -> np.ndarray:
    """`order` (sorted by ticker, ts, platform) with rows equal on all three put in post_id order."""
    c, t, p = code[order], ts[order], platform[order]
    tie = (c[1:] == c[:-1]) & (t[1:] == t[:-1]) & (p[1:] == p[:-1])
    if not tie.any():
        return order
    order = order.copy()
    starts = np.flatnonzero(np.r_[True, ~tie])
    ends = np.r_[starts[1:], len(order)]
    for lo, hi in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        run = order[lo:hi]
        ids = post_id.take(pa.array(parent[run])).to_pylist()
        order[lo:hi] = run[np.array(sorted(range(len(run)), key=lambda i: ids[i]))]
    return order


# -- statistics: fixed summation order, so every driver gets the same bits ------------

def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """count, mean, population std along axis 1 of x (NaN = absent), summed slot by slot.
    In place where it can: fresh large temporaries cost page faults."""
    xt = np.ascontiguousarray(x.T)  # slot-major (free when x is a transposed slot-major array)
    absent = np.isnan(xt)
    count = xt.shape[0] - absent.sum(axis=0)
    work = np.where(absent, 0.0, xt)
    total = np.zeros(xt.shape[1])
    for k in range(len(xt)):
        total += work[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        np.subtract(xt, mean, out=work)
        np.square(work, out=work)
        np.copyto(work, 0.0, where=absent)
        sq = np.zeros(xt.shape[1])
        for k in range(len(xt)):
            sq += work[k]
        std = np.sqrt(sq / count)
    return count, mean, std


def _nanmedian(x: np.ndarray) -> np.ndarray:
    """np.nanmedian(x, axis=1) to the bit (the mean of the two middle values, NaN for a row
    of NaN), by one sort of the rows instead of numpy's masked-array path."""
    if x.shape[0] == 0:
        return np.zeros(0)
    ordered = np.sort(x, axis=1)  # NaN last
    count = (~np.isnan(x)).sum(axis=1)
    hi = count // 2
    lo = np.where(count % 2 == 1, hi, hi - 1)
    rows = np.arange(x.shape[0])
    with np.errstate(invalid="ignore"):
        mid = (ordered[rows, np.maximum(lo, 0)] + ordered[rows, np.minimum(hi, x.shape[1] - 1)]) / 2.0
    return np.where(count > 0, mid, np.nan)


def _ratio(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> pa.Array:
    ok = ok & (den != 0) & ~np.isnan(den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(np.where(ok, num / np.where(ok, den, 1.0), 0.0), pa.float64(), mask=~ok)


def _ret(now: np.ndarray, then: np.ndarray, ok: np.ndarray) -> pa.Array:
    ok = ok & (then != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(np.where(ok, now / np.where(ok, then, 1.0) - 1.0, 0.0), pa.float64(), mask=~ok)


# -- posts features ---------------------------------------------------------------------

def _bar_post_columns(code: np.ndarray, ts_ms: np.ndarray, px: _Posts, daily_posts: tuple) -> dict[str, pa.Array]:
    """Post columns of bars opening at `ts_ms` of tickers `code` (`_ticker_index`)."""
    cols = _post_columns(code, ts_ms + MS_PER_MIN, px)
    dates = ((ts_ms + _IST_MS) // MS_PER_DAY).astype(np.int64)
    cols["posts_z"], cols["promo_z"] = _post_z(code, dates, cols["posts_60m"].to_numpy(),
                                               cols["promo_posts_60m"].to_numpy(), daily_posts)
    return cols


def _day_post_columns(ticker: np.ndarray, d: int, daily_posts: tuple) -> dict[str, pa.Array]:
    """A day row's post columns from `daily_posts` counted to each session's close."""
    n = len(ticker)
    date = session_date(np.array([d]))[0].astype(np.int64)
    idx = _ticker_index(daily_posts, ticker)
    posts, promo = _count_lookup(daily_posts, idx, np.full(n, date))
    past_dates = session_date(np.arange(d - WINDOW_SESSIONS, d)).astype(np.int64)
    past, _ = _count_lookup(daily_posts, idx[:, None], np.broadcast_to(past_dates, (n, WINDOW_SESSIONS)))
    return {"posts": pa.array(posts.astype(np.int64)), "promo_posts": pa.array(promo.astype(np.int64)),
            "posts_vs_median_20d": _ratio(posts, np.median(past, axis=1) if n else np.zeros(0), np.ones(n, bool))}


def refresh_post_features(f1m: pa.Table, f1d: pa.Table, posts: pa.Table | None, *,
                          computed_at: dt.datetime) -> tuple[pa.Table, pa.Table]:
    """Stored feature rows with their post columns recomputed from `posts` (which must
    cover `warmup_start` of their first day to their last close): what the stream does
    when posts arrive after the bars they belong to. Price columns are kept."""
    px = _Posts.of(posts)
    daily = _daily_post_counts(px)
    daily_to_close = _daily_post_counts(px, before_close=True)
    if f1m.num_rows:
        code = _ticker_index(daily, f1m.column("ticker").to_numpy(zero_copy_only=False))
        cols = _bar_post_columns(code, _ms(f1m.column("ts")), px, daily)
        f1m = _set_columns(f1m, {**cols, "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE),
                                                                   f1m.num_rows)})
    if f1d.num_rows:
        dates = ((_ms(f1d.column("day")) + _IST_MS) // MS_PER_DAY).astype("datetime64[D]")
        ords = session_ordinal(dates)
        parts = []
        for d in np.unique(ords):
            part = f1d.filter(pa.array(ords == d))
            cols = _day_post_columns(part.column("ticker").to_numpy(zero_copy_only=False), int(d), daily_to_close)
            parts.append(_set_columns(part, {**cols, "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE),
                                                                               part.num_rows)}))
        f1d = pa.concat_tables(parts)
    return f1m.cast(FEATURES_1M.arrow_schema), f1d.cast(FEATURES_1D.arrow_schema)


def _set_columns(t: pa.Table, cols: dict[str, pa.Array]) -> pa.Table:
    for name, col in cols.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), col.cast(t.schema.field(i).type))
    return t


def _post_columns(code: np.ndarray, close_ms: np.ndarray, posts: _Posts) -> dict[str, pa.Array]:
    """Post features of bars of tickers `code` closing at `close_ms`: posts with close - window <= ts < close."""
    n = len(code)
    code = np.where(code < 0, len(posts.names), code)  # no posts: after all of them
    key = posts.key
    hi = np.searchsorted(key, (code << _TS_BITS) | close_ms, "left")
    lo60 = np.searchsorted(key, (code << _TS_BITS) | (close_ms - 60 * MS_PER_MIN), "left")
    lo15 = np.searchsorted(key, (code << _TS_BITS) | (close_ms - 15 * MS_PER_MIN), "left")
    length = hi - lo60
    win = np.repeat(np.arange(n), length)
    starts = np.repeat(lo60, length)
    flat = starts + (np.arange(len(win)) - np.repeat(np.cumsum(length) - length, length))
    in15 = flat >= np.repeat(lo15, length)
    promo = posts.promo[flat]
    out: dict[str, pa.Array] = {
        "posts_15m": pa.array(hi - lo15, pa.int64()),
        "posts_60m": pa.array(length, pa.int64()),
        "promo_posts_15m": pa.array(np.bincount(win, weights=promo & in15, minlength=n).astype(np.int64)),
        "promo_posts_60m": pa.array(np.bincount(win, weights=promo, minlength=n).astype(np.int64)),
    }
    # distinct (known) authors / platforms in each window
    for name, codes_of in (("authors_60m", posts.author), ("platforms_60m", posts.platform)):
        value = codes_of[flat]
        known = value >= 0
        span = int(value.max(initial=0)) + 1
        pairs = np.unique(win[known] * span + value[known])  # distinct (bar, author)
        out[name] = pa.array(np.bincount(pairs // span, minlength=n).astype(np.int64))
    sent = posts.sentiment[flat]
    known = ~np.isnan(sent)
    s = np.bincount(win, weights=np.where(known, sent, 0.0), minlength=n)
    c = np.bincount(win, weights=known, minlength=n)
    out["sentiment_60m"] = _ratio(s, c, c > 0)
    return out


def _daily_post_counts(posts: _Posts, *, before_close: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                               np.ndarray]:
    """(ticker names, sorted keys ticker_code << 32 | IST date, posts, promo posts) per (ticker, date).

    `before_close`: only posts published before the session close (15:30 IST) of their
    date, what a day row counts: the row is as of its close, so its value never depends
    on how far past the close the posts a caller read reach."""
    local = posts.ts + _IST_MS
    keep = (local % MS_PER_DAY) < _CLOSE_MS_OF_DAY if before_close else slice(None)
    dates = (local[keep] // MS_PER_DAY).astype(np.int64)
    promo = posts.promo[keep]
    keys, inv = np.unique((posts.code[keep] << 32) | dates, return_inverse=True)
    return (posts.names, keys, np.bincount(inv, minlength=len(keys)).astype(np.float64),
            np.bincount(inv, weights=promo, minlength=len(keys)))


def _ticker_index(daily: tuple, tickers: np.ndarray) -> np.ndarray:
    """Each ticker's index in the daily counts' names; -1 when it has no posts at all."""
    names = daily[0]
    if len(names) == 0 or len(tickers) == 0:
        return np.full(len(tickers), -1, np.int64)
    at = pc.index_in(pa.array(tickers, pa.string()), value_set=pa.array(names, pa.string()))
    return pc.fill_null(at, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _count_lookup(daily: tuple, idx: np.ndarray, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, keys, counts, promos = daily
    if len(keys) == 0:
        shape = np.broadcast_shapes(idx.shape, dates.shape)
        return np.zeros(shape), np.zeros(shape)
    key = (np.maximum(idx, 0) << 32) | dates.astype(np.int64)
    at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    hit = (idx >= 0) & (keys[at] == key)
    return np.where(hit, counts[at], 0.0), np.where(hit, promos[at], 0.0)


def _post_z(idx: np.ndarray, dates: np.ndarray, posts_60m: np.ndarray, promo_60m: np.ndarray,
            daily: tuple) -> tuple[pa.Array, pa.Array]:
    """z of the last hour's counts against the hourly rate of each of the POST_DAYS days before
    (`idx`: the ticker's index in the daily counts' names, -1 for none)."""
    # the baseline depends on (ticker, date) only: computed once per pair, the same bits
    lo = int(dates.min()) if len(dates) else 0
    span = int(dates.max()) - lo + 1 if len(dates) else 1
    pairs, inv = np.unique((idx + 1) * span + (dates - lo), return_inverse=True)
    pair_idx, pair_dates = pairs // span - 1, pairs % span + lo
    base, promo = _count_lookup(daily, pair_idx[:, None], pair_dates[:, None] - np.arange(1, POST_DAYS + 1))
    out = []
    for now, hist in ((posts_60m, base / 24.0), (promo_60m, promo / 24.0)):
        _, mean, std = _stats(hist)
        out.append(pa.array((now - mean[inv]) / np.maximum(std[inv], POSTS_STD_FLOOR), pa.float64()))
    return out[0], out[1]


# -- the features ----------------------------------------------------------------------

def session_features(prices: pa.Table, posts: pa.Table | None, state: FeatureState, *,
                     computed_at: dt.datetime) -> tuple[pa.Table, pa.Table, FeatureState]:
    """Features of the new 1m bars in `prices`, the day rows of the sessions they touch,
    and the state after them (`state`, updated in place).

    `posts` must hold every stored post from `warmup_start(first new session)` to the last
    new bar's close (later ones are ignored); `state` the bars of the 20 sessions before.
    """
    bars = session_bars(prices)
    if bars.num_rows == 0:
        return FEATURES_1M.arrow_schema.empty_table(), FEATURES_1D.arrow_schema.empty_table(), state
    px = _Posts.of(posts)
    daily_posts = _daily_post_counts(px)
    daily_to_close = _daily_post_counts(px, before_close=True)
    out_1m, out_1d = [], []
    for d, new, keys, lengths in _by_session(bars):
        f1m, f1d = _one_session(new, d, keys, lengths, px, daily_posts, daily_to_close, state, computed_at)
        out_1m.append(f1m)
        out_1d.append(f1d)
    return pa.concat_tables(out_1m), pa.concat_tables(out_1d), state


def _one_session(new: pa.Table, d: int, keys: list[tuple[str, str]], lengths: np.ndarray, px: _Posts,
                 daily_posts: tuple, daily_to_close: tuple, state: FeatureState,
                 computed_at: dt.datetime) -> tuple[pa.Table, pa.Table]:
    """Session d's bars `new` (sorted by ticker, exchange, minute; runs of `keys` of
    `lengths`) stored in `state`, and their features read from it."""
    if state.newest != _NO_SESSION and d < state.newest - WINDOW_SESSIONS:
        state = FeatureState()  # too old to continue from anything held: its own bars only
    floor = max(d, state.newest) - WINDOW_SESSIONS  # sessions before it are gone
    key = state._rows(keys, floor)
    rows = np.repeat(key, lengths)
    of_key = np.repeat(np.arange(len(key)), lengths)  # bar -> its index in `key`
    minute = new.column("minute").to_numpy().astype(np.int64)
    close = new.column("close").to_numpy()
    volume = new.column("volume").to_numpy()
    state._write(rows, d, minute, new.column("open").to_numpy(), close, volume)
    slots, live = state._window(key, d, floor)  # (keys, 21): sessions d-20..d
    n_new = new.num_rows

    cols: dict[str, pa.Array] = {}
    for n_min in RET_MINUTES:
        back = minute - n_min  # the position N trading minutes earlier: session d + back // 375
        k = WINDOW_SESSIONS + back // SESSION_BARS
        m = back % SESSION_BARS
        ok = (k >= 0) & live[of_key, np.maximum(k, 0)]
        s = slots[np.maximum(k, 0)]
        ok &= state._present[rows, s, m]
        cols[f"ret_{n_min}m"] = _ret(close, state._close[rows, s, m], ok)
    # previous close: the last bar of the latest earlier session within the window
    prior = live[:, :WINDOW_SESSIONS]
    has_prev = prior.any(axis=1)
    latest = slots[WINDOW_SESSIONS - 1 - np.argmax(prior[:, ::-1], axis=1)]
    prev_close = state._close[key, latest, state._last[key, latest]]
    cols["ret_prev_close"] = _ret(close, prev_close[of_key], has_prev[of_key])
    today = slots[WINDOW_SESSIONS]
    cols["gap_pct"] = _ret(state._open[key, today][of_key], prev_close[of_key], has_prev[of_key])
    # volume against the same minute of the 20 sessions before, slot-major: (20, bars)
    at = (slots[:WINDOW_SESSIONS, None] * SESSION_BARS) + (rows * (_SLOTS * SESSION_BARS) + minute)[None, :]
    absent = ~state._present.reshape(-1)[at]
    absent |= ~prior.T[:, of_key]
    hist = state._volume.reshape(-1)[at].astype(np.float64)
    np.copyto(hist, np.nan, where=absent)
    hist = hist.T
    count, mean, std = _stats(hist)
    volume = volume.astype(np.float64)
    enough = count >= MIN_BASELINE
    cols["volume_z"] = _ratio(volume - mean, std, enough)
    cols["volume_ratio"] = _ratio(volume, _nanmedian(hist), enough)
    cols["range_pct"] = _ratio(new.column("high").to_numpy() - new.column("low").to_numpy(), close,
                               np.ones(n_new, bool))
    # posts
    code = _ticker_index(daily_posts, np.array([t for t, _ in keys], object))
    pcols = _bar_post_columns(np.repeat(code, lengths), _ms(new.column("ts")), px, daily_posts)
    stamp = pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE), n_new)
    f1m = pa.table({"ticker": new.column("ticker"), "exchange": new.column("exchange"), "ts": new.column("ts"),
                    "close": new.column("close"), "volume": new.column("volume"), **cols, **pcols,
                    "computed_at": stamp}).select(FEATURES_1M.column_names).cast(FEATURES_1M.arrow_schema)
    f1d = _day_rows(d, state, keys, key, slots, live, daily_to_close, computed_at)
    return f1m, f1d


def _day_rows(d: int, state: FeatureState, keys: list[tuple[str, str]], key: np.ndarray, slots: np.ndarray,
              live: np.ndarray, daily_posts: tuple, computed_at: dt.datetime) -> pa.Table:
    """The day row of session `d` for `keys` (rows `key`), from their bars of that session so far."""
    order = np.argsort(np.array([f"{t}|{e}" for t, e in keys], object), kind="stable")
    key, live = key[order], live[order]
    n = len(key)
    closes = np.where(live, state._close[key[:, None], slots[None, :], state._last[key][:, slots]], np.nan)
    vols = np.where(live, state._day_volume[key][:, slots].astype(np.float64), np.nan)
    volume_today = state._day_volume[key, slots[WINDOW_SESSIONS]]
    close = closes[:, WINDOW_SESSIONS]
    prior = closes[:, :WINDOW_SESSIONS]
    # the previous session with bars, within the window
    has = ~np.isnan(prior)
    latest = WINDOW_SESSIONS - 1 - np.argmax(has[:, ::-1], axis=1)
    prev = prior[np.arange(n), latest]
    ticker = np.array([keys[i][0] for i in order], object)
    exchange = np.array([keys[i][1] for i in order], object)
    date = session_date(np.array([d]))[0].astype(np.int64)
    pcols = _day_post_columns(ticker, d, daily_posts)
    day_ts = (date * MS_PER_DAY - _IST_MS)
    return pa.table({
        "ticker": pa.array(ticker, pa.string()), "exchange": pa.array(exchange, pa.string()),
        "day": pa.array(np.full(n, day_ts), pa.int64()).cast(TIMESTAMP_TYPE),
        "close": pa.array(close, pa.float64()), "volume": pa.array(volume_today, pa.int64()),
        "ret_1d": _ret(close, prev, has.any(axis=1)),
        "ret_5d": _ret(close, closes[:, WINDOW_SESSIONS - 5], ~np.isnan(closes[:, WINDOW_SESSIONS - 5])),
        "ret_20d": _ret(close, closes[:, 0], ~np.isnan(closes[:, 0])),
        "volume_vs_median_20d": _ratio(volume_today.astype(np.float64), _nanmedian(vols[:, :WINDOW_SESSIONS]),
                                       has.any(axis=1)),
        **pcols,
        "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE), n),
    }, schema=FEATURES_1D.arrow_schema)
