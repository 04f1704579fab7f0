"""Replay from the raw zone: re-read kept payloads through today's parsing and pipeline, and
replace what those payloads produced, exactly once.

    replay_raw(settings, source="replay", dataset="prices", start=..., end=...)

1. The payloads `source` kept for `dataset` under the raw-zone dates [start, end]
   (`Lake.raw_ids`) are read again by the source's parser (`sources.parser_for`: the function
   its polls use, so a parser change shows here) or, for a pushed body, by the webhook's
   intake; each record is stamped with its payload's raw-zone id and place.
2. The records go through `process_batch` with today's rules.
3. What those payloads produced before (every row whose `raw_id` is one of them) is replaced:
   in the warehouse the old rows are deleted and the new ones inserted; in the lake each
   curated or quarantine file holding old rows is rewritten without them, and the new rows
   land in files named by the replay (`replay-<source>-<dataset>-<start>-<end>`). Rows today's
   rules reject go to quarantine.
4. A report says rows added, changed and removed (by natural key, values compared without
   the lineage columns) and how many were quarantined.

Running it twice gives the same rows: the second run finds its own rows by the same raw ids,
takes them out, and writes the same files again. A run is a pipeline run (`pipeline_runs`,
with the rules version) and an OpenLineage run.
5. Unless `signals=False`, the signals of the IST sessions the old and new rows reach
   (`sessions_touched`: prices their bars' sessions and the 20 sessions whose baselines hold
   them; posts the POST_DAYS and the 20 sessions after them; filings the FILING_LOOKBACK after
   them; none after the newest stored bar) are computed again
   from the stored rows (`detect.signals.recompute_sessions`): features, risk and alerts
   as a backfill computes them, and the computed rows of bars the replay removed deleted.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.config import Settings
from sentinel_ray.detect.run import FILING_LOOKBACK
from sentinel_ray.detect.signals import recompute_sessions
from sentinel_ray.ingest.lineage import stamp_raw_ids
from sentinel_ray.ingest.serving import serving_for
from sentinel_ray.ingest.webhook import IntakeError, parse_body, records_table
from sentinel_ray.market import ist_date, ist_dates
from sentinel_ray.monitoring.lineage_events import LineageDataset, LineageEmitter
from sentinel_ray.monitoring.runs import PipelineRun
from sentinel_ray.pipeline.features import POST_DAYS, sessions_reading
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import RAW_ID, RawPayload, utc_now
from sentinel_ray.schemas import DATA_DATASETS, FILINGS, INGEST_FIELDS, POSTS, PRICES, TIMESTAMP_TYPE, Dataset
from sentinel_ray.sources import parser_for
from sentinel_ray.sources.parsing import UnreadablePayload
from sentinel_ray.storage.lake import Lake, partition_day
from sentinel_ray.storage.warehouse import Warehouse, connect_warehouse

log = logging.getLogger(__name__)
_DAY = dt.timedelta(days=1)
MAX_REPLAY_DAYS = 366
INGEST_COLUMNS = frozenset(f.name for f in INGEST_FIELDS)  # who wrote a row and when: not what a replay compares
WEBHOOK_REQUEST = "POST /ingest/"


class ReplayError(ValueError):
    pass


@dataclass
class ReplayReport:
    run_id: str
    source: str
    dataset: str
    start: dt.date
    end: dt.date
    payloads: int = 0
    unreadable_payloads: int = 0
    rows_before: int = 0  # rows those payloads had produced (warehouse)
    rows_in: int = 0  # records read again
    rows_valid: int = 0
    rows_quarantined: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    files_rewritten: int = 0
    signal_sessions: int = 0  # IST sessions whose features, risk and alerts were computed again
    feature_rows: int = 0
    alerts_opened: int = 0
    alerts_not_raised_again: list[str] = field(default_factory=list)  # opened in those sessions, no longer raised
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start": str(self.start), "end": str(self.end)}

    def render(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())) or "none"
        return (f"replay {self.run_id}: {self.source}/{self.dataset} {self.start}..{self.end}: "
                f"{self.payloads} payloads ({self.unreadable_payloads} unreadable), {self.rows_in:,} records read\n"
                f"  rows before {self.rows_before:,}  after {self.rows_valid:,}  quarantined {self.rows_quarantined:,} "
                f"({reasons})\n"
                f"  added {self.added:,}  changed {self.changed:,}  removed {self.removed:,}  "
                f"lake files rewritten {self.files_rewritten}  in {self.seconds:.1f}s\n"
                f"  signals of {self.signal_sessions} session(s) computed again: {self.feature_rows:,} feature rows, "
                f"{self.alerts_opened} alert(s) opened"
                + (f"\n  no longer raised by the rows (kept as they were, an event says so): "
                   f"{', '.join(self.alerts_not_raised_again)}" if self.alerts_not_raised_again else ""))


def replay_raw(settings: Settings, *, source: str, dataset: str, start: dt.date, end: dt.date,
               read: Callable[[Lake, list[str]], tuple[pa.Table, int]] | None = None,
               progress: Callable[[str], None] | None = None, signals: bool = True) -> ReplayReport:
    """Replay `source`'s kept `dataset` payloads of [start, end] (see the module doc).
    `read(lake, raw_ids)` reads the payloads into one record table (default: in this process;
    the job passes a parallel reader). `signals=False` leaves features, risk and alerts as
    they were."""
    if dataset not in DATA_DATASETS:
        raise ReplayError(f"unknown dataset {dataset!r}: one of {', '.join(DATA_DATASETS)}")
    if end < start:
        raise ReplayError(f"end {end} is before start {start}")
    if (end - start).days + 1 > MAX_REPLAY_DAYS:
        raise ReplayError(f"at most {MAX_REPLAY_DAYS} days per replay; split the range")
    ds = DATA_DATASETS[dataset]
    lake, warehouse = Lake(settings.resolved_lake_uri), connect_warehouse(settings)
    warehouse.ensure_schema()
    rules = rules_for(settings)
    began = time.perf_counter()
    ids = lake.raw_ids(source, dataset, start, end)
    run = PipelineRun("replay", {"source": source, "dataset": dataset, "start": str(start), "end": str(end),
                                 "payloads": len(ids), "rules_version": rules.version})
    run.record(warehouse)
    emitter = LineageEmitter(settings, warehouse)
    event = None
    report = ReplayReport(run.run_id, source, dataset, start, end, payloads=len(ids))
    try:  # from here a failure marks the run failed (not left "running")
        event = emitter.start(run.run_id, job="replay", params=run.params,
                              inputs=[LineageDataset.lake(f"raw/source={source}/dataset={dataset}")],
                              outputs=[LineageDataset.warehouse(dataset),
                                       LineageDataset.lake(f"curated/dataset={dataset}", schema=dataset)])
        say = progress or (lambda _: None)
        say(f"reading {len(ids)} payloads of {source}/{dataset} {start}..{end}")
        records, report.unreadable_payloads = (read or read_payloads)(lake, ids)
        run.heartbeat(warehouse)  # alive (at most once a minute): reading a year of payloads takes a while
        now = utc_now()
        result = process_batch(records, ds, now=now, run_id=run.run_id, ingested_at=None, rules=rules)
        report.rows_in, report.rows_valid, report.rows_quarantined = (
            result.rows_in, result.rows_valid, result.rows_quarantined)
        report.reasons = result.reason_counts()
        old = _rows_of(warehouse, ds, ids)
        report.rows_before = old.num_rows
        report.added, report.changed, report.removed = _differences(ds, old, result.valid)
        say(f"replacing {old.num_rows:,} rows with {result.rows_valid:,} (+{report.added} ~{report.changed} "
            f"-{report.removed})")
        report.files_rewritten = _replace(lake, warehouse, ds, source, ids, old, result.valid, result.quarantined,
                                          days=(start, end),
                                          batch_key=f"replay-{source}-{dataset}-{start}-{end}", day=start)
        serving = serving_for(settings, warehouse)
        if ds.name == PRICES.name:  # the roll-ups and cache of the bars before and after
            touched = ["ticker", "exchange", "interval", "ts"]
            serving.on_prices(pa.concat_tables([old.select(touched).cast(result.valid.select(touched).schema),
                                                result.valid.select(touched)]), batch_key=run.run_id)
        sessions = sessions_touched(ds, old, result.valid) if signals else []
        if sessions:
            say(f"computing the signals of {sessions[0]}..{sessions[-1]} again (the sessions with stored bars)")
            counts = recompute_sessions(warehouse, lake, sessions, detected_by="replay",
                                        why=f"replay {run.run_id} of {source}/{dataset} {start}..{end}",
                                        bars_removed_on=_bars_maybe_removed(old, start, end)
                                        if ds.name == PRICES.name else (),
                                        on_block=serving.on_signals,
                                        progress=lambda _done, _total: run.heartbeat(warehouse),
                                        hold=serving.stream_signals_held)
            report.signal_sessions = counts.sessions
            report.feature_rows, report.alerts_opened = counts.feature_rows, counts.detect.alerts_opened
            report.alerts_not_raised_again = counts.not_raised_again
            if ds.name == PRICES.name and old.num_rows:  # the cached risk of tickers whose bars all went
                serving.on_signals(old.select(["ticker", "exchange", "ts"]))
        serving.on_stored()
    except BaseException as e:
        run.fail_quietly(warehouse, e)
        if event is not None:
            event.fail(e)
        emitter.close()
        raise
    report.seconds = time.perf_counter() - began
    run.rows_in, run.rows_valid, run.rows_quarantined = report.rows_in, report.rows_valid, report.rows_quarantined
    run.finish(warehouse)
    event.complete({dataset: report.rows_valid})
    emitter.close()
    return report


# how far past a row's time the signals that read it reach, in calendar time: a post the
# bars whose posts baseline (POST_DAYS) holds it; a filing the filing check's lookback. In
# sessions (`sessions_reading`): a 1m bar, and a post (the day rows' posts baseline).
_SIGNAL_REACH = {POSTS.name: dt.timedelta(days=POST_DAYS), FILINGS.name: FILING_LOOKBACK}
_SESSION_REACH = frozenset({PRICES.name, POSTS.name})


def sessions_touched(ds: Dataset, old: pa.Table, new: pa.Table) -> list[dt.date]:
    """The IST days (up to today) whose signals read these rows, before or after a replay:
    a 1m bar's session and the WINDOW_SESSIONS sessions after it (their volume and daily
    baselines hold it); a post's day, the POST_DAYS after it (its 60-minute windows, and the
    posts baseline of the z-scores) and the WINDOW_SESSIONS sessions after it (the day rows'
    posts baseline); a filing's and the FILING_LOOKBACK after it (an alert's filing check
    looks that far back). Every day between is named (days without bars are skipped by the
    recompute, and runs of consecutive days keep its blocks long)."""
    if ds.name not in _SESSION_REACH and ds.name not in _SIGNAL_REACH:
        return []
    today = ist_date(utc_now())
    days: set[dt.date] = set()
    for table in (old, new):
        if ds.name == PRICES.name and table.num_rows:
            table = table.filter(pc.equal(table.column("interval"), "1m"))
        if table.num_rows == 0:
            continue
        ts = pc.cast(table.column(ds.time_column), TIMESTAMP_TYPE).drop_null()
        if ds.name in _SESSION_REACH:
            days.update(sessions_reading(pc.unique(ist_dates(ts)).to_pylist(), today))
        if ds.name in _SIGNAL_REACH:
            reach = pa.table({"first": ist_dates(ts),
                              "last": ist_dates(pc.add(ts, pa.scalar(_SIGNAL_REACH[ds.name])))})
            reach = reach.group_by(["first", "last"]).aggregate([])
            for first, last in zip(reach.column("first").to_pylist(), reach.column("last").to_pylist()):
                days.update(first + k * _DAY for k in range((min(last, today) - first).days + 1))
    return sorted(days)


def _bars_maybe_removed(old: pa.Table, start: dt.date, end: dt.date) -> list[dt.date]:
    """The IST sessions whose bars a prices replay may have removed: those of the rows it
    replaced, and every day of its range and the next (a payload's bars can fall on the IST
    day after its raw-zone date), for a run that replaced rows and stopped before the rest."""
    days = {start + k * _DAY for k in range((end - start).days + 2)}
    if old.num_rows:
        bars = old.filter(pc.equal(old.column("interval"), "1m"))
        days.update(pc.unique(ist_dates(pc.cast(bars.column("ts"), TIMESTAMP_TYPE).drop_null())).to_pylist())
    return sorted(days)


def read_payloads(lake: Lake, raw_ids: list[str]) -> tuple[pa.Table, int]:
    """The records of the kept payloads (one dataset's), each stamped with its payload's
    raw-zone id; and how many payloads could not be read at all."""
    tables, unreadable = [], 0
    for raw_id in raw_ids:
        payload = lake.read_raw(raw_id)
        try:
            records = parse_kept(payload)
        except (UnreadablePayload, IntakeError) as e:
            log.warning("replay: %s cannot be read (%s); skipped", raw_id, e)
            unreadable += 1
            continue
        table = records.get(payload.dataset)
        if table is not None and table.num_rows:
            tables.append(stamp_raw_ids({payload.dataset: table}, {payload.payload_id: raw_id})[payload.dataset])
    if not tables:
        return pa.table({}), unreadable
    return pa.concat_tables(tables, promote_options="permissive"), unreadable


def read_payloads_on_ray(settings: Settings, raw_ids: list[str]) -> tuple[pa.Table, int]:
    """`read_payloads` in Ray tasks, a few chunks per CPU (parsing is what a large replay spends
    its time on); the tables come back as Arrow through the object store."""
    import ray

    if len(raw_ids) < 8:
        return read_payloads(Lake(settings.resolved_lake_uri), raw_ids)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, -(-len(raw_ids) // (cpus * 4)))
    task = ray.remote(num_cpus=1)(_read_chunk)
    parts = ray.get([task.remote(settings, raw_ids[i:i + size]) for i in range(0, len(raw_ids), size)])
    tables = [t for t, _ in parts if t.num_rows]
    unreadable = sum(n for _, n in parts)
    return (pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})), unreadable


def _read_chunk(settings: Settings, raw_ids: list[str]) -> tuple[pa.Table, int]:
    return read_payloads(Lake(settings.resolved_lake_uri), raw_ids)


def parse_kept(payload: RawPayload) -> dict[str, pa.Table]:
    """A kept payload's records: a pushed body through the webhook's intake, anything else
    through its source's parser."""
    if payload.request.startswith(WEBHOOK_REQUEST):
        source, records = parse_body(payload.body)
        table = records_table(payload.dataset, source, records, payload.received_at)
        positions = pa.array(range(table.num_rows), pa.int64())
        table = table.set_column(table.schema.get_field_index(RAW_ID), RAW_ID,
                                 pa.repeat(pa.scalar(payload.payload_id), table.num_rows))
        return {payload.dataset: table.set_column(table.schema.get_field_index("raw_pos"), "raw_pos", positions)}
    return parser_for(payload.source)(payload)


def _rows_of(warehouse: Warehouse, ds: Dataset, ids: list[str]) -> pa.Table:
    if not ids:
        return ds.arrow_schema.empty_table()
    cols = ", ".join(f"`{c}`" for c in ds.column_names)
    table = warehouse.query_arrow(f"SELECT {cols} FROM {{db}}.`{ds.name}` FINAL WHERE raw_id IN {{ids:Array(String)}}",
                                  {"ids": ids})
    return pa.table({c: pc.cast(_plain(table.column(c)), ds.arrow_schema.field(c).type) for c in ds.column_names})


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _keyed(ds: Dataset, table: pa.Table) -> dict[tuple, tuple]:
    """natural key -> the row's values without lineage and ingest columns (what a replay may change)."""
    value_cols = [c for c in ds.column_names if c not in ds.natural_key and c not in INGEST_COLUMNS]
    keys = [table.column(c).to_pylist() for c in ds.natural_key]
    values = [table.column(c).to_pylist() for c in value_cols]
    return {tuple(k[i] for k in keys): tuple(v[i] for v in values) for i in range(table.num_rows)}


def _differences(ds: Dataset, old: pa.Table, new: pa.Table) -> tuple[int, int, int]:
    before, after = _keyed(ds, old), _keyed(ds, new)
    added = sum(1 for k in after if k not in before)
    removed = sum(1 for k in before if k not in after)
    changed = sum(1 for k, v in after.items() if k in before and before[k] != v)
    return added, changed, removed


def _replace(lake: Lake, warehouse: Warehouse, ds: Dataset, source: str, ids: list[str], old: pa.Table,
             valid: pa.Table, quarantined: pa.Table, *, days: tuple[dt.date, dt.date], batch_key: str,
             day: dt.date) -> int:
    """Take what `ids` produced out of the warehouse and the lake, then write the replay's rows."""
    rewritten = 0
    if ids:
        if old.num_rows:
            warehouse.command(f"DELETE FROM {{db}}.`{ds.name}` WHERE raw_id IN {{ids:Array(String)}}", {"ids": ids})
        id_set = pa.array(ids, pa.string())
        # rows stored before they named their payload are matched by key (`_produced_by`): in
        # curated, against the valid rows, as the warehouse replaces them; in quarantine,
        # against all, but only in the partitions these payloads' batches were filed under
        legacy = {"curated": _natural_keys(ds, valid), "quarantine": _natural_keys(ds, valid, quarantined)}
        for zone, schema in (("curated", ds.arrow_schema), ("quarantine", ds.quarantine_schema)):
            # one scan of the zone's raw_id column finds the files to rewrite (not a read of each file)
            where = pc.field(RAW_ID).isin(id_set) | pc.field(RAW_ID).is_null()
            for path in lake.files_matching(zone, ds.name, where):
                ours = f"/source={source}/" in path
                if zone == "curated" and not ours:
                    continue
                # a stream batch is filed under the day it began, its payloads under the day
                # each arrived: around midnight those differ by a day
                filed = partition_day(path)
                keys = legacy[zone] if ours and (zone == "curated" or (
                    filed is not None and days[0] - _DAY <= filed <= days[1] + _DAY)) else None
                table = lake.read_file(path)
                hit = _produced_by(ds, table, id_set, keys)
                if pc.any(hit).as_py():
                    lake.replace_file(path, _conformed(table.filter(pc.invert(hit)), schema), ds)
                    rewritten += 1
    if valid.num_rows:
        warehouse.insert(ds.name, valid)
    lake.write_curated(ds, valid, batch_key=batch_key)
    lake.write_quarantine(ds, quarantined, day=day, batch_key=batch_key)
    return rewritten


def _produced_by(ds: Dataset, table: pa.Table, id_set: pa.Array, keys: pa.Table | None) -> pa.Array:
    """Which rows of a lake file the replayed payloads produced before: those naming one of
    them (`raw_id`), and, given `keys`, those stored before rows named their payload
    (migration 4: no `raw_id`) whose natural key is among `keys`. Without the second, a replay
    of such a day would leave its old rows beside the new."""
    n = table.num_rows
    raw = _plain(table.column(RAW_ID)) if RAW_ID in table.column_names else pa.nulls(n, pa.string())
    by_id = pc.fill_null(pc.is_in(raw, value_set=id_set), False)
    legacy = pc.is_null(raw)
    if keys is None or n == 0 or not pc.any(legacy).as_py():
        return by_id
    # a key column the file lacks reads as nulls, and a null key matches nothing
    probe = _conformed(table, _key_schema(ds)).append_column("__row", pa.array(np.arange(n)))
    rows = probe.join(keys, keys=list(ds.natural_key), join_type="left semi")
    same_key = np.zeros(n, dtype=bool)
    same_key[rows.column("__row").to_numpy()] = True
    return pc.or_(by_id, pc.and_(legacy, pa.array(same_key)))


def _natural_keys(ds: Dataset, *tables: pa.Table) -> pa.Table:
    """The distinct natural keys of the replay's rows (valid and quarantined), the dataset's types."""
    schema = _key_schema(ds)
    keys = [_conformed(t, schema) for t in tables if t.num_rows]
    return pa.concat_tables(keys).group_by(list(ds.natural_key)).aggregate([]) if keys else schema.empty_table()


def _key_schema(ds: Dataset) -> pa.Schema:
    """The natural key's columns, nullable: a rejected row's key may be what was missing."""
    return pa.schema([pa.field(c, ds.arrow_schema.field(c).type) for c in ds.natural_key])


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` as `schema`: a file written before a column existed gets it, empty."""
    return pa.table({f.name: pc.cast(_plain(table.column(f.name)), f.type) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in schema}, schema=schema)


def report_json(report: ReplayReport) -> str:
    return json.dumps(report.as_dict(), sort_keys=True)
