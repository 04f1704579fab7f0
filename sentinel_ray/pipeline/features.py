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
import warnings
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
_HOLIDAYS = np.array(sorted(NSE_HOLIDAYS), dtype="datetime64[D]")
_EPOCH = np.datetime64("1970-01-01", "D")
_POS_BITS = 32  # key << 32 | trading position
_TS_BITS = 42  # ticker << 42 | epoch ms

STATE_SCHEMA = pa.schema([
    pa.field("ticker", pa.string(), False), pa.field("exchange", pa.string(), False),
    pa.field("day", pa.int32(), False),  # trading-session ordinal (sessions since 1970-01-01)
    pa.field("minute", pa.int16(), False),  # 0..374 within the session
    pa.field("open", pa.float64(), False), pa.field("close", pa.float64(), False),
    pa.field("volume", pa.int64(), False),
])


@dataclass
class FeatureState:
    """The trailing context: 1m bars of each ticker's last WINDOW_SESSIONS + 1 sessions.

    Bounded: at most 21 x 375 = 7,875 bars per (ticker, exchange), 38 bytes each in
    Arrow (two dictionary-coded symbols, day, minute, open, close, volume) = ~300 KB.
    Everything else (posts windows and daily post counts) is read from stored posts,
    so a restart rebuilds this from the warehouse (`pipeline.features_store`).
    """

    bars: pa.Table

    @classmethod
    def empty(cls) -> "FeatureState":
        return cls(STATE_SCHEMA.empty_table())

    @property
    def nbytes(self) -> int:
        return self.bars.nbytes

    @property
    def keys(self) -> int:
        if self.bars.num_rows == 0:
            return 0
        return pc.count_distinct(_key_strings(self.bars)).as_py()

    def max_bars_per_key(self) -> int:
        if self.bars.num_rows == 0:
            return 0
        counts = pc.value_counts(_key_strings(self.bars)).field("counts")
        return pc.max(counts).as_py()

    def to_ipc(self) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, STATE_SCHEMA) as writer:
            writer.write_table(self.bars)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_ipc(cls, data: bytes) -> "FeatureState":
        return cls(pa.ipc.open_stream(data).read_all().cast(STATE_SCHEMA))


# -- calendar -------------------------------------------------------------------------

def session_ordinal(dates: np.ndarray) -> np.ndarray:
    """Trading sessions before each date since 1970-01-01 (NSE calendar): consecutive per session."""
    return np.busday_count(_EPOCH, dates.astype("datetime64[D]"), holidays=_HOLIDAYS).astype(np.int32)


def session_date(ordinals: np.ndarray) -> np.ndarray:
    return np.busday_offset(_EPOCH, ordinals.astype(np.int64), roll="forward", holidays=_HOLIDAYS)


def session_day(day: dt.date) -> int:
    return int(session_ordinal(np.array([day], dtype="datetime64[D]"))[0])


def warmup_start(first_day: dt.date) -> dt.date:
    """The first date whose rows the features of `first_day` can depend on: the session
    WINDOW_SESSIONS before it (which is at least POST_DAYS calendar days before)."""
    d = session_date(np.array([session_day(first_day) - WINDOW_SESSIONS]))[0]
    return min(d.astype(object), first_day - dt.timedelta(days=POST_DAYS))


def _ms(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)


