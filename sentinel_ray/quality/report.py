"""The data-quality report: status per dataset and source, rule counts, completeness,
cross-source agreement, alerts and pipeline health, and validity, volume and freshness per
source over time; as a dict, JSON and HTML (the trends as inline SVG charts: the file is
read offline, from the lake, with nothing to load)."""
from __future__ import annotations

import datetime as dt
import html
import json
import math
from typing import Any

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.monitoring.runs import pipeline_health
from sentinel_ray.quality.status import recent_alerts, record_alerts, source_statuses
from sentinel_ray.market import EXCHANGE_TZ, IST, as_utc
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import DATA_DATASETS, QUALITY_METRICS
from sentinel_ray.storage.warehouse import Warehouse

STATUS_ORDER = {"healthy": 0, "degraded": 1, "unhealthy": 2}
# Trend buckets: the smallest of these that cuts the window into at most TREND_POINTS.
TREND_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800)
TREND_POINTS = 96


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


def trend_bucket_s(window: dt.timedelta) -> int:
    seconds = window.total_seconds()
    return next((b for b in TREND_BUCKETS_S if seconds / b <= TREND_POINTS), TREND_BUCKETS_S[-1])


def source_trend(warehouse: Warehouse, start: dt.datetime, end: dt.datetime, bucket_s: int) -> list[dict[str, Any]]:
    """Per dataset, source and time bucket of `measured_at`: rows in, rows valid, validity and
    freshness (the oldest 'newest row' any batch of the bucket stored, in seconds)."""
    rows = warehouse.query_rows(
        "SELECT dataset, source, toStartOfInterval(measured_at, toIntervalSecond({bucket:UInt32})) AS bucket, "
        "sumIf(value, metric = 'rows_in') AS rows_in, sumIf(value, metric = 'rows_valid') AS rows_valid, "
        "if(countIf(metric = 'freshness_s') = 0, NULL, maxIf(value, metric = 'freshness_s')) AS freshness_s "
        "FROM {db}.quality_metrics FINAL WHERE measured_at >= {start:DateTime64(3, 'UTC')} "
        "AND measured_at < {end:DateTime64(3, 'UTC')} AND pipeline != 'quality_report' "
        "GROUP BY dataset, source, bucket ORDER BY dataset, source, bucket",
        {"start": start, "end": end, "bucket": bucket_s})
    for row in rows:
        row["bucket"] = as_utc(row["bucket"])
        row["rows_in"], row["rows_valid"] = int(row["rows_in"]), int(row["rows_valid"])
        row["validity"] = row["rows_valid"] / row["rows_in"] if row["rows_in"] else None
    return rows


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
    bucket_s = trend_bucket_s(window)
    return {"generated_at": now, "window_hours": window.total_seconds() / 3600, "datasets": datasets,
            "trend_bucket_s": bucket_s, "trend": source_trend(warehouse, since, now, bucket_s),
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

    generated = report["generated_at"]
    parts = [f"<h1>Sentinel Ray data quality</h1><p>generated {esc(_ist(generated))} "
             f"({as_utc(generated):%Y-%m-%d %H:%M:%S} UTC), "
             f"window {report['window_hours']:.0f} h</p>"]
    trend = report.get("trend") or []
    bucket = report.get("trend_bucket_s")
    for name, d in report["datasets"].items():
        parts.append(f"<h2>{esc(name)}: <span class='{esc(d['status'])}'>{esc(d['status'])}</span></h2>")
        parts.append(table(d["sources"], ["source", "status", "rows_in", "rows_valid", "validity", "last_seen"]))
        mine = [r for r in trend if r["dataset"] == name]
        if mine:
            every = f", per {_duration(bucket)}" if bucket else ""
            parts.append(f"<h3>per source over time (IST{every})</h3><div class='charts'>"
                         + trend_charts(mine) + "</div>")
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
             ".degraded{color:darkorange}.unhealthy{color:red}.charts{display:flex;gap:1.5em;flex-wrap:wrap}"
             "figure{margin:0}figcaption{font-size:.85em;color:#555}svg text{font:10px sans-serif;fill:#555}"
             ".key{font-size:.8em;margin-right:1em}"
             ".key i{display:inline-block;width:.8em;height:.8em;margin-right:.3em}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>Data quality</title><style>{style}</style>" \
           f"</head><body>{''.join(parts)}</body></html>"


# -- charts: inline SVG, drawn here so the report needs no script or network ------------------
PALETTE = ("#2f81f7", "#e36209", "#1a7f37", "#8250df", "#cf222e", "#0a7ea4", "#9a6700", "#57606a")
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 350, 150, 60, 8, 8, 20


def trend_charts(rows: list[dict[str, Any]]) -> str:
    """Validity, volume and freshness per source over time (rows of `source_trend`), as three
    SVG line charts with one line per source and a shared colour key."""
    sources = sorted({r["source"] for r in rows})
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(sources)}
    times = sorted({r["bucket"] for r in rows})
    by_source: dict[str, list[dict[str, Any]]] = {s: [r for r in rows if r["source"] == s] for s in sources}

    def series(field: str) -> dict[str, list[tuple[dt.datetime, float]]]:
        return {s: [(r["bucket"], float(r[field])) for r in by_source[s] if r[field] is not None] for s in sources}

    key = "".join(f"<span class='key'><i style='background:{colour[s]}'></i>{html.escape(s)}</span>"
                  for s in sources)
    charts = [
        ("validity (valid / rows in)", svg_lines(series("validity"), colour, times, y_range=(0.0, 1.0),
                                                  y_label=lambda v: f"{v:.0%}")),
        ("volume (rows in)", svg_lines(series("rows_in"), colour, times, y_range=(0.0, None), y_label=_count)),
        ("freshness (age of the newest row stored)", svg_lines(series("freshness_s"), colour, times, log=True,
                                                               y_label=_duration)),
    ]
    return "".join(f"<figure><figcaption>{html.escape(title)}</figcaption>{svg}<div>{key}</div></figure>"
                   for title, svg in charts)


