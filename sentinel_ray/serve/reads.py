"""Reads behind the HTTP API, in the ingress replica: warehouse queries in threads (they
block; threads keep the replica's event loop serving other requests) and the latest-value
cache."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Awaitable, Callable

import redis
import redis.asyncio as aioredis

from sentinel_ray.config import Settings
from sentinel_ray.detect.alerts import TransitionError
from sentinel_ray.detect.run import AlertNotFound, apply_transition
from sentinel_ray.ingest.serving import ServingUpdater
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.serve import queries
from sentinel_ray.serve.queries import Interval
from sentinel_ray.storage.latest import LatestCache
from sentinel_ray.storage.redis import connect_redis
from sentinel_ray.storage.warehouse import connect_warehouse

log = logging.getLogger(__name__)


class VersionWatch:
    """The latest-value cache's version, kept in this replica by watching its Redis channel:
    a kept response is served with no Redis call. After a move is announced the new version
    is read at once (the old one serves for that round trip); while not subscribed (at start,
    after Redis went away) every request asks Redis (`LatestCache.version`)."""

    def __init__(self, cache: LatestCache, client: Callable[[], aioredis.Redis]) -> None:
        self.cache = cache
        self.client = client
        self.current: str | None = None
        self.live = False
        self._task: asyncio.Task[None] | None = None

    async def version(self) -> str | None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())
        if self.live:
            return self.current
        return await self.cache.version(self.client())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def moved(self) -> None:
        """A write this process made: forget the version until the channel says the new one."""
        self.current = None

    async def _watch(self) -> None:
        while True:
            pubsub = self.client().pubsub()
            try:
                await pubsub.subscribe(self.cache.channel)
                self.current = await self.cache.version(self.client())  # after subscribing: no move missed
                self.live = True
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        # the old version serves until this read returns (a Redis round trip):
                        # set to None, every request meanwhile would go to the warehouse at once
                        self.current = await self.cache.version(self.client())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - Redis went away: ask it per request until it is back
                log.info("cache version watch lost (%s); asking Redis per request until it is back", e)
            finally:
                self.live = False
                self.current = None
                try:
                    await asyncio.wait_for(pubsub.aclose(), timeout=1.0)
                except (Exception, asyncio.CancelledError):  # noqa: BLE001 - broken or closing: nothing to keep
                    pass
            await asyncio.sleep(0.5)


class WarehouseReads:
    """The routes' reads, run in the ingress replica itself: one hop fewer than a query
    deployment between the ingress and the warehouse (measured in bench/api_latency.py).
    Hot summaries come from the latest-value cache (storage/latest.py) and are rebuilt from
    the warehouse when it is empty; the warehouse answers when Redis cannot."""

    def __init__(self, settings: Settings) -> None:
        self.warehouse = connect_warehouse(settings)
        self.serving = ServingUpdater(self.warehouse, StreamStore(connect_redis(settings.resolved_redis_url),
                                                                  settings.redis_key_prefix))
        self.cache = self.serving.cache
        self.redis_url = settings.resolved_redis_url
        self._aredis: aioredis.Redis | None = None  # made on the replica's event loop, at first use
        self._watch: VersionWatch | None = None

    @property
    def aredis(self) -> aioredis.Redis:
        if self._aredis is None:
            self._aredis = aioredis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        return self._aredis

    async def cache_version(self) -> str | None:
        if self._watch is None:
            assert self.cache is not None
            self._watch = VersionWatch(self.cache, lambda: self.aredis)
        return await self._watch.version()

    async def _cached(self, read: Callable[[], Awaitable[Any]], built: Callable[[Any], bool]) -> Any:
        """`await read()` of the cache, after rebuilding it once if it is not built (`built`
        says); None when Redis does not answer (the caller asks the warehouse)."""
        try:
            found = await read()
            if not built(found):
                await asyncio.to_thread(self.serving.rebuild)
                found = await read()
            return found
        except (redis.RedisError, TimeoutError, OSError):
            log.warning("latest-value cache unavailable: answering from the warehouse", exc_info=True)
            return None

    async def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per ticker and exchange: bars, last_close, last_ts, risk, open_alerts."""
        assert self.cache is not None
        found = await self._cached(lambda: self.cache.stocks(self.aredis), lambda f: f is not None)
        if found is not None:
            return found[1]
        rows = await asyncio.to_thread(queries.stock_summaries, self.warehouse)
        return {(r["ticker"], r["exchange"]): {**r, "risk": None, "open_alerts": None} for r in rows}

    async def risk(self, ticker: str, exchange: str) -> dict[str, Any] | None:
        assert self.cache is not None
        found = await self._cached(lambda: self.cache.risk(self.aredis, ticker, exchange), lambda f: f[0])
        if found is not None:
            return found[1]
        return await asyncio.to_thread(queries.latest_risk, self.warehouse, ticker, exchange)

    # Queries block on the warehouse; threads keep the replica's event loop serving
    # other requests meanwhile (a blocking method would handle one request at a time).
    async def prices(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                     exchange: str, source: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.price_bars, self.warehouse, ticker, start, end, interval, exchange,
                                       source)

    async def posts(self, ticker: str, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.posts_mentioning, self.warehouse, ticker, start, end, limit)

    async def features(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval, exchange: str,
                       columns: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.stock_features, self.warehouse, ticker, start, end, interval,
                                       exchange, columns)

    async def features_asof(self, tickers: list[str], asof: dt.datetime, exchange: str,
                            columns: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.features_asof, self.warehouse, tickers, asof, exchange, columns)

    async def risk_history(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                           exchange: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.risk_history, self.warehouse, ticker, start, end, interval, exchange)

    async def trending(self, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.trending, self.warehouse, start, end, limit)

    async def filings(self, ticker: str, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.stock_filings, self.warehouse, ticker, start, end, limit)

    async def alerts(self, state: str | None, ticker: str | None, start: dt.datetime, end: dt.datetime,
                     limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.alerts_list, self.warehouse, state, ticker, start, end, limit)

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(queries.alert_with_events, self.warehouse, alert_id)

    async def update_alert(self, alert_id: str, state: str | None, disposition: str | None, actor: str,
                           note: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """Apply an analyst's change: (the alert with its events, None), (None, None) when there
        is no such alert, or (None, why) when its state does not allow the change. A refusal comes
        back as a value: raised, it would cross the handle wrapped in Ray's error and traceback."""
        def apply() -> tuple[dict[str, Any] | None, str | None]:
            try:
                apply_transition(self.warehouse, alert_id, state, disposition, actor, note)
            except AlertNotFound:
                return None, None
            except TransitionError as e:
                return None, str(e)
            alert = queries.alert_with_events(self.warehouse, alert_id)
            self.serving.on_alert_changed(alert["ticker"], alert["exchange"])
            if self._watch is not None:
                self._watch.moved()  # this replica's next read of the alert sees the change
            return alert, None
        return await asyncio.to_thread(apply)
