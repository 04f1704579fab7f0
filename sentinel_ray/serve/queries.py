"""Read queries behind the HTTP API. Values go as server-side parameters only."""
from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sentinel_ray.market import EXCHANGE_TZ, as_utc
from sentinel_ray.storage import rollups
from sentinel_ray.storage.rollups import OHLCV, RANK, SOURCE_PRIORITY, one_bar_per_ts
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

# 1h and 1d bars: UTC hours and Indian trading days, summed from the 30-minute roll-ups the
# writers keep (storage/rollups.py), with the 1m bars of a range's ragged ends (a start or
# end inside a half hour) added, so a range gives the bars it gave when they were rolled
# up from every 1m bar at query time.
_BUCKET = {Interval.HOUR: "toStartOfHour(ts)", Interval.DAY: f"toDateTime64(toStartOfDay(ts, '{EXCHANGE_TZ}'), 3, 'UTC')"}


def stock_summaries(warehouse: Warehouse) -> list[dict[str, Any]]:
    """Per ticker and exchange: 1m bars stored, the newest close and its time (what the
    latest-value cache holds, read from the roll-ups when the cache cannot answer)."""
    return sorted(rollups.ticker_totals(warehouse), key=lambda r: (r["ticker"], r["exchange"]))


def _rolled_bars(interval: Interval, start: dt.datetime, end: dt.datetime,
                 source: str | None) -> tuple[str, dict[str, Any]]:
    """Bars of [start, end) per `interval` bucket (columns bucket, open ... volume), and the
    parameters it adds."""
    bounds: dict[str, Any] = {}
    one_ticker = "ticker = {ticker:String} AND exchange = {exchange:String}"
    if source:  # one source's bars: not what the roll-ups hold (one bar per minute of any source)
        parts = (f"SELECT ts, open, high, low, close, volume FROM {{db}}.prices FINAL WHERE interval = '1m' AND "
                 f"{one_ticker} AND source = {{source:String}} AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}")
    else:
        inner_start, inner_end = rollups.floor_bucket(start - dt.timedelta(milliseconds=1)) + rollups.BUCKET, \
            rollups.floor_bucket(end)
        if inner_start >= inner_end:
            whole = f"{one_ticker} AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}"
            parts = f"SELECT ts, open, high, low, close, volume FROM ({one_bar_per_ts(whole)})"
        else:
            bounds = {"inner_start": inner_start, "inner_end": inner_end}
            edges = (f"{one_ticker} AND ((ts >= {{start:{_TS}}} AND ts < {{inner_start:{_TS}}}) "
                     f"OR (ts >= {{inner_end:{_TS}}} AND ts < {{end:{_TS}}}))")
            parts = (f"SELECT bucket AS ts, open, high, low, close, volume FROM {{db}}.prices_30m FINAL WHERE {one_ticker} "
                     f"AND bucket >= {{inner_start:{_TS}}} AND bucket < {{inner_end:{_TS}}} AND bars > 0 "
                     f"UNION ALL SELECT ts, open, high, low, close, volume FROM ({one_bar_per_ts(edges)})")
    return f"SELECT {_BUCKET[interval]} AS bucket, {OHLCV} FROM ({parts}) GROUP BY bucket", bounds


def price_bars(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime,
               interval: Interval, exchange: str = "NSE", source: str | None = None) -> list[dict[str, Any]]:
    params = {"ticker": ticker, "exchange": exchange, "start": start, "end": end, "source": source or "",
              "priority": SOURCE_PRIORITY}
    if interval is Interval.MINUTE:
        where = (f"ticker = {{ticker:String}} AND exchange = {{exchange:String}} AND ts >= {{start:{_TS}}} "
                 f"AND ts < {{end:{_TS}}} AND ({{source:String}} = '' OR source = {{source:String}})")
        sql = f"SELECT ts, open, high, low, close, volume FROM ({one_bar_per_ts(where)}) ORDER BY ts"
    else:
        rolled, bounds = _rolled_bars(interval, start, end, source)
        params.update(bounds)
        sql = f"{rolled} ORDER BY bucket"
        if interval is Interval.DAY:
            # an exchange's own daily bar (NSE, Yahoo) is the official one: prefer it to the
            # roll-up of 1m bars for the days that have it
            official = (f"SELECT {_BUCKET[interval]} AS bucket, open, high, low, close, volume "
                        f"FROM {{db}}.prices FINAL WHERE interval = '1d' AND ticker = {{ticker:String}} "
                        f"AND exchange = {{exchange:String}} AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}} "
                        f"AND ({{source:String}} = '' OR source = {{source:String}}) "
                        f"ORDER BY bucket, {RANK}, source LIMIT 1 BY bucket")
            sql = (f"SELECT bucket, open, high, low, close, volume FROM ("
                   f"SELECT *, 0 AS preference FROM ({official}) UNION ALL SELECT *, 1 AS preference FROM ({rolled})"
                   f") ORDER BY bucket, preference LIMIT 1 BY bucket")
    rows = warehouse.query_rows(sql, params)
    for row in rows:
        if "bucket" in row:
            row["ts"] = row.pop("bucket")
        row["ts"] = as_utc(row["ts"])  # say UTC, or JSON clients read the time as their local time
    return rows


