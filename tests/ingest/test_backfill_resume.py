"""An interrupted backfill, started again, redoes only the days it had not finished."""
from __future__ import annotations

import datetime as dt

import pytest

from sentinel_ray.config import Settings
from sentinel_ray.ingest.backfill import Progress, finished_days, run_backfill
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse

pytestmark = pytest.mark.ray

START, END = dt.date(2026, 11, 5), dt.date(2026, 11, 10)  # Thursday .. Tuesday


class Interrupted(Exception):
    pass


def _stop_after(days: int):
    seen: list[Progress] = []

    def progress(p: Progress) -> None:
        seen.append(p)
        if p.days_done >= days:
            raise Interrupted(f"stopped after {p.days_done} days")

    return progress, seen


def _counts(settings: Settings) -> dict[str, int]:
    wh = connect_warehouse(settings)
    return {name: wh.query_rows(f"SELECT count() AS n FROM {{db}}.{name}")[0]["n"] for name in ("prices", "posts")}


def test_interrupted_run_resumes_where_it_stopped(ray_session: None, embedded_redis: str,
                                                   isolated_settings: Settings) -> None:
    settings = isolated_settings
    all_days = {START + dt.timedelta(days=i) for i in range((END - START).days + 1)}
    progress, seen = _stop_after(2)
    with pytest.raises(Interrupted):
        run_backfill(settings, "replay", START, END, progress=progress)
    warehouse = connect_warehouse(settings)
    done = finished_days(warehouse, "replay", START, END)
    assert 2 <= len(done) < len(all_days)
    assert seen[-1].days_total == len(all_days) and seen[-1].rows > 0

    resumed = run_backfill(settings, "replay", START, END)
    assert resumed.skipped == len(done) and resumed.days == len(all_days) - len(done)
    rows = warehouse.query_rows("SELECT toDate(day) AS d, run_id FROM {db}.backfill_days FINAL")
    assert {r["d"] for r in rows if r["run_id"] == resumed.run_id} == all_days - done
    assert {r["d"] for r in rows} == all_days

    expected = ReplaySource(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate).expected_counts(START, END)
    # without FINAL: rows a redone day re-inserted were merged away
    assert _counts(settings) == {name: expected[name]["valid"] for name in ("prices", "posts")}
    lake = Lake(settings.resolved_lake_uri)
    for name in ("prices", "posts"):
        assert lake.read("curated", name).num_rows == expected[name]["valid"]
        assert lake.read("quarantine", name).num_rows == sum(expected[name]["rejected"].values())
    runs = warehouse.query_rows("SELECT status FROM {db}.pipeline_runs FINAL ORDER BY started_at")
    assert [r["status"] for r in runs] == ["failed", "success"]

    again = run_backfill(settings, "replay", START, END)
    assert (again.days, again.skipped, again.total_in) == (0, len(all_days), 0)


def test_progress_counts_every_day_and_row(ray_session: None, embedded_redis: str,
                                           isolated_settings: Settings) -> None:
    seen: list[Progress] = []
    summary = run_backfill(isolated_settings, "replay", START, START + dt.timedelta(days=2), progress=seen.append)
    assert [p.days_done for p in seen] == sorted(p.days_done for p in seen)
    assert (seen[-1].days_done, seen[-1].days_total, seen[-1].rows) == (3, 3, summary.total_in)
    assert seen[-1].eta_s == 0 and "3/3 days" in seen[-1].render()


def test_the_eta_goes_at_the_pace_since_the_first_block_not_since_the_start() -> None:
    # 4 of 30 days after 6 s (worker start-up and the first block), then 4 more days a second
    assert Progress(4, 30, 1, 6.0, 4, 6.0).eta_s == 6.0 / 4 * 26  # one report: only the average there is
    later = Progress(8, 30, 1, 7.0, 4, 6.0)
    assert later.eta_s == 1.0 / 4 * 22 and "ETA 6s" in later.render()
    assert Progress(8, 30, 1, 7.0).eta_s == 7.0 / 8 * 22  # without a first report: since the start
    assert Progress(0, 30, 0, 1.0).eta_s != Progress(0, 30, 0, 1.0).eta_s  # nan: nothing done yet


def test_a_run_that_fails_before_its_first_day_is_recorded_failed(ray_session: None, embedded_redis: str,
                                                                  isolated_settings: Settings, monkeypatch) -> None:
    """Its lineage START could not be written (say): the run is failed in pipeline_runs, not
    left running for ever; the next run does the days."""
    from sentinel_ray.monitoring.lineage_events import LineageEmitter

    def refused(*args, **kwargs):
        raise RuntimeError("lineage_events refused the write")

    monkeypatch.setattr(LineageEmitter, "start", refused)
    with pytest.raises(RuntimeError, match="refused"):
        run_backfill(isolated_settings, "replay", START, START)
    monkeypatch.undo()
    warehouse = connect_warehouse(isolated_settings)
    runs = warehouse.query_rows("SELECT status, error FROM {db}.pipeline_runs FINAL WHERE pipeline = 'backfill'")
    assert [r["status"] for r in runs] == ["failed"] and "refused" in runs[0]["error"]
    assert run_backfill(isolated_settings, "replay", START, START).days == 1
