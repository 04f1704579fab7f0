"""The shipped price rules over synthetic 1-minute bars: vectorised engine vs a per-row loop.

    .venv/bin/python bench/quality_rules.py [--rows 10000000] [--chunk-rows 1000000]
                                            [--workers 2] [--per-row-rows 200000]

Data: --tickers symbols, 1-minute bars 09:15-15:29 IST on weekdays, one random walk per
symbol, rows in time order with symbols interleaved (as a stream or a backfill day reads),
~0.2% bad rows spread over the kinds the rules catch (missing close, zero low, OHLC swap,
future time, duplicate, 100x unit error).

(a) engine:  `clean.conform` + `RuleSet.evaluate` (every shipped price rule) over
             --chunk-rows chunks, the chunks split over --workers processes (how Ray Data
             runs a backfill: one block per task, one task per core). Generation is not
             timed; the workers start the timed part together; the figure is rows / wall time.
(b) per-row: the same checks written as a plain Python loop over dicts (the classic ETL),
             on a sample of --per-row-rows rows because it is that slow.

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from sentinel_ray.pipeline.clean import conform
from sentinel_ray.quality.rules import (AllowedRule, Context, CrossFieldRule, FreshnessRule, NotNullRule,
    PriceJumpRule, RangeRule, SessionRule, UniqueRule, default_rules)
from sentinel_ray.market import SESSION_OPEN_MS
from sentinel_ray.schemas import PRICES

UTC = dt.timezone.utc
SESSION_BARS = 375
MS_PER_DAY = 86_400_000
FIRST_DAY = dt.date(2026, 6, 1)  # a Monday
NOW = dt.datetime(2027, 1, 1, tzinfo=UTC)
BAD_KINDS = ("missing", "zero_low", "ohlc_swap", "future", "duplicate", "unit_error")


def universe(n: int) -> pa.Array:
    return pa.array([f"SYM{i:05d}" for i in range(n)], pa.string())


def make_chunk(index: int, rows: int, tickers: int, bad_rate: float = 0.002) -> pa.Table:
    """Rows [index * rows, (index + 1) * rows) of the endless synthetic bar stream."""
    rng = np.random.default_rng([7, index])
    start = index * rows
    row = start + np.arange(rows, dtype=np.int64)
    sym = row % tickers
    bar = row // tickers  # bars since FIRST_DAY's open, over trading days only
    day, minute = bar // SESSION_BARS, bar % SESSION_BARS
    weeks, weekday = day // 5, day % 5
    day_ms = int(dt.datetime.combine(FIRST_DAY, dt.time(), UTC).timestamp() * 1000) + (weeks * 7 + weekday) * MS_PER_DAY
    ts = day_ms + SESSION_OPEN_MS + minute * 60_000
    # Per-symbol log random walk: a symbol's base price, plus minute steps (the walk restarts per
    # chunk, which only moves the level between chunks, never within a series of one chunk).
    base = np.exp(np.random.default_rng([7]).uniform(np.log(5), np.log(4000), tickers))
    steps = rng.normal(0, 0.001, rows)
    walk = np.zeros(rows)
    order = np.argsort(sym, kind="stable")
    sorted_steps = steps[order]
    first = np.concatenate([[True], sym[order][1:] != sym[order][:-1]])
    csum = np.cumsum(sorted_steps)
    walk[order] = csum - (csum - sorted_steps)[first][np.cumsum(first) - 1]
    close = np.round(base[sym] * np.exp(walk), 2)
    open_ = np.round(close * np.exp(rng.normal(0, 0.0005, rows)), 2)
    high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.0005, rows))), 2)
    low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.0005, rows))), 2)
    volume = rng.integers(100, 100_000, rows)
    close_valid = np.ones(rows, dtype=bool)

    bad = np.flatnonzero(rng.random(rows) < bad_rate)
    kind = rng.integers(len(BAD_KINDS), size=bad.size)
    for k, name in enumerate(BAD_KINDS):
        at = bad[kind == k]
        if name == "missing":
            close_valid[at] = False
        elif name == "zero_low":
            low[at] = 0.0
        elif name == "ohlc_swap":
            high[at], low[at] = low[at] * 0.999, high[at] * 1.001
        elif name == "future":
            ts[at] += 3650 * MS_PER_DAY
        elif name == "duplicate":
            dup_of = np.maximum(at - tickers, 0)  # the same symbol's previous bar, same key
            ts[at] = ts[dup_of]
            sym[at] = sym[dup_of]
        else:  # a unit error: the whole bar in paise
            for col in (open_, high, low, close):
                col[at] = col[at] * 100
    return pa.table({
        "ticker": pa.DictionaryArray.from_arrays(pa.array(sym, pa.int32()), universe(tickers)).cast(pa.string()),
        "exchange": pa.array(np.full(rows, "NSE", dtype=object), pa.string()),
        "interval": pa.array(np.full(rows, "1m", dtype=object), pa.string()),
        "ts": pa.array(ts, pa.timestamp("ms", tz="UTC")),
        "open": open_, "high": high, "low": low,
        "close": pa.array(close, mask=~close_valid),
        "volume": volume,
        "source": pa.array(np.full(rows, "bench", dtype=object), pa.string()),
        "run_id": pa.array(np.full(rows, "bench", dtype=object), pa.string()),
        "ingested_at": pa.array(np.full(rows, int(NOW.timestamp() * 1000) - 1), pa.timestamp("ms", tz="UTC")),
    }, schema=PRICES.record_schema)


# -- (a) the engine ----------------------------------------------------------------------
def evaluate_chunk(table: pa.Table, known: pa.Array) -> dict[str, int]:
    conformed, bad_type = conform(table, PRICES)
    result = default_rules()["prices"].evaluate(conformed, Context(now=NOW, known_tickers=known, bad_type=bad_type))
    counts: dict[str, int] = {}
    for value in result.reject_reason.drop_null().to_pylist():  # tiny: only the rejected rows
        counts[value] = counts.get(value, 0) + 1
    return counts


def _worker(chunks: list[int], chunk_rows: int, tickers: int, barrier: Any, out: Any) -> None:
    known = universe(tickers)
    tables = [make_chunk(i, chunk_rows, tickers) for i in chunks]
    evaluate_chunk(tables[0].slice(0, 10_000), known)  # imports and caches outside the timing
    barrier.wait()
    began = time.perf_counter()
    counts: dict[str, int] = {}
    for t in tables:
        for k, v in evaluate_chunk(t, known).items():
            counts[k] = counts.get(k, 0) + v
    out.put((time.perf_counter() - began, sum(t.num_rows for t in tables), counts))


def run_engine(rows: int, chunk_rows: int, workers: int, tickers: int) -> tuple[float, int, dict[str, int]]:
    n_chunks = max(1, -(-rows // chunk_rows))
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(list(range(w, n_chunks, workers)), chunk_rows, tickers, barrier, out))
             for w in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    began = time.perf_counter()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - began
    for p in procs:
        p.join()
    counts: dict[str, int] = {}
    for _, _, c in results:
        for k, v in c.items():
            counts[k] = counts.get(k, 0) + v
    return wall, sum(r[1] for r in results), counts


# -- (b) the same checks, one row at a time ---------------------------------------------------
def per_row(records: list[dict[str, Any]], known: set[str]) -> dict[str, int]:
    rules = default_rules()["prices"]
    required = rules.rule("missing_field")
    assert isinstance(required, NotNullRule)
    exchange, ticker = rules.rule("unknown_exchange"), rules.rule("unknown_ticker")
    price, volume = rules.rule("non_positive_price"), rules.rule("negative_volume")
    ohlc, fresh = rules.rule("ohlc_inconsistent"), rules.rule("future_timestamp")
    session = rules.rule("outside_session")
    unique, jump = rules.rule("duplicate"), rules.rule("implausible_price_jump")
    assert isinstance(exchange, AllowedRule) and isinstance(ticker, AllowedRule) and isinstance(price, RangeRule)
    assert isinstance(volume, RangeRule) and isinstance(ohlc, CrossFieldRule) and isinstance(fresh, FreshnessRule)
    assert isinstance(session, SessionRule) and isinstance(unique, UniqueRule) and isinstance(jump, PriceJumpRule)
    exchanges = set(exchange.values or ("NSE", "BSE"))
    limit = NOW + (fresh.max_future or dt.timedelta(0))
    offset = session.utc_offset
    reasons: list[str | None] = []
    for r in records:
        reason = None
        if any(r[c] is None or r[c] == "" for c in required.columns):
            reason = "missing_field"
        elif r["exchange"] not in exchanges:
            reason = "unknown_exchange"
        elif r["ticker"] not in known:
            reason = "unknown_ticker"
        elif min(r["open"], r["high"], r["low"], r["close"]) <= 0:
            reason = "non_positive_price"
        elif r["volume"] < 0:
            reason = "negative_volume"
        elif not (r["low"] <= r["open"] <= r["high"] and r["low"] <= r["close"] <= r["high"]):
            reason = "ohlc_inconsistent"
        elif r["ts"] > limit:
            reason = "future_timestamp"
        elif r["interval"] == "1m":
            local = r["ts"] + offset
            if local.weekday() not in session.weekdays or not session.open <= local.time() < session.close:
                reason = "outside_session"
        reasons.append(reason)
    # unique: first occurrence among the rows still valid
    seen: set[tuple[Any, ...]] = set()
    for i, r in enumerate(records):
        if reasons[i] is None:
            key = tuple(r[c] for c in unique.columns)
            if key in seen:
                reasons[i] = "duplicate"
            seen.add(key)
    # price jumps: per series in time order, segments between jumps, the anchor, runs far from it
    series: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(records):
        if reasons[i] is None:
            if r["high"] > jump.factor * r["low"]:
                reasons[i] = "implausible_price_jump"
            series.setdefault(tuple(r[c] for c in jump.series), []).append(i)
    log_factor = math.log(jump.factor)
    for rows in series.values():
        rows.sort(key=lambda i: records[i]["ts"])
        segments: list[list[Any]] = []  # [level, bars, volume]
        level, levels = 0.0, []
        for k, i in enumerate(rows):
            r = records[i]
            if k:
                step = math.log(r["close"] / records[rows[k - 1]]["close"])
                if abs(step) > log_factor:
                    level += step
                    segments.append([level, 0, 0])
            if not segments:
                segments.append([level, 0, 0])
            segments[-1][1] += 1
            segments[-1][2] += r["volume"]
            levels.append(level)
        if len(segments) == 1:
            continue
        qualified = [s for s in segments if s[1] >= jump.min_anchor_bars and s[2] > 0]
        anchor = qualified[-1] if qualified else max(reversed(segments), key=lambda s: s[1])
        typical = max(anchor[2] / anchor[1], 1.0)
        run: list[int] = []
        for i, lv in [*zip(rows, levels), (None, anchor[0])]:
            if i is not None and abs(lv - anchor[0]) > log_factor:
                run.append(i)
                continue
            if run and sum(records[j]["volume"] for j in run) / len(run) < jump.volume_factor * typical:
                for j in run:
                    if reasons[j] is None:
                        reasons[j] = "implausible_price_jump"
            run = []
    counts: dict[str, int] = {}
    for reason in reasons:
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tickers", type=int, default=2_000)
    parser.add_argument("--per-row-rows", type=int, default=200_000)
    args = parser.parse_args()

    print(f"engine: {args.rows:,} rows in {args.chunk_rows:,}-row chunks over {args.workers} processes "
          f"({os.cpu_count()} cores), {args.tickers:,} tickers ...", flush=True)
    wall, rows, counts = run_engine(args.rows, args.chunk_rows, args.workers, args.tickers)
    engine_rate = rows / wall
    print(f"(a) vectorised rules engine : {engine_rate:>12,.0f} rows/s  ({wall:.2f}s wall)", flush=True)
    print(f"    rejected: {json.dumps(dict(sorted(counts.items())))}", flush=True)

    sample = make_chunk(0, args.per_row_rows, args.tickers)
    records = sample.to_pylist()  # the loop's input: one dict per row (not timed)
    known = set(universe(args.tickers).to_pylist())
    began = time.perf_counter()
    loop_counts = per_row(records, known)
    loop_s = time.perf_counter() - began
    loop_rate = len(records) / loop_s
    engine_counts = evaluate_chunk(sample, universe(args.tickers))
    assert loop_counts == engine_counts, (loop_counts, engine_counts)  # the same checks, the same verdicts
    print(f"(b) per-row Python loop     : {loop_rate:>12,.0f} rows/s  ({loop_s:.2f}s on {len(records):,} rows, "
          f"1 process; same verdicts as the engine on that sample)", flush=True)
    print(f"engine / per-row = {engine_rate / loop_rate:.0f}x; engine >= 5M rows/s on "
          f"{args.workers} processes: {'yes' if engine_rate >= 5e6 else 'NO'}")
    print(json.dumps({"rules_rows_s": round(engine_rate), "per_row_rows_s": round(loop_rate), "rows": rows,
                      "workers": args.workers, "chunk_rows": args.chunk_rows}))


if __name__ == "__main__":
    main()