def _ist_date(ms: np.ndarray) -> np.ndarray:
    return ((ms + _IST_MS) // MS_PER_DAY).astype("datetime64[D]")


def _key_strings(t: pa.Table) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(t.column("ticker"), t.column("exchange"), "|")


def _lex_codes(*cols: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(sorted distinct strings, each column's values as int64 indices into them): hashing
    in Arrow, sorting only the few distinct values (tickers) in Python."""
    chunks = [c for col in cols for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])]
    lengths = [len(c) for c in cols]
    if sum(lengths) == 0:
        return np.array([], object), [np.zeros(0, np.int64) for _ in cols]
    enc = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()).combine_chunks())
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
    t = prices.filter(pc.equal(prices.column("interval"), "1m")) if "interval" in prices.column_names else prices
    if t.num_rows == 0:
        return _bars_schema().empty_table()
    ms = _ms(t.column("ts"))
    local = ms + _IST_MS
    minute = (local % MS_PER_DAY) // MS_PER_MIN - _OPEN_MIN
    dates = (local // MS_PER_DAY).astype("datetime64[D]")
    keep = (minute >= 0) & (minute < SESSION_BARS) & (ms % MS_PER_MIN == 0) & np.is_busday(dates, holidays=_HOLIDAYS)
    t = t.filter(pa.array(keep))
    if t.num_rows == 0:
        return _bars_schema().empty_table()
    src = t.column("source") if "source" in t.column_names else pa.repeat(pa.scalar(""), t.num_rows)
    t = pa.table({"ticker": t.column("ticker"), "exchange": t.column("exchange"), "ts": t.column("ts"),
                  "source": src, "open": t.column("open"), "high": t.column("high"), "low": t.column("low"),
                  "close": t.column("close"), "volume": t.column("volume")})
    t = t.sort_by([("ticker", "ascending"), ("exchange", "ascending"), ("ts", "ascending"), ("source", "ascending")])
    ms = _ms(t.column("ts"))
    k = _key_strings(t).to_numpy(zero_copy_only=False)
    first = np.ones(t.num_rows, bool)
    first[1:] = (k[1:] != k[:-1]) | (ms[1:] != ms[:-1])
    t = t.filter(pa.array(first))
    ms = ms[first]
    local = ms + _IST_MS
    day = session_ordinal((local // MS_PER_DAY).astype("datetime64[D]"))
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

    ticker: np.ndarray  # object (str)
    ts: np.ndarray  # int64 ms
    author: np.ndarray  # int64 code, -1 when unknown
    platform: np.ndarray  # int64 code
    sentiment: np.ndarray  # float64, NaN when unknown
    promo: np.ndarray  # bool

    @classmethod
    def of(cls, posts: pa.Table | None) -> "_Posts":
        empty = np.array([], object)
        if posts is None or posts.num_rows == 0:
            return cls(empty, np.array([], np.int64), np.array([], np.int64), np.array([], np.int64),
                       np.array([], np.float64), np.array([], bool))
        # posts stored twice (re-delivered) count once
        cols = posts.column_names
        n = posts.num_rows
        sentiment = posts.column("sentiment").cast(pa.float64()) if "sentiment" in cols else pa.nulls(n, pa.float64())
        promo = (pc.fill_null(posts.column("is_pump_signal").cast(pa.bool_()), False) if "is_pump_signal" in cols
                 else pa.repeat(pa.scalar(False), n))
        base = pa.table({"platform": posts.column("platform"), "post_id": posts.column("post_id"),
                         "author": posts.column("author"), "ts": posts.column("ts").cast(TIMESTAMP_TYPE),
                         "sentiment": sentiment, "promo": promo, "tickers": posts.column("tickers")})
        base = base.sort_by([("platform", "ascending"), ("post_id", "ascending")])
        pid = pc.binary_join_element_wise(base.column("platform"), base.column("post_id"), "\x1f")
        pid = pid.to_numpy(zero_copy_only=False)
        last = np.ones(len(pid), bool)
        last[:-1] = pid[1:] != pid[:-1]
        base = base.filter(pa.array(last))
        tickers = base.column("tickers").combine_chunks()
        flat = pc.list_flatten(tickers)
        parent = pc.list_parent_indices(tickers)
        x = base.drop_columns(["tickers"]).take(parent).append_column("ticker", flat)
        x = x.filter(pc.is_valid(x.column("ticker")))
        x = x.group_by(["ticker", "platform", "post_id"], use_threads=False).aggregate(
            [(c, "first") for c in ("author", "ts", "sentiment", "promo")])  # a ticker listed twice in one post
        x = x.rename_columns([c.removesuffix("_first") for c in x.column_names])
        x = x.sort_by([("ticker", "ascending"), ("ts", "ascending"), ("platform", "ascending"),
                       ("post_id", "ascending")])
        author = pc.dictionary_encode(x.column("author").combine_chunks()).indices
        author = pc.fill_null(author.cast(pa.int64()), -1).to_numpy(zero_copy_only=False)
        platform = pc.dictionary_encode(x.column("platform").combine_chunks()).indices.cast(pa.int64())
        return cls(x.column("ticker").to_numpy(zero_copy_only=False), _ms(x.column("ts")), author,
                   platform.to_numpy(zero_copy_only=False),
                   pc.fill_null(x.column("sentiment"), np.nan).to_numpy(zero_copy_only=False).astype(np.float64),
                   x.column("promo").to_numpy(zero_copy_only=False).astype(bool))


# -- statistics: fixed summation order, so every driver gets the same bits ------------

def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """count, mean, population std along axis 1 of x (NaN = absent), summed slot by slot."""
    valid = ~np.isnan(x)
    count = valid.sum(axis=1)
    total = np.zeros(x.shape[0])
    for k in range(x.shape[1]):
        total = total + np.where(valid[:, k], x[:, k], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        sq = np.zeros(x.shape[0])
        for k in range(x.shape[1]):
            sq = sq + np.where(valid[:, k], (x[:, k] - mean) ** 2, 0.0)
        std = np.sqrt(sq / count)
    return count, mean, std


def _nanmedian(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=1) if x.shape[0] else np.zeros(0)


def _ratio(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> pa.Array:
    ok = ok & (den != 0) & ~np.isnan(den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(np.where(ok, num / np.where(ok, den, 1.0), 0.0), pa.float64(), mask=~ok)


def _ret(now: np.ndarray, then: np.ndarray, ok: np.ndarray) -> pa.Array:
    ok = ok & (then != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pa.array(np.where(ok, now / np.where(ok, then, 1.0) - 1.0, 0.0), pa.float64(), mask=~ok)


# -- posts features ---------------------------------------------------------------------

def _bar_post_columns(tickers: np.ndarray, ts_ms: np.ndarray, px: _Posts, daily_posts: tuple) -> dict[str, pa.Array]:
    cols = _post_columns(tickers, ts_ms + MS_PER_MIN, px)
    dates = ((ts_ms + _IST_MS) // MS_PER_DAY).astype(np.int64)
    cols["posts_z"], cols["promo_z"] = _post_z(tickers, dates, cols["posts_60m"].to_numpy(),
                                               cols["promo_posts_60m"].to_numpy(), daily_posts)
    return cols


def _day_post_columns(ticker: np.ndarray, d: int, daily_posts: tuple) -> dict[str, pa.Array]:
    n = len(ticker)
    date = session_date(np.array([d]))[0].astype(np.int64)
    idx = _ticker_index(daily_posts, ticker)
    posts, promo = _count_lookup(daily_posts, idx, np.full(n, date))
    past = np.zeros((n, WINDOW_SESSIONS))
    past_dates = session_date(np.arange(d - WINDOW_SESSIONS, d)).astype(np.int64)
    for k in range(WINDOW_SESSIONS):
        past[:, k], _ = _count_lookup(daily_posts, idx, np.full(n, past_dates[k]))
    return {"posts": pa.array(posts.astype(np.int64)), "promo_posts": pa.array(promo.astype(np.int64)),
            "posts_vs_median_20d": _ratio(posts, np.median(past, axis=1) if n else np.zeros(0), np.ones(n, bool))}


def refresh_post_features(f1m: pa.Table, f1d: pa.Table, posts: pa.Table | None, *,
                          computed_at: dt.datetime) -> tuple[pa.Table, pa.Table]:
    """Stored feature rows with their post columns recomputed from `posts` (which must
    cover `warmup_start` of their first day to their last close): what the stream does
    when posts arrive after the bars they belong to. Price columns are kept."""
    px = _Posts.of(posts)
    daily = _daily_post_counts(px)
    if f1m.num_rows:
        cols = _bar_post_columns(f1m.column("ticker").to_numpy(zero_copy_only=False), _ms(f1m.column("ts")), px,
                                 daily)
        f1m = _set_columns(f1m, {**cols, "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE),
                                                                   f1m.num_rows)})
    if f1d.num_rows:
        dates = ((_ms(f1d.column("day")) + _IST_MS) // MS_PER_DAY).astype("datetime64[D]")
        ords = session_ordinal(dates)
        parts = []
        for d in np.unique(ords):
            part = f1d.filter(pa.array(ords == d))
            cols = _day_post_columns(part.column("ticker").to_numpy(zero_copy_only=False), int(d), daily)
            parts.append(_set_columns(part, {**cols, "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE),
                                                                               part.num_rows)}))
        f1d = pa.concat_tables(parts)
    return f1m.cast(FEATURES_1M.arrow_schema), f1d.cast(FEATURES_1D.arrow_schema)


def _set_columns(t: pa.Table, cols: dict[str, pa.Array]) -> pa.Table:
    for name, col in cols.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, t.schema.field(i), col.cast(t.schema.field(i).type))
    return t


def _post_columns(tickers: np.ndarray, close_ms: np.ndarray, posts: _Posts) -> dict[str, pa.Array]:
    """Post features of bars closing at `close_ms`: posts with close - window <= ts < close."""
    n = len(tickers)
    _, (bar_code, post_code) = _lex_codes(pa.array(tickers, pa.string()), pa.array(posts.ticker, pa.string()))
    key = (post_code << _TS_BITS) | posts.ts  # sorted: posts are sorted by (ticker, ts)
    hi = np.searchsorted(key, (bar_code << _TS_BITS) | close_ms, "left")
    lo60 = np.searchsorted(key, (bar_code << _TS_BITS) | (close_ms - 60 * MS_PER_MIN), "left")
    lo15 = np.searchsorted(key, (bar_code << _TS_BITS) | (close_ms - 15 * MS_PER_MIN), "left")
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
    # distinct authors / platforms: a post counts when the previous post of the same
    # (ticker, author) is before the window's start
    for name, codes_of in (("authors_60m", posts.author), ("platforms_60m", posts.platform)):
        prev = _previous_same(post_code, codes_of)
        first = (prev[flat] < starts) & (codes_of[flat] >= 0)
        out[name] = pa.array(np.bincount(win, weights=first, minlength=n).astype(np.int64))
    sent = posts.sentiment[flat]
    known = ~np.isnan(sent)
    s = np.bincount(win, weights=np.where(known, sent, 0.0), minlength=n)
    c = np.bincount(win, weights=known, minlength=n)
    out["sentiment_60m"] = _ratio(s, c, c > 0)
    return out


def _previous_same(group: np.ndarray, value: np.ndarray) -> np.ndarray:
    """For each row, the index of the previous row with the same (group, value); -1 if none."""
    n = len(group)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(n), value, group))
    same = np.zeros(n, bool)
    same[1:] = (group[order][1:] == group[order][:-1]) & (value[order][1:] == value[order][:-1])
    prev = np.full(n, -1, np.int64)
    prev[order[1:][same[1:]]] = order[:-1][same[1:]]
    return prev


def _daily_post_counts(posts: _Posts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ticker names, sorted keys ticker_code << 32 | IST date, posts, promo posts) per (ticker, date)."""
    names, (code,) = _lex_codes(pa.array(posts.ticker, pa.string()))
    dates = ((posts.ts + _IST_MS) // MS_PER_DAY).astype(np.int64)
    keys, inv = np.unique((code << 32) | dates, return_inverse=True)
    return (names, keys, np.bincount(inv, minlength=len(keys)).astype(np.float64),
            np.bincount(inv, weights=posts.promo, minlength=len(keys)))


def _ticker_index(daily: tuple, tickers: np.ndarray) -> np.ndarray:
    """Each ticker's index in the daily counts' names; -1 when it has no posts at all."""
    names = daily[0]
    if len(names) == 0:
        return np.full(len(tickers), -1, np.int64)
    uniq, (codes,) = _lex_codes(pa.array(tickers, pa.string()))
    at = np.minimum(np.searchsorted(names, uniq), len(names) - 1)
    found = np.where(names[at] == uniq, at, -1)
    return found[codes]


def _count_lookup(daily: tuple, idx: np.ndarray, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, keys, counts, promos = daily
    if len(keys) == 0:
        return np.zeros(len(idx)), np.zeros(len(idx))
    key = (np.maximum(idx, 0) << 32) | dates.astype(np.int64)
    at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    hit = (idx >= 0) & (keys[at] == key)
    return np.where(hit, counts[at], 0.0), np.where(hit, promos[at], 0.0)


def _post_z(tickers: np.ndarray, dates: np.ndarray, posts_60m: np.ndarray, promo_60m: np.ndarray,
            daily: tuple) -> tuple[pa.Array, pa.Array]:
    """z of the last hour's counts against the hourly rate of each of the POST_DAYS days before."""
    base = np.zeros((len(tickers), POST_DAYS))
    promo = np.zeros((len(tickers), POST_DAYS))
    idx = _ticker_index(daily, tickers)
    for k in range(POST_DAYS):
        base[:, k], promo[:, k] = _count_lookup(daily, idx, dates - (k + 1))
    out = []
    for now, hist in ((posts_60m, base / 24.0), (promo_60m, promo / 24.0)):
        _, mean, std = _stats(hist)
        out.append(pa.array((now - mean) / np.maximum(std, POSTS_STD_FLOOR), pa.float64()))
    return out[0], out[1]


# -- the features ----------------------------------------------------------------------

def session_features(prices: pa.Table, posts: pa.Table | None, state: FeatureState, *,
                     computed_at: dt.datetime) -> tuple[pa.Table, pa.Table, FeatureState]:
    """Features of the new 1m bars in `prices`, the day rows of the sessions they touch,
    and the state after them.

    `posts` must hold every stored post from `warmup_start(first new session)` to the last
    new bar's close (later ones are ignored); `state` the bars of the 20 sessions before.
    """
    bars = session_bars(prices)
    px = _Posts.of(posts)
    daily_posts = _daily_post_counts(px)
    out_1m, out_1d = [], []
    for d in sorted(set(pc.unique(bars.column("day")).to_pylist())):
        new = bars.filter(pc.equal(bars.column("day"), d))
        f1m, f1d, state = _one_session(new, d, px, daily_posts, state, computed_at)
        out_1m.append(f1m)
        out_1d.append(f1d)
    f1m = pa.concat_tables(out_1m) if out_1m else FEATURES_1M.arrow_schema.empty_table()
    f1d = pa.concat_tables(out_1d) if out_1d else FEATURES_1D.arrow_schema.empty_table()
    return f1m, f1d, state


def _one_session(new: pa.Table, d: int, px: _Posts, daily_posts: tuple, state: FeatureState,
                 computed_at: dt.datetime) -> tuple[pa.Table, pa.Table, FeatureState]:
    new = new.sort_by([("ticker", "ascending"), ("exchange", "ascending"), ("minute", "ascending")])
    old = state.bars
    names, (codes_old, codes_new) = _lex_codes(_key_strings(old), _key_strings(new))
    okey = (codes_old << _POS_BITS) | (old.column("day").to_numpy().astype(np.int64) * SESSION_BARS
                                       + old.column("minute").to_numpy().astype(np.int64))
    nmin = new.column("minute").to_numpy().astype(np.int64)
    npos = d * SESSION_BARS + nmin
    ncode = codes_new
    nkey = (ncode << _POS_BITS) | npos
    # a re-delivered bar replaces its stored copy (same values: idempotent)
    fresh = ~np.isin(okey, nkey)
    if not fresh.all():
        old, okey, codes_old = old.filter(pa.array(fresh)), okey[fresh], codes_old[fresh]
    combined = pa.concat_tables([old, new.select(STATE_SCHEMA.names).cast(STATE_SCHEMA)])
    ckey = np.concatenate([okey, nkey])
    codes = np.concatenate([codes_old, ncode])
    cday = combined.column("day").to_numpy().astype(np.int64)
    cmin = combined.column("minute").to_numpy().astype(np.int64)
    order = np.argsort(ckey, kind="stable")
    ckey, codes, cday, cmin = ckey[order], codes[order], cday[order], cmin[order]
    copen = combined.column("open").to_numpy()[order]
    cclose = combined.column("close").to_numpy()[order]
    cvol = combined.column("volume").to_numpy()[order]
    n_new = new.num_rows
    close = new.column("close").to_numpy()

    def at(code: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        want = (code << _POS_BITS) | pos
        i = np.minimum(np.searchsorted(ckey, want), len(ckey) - 1)
        return i, ckey[i] == want

    cols: dict[str, pa.Array] = {}
    for n_min in RET_MINUTES:
        i, ok = at(ncode, npos - n_min)
        cols[f"ret_{n_min}m"] = _ret(close, cclose[i], ok)
    # previous close: the last bar of the latest earlier session within the window
    day_start = np.searchsorted(ckey, (ncode << _POS_BITS) | (d * SESSION_BARS))
    j = np.maximum(day_start - 1, 0)
    has_prev = (day_start > 0) & (codes[j] == ncode) & (cday[j] >= d - WINDOW_SESSIONS)
    prev_close = cclose[j]
    cols["ret_prev_close"] = _ret(close, prev_close, has_prev)
    first = np.minimum(day_start, len(ckey) - 1)  # the session's first bar (today's bars include the new ones)
    cols["gap_pct"] = _ret(copen[first], prev_close, has_prev)
    # volume against the same minute of the 20 sessions before
    keys_new, inv = np.unique(ncode, return_inverse=True)
    prior = (cday >= d - WINDOW_SESSIONS) & (cday < d) & np.isin(codes, keys_new)
    grid = np.full((len(keys_new), WINDOW_SESSIONS, SESSION_BARS), np.nan)
    grid[np.searchsorted(keys_new, codes[prior]), cday[prior] - (d - WINDOW_SESSIONS), cmin[prior]] = cvol[prior]
    hist = grid[inv, :, nmin]
    count, mean, std = _stats(hist)
    volume = new.column("volume").to_numpy().astype(np.float64)
    enough = count >= MIN_BASELINE
    cols["volume_z"] = _ratio(volume - mean, std, enough)
    cols["volume_ratio"] = _ratio(volume, _nanmedian(hist), enough)
    cols["range_pct"] = _ratio(new.column("high").to_numpy() - new.column("low").to_numpy(), close,
                               np.ones(n_new, bool))
    # posts
    pcols = _bar_post_columns(new.column("ticker").to_numpy(zero_copy_only=False), _ms(new.column("ts")), px,
                              daily_posts)
    stamp = pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE), n_new)
    f1m = pa.table({"ticker": new.column("ticker"), "exchange": new.column("exchange"), "ts": new.column("ts"),
                    "close": new.column("close"), "volume": new.column("volume"), **cols, **pcols,
                    "computed_at": stamp}).select(FEATURES_1M.column_names).cast(FEATURES_1M.arrow_schema)
    f1d = _day_rows(d, names, codes, cday, cmin, cclose, cvol, keys_new, daily_posts, computed_at)
    keep = pa.array(cday >= d - WINDOW_SESSIONS)
    trimmed = combined.take(pa.array(order)).filter(keep)
    return f1m, f1d, FeatureState(trimmed)


def _day_rows(d: int, names: np.ndarray, codes: np.ndarray, cday: np.ndarray, cmin: np.ndarray, cclose: np.ndarray,
              cvol: np.ndarray, keys: np.ndarray, daily_posts: tuple, computed_at: dt.datetime) -> pa.Table:
    """The day row of session `d` for `keys`, from their bars of that session so far."""
    window = (cday >= d - WINDOW_SESSIONS) & (cday <= d) & np.isin(codes, keys)
    k, day = codes[window], cday[window]
    group = (k << 16) | (day - (d - WINDOW_SESSIONS))  # (key, slot 0..20)
    uniq, start = np.unique(group, return_index=True)
    last = np.append(start[1:], len(group)) - 1  # rows are sorted by (key, position): last bar of the day
    vol = np.add.reduceat(cvol[window], start) if len(start) else np.zeros(0, np.int64)
    dclose = cclose[window][last]
    row = np.searchsorted(keys, uniq >> 16)
    slot = (uniq & 0xFFFF).astype(np.int64)
    closes = np.full((len(keys), WINDOW_SESSIONS + 1), np.nan)
    vols = np.full((len(keys), WINDOW_SESSIONS + 1), np.nan)
    closes[row, slot] = dclose
    vols[row, slot] = vol.astype(np.float64)
    volume_today = np.zeros(len(keys), np.int64)
    volume_today[row[slot == WINDOW_SESSIONS]] = vol[slot == WINDOW_SESSIONS]
    close = closes[:, WINDOW_SESSIONS]
    prior = closes[:, :WINDOW_SESSIONS]
    # the previous session with bars, within the window
    has = ~np.isnan(prior)
    latest = WINDOW_SESSIONS - 1 - np.argmax(has[:, ::-1], axis=1)
    prev = prior[np.arange(len(keys)), latest]
    key_names = names[keys]
    ticker = np.array([s.rsplit("|", 1)[0] for s in key_names], object)
    exchange = np.array([s.rsplit("|", 1)[1] for s in key_names], object)
    date = session_date(np.array([d]))[0].astype(np.int64)
    pcols = _day_post_columns(ticker, d, daily_posts)
    day_ts = (date * MS_PER_DAY - _IST_MS)
    return pa.table({
        "ticker": pa.array(ticker, pa.string()), "exchange": pa.array(exchange, pa.string()),
        "day": pa.array(np.full(len(keys), day_ts), pa.int64()).cast(TIMESTAMP_TYPE),
        "close": pa.array(close, pa.float64()), "volume": pa.array(volume_today, pa.int64()),
        "ret_1d": _ret(close, prev, has.any(axis=1)),
        "ret_5d": _ret(close, closes[:, WINDOW_SESSIONS - 5], ~np.isnan(closes[:, WINDOW_SESSIONS - 5])),
        "ret_20d": _ret(close, closes[:, 0], ~np.isnan(closes[:, 0])),
        "volume_vs_median_20d": _ratio(volume_today.astype(np.float64), _nanmedian(vols[:, :WINDOW_SESSIONS]),
                                       has.any(axis=1)),
        **pcols,
        "computed_at": pa.repeat(pa.scalar(computed_at, TIMESTAMP_TYPE), len(keys)),
    }, schema=FEATURES_1D.arrow_schema)
