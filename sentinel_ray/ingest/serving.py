"""The read path's derived state, kept by the writers as they store: price roll-ups
(storage/rollups.py) and the latest-value cache (storage/latest.py).

The stream consumers, the backfill and the replays call `ServingUpdater` after their rows
are in the warehouse (and before a stream batch is acknowledged): `on_prices` refreshes the
30-minute roll-ups the bars touched and moves the cache's bar counts and newest bars;
`on_signals` puts the newest risk and the open-alert counts of the batch's tickers;
`on_alert_changed` follows an analyst's transition; `on_stored` (every batch, any dataset)
moves the cache's version, which retires the API's kept responses (serve/response_cache.py). Roll-up refresh and cache update run
under one Redis lock, so two writers touching the same bucket apply their changes one after
the other (each change is computed against the roll-up the previous one left).

Without Redis (a backfill run while the platform is down) only the roll-ups are kept; `up`
invalidates the cache when it starts, so the first read rebuilds it from the warehouse.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import redis

from sentinel_ray.config import Settings
from sentinel_ray.ingest.streams import SIGNALS_LOCK, StreamStore
from sentinel_ray.market import as_utc
from sentinel_ray.pipeline.features import WINDOW_SESSIONS
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import RISK_1M
from sentinel_ray.storage import rollups
from sentinel_ray.storage.latest import LatestCache
from sentinel_ray.storage.redis import connect_redis, redis_ok
from sentinel_ray.storage.warehouse import Warehouse

log = logging.getLogger(__name__)
# calendar days that hold the WINDOW_SESSIONS + 1 sessions a live feature state spans, and more
STATE_REACH = dt.timedelta(days=(WINDOW_SESSIONS + 1) * 7 // 5 + 14)
SIGNALS_HOLD_S = 300.0  # the stream's signals lock, held for one block of sessions (seconds each)
STREAM_TURN_S = 0.3  # between blocks, the live consumers' turn at that lock

LOCK = "latest"
LOCK_TTL_S = 120.0  # a backfill block's refresh can take seconds; a killed holder frees it after this
_TS = "DateTime64(3, 'UTC')"
_RISK_COLUMNS = ", ".join(f"`{c}`" for c in RISK_1M.column_names)


def latest_risks(warehouse: Warehouse, tickers: list[str] | None = None, since: Any = None) -> list[dict[str, Any]]:
    """The newest risk_1m row per ticker and exchange (all, or these tickers' rows at or after `since`)."""
    where, params = ("1", {}) if tickers is None else (
        f"ticker IN {{tickers:Array(String)}} AND ts >= {{since:{_TS}}}", {"tickers": tickers, "since": since})
    # argMax over (ts, computed_at), not FINAL: the newest bar's latest computation, in one
    # pass without merging every part (the whole table when the cache is rebuilt)
    rows = warehouse.query_rows(
        f"SELECT ticker, exchange, argMax(tuple({_RISK_COLUMNS}), (ts, computed_at)) AS newest FROM {{db}}.risk_1m "
        f"WHERE {where} GROUP BY ticker, exchange", params)
    return [{k: as_utc(v) if k in ("ts", "computed_at") else v for k, v in zip(RISK_1M.column_names, row["newest"])}
            for row in rows]


def open_alert_counts(warehouse: Warehouse, tickers: list[str] | None = None) -> dict[tuple[str, str], int]:
    where = "1" if tickers is None else "ticker IN {tickers:Array(String)}"
    rows = warehouse.query_rows(
        f"SELECT ticker, exchange, countIf(state != 'closed') AS n FROM {{db}}.alerts FINAL WHERE {where} "
        f"GROUP BY ticker, exchange", {"tickers": tickers or []})
    return {(r["ticker"], r["exchange"]): int(r["n"]) for r in rows}


class ServingUpdater:
    def __init__(self, warehouse: Warehouse, store: StreamStore | None) -> None:
        """`store`: the platform's Redis (its key prefix and lock); None keeps roll-ups only."""
        self.warehouse = warehouse
        self.store = store
        self.cache = LatestCache(store.redis, store.prefix, warehouse.database) if store is not None else None

    def on_prices(self, valid: pa.Table, *, batch_key: str) -> rollups.Refresh | None:
        """After a batch's valid bars are stored: roll-ups refreshed, the cache's bars moved
        (and what the refresh changed returned; None when there is no cache to move: then
        the refresh runs inside the warehouse, nothing read back)."""
        if self.store is None or self.cache is None:
            rollups.refresh_in_place(self.warehouse, valid)
            return None
        if valid.num_rows == 0:
            return rollups.refresh(self.warehouse, valid)
        try:
            with self.store.exclusive(LOCK, ttl_s=LOCK_TTL_S):
                refreshed = rollups.refresh(self.warehouse, valid)
                self._move_bars(refreshed, batch_key)
            return refreshed
        except (redis.RedisError, TimeoutError) as e:
            self._lost(e)
            return rollups.refresh(self.warehouse, valid)  # the roll-ups never depend on Redis

    def _move_bars(self, refreshed: rollups.Refresh, batch_key: str) -> None:
        assert self.cache is not None
        if refreshed.buckets:
            self.cache.apply_bars(batch_key, refreshed.per_ticker)
        if refreshed.emptied:  # their newest bar may now be an older one, or none
            tickers = sorted({t for t, _ in refreshed.emptied})
            found = {(r["ticker"], r["exchange"]): r for r in rollups.ticker_totals(self.warehouse, tickers)}
            self.cache.put_bars(found.get(key, {"ticker": key[0], "exchange": key[1], "last_close": None,
                                                "last_ts": None}) for key in refreshed.emptied)

    def on_signals(self, valid: pa.Table) -> None:
        """After a prices batch's risk and alerts are written: its tickers' newest risk and open alerts."""
        if self.cache is None or valid.num_rows == 0:
            return
        tickers = pc.unique(valid.column("ticker")).to_pylist()
        risks = latest_risks(self.warehouse, tickers, pc.min(valid.column("ts")).as_py())
        keys = valid.group_by(["ticker", "exchange"]).aggregate([])
        counts = {key: 0 for key in zip(keys.column("ticker").to_pylist(), keys.column("exchange").to_pylist())}
        counts.update(open_alert_counts(self.warehouse, tickers))
        try:
            self.cache.put_risk(risks)
            self.cache.put_open_alerts(counts)
        except (redis.RedisError, TimeoutError) as e:
            self._lost(e)

    def on_alert_changed(self, ticker: str, exchange: str) -> None:
        if self.cache is None:
            return
        counts = {(ticker, exchange): 0, **open_alert_counts(self.warehouse, [ticker])}
        try:
            self.cache.put_open_alerts(counts)
            self.cache.touch()
        except (redis.RedisError, TimeoutError) as e:
            self._lost(e)

    def on_stored(self) -> None:
        """After any batch is stored (posts, filings, feature refreshes included): the version
        moves, so no response read before it is served again."""
        if self.cache is None:
            return
        try:
            self.cache.touch()
        except (redis.RedisError, TimeoutError) as e:
            self._lost(e)

    def on_history(self, last_day: dt.date) -> None:
        """After a backfill stored days up to `last_day`: when they reach into the sessions a
        live consumer's feature state holds (the last WINDOW_SESSIONS + 1, with a margin for
        holidays), move the signals epoch, so the consumers rebuild their states from the
        warehouse (a consumer started before the history was there has baselines without it)."""
        if self.store is None or not _in_live_state(last_day):
            return
        try:
            self.store.move_signals_epoch()
        except (redis.RedisError, TimeoutError) as e:
            log.warning("the stream's signals epoch not moved (%s): its consumers rebuild their states "
                        "when they restart", e)

    @contextmanager
    def stream_signals_held(self, block: list[dt.date]) -> Iterator[None]:
        """Around a block of sessions whose signals a writer computes again (a replay; a
        backfill, for the sessions after its days) on a running platform: the stream
        consumers' signals lock held (they wait), and their epoch moved after (they rebuild
        their in-memory states from the warehouse before their next batch, so none goes on
        from the old bars). Nothing to hold without Redis, or for a block older than any
        live state's sessions (STATE_REACH, as `on_history`)."""
        if self.store is None or not _in_live_state(block[-1]):
            yield
            return
        try:
            with self.store.exclusive(SIGNALS_LOCK, ttl_s=SIGNALS_HOLD_S):
                try:
                    yield
                finally:  # a block that failed half-way changed stored rows too
                    self.store.move_signals_epoch()
        finally:
            # redis-py's lock is not fair and its waiters poll every 0.1 s: let a waiting consumer
            # take its turn before the next block, or a long recompute would hold up the live stream
            time.sleep(STREAM_TURN_S)

    def _lost(self, error: Exception) -> None:
        """A cache update that did not happen: mark the cache for a rebuild, if Redis lets us."""
        log.warning("latest-value cache not updated (%s): marking it for a rebuild from the warehouse", error)
        try:
            if self.cache is not None:
                self.cache.invalidate()
        except (redis.RedisError, TimeoutError):
            log.warning("Redis unreachable: the cache is rebuilt when `up` next starts")

    def rebuild(self) -> None:
        """The whole cache from the warehouse (roll-ups, risk, alerts), under the writers' lock."""
        if self.store is None or self.cache is None:
            return
        with self.store.exclusive(LOCK, ttl_s=LOCK_TTL_S):
            if self.cache.is_ready():  # another reader rebuilt it while this one waited
                return
            self.cache.replace_all(rollups.ticker_totals(self.warehouse), latest_risks(self.warehouse),
                                   open_alert_counts(self.warehouse))


def _in_live_state(day: dt.date) -> bool:
    """Whether a live consumer's feature state can hold `day`'s session (STATE_REACH)."""
    return day >= utc_now().date() - STATE_REACH


def serving_for(settings: Settings, warehouse: Warehouse) -> ServingUpdater:
    """An updater on the platform's Redis, or roll-ups only when it does not answer (logged):
    for the writers that run outside `up` too (backfills, replays)."""
    if not redis_ok(settings.resolved_redis_url):
        log.warning("Redis does not answer: roll-ups only; the latest-value cache is rebuilt from the warehouse "
                    "on its first read after `up` starts")
        return ServingUpdater(warehouse, None)
    return ServingUpdater(warehouse, StreamStore(connect_redis(settings.resolved_redis_url), settings.redis_key_prefix))
