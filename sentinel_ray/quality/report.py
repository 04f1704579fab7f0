"""The data-quality report: status per dataset and source, rule counts, completeness,
cross-source agreement, alerts and pipeline health; as a dict, JSON and HTML."""
from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.monitoring.runs import pipeline_health
from sentinel_ray.quality.status import recent_alerts, record_alerts, source_statuses
from sentinel_ray.market import EXCHANGE_TZ
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import DATA_DATASETS, QUALITY_METRICS
from sentinel_ray.storage.warehouse import Warehouse

STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}


def cross_source_agreement(warehouse: Warehouse, tolerance: float, since: dt.datetime) -> dict[str, Any]:
    """NSE's official daily close vs Yahoo's for the same ticker and trading day."""
    [row] = warehouse.query_rows(
        "WITH daily AS (SELECT source, ticker, toDate(ts, '" + EXCHANGE_TZ + "') AS day, argMax(close, ts) AS close "
        "  FROM {db}.prices FINAL WHERE interval = '1d' AND source IN ('nse', 'yahoo') "
        "  AND ts >= {since:DateTime64(3, 'UTC')} GROUP BY source, ticker, day) "
        "SELECT count() AS pairs, countIf(abs(n.close - y.close) <= {tol:Float64} * y.close) AS agreeing "
        "FROM (SELECT * FROM daily WHERE source = 'nse') AS n "
        "INNER JOIN (SELECT * FROM daily WHERE source = 'yahoo') AS y ON n.ticker = y.ticker AND n.day = y.day",
        {"since": since, "tol": tolerance})
    pairs = int(row["pairs"])
    return {"pairs": pairs, "agreeing": int(row["agreeing"]), "tolerance": tolerance,
            "agreement": (row["agreeing"] / pairs) if pairs else None}


def dataset_quality(warehouse: Warehouse, dataset: str, start: dt.datetime, end: dt.datetime,
                    bucket: str = "hour") -> dict[str, Any]:
    """Metrics of one dataset over a time range: totals, rule counts, and a trend per bucket."""
    bucket_sql = {"hour": "toStartOfHour(measured_at)", "day": "toStartOfDay(measured_at)"}[bucket]
    params = {"dataset": dataset, "start": start, "end": end}
    where = ("dataset = {dataset:String} AND measured_at >= {start:DateTime64(3, 'UTC')} "
             "AND measured_at < {end:DateTime64(3, 'UTC')} AND pipeline != 'quality_report'")
    counts = warehouse.query_rows(
        f"SELECT metric, column, sum(value) AS total FROM {{db}}.quality_metrics FINAL WHERE {where} "
        f"AND metric IN ('rows_in', 'rows_valid', 'rows_quarantined', 'rows_warned', 'rejected', 'warned') "
        f"GROUP BY metric, column ORDER BY metric, column", params)
    trend = warehouse.query_rows(
        f"SELECT {bucket_sql} AS bucket, sumIf(value, metric = 'rows_in') AS rows_in, "
        f"sumIf(value, metric = 'rows_valid') AS rows_valid, sumIf(value, metric = 'rows_quarantined') AS "
        f"rows_quarantined FROM {{db}}.quality_metrics FINAL WHERE {where} GROUP BY bucket ORDER BY bucket", params)
    completeness = warehouse.query_rows(
        f"SELECT column, avg(value) AS completeness FROM {{db}}.quality_metrics FINAL WHERE {where} "
        f"AND metric = 'completeness' GROUP BY column ORDER BY column", params)
    totals = {r["metric"]: r["total"] for r in counts if r["column"] == ""}
    rows_in = totals.get("rows_in", 0)
    for point in trend:
        point["validity"] = point["rows_valid"] / point["rows_in"] if point["rows_in"] else None
    return {
        "dataset": dataset, "start": start, "end": end,
        "rows_in": int(rows_in), "rows_valid": int(totals.get("rows_valid", 0)),
        "rows_quarantined": int(totals.get("rows_quarantined", 0)), "rows_warned": int(totals.get("rows_warned", 0)),
        "validity": totals.get("rows_valid", 0) / rows_in if rows_in else None,
        "rejected": {r["column"]: int(r["total"]) for r in counts if r["metric"] == "rejected"},
        "warned": {r["column"]: int(r["total"]) for r in counts if r["metric"] == "warned"},
        "completeness": {r["column"]: r["completeness"] for r in completeness},
        "trend": trend,
    }