def posts_mentioning(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime,
                     limit: int) -> list[dict[str, Any]]:
    return warehouse.query_rows(
        "SELECT platform, post_id, author, text, ts, url, engagement, tickers, sentiment, promo_score, "
        "is_pump_signal, promo_evidence, source, run_id, ingested_at "
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


# --- surveillance: features, risk, alerts, trending, filings ------------------------------
_TS = "DateTime64(3, 'UTC')"
_ALERT_COLUMNS = ("alert_id, ticker, exchange, opened_at, last_bar_ts, peak_score, peak_ts, state, disposition, "
                  "reasons, evidence_start, evidence_end, post_ids, detected_by, updated_at")
# The point-in-time lookup reaches back at most this far for a ticker's latest bar (like a
# feature store's TTL): an as-of time in a long halt gets no features rather than stale ones.
ASOF_TTL = dt.timedelta(days=7)


def _utc_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in row.items()} for row in rows]


def alerts_list(warehouse: Warehouse, state: str | None, ticker: str | None, start: dt.datetime, end: dt.datetime,
                limit: int) -> list[dict[str, Any]]:
    """Alerts whose episode overlaps [start, end), newest first."""
    return _utc_rows(warehouse.query_rows(
        f"SELECT {_ALERT_COLUMNS} FROM {{db}}.alerts FINAL "
        f"WHERE ({{state:String}} = '' OR state = {{state:String}}) "
        f"AND ({{ticker:String}} = '' OR ticker = {{ticker:String}}) "
        f"AND opened_at < {{end:{_TS}}} AND last_bar_ts >= {{start:{_TS}}} "
        f"ORDER BY opened_at DESC, alert_id LIMIT {{limit:UInt32}}",
        {"state": state or "", "ticker": ticker or "", "start": start, "end": end, "limit": limit}))


def alert_with_events(warehouse: Warehouse, alert_id: str) -> dict[str, Any] | None:
    """One alert and its audit trail (oldest first), or None."""
    rows = warehouse.query_rows(f"SELECT {_ALERT_COLUMNS} FROM {{db}}.alerts FINAL WHERE alert_id = {{id:String}}",
                                {"id": alert_id})
    if not rows:
        return None
    alert = _utc_rows(rows)[0]
    alert["events"] = _utc_rows(warehouse.query_rows(
        "SELECT event_id, alert_id, at, actor, action, from_state, to_state, disposition, note "
        "FROM {db}.alert_events FINAL WHERE alert_id = {id:String} ORDER BY at, event_id", {"id": alert_id}))
    return alert


def stock_features(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                   exchange: str, columns: list[str]) -> list[dict[str, Any]]:
    """features_1m (interval 1m, by bar) or features_1d (1d, by session day) of a ticker."""
    table, time_col = ("features_1m", "ts") if interval is Interval.MINUTE else ("features_1d", "day")
    cols = ", ".join(f"`{c}`" for c in columns)  # the dataset's own column names, never the caller's text
    return _utc_rows(warehouse.query_rows(
        f"SELECT {cols} FROM {{db}}.{table} FINAL WHERE ticker = {{ticker:String}} AND exchange = {{exchange:String}} "
        f"AND {time_col} >= {{start:{_TS}}} AND {time_col} < {{end:{_TS}}} ORDER BY {time_col}",
        {"ticker": ticker, "exchange": exchange, "start": start, "end": end}))


