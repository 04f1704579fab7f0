"""Quarantine replay moves exactly the rows that now pass, exactly once."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from sentinel_ray.monitoring.lineage_events import LineageEmitter, events_of
from sentinel_ray.pipeline.store import process_and_store
from sentinel_ray.pipeline.quarantine_replay import replay_quarantine
from sentinel_ray.quality.quarantine import list_quarantined
from sentinel_ray.quality.rules import default_rules
from sentinel_ray.schemas import POSTS
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse

pytestmark = pytest.mark.ray
UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 20)


def _post(i: int, text: str, ts: dt.datetime) -> dict:
    return {"platform": "x", "post_id": f"p{i}", "author": "a", "text": text, "ts": ts, "url": None,
            "engagement": 1, "tickers": ["TCS"], "source": "x", "run_id": None, "ingested_at": ts}


def test_replay_moves_rows_that_now_pass_once(ray_session, isolated_settings) -> None:
    lake, wh = Lake(isolated_settings.resolved_lake_uri), connect_warehouse(isolated_settings)
    wh.ensure_schema()
    t = dt.datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    rows = [_post(1, "TCS results are strong", t),                       # valid
            _post(2, "TCS to 5000 soon", t + dt.timedelta(hours=2)),       # "future" when first validated
            _post(3, "TCS breakout today", t + dt.timedelta(hours=3)),     # "future" when first validated
            _post(4, "gm", t),                                             # too short: stays
            _post(1, "TCS results are strong", t)]                         # duplicate: never replayed
    first_clock = t + dt.timedelta(minutes=1)  # the clock of the first run: p2, p3 look like the future
    result = process_and_store(pa.Table.from_pylist(rows, schema=POSTS.record_schema), POSTS, lake=lake,
                               warehouse=wh, day=DAY, batch_key="x-batch", now=first_clock, run_id="r1",
                               ingested_at=None, pipeline="stream")
    assert result.reason_counts() == {"future_timestamp": 2, "text_length": 1, "duplicate": 1}
    listed = list_quarantined(lake, "posts", rule="future_timestamp")
    assert sorted(r["post_id"] for r in listed) == ["p2", "p3"] and listed[0]["batch_date"] == DAY

    emitter = LineageEmitter(isolated_settings, wh)
    summary = replay_quarantine(lake, wh, "posts", lineage=emitter)  # now the clock has passed: p2 and p3 pass
    emitter.close()
    assert (summary.examined, summary.requalified, summary.still_quarantined) == (3, 2, 1)
    # the moved rows name the run, and the run the rules that let them through (what a trace shows)
    moved = wh.query_rows("SELECT post_id, run_id FROM {db}.posts FINAL WHERE post_id IN ('p2', 'p3') ORDER BY post_id")
    assert [(r["post_id"], r["run_id"]) for r in moved] == [("p2", summary.run_id), ("p3", summary.run_id)]
    [run] = wh.query_rows("SELECT params FROM {db}.pipeline_runs FINAL WHERE run_id = {r:String}",
                          {"r": summary.run_id})
    assert json.loads(run["params"])["rules_version"] == default_rules().version
    events = events_of(wh, summary.run_id)
    assert [(e["event_type"], e["job"]) for e in events] == [("START", "quarantine_replay"),
                                                             ("COMPLETE", "quarantine_replay")]
    [quarantine] = events[0]["inputs"]
    assert quarantine["name"].endswith("/quarantine/dataset=posts")
    assert summary.reasons == {"text_length": 1}
    assert sorted(lake.read("curated", "posts").column("post_id").to_pylist()) == ["p1", "p2", "p3"]
    remaining = lake.read("quarantine", "posts")
    assert sorted(zip(remaining.column("post_id").to_pylist(), remaining.column("reject_reason").to_pylist())) == [
        ("p1", "duplicate"), ("p4", "text_length")]

    again = replay_quarantine(lake, wh, "posts")
    assert (again.requalified, again.examined) == (0, 1)
    assert lake.read("curated", "posts").num_rows == 3
    assert wh.query_rows("SELECT count() AS n FROM {db}.posts")[0]["n"] == 3
    runs = wh.query_rows("SELECT rows_valid FROM {db}.pipeline_runs FINAL WHERE pipeline = 'quarantine_replay' "
                         "ORDER BY started_at")
    assert [r["rows_valid"] for r in runs] == [2, 0]


def test_replay_after_a_rules_file_change(ray_session, isolated_settings, tmp_path) -> None:
    from sentinel_ray.quality.rules import rules_for

    lake, wh = Lake(isolated_settings.resolved_lake_uri), connect_warehouse(isolated_settings)
    wh.ensure_schema()
    t = dt.datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    rows = [_post(1, "gm", t), _post(2, "TCS up", t), _post(3, "ok", t)]
    process_and_store(pa.Table.from_pylist(rows, schema=POSTS.record_schema), POSTS, lake=lake, warehouse=wh,
                      day=DAY, batch_key="x-batch", now=t + dt.timedelta(hours=1), run_id="r1", ingested_at=None,
                      pipeline="stream", rules=rules_for(isolated_settings))
    assert lake.read("curated", "posts").column("post_id").to_pylist() == ["p2"]

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("posts:\n  - name: text_length\n    min: 2\n")
    relaxed = isolated_settings.model_copy(update={"quality_rules_file": rules_file})
    summary = replay_quarantine(lake, wh, "posts", rule="text_length", rules=rules_for(relaxed))
    assert (summary.examined, summary.requalified) == (2, 2)
    assert sorted(lake.read("curated", "posts").column("post_id").to_pylist()) == ["p1", "p2", "p3"]
    assert lake.read("quarantine", "posts").num_rows == 0
    assert wh.query_rows("SELECT count() AS n FROM {db}.posts FINAL")[0]["n"] == 3
