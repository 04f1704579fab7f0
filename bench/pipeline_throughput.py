"""Price rows through validate + clean + Parquet write, three ways, in one run.

    .venv/bin/python bench/pipeline_throughput.py [--rows 5000000] [--per-record-rows 200000]

(a) ray:        Ray Data as the backfill runs it: 1M-row blocks, map_batches(process_and_store)
                writing the lake (warehouse off). Timed with the blocks already in the object
                store (a backfill's tasks fetch their rows themselves), and also including the
                driver's from_arrow copy of its tables
(b) plain:      the same function over the same slices in this one process
(c) per-record: a classic ETL loop (pydantic-validate each dict, check the rules, build
                dicts, write Parquet), timed
                on a sample of --per-record-rows rows because it is that slow

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from sentinel_ray.pipeline.store import process_and_store
from sentinel_ray.reference import known_tickers
from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.lake import Lake

BATCH_ROWS = 1_000_000  # one block per day, as a backfill partition
UTC = dt.timezone.utc
SESSION_START = dt.time(3, 45)  # 09:15 IST
SESSION_MS = int(6.25 * 3600 * 1000)


def trading_days(n: int, last: dt.date = dt.date(2026, 11, 20)) -> list[dt.date]:
    days, day = [], last
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day -= dt.timedelta(days=1)
    return sorted(days)


def make_batch(day: dt.date, rows: int, seed: int) -> pa.Table:
    """One day of synthetic 1-minute-ish bars: unique keys, ~0.2% bad rows."""
    rng = np.random.default_rng(seed)
    symbols = known_tickers()
    n_sym = len(symbols)
    idx = np.arange(rows)
    step_ms = SESSION_MS // (rows // n_sym + 1)
    start_ms = int(dt.datetime.combine(day, SESSION_START, UTC).timestamp() * 1000)
    ts = start_ms + (idx // n_sym) * step_ms
    steps = -(-rows // n_sym)
    # one random-walk price path per ticker (rows are time-major, ticker-minor), so the
    # price-jump rule sees realistic series rather than unrelated prices
    base = rng.uniform(10, 4000, n_sym)
    path = base * np.exp(np.cumsum(rng.normal(0, 0.001, (steps, n_sym)), axis=0))
    close = path.reshape(-1)[:rows].round(2)
    open_ = (close * rng.uniform(0.99, 1.01, rows)).round(2)
    high = np.maximum(open_, close) * rng.uniform(1.0, 1.01, rows)
    low = np.minimum(open_, close) * rng.uniform(0.99, 1.0, rows)
    volume = rng.integers(100, 100_000, rows)
    bad = rng.random(rows) < 0.002
    close = np.where(bad, -close, close)  # non-positive price
    ticker = pa.DictionaryArray.from_arrays(pa.array(idx % n_sym, pa.int32()), symbols).cast(pa.string())
    now = dt.datetime.now(UTC)
    return pa.table({
        "ticker": ticker,
        "exchange": pa.array(np.full(rows, "NSE", dtype=object), pa.string()),
        "interval": pa.array(np.full(rows, "1m", dtype=object), pa.string()),
        "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "open": open_, "high": high, "low": low, "close": close, "volume": volume,
        "source": pa.array(np.full(rows, "bench", dtype=object), pa.string()),
        "run_id": pa.array(np.full(rows, "bench", dtype=object), pa.string()),
        "ingested_at": pa.array(np.full(rows, int(now.timestamp() * 1000)), pa.timestamp("ms", tz="UTC")),
    }, schema=PRICES.arrow_schema)


def store_slice(table: pa.Table, lake_uri: str, now: dt.datetime) -> dict[str, int]:
    day = table.column("ts")[0].as_py().date()
    result = process_and_store(table, PRICES, lake=Lake(lake_uri), warehouse=None, day=day,
                               batch_key=f"bench-{day}", now=now, run_id="bench", ingested_at=now,
                               pipeline="bench")
    return {"rows_in": result.rows_in, "rows_valid": result.rows_valid}


def run_plain(slices: list[pa.Table], lake_uri: str) -> tuple[float, int]:
    now = dt.datetime.now(UTC)
    began = time.perf_counter()
    valid = sum(store_slice(t, lake_uri, now)["rows_valid"] for t in slices)
    return time.perf_counter() - began, valid


def run_ray(slices: list[pa.Table], lake_uri: str) -> tuple[float, float, int]:
    """Seconds with the rows already in the object store (as a backfill's tasks hold the rows
    they fetched), seconds including the driver's copy into it (from_arrow), valid rows."""
    import ray

    from sentinel_ray.ingest.backfill import tune_ray_data

    tune_ray_data()
    now = dt.datetime.now(UTC)

    def body(batch: pa.Table) -> pa.Table:
        counts = store_slice(batch, lake_uri, now)
        return pa.table({k: [v] for k, v in counts.items()})

    def process(data: "ray.data.Dataset") -> list[dict[str, Any]]:
        return data.map_batches(body, batch_size=None, batch_format="pyarrow", zero_copy_batch=True).take_all()

    began = time.perf_counter()
    out = process(ray.data.from_arrow(slices))
    with_copy = time.perf_counter() - began
    refs = [ray.put(t) for t in slices]
    began = time.perf_counter()
    out = process(ray.data.from_arrow_refs(refs))
    in_store = time.perf_counter() - began
    return in_store, with_copy, sum(r["rows_valid"] for r in out)