def svg_lines(series: dict[str, list[tuple[dt.datetime, float]]], colour: dict[str, str], times: list[dt.datetime],
              *, y_range: tuple[float | None, float | None] = (None, None), log: bool = False,
              y_label: Any = str) -> str:
    """One line per series over a shared time axis (labels in IST), y linear or log10."""
    values = [v for points in series.values() for _, v in points]
    if not values or not times:
        return "<svg width='340' height='40' role='img'><text x='4' y='20'>no data</text></svg>"
    if log:
        values = [max(v, 0.001) for v in values]
    lo = y_range[0] if y_range[0] is not None else min(values)
    hi = y_range[1] if y_range[1] is not None else max(values)
    if log:
        lo, hi = math.log10(max(min(values), 0.001)), math.log10(max(values))
        lo, hi = math.floor(lo), math.ceil(hi)
    if hi <= lo:
        hi = lo + 1
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    span = (t1 - t0) or 1.0
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(t: dt.datetime) -> float:
        return _LEFT + (plot_w / 2 if t1 == t0 else (t.timestamp() - t0) / span * plot_w)

    def y(v: float) -> float:
        v = math.log10(max(v, 0.001)) if log else v
        return _TOP + plot_h - (v - lo) / (hi - lo) * plot_h

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' viewBox='0 0 {_W} {_H}' role='img'>",
           f"<rect x='{_LEFT}' y='{_TOP}' width='{plot_w}' height='{plot_h}' fill='none' stroke='#ddd'/>"]
    ticks = [lo + (hi - lo) * i / 2 for i in range(3)]
    for tick in ticks:
        ty = _TOP + plot_h - (tick - lo) / (hi - lo) * plot_h
        label = y_label(10 ** tick if log else tick)
        out.append(f"<line x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{ty:.1f}' y2='{ty:.1f}' stroke='#eee'/>"
                   f"<text x='{_LEFT - 4}' y='{ty + 3:.1f}' text-anchor='end'>{html.escape(label)}</text>")
    first, last = _ist(times[0], zone=False), _ist(times[-1], zone=False)
    anchor = ("start", _LEFT) if t1 != t0 else ("middle", _LEFT + plot_w / 2)
    out.append(f"<text x='{anchor[1]}' y='{_H - 5}' text-anchor='{anchor[0]}'>{html.escape(first)}</text>")
    if t1 != t0:
        out.append(f"<text x='{_W - _RIGHT}' y='{_H - 5}' text-anchor='end'>{html.escape(last)}</text>")
    for name, points in series.items():
        if not points:
            continue
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        out.append(f"<polyline fill='none' stroke='{colour[name]}' stroke-width='1.5' points='{coords}'>"
                   f"<title>{html.escape(name)}</title></polyline>")
        if len(points) <= 48:  # a lone point draws no line: mark every point while they are few
            out.extend(f"<circle cx='{x(t):.1f}' cy='{y(v):.1f}' r='2.5' fill='{colour[name]}'>"
                       f"<title>{html.escape(name)} {html.escape(_ist(t))}: {html.escape(y_label(v))}</title></circle>"
                       for t, v in points)
    out.append("</svg>")
    return "".join(out)


def _ist(moment: dt.datetime, *, zone: bool = True) -> str:
    local = as_utc(moment).astimezone(IST)
    return f"{local:%Y-%m-%d %H:%M}{' IST' if zone else ''}"


def _count(value: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
