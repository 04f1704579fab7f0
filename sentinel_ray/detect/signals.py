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

`recompute_sessions` runs the same updater over sessions whose stored rows changed after
their signals were computed (a replay from the raw zone; the sessions after a backfill's
days, whose baselines hold them): their bars read back from the warehouse in day order,
and the computed rows of bars no longer stored taken out.
"""
from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.detect.alerts import Episode, Key, events_table
from sentinel_ray.detect.run import DetectSummary, detect_batch
from sentinel_ray.market import as_utc, ist_date, ist_dates, ist_midnight_utc
from sentinel_ray.pipeline.features_store import read_bars
from sentinel_ray.pipeline.features_stream import FeatureUpdater
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import ALERT_EVENTS, ALERTS, FEATURES_1D, FEATURES_1M, PRICES, RISK_1M
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import DeferredInserts, Warehouse


@dataclass
class SignalCounts:
    feature_rows: int = 0
    day_rows: int = 0
    refreshed_rows: int = 0
    detect: DetectSummary = field(default_factory=DetectSummary)
    not_raised_again: list[str] = field(default_factory=list)  # recompute_sessions: alerts the rows no longer raise
    sessions: int = 0  # recompute_sessions: the sessions with stored bars it computed again


class SignalUpdater:
    def __init__(self, warehouse: Warehouse, lake: Lake | None, *, detected_by: str,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        # the batch's inserts run in the warehouse while this process computes; each call
        # waits for them before it returns, so a batch's signals are stored when it is
        # acknowledged. An alert is written once its features and risk are in (alerts are rare).
        self.warehouse = DeferredInserts(warehouse, last=(ALERTS.name, ALERT_EVENTS.name))
        self.features = FeatureUpdater(self.warehouse, lake, clock=clock)
        self.detected_by = detected_by
        self.clock = clock
        self.episodes: dict[Key, Episode] | None = None  # None: load from the alerts table
        self.counts = SignalCounts()
        self.last_detected = DetectSummary()  # the latest prices batch's (its alert ids)

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
        self.last_detected = detected
        return f1m

    def on_posts(self, valid: pa.Table, *, batch_key: str | None) -> None:
        try:
            f1m, _ = self.features.on_posts(valid, batch_key=batch_key)
            self.warehouse.wait()
        except BaseException:
            _wait_quietly(self.warehouse)
            raise
        self.counts.refreshed_rows += f1m.num_rows


RECOMPUTE_BLOCK_SESSIONS = 8  # sessions per read-back and signals call (as a backfill's blocks)
_T = "DateTime64(3, 'UTC')"
# the bars a computed row stands for, stored in [lo, hi): rows of any other key are stale
_STALE = {
    FEATURES_1M.name: ("ts", "(ticker, exchange, ts)", "ticker, exchange, ts"),
    RISK_1M.name: ("ts", "(ticker, exchange, ts)", "ticker, exchange, ts"),
    # a day row is stamped 00:00 IST of its session
    FEATURES_1D.name: ("day", "(ticker, exchange, day)",
                       "DISTINCT ticker, exchange, toDateTime64(toStartOfDay(ts, 'Asia/Kolkata'), 3, 'UTC')"),
}


def recompute_sessions(warehouse: Warehouse, lake: Lake | None, sessions: Iterable[dt.date], *,
                       detected_by: str, why: str, bars_removed_on: Iterable[dt.date] | None = None,
                       on_block: Callable[[pa.Table], None] | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       hold: Callable[[list[dt.date]], AbstractContextManager[None]] = lambda _block: nullcontext(),
                       ) -> SignalCounts:
    """Features, risk and alerts of these IST sessions computed again from their stored 1m
    bars, as a backfill computes them: in day order, blocks of consecutive sessions, each run
    of sessions continuing from the stored bars before it. First the computed rows of bars no
    longer stored (a replay removed them) are deleted. Sessions without stored bars are
    skipped. The caller names every session whose signals read the changed rows, later ones
    included (a bar is in the baselines of the 20 sessions after it: `ingest.replay.sessions_touched`).
    Alerts found again keep the analyst's state. An alert opened in these sessions that the
    rows no longer raise stays as the analyst left it (they may have acted on it), and its
    history gets an event saying so (`why`: what changed the rows, e.g. the replay's run):
    the counts' `not_raised_again`.
    `bars_removed_on`: the only days whose bars the caller may have removed (None: any), the
    only ones checked for stale rows; days after the newest stored bar are skipped but these
    and today.
    `on_block(bars)` after each block's signals are stored (the serving cache's risk),
    `progress(done, total)` after each block; `hold(block)` is entered around each block (a
    running platform's stream signals lock: the consumers wait, then rebuild their states)."""
    removed = None if bars_removed_on is None else set(bars_removed_on)
    days = _up_to_newest_bar(warehouse, sorted(set(sessions)), removed)
    signals = SignalUpdater(warehouse, lake, detected_by=detected_by)
    blocks = _consecutive_blocks(days, RECOMPUTE_BLOCK_SESSIONS)
    done, raised = 0, set()
    for block in blocks:
        with hold(block):
            newest = _recompute_block(warehouse, signals, block, days, raised, on_block,
                                      check_stale=removed is None or not removed.isdisjoint(block))
            _mark_not_raised_again(warehouse, block, newest, raised, signals.counts, detected_by, why)
        done += len(block)
        if progress is not None:
            progress(done, len(days))
    return signals.counts


def _up_to_newest_bar(warehouse: Warehouse, days: list[dt.date], removed: set[dt.date] | None) -> list[dt.date]:
    """`days` without those after the newest stored 1m bar among them (a reach into days not
    stored yet), keeping any whose bars may have been removed (their computed rows go) and
    today's (a live stream may store its first bars while the others are computed)."""
    if not days or removed is None:
        return days
    [row] = warehouse.query_rows(
        f"SELECT max(ts) AS newest, count() AS n FROM {{db}}.`{PRICES.name}` "
        f"WHERE `interval` = '1m' AND ts >= {{lo:{_T}}} AND ts < {{hi:{_T}}}",
        {"lo": ist_midnight_utc(days[0]), "hi": ist_midnight_utc(days[-1] + dt.timedelta(days=1))})
    last = ist_date(as_utc(row["newest"])) if row["n"] else days[0] - dt.timedelta(days=1)
    today = ist_date(utc_now())
    return [d for d in days if d <= last or d in removed or d == today]


def _recompute_block(warehouse: Warehouse, signals: SignalUpdater, block: list[dt.date], days: list[dt.date],
                     raised: set[str], on_block: Callable[[pa.Table], None] | None, *,
                     check_stale: bool) -> dt.datetime:
    """One block's signals again; `raised` gets the ids of the alerts they raised. Returns the
    newest bar read (the block's end when none): the block's alerts up to it are judged."""
    lo, hi = ist_midnight_utc(block[0]), ist_midnight_utc(block[-1] + dt.timedelta(days=1))
    if check_stale:
        stale = {table: (f"FROM {{db}}.`{table}` WHERE `{column}` >= {{lo:{_T}}} AND `{column}` < {{hi:{_T}}} "
                         f"AND {key} NOT IN (SELECT {bars_key} FROM {{db}}.`{PRICES.name}` FINAL "
                         f"WHERE `interval` = '1m' AND ts >= {{lo:{_T}}} AND ts < {{hi:{_T}}})")
                 for table, (column, key, bars_key) in _STALE.items()}
        # looked for first: a DELETE is a mutation that marks every part it reads, and most
        # blocks (a replay that changed bars but removed none) have nothing stale
        [found] = warehouse.query_rows(
            "SELECT " + ", ".join(f"(SELECT count() FROM (SELECT 1 {where} LIMIT 1)) AS `{table}`"
                                  for table, where in stale.items()), {"lo": lo, "hi": hi})
        for table, where in stale.items():
            if found[table]:
                warehouse.command(f"DELETE {where}", {"lo": lo, "hi": hi})
    if block[0] - dt.timedelta(days=1) not in days:
        signals.reset()  # the first, or after a gap: both states from the stored rows before it
    bars = read_bars(warehouse, lo, hi)
    if bars.num_rows == 0:
        return hi
    signals.on_prices(bars, batch_key=None)
    signals.counts.sessions += pc.count_distinct(ist_dates(bars.column("ts"))).as_py()
    raised |= signals.last_detected.raised
    if on_block is not None:
        on_block(bars)
    return pc.max(bars.column("ts")).as_py()


def _mark_not_raised_again(warehouse: Warehouse, block: list[dt.date], newest: dt.datetime, raised: set[str],
                           counts: SignalCounts, actor: str, why: str) -> None:
    """An event on each alert opened in the block (up to its newest bar read: a live stream may
    open later ones) that its signals did not raise again. The event is named by the alert's
    own version, so replaying the same days again writes the same event, not another."""
    rows = warehouse.query_rows(
        f"SELECT alert_id, state, disposition, updated_at FROM {{db}}.{ALERTS.name} FINAL "
        f"WHERE opened_at >= {{lo:{_T}}} AND opened_at <= {{newest:{_T}}} ORDER BY alert_id",
        {"lo": ist_midnight_utc(block[0]), "newest": newest})
    gone = [r for r in rows if r["alert_id"] not in raised]
    if gone:
        now = utc_now()
        warehouse.insert(ALERT_EVENTS.name, events_table(
            {"event_id": f"{r['alert_id']}/not-raised/{r['updated_at']:%Y%m%dT%H%M%S.%f}", "alert_id": r["alert_id"],
             "at": now, "actor": actor, "action": "not_raised_again", "from_state": r["state"],
             "to_state": r["state"], "disposition": r["disposition"],
             "note": f"its bars' signals, computed again, no longer raise it{': ' + why if why else ''}; "
                     f"kept as it was"} for r in gone))
        counts.not_raised_again += [r["alert_id"] for r in gone]


def _consecutive_blocks(days: list[dt.date], size: int) -> list[list[dt.date]]:
    """Sorted days in blocks of at most `size` consecutive days."""
    blocks: list[list[dt.date]] = []
    for day in days:
        if blocks and len(blocks[-1]) < size and blocks[-1][-1] + dt.timedelta(days=1) == day:
            blocks[-1].append(day)
        else:
            blocks.append([day])
    return blocks


def _wait_quietly(writes: DeferredInserts) -> None:
    """Wait for the inserts a failed batch started (none left if its wait was what failed),
    whatever they return: the batch's own error is the one raised."""
    try:
        writes.wait()
    except BaseException:  # noqa: BLE001, S110 - the first failure is the one raised
        pass