def latest_risk(warehouse: Warehouse, ticker: str, exchange: str) -> dict[str, Any] | None:
    rows = warehouse.query_rows(
        "SELECT ticker, exchange, ts, score, volume_score, price_score, promo_score, chatter_score, reasons, "
        "computed_at FROM {db}.risk_1m FINAL WHERE ticker = {ticker:String} AND exchange = {exchange:String} "
        "ORDER BY ts DESC LIMIT 1", {"ticker": ticker, "exchange": exchange})
    return _utc_rows(rows)[0] if rows else None


def risk_history(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                 exchange: str = "NSE") -> list[dict[str, Any]]:
    """risk_1m of a ticker over [start, end): every scored bar (1m), or per hour or IST trading
    day (1h, 1d, the buckets of `price_bars`) the highest score and the highest of each sub-score."""
    scores = ("score", "volume_score", "price_score", "promo_score", "chatter_score")
    where = (f"ticker = {{ticker:String}} AND exchange = {{exchange:String}} "
             f"AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}")
    if interval is Interval.MINUTE:
        sql = f"SELECT ts, {', '.join(scores)} FROM {{db}}.risk_1m FINAL WHERE {where} ORDER BY ts"
    else:
        peaks = ", ".join(f"max({c}) AS {c}" for c in scores)
        # not `AS ts`: ClickHouse would read that alias in the WHERE, filtering buckets instead of bars
        sql = (f"SELECT {_BUCKET[interval]} AS bucket, {peaks} FROM {{db}}.risk_1m FINAL WHERE {where} "
               f"GROUP BY bucket ORDER BY bucket")
    rows = warehouse.query_rows(sql, {"ticker": ticker, "exchange": exchange, "start": start, "end": end})
    return _utc_rows([{"ts": row.pop("bucket"), **row} if "bucket" in row else row for row in rows])


def features_asof(warehouse: Warehouse, tickers: list[str], asof: dt.datetime, exchange: str,
                  columns: list[str]) -> list[dict[str, Any]]:
    """Per ticker, the latest 1m features known at `asof`: the newest bar that had closed by
    then (a bar's features use data up to its close, ts + 1 min), within ASOF_TTL."""
    cols = ", ".join(f"`{c}`" for c in columns)
    last_open = asof - dt.timedelta(minutes=1)
    return _utc_rows(warehouse.query_rows(
        f"SELECT {cols} FROM {{db}}.features_1m FINAL WHERE ticker IN {{tickers:Array(String)}} "
        f"AND exchange = {{exchange:String}} AND ts <= {{last_open:{_TS}}} AND ts > {{since:{_TS}}} "
        f"ORDER BY ticker, ts DESC LIMIT 1 BY ticker",
        {"tickers": tickers, "exchange": exchange, "last_open": last_open, "since": asof - ASOF_TTL}))


def trending(warehouse: Warehouse, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
    """Tickers by their highest chatter z-score (posts_z) over [start, end)."""
    return _utc_rows(warehouse.query_rows(
        f"SELECT ticker, exchange, max(posts_z) AS max_posts_z, argMax(posts_z, ts) AS latest_posts_z, "
        f"argMax(ts, posts_z) AS peak_ts, max(posts_60m) AS max_posts_60m, max(promo_z) AS max_promo_z "
        f"FROM {{db}}.features_1m FINAL WHERE ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}} AND posts_z IS NOT NULL "
        f"GROUP BY ticker, exchange ORDER BY max_posts_z DESC, ticker LIMIT {{limit:UInt32}}",
        {"start": start, "end": end, "limit": limit}))


def stock_filings(warehouse: Warehouse, ticker: str, start: dt.datetime, end: dt.datetime,
                  limit: int) -> list[dict[str, Any]]:
    return _utc_rows(warehouse.query_rows(
        f"SELECT exchange, filing_id, ticker, company, subject, details, ts, attachment_url, source, run_id, "
        f"ingested_at FROM {{db}}.filings FINAL WHERE ticker = {{ticker:String}} "
        f"AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}} ORDER BY ts DESC LIMIT {{limit:UInt32}}",
        {"ticker": ticker, "start": start, "end": end, "limit": limit}))
