"""Feature computation throughput on a month of replay (no Ray, no warehouse).

    .venv/bin/python bench/features.py [--start 2026-10-01] [--days 31]

Generates and validates the replay days (not timed), then times `session_features` over
the month in one call from an empty state (the backfill's path), day by day carrying the
state (a backfill's blocks, `detect_days`), and micro-batch by micro-batch over the last
day (the stream's path), and reports the state's size. Ends with one JSON line:
features_rows_s, daily_rows_s, stream_rows_s, rows, state_bytes_per_ticker.

On the 70-ticker replay universe, October 2026 (550,410 bars), 2 shared cores:
                      dense ring state (now)     Arrow table state (before)
  one call            ~1.0M rows/s (0.55 s)      ~190k rows/s (2.9 s)
  day by day          ~1.0M rows/s (0.53 s)      ~210k rows/s (2.6 s)
  700-row batches     ~7 ms a batch              ~100 ms a batch
  state per ticker    131 KB (fixed)             ~370 KB
(`detect_days` over the same month after a 25-day warm-up: features_s 4.2 s -> ~0.65 s.)
The state is a ring per ticker, so a call costs in proportion to its own bars; what is
left in a small batch is mostly the posts window it is handed (~4 ms for 11k posts).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import time

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.pipeline.features import FeatureState, session_features
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import POSTS, PRICES
from sentinel_ray.sources.replay import ReplaySource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2026, 10, 1))
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--batch", type=int, default=700, help="stream micro-batch rows (10 minutes of 70 tickers)")
    args = parser.parse_args()
    source, now = ReplaySource(), utc_now()
    prices, posts = [], []
    for i in range(args.days):
        day = args.start + dt.timedelta(days=i)
        fetched = source.generate_day(day, run_id="bench", ingested_at=now)
        prices.append(process_batch(fetched.records["prices"], PRICES, now=now).valid)
        posts.append(process_batch(fetched.records["posts"], POSTS, now=now).valid)
    px, po = pa.concat_tables(prices).sort_by("ts"), pa.concat_tables(posts)

    began = time.perf_counter()
    f1m, f1d, state = session_features(px, po, FeatureState.empty(), computed_at=now)
    seconds = time.perf_counter() - began
    rate = f1m.num_rows / seconds
    print(f"backfill path: {f1m.num_rows:,} features_1m rows ({f1d.num_rows:,} day rows) from {px.num_rows:,} bars "
          f"in {seconds:.2f}s: {rate:,.0f} rows/s")

    # day by day, carrying the state: each day's bars with the posts stored by its end
    ts_type = px.schema.field("ts").type
    days = sorted(pc.unique(pc.cast(px.column("ts"), pa.date32())).to_pylist())
    daily_state, daily_rows, daily_s = FeatureState.empty(), 0, 0.0
    for day in days:
        lo = pa.scalar(dt.datetime.combine(day, dt.time(), dt.timezone.utc), ts_type)
        hi = pa.scalar(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc), ts_type)
        part = px.filter(pc.and_(pc.greater_equal(px.column("ts"), lo), pc.less(px.column("ts"), hi)))
        seen = po.filter(pc.less(po.column("ts"), hi))
        began = time.perf_counter()
        out, _, daily_state = session_features(part, seen, daily_state, computed_at=now)
        daily_s += time.perf_counter() - began
        daily_rows += out.num_rows
    daily_rate = daily_rows / daily_s if daily_s else 0.0
    print(f"day-by-day path: {daily_rows:,} rows in {len(days)} calls in {daily_s:.2f}s: {daily_rate:,.0f} rows/s")

    # the stream: the last session in micro-batches, continuing from the state before it
    last_day = pc.max(px.column("ts")).as_py().date()
    cut = pa.scalar(dt.datetime.combine(last_day, dt.time(), dt.timezone.utc), px.schema.field("ts").type)
    before = px.filter(pc.less(px.column("ts"), cut))
    after = px.filter(pc.greater_equal(px.column("ts"), cut))
    _, _, stream_state = session_features(before, po, FeatureState.empty(), computed_at=now)
    began, rows = time.perf_counter(), 0
    for start in range(0, after.num_rows, args.batch):
        out, _, stream_state = session_features(after.slice(start, args.batch), po, stream_state, computed_at=now)
        rows += out.num_rows
    stream_s = time.perf_counter() - began
    stream_rate = rows / stream_s if stream_s else 0.0
    per_ticker = state.nbytes / max(state.keys, 1)
    print(f"stream path: {rows:,} rows in {after.num_rows // args.batch + 1} micro-batches of {args.batch}: "
          f"{stream_rate:,.0f} rows/s ({stream_s / max(after.num_rows // args.batch, 1) * 1000:.0f} ms a batch)")
    print(f"state: {state.keys} tickers, {state.nbytes / 2**20:.1f} MB, {per_ticker / 1024:.0f} KB per ticker, "
          f"at most {state.max_bars_per_key()} bars each")
    print(json.dumps({"features_rows_s": round(rate), "daily_rows_s": round(daily_rate),
                      "stream_rows_s": round(stream_rate), "rows": f1m.num_rows,
                      "bars": px.num_rows, "days": args.days, "seconds": round(seconds, 3),
                      "state_bytes_per_ticker": round(per_ticker)}))


if __name__ == "__main__":
    main()
