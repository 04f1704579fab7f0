"""Signals from stored rows, for both drivers: features, then risk and alerts.

`SignalUpdater` is what the backfill driver (per block of days, in day order) and the
prices stream consumer (per micro-batch, before its XACK) call once the batch's rows are
stored:

    on_prices(valid bars)  -> features_1m / features_1d written (pipeline.features_stream),
                              then risk_1m, alerts and alert_events (detect.run.detect_batch)
    on_posts(valid posts)  -> the post columns of the feature rows those posts fall in,
                              rewritten (posts stored after their bars)

It carries two bounded states: the features' trailing bars (`FeatureState`) and the
running alert episode per ticker. Neither is the only copy of anything: both are rebuilt
from the warehouse when they are None (a fresh or restarted consumer, or a backfill that
skips days another run finished), so a consumer killed mid-batch and restarted computes
what an undisturbed one would, and every write is idempotent (same keys, same values).

Late posts refresh features but not alerts: the prices batches of the next minutes count
those posts in their 15- and 60-minute windows, so detection sees them a minute later.
Bars must reach one updater in time order (one prices consumer, `Supervisor`).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa

from sentinel_ray.detect.alerts import Episode, Key
from sentinel_ray.detect.run import DetectSummary, detect_batch
from sentinel_ray.pipeline.features_stream import FeatureUpdater
from sentinel_ray.records import utc_now
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import DeferredInserts, Warehouse


@dataclass
class SignalCounts:
    feature_rows: int = 0
    day_rows: int = 0
    refreshed_rows: int = 0
    detect: DetectSummary = field(default_factory=DetectSummary)


class SignalUpdater:
    def __init__(self, warehouse: Warehouse, lake: Lake | None, *, detected_by: str,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        # the batch's inserts run in the warehouse while this process computes; each call
        # waits for them before it returns, so a batch's signals are stored when it is acknowledged
        self.warehouse = DeferredInserts(warehouse)
        self.features = FeatureUpdater(self.warehouse, lake, clock=clock)
        self.detected_by = detected_by
        self.clock = clock
        self.episodes: dict[Key, Episode] | None = None  # None: load from the alerts table
        self.counts = SignalCounts()

    def reset(self) -> None:
        """Forget both states: the next batch rebuilds them from the warehouse (after a gap
        in the bars this updater saw, e.g. days a backfill skipped)."""
        self.features.state = None
        self.episodes = None

    def on_prices(self, valid: pa.Table, *, batch_key: str | None) -> pa.Table:
        """Features, risk and alerts of a stored prices batch; returns its features_1m rows."""
        try:
            f1m, f1d = self.features.on_prices(valid, batch_key=batch_key)
            self.episodes, detected = detect_batch(self.warehouse, f1m, self.episodes,
                                                   detected_by=self.detected_by, now=self.clock())
            self.warehouse.wait()
        except BaseException:
            self.reset()  # half-applied: rebuild both from stored rows on the next batch
            _wait_quietly(self.warehouse)
            raise
        self.counts.feature_rows += f1m.num_rows
        self.counts.day_rows += f1d.num_rows
        self.counts.detect.add(detected)
        return f1m

    def on_posts(self, valid: pa.Table, *, batch_key: str | None) -> None:
        try:
            f1m, _ = self.features.on_posts(valid, batch_key=batch_key)
            self.warehouse.wait()
        except BaseException:
            _wait_quietly(self.warehouse)
            raise
        self.counts.refreshed_rows += f1m.num_rows


def _wait_quietly(writes: DeferredInserts) -> None:
    """Wait for the inserts a failed batch started (none left if its wait was what failed),
    whatever they return: the batch's own error is the one raised."""
    try:
        writes.wait()
    except BaseException:  # noqa: BLE001, S110 - the first failure is the one raised
        pass
