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

With `stream_signals` on, the prices consumer runs the signals of each stored batch
(`detect.signals.SignalUpdater`: features, risk, alerts) before the XACK, and the posts
consumer refreshes the features its posts fall in; a batch redelivered after a crash
recomputes the same rows. Signals need the bars in time order: the supervisor runs one
prices consumer.

A failed batch stays pending and is retried, unless a retry cannot help: on a terminal
error (`records.classify`), or after `dead_letter_after_failures` failures whose kind is
unknown, what its attempts wrote is removed (its lake files, its warehouse rows) and its
entries move to the dead-letter stream, acknowledged in the same atomic step. An entry
that cannot even be decoded goes there as soon as it is read. Replayed dead letters are
new entries: they are stored once, under a new batch key.
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
from sentinel_ray.detect.signals import SignalUpdater
from sentinel_ray.ingest.serving import ServingUpdater
from sentinel_ray.ingest.streams import SIGNALS_LOCK, Entry, StreamStore
from sentinel_ray.monitoring import metrics
from sentinel_ray.monitoring.lineage_events import LineageDataset, LineageEmitter
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.store import process_and_store
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import BatchResult, ErrorKind, classify, utc_now
from sentinel_ray.schemas import POSTS, PRICES, QUALITY_METRICS
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
    dead_letters: int = 0  # entries this consumer moved to the dead-letter stream
    dead_letter_rows: int = 0
    last_dead_letter: str | None = None  # the error that sent them there
    # seconds from entering the stream to being stored (queryable), one per entry
    freshness_s: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    feature_rows: int = 0  # features_1m rows computed (prices) or refreshed (posts)
    alerts_opened: int = 0
    # per batch that opened an alert: seconds from its oldest entry entering the stream to
    # the alert row written (an upper bound of the opening bar's own delay)
    alert_latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=1_000))

    def as_dict(self) -> dict[str, Any]:
        fresh = sorted(self.freshness_s)
        p = (lambda q: round(fresh[min(len(fresh) - 1, int(q * len(fresh)))], 3) if fresh else None)
        return {"batches": self.batches, "rows_in": self.rows_in, "rows_valid": self.rows_valid,
                "rows_quarantined": self.rows_quarantined, "errors": self.errors, "last_error": self.last_error,
                "last_batch_at": self.last_batch_at, "freshness_p50_s": p(0.5), "freshness_p99_s": p(0.99),
                "dead_letters": self.dead_letters, "dead_letter_rows": self.dead_letter_rows,
                "last_dead_letter": self.last_dead_letter, "feature_rows": self.feature_rows,
                "alerts_opened": self.alerts_opened, "alert_latency_max_s": (
                    round(max(self.alert_latency_s), 3) if self.alert_latency_s else None)}


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
        self.dead_letter_after = settings.dead_letter_after_failures
        store.ensure_group(dataset)
        warehouse.ensure_schema()
        self.rules = rules_for(settings)
        self.signals = (SignalUpdater(warehouse, lake, detected_by="stream")
                        if settings.stream_signals and self.ds.name in (PRICES.name, POSTS.name) else None)
        self._signals_epoch: int | None = None  # the store's signals epoch its states are of
        self.serving = ServingUpdater(warehouse, store)  # roll-ups and the latest-value cache
        self.lineage = LineageEmitter(settings, warehouse)  # an OpenLineage run per batch
        self.lineage_io = {"inputs": [LineageDataset.stream(store.stream_key(dataset), schema=dataset)],
                           "outputs": [LineageDataset.warehouse(dataset),
                                       LineageDataset.lake(f"curated/dataset={dataset}", schema=dataset)]}

    # -- reading -------------------------------------------------------------------
    def next_batch(self, block_s: float | None = None) -> MicroBatch | None:
        """My own pending entries first, then entries a dead consumer left, then new ones."""
        for _ in range(2):
            mine = self._decodable(self.store.read_pending(self.ds.name, self.name, count=READ_COUNT * 10))
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
            by_id.update((e.id, e) for e in self._decodable(self.store.claim(self.ds.name, self.name, missing)))
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
            got = self._decodable(self.store.read_new(self.ds.name, self.name, count=READ_COUNT,
                                                      block_ms=remaining_ms))
            entries.extend(got)
            rows += sum(e.rows for e in got)
        return self._register(entries) if entries else None

    def _decodable(self, entries: list[Entry]) -> list[Entry]:
        """The entries that decoded; the others go to the dead-letter stream now (no retry decodes them)."""
        good = [e for e in entries if e.poison is None]
        for e in entries:
            if e.poison is not None:
                log.error("%s: entry %s cannot be decoded (%s: %s); dead-lettered", self.name, e.id,
                          type(e.poison).__name__, e.poison)
                self._set_aside(None, [e], e.poison, ErrorKind.TERMINAL, attempts=1)
        return good

    def _register(self, entries: list[Entry]) -> MicroBatch:
        key = f"{self.ds.name}-{entries[0].id}"
        self.store.save_manifest(self.ds.name, key, [e.id for e in entries])
        return MicroBatch(key, self.ds.name, entries)

    # -- storing -------------------------------------------------------------------
    def store_batch(self, batch: MicroBatch) -> BatchResult:
        began = time.perf_counter()
        table = pa.concat_tables([e.table for e in batch.entries], promote_options="permissive")
        now = utc_now()
        event = self.lineage.start(batch.key, job=f"stream.{self.ds.name}", params={"entries": len(batch.entries)},
                                   **self.lineage_io)
        result = process_and_store(table, self.ds, lake=self.lake, warehouse=self.warehouse, day=batch.day,
                                   batch_key=batch.key, now=now, run_id=batch.key, ingested_at=None,
                                   pipeline="stream", rules=self.rules)
        if self.record_runs:
            run = PipelineRun("stream", {"dataset": self.ds.name, "entries": len(batch.entries),
                                         "sources": sorted({e.source for e in batch.entries}),
                                         "rules_version": self.rules.version},
                              run_id=batch.key, started_at=now, rows_in=result.rows_in,
                              rows_valid=result.rows_valid, rows_quarantined=result.rows_quarantined)
            run.finish(self.warehouse)
        if self.ds.name == PRICES.name:
            self.serving.on_prices(result.valid, batch_key=batch.key)
        self._hold_at_fault_point("before-signals")
        self._signals(batch, result)
        if self.ds.name == PRICES.name and self.signals is not None:
            self.serving.on_signals(result.valid)
        self.serving.on_stored()
        event.complete({self.ds.name: result.rows_valid})
        self._hold_at_fault_point("before-ack")
        self._acknowledge(batch)
        self._count(batch, result)
        # per source: pollers and webhook senders sharing this stream each keep their own counts
        metrics.record_batch_by_source("stream", self.ds.name, result.valid, result.quarantined,
                                       time.perf_counter() - began)
        return result

    def _signals(self, batch: MicroBatch, result: BatchResult) -> None:
        if self.signals is None or result.valid.num_rows == 0:
            return
        # Prices features read the stored posts, a posts refresh reads the stored features:
        # one at a time, or a refresh and a prices batch computed side by side could each
        # miss the other's rows, and the later write would keep the miss.
        with self.store.exclusive(SIGNALS_LOCK):
            epoch = self.store.signals_epoch()
            if epoch != self._signals_epoch:
                if self._signals_epoch is not None:
                    # stored bars changed behind this consumer (a replay or backfill recomputed sessions):
                    # its in-memory states are rebuilt from the warehouse
                    self.signals.reset()
                self._signals_epoch = epoch
            self._signals_held(batch, result)

    def _signals_held(self, batch: MicroBatch, result: BatchResult) -> None:
        if self.ds.name == PRICES.name:
            opened_before = self.signals.counts.detect.alerts_opened
            self.signals.on_prices(result.valid, batch_key=batch.key)
            opened = self.signals.counts.detect.alerts_opened - opened_before
            if opened:
                self.stats.alerts_opened += opened
                oldest_ms = min(e.created_ms for e in batch.entries)
                self.stats.alert_latency_s.append(max(0.0, time.time() - oldest_ms / 1000))
        else:
            self.signals.on_posts(result.valid, batch_key=batch.key)
        self.stats.feature_rows = self.signals.counts.feature_rows + self.signals.counts.refreshed_rows

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
                if self.handle_failure(e):
                    failures = 0  # set aside: the next batch owes this one no backoff
                else:
                    failures += 1
                    stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
            self._publish_status()

    def handle_failure(self, error: Exception) -> bool:
        """Count and record a failed attempt at the current batch; dead-letter the batch when
        no retry will help. True when it was dead-lettered (else it stays pending)."""
        self.stats.errors += 1
        metrics.record_batch_error("stream", self.ds.name)
        self.stats.last_error = f"{type(error).__name__}: {error}"[:500]
        self._record_failure(self.stats.last_error)
        kind, batch = classify(error), self._current
        if batch is not None:
            self.lineage.fail(batch.key, job=f"stream.{self.ds.name}", error=error, **self.lineage_io)
        if batch is None or kind is ErrorKind.TRANSIENT:
            log.warning("%s: batch failed (%s); retrying", self.name, self.stats.last_error)
            return False
        try:
            attempts = self.store.count_failure(self.ds.name, batch.key)
            if kind is ErrorKind.UNKNOWN and attempts < self.dead_letter_after:
                log.warning("%s: batch %s failed (%s, %d of %d before it is set aside); retrying", self.name,
                            batch.key, self.stats.last_error, attempts, self.dead_letter_after)
                return False
            self._undo_writes(batch)
            self._set_aside(batch.key, batch.entries, error, kind, attempts=attempts)
        except Exception as e:  # noqa: BLE001 - the batch stays pending: the next attempt tries again
            log.warning("%s: batch %s failed (%s) and could not be dead-lettered (%s: %s); retrying", self.name,
                        batch.key, self.stats.last_error, type(e).__name__, e)
            return False
        self._current = None
        return True

    def _undo_writes(self, batch: MicroBatch) -> None:
        """Remove what the batch's attempts wrote (every write is named by its key), so that its
        rows are only in the dead letters and a replay, under a new key, stores them once."""
        name = f"part-{batch.key}.parquet"  # stream batch keys are file-name safe: dataset and entry id
        for zone in ("curated", "quarantine"):
            schema = self.ds.arrow_schema if zone == "curated" else self.ds.quarantine_schema
            for path in self.lake.list_files(zone, self.ds.name):
                if path.rsplit("/", 1)[-1] == name:
                    self.lake.replace_file(path, schema.empty_table(), self.ds)  # empty: removed
        try:
            for table in (self.ds.name, QUALITY_METRICS.name):
                where, params = f"FROM {{db}}.`{table}` WHERE run_id = {{run:String}}", {"run": batch.key}
                # a DELETE is a mutation, slow even when it matches nothing: a refused insert left no rows
                if self.warehouse.query_rows(f"SELECT count() AS n {where}", params)[0]["n"]:
                    self.warehouse.command(f"DELETE {where}", params)
            if self.ds.name == PRICES.name:  # its bars are out: their buckets and the cache follow
                self.serving.on_prices(pa.concat_tables([e.table for e in batch.entries], promote_options="permissive"),
                                       batch_key=f"{batch.key}:undone")
        except Exception as e:  # noqa: BLE001 - a replay re-inserts the same keys: ReplacingMergeTree absorbs it
            log.warning("%s: rows of dead-lettered batch %s stay in the warehouse until it is replayed (%s)",
                        self.name, batch.key, e)

    def _set_aside(self, batch_key: str | None, entries: list[Entry], error: Exception, kind: ErrorKind, *,
                   attempts: int) -> None:
        moved = set(self.store.dead_letter(self.ds.name, batch_key, [e.id for e in entries], error=error, kind=kind,
                                           consumer=self.name, attempts=attempts))
        rows = sum(e.rows for e in entries if e.id in moved)
        self.stats.dead_letters += len(moved)
        self.stats.dead_letter_rows += rows
        self.stats.last_dead_letter = f"{type(error).__name__}: {error}"[:500]
        log.error("%s: %d entries (%d rows) dead-lettered after %d attempt(s): %s", self.name, len(moved), rows,
                  attempts, self.stats.last_dead_letter)

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
