"""Read queries behind the HTTP API. Values go as server-side parameters only."""
from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sentinel_ray.market import EXCHANGE_TZ
from sentinel_ray.storage.warehouse import Warehouse


class Interval(StrEnum):
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"


# How far back a request reaches when it names no start, and the most one may ask for:
# they bound the rows a single response can carry.
DEFAULT_WINDOW = {Interval.MINUTE: dt.timedelta(days=7), Interval.HOUR: dt.timedelta(days=90),
                  Interval.DAY: dt.timedelta(days=730)}
MAX_WINDOW = {Interval.MINUTE: dt.timedelta(days=31), Interval.HOUR: dt.timedelta(days=366),
              Interval.DAY: dt.timedelta(days=3660)}

# 1h and 1d bars are rolled up from 1m bars at query time over FINAL, so re-inserted
# rows never count twice (an insert-time materialized view would see both copies).
# Daily bars follow the Indian trading day.
_BUCKET = {Interval.HOUR: "toStartOfHour(ts)", Interval.DAY: f"toDateTime64(toStartOfDay(ts, '{EXCHANGE_TZ}'), 3, 'UTC')"}


# Several sources may hold the same bar (replay, Yahoo, NSE, webhooks): the source is part
# of the natural key. Queries show one bar per timestamp, from the first source in this
# order that has it (others after these, alphabetically), unless the caller names a source.
SOURCE_PRIORITY = ["nse", "yahoo", "replay"]
_RANK = "if(indexOf({priority:Array(String)}, source) = 0, 1000, indexOf({priority:Array(String)}, source))"


def _one_bar_per_ts(where: str) -> str:
    """1m bars matching `where`, one per (ticker, exchange, ts), from the preferred source."""
    return (f"SELECT ticker, exchange, ts, open, high, low, close, volume FROM {{db}}.prices FINAL "
            f"WHERE interval = '1m' AND {where} ORDER BY ticker, exchange, ts, {_RANK}, source "
            f"LIMIT 1 BY ticker, exchange, ts")


def stock_summaries(warehouse: Warehouse) -> list[dict[str, Any]]:
    return warehouse.query_rows(
        f"SELECT ticker, exchange, argMax(close, ts) AS last_close, max(ts) AS last_ts, count() AS bars "
        f"FROM ({_one_bar_per_ts('1')}) GROUP BY ticker, exchange ORDER BY ticker, exchange",
        {"priority": SOURCE_PRIORITY})


def price_bars(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime,
               interval: Interval, exchange: str = "NSE", source: str | None = None) -> list[dict[str, Any]]:
    params = {"ticker": ticker, "exchange": exchange, "start": start, "end": end, "source": source or "",
              "priority": SOURCE_PRIORITY}
    where = ("ticker = {ticker:String} AND exchange = {exchange:String} "
             "AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
             "AND ({source:String} = '' OR source = {source:String})")
    bars = _one_bar_per_ts(where)
    if interval is Interval.MINUTE:
        sql = f"SELECT ts, open, high, low, close, volume FROM ({bars}) ORDER BY ts"
    else:
        rolled = (f"SELECT {_BUCKET[interval]} AS bucket, argMin(open, ts) AS open, max(high) AS high, "
                  f"min(low) AS low, argMax(close, ts) AS close, sum(volume) AS volume "
                  f"FROM ({bars}) GROUP BY bucket")
        sql = f"{rolled} ORDER BY bucket"
        if interval is Interval.DAY:
            # an exchange's own daily bar (NSE, Yahoo) is the official one: prefer it to the
            # roll-up of 1m bars for the days that have it
            official = (f"SELECT {_BUCKET[interval]} AS bucket, open, high, low, close, volume "
                        f"FROM {{db}}.prices FINAL WHERE interval = '1d' AND {where} "
                        f"ORDER BY bucket, {_RANK}, source LIMIT 1 BY bucket")
            sql = (f"SELECT bucket, open, high, low, close, volume FROM ("
                   f"SELECT *, 0 AS preference FROM ({official}) UNION ALL SELECT *, 1 AS preference FROM ({rolled})"
                   f") ORDER BY bucket, preference LIMIT 1 BY bucket")
    rows = warehouse.query_rows(sql, params)
    for row in rows:
        if "bucket" in row:
            row["ts"] = row.pop("bucket")
        row["ts"] = _utc(row["ts"])
    return rows


def _utc(value: dt.datetime) -> dt.datetime:
    # the warehouse stores UTC; say so, or JSON clients read the time as their local time
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def posts_mentioning(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime,
                     limit: int) -> list[dict[str, Any]]:
    return warehouse.query_rows(
        "SELECT platform, post_id, author, text, ts, url, engagement, tickers, source, run_id, ingested_at "
        "FROM {db}.posts FINAL WHERE has(tickers, {ticker:String}) "
        "AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
        "ORDER BY ts DESC LIMIT {limit:UInt32}",
        {"ticker": ticker, "start": start, "end": end, "limit": limit},
    )


def freshness(warehouse: Warehouse, datasets: list[str]) -> list[dict[str, Any]]:
    """Per dataset and source: the newest row's ingest time and event time, and how old it is."""
    rows: list[dict[str, Any]] = []
    for name in datasets:
        rows.extend(warehouse.query_rows(
            f"SELECT {{name:String}} AS dataset, source, max(ingested_at) AS newest_ingested_at, "
            f"max(ts) AS newest_event_ts, dateDiff('millisecond', max(ingested_at), now64(3)) / 1000 AS age_s, "
            f"count() AS rows FROM {{db}}.`{name}` FINAL GROUP BY source ORDER BY source",
            {"name": name}))
    return rows