def quality_report(warehouse: Warehouse, settings: Settings, *, now: dt.datetime | None = None,
                   window: dt.timedelta = dt.timedelta(hours=24), run_id: str = "quality-report",
                   record: bool = True) -> dict[str, Any]:
    """The whole report. With `record`, raises the alerts it finds and stores the agreement it
    measures (the report job and CLI); without, it only reads (the HTTP API)."""
    now = now or utc_now()
    since = now - window
    statuses = source_statuses(warehouse, settings, now=now, window=window)
    if record:
        record_alerts(warehouse, statuses, now)
    agreement = cross_source_agreement(warehouse, settings.quality_agreement_tolerance, since)
    if record and agreement["agreement"] is not None:
        warehouse.insert(QUALITY_METRICS.name, pa.Table.from_pylist([{
            "run_id": run_id, "batch": "", "pipeline": "quality_report", "dataset": "prices", "source": "nse~yahoo",
            "metric": "agreement", "column": "close", "value": agreement["agreement"], "measured_at": now}],
            schema=QUALITY_METRICS.arrow_schema))
    datasets = {}
    for name in DATA_DATASETS:
        mine = [s for s in statuses if s.dataset == name]
        datasets[name] = {
            "status": max((s.status for s in mine), key=STATUS_ORDER.__getitem__, default="no data"),
            "sources": [s.as_dict() for s in mine],
            **dataset_quality(warehouse, name, since, now),
        }
    return {"generated_at": now, "window_hours": window.total_seconds() / 3600, "datasets": datasets,
            "agreement": agreement, "pipelines": pipeline_health(warehouse, window_hours=int(window.total_seconds()
                                                                                            // 3600)),
            "alerts": recent_alerts(warehouse, since=since)}


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, default=str, indent=2)


def to_html(report: dict[str, Any]) -> str:
    esc = html.escape

    def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>none</p>"

    parts = [f"<h1>Sentinel Ray data quality</h1><p>generated {esc(str(report['generated_at']))}, "
             f"window {report['window_hours']:.0f} h</p>"]
    for name, d in report["datasets"].items():
        parts.append(f"<h2>{esc(name)}: <span class='{esc(d['status'])}'>{esc(d['status'])}</span></h2>")
        parts.append(table(d["sources"], ["source", "status", "rows_in", "rows_valid", "validity", "last_seen"]))
        rules = [{"reason": k, "rows": v} for k, v in d["rejected"].items()]
        parts.append("<h3>rejected by rule</h3>" + table(rules, ["reason", "rows"]))
        warned = [{"rule": k, "rows": v} for k, v in d["warned"].items()]
        parts.append("<h3>warnings</h3>" + table(warned, ["rule", "rows"]))
        completeness = [{"column": k, "completeness": v} for k, v in d["completeness"].items()]
        parts.append("<h3>completeness</h3>" + table(completeness, ["column", "completeness"]))
    a = report["agreement"]
    parts.append(f"<h2>NSE vs Yahoo daily close</h2><p>{a['agreeing']} of {a['pairs']} pairs within "
                 f"{a['tolerance']:.2%}</p>")
    parts.append("<h2>pipelines</h2>" + table(report["pipelines"], [
        "pipeline", "status", "runs", "success_rate", "rows_in", "last_run_at", "last_status", "last_error"]))
    parts.append("<h2>alerts</h2>" + table(report["alerts"], ["raised_at", "dataset", "source", "kind", "severity",
                                                             "message"]))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}.healthy{color:green}"
             ".degraded{color:darkorange}.unhealthy{color:red}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Data quality</title><style>{style}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
