"""`pipeline_runs` tells a run whose process died from one still running: a long run re-records
itself while it works, and a "running" row nobody re-recorded for ABANDONED_AFTER_S reads
"abandoned", counted as a failure by the health."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.monitoring import runs
from sentinel_ray.monitoring.runs import ABANDONED_AFTER_S, HEARTBEAT_S, PipelineRun, pipeline_health, recent_runs
from sentinel_ray.schemas import PIPELINE_RUNS
from sentinel_ray.storage.warehouse import connect_warehouse

pytestmark = pytest.mark.ray


def _recorded_ago(warehouse, run: PipelineRun, seconds: float) -> None:
    """The run's row as its process last wrote it `seconds` ago."""
    table = run.as_table()
    at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)
    table = table.set_column(table.schema.get_field_index("updated_at"), "updated_at",
                             pa.array([at], PIPELINE_RUNS.arrow_schema.field("updated_at").type))
    warehouse.insert(PIPELINE_RUNS.name, table)


def test_a_running_run_nobody_re_recorded_reads_abandoned_and_counts_as_failed(
        ray_session, isolated_settings: Settings) -> None:
    warehouse = connect_warehouse(isolated_settings)
    warehouse.ensure_schema()
    alive, dead = PipelineRun("backfill", {"n": 1}), PipelineRun("backfill", {"n": 2})
    _recorded_ago(warehouse, alive, ABANDONED_AFTER_S - 120)
    _recorded_ago(warehouse, dead, ABANDONED_AFTER_S + 120)  # SIGKILLed before it could say so
    done = PipelineRun("backfill", {"n": 3})
    done.record(warehouse)
    done.finish(warehouse)

    status = {r["run_id"]: r["status"] for r in recent_runs(warehouse, pipeline="backfill")}
    assert status == {alive.run_id: "running", dead.run_id: "abandoned", done.run_id: "success"}
    [health] = pipeline_health(warehouse)
    assert (health["runs"], health["succeeded"], health["failed"], health["running"], health["abandoned"]) == (
        3, 1, 1, 1, 1)
    assert health["success_rate"] == 0.5 and health["status"] == "unhealthy"

    _recorded_ago(warehouse, dead, 0)  # it was only slow: its next heartbeat brings it back
    status = {r["run_id"]: r["status"] for r in recent_runs(warehouse, pipeline="backfill")}
    assert status[dead.run_id] == "running"


def test_a_heartbeat_records_the_run_at_most_once_a_minute_with_its_counts(
        ray_session, isolated_settings: Settings, monkeypatch) -> None:
    warehouse = connect_warehouse(isolated_settings)
    warehouse.ensure_schema()
    clock = [1000.0]
    monkeypatch.setattr(runs.time, "monotonic", lambda: clock[0])
    run = PipelineRun("replay", {})
    run.record(warehouse)
    run.rows_in = 10
    assert not run.heartbeat(warehouse)  # just recorded
    clock[0] += HEARTBEAT_S
    assert run.heartbeat(warehouse)
    assert not run.heartbeat(warehouse)
    [row] = recent_runs(warehouse, pipeline="replay")
    assert (row["status"], row["rows_in"]) == ("running", 10)
