"""Detection against the warehouse: the entries the backfill, the stream and the API call.

    detect_range(warehouse, start, end)          history: features_1m (+ filings) -> risk_1m, alerts
    detect_batch(warehouse, features, state)     the stream: one micro-batch, state carried
    apply_transition(warehouse, alert_id, ...)   the analyst's workflow change, audited

Both detection entries run the same pure functions (risk.risk_scores, alerts.advance) and
write risk_1m, then alerts, then alert_events. Every write is idempotent, so a failed
batch is simply run again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_ray.detect.alerts import (STAY_THRESHOLD, Advance, Episode, Key, advance, alerts_table,
                                        attach_post_ids, events_table, transition)
from sentinel_ray.detect.risk import risk_scores
from sentinel_ray.market import as_utc
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import ALERT_EVENTS, ALERTS, FEATURES_1M, RISK_1M, TIMESTAMP_TYPE
from sentinel_ray.storage.warehouse import Warehouse

# An episode that was running before a range can only continue into it if its last bar
# is within the quiet gap in trading minutes; a long weekend with holidays stays under this.
_STATE_LOOKBACK = dt.timedelta(days=10)
_TS = "DateTime64(3, 'UTC')"
# Filings this far back can still explain a move (context.FILING_EXPLAINS_MIN: 3 sessions,
# a long weekend included).
FILING_LOOKBACK = dt.timedelta(days=7)


@dataclass
class DetectSummary:
    bars: int = 0
    risk_rows: int = 0
    alerts_opened: int = 0
    alerts_written: int = 0
    events: int = 0
    raised: frozenset[str] = frozenset()  # ids of the alerts this batch opened or updated (not summed)

    def add(self, other: DetectSummary) -> None:
        """The counts summed (a long-lived stream's running totals; `raised` stays this one's)."""
        for f in dataclasses.fields(self):
            if f.name != "raised":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def read_features(warehouse: Warehouse, start: dt.datetime, end: dt.datetime) -> pa.Table:
    cols = ", ".join(f"`{c}`" for c in FEATURES_1M.column_names)
    table = warehouse.query_arrow(
        f"SELECT {cols} FROM {{db}}.features_1m FINAL WHERE ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}} "
        f"ORDER BY ticker, exchange, ts", {"start": start, "end": end})
    return _conform(table, FEATURES_1M.arrow_schema)


def read_filings(warehouse: Warehouse, features: pa.Table) -> pa.Table:
    """Filings (ticker, subject, details, ts) that can explain the moves of these bars: those
    of their tickers disseminated up to their last close, from FILING_LOOKBACK before the first."""
    lo, hi = pc.min_max(pc.cast(features.column("ts"), TIMESTAMP_TYPE)).as_py().values()
    table = warehouse.query_arrow(
        f"SELECT ticker, subject, details, ts FROM {{db}}.filings FINAL WHERE ticker IN {{tickers:Array(String)}} "
        f"AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}",
        {"tickers": pc.unique(features.column("ticker")).to_pylist(), "start": as_utc(lo) - FILING_LOOKBACK,
         "end": as_utc(hi) + dt.timedelta(minutes=1)})
    schema = pa.schema([("ticker", pa.string()), ("subject", pa.string()), ("details", pa.string()),
                        ("ts", TIMESTAMP_TYPE)])
    return _conform(table, schema)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Warehouse Arrow (dictionary strings, maybe other time units) as the dataset's schema."""
    columns = []
    for f in schema:
        col = table.column(f.name)
        if pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        columns.append(pc.cast(col, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def load_open_episodes(warehouse: Warehouse, before: dt.datetime) -> dict[Key, Episode]:
    """The episodes that may still be running at `before`, from the alerts table: the latest
    alert per ticker opened before it. Where a previous run already carried that alert past
    `before`, its last bar and peak as of `before` come from risk_1m, so re-running a range
    continues the same alert instead of opening another."""
    rows = warehouse.query_rows(
        f"SELECT * FROM {{db}}.alerts FINAL WHERE opened_at < {{before:{_TS}}} AND last_bar_ts >= {{since:{_TS}}} "
        f"ORDER BY ticker, exchange, opened_at DESC LIMIT 1 BY ticker, exchange",
        {"before": before, "since": before - _STATE_LOOKBACK})
    state: dict[Key, Episode] = {}
    for row in rows:
        row = _aware(row)
        if row["last_bar_ts"] >= before:
            upto = warehouse.query_rows(
                f"SELECT count() AS bars, max(ts) AS last_bar_ts, max(score) AS peak_score, "
                f"argMax(ts, tuple(score, -toUnixTimestamp64Milli(ts))) AS peak_ts, "
                f"argMax(reasons, tuple(score, -toUnixTimestamp64Milli(ts))) AS reasons "
                f"FROM {{db}}.risk_1m FINAL WHERE ticker = {{ticker:String}} AND exchange = {{exchange:String}} "
                f"AND ts >= {{opened:{_TS}}} AND ts < {{before:{_TS}}} AND score >= {{stay:Float64}}",
                {"ticker": row["ticker"], "exchange": row["exchange"], "opened": row["opened_at"],
                 "before": before, "stay": STAY_THRESHOLD})
            if not upto or not upto[0]["bars"]:
                continue
            u = _aware(upto[0])
            row.update(last_bar_ts=u["last_bar_ts"], evidence_end=u["last_bar_ts"], peak_score=u["peak_score"],
                       peak_ts=u["peak_ts"], reasons=u["reasons"])
        state[(row["ticker"], row["exchange"])] = episode_from_row(row, last_seen_ts=before - dt.timedelta(
            milliseconds=1))
    return state


def episode_from_row(row: dict[str, Any], *, last_seen_ts: dt.datetime) -> Episode:
    row = _aware(row)
    return Episode(**{f.name: row[f.name] for f in dataclasses.fields(Episode)
                      if f.name not in ("last_seen_ts", "post_ids")},
                   post_ids=list(row.get("post_ids") or []), last_seen_ts=last_seen_ts)


def _aware(row: dict[str, Any]) -> dict[str, Any]:
    return {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in row.items()}


def detect_range(warehouse: Warehouse, start: dt.datetime, end: dt.datetime, *, detected_by: str = "backfill",
                 now: dt.datetime | None = None, chunk: dt.timedelta = dt.timedelta(days=1)) -> DetectSummary:
    """Risk and alerts for the features of [start, end): what a backfill (or an evaluation)
    calls once features_1m holds the range. Re-running it changes nothing: the same alerts
    (same ids, analysts' states kept), the same risk rows, the same detector events."""
    start, end = as_utc(start), as_utc(end)
    state = load_open_episodes(warehouse, start)
    summary = DetectSummary()
    cursor = start
    while cursor < end:  # a day at a time bounds memory; the state carries episodes across
        upto = min(cursor + chunk, end)
        state, part = _detect(warehouse, read_features(warehouse, cursor, upto), state, detected_by, now)
        summary.add(part)
        cursor = upto
    return summary


def detect_batch(warehouse: Warehouse, features: pa.Table, state: dict[Key, Episode] | None = None, *,
                 detected_by: str = "stream", now: dt.datetime | None = None
                 ) -> tuple[dict[Key, Episode], DetectSummary]:
    """One stream micro-batch of FEATURES_1M rows: risk and alerts written, the new state
    returned (the given one is not changed, so a failed write leaves it as it was). With
    no state (a fresh or restarted consumer) it is loaded from the alerts table."""
    if features.num_rows == 0:
        return dict(state or {}), DetectSummary()
    features = _conform(features, FEATURES_1M.arrow_schema)
    if state is None:
        first = pc.min(features.column("ts")).as_py()
        state = load_open_episodes(warehouse, as_utc(first))
    return _detect(warehouse, features, state, detected_by, now)


def _detect(warehouse: Warehouse, features: pa.Table, state: dict[Key, Episode], detected_by: str,
            now: dt.datetime | None) -> tuple[dict[Key, Episode], DetectSummary]:
    now = now or utc_now()
    summary = DetectSummary(bars=features.num_rows)
    if features.num_rows == 0:
        return state, summary
    risk = risk_scores(features, computed_at=now, filings=read_filings(warehouse, features))
    summary.risk_rows = warehouse.insert(RISK_1M.name, risk)
    result = advance(risk, state, detected_by=detected_by)
    if result.touched:
        _write_alerts(warehouse, result, now)
    summary.alerts_opened = len(result.opened)
    summary.alerts_written = len(result.touched)
    summary.raised = frozenset(result.touched)
    summary.events = len(result.events)
    return result.state, summary


def _write_alerts(warehouse: Warehouse, result: Advance, now: dt.datetime) -> None:
    episodes = list(result.touched.values())
    attach_post_ids(episodes, evidence_posts(warehouse, episodes))
    # The workflow is the analyst's: keep the state and disposition the alert has now, read
    # just before writing (the detector's state may be older than an acknowledgement).
    existing = {row["alert_id"]: row for row in warehouse.query_rows(
        "SELECT alert_id, state, disposition, detected_by, last_bar_ts, peak_score, peak_ts, reasons, "
        "evidence_end, post_ids FROM {db}.alerts FINAL "
        "WHERE alert_id IN {ids:Array(String)}", {"ids": [ep.alert_id for ep in episodes]})}
    rows = []
    for ep in episodes:
        stored = existing.get(ep.alert_id)
        if stored is not None:
            ep.state, ep.disposition, ep.detected_by = stored["state"], stored["disposition"], stored["detected_by"]
        rows.append(_not_cut_short(ep.row(now), stored))
    warehouse.insert(ALERTS.name, alerts_table(rows))
    if result.events:
        warehouse.insert(ALERT_EVENTS.name, events_table(result.events))


def _not_cut_short(row: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """An alert row as written, never ending before the stored version: when sessions inside a
    longer episode are computed again (a replay), the episode's later bars, evidence and a
    later peak stay. Only the row changes: the detector's state goes on from its own bars."""
    if stored is None or as_utc(stored["last_bar_ts"]) <= as_utc(row["last_bar_ts"]):
        return row
    seen_until = as_utc(row["last_bar_ts"])
    row = {**row, "last_bar_ts": as_utc(stored["last_bar_ts"]),
           "evidence_end": max(as_utc(row["evidence_end"]), as_utc(stored["evidence_end"])),
           "post_ids": stored["post_ids"]}
    if as_utc(stored["peak_ts"]) > seen_until and stored["peak_score"] > row["peak_score"]:
        row.update(peak_score=stored["peak_score"], peak_ts=as_utc(stored["peak_ts"]), reasons=stored["reasons"])
    return row


def evidence_posts(warehouse: Warehouse, episodes: list[Episode]) -> pa.Table:
    """Posts (ticker, ref = platform:post_id, ts) mentioning the episodes' tickers in their evidence ranges."""
    if not episodes:
        return pa.table({"ticker": pa.array([], pa.string()), "ref": pa.array([], pa.string()),
                         "ts": pa.array([], TIMESTAMP_TYPE)})
    start = min(ep.evidence_start for ep in episodes)
    end = max(ep.evidence_end for ep in episodes) + dt.timedelta(minutes=1)
    table = warehouse.query_arrow(
        f"SELECT t AS ticker, concat(platform, ':', post_id) AS ref, ts FROM {{db}}.posts FINAL "
        f"ARRAY JOIN tickers AS t WHERE t IN {{tickers:Array(String)}} "
        f"AND ts >= {{start:{_TS}}} AND ts < {{end:{_TS}}}",
        {"tickers": sorted({ep.ticker for ep in episodes}), "start": start, "end": end})
    schema = pa.schema([("ticker", pa.string()), ("ref", pa.string()), ("ts", TIMESTAMP_TYPE)])
    return _conform(table, schema)


class AlertNotFound(KeyError):
    pass


def get_alert(warehouse: Warehouse, alert_id: str) -> dict[str, Any]:
    rows = warehouse.query_rows("SELECT * FROM {db}.alerts FINAL WHERE alert_id = {id:String}", {"id": alert_id})
    if not rows:
        raise AlertNotFound(alert_id)
    return _aware(rows[0])


def apply_transition(warehouse: Warehouse, alert_id: str, state: str | None, disposition: str | None,
                     actor: str, note: str | None = None) -> dict[str, Any]:
    """Change an alert's state and/or disposition: the new version and its alert_events row
    written. Raises AlertNotFound, or alerts.TransitionError for a change not allowed."""
    alert = get_alert(warehouse, alert_id)
    updated, event = transition(alert, state, disposition, actor, note)
    # the audit row first: if the alert's write then fails, a retry repeats the change
    # (one audit row too many) rather than leaving a change nobody recorded
    warehouse.insert(ALERT_EVENTS.name, events_table([event]))
    warehouse.insert(ALERTS.name, alerts_table([updated]))
    return updated
