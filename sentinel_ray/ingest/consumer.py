"""Stream consumers: micro-batches from Redis Streams through the pipeline into storage.

A consumer reads its dataset's stream through the consumer group (each protocol step is a
`StreamStore` method), gathers entries into a micro-batch (by rows or by time, whichever
comes first), runs the same pipeline functions as the backfill (`process_and_store`), and
only then acknowledges (XACK) and deletes them.

Nothing lost, nothing doubled, even when a consumer dies mid-batch:
- Before writing anything, the batch's entry ids are saved as a manifest under a key
  derived from its first entry (`<dataset>-<first id>`). That key names every lake file
  the batch writes.
- Entries a dead consumer left pending are taken over (its own restart reads its pending
  list first; others XAUTOCLAIM after `claim_idle_s`). Entries that belong to a manifest
  are processed again as exactly that batch, so the same files are rewritten rather than
  new ones added, and the warehouse's ReplacingMergeTree absorbs the re-insert.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.ingest.streams import Entry, StreamStore
from sentinel_ray.monitoring import metrics
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.store import process_and_store
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import BatchResult, utc_now
from sentinel_ray.schemas import dataset as dataset_named
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse

log = logging.getLogger(__name__)
READ_COUNT = 100  # entries per XREADGROUP call


@dataclass
class MicroBatch:
    key: str
    dataset: str
    entries: list[Entry]

    @property
    def rows(self) -> int:
        return sum(e.rows for e in self.entries)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    @property
    def day(self) -> dt.date:
        """The batch's own date (of its first entry): where its quarantine rows go."""
        first_ms = self.entries[0].stream_ms
        return dt.datetime.fromtimestamp(first_ms / 1000, dt.timezone.utc).date()


@dataclass
class ConsumerStats:
    batches: int = 0
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    errors: int = 0
    last_error: str | None = None
    last_batch_at: str | None = None
    # seconds from entering the stream to being stored (queryable), one per entry
    freshness_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def as_dict(self) -> dict[str, Any]:
        fresh = sorted(self.freshness_s)
        p = (lambda q: round(fresh[min(len(fresh) - 1, int(q * len(fresh)))], 3) if fresh else None)
        return {"batches": self.batches, "rows_in": self.rows_in, "rows_valid": self.rows_valid,
                "rows_quarantined": self.rows_quarantined, "errors": self.errors, "last_error": self.last_error,
                "last_batch_at": self.last_batch_at, "freshness_p50_s": p(0.5), "freshness_p99_s": p(0.99)}