# -- (c) the classic per-record ETL --------------------------------------------
def _validate_record(r: dict[str, Any], now: dt.datetime, known: set[str]) -> str | None:
    for key in ("ticker", "exchange", "interval", "ts", "open", "high", "low", "close", "volume", "source"):
        if r.get(key) is None:
            return "missing_field"
    if r["exchange"] not in ("NSE", "BSE"):
        return "unknown_exchange"
    if r["ticker"] not in known:
        return "unknown_ticker"
    if min(r["open"], r["high"], r["low"], r["close"]) <= 0:
        return "non_positive_price"
    if r["volume"] < 0:
        return "negative_volume"
    if not (r["low"] <= r["open"] <= r["high"] and r["low"] <= r["close"] <= r["high"]):
        return "ohlc_inconsistent"
    if r["ts"] > now + dt.timedelta(minutes=5):
        return "future_timestamp"
    t = r["ts"].time()
    if r["interval"] == "1m" and (r["ts"].weekday() >= 5 or not dt.time(3, 45) <= t < dt.time(10, 0)):
        return "outside_session"
    return None


def run_per_record(table: pa.Table, out_dir: Path) -> tuple[float, int]:
    records = table.to_pylist()  # the ETL's input: one dict per record (not timed)
    now = dt.datetime.now(UTC)
    known = set(known_tickers().to_pylist())
    began = time.perf_counter()
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    model = PRICES.model
    for record in records:
        # types checked per record, as the vectorised path's conform step does per column
        try:
            r = model.model_validate(record).model_dump()
        except ValidationError:
            rejected.append({**record, "reject_reason": "bad_type"})
            continue
        r["ticker"] = r["ticker"].strip().upper()
        r["exchange"] = r["exchange"].strip().upper()
        reason = _validate_record(r, now, known)
        key = (r["ticker"], r["exchange"], r["interval"], r["source"], r["ts"])
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is None:
            seen.add(key)
            valid.append(r)
        else:
            rejected.append({**r, "reject_reason": reason})
    pq.write_table(pa.Table.from_pylist(valid, schema=PRICES.arrow_schema), out_dir / "valid.parquet")
    if rejected:
        pq.write_table(pa.Table.from_pylist(rejected), out_dir / "rejected.parquet")
    return time.perf_counter() - began, len(valid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--per-record-rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help="rows per day batch (Ray block)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    batch_rows = args.batch_rows
    print(f"generating {args.rows:,} price rows in {batch_rows:,}-row day batches ...", flush=True)
    n_batches = max(1, -(-args.rows // batch_rows))
    sizes = [min(batch_rows, args.rows - i * batch_rows) for i in range(n_batches)]
    slices = [make_batch(day, size, seed=i) for i, (day, size) in enumerate(zip(trading_days(n_batches), sizes))]
    rows = sum(t.num_rows for t in slices)

    work = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    try:
        plain_s, plain_valid = run_plain(slices, str(work / "plain"))
        print(f"(b) plain pyarrow, 1 process : {rows / plain_s:>12,.0f} rows/s  ({plain_s:.2f}s)", flush=True)

        import ray

        ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        run_ray(slices[:1], str(work / "warmup"))  # start the worker pool outside the timing
        ray_s, copy_s, ray_valid = run_ray(slices, str(work / "ray"))
        ray.shutdown()
        print(f"(a) Ray Data map_batches     : {rows / ray_s:>12,.0f} rows/s  ({ray_s:.2f}s; blocks in the object "
              f"store, as a backfill's tasks hold what they fetched)", flush=True)
        print(f"    ... plus the driver's copy: {rows / copy_s:>11,.0f} rows/s  ({copy_s:.2f}s; from_arrow of the "
              f"driver's tables)", flush=True)
        assert ray_valid == plain_valid, (ray_valid, plain_valid)

        sample = slices[0].slice(0, min(args.per_record_rows, slices[0].num_rows))
        rec_s, _ = run_per_record(sample, work)
        print(f"(c) per-record Python loop   : {sample.num_rows / rec_s:>12,.0f} rows/s  ({rec_s:.2f}s on "
              f"{sample.num_rows:,} rows)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ray_rate, plain_rate, rec_rate = rows / ray_s, rows / plain_s, sample.num_rows / rec_s
    print(f"ratios: ray/plain = {ray_rate / plain_rate:.2f}x (target >= 0.6), "
          f"ray/per-record = {ray_rate / rec_rate:.1f}x (target >= 20); "
          f"ray >= 1.0M rows/s: {'yes' if ray_rate >= 1e6 else 'NO'}")
    print(json.dumps({"ray_rows_s": round(ray_rate), "ray_with_driver_copy_rows_s": round(rows / copy_s),
                      "plain_rows_s": round(plain_rate),
                      "per_record_rows_s": round(rec_rate), "rows": rows, "cores": cores}))


if __name__ == "__main__":
    main()
