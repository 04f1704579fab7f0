"""Status per dataset and source from quality_metrics: healthy -> degraded -> unhealthy, alerts."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.quality.status import record_alerts, recent_alerts, source_statuses
from sentinel_ray.schemas import QUALITY_METRICS
from sentinel_ray.storage.warehouse import connect_warehouse

pytestmark = pytest.mark.ray
NOW = dt.datetime(2026, 11, 26, 12, 30, tzinfo=dt.timezone.utc)


def _metrics(wh, source: str, hours_ago: list[float], rows_in: float, rows_valid: float,
             pipeline: str = "stream") -> None:
    rows = []
    for i, h in enumerate(hours_ago):
        at = NOW - dt.timedelta(hours=h)
        for metric, value in (("rows_in", rows_in), ("rows_valid", rows_valid)):
            rows.append({"run_id": f"{source}-{h}-{i}", "batch": "", "pipeline": pipeline, "dataset": "prices", "source": source,
                         "metric": metric, "column": "", "value": value, "measured_at": at})
    wh.insert("quality_metrics", pa.Table.from_pylist(rows, schema=QUALITY_METRICS.arrow_schema))


@pytest.fixture
def wh(ray_session, isolated_settings):
    warehouse = connect_warehouse(isolated_settings)
    warehouse.ensure_schema()
    return warehouse


def _status(wh, settings, source: str):
    return next(s for s in source_statuses(wh, settings, now=NOW) if s.source == source)


def test_status_transitions(wh, isolated_settings) -> None:
    settings = isolated_settings.model_copy(update={"sources_enabled": ["replay", "quiet"]})
    hours = [h + 0.5 for h in range(12)]  # one batch in each of the last 12 hours
    _metrics(wh, "good", hours, 1000, 995)
    _metrics(wh, "meh", hours, 1000, 950)
    _metrics(wh, "bad", hours, 1000, 500)
    _metrics(wh, "quiet", [3.5, 4.5], 1000, 1000)
    assert _status(wh, settings, "good").status == "healthy"
    meh = _status(wh, settings, "meh")
    assert meh.status == "degraded" and [a.kind for a in meh.alerts] == ["validity_low"]
    assert meh.validity == pytest.approx(0.95)
    bad = _status(wh, settings, "bad")
    assert bad.status == "unhealthy" and bad.alerts[0].severity == "critical"
    quiet = _status(wh, settings, "quiet")
    assert quiet.status == "unhealthy" and [a.kind for a in quiet.alerts] == ["silent_source"]


def test_volume_drop_raises_an_alert_once_per_hour(wh, isolated_settings) -> None:
    _metrics(wh, "drop", [h + 0.5 for h in range(2, 13)], 1000, 1000)  # 10:00, 09:00, ... 00:00
    _metrics(wh, "drop", [1.0], 50, 50)  # 11:30: the last complete hour has 5% of the usual
    status = _status(wh, isolated_settings, "drop")
    assert status.status == "degraded" and [a.kind for a in status.alerts] == ["volume_drop"]
    record_alerts(wh, [status], NOW)
    record_alerts(wh, [status], NOW + dt.timedelta(minutes=5))  # same hour: same alert
    alerts = recent_alerts(wh, since=NOW - dt.timedelta(hours=1))
    assert [(a["source"], a["kind"]) for a in alerts] == [("drop", "volume_drop")]


def test_backfill_only_sources_are_not_silent(wh, isolated_settings) -> None:
    _metrics(wh, "yahoo", [30.0], 1000, 1000, pipeline="backfill")  # not an enabled streaming source
    assert all(a.kind != "silent_source" for a in _status(wh, isolated_settings, "yahoo").alerts)
