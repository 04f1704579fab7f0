"""Health of each dataset and source, and the alerts it raises, computed from the warehouse.

Status from the last `window` of `quality_metrics`:
    unhealthy  validity below `quality_unhealthy_below`, or an enabled source silent for
               longer than `quality_max_silence_s`
    degraded   validity below `quality_degraded_below`, or the last hour's volume fell
               below `quality_volume_drop_ratio` x the median of the hours before
    healthy    otherwise
Alerts are rows of `quality_alerts` keyed by dataset/source/kind/hour, so raising the
same alert again in the same hour changes nothing.
"""
from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.market import as_utc
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import QUALITY_ALERTS
from sentinel_ray.storage.warehouse import Warehouse

MIN_HISTORY_HOURS = 6  # hours of history before a volume drop can be judged


@dataclass
class Alert:
    dataset: str
    source: str
    kind: str  # volume_drop | silent_source | validity_low
    severity: str  # warning | critical
    message: str
    value: float | None
    threshold: float | None

    def row(self, now: dt.datetime) -> dict[str, Any]:
        return {"alert_id": f"{self.dataset}/{self.source}/{self.kind}/{now:%Y%m%dT%H}", "raised_at": now,
                **self.__dict__}


@dataclass
class SourceStatus:
    dataset: str
    source: str
    status: str
    rows_in: int
    rows_valid: int
    validity: float | None
    last_seen: dt.datetime | None
    alerts: list[Alert] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "alerts"},
                "alerts": [a.__dict__ for a in self.alerts]}


def source_statuses(warehouse: Warehouse, settings: Settings, *, now: dt.datetime | None = None,
                    window: dt.timedelta = dt.timedelta(hours=24)) -> list[SourceStatus]:
    now = now or utc_now()
    totals = warehouse.query_rows(
        "SELECT dataset, source, sumIf(value, metric = 'rows_in') AS rows_in, "
        "sumIf(value, metric = 'rows_valid') AS rows_valid FROM {db}.quality_metrics FINAL "
        "WHERE measured_at >= {since:DateTime64(3, 'UTC')} AND pipeline != 'quality_report' "
        "GROUP BY dataset, source", {"since": now - window})
    last_seen = {(r["dataset"], r["source"]): r["last_seen"] for r in warehouse.query_rows(
        "SELECT dataset, source, max(measured_at) AS last_seen FROM {db}.quality_metrics "
        "WHERE pipeline != 'quality_report' GROUP BY dataset, source")}
    hourly = _hourly_rows(warehouse, now)
    by_key = {(r["dataset"], r["source"]): r for r in totals}
    out = []
    for key in sorted(set(by_key) | set(last_seen)):
        dataset, source = key
        row = by_key.get(key, {"rows_in": 0, "rows_valid": 0})
        rows_in, rows_valid = int(row["rows_in"]), int(row["rows_valid"])
        validity = rows_valid / rows_in if rows_in else None
        seen = as_utc(last_seen[key]) if last_seen.get(key) else None
        alerts = _alerts(settings, dataset, source, validity, seen, hourly.get(key, []), now)
        out.append(SourceStatus(dataset, source, _status(alerts), rows_in, rows_valid, validity, seen, alerts))
    return out


def _status(alerts: list[Alert]) -> str:
    if any(a.severity == "critical" for a in alerts):
        return "unhealthy"
    return "degraded" if alerts else "healthy"


def _alerts(settings: Settings, dataset: str, source: str, validity: float | None, last_seen: dt.datetime | None,
            hourly: list[float], now: dt.datetime) -> list[Alert]:
    alerts = []
    if validity is not None and validity < settings.quality_degraded_below:
        critical = validity < settings.quality_unhealthy_below
        threshold = settings.quality_unhealthy_below if critical else settings.quality_degraded_below
        alerts.append(Alert(dataset, source, "validity_low", "critical" if critical else "warning",
                            f"{dataset}/{source}: only {validity:.1%} of rows valid in the last 24 h", validity,
                            threshold))
    streaming = source in settings.sources_enabled or source == "webhook"
    if streaming and last_seen is not None:
        silent = (now - last_seen).total_seconds()
        if silent > settings.quality_max_silence_s:
            alerts.append(Alert(dataset, source, "silent_source", "critical",
                                f"{dataset}/{source}: nothing for {silent / 3600:.1f} h", silent,
                                settings.quality_max_silence_s))
    if len(hourly) > MIN_HISTORY_HOURS:
        *history, latest = hourly
        median = statistics.median(history)
        if median > 0 and latest < settings.quality_volume_drop_ratio * median:
            alerts.append(Alert(dataset, source, "volume_drop", "warning",
                                f"{dataset}/{source}: {latest:,.0f} rows last hour vs a median of {median:,.0f}",
                                latest, settings.quality_volume_drop_ratio * median))
    return alerts


def _hourly_rows(warehouse: Warehouse, now: dt.datetime) -> dict[tuple[str, str], list[float]]:
    """Rows in per complete hour of the last day, oldest first, zero-filled, per dataset/source."""
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - dt.timedelta(hours=24)
    rows = warehouse.query_rows(
        "SELECT dataset, source, toStartOfHour(measured_at) AS hour, sumIf(value, metric = 'rows_in') AS rows_in "
        "FROM {db}.quality_metrics FINAL WHERE measured_at >= {start:DateTime64(3, 'UTC')} "
        "AND measured_at < {end:DateTime64(3, 'UTC')} AND pipeline = 'stream' GROUP BY dataset, source, hour",
        {"start": start, "end": end})
    series: dict[tuple[str, str], dict[dt.datetime, float]] = {}
    for r in rows:
        series.setdefault((r["dataset"], r["source"]), {})[as_utc(r["hour"])] = float(r["rows_in"])
    hours = [start + dt.timedelta(hours=i) for i in range(24)]
    out = {}
    for key, counts in series.items():
        first = min(counts)  # a source is judged from its first hour on, not before it existed
        out[key] = [counts.get(h, 0.0) for h in hours if h >= first]
    return out


def record_alerts(warehouse: Warehouse, statuses: list[SourceStatus], now: dt.datetime | None = None) -> int:
    now = now or utc_now()
    rows = [a.row(now) for s in statuses for a in s.alerts]
    if rows:
        warehouse.insert(QUALITY_ALERTS.name, pa.Table.from_pylist(rows, schema=QUALITY_ALERTS.arrow_schema))
    return len(rows)


def recent_alerts(warehouse: Warehouse, *, since: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
    return warehouse.query_rows(
        "SELECT alert_id, raised_at, dataset, source, kind, severity, message, value, threshold "
        "FROM {db}.quality_alerts FINAL WHERE raised_at >= {since:DateTime64(3, 'UTC')} "
        "ORDER BY raised_at DESC LIMIT {limit:UInt32}", {"since": since, "limit": limit})
