"""Features: each definition on hand-made bars, no look-ahead, stream == backfill, bounded
state and restart equality; all on plain Arrow tables (the warehouse test is in test_backfill)."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray.market import MS_PER_MIN, SESSION_BARS, ist_midnight_utc
from sentinel_ray.pipeline.features import (WINDOW_SESSIONS, FeatureState, refresh_post_features, session_date,
                                            session_day, session_features)
from sentinel_ray.pipeline.features_store import state_from_bars
from sentinel_ray.schemas import POSTS, PRICES

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, tzinfo=UTC)
D0 = dt.date(2026, 11, 2)  # a Monday


def day_n(n: int) -> dt.date:
    return session_date(np.array([session_day(D0) + n]))[0].astype(object)


def bar_ts(n: int, minute: int) -> dt.datetime:
    return ist_midnight_utc(day_n(n)) + dt.timedelta(hours=9, minutes=15 + minute)


def bar(n: int, minute: int, close: float, *, ticker: str = "AAA", open_: float | None = None, high: float | None = None,
        low: float | None = None, volume: int = 100) -> dict:
    return {"ticker": ticker, "exchange": "NSE", "interval": "1m", "ts": bar_ts(n, minute),
            "open": close if open_ is None else open_, "high": close if high is None else high,
            "low": close if low is None else low, "close": close, "volume": volume, "source": "replay",
            "run_id": "r", "ingested_at": NOW}


def prices(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PRICES.arrow_schema)


def post(ts: dt.datetime, *, pid: str, tickers: list[str] = ["AAA"], author: str | None = "a", platform: str = "x",
         sentiment: float | None = None, promo: bool = False) -> dict:
    return {"platform": platform, "post_id": pid, "author": author, "text": "t", "ts": ts, "url": None,
            "engagement": 0, "tickers": tickers, "source": "replay", "run_id": "r", "ingested_at": NOW,
            "sentiment": sentiment, "is_pump_signal": promo}


def posts(rows: list[dict]) -> pa.Table:
    schema = POSTS.arrow_schema
    for name, typ in (("sentiment", pa.float64()), ("is_pump_signal", pa.bool_())):
        if name not in schema.names:
            schema = schema.append(pa.field(name, typ))
    return pa.Table.from_pylist(rows, schema=schema)


def run(rows: list[dict], post_rows: list[dict] | None = None, state: FeatureState | None = None):
    return session_features(prices(rows), posts(post_rows or []), state or FeatureState.empty(), computed_at=NOW)


def row_at(f1m: pa.Table, n: int, minute: int, ticker: str = "AAA") -> dict:
    rows = f1m.filter(pc.and_(pc.equal(f1m.column("ts"), pa.scalar(bar_ts(n, minute), f1m.schema.field("ts").type)),
                              pc.equal(f1m.column("ticker"), ticker))).to_pylist()
    assert len(rows) == 1
    return rows[0]


# -- definitions --------------------------------------------------------------------------

def test_returns_range_gap_and_previous_close_across_sessions() -> None:
    rows = [bar(0, 370 + i, 100.0 + i) for i in range(5)]  # 14:25..14:29 ... closes 100..104
    rows += [bar(1, 0, 105.0, open_=103.0, high=106.0, low=102.0), bar(1, 1, 106.0)]
    f1m, _, _ = run(rows)
    first = row_at(f1m, 1, 0)
    assert first["ret_1m"] == 105.0 / 104.0 - 1  # 09:15 against the previous session's 15:29
    assert first["ret_5m"] == 105.0 / 100.0 - 1
    assert first["ret_15m"] is None and first["ret_60m"] is None  # no bar 15 / 60 trading minutes earlier
    assert first["ret_prev_close"] == 105.0 / 104.0 - 1
    assert first["gap_pct"] == 103.0 / 104.0 - 1
    assert first["range_pct"] == (106.0 - 102.0) / 105.0
    second = row_at(f1m, 1, 1)
    assert second["ret_1m"] == 106.0 / 105.0 - 1
    assert second["gap_pct"] == 103.0 / 104.0 - 1  # the session's open, all session
    assert second["ret_prev_close"] == 106.0 / 104.0 - 1
    assert row_at(f1m, 0, 370)["ret_prev_close"] is None  # first session: nothing before


def test_volume_z_and_ratio_use_the_same_minute_of_the_trailing_sessions() -> None:
    rows = [bar(n, 10, 100.0, volume=10 * (n + 1)) for n in range(5)]  # 10..50 at 09:25
    rows += [bar(n, 11, 100.0, volume=1_000_000) for n in range(5)]  # another minute: not the baseline
    rows += [bar(5, 10, 100.0, volume=60)]
    f1m, _, _ = run(rows)
    r = row_at(f1m, 5, 10)
    mean, std = 30.0, math.sqrt(200.0)
    assert r["volume_z"] == pytest.approx((60 - mean) / std, rel=1e-15)
    assert r["volume_ratio"] == 60 / 30
    assert row_at(f1m, 4, 10)["volume_z"] is None  # 4 sessions of baseline: too few


def test_volume_baseline_is_the_last_20_sessions_only() -> None:
    rows = [bar(0, 0, 100.0, volume=1_000_000)]  # 21 sessions before: out of the window
    rows += [bar(n, 0, 100.0, volume=100 if n % 2 else 200) for n in range(1, 21)]
    rows += [bar(21, 0, 100.0, volume=150)]
    r = row_at(run(rows)[0], 21, 0)
    assert r["volume_z"] == 0.0 and r["volume_ratio"] == 1.0  # mean 150 and median 150 of the last 20


def test_post_windows_counts_authors_platforms_sentiment() -> None:
    t = bar_ts(0, 100)
    close = t + dt.timedelta(minutes=1)
    p = [
        post(close - dt.timedelta(minutes=61), pid="old"),  # before the 60m window
        post(close - dt.timedelta(minutes=60), pid="edge", author="b", sentiment=0.5),  # at its start: in
        post(close - dt.timedelta(minutes=30), pid="p2", author="a", platform="reddit", promo=True, sentiment=-0.25),
        post(close - dt.timedelta(minutes=15), pid="p3", author="a", promo=True),  # 15m window start: in
        post(t + dt.timedelta(seconds=30), pid="p4", author=None, tickers=["AAA", "BBB"], sentiment=1.0),
        post(close, pid="late", author="z", promo=True),  # at the close: after the bar
        post(t, pid="other", tickers=["BBB"]),
    ]
    r = row_at(run([bar(0, 100, 10.0)], p)[0], 0, 100)
    assert (r["posts_15m"], r["posts_60m"], r["promo_posts_15m"], r["promo_posts_60m"]) == (2, 4, 1, 2)
    assert (r["authors_60m"], r["platforms_60m"]) == (2, 2)  # a, b (unknown not counted); x, reddit
    assert r["sentiment_60m"] == (0.5 - 0.25 + 1.0) / 3
    # z against 20 silent days: hourly rates 0, std floored at one post
    assert r["posts_z"] == 4.0 and r["promo_z"] == 2.0


def test_posts_z_against_trailing_days() -> None:
    n = 25
    day = day_n(n)
    p = []
    for k in range(1, 21):  # 20 calendar days before: 24 posts each except one day with 48
        d = ist_midnight_utc(day - dt.timedelta(days=k))
        p += [post(d + dt.timedelta(minutes=30 * i), pid=f"{k}-{i}") for i in range(48 if k == 1 else 24)]
    t = bar_ts(n, 0)
    p += [post(t - dt.timedelta(minutes=i), pid=f"now-{i}") for i in range(3)]
    r = row_at(run([bar(n, 0, 10.0)], p)[0], n, 0)
    rates = np.array([2.0] + [1.0] * 19)
    assert r["posts_60m"] == 3
    assert r["posts_z"] == (3 - rates.mean()) / max(rates.std(), 1.0)


def test_day_rows() -> None:
    rows = []
    for n in range(21):
        rows += [bar(n, 0, 100.0 + n, volume=1000), bar(n, 374, 101.0 + n, volume=1000 + n)]
    p = [post(ist_midnight_utc(day_n(20)) + dt.timedelta(hours=20), pid="evening", promo=True),
         post(ist_midnight_utc(day_n(20)) + dt.timedelta(hours=2), pid="night")]
    _, f1d, _ = run(rows, p)
    last = f1d.filter(pc.equal(f1d.column("day"), pa.scalar(ist_midnight_utc(day_n(20)), f1d.schema.field("day").type)))
    r = last.to_pylist()[-1]
    assert (r["close"], r["volume"]) == (121.0, 2020)
    assert r["ret_1d"] == 121.0 / 120.0 - 1
    assert r["ret_5d"] == 121.0 / 116.0 - 1
    assert r["ret_20d"] == 121.0 / 101.0 - 1
    assert r["volume_vs_median_20d"] == 2020 / np.median([2000 + k for k in range(20)])
    assert (r["posts"], r["promo_posts"]) == (2, 1)
    assert r["posts_vs_median_20d"] is None  # median of 20 silent sessions is 0


# -- point in time, two drivers, bounded state, restart -------------------------------------

def synthetic(sessions: int = 6, tickers: int = 3, seed: int = 7) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    rows, prow = [], []
    for k in range(tickers):
        price = 100.0 + k
        for n in range(sessions):
            for m in range(SESSION_BARS):
                if rng.random() < 0.03:
                    continue  # gaps
                price = round(price * (1 + rng.normal(0, 0.002)), 2)
                rows.append(bar(n, m, price, ticker=f"T{k}", open_=price, high=price + 0.1, low=price - 0.1,
                                volume=int(rng.integers(1, 5000))))
    start = ist_midnight_utc(day_n(0)) - dt.timedelta(days=3)
    span = (ist_midnight_utc(day_n(sessions)) - start).total_seconds()
    for i in range(600):
        ts = start + dt.timedelta(seconds=float(rng.uniform(0, span)))
        names = [f"T{j}" for j in range(tickers) if rng.random() < 0.4] or ["T0"]
        prow.append(post(ts, pid=f"p{i}", tickers=names, author=f"u{rng.integers(0, 20)}",
                         platform=["x", "reddit", "telegram"][int(rng.integers(0, 3))],
                         sentiment=None if rng.random() < 0.3 else float(rng.uniform(-1, 1)),
                         promo=bool(rng.random() < 0.2)))
    return prices(rows).sort_by("ts"), posts(prow)


def _sorted(t: pa.Table, key: str) -> pa.Table:
    return t.drop_columns(["computed_at"]).sort_by([("ticker", "ascending"), ("exchange", "ascending"),
                                                    (key, "ascending")])


def _stream(px: pa.Table, po: pa.Table, *, batch: int, restart_at: int | None = None) -> tuple[pa.Table, pa.Table]:
    """Micro-batches through the same function; posts are those stored before each batch
    closes. `restart_at`: drop the state before that batch and rebuild it from the bars
    stored so far, as a restarted consumer does from the warehouse."""
    state = FeatureState.empty()
    out_1m, out_1d = [], []
    for b, start in enumerate(range(0, px.num_rows, batch)):
        part = px.slice(start, batch)
        if b == restart_at:
            state = state_from_bars(px.slice(0, start))
        close = pc.max(part.column("ts")).as_py() + dt.timedelta(milliseconds=MS_PER_MIN)
        seen = po.filter(pc.less(po.column("ts"), pa.scalar(close, po.schema.field("ts").type)))
        f1m, f1d, state = session_features(part, seen, state, computed_at=NOW)
        out_1m.append(f1m)
        out_1d.append(f1d)
    f1m = pa.concat_tables(out_1m)
    # a day's latest row wins (ReplacingMergeTree by computed_at); then refresh with the day's later posts
    f1d = pa.concat_tables(out_1d).to_pandas().groupby(["ticker", "exchange", "day"]).last().reset_index()
    f1d = pa.Table.from_pandas(f1d, schema=out_1d[0].schema, preserve_index=False)
    _, f1d = refresh_post_features(f1m.slice(0, 0), f1d, po, computed_at=NOW)
    return f1m, f1d


@pytest.fixture(scope="module")
def data() -> tuple[pa.Table, pa.Table]:
    return synthetic()


def test_no_look_ahead(data) -> None:
    px, po = data
    full, _, _ = session_features(px, po, FeatureState.empty(), computed_at=NOW)
    cut = bar_ts(3, 200)
    early_px = px.filter(pc.less_equal(px.column("ts"), pa.scalar(cut, px.schema.field("ts").type)))
    close = pa.scalar(cut + dt.timedelta(minutes=1), po.schema.field("ts").type)
    early, _, _ = session_features(early_px, po.filter(pc.less(po.column("ts"), close)), FeatureState.empty(),
                                   computed_at=NOW)
    later = full.filter(pc.less_equal(full.column("ts"), pa.scalar(cut, full.schema.field("ts").type)))
    assert early.num_rows == later.num_rows > 0
    assert _sorted(early, "ts").equals(_sorted(later, "ts"))


@pytest.mark.parametrize("batch", [1, 37, 500])
def test_stream_equals_backfill(data, batch: int) -> None:
    px, po = data
    if batch == 1:
        px = px.filter(pc.greater_equal(px.column("ts"), pa.scalar(bar_ts(5, 300), px.schema.field("ts").type)))
    one_1m, one_1d, _ = session_features(px, po, FeatureState.empty(), computed_at=NOW)
    s_1m, s_1d = _stream(px, po, batch=batch)
    assert _sorted(s_1m, "ts").equals(_sorted(one_1m, "ts"))
    assert _sorted(s_1d, "day").equals(_sorted(one_1d, "day"))


def test_restart_mid_day_equals_undisturbed_run(data) -> None:
    px, po = data
    plain = _stream(px, po, batch=100)
    restarted = _stream(px, po, batch=100, restart_at=px.num_rows // 100 - 20)  # in the last session
    assert _sorted(restarted[0], "ts").equals(_sorted(plain[0], "ts"))
    assert _sorted(restarted[1], "day").equals(_sorted(plain[1], "day"))


def test_state_is_bounded_and_persists() -> None:
    rows = [bar(n, m, 100.0) for n in range(30) for m in range(0, SESSION_BARS, 5)]
    rows += [bar(n, m, 100.0) for n in range(28, 30) for m in range(SESSION_BARS)]
    _, _, state = run(rows)
    assert state.max_bars_per_key() <= (WINDOW_SESSIONS + 1) * SESSION_BARS
    assert pc.min(state.bars.column("day")).as_py() == session_day(day_n(29)) - WINDOW_SESSIONS
    again = FeatureState.from_ipc(state.to_ipc())
    assert again.bars.equals(state.bars)
