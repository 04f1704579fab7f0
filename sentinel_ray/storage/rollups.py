"""Price roll-ups kept in the warehouse: 30-minute bars of the stored 1m bars (`prices_30m`).

The API's 1h bars are UTC hours and its 1d bars Indian trading days; IST is UTC+5:30, so
the half hour is the largest bucket that tiles both: an hour is two of them, a day at most
48 (about 13 in a session). Reading them instead of every 1m bar makes a year of daily bars
a few thousand rows rather than ninety thousand.

Refreshed, not materialised at insert: an insert-time materialised view sees every inserted
row, so a bar inserted twice (a redelivered batch, a re-run backfill) or corrected (same key,
new values: ReplacingMergeTree keeps the newest) would count twice in its sums. `refresh`
recomputes each bucket a stored batch touches from the 1m bars as they are stored (FINAL,
one bar per minute from the preferred source), so a bucket is always a function of what is
stored: re-inserting changes nothing, a correction shows, and a bucket whose bars are all
gone is written back with bars = 0 (read as absent). Writers call it after their inserts
(ingest/serving.py); `fill_if_empty` builds the table once on an upgraded warehouse.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.schemas import PRICES_30M, TIMESTAMP_TYPE

# Several sources may hold the same bar (replay, Yahoo, NSE, webhooks): the source is part
# of the natural key. Reads show one bar per timestamp, from the first source in this order
# that has it (others after these, alphabetically), unless the caller names a source.
SOURCE_PRIORITY = ["nse", "yahoo", "replay"]
RANK = "if(indexOf({priority:Array(String)}, source) = 0, 1000, indexOf({priority:Array(String)}, source))"
BUCKET = dt.timedelta(minutes=30)
_BUCKET_SQL = "toDateTime64(toStartOfInterval(ts, INTERVAL 30 MINUTE), 3, 'UTC')"
_TS = "DateTime64(3, 'UTC')"
# how a set of bars (columns ts, open, high, low, close, volume) rolls up: one definition
# for the refresh and for the ragged edges of a read (serve/queries.py)
OHLCV = ("argMin(open, ts) AS open, max(high) AS high, min(low) AS low, argMax(close, ts) AS close, "
         "sum(volume) AS volume")


class _Sql(Protocol):
    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table: ...
    def insert(self, dataset_name: str, table: pa.Table) -> int: ...
    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...


def one_bar_per_ts(where: str) -> str:
    """1m bars matching `where`, one per (ticker, exchange, ts), from the preferred source
    (the query's `priority` parameter: SOURCE_PRIORITY)."""
    return (f"SELECT ticker, exchange, ts, open, high, low, close, volume FROM {{db}}.prices FINAL "
            f"WHERE interval = '1m' AND {where} ORDER BY ticker, exchange, ts, {RANK}, source "
            f"LIMIT 1 BY ticker, exchange, ts")


def _rolled(where: str) -> str:
    return (f"SELECT ticker, exchange, {_BUCKET_SQL} AS bucket, {OHLCV}, count() AS bars, max(ts) AS last_ts, "
            f"now64(3) AS computed_at FROM ({one_bar_per_ts(where)}) GROUP BY ticker, exchange, bucket")


def floor_bucket(moment: dt.datetime) -> dt.datetime:
    """The start of the half hour `moment` falls in (UTC)."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return moment - (moment - epoch) % BUCKET


@dataclass(frozen=True)
class Refresh:
    """What a refresh changed: its buckets as written, and per ticker and exchange the change
    in 1m bars (`bars_delta`) and its newest touched bucket (close and last bar), for the
    latest-value cache. `emptied`: tickers a bucket of which lost all its bars."""
    written: pa.Table  # PRICES_30M rows
    per_ticker: list[dict[str, Any]]
    emptied: frozenset[tuple[str, str]]

    @property
    def buckets(self) -> int:
        return self.written.num_rows


_NO_REFRESH = Refresh(PRICES_30M.arrow_schema.empty_table(), [], frozenset())


_TOUCHED = f"ticker IN {{tickers:Array(String)}} AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}"


def _touched(bars: pa.Table) -> dict[str, Any] | None:
    """The parameters of `_TOUCHED` for a batch's 1m bars: its tickers, from its first bucket to
    the end of its last; None when it has no 1m bars."""
    if "interval" in bars.column_names:
        bars = bars.filter(pc.equal(bars.column("interval"), "1m"))
    if bars.num_rows == 0:
        return None
    ts = bars.column("ts")
    return {"tickers": pc.unique(bars.column("ticker")).to_pylist(), "start": floor_bucket(pc.min(ts).as_py()),
            "end": floor_bucket(pc.max(ts).as_py()) + BUCKET, "priority": SOURCE_PRIORITY}


def refresh(warehouse: _Sql, bars: pa.Table) -> Refresh:
    """Recompute, from the stored 1m bars, every 30-minute bucket of the tickers in `bars`
    (a batch just stored) between its first and last bucket; returns what changed."""
    params = _touched(bars)
    if params is None:
        return _NO_REFRESH
    before = warehouse.query_arrow(
        f"SELECT ticker, exchange, bucket, bars FROM {{db}}.prices_30m FINAL WHERE ticker IN {{tickers:Array(String)}} "
        f"AND bucket >= {{start:{_TS}}} AND bucket < {{end:{_TS}}} AND bars > 0", params)
    after = warehouse.query_arrow(_rolled(_TOUCHED), params)
    after = after.cast(PRICES_30M.arrow_schema) if after.num_rows else PRICES_30M.arrow_schema.empty_table()
    keys = ["ticker", "exchange", "bucket"]
    gone = before.select(keys).join(after.select(keys), keys, join_type="left anti")
    written = pa.concat_tables([after, _emptied(gone, after)])
    warehouse.insert(PRICES_30M.name, written)
    return Refresh(written, _per_ticker(before, written), frozenset(zip(gone.column("ticker").to_pylist(),
                                                                        gone.column("exchange").to_pylist())))


def refresh_in_place(warehouse: _Sql, bars: pa.Table) -> None:
    """`refresh` inside the warehouse (one INSERT ... SELECT, nothing read back): for writers
    with no cache to move that only add bars (a backfill run without Redis). Buckets whose
    bars were all removed are not marked empty; `refresh` does that."""
    params = _touched(bars)
    if params is not None:
        warehouse.command(f"INSERT INTO {{db}}.prices_30m {_rolled(_TOUCHED)}", params)


def _emptied(gone: pa.Table, like: pa.Table) -> pa.Table:
    """Rows that mark buckets with no 1m bars left (bars = 0, prices null)."""
    n = gone.num_rows
    now = pa.array([dt.datetime.now(dt.timezone.utc)] * n, TIMESTAMP_TYPE)
    columns = {"ticker": gone.column("ticker"), "exchange": gone.column("exchange"),
               "bucket": gone.column("bucket").cast(TIMESTAMP_TYPE), "volume": pa.array([0] * n, pa.int64()),
               "bars": pa.array([0] * n, pa.int64()), "computed_at": now}
    return pa.table({f.name: columns[f.name] if f.name in columns else pa.nulls(n, f.type)
                     for f in like.schema}, schema=like.schema)


def _per_ticker(before: pa.Table, written: pa.Table) -> list[dict[str, Any]]:
    """Per ticker and exchange: bars now minus bars before over the refreshed buckets, and
    the newest non-empty bucket written (its close and last bar)."""
    keys = ["ticker", "exchange"]
    old = {(r["ticker"], r["exchange"]): r["bars_sum"] for r in before.group_by(keys).aggregate(
        [("bars", "sum")]).to_pylist()}
    present = written.filter(pc.greater(written.column("bars"), 0)).sort_by([("bucket", "descending")])
    newest = {(r["ticker"], r["exchange"]): {"close": r["close_first"], "last_ts": r["last_ts_first"]}
              for r in present.group_by(keys, use_threads=False).aggregate(  # ordered: first = newest bucket
                  [("close", "first"), ("last_ts", "first")]).to_pylist()}
    out = []
    for row in written.group_by(keys).aggregate([("bars", "sum")]).to_pylist():
        key = (row["ticker"], row["exchange"])
        top = newest.get(key, {})
        out.append({"ticker": key[0], "exchange": key[1], "bars_delta": row["bars_sum"] - old.get(key, 0),
                    "close": top.get("close"), "last_ts": top.get("last_ts")})
    return out


def fill_if_empty(warehouse: _Sql) -> int:
    """Build `prices_30m` from every stored 1m bar when it has no rows and there are bars (a
    warehouse that has just had migration 6, or whose roll-ups were dropped); returns the
    buckets written (0 when there was nothing to do)."""
    filled = warehouse.query_arrow("SELECT count() AS n FROM {db}.prices_30m").column("n")[0].as_py()
    if filled:
        return 0
    warehouse.command(f"INSERT INTO {{db}}.prices_30m {_rolled('1')}", {"priority": SOURCE_PRIORITY})
    return warehouse.query_arrow("SELECT count() AS n FROM {db}.prices_30m").column("n")[0].as_py()


def ticker_totals(warehouse: _Sql, tickers: list[str] | None = None) -> list[dict[str, Any]]:
    """Per ticker and exchange from the roll-ups: 1m bars stored, the newest bar's close and
    time (all tickers, or those named): what the latest-value cache is rebuilt from."""
    where = "bars > 0" + ("" if tickers is None else " AND ticker IN {tickers:Array(String)}")
    # not `AS bars`: ClickHouse would read that alias in the WHERE
    rows = warehouse.query_arrow(
        f"SELECT ticker, exchange, toInt64(sum(bars)) AS n, argMax(close, bucket) AS last_close, "
        f"max(last_ts) AS newest FROM {{db}}.prices_30m FINAL WHERE {where} GROUP BY ticker, exchange",
        {"tickers": tickers or []}).to_pylist()
    return [{"ticker": r["ticker"], "exchange": r["exchange"], "bars": r["n"], "last_close": r["last_close"],
             "last_ts": r["newest"]} for r in rows]
