"""The backfill through a real local Ray, chdb and the lake: exact counts, idempotent re-runs."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.ingest.backfill import BackfillError, run_backfill
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse

pytestmark = pytest.mark.ray


def _expected(settings: Settings, start: dt.date, end: dt.date) -> dict:
    return ReplaySource(seed=settings.replay_seed, bad_rate=settings.replay_bad_rate).expected_counts(start, end)


def _warehouse_counts(settings: Settings) -> dict[str, int]:
    wh = connect_warehouse(settings)
    return {name: wh.query_rows(f"SELECT count() AS n FROM {{db}}.{name}")[0]["n"] for name in ("prices", "posts")}


def _lake_snapshot(settings: Settings) -> dict[str, object]:
    lake = Lake(settings.resolved_lake_uri)
    snap: dict[str, object] = {}
    for zone in ("raw", "curated", "quarantine"):
        snap[f"{zone}_files"] = [f.split("/" + zone + "/", 1)[1] for f in lake.list_files(zone)]
    for zone in ("curated", "quarantine"):
        for name in ("prices", "posts"):
            table = lake.read(zone, name).drop_columns(["run_id", "ingested_at"])
            snap[f"{zone}_{name}"] = table.sort_by([(c, "ascending") for c in table.column_names
                                                   if not pa.types.is_list(table.schema.field(c).type)])
    return snap


def test_counts_match_what_the_source_produced(backfilled) -> None:
    settings, summary, start, end = backfilled
    expected = _expected(settings, start, end)
    lake = Lake(settings.resolved_lake_uri)
    for name in ("prices", "posts"):
        exp = expected[name]
        assert summary.rows_in[name] == exp["rows"]
        assert summary.rows_valid[name] == exp["valid"]
        assert summary.rows_quarantined[name] == sum(exp["rejected"].values())
        assert summary.reasons[name] == exp["rejected"]
        assert lake.read("curated", name).num_rows == exp["valid"]
        quarantined = lake.read("quarantine", name)
        assert quarantined.num_rows == sum(exp["rejected"].values())
        by_reason = quarantined.group_by("reject_reason").aggregate([([], "count_all")]).to_pylist()
        assert {r["reject_reason"]: r["count_all"] for r in by_reason} == exp["rejected"]
    assert _warehouse_counts(settings) == {"prices": expected["prices"]["valid"], "posts": expected["posts"]["valid"]}
    assert expected["prices"]["valid"] > 0 and all(expected[n]["rejected"] for n in ("prices", "posts"))


def test_raw_zone_keeps_every_payload(backfilled) -> None:
    settings, _, start, end = backfilled
    lake = Lake(settings.resolved_lake_uri)
    raw = lake.list_files("raw")
    days = {(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)}
    assert {f.split("/date=")[1].split("/")[0] for f in raw} == days
    lines = sum(len(open(f, "rb").read().splitlines()) for f in lake.list_files("raw", "prices"))
    assert lines == _expected(settings, start, end)["prices"]["rows"]


def test_curated_rows_are_clean(backfilled) -> None:
    settings, *_ = backfilled
    prices = Lake(settings.resolved_lake_uri).read("curated", "prices")
    assert pc.all(pc.greater(prices.column("low"), 0)).as_py()
    assert pc.all(pc.less_equal(prices.column("low"), prices.column("high"))).as_py()
    keys = prices.group_by(["ticker", "exchange", "interval", "source", "ts"]).aggregate([([], "count_all")])
    assert keys.num_rows == prices.num_rows  # no duplicates


def test_second_run_skips_the_finished_days(backfilled) -> None:
    settings, first, start, end = backfilled
    before_lake, before_wh = _lake_snapshot(settings), _warehouse_counts(settings)
    second = run_backfill(settings, "replay", start, end)
    assert (second.days, second.skipped, second.total_in) == (0, first.days, 0)
    assert _warehouse_counts(settings) == before_wh
    after_lake = _lake_snapshot(settings)
    assert all(after_lake[key] == before_lake[key] for key in before_lake)


def test_second_run_changes_nothing(backfilled) -> None:
    settings, first, start, end = backfilled
    before_lake, before_wh = _lake_snapshot(settings), _warehouse_counts(settings)
    second = run_backfill(settings, "replay", start, end, force=True)
    assert second.days == first.days and second.skipped == 0
    assert (second.rows_in, second.rows_valid, second.rows_quarantined) == (
        first.rows_in, first.rows_valid, first.rows_quarantined)
    after_lake = _lake_snapshot(settings)
    assert after_lake.keys() == before_lake.keys()
    for key in before_lake:
        assert after_lake[key] == before_lake[key], key
    # counted without FINAL: the re-inserted rows were merged away, not merely hidden
    assert _warehouse_counts(settings) == before_wh


def test_runs_are_recorded(backfilled) -> None:
    from sentinel_ray.monitoring.runs import recent_runs

    settings, summary, *_ = backfilled
    runs = {r["run_id"]: r for r in recent_runs(connect_warehouse(settings), pipeline="backfill")}
    run = runs[summary.run_id]
    assert run["status"] == "success" and run["ended_at"] is not None
    assert (run["rows_in"], run["rows_valid"], run["rows_quarantined"]) == (
        summary.total_in, summary.total_valid, summary.total_quarantined)


def test_bad_range_and_source_fail_clearly(backfilled) -> None:
    settings, *_ = backfilled
    with pytest.raises(BackfillError, match="before start"):
        run_backfill(settings, "replay", dt.date(2026, 11, 5), dt.date(2026, 11, 1))
    with pytest.raises(Exception, match="unknown source 'nope'"):
        run_backfill(settings, "nope", dt.date(2026, 11, 5), dt.date(2026, 11, 5))


def test_quality_metrics_of_every_day_add_up_to_the_run(backfilled) -> None:
    settings, summary, *_ = backfilled
    rows = connect_warehouse(settings).query_rows(
        "SELECT dataset, sumIf(value, metric = 'rows_in') AS rows_in, sumIf(value, metric = 'rows_valid') AS valid, "
        "countDistinct(batch) AS batches FROM {db}.quality_metrics FINAL WHERE run_id = {run:String} "
        "GROUP BY dataset", {"run": summary.run_id})
    got = {r["dataset"]: (r["rows_in"], r["valid"]) for r in rows}
    assert got == {name: (summary.rows_in[name], summary.rows_valid[name]) for name in summary.rows_in}
    assert all(r["batches"] == summary.days for r in rows if r["dataset"] == "posts")


def test_features_one_row_per_valid_1m_bar(backfilled) -> None:
    settings, *_ = backfilled
    wh = connect_warehouse(settings)
    bars = wh.query_rows("SELECT count() AS n FROM (SELECT DISTINCT ticker, exchange, ts FROM {db}.prices FINAL "
                         "WHERE interval = '1m')")[0]["n"]
    features = wh.query_rows("SELECT count() AS n, uniqExact(ticker, exchange, ts) AS k FROM {db}.features_1m")[0]
    assert bars > 0 and features == {"n": bars, "k": bars}
    days = wh.query_rows("SELECT count() AS n FROM (SELECT DISTINCT ticker, exchange, toDate(ts, 'Asia/Kolkata') "
                         "FROM {db}.prices FINAL WHERE interval = '1m')")[0]["n"]
    assert wh.query_rows("SELECT count() AS n FROM {db}.features_1d FINAL")[0]["n"] == days
    lake = Lake(settings.resolved_lake_uri)
    assert lake.read("curated", "features_1m").num_rows == bars
