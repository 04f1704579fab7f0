"""The backfill driver: history through the pipeline on Ray Data, then its signals.

One Ray Data row per UTC day of the range, a few days per block. `map_batches` runs the
blocks as tasks on the job's workers (`ingest/backfill_days.py`: per day, fetch from the
source, keep the raw payloads, run the pipeline functions and write lake and warehouse;
one insert per table per block). Each day's files and rows are keyed by `<source>-<day>`,
so running the same range again replaces instead of adding. A block hands its valid 1m
bars back with its summary.

The driver takes the blocks in day order. For each it runs the signals the stream runs
per micro-batch (`detect.signals.SignalUpdater`: features from the block's bars and the
stored posts, then risk and alerts), while the workers go on with the next days; then
it records the block's days in `backfill_days` and prints progress. A re-run skips the
days already finished (resume) unless `force`.

Last, the sessions after its days whose baselines hold them (the 20 after each, up to
today: a gap filled in older history, or a running platform's live session) that hold
stored bars get their signals computed again (`detect.signals.recompute_sessions`, holding
the stream's signals lock per block), so no stored feature is of baselines without them.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.config import Settings
from sentinel_ray.detect.signals import SignalUpdater, recompute_sessions
from sentinel_ray.ingest.backfill_days import month_starts, months_of, store_days, warm_up
from sentinel_ray.ingest.serving import serving_for
from sentinel_ray.market import ist_date
from sentinel_ray.monitoring.lineage_events import LineageDataset, LineageEmitter
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.features import sessions_reading
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import BACKFILL_DAYS, DATA_DATASETS, FEATURES_1D, FEATURES_1M, RISK_1M, TIMESTAMP_TYPE
from sentinel_ray.sources import make_history_source
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import Warehouse, connect_warehouse

MAX_BACKFILL_DAYS = 3660
MAX_DAYS_PER_BLOCK = 8  # a block's rows stay small (~20k a day), progress stays frequent


class BackfillError(ValueError):
    pass


@dataclass
class BackfillSummary:
    run_id: str
    source: str
    start: dt.date
    end: dt.date
    days: int
    seconds: float
    skipped: int = 0  # days of the range already finished by an earlier run, not redone
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_valid: dict[str, int] = field(default_factory=dict)
    rows_quarantined: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    feature_rows: int = 0  # features_1m rows computed for the range
    alerts_opened: int = 0
    later_sessions: int = 0  # sessions after its days (with bars, not its own) whose signals were computed again
    alerts_not_raised_again: list[str] = field(default_factory=list)  # opened in those, no longer raised

    @property
    def total_in(self) -> int:
        return sum(self.rows_in.values())

    @property
    def total_valid(self) -> int:
        return sum(self.rows_valid.values())

    @property
    def total_quarantined(self) -> int:
        return sum(self.rows_quarantined.values())

    def render(self) -> str:
        skipped = f", {self.skipped} already done, skipped" if self.skipped else ""
        lines = [f"backfill {self.run_id}: source={self.source} {self.start}..{self.end} ({self.days} days{skipped}) "
                 f"in {self.seconds:.1f}s"]
        for name in sorted(self.rows_in):
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.get(name, {}).items())) or "none"
            lines.append(f"  {name:<8} rows in {self.rows_in[name]:>9,}  valid {self.rows_valid[name]:>9,}  "
                         f"quarantined {self.rows_quarantined[name]:>7,}  ({reasons})")
        rate = self.total_in / self.seconds if self.seconds else 0.0
        lines.append(f"  total    rows in {self.total_in:>9,}  valid {self.total_valid:>9,}  "
                     f"quarantined {self.total_quarantined:>7,}  {rate:,.0f} rows/s")
        lines.append(f"  signals  features_1m rows {self.feature_rows:,}  alerts opened {self.alerts_opened:,}")
        if self.later_sessions:
            lines.append(f"  later    signals of {self.later_sessions} later session(s) computed again "
                         f"(their baselines hold the days stored)")
        if self.alerts_not_raised_again:
            lines.append(f"  no longer raised by those sessions' rows (kept as they were, an event says so): "
                         f"{', '.join(self.alerts_not_raised_again)}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "source": self.source, "start": str(self.start), "end": str(self.end),
                "days": self.days, "skipped": self.skipped, "seconds": round(self.seconds, 3), "rows_in": self.rows_in,
                "rows_valid": self.rows_valid, "rows_quarantined": self.rows_quarantined, "reasons": self.reasons,
                "feature_rows": self.feature_rows, "alerts_opened": self.alerts_opened,
                "later_sessions": self.later_sessions, "alerts_not_raised_again": self.alerts_not_raised_again}


@dataclass(frozen=True)
class Progress:
    """Where a running backfill is, after each block of days it finished."""

    days_done: int
    days_total: int
    rows: int
    seconds: float
    # where the first report was: the ETA goes at the pace since then, not since the start,
    # which includes the job's start-up (new worker processes, the first block: seconds)
    first_days: int = 0
    first_seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_s(self) -> float:
        left = self.days_total - self.days_done
        if self.first_days and self.days_done > self.first_days:
            return (self.seconds - self.first_seconds) / (self.days_done - self.first_days) * left
        return self.seconds / self.days_done * left if self.days_done else float("nan")

    def render(self) -> str:
        return (f"  {self.days_done}/{self.days_total} days  {self.rows:,} rows  {self.rows_per_s:,.0f} rows/s  "
                f"ETA {self.eta_s:.0f}s")


def tune_ray_data(workers: int) -> None:
    """Let Ray Data run `workers` map tasks at once from the start.

    Ray Data reserves part of the cluster per operator and ramps concurrency up only as
    task outputs are measured; on a 2-core machine with a single map operator that kept
    one task running at a time (measured in bench/pipeline_throughput.py: 1.5 -> 2.2M rows/s).
    Its progress bars are off: the driver prints days, rows/s and ETA itself. Blocks are
    returned in order (the signals need the days in order; a worker that finishes early
    only waits for the driver, which is busy with the block before).
    """
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.op_resource_reservation_enabled = False
    # blocks come back in day order: the driver's signals carry state from day to day
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # nor its notes that they are off and that the dataset finished: the driver's progress
    # and summary say that (its errors still raise here)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    logging.getLogger("ray.data._internal.execution.streaming_executor").setLevel(logging.WARNING)


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise BackfillError(f"end {end} is before start {start}")
    days = (end - start).days + 1
    if days > MAX_BACKFILL_DAYS:
        raise BackfillError(f"{days} days is more than one backfill takes ({MAX_BACKFILL_DAYS}); split the range")
    return [start + dt.timedelta(days=i) for i in range(days)]


def _bars_of(block: list[dict[str, Any]]) -> pa.Table | None:
    tables = [pa.ipc.open_stream(r["bars"]).read_all() for r in block if r["bars"]]
    return pa.concat_tables(tables) if tables else None


def finished_days(warehouse: Warehouse, source_name: str, start: dt.date, end: dt.date) -> set[dt.date]:
    """Days of [start, end] a backfill of `source_name` already finished (`backfill_days`)."""
    rows = warehouse.query_rows(
        "SELECT DISTINCT toDate(day) AS d FROM {db}.backfill_days FINAL "
        "WHERE source = {source:String} AND day >= {start:DateTime64(3, 'UTC')} AND day < {end:DateTime64(3, 'UTC')}",
        {"source": source_name, "start": _midnight(start), "end": _midnight(end + dt.timedelta(days=1))})
    return {r["d"] for r in rows}


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def run_backfill(settings: Settings, source_name: str, start: dt.date, end: dt.date, *, force: bool = False,
                 progress: Callable[[Progress], None] | None = None) -> BackfillSummary:
    """Backfill [start, end] from a source. Ray must be initialised (see runtime.init_ray).

    Days an earlier backfill of this source finished are skipped unless `force`; so a
    run that was interrupted, started again, does only the days it had not finished.
    `progress` is called in the driver after each block of days is stored (it may
    raise to stop the run: the days finished so far stay finished).
    """
    all_days = date_range(start, end)
    make_history_source(source_name, settings)  # fail fast on an unknown source or bad rules, before any work
    _warm_workers(len(all_days))  # their imports run while the driver reads the runs table below
    rules = rules_for(settings)
    warehouse = connect_warehouse(settings)
    warehouse.ensure_schema()
    done = set() if force else finished_days(warehouse, source_name, start, end)
    days = [d for d in all_days if d not in done]
    run = PipelineRun("backfill", {"source": source_name, "start": str(start), "end": str(end),
                                   "rules_version": rules.version,
                                   **({"force": True} if force else {}), **({"skipped": len(done)} if done else {})})
    run.record(warehouse)
    emitter = LineageEmitter(settings, warehouse)
    event = None
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    computed: dict[str, set[int]] = {}
    first: tuple[int, float] | None = None  # (days, seconds) at the first progress report
    try:  # from here a failure marks the run failed (not left "running")
        event = emitter.start(run.run_id, job="backfill", params=run.params, **_lineage_io(source_name))
        lake = Lake(settings.resolved_lake_uri)
        signals = SignalUpdater(warehouse, lake, detected_by="backfill")
        later = None
        serving = serving_for(settings, warehouse)
        if days:
            checked, prior = _months_with_rows(warehouse, source_name, days)
            previous: dt.date | None = None
            last_block: list[dict[str, Any]] = []
            for block in _run_days(settings, source_name, days, run.run_id):
                block_days = sorted({dt.date.fromisoformat(str(r["day"])) for r in block})
                if previous is None or _skipped_between(all_days, done, previous, block_days[0]):
                    signals.reset()  # days in between came from an earlier run: states from the warehouse
                bars = _bars_of(block)
                if bars is not None:
                    serving.on_prices(bars, batch_key=f"{run.run_id}-{block_days[0]}")
                    for name, months in _computed_months(signals.on_prices(bars, batch_key=None)).items():
                        computed.setdefault(name, set()).update(months)
                    serving.on_signals(bars)
                serving.on_stored()  # the block's posts and filings too
                previous = block_days[-1]
                # kept for the summary and the merge, without the bars: the signals are done
                # with them, and a long range would hold every day's (memory growing with it)
                rows.extend({k: v for k, v in r.items() if k != "bars"} for r in block)
                if block_days[-1] != days[-1]:  # signals included
                    _record_finished(warehouse, source_name, run.run_id, block)
                else:  # recorded once the later sessions' signals are done too (below): a run
                    last_block = block  # stopped before that redoes these days, and with them those sessions
                run.rows_in, run.rows_valid, run.rows_quarantined = (
                    sum(int(r[k]) for r in rows) for k in ("rows_in", "rows_valid", "rows_quarantined"))
                run.heartbeat(warehouse)  # alive, and how far (at most once a minute)
                if progress is not None:
                    finished, elapsed = len({r["day"] for r in rows}), time.perf_counter() - began
                    first = first or (finished, elapsed)
                    progress(Progress(finished, len(days), run.rows_in, elapsed, *first))
            _merge_replaced_rows(warehouse, rows, computed, checked, prior)
            # the stored sessions after its days: their baselines hold them
            computed_days = set(days)
            sessions = [d for d in sessions_reading(days, ist_date(utc_now())) if d not in computed_days]
            later = recompute_sessions(warehouse, lake, sessions, detected_by="backfill",
                                       why=f"backfill {run.run_id} of {source_name} {start}..{end} (their "
                                           f"baselines hold its days)", bars_removed_on=(),
                                       on_block=serving.on_signals,
                                       progress=lambda _done, _total: run.heartbeat(warehouse),
                                       hold=serving.stream_signals_held)
            if last_block:
                _record_finished(warehouse, source_name, run.run_id, last_block)
            serving.on_history(days[-1])  # live consumers rebuild states that may lack these days
    except BaseException as e:
        run.fail_quietly(warehouse, e)
        if event is not None:
            event.fail(e)
        emitter.close()
        raise
    summary = _summarise(rows, run.run_id, source_name, start, end, len(days), time.perf_counter() - began)
    summary.skipped = len(done)
    summary.feature_rows = signals.counts.feature_rows
    summary.alerts_opened = signals.counts.detect.alerts_opened
    if later is not None:
        summary.later_sessions, summary.alerts_not_raised_again = later.sessions, later.not_raised_again
    run.rows_in, run.rows_valid, run.rows_quarantined = (
        summary.total_in, summary.total_valid, summary.total_quarantined)
    run.finish(warehouse)
    event.complete({**{name: summary.rows_valid.get(name, 0) for name in DATA_DATASETS},
                    FEATURES_1M.name: summary.feature_rows})
    emitter.close()
    return summary


def _lineage_io(source_name: str) -> dict[str, list[LineageDataset]]:
    """What a backfill reads (the source's raw zone) and writes (the data tables and their
    curated files, the features and risk computed from them)."""
    data = [*DATA_DATASETS]
    return {"inputs": [LineageDataset.lake(f"raw/source={source_name}")],
            "outputs": [*(LineageDataset.warehouse(name) for name in data),
                        *(LineageDataset.lake(f"curated/dataset={name}", schema=name) for name in data),
                        LineageDataset.warehouse(FEATURES_1M.name), LineageDataset.warehouse(RISK_1M.name)]}


def _skipped_between(all_days: list[dt.date], done: set[dt.date], previous: dt.date, first: dt.date) -> bool:
    """Whether a day between two blocks was finished by an earlier run (not seen by this one)."""
    return any(previous < d < first and d in done for d in all_days)


def _plan(days: int) -> tuple[int, int, int]:
    """(days per block, blocks, concurrent tasks) for `days` days on this cluster's CPUs."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # Up to MAX_DAYS_PER_BLOCK days a block, at least two blocks a worker (so they overlap the
    # driver's signals). Larger blocks mean fewer, larger warehouse inserts (fewer parts to
    # merge) and fewer signal rounds: a month on 2 cores in 8-day blocks spent 7.8-8.9 core-s
    # against 8.9-11.4 in 4-day ones (6 runs each, bench/backfill_e2e.py's job), ~10% faster.
    per_block = max(1, min(MAX_DAYS_PER_BLOCK, -(-days // (cpus * 2))))
    blocks = -(-days // per_block)
    return per_block, blocks, max(1, min(cpus, blocks))


def _warm_workers(days: int) -> None:
    """Start one task per worker the days will use, doing nothing but import what storing
    days needs. A job's first tasks start new worker processes that import Ray Data, pyarrow,
    pandas and the pipeline before the first block (~2 s of CPU each here, measured in
    bench/backfill_e2e.py); started now, that runs while the driver checks the schema and
    reads the runs table, and Ray gives the blocks the same, idle, workers."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(warm_up)
    for _ in range(_plan(days)[2]):
        task.remote()  # not awaited: a dropped reference does not cancel the task


def _run_days(settings: Settings, source_name: str, days: list[dt.date], run_id: str) -> Iterable[list[dict[str, Any]]]:
    """The days through Ray Data tasks (`store_days`); yields each block's summary rows as it finishes."""
    import ray

    per_block, blocks, workers = _plan(len(days))
    tune_ray_data(workers)
    data = (
        ray.data.from_items([{"day": d.isoformat()} for d in days], override_num_blocks=blocks)
        .map_batches(store_days, batch_size=per_block, batch_format="numpy",
                     compute=ray.data.TaskPoolStrategy(size=workers), num_cpus=1,
                     fn_kwargs={"settings": settings, "source_name": source_name, "run_id": run_id,
                                "now": utc_now()})
    )
    # No prefetch: with one block prefetched, the iterator handed a block over only once the
    # next one was also done; the first block reached the driver ~0.4 s later (timed: its task
    # ended at 0.5 s, the driver had it at 1.0-1.1 s against 0.7 s without). The driver's signals
    # are slower than the workers after that, so a prefetched block never saved a wait.
    for batch in data.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        yield batch.to_pylist()


def _record_finished(warehouse: Warehouse, source_name: str, run_id: str, block: list[dict[str, Any]]) -> None:
    per_day: dict[str, list[int]] = {}
    for row in block:
        counts = per_day.setdefault(str(row["day"]), [0, 0, 0])
        counts[0] += int(row["rows_in"])
        counts[1] += int(row["rows_valid"])
        counts[2] += int(row["rows_quarantined"])
    if not per_day:
        return
    now = utc_now()
    table = pa.table({
        "source": [source_name] * len(per_day),
        "day": pa.array([_midnight(dt.date.fromisoformat(d)) for d in per_day], TIMESTAMP_TYPE),
        "run_id": [run_id] * len(per_day),
        "rows_in": [c[0] for c in per_day.values()],
        "rows_valid": [c[1] for c in per_day.values()],
        "rows_quarantined": [c[2] for c in per_day.values()],
        "finished_at": pa.array([now] * len(per_day), TIMESTAMP_TYPE),
    }, schema=BACKFILL_DAYS.arrow_schema)
    warehouse.insert(BACKFILL_DAYS.name, table)


# Tables the signals write for a backfill's days (any source's bars feed them).
COMPUTED = (FEATURES_1M, FEATURES_1D, RISK_1M)


def _months_with_rows(warehouse: Warehouse, source_name: str,
                      days: list[dt.date]) -> tuple[set[int], dict[str, set[int]]]:
    """(months checked, per table the checked months that already hold rows: of this
    source for the data tables, any for the computed ones): the only ones a re-insert can
    have doubled, and so need a merge. Checked: the months of `days` and of the day before
    and after them."""
    lo = (days[0] - dt.timedelta(days=1)).replace(day=1)
    hi = ((days[-1] + dt.timedelta(days=1)).replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    checked = {m.year * 100 + m.month for m in month_starts(lo, hi - dt.timedelta(days=1))}
    prior: dict[str, set[int]] = {}
    tables = [(ds, True) for ds in DATA_DATASETS.values()] + [(ds, False) for ds in COMPUTED]
    for ds, by_source in tables:
        found = warehouse.query_rows(
            f"SELECT DISTINCT toYYYYMM(`{ds.time_column}`) AS m FROM {{db}}.`{ds.name}` "
            f"WHERE `{ds.time_column}` >= {{lo:DateTime64(3, 'UTC')}} AND `{ds.time_column}` < {{hi:DateTime64(3, 'UTC')}}"
            + (" AND source = {source:String}" if by_source else ""),
            {"lo": _midnight(lo), "hi": _midnight(hi), "source": source_name})
        prior[ds.name] = {int(r["m"]) for r in found}
    return checked, prior


def _computed_months(f1m: pa.Table) -> dict[str, set[int]]:
    """Months of the rows the signals wrote for these features_1m rows: risk_1m shares
    their `ts`; a features_1d row is stamped 00:00 IST of its session, 18:30 UTC the day before."""
    bar_months = set(months_of(f1m.column("ts")))
    day_stamps = pc.subtract(f1m.column("ts"), pa.scalar(dt.timedelta(hours=24), pa.duration("ms")))
    return {FEATURES_1M.name: bar_months, RISK_1M.name: bar_months,
            FEATURES_1D.name: bar_months | set(months_of(day_stamps))}


def _merge_replaced_rows(warehouse: Warehouse, rows: list[dict[str, Any]], computed: dict[str, set[int]],
                         checked: set[int], prior: dict[str, set[int]]) -> None:
    """Merge the months this backfill wrote that held rows before it, so rows it replaced
    are gone on disk too, not only under FINAL. A first load of a range merges nothing
    (there is nothing to replace); a re-run merges only the months it touched. Month ids
    are computed here, never taken from input."""
    touched: dict[str, set[int]] = {name: set(months) for name, months in computed.items()}
    for row in rows:
        touched.setdefault(str(row["dataset"]), set()).update(int(m) for m in json.loads(str(row["months"])))
    for name, months in touched.items():
        for month in sorted(months):
            if month in prior.get(name, set()) or month not in checked:
                warehouse.command(f"OPTIMIZE TABLE {{db}}.`{name}` PARTITION ID '{month:d}' FINAL")


def _summarise(rows: list[dict[str, Any]], run_id: str, source: str, start: dt.date, end: dt.date,
               days: int, seconds: float) -> BackfillSummary:
    summary = BackfillSummary(run_id, source, start, end, days, seconds)
    reasons: dict[str, Counter[str]] = {}
    for row in rows:
        name = str(row["dataset"])
        summary.rows_in[name] = summary.rows_in.get(name, 0) + int(row["rows_in"])
        summary.rows_valid[name] = summary.rows_valid.get(name, 0) + int(row["rows_valid"])
        summary.rows_quarantined[name] = summary.rows_quarantined.get(name, 0) + int(row["rows_quarantined"])
        reasons.setdefault(name, Counter()).update(json.loads(str(row["reasons"])))
    summary.reasons = {k: dict(v) for k, v in reasons.items()}
    return summary