class StreamConsumer:
    def __init__(self, settings: Settings, dataset: str, name: str, *, store: StreamStore, lake: Lake,
                 warehouse: Warehouse, record_runs: bool = True) -> None:
        self.settings = settings
        self.ds = dataset_named(dataset)
        self.name = name
        self.store = store
        self.lake = lake
        self.warehouse = warehouse
        self.record_runs = record_runs
        self.stats = ConsumerStats()
        self._current: MicroBatch | None = None  # the batch being stored, for failure records
        store.ensure_group(dataset)
        warehouse.ensure_schema()
        self.rules = rules_for(settings)

    # -- reading -------------------------------------------------------------------
    def next_batch(self, block_s: float | None = None) -> MicroBatch | None:
        """My own pending entries first, then entries a dead consumer left, then new ones."""
        for _ in range(2):
            mine = self.store.read_pending(self.ds.name, self.name, count=READ_COUNT * 10)
            if mine:
                return self._batch_from_pending(mine)
            if not self._claim_abandoned():
                break
        return self._new_batch(self.settings.batch_max_wait_s if block_s is None else block_s)

    def _claim_abandoned(self) -> bool:
        claimed = self.store.claim_idle(self.ds.name, self.name, min_idle_s=self.settings.claim_idle_s,
                                        count=READ_COUNT * 10)
        if claimed:
            log.warning("%s: took over %d entries left pending by another consumer", self.name, claimed)
        return bool(claimed)

    def _batch_from_pending(self, pending: list[Entry]) -> MicroBatch:
        keys = self.store.batch_keys_of(self.ds.name, [e.id for e in pending])
        first_key = keys[0]
        if first_key is None:
            # read but never registered: nothing was written for these, start a new batch
            fresh = [e for e, k in zip(pending, keys) if k is None]
            return self._register(self._take_rows(fresh))
        ids = self.store.load_manifest(first_key) or [e.id for e, k in zip(pending, keys) if k == first_key]
        by_id = {e.id: e for e in pending}
        missing = [i for i in ids if i not in by_id]
        if missing:  # parts of the batch still pending under another (dead) consumer
            by_id.update((e.id, e) for e in self.store.claim(self.ds.name, self.name, missing))
        entries = [by_id[i] for i in ids if i in by_id]
        log.info("%s: re-processing batch %s (%d entries)", self.name, first_key, len(entries))
        return MicroBatch(first_key, self.ds.name, entries)

    def _take_rows(self, entries: list[Entry]) -> list[Entry]:
        taken, rows = [], 0
        for e in entries:
            if taken and rows + e.rows > self.settings.batch_max_rows:
                break
            taken.append(e)
            rows += e.rows
        return taken

    def _new_batch(self, wait_s: float) -> MicroBatch | None:
        deadline = time.monotonic() + wait_s
        entries: list[Entry] = []
        rows = 0
        while rows < self.settings.batch_max_rows:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            got = self.store.read_new(self.ds.name, self.name, count=READ_COUNT, block_ms=remaining_ms)
            entries.extend(got)
            rows += sum(e.rows for e in got)
        return self._register(entries) if entries else None

    def _register(self, entries: list[Entry]) -> MicroBatch:
        key = f"{self.ds.name}-{entries[0].id}"
        self.store.save_manifest(self.ds.name, key, [e.id for e in entries])
        return MicroBatch(key, self.ds.name, entries)

    # -- storing -------------------------------------------------------------------
    def store_batch(self, batch: MicroBatch) -> BatchResult:
        began = time.perf_counter()
        table = pa.concat_tables([e.table for e in batch.entries], promote_options="permissive")
        now = utc_now()
        result = process_and_store(table, self.ds, lake=self.lake, warehouse=self.warehouse, day=batch.day,
                                   batch_key=batch.key, now=now, run_id=batch.key, ingested_at=None,
                                   pipeline="stream", rules=self.rules)
        if self.record_runs:
            run = PipelineRun("stream", {"dataset": self.ds.name, "entries": len(batch.entries),
                                         "sources": sorted({e.source for e in batch.entries})},
                              run_id=batch.key, started_at=now, rows_in=result.rows_in,
                              rows_valid=result.rows_valid, rows_quarantined=result.rows_quarantined)
            run.finish(self.warehouse)
        self._hold_at_fault_point("before-ack")
        self._acknowledge(batch)
        self._count(batch, result)
        # per source: pollers and webhook senders sharing this stream each keep their own counts
        metrics.record_batch_by_source("stream", self.ds.name, result.valid, result.quarantined,
                                       time.perf_counter() - began)
        return result

    def _hold_at_fault_point(self, point: str) -> None:
        """Chaos drills: while `<prefix>:fault:<point>` exists, wait here (status says so).

        Lets a test or an operator freeze a consumer after its writes and before its XACK,
        then kill it, to prove a dead consumer's batch is taken over without loss or doubles.
        """
        while self.store.fault_held(point):
            self.store.set_status("consumer", self.name, {"dataset": self.ds.name, "state": f"held at {point}",
                                                          "pid": os.getpid()})
            time.sleep(0.05)

    def _acknowledge(self, batch: MicroBatch) -> None:
        self.store.acknowledge(self.ds.name, batch.key, batch.ids)

    def _count(self, batch: MicroBatch, result: BatchResult) -> None:
        now_ms = time.time() * 1000
        s = self.stats
        s.batches += 1
        s.rows_in += result.rows_in
        s.rows_valid += result.rows_valid
        s.rows_quarantined += result.rows_quarantined
        s.last_batch_at = utc_now().isoformat()
        s.freshness_s.extend(max(0.0, (now_ms - e.created_ms) / 1000) for e in batch.entries)

    # -- running -------------------------------------------------------------------
    def run_once(self) -> int:
        """Read and store at most one micro-batch; the rows it stored (0 when idle)."""
        self._current = None
        batch = self.next_batch()
        if batch is None:
            return 0
        self._current = batch
        return self.store_batch(batch).rows_in

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.run_once()
                failures = 0
            except Exception as e:  # noqa: BLE001 - a failing batch stays pending and is retried
                failures += 1
                self.stats.errors += 1
                metrics.record_batch_error("stream", self.ds.name)
                self.stats.last_error = f"{type(e).__name__}: {e}"[:500]
                log.warning("%s: batch failed (%s); retrying", self.name, self.stats.last_error)
                self._record_failure(self.stats.last_error)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
            self._publish_status()

    def _record_failure(self, error: str) -> None:
        """Best effort: a failed attempt is a pipeline run of its own (the batch is retried
        and, when it succeeds, recorded under its key), so health rollups count failures."""
        batch = self._current
        if batch is None or not self.record_runs:
            return
        try:
            run = PipelineRun("stream", {"dataset": self.ds.name, "entries": len(batch.entries)},
                              run_id=f"{batch.key}-failed-{utc_now():%H%M%S%f}", rows_in=batch.rows)
            run.finish(self.warehouse, error=error)
        except Exception:  # noqa: BLE001 - the warehouse may be what failed
            log.debug("%s: could not record the failed run", self.name, exc_info=True)

    def _publish_status(self) -> None:
        try:
            self.store.set_status("consumer", self.name, {"dataset": self.ds.name, **self.stats.as_dict(),
                                                          "updated_at": utc_now().isoformat()})
        except Exception:  # noqa: BLE001 - status is best effort while Redis is down
            pass
