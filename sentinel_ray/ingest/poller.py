"""Source pollers: fetch from a source forever, feed the streams, never emit twice.

Each poll: wait while any target stream is over `stream_max_entries` (backpressure),
fetch from the saved cursor, keep the raw payloads in the lake (named by content hash,
so a repeated poll rewrites the same file), then append the records and save the new
cursor in one Redis transaction. A poller that dies anywhere in between resumes from the
last saved cursor: at worst it fetches again what it had not yet published. The cursor is
read from Redis at every poll, never kept in memory: after a Redis failure (or a Redis
restart that lost the last writes) the poll starts from what Redis holds, so a publish
whose reply never came is neither lost (not there: fetched again) nor doubled (there: the
cursor moved with it).

Bad input does not stop a poll. A record the adapter could not read (`meta["unparseable"]`)
becomes a quarantine row of its dataset, reason `unparseable`, whose `run_id` points at
the raw payload that holds it (`<raw-zone path>#<position>: <error>`). A payload that cannot
be read at all is kept in the raw zone and reported (`unreadable_payloads`, `last_error`
naming the file, the poll metric's error `UnreadablePayload`):

- one of several requests (a symbol, a subreddit, a feed): the adapter notes it in
  `meta["unreadable"]` and returns the others' records; that request's cursor stays;
- nothing the poll received could be read (`UnreadablePayload` raised): the poll is done
  all the same, and the next comes at the usual interval, from the cursor the error names
  (`next_cursor`) or, without one, the cursor as it was. Backoff is for failures a wait may
  cure; the same bytes asked for again sooner would only come back the same.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.ingest.lineage import raw_zone_id, stamp_raw_ids
from sentinel_ray.monitoring import metrics
from sentinel_ray.records import REJECT_REASON, FetchResult, MissingCredentials, RawPayload, Reason, utc_now
from sentinel_ray.schemas import dataset
from sentinel_ray.sources.base import Source
from sentinel_ray.sources.http import AuthError
from sentinel_ray.sources.parsing import UnreadablePayload
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
    unparseable: int = 0  # records the adapter could not read: quarantined, reason unparseable
    unreadable_payloads: int = 0  # whole payloads that could not be read: kept in the raw zone, skipped
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
        unreadable_before = self.stats.unreadable_payloads
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
        # a poll that kept an unreadable payload is done, but it is counted as an error too
        error = UnreadablePayload.__name__ if self.stats.unreadable_payloads > unreadable_before else None
        metrics.record_poll(self.source.name, published, time.perf_counter() - began, error=error)
        return published

    async def _fetch_and_publish(self) -> int:
        self.stats.state = "polling"
        cursor = self.store.load_cursor(self.source.name)  # from Redis, every time (see the module doc)
        try:
            result = await self.source.fetch(cursor)
        except UnreadablePayload as e:
            return self._skip_unreadable(e)
        raw_paths = [self._keep_raw(payload) for payload in result.raw]
        # before the publish: a poll that dies in between rewrites the same file (named by content)
        unparseable = self._quarantine_unparseable(result, raw_paths)
        self._report_unreadable(result, raw_paths)
        records = stamp_raw_ids(result.records, {p.payload_id: path for p, path in zip(result.raw, raw_paths)})
        self.store.publish(self.source.name, records, result.next_cursor)
        published = sum(t.num_rows for t in result.records.values())
        self.stats.polls += 1
        self.stats.records += published
        self.stats.raw_payloads += len(result.raw)
        self.stats.unparseable += unparseable
        self.stats.last_poll_at = utc_now().isoformat()
        self.stats.state = "polling" if published else "idle"
        return published

    def _keep_raw(self, payload: RawPayload) -> str:
        """The payload in the raw zone, named by its content; its path relative to the lake root."""
        digest = hashlib.sha256(payload.body).hexdigest()[:20]
        path = self.lake.write_raw(payload, day=payload.received_at.date(), batch_key=f"{self.source.name}-{digest}")
        return raw_zone_id(self.lake, path)

    def _quarantine_unparseable(self, result: FetchResult, raw_paths: list[str]) -> int:
        """Quarantine rows (reason unparseable) for the records the adapter noted it could not
        read, one file per dataset per poll, named by the poll's payloads; how many."""
        notes = (result.meta.get("unparseable") or []) if isinstance(result.meta, dict) else []
        by_dataset: dict[str, list[tuple[str, dt.datetime]]] = {}
        for note in notes:
            index = note.get("payload") if isinstance(note, dict) else None
            payload = result.raw[index] if isinstance(index, int) and 0 <= index < len(result.raw) else None
            where = raw_paths[index] if payload is not None else "(payload not kept)"
            ds_name = payload.dataset if payload is not None else self.source.datasets[0]
            pointer = f"{where}#{note.get('position', '?')}: {note.get('error', '')}"[:1_000]
            received = payload.received_at if payload is not None else utc_now()
            by_dataset.setdefault(ds_name, []).append((pointer, received))
        key = "-".join(p.rsplit("/", 1)[-1].split(".", 1)[0] for p in raw_paths)
        key = f"{self.source.name}-unparseable-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
        for ds_name, rows in by_dataset.items():
            ds = dataset(ds_name)
            schema = ds.quarantine_schema
            n = len(rows)
            columns = {f.name: pa.nulls(n, f.type) for f in schema}
            columns["source"] = pa.array([self.source.name] * n, schema.field("source").type)
            columns["run_id"] = pa.array([pointer for pointer, _ in rows], schema.field("run_id").type)
            columns["ingested_at"] = pa.array([received for _, received in rows], schema.field("ingested_at").type)
            columns[REJECT_REASON] = pa.array([Reason.UNPARSEABLE.value] * n, pa.string())
            table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
            self.lake.write_quarantine(ds, table, day=rows[0][1].date(), batch_key=key)
            metrics.record_rows("stream", ds_name, self.source.name, n, 0, n)
            log.warning("%s poller: %d %s record(s) could not be read; quarantined (unparseable), first: %s",
                        self.source.name, n, ds_name, rows[0][0][:300])
        return len(notes)

    def _report_unreadable(self, result: FetchResult, raw_paths: list[str]) -> None:
        """Report the payloads the adapter noted it could not read (`meta["unreadable"]`) while it
        read the rest: they are in the raw zone already, with the rest of the poll's."""
        notes = (result.meta.get("unreadable") or []) if isinstance(result.meta, dict) else []
        for note in notes:
            index = note.get("payload") if isinstance(note, dict) else None
            where = raw_paths[index] if isinstance(index, int) and 0 <= index < len(raw_paths) else "-"
            error = note.get("error", "") if isinstance(note, dict) else str(note)
            self.stats.unreadable_payloads += 1
            self.stats.last_error = f"unreadable payload kept at {where}: {error}"[:500]
            log.error("%s poller: %s; the poll went on without it", self.source.name, self.stats.last_error)

    def _skip_unreadable(self, error: UnreadablePayload) -> int:
        """Nothing the poll received could be read: keep it, report it, and call the poll done, so
        the next comes at the usual interval, from where the adapter says (else the cursor as it was)."""
        paths = [self._keep_raw(payload) for payload in error.raw if isinstance(payload, RawPayload)]
        self.stats.unreadable_payloads += 1
        self.stats.raw_payloads += len(paths)
        self.stats.last_error = f"unreadable payload kept at {paths[-1] if paths else '-'}: {error}"[:500]
        if error.next_cursor is not None:
            log.error("%s poller: %s; skipped it", self.source.name, self.stats.last_error)
            self.store.publish(self.source.name, {}, error.next_cursor)
        else:
            log.error("%s poller: %s; polling again at the usual interval, from the same cursor",
                      self.source.name, self.stats.last_error)
        self.stats.polls += 1
        self.stats.last_poll_at = utc_now().isoformat()
        self.stats.state = "idle"
        return 0

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
