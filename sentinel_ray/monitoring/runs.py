"""`pipeline_runs`: one row per run, re-inserted with its final state when it ends.

The table is a ReplacingMergeTree on (pipeline, run_id) versioned by `updated_at`, so
the latest state of a run is what `FINAL` reads.

A run whose process dies without a word (SIGKILL, a lost node, a crashed service) cannot
record its end. So a long run re-records itself while it works (`heartbeat`, at most every
HEARTBEAT_S, with its counts so far), and the reads here call a "running" row that has not
been re-recorded for ABANDONED_AFTER_S "abandoned": the health counts it as failed, not as
running forever.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from sentinel_ray.records import utc_now
from sentinel_ray.schemas import PIPELINE_RUNS
from sentinel_ray.storage.warehouse import Warehouse

HEARTBEAT_S = 60.0  # a running run's row is re-recorded at most this often
ABANDONED_AFTER_S = 900  # a "running" row older than this: its process is gone (15 heartbeats missed)
# the status a read shows: "running" only while the run's row is fresh
_STATUS = ("if(status = 'running' AND updated_at < now64(3) - toIntervalSecond({abandoned:UInt32}), "
           "'abandoned', status)")


def new_run_id(pipeline: str) -> str:
    return f"{pipeline}-{utc_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


@dataclass
class PipelineRun:
    pipeline: str
    params: dict[str, Any]
    run_id: str = ""
    started_at: dt.datetime = field(default_factory=utc_now)
    ended_at: dt.datetime | None = None
    status: str = "running"
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    error: str | None = None
    _recorded: float = field(default=float("-inf"), repr=False)  # monotonic time of the last record

    def __post_init__(self) -> None:
        self.run_id = self.run_id or new_run_id(self.pipeline)

    def as_table(self) -> pa.Table:
        row = {
            "run_id": self.run_id, "pipeline": self.pipeline,
            "params": json.dumps(self.params, sort_keys=True, default=str),
            "started_at": self.started_at, "ended_at": self.ended_at, "status": self.status,
            "rows_in": self.rows_in, "rows_valid": self.rows_valid, "rows_quarantined": self.rows_quarantined,
            "error": self.error, "updated_at": utc_now(),
        }
        return pa.Table.from_pylist([row], schema=PIPELINE_RUNS.arrow_schema)

    def record(self, warehouse: Warehouse) -> None:
        warehouse.insert(PIPELINE_RUNS.name, self.as_table())
        self._recorded = time.monotonic()

    def heartbeat(self, warehouse: Warehouse) -> bool:
        """While the run works: its row (counts so far) recorded again if HEARTBEAT_S have
        passed since the last record, so the reads know it is alive. Whether it recorded."""
        if time.monotonic() - self._recorded < HEARTBEAT_S:
            return False
        self.record(warehouse)
        return True

    def fail_quietly(self, warehouse: Warehouse, error: BaseException) -> None:
        """Record a failure without hiding it: when the warehouse is what failed, recording
        fails too, and the caller's original error must still be the one raised."""
        try:
            self.finish(warehouse, error=error)
        except Exception:  # noqa: BLE001 - see docstring
            logging.getLogger(__name__).warning("could not record failed run %s", self.run_id, exc_info=True)

    def finish(self, warehouse: Warehouse, *, error: BaseException | str | None = None) -> None:
        self.ended_at = utc_now()
        self.status = "failed" if error else "success"
        self.error = None if error is None else (error if isinstance(error, str) else f"{type(error).__name__}: {error}")
        self.record(warehouse)


def recent_runs(warehouse: Warehouse, *, limit: int = 50, pipeline: str | None = None) -> list[dict[str, Any]]:
    """The newest runs; `status` is running, success, failed or abandoned (see the module
    doc), `updated_at` when the run last recorded itself."""
    return warehouse.query_rows(
        f"SELECT run_id, pipeline, params, started_at, ended_at, {_STATUS} AS status, rows_in, rows_valid, "
        f"rows_quarantined, error, updated_at FROM {{db}}.pipeline_runs FINAL "
        f"WHERE {{pipeline:String}} = '' OR pipeline = {{pipeline:String}} "
        f"ORDER BY started_at DESC LIMIT {{limit:UInt32}}",
        {"pipeline": pipeline or "", "limit": limit, "abandoned": ABANDONED_AFTER_S},
    )


def pipeline_health(warehouse: Warehouse, *, window_hours: int = 24) -> list[dict[str, Any]]:
    """Per pipeline over the last `window_hours`, from `pipeline_runs` (not process memory):
    runs, success rate, rows, last run and its status, last error, and an overall status:
    healthy (>= 95% success and the last run did not fail), degraded (>= 80%), else unhealthy.
    An abandoned run (its process died while it ran) counts as a failure."""
    rows = warehouse.query_rows(
        "SELECT pipeline, count() AS runs, countIf(status = 'success') AS succeeded, "
        "countIf(status IN ('failed', 'abandoned')) AS failed, countIf(status = 'running') AS running, "
        "countIf(status = 'abandoned') AS abandoned, "
        "sum(rows_in) AS rows_in, sum(rows_valid) AS rows_valid, sum(rows_quarantined) AS rows_quarantined, "
        "max(started_at) AS last_run_at, argMax(status, started_at) AS last_status, "
        "argMaxIf(error, started_at, status = 'failed') AS last_error "
        f"FROM (SELECT pipeline, {_STATUS} AS status, rows_in, rows_valid, rows_quarantined, started_at, error "
        "FROM {db}.pipeline_runs FINAL WHERE started_at >= now64(3) - toIntervalHour({hours:UInt32})) "
        "GROUP BY pipeline ORDER BY pipeline", {"hours": window_hours, "abandoned": ABANDONED_AFTER_S})
    for row in rows:
        finished = row["succeeded"] + row["failed"]
        rate = row["succeeded"] / finished if finished else None
        row["success_rate"] = rate
        if rate is None:
            row["status"] = "healthy" if row["running"] else "unknown"
        elif rate >= 0.95 and row["last_status"] not in ("failed", "abandoned"):
            row["status"] = "healthy"
        elif rate >= 0.8:
            row["status"] = "degraded"
        else:
            row["status"] = "unhealthy"
        row["last_error"] = row["last_error"] or None
    return rows
