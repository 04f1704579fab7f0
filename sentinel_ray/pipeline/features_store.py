"""Features to and from storage: the warm-up reads and the writes both drivers share.

The state the features continue from (`FeatureState`) is recomputed from stored rows:
the backfill reads it for the session before its first day, a stream consumer reads it
when it starts (so a consumer killed mid-batch continues exactly where the stored bars
end). Writes are idempotent: features_1m/1d are ReplacingMergeTree tables keyed by
(ticker, exchange, ts|day), and lake files are named by the batch (or the day) that
wrote them, so writing the same rows again replaces them.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.market import ist_dates, ist_midnight_utc
from sentinel_ray.pipeline.features import (STATE_SCHEMA, WINDOW_SESSIONS, FeatureState, session_bars, session_date,
                                            session_day)
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M, POSTS, PRICES, Dataset
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse

_T = "DateTime64(3, 'UTC')"
_PRICE_COLS = ", ".join(f"`{c}`" for c in ("ticker", "exchange", "interval", "ts", "open", "high", "low", "close",
                                            "volume", "source"))


def _post_cols() -> str:
    # sentiment / is_pump_signal light up when the enrichment adds them to POSTS
    cols = ["platform", "post_id", "author", "ts", "tickers"]
    cols += [c for c in ("sentiment", "is_pump_signal") if c in POSTS.column_names]
    return ", ".join(f"`{c}`" for c in cols)


def read_bars(warehouse: Warehouse, start: dt.datetime, end: dt.datetime, tickers: list[str] | None = None) -> pa.Table:
    """Stored 1m bars with start <= ts < end (one version per key: FINAL)."""
    where = f"`interval` = '1m' AND ts >= {{lo:{_T}}} AND ts < {{hi:{_T}}}"
    params: dict = {"lo": start, "hi": end}
    if tickers is not None:
        where += " AND ticker IN {tickers:Array(String)}"
        params["tickers"] = tickers
    return warehouse.query_arrow(f"SELECT {_PRICE_COLS} FROM {{db}}.{PRICES.name} FINAL WHERE {where}", params)


def read_posts(warehouse: Warehouse, start: dt.datetime, end: dt.datetime) -> pa.Table:
    """Stored posts with start <= ts < end that mention a ticker."""
    return warehouse.query_arrow(
        f"SELECT {_post_cols()} FROM {{db}}.{POSTS.name} FINAL WHERE ts >= {{lo:{_T}}} AND ts < {{hi:{_T}}} "
        f"AND notEmpty(tickers)", {"lo": start, "hi": end})


def state_before(warehouse: Warehouse, day: dt.date) -> FeatureState:
    """The state the features of session `day` start from: bars of the 20 sessions before it."""
    first = session_date_of(session_day(day) - WINDOW_SESSIONS)
    return state_from_bars(read_bars(warehouse, ist_midnight_utc(first), ist_midnight_utc(day)))


def state_until(warehouse: Warehouse, end: dt.datetime) -> FeatureState:
    """The state after every stored bar before `end` (a restarted consumer's starting point)."""
    today = end.astimezone(dt.timezone.utc).date()
    first = session_date_of(session_day(today) - WINDOW_SESSIONS)
    return state_from_bars(read_bars(warehouse, ist_midnight_utc(first), end))


def state_from_bars(prices: pa.Table) -> FeatureState:
    """The state after `prices`: their 1m session bars of the 21 sessions up to the latest."""
    return FeatureState.of_bars(session_bars(prices).select(STATE_SCHEMA.names))


def session_date_of(ordinal: int) -> dt.date:
    return session_date(np.array([ordinal]))[0].astype(object)


def write_features(warehouse: Warehouse | None, lake: Lake | None, f1m: pa.Table, f1d: pa.Table, *,
                   batch_key: str | None) -> None:
    """Both tables to the warehouse and the curated lake. Lake files are named by
    `batch_key` (a stream batch) or, when None (a backfill: every ticker of the day at
    once), by the day, so a re-run replaces them."""
    if warehouse is not None:
        warehouse.insert(FEATURES_1M.name, f1m)
        warehouse.insert(FEATURES_1D.name, f1d)
    if lake is not None:
        _write_lake(lake, FEATURES_1M, f1m, batch_key)
        _write_lake(lake, FEATURES_1D, f1d, batch_key)


def _write_lake(lake: Lake, ds: Dataset, table: pa.Table, batch_key: str | None) -> None:
    if table.num_rows == 0:
        return
    dates = ist_dates(table.column(ds.time_column))
    for day in pc.unique(dates).to_pylist():
        part = table.filter(pc.equal(dates, pa.scalar(day, pa.date32())))
        lake.write_computed(ds, part, day=day, batch_key=batch_key or f"features-{day.isoformat()}")
