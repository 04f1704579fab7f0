"""Source pollers: fetch from a source forever, feed the streams, never emit twice.

Each poll: wait while any target stream is over `stream_max_entries` (backpressure),
fetch from the saved cursor, keep the raw payloads in the lake (named by content hash,
so a repeated poll rewrites the same file), then append the records and save the new
cursor in one Redis transaction. A poller that dies anywhere in between resumes from the
last saved cursor: at worst it fetches again what it had not yet published.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sentinel_ray.config import Settings
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.monitoring import metrics
from sentinel_ray.records import MissingCredentials, utc_now
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import AuthError
from sentinel_ray.storage.lake import Lake

log = logging.getLogger(__name__)
BACKPRESSURE_WAIT_S = 0.2


@dataclass
class PollerStats:
    state: str = "starting"  # polling | waiting (backpressure) | idle | failing | stopped
    polls: int = 0
    records: int = 0
    raw_payloads: int = 0
    errors: int = 0
    backpressure_waits: int = 0
    last_error: str | None = None
    last_poll_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


class SourcePoller:
    def __init__(self, settings: Settings, source: Source, *, store: StreamStore, lake: Lake) -> None:
        self.settings = settings
        self.source = source
        self.store = store
        self.lake = lake
        self.stats = PollerStats()
        # a source may know its own pace (the live replay); network sources use the setting
        own_pace = getattr(source, "poll_interval_s", None)
        self.interval_s = float(settings.poll_interval_for(source.name) if own_pace is None else own_pace)
        for ds in source.datasets:
            store.ensure_group(ds)

    def backpressured(self) -> bool:
        return any(self.store.length(ds) >= self.settings.stream_max_entries for ds in self.source.datasets)

    async def poll_once(self) -> int:
        """One fetch -> lake raw -> stream. Returns the records published (0: nothing new)."""
        began = time.perf_counter()
        try:
            if self.backpressured():
                self.stats.state = "waiting"
                self.stats.backpressure_waits += 1
                metrics.record_backpressure(self.source.name)
                return 0
            published = await self._fetch_and_publish()
        except Exception as e:
            metrics.record_poll(self.source.name, 0, time.perf_counter() - began, error=type(e).__name__)
            raise
        metrics.record_poll(self.source.name, published, time.perf_counter() - began)
        return published

    async def _fetch_and_publish(self) -> int:
        self.stats.state = "polling"
        cursor = self.store.load_cursor(self.source.name)
        result = await self.source.fetch(cursor)
        for payload in result.raw:
            digest = hashlib.sha256(payload.body).hexdigest()[:20]
            self.lake.write_raw(payload, day=payload.received_at.date(), batch_key=f"{self.source.name}-{digest}")
        self.store.publish(self.source.name, result.records, result.next_cursor)
        published = sum(t.num_rows for t in result.records.values())
        self.stats.polls += 1
        self.stats.records += published
        self.stats.raw_payloads += len(result.raw)
        self.stats.last_poll_at = utc_now().isoformat()
        self.stats.state = "polling" if published else "idle"
        return published

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            delay = self.interval_s
            try:
                published = await self.poll_once()
                failures = 0
                if self.stats.state == "waiting":
                    delay = BACKPRESSURE_WAIT_S
                elif published and self.interval_s == 0:
                    delay = 0
            except Exception as e:  # noqa: BLE001 - a poller keeps going; the error is reported
                failures += 1
                self.stats.errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"[:500]
                self.stats.state = "failing"
                # bad credentials will not fix themselves: poll rarely, keep reporting
                delay = 600.0 if isinstance(e, (AuthError, MissingCredentials)) else min(300.0, 1.0 * 2 ** min(failures, 8))
                log.warning("%s poller: %s (retry in %.0fs)", self.source.name, self.stats.last_error, delay)
            self._publish_status()
            if delay:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)
        self.stats.state = "stopped"
        self._publish_status()
        await self.source.close()

    def _publish_status(self) -> None:
        try:
            self.store.set_status("poller", self.source.name, {**self.stats.as_dict(),
                                                               "updated_at": utc_now().isoformat()})
        except Exception:  # noqa: BLE001 - best effort while Redis is down
            pass
