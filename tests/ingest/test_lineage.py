"""Lineage: every stored row names the raw payload it was read from and its place in it, and
`trace` follows a row back to that payload, the run that wrote it (with the rules version it
applied) and the row's quarantine history."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from sentinel_ray.config import Settings
from sentinel_ray.ingest.backfill import run_backfill
from sentinel_ray.ingest.lineage import LineageError, RowNotFound, trace
from sentinel_ray.ingest.webhook import publish_records
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import drain, make_consumer

pytestmark = pytest.mark.ray
DAY = dt.date(2026, 11, 5)


@pytest.fixture
def backfilled(ray_session, embedded_redis, isolated_settings: Settings) -> Settings:
    run_backfill(isolated_settings, "replay", DAY, DAY)
    return isolated_settings


def test_every_backfilled_row_names_its_payload_and_a_trace_reads_the_record_back(backfilled: Settings) -> None:
    wh, lake = connect_warehouse(backfilled), Lake(backfilled.resolved_lake_uri)
    for name in ("prices", "posts", "filings"):
        missing = wh.query_rows(f"SELECT count() AS n FROM {{db}}.{name} WHERE raw_id IS NULL OR raw_pos IS NULL")
        assert missing[0]["n"] == 0, name
    curated = lake.read("curated", "prices")
    assert curated.column("raw_id").null_count == 0
    row = wh.query_rows("SELECT ticker, exchange, interval, source, ts, close, volume, raw_id, raw_pos "
                        "FROM {db}.prices FINAL WHERE interval = '1m' ORDER BY ticker, ts LIMIT 1 OFFSET 100")[0]
    ts = row["ts"].replace(tzinfo=dt.timezone.utc)
    found = trace("prices", [row["ticker"], row["exchange"], "1m", row["source"], ts.isoformat()],
                  warehouse=wh, lake=lake)
    raw = found["raw"]
    assert raw["raw_id"] == row["raw_id"] == f"raw/source=replay/dataset=prices/date={DAY.isoformat()}/" \
                                            f"replay-{DAY.isoformat()}-0.ndjson"
    assert raw["request"].startswith("replay://prices/") and raw["bytes"] > 0
    record = raw["record"]  # the payload read again by today's parser, at the row's position
    assert (record["ticker"], record["ts"], record["close"], record["volume"]) == (
        row["ticker"], ts, row["close"], row["volume"])
    line = raw["body"].splitlines()[row["raw_pos"]]  # and the position is the line of the NDJSON body
    assert json.loads(line)["ticker"] == row["ticker"]
    run = found["run"]
    assert run["pipeline"] == "backfill" and run["status"] == "success"
    assert run["params"]["source"] == "replay" and run["params"]["rules_version"] == rules_for(backfilled).version
    assert found["quarantine"] == []


def test_a_pushed_row_traces_to_the_request_body_and_its_quarantine_history(
        ray_session, embedded_redis, isolated_settings: Settings, store, prefix) -> None:
    lake, wh = Lake(isolated_settings.resolved_lake_uri), connect_warehouse(isolated_settings)
    post = {"platform": "telegram", "post_id": "hook/7", "author": "bot", "text": "$SUZLON target 80 by Friday",
            "ts": "2026-11-06T05:00:00+05:30", "engagement": 12}
    short = {**post, "text": "hi"}  # too short: quarantined (text_length)
    for records in ([short], [{**post, "post_id": "hook/6"}, post]):
        body = json.dumps({"source": "tg-bot", "records": records}).encode()
        publish_records(store, "posts", "tg-bot", records, body=body, lake=lake)
        drain(make_consumer(isolated_settings, store, "posts-0", "posts"))
    found = trace("posts", ["telegram", "hook/7"], warehouse=wh, lake=lake)
    assert found["row"]["text"] == post["text"] and found["row"]["raw_pos"] == 1
    raw = found["raw"]
    assert raw["request"] == "POST /ingest/posts" and raw["record"] == post
    assert raw["raw_id"].startswith("raw/source=tg-bot/dataset=posts/date=")
    assert [q["reject_reason"] for q in found["quarantine"]] == ["text_length"]
    assert found["quarantine"][0]["raw_id"] != raw["raw_id"]  # the first request's body, kept too
    assert lake.read_raw(found["quarantine"][0]["raw_id"]).body == json.dumps(
        {"source": "tg-bot", "records": [short]}).encode()


def test_bad_keys_say_what_a_key_is(backfilled: Settings) -> None:
    wh, lake = connect_warehouse(backfilled), Lake(backfilled.resolved_lake_uri)
    with pytest.raises(LineageError, match="prices rows are keyed by ticker, exchange, interval, source, ts"):
        trace("prices", ["TCS"], warehouse=wh, lake=lake)
    with pytest.raises(LineageError, match="ts: give the time with its offset"):
        trace("prices", ["TCS", "NSE", "1m", "replay", "2026-11-05T04:10:00"], warehouse=wh, lake=lake)
    with pytest.raises(LineageError, match="unknown dataset"):
        trace("nope", ["x"], warehouse=wh, lake=lake)
    with pytest.raises(RowNotFound):
        trace("prices", ["TCS", "NSE", "1m", "replay", "2001-01-01T00:00:00Z"], warehouse=wh, lake=lake)


@pytest.fixture
def platform_env(backfilled: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(backfilled.resolved_data_dir))
    monkeypatch.setenv("SENTINEL_WAREHOUSE_DATABASE", backfilled.warehouse_database)
    monkeypatch.setenv("SENTINEL_LAKE_URI", backfilled.resolved_lake_uri)
    return backfilled


def test_lineage_and_replay_on_the_command_line(platform_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from sentinel_ray.cli import main

    row = connect_warehouse(platform_env).query_rows(
        "SELECT ticker, ts, raw_id, raw_pos FROM {db}.prices FINAL WHERE interval = '1m' ORDER BY ticker, ts LIMIT 1")[0]
    ts = row["ts"].replace(tzinfo=dt.timezone.utc).isoformat()
    assert main(["lineage", "prices", row["ticker"], "NSE", "1m", "replay", ts]) == 0
    out = capsys.readouterr().out
    assert f"payload  {row['raw_id']} (record {row['raw_pos']})" in out
    assert f"rules {rules_for(platform_env).version}" in out and "rejected never" in out
    assert main(["lineage", "prices", "TCS"]) == 2
    assert "keyed by ticker, exchange, interval, source, ts" in capsys.readouterr().err

    assert main(["replay", "--source", "replay", "--dataset", "prices", "--start", DAY.isoformat(),
                 "--end", DAY.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["payloads"], report["added"], report["changed"], report["removed"]) == (1, 0, 0, 0)
    assert report["rows_valid"] == report["rows_before"] > 0


def test_a_quarantine_replay_on_the_command_line_is_a_run_with_its_rules_and_lineage(
        platform_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from sentinel_ray.cli import main
    from sentinel_ray.monitoring.lineage_events import events_of

    assert main(["quarantine", "replay", "--dataset", "prices"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("quarantine replay ") and "re-validated" in out
    run_id = out.split()[2].rstrip(":")
    warehouse = connect_warehouse(platform_env)
    [run] = warehouse.query_rows("SELECT params FROM {db}.pipeline_runs FINAL WHERE run_id = {r:String}",
                                 {"r": run_id})
    assert json.loads(run["params"])["rules_version"] == rules_for(platform_env).version
    assert [e["event_type"] for e in events_of(warehouse, run_id)] == ["START", "COMPLETE"]
    # the rows it re-examined and kept name it: their quarantine history says which run and rules
    kept = Lake(platform_env.resolved_lake_uri).read("quarantine", "prices")
    assert run_id in set(kept.column("run_id").to_pylist())
