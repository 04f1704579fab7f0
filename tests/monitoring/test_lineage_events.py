"""OpenLineage run events: in the lineage_events table in the spec's shape, one row per event
however often it is emitted, and POSTed to a server (the aiohttp fixture server on 127.0.0.1)
that, down or slow, neither fails nor holds up the run.

The warehouse is chdb in this process (a data dir of this module's own; no Ray), and a ClickHouse
server too when SENTINEL_TEST_CLICKHOUSE_URL is set.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import SecretStr

from sentinel_ray.config import Settings, load_settings
from sentinel_ray.monitoring import lineage_events
from sentinel_ray.monitoring.lineage_events import LineageDataset, LineageEmitter, events_of, recent
from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.warehouse import ClickHouseWarehouse
from tests.fakes.net import free_port
from tests.fakes.server import FakeService, Reply

SERVER_URL = os.environ.get("SENTINEL_TEST_CLICKHOUSE_URL")
UTC = dt.timezone.utc
API_KEY = "ol-test-key-5f3c9a"
LINEAGE_PATH = "/api/v1/lineage"


@pytest.fixture(scope="module", params=["chdb", "server"])
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseWarehouse]:
    if request.param == "server":
        if not SERVER_URL:
            pytest.skip("set SENTINEL_TEST_CLICKHOUSE_URL=http://host:8123 to test against a ClickHouse server")
        dsn = SERVER_URL
    else:
        dsn = f"chdb://{tmp_path_factory.mktemp('chdb-lineage')}"
    wh = ClickHouseWarehouse(dsn, "sentinel_test_lineage")
    wh.command("DROP DATABASE IF EXISTS {db}")
    wh.ensure_schema()
    yield wh
    wh.command("DROP DATABASE IF EXISTS {db}")
    wh.close()


@pytest.fixture
def settings(warehouse: ClickHouseWarehouse, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, warehouse_dsn=warehouse.dsn, warehouse_database=warehouse.database,
                    lake_uri=str(tmp_path / "lake"))


def _with_server(settings: Settings, url: str, **more: Any) -> Settings:
    """`settings` with the server set, validated as a start would (the URL an AnyHttpUrl)."""
    return Settings(**{**settings.model_dump(), "openlineage_url": url, "openlineage_api_key": SecretStr(API_KEY),
                       **more})


def _run_id(job: str = "backfill") -> str:
    return f"{job}-{uuid.uuid4().hex[:12]}"


RAW = LineageDataset.lake("raw/source=replay")
WAREHOUSE_PRICES = LineageDataset.warehouse("prices")
CURATED_PRICES = LineageDataset.lake("curated/dataset=prices", schema="prices")
QUARANTINE_PRICES = LineageDataset.lake("quarantine/dataset=prices", schema="prices")
OUTPUTS = (WAREHOUSE_PRICES, CURATED_PRICES, QUARANTINE_PRICES)
PARAMS = {"source": "replay", "start": dt.date(2026, 11, 5), "end": dt.date(2026, 11, 9), "force": False}


def _count(wh: ClickHouseWarehouse, run_id: str, *, final: bool = True) -> int:
    return wh.query_rows(f"SELECT count() AS n FROM {{db}}.lineage_events {'FINAL' if final else ''} "
                         "WHERE run_id = {r:String}", {"r": run_id})[0]["n"]


def _facets_are_spec_facets(facets: dict[str, Any]) -> None:
    for name, facet in facets.items():
        assert facet["_producer"] == lineage_events.PRODUCER, name
        assert facet["_schemaURL"].startswith("https://openlineage.io/spec/") and "#/$defs/" in facet["_schemaURL"]


def assert_run_event(event: dict[str, Any]) -> None:
    """What the OpenLineage spec (2-0-2, RunEvent) requires of a run event, checked field by field."""
    assert {"eventTime", "producer", "schemaURL", "run", "job"} <= set(event)
    assert event["schemaURL"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    assert event["producer"] == lineage_events.PRODUCER and ":" in event["producer"]  # a URI
    assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
    when = dt.datetime.fromisoformat(event["eventTime"])  # RFC 3339: a date, a time and an offset
    assert "T" in event["eventTime"] and when.tzinfo is not None and event["eventTime"].endswith("Z")
    assert str(uuid.UUID(event["run"]["runId"])) == event["run"]["runId"]
    assert isinstance(event["job"]["namespace"], str) and event["job"]["name"]
    for key in ("inputs", "outputs"):
        for d in event.get(key, []):
            assert isinstance(d["namespace"], str) and d["namespace"] and d["name"]
            _facets_are_spec_facets(d.get("facets", {}))
            _facets_are_spec_facets(d.get("inputFacets" if key == "inputs" else "outputFacets", {}))
    _facets_are_spec_facets(event["run"].get("facets", {}))
    _facets_are_spec_facets(event["job"].get("facets", {}))


# --- the table -----------------------------------------------------------------------------

def test_start_and_complete_land_in_the_table_in_the_spec_shape(warehouse: ClickHouseWarehouse,
                                                                 settings: Settings) -> None:
    emitter = LineageEmitter(settings, warehouse)
    run_id = _run_id()
    run = emitter.start(run_id, job="backfill", inputs=[RAW], outputs=OUTPUTS, params=PARAMS)
    run.complete({WAREHOUSE_PRICES: 1_234, "curated/dataset=prices": 1_234, QUARANTINE_PRICES: 7})

    events = events_of(warehouse, run_id)
    assert [e["event_type"] for e in events] == ["START", "COMPLETE"]
    start, complete = (e["event"] for e in events)
    for row in events:
        assert_run_event(row["event"])
        assert row["event"]["eventType"] == row["event_type"] and row["run_id"] == run_id and row["job"] == "backfill"
        assert row["inputs"] == row["event"]["inputs"] and row["outputs"] == row["event"]["outputs"]
        assert row["event_time"] == dt.datetime.fromisoformat(row["event"]["eventTime"])
        assert row["error"] is None

    # one run: the same runId, uuid5 of the run id, different event ids
    assert start["run"]["runId"] == complete["run"]["runId"] == emitter.run_uuid(run_id) == run.run_uuid
    assert uuid.UUID(start["run"]["runId"]).version == 5
    assert len({e["event_id"] for e in events}) == 2

    # names: the job in the warehouse database's namespace, datasets where they live
    db, lake = settings.warehouse_database, settings.resolved_lake_uri
    assert start["job"] == {**start["job"], "namespace": f"sentinel-ray://{db}", "name": "backfill"}
    assert [(d["namespace"], d["name"]) for d in start["inputs"]] == [("file", f"{lake}/raw/source=replay")]
    warehouse_ns = lineage_events.warehouse_namespace(warehouse.dsn)
    assert warehouse_ns == warehouse.dsn if warehouse.embedded else warehouse_ns.startswith("clickhouse://")
    assert [(d["namespace"], d["name"]) for d in start["outputs"]] == [
        (warehouse_ns, f"{db}.prices"), ("file", f"{lake}/curated/dataset=prices"),
        ("file", f"{lake}/quarantine/dataset=prices")]
    assert "facets" not in start["inputs"][0]  # the raw zone keeps payloads as received: no schema

    # the schema facet: schemas.py's fields, ClickHouse types in the warehouse, Arrow types in the lake
    table_schema, curated_schema, quarantine_schema = (d["facets"]["schema"]["fields"] for d in start["outputs"])
    assert [(f["name"], f["type"], f["ordinal_position"]) for f in table_schema] == [
        (f.name, f.kind.clickhouse(not f.required), i) for i, f in enumerate(PRICES.fields, 1)]
    assert table_schema[0]["description"] == PRICES.field("ticker").doc
    assert [(f["name"], f["type"]) for f in curated_schema] == [(f.name, str(f.type)) for f in PRICES.arrow_schema]
    assert [f["name"] for f in quarantine_schema] == PRICES.column_names + ["reject_reason"]

    # rows written, on the COMPLETE only
    assert all("outputFacets" not in d for d in start["outputs"])
    assert [d["outputFacets"]["outputStatistics"]["rowCount"] for d in complete["outputs"]] == [1_234, 1_234, 7]

    # the run's parameters and engine, on every event
    for event in (start, complete):
        facets = event["run"]["facets"]
        assert {p["key"]: p["value"] for p in facets["executionParameters"]["parameters"]} == {
            "source": "replay", "start": "2026-11-05", "end": "2026-11-09", "force": "false"}
        assert facets["processing_engine"]["name"] == "Ray" and facets["processing_engine"]["version"]
        assert event["job"]["facets"]["jobType"]["processingType"] == "BATCH"


def test_a_fail_carries_the_error_message_and_stack(warehouse: ClickHouseWarehouse, settings: Settings) -> None:
    emitter = LineageEmitter(settings, warehouse)
    run_id = _run_id("replay")
    run = emitter.start(run_id, job="replay", inputs=[RAW], outputs=[WAREHOUSE_PRICES])
    try:
        raise RuntimeError("day 2026-11-05: the raw zone has no payloads")
    except RuntimeError as e:
        returned = run.fail(e)

    events = events_of(warehouse, run_id)
    assert [e["event_type"] for e in events] == ["START", "FAIL"]
    fail = events[1]
    assert fail["event"] == returned
    assert_run_event(fail["event"])
    facet = fail["event"]["run"]["facets"]["errorMessage"]
    assert facet["message"] == fail["error"] == "RuntimeError: day 2026-11-05: the raw zone has no payloads"
    assert facet["programmingLanguage"] == "python"
    assert "Traceback" in facet["stackTrace"] and 'raise RuntimeError("day 2026-11-05' in facet["stackTrace"]
    assert facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json")
    assert fail["event"]["run"]["runId"] == events[0]["event"]["run"]["runId"]
    assert all("outputFacets" not in d for d in fail["event"]["outputs"])

    # a message alone, from a run started by another process (nothing but the run id in common)
    other = _run_id("stream")
    LineageEmitter(settings, warehouse).fail(other, job="stream.prices", error="dead-lettered after 5 failures")
    [row] = events_of(warehouse, other)
    assert row["error"] == "dead-lettered after 5 failures" and "stackTrace" not in row["event"]["run"]["facets"][
        "errorMessage"]
    assert row["event"]["run"]["runId"] == emitter.run_uuid(other)


def test_a_fail_never_raises_even_when_the_warehouse_cannot_take_it(settings: Settings,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    class Down:
        database = settings.warehouse_database

        def insert(self, *_: object) -> int:
            raise ConnectionError("warehouse down")

    emitter = LineageEmitter(settings, Down())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger=lineage_events.__name__):
        event = emitter.fail("backfill-x", job="backfill", error=ValueError("the run's own error"))
    assert event["eventType"] == "FAIL" and "could not store the FAIL event of run backfill-x" in caplog.text
    with pytest.raises(ConnectionError):  # a START or COMPLETE fails as the run's own writes would
        emitter.start("backfill-x", job="backfill")
    with caplog.at_level(logging.WARNING, logger=lineage_events.__name__):  # nor a caller's slip
        assert emitter.fail("backfill-x", job="backfill", error="x", event_time=dt.datetime(2026, 11, 5)) is None
    assert "could not build the FAIL event of run backfill-x" in caplog.text


def test_re_emitting_an_event_changes_nothing(warehouse: ClickHouseWarehouse, settings: Settings) -> None:
    emitter = LineageEmitter(settings, warehouse)
    run_id, neighbour = _run_id("stream"), _run_id("stream")
    t0 = dt.datetime(2026, 11, 5, 4, 0, 0, 123456, tzinfo=UTC)
    emitter.start(neighbour, job="stream.prices", inputs=[LineageDataset.stream("sentinel:prices", "prices")])

    def deliver(event_time: dt.datetime | None) -> dict[str, Any]:
        run = emitter.start(run_id, job="stream.prices", inputs=[LineageDataset.stream("sentinel:prices", "prices")],
                            outputs=[WAREHOUSE_PRICES], params={"entries": 3}, event_time=event_time)
        return run.complete({"prices": 3}, event_time=event_time and event_time + dt.timedelta(seconds=1))

    first = deliver(t0)
    assert _count(warehouse, run_id) == 2
    stored = [r["event"] for r in events_of(warehouse, run_id)]
    for _ in range(3):  # a redelivered batch: the same events again
        assert deliver(t0) == first
    assert _count(warehouse, run_id) == 2 and [r["event"] for r in events_of(warehouse, run_id)] == stored
    warehouse.command("OPTIMIZE TABLE {db}.lineage_events FINAL")
    assert _count(warehouse, run_id, final=False) == 2  # merged away, not hidden by FINAL only

    deliver(None)  # emitted again later: still one row per event, the latest emission's
    events = events_of(warehouse, run_id)
    assert _count(warehouse, run_id) == 2 and [e["event_type"] for e in events] == ["START", "COMPLETE"]
    assert {e["event"]["run"]["runId"] for e in events} == {stored[0]["run"]["runId"]}
    assert all(e["event_time"] > t0 + dt.timedelta(seconds=1) for e in events)
    assert _count(warehouse, neighbour) == 1  # another run's event untouched


def test_the_run_uuid_is_the_run_ids_in_any_process_and_differs_per_deployment(warehouse: ClickHouseWarehouse,
                                                                                settings: Settings) -> None:
    import pickle

    a, b = LineageEmitter(settings, warehouse), LineageEmitter(settings, warehouse)
    assert a.run_uuid("backfill-1") == b.run_uuid("backfill-1") != a.run_uuid("backfill-2")
    elsewhere = LineageEmitter(settings.model_copy(update={"warehouse_database": "another"}), warehouse)
    assert elsewhere.run_uuid("backfill-1") != a.run_uuid("backfill-1")  # stream keys repeat across deployments
    copied = pickle.loads(pickle.dumps(LineageEmitter(settings, _Picklable(warehouse.database))))  # into Ray
    assert copied.run_uuid("backfill-1") == a.run_uuid("backfill-1")


class _Picklable:
    def __init__(self, database: str) -> None:
        self.database = database


def test_recent_events_newest_first_per_job(warehouse: ClickHouseWarehouse, settings: Settings) -> None:
    emitter = LineageEmitter(settings, warehouse)
    job = f"replay-{uuid.uuid4().hex[:6]}"  # this test's own job name: other tests share the database
    t0 = dt.datetime(2026, 11, 6, 9, 0, tzinfo=UTC)
    runs = [_run_id(job) for _ in range(3)]
    for i, run_id in enumerate(runs):
        emitter.start(run_id, job=job, event_time=t0 + dt.timedelta(minutes=i)).complete(
            event_time=t0 + dt.timedelta(minutes=i, seconds=30))
    # later than any other test's events (they are emitted now)
    emitter.start(_run_id("other"), job=f"{job}-other", event_time=dt.datetime.now(UTC) + dt.timedelta(days=1))

    latest = recent(warehouse, job=job, limit=4)
    assert [(e["run_id"], e["event_type"]) for e in latest] == [
        (runs[2], "COMPLETE"), (runs[2], "START"), (runs[1], "COMPLETE"), (runs[1], "START")]
    assert [e["event_time"] for e in latest] == sorted((e["event_time"] for e in latest), reverse=True)
    assert recent(warehouse, limit=1)[0]["job"] == f"{job}-other"  # every job: the newest event
    assert recent(warehouse, job="no-such-job") == []


def test_output_stats_must_name_an_output(warehouse: ClickHouseWarehouse, settings: Settings) -> None:
    emitter = LineageEmitter(settings, warehouse)
    run_id = _run_id()
    with pytest.raises(ValueError, match=r"'posts' names no output of the run \(its outputs: warehouse:prices\)"):
        emitter.complete(run_id, job="backfill", outputs=[WAREHOUSE_PRICES], output_stats={"posts": 1})
    with pytest.raises(ValueError, match="names more than one output"):
        emitter.complete(run_id, job="backfill", outputs=[WAREHOUSE_PRICES, LineageDataset.lake("prices")],
                         output_stats={"prices": 1})
    with pytest.raises(KeyError, match="unknown dataset 'pricez'"):
        LineageDataset.lake("curated/dataset=prices", schema="pricez")
    assert _count(warehouse, run_id) == 0


# --- the server ----------------------------------------------------------------------------

def test_the_server_receives_every_event_with_the_bearer_key(warehouse: ClickHouseWarehouse, settings: Settings,
                                                             fake_service: FakeService) -> None:
    fake_service.route("POST", LINEAGE_PATH, Reply(status=201))
    run_id = _run_id()
    with LineageEmitter(_with_server(settings, fake_service.url), warehouse) as emitter:
        run = emitter.start(run_id, job="backfill", inputs=[RAW], outputs=[WAREHOUSE_PRICES], params=PARAMS)
        run.complete({"prices": 10})
        assert emitter.flush(10)
        assert emitter.http_stats == {"sent": 2, "failed": 0, "dropped": 0, "pending": 0}

    seen = fake_service.seen(LINEAGE_PATH)
    assert [r.method for r in seen] == ["POST", "POST"]
    assert all(r.headers["Authorization"] == f"Bearer {API_KEY}" for r in seen)
    assert all(r.headers["Content-Type"] == "application/json" for r in seen)
    # what the server got is what the table holds, byte for byte
    stored = warehouse.query_rows("SELECT event FROM {db}.lineage_events FINAL WHERE run_id = {r:String} "
                                  "ORDER BY event_type = 'COMPLETE'", {"r": run_id})
    assert [r.body.decode() for r in seen] == [r["event"] for r in stored]
    assert [json.loads(r.body)["eventType"] for r in seen] == ["START", "COMPLETE"]


def test_a_base_url_with_a_path_keeps_it(warehouse: ClickHouseWarehouse, settings: Settings,
                                         fake_service: FakeService) -> None:
    fake_service.route("POST", "/lineage/api/v1/lineage", Reply(status=200))
    with LineageEmitter(_with_server(settings, f"{fake_service.url}/lineage", openlineage_api_key=None),
                        warehouse) as emitter:
        emitter.start(_run_id(), job="backfill")
        assert emitter.flush(10) and emitter.http_stats["sent"] == 1
    assert "Authorization" not in fake_service.seen("/lineage/api/v1/lineage")[0].headers


def test_a_down_server_neither_raises_nor_blocks(warehouse: ClickHouseWarehouse, settings: Settings,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    down = _with_server(settings, f"http://127.0.0.1:{free_port()}", openlineage_timeout_s=1.0)
    run_ids = [_run_id() for _ in range(5)]
    with caplog.at_level(logging.DEBUG):
        emitter = LineageEmitter(down, warehouse)
        started = time.monotonic()
        for run_id in run_ids:
            emitter.start(run_id, job="backfill", outputs=[WAREHOUSE_PRICES]).complete({"prices": 1})
        emitting_s = time.monotonic() - started
        assert emitter.flush(10)
        closed = time.monotonic()
        assert emitter.close()
        assert time.monotonic() - closed < 1.0
    assert emitting_s < 2.0, f"10 events took {emitting_s:.2f} s to emit with the server down"
    assert emitter.http_stats == {"sent": 0, "failed": 10, "dropped": 0, "pending": 0}
    assert all(_count(warehouse, r) == 2 for r in run_ids)  # the table has every event

    ours = [r for r in caplog.records if r.name == lineage_events.__name__ and r.levelno >= logging.WARNING]
    assert len(ours) == 2, [r.getMessage() for r in ours]  # the first failure, then the rest at close
    assert "ConnectionError" in ours[0].getMessage() and "1 event(s) not delivered" in ours[0].getMessage()
    assert "9 more event(s) not delivered (10 failed, 0 dropped" in ours[1].getMessage()
    assert API_KEY not in caplog.text and all(API_KEY not in str(r.args) for r in caplog.records)

    emitter.start(_run_id(), job="backfill")  # after close: the table still, the server no more
    assert emitter.http_stats["dropped"] == 1


def test_a_slow_server_does_not_hold_up_a_run(warehouse: ClickHouseWarehouse, settings: Settings,
                                              fake_service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_service.route("POST", LINEAGE_PATH, Reply(status=201, delay_s=5))
    monkeypatch.setattr(lineage_events, "QUEUE_CAPACITY", 2)
    slow = _with_server(settings, fake_service.url, openlineage_timeout_s=0.3)
    emitter = LineageEmitter(slow, warehouse)
    run_id = _run_id()
    started = time.monotonic()
    run = emitter.start(run_id, job="backfill", outputs=[WAREHOUSE_PRICES])
    for _ in range(4):  # past the queue's room: dropped, not waited for
        run.complete({"prices": 1})
    assert time.monotonic() - started < 1.0
    assert _count(warehouse, run_id) == 2

    closed = time.monotonic()
    assert not emitter.close(0.3)  # not delivered yet, and it does not wait longer than told
    assert time.monotonic() - closed < 0.8
    deadline = time.monotonic() + 10  # each POST gives up after its timeout (one retry)
    while emitter.http_stats["pending"] and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = emitter.http_stats
    assert stats["sent"] == 0 and stats["pending"] == 0 and stats["dropped"] >= 2
    assert stats["failed"] + stats["dropped"] == 5


# --- settings ------------------------------------------------------------------------------

def test_the_server_settings() -> None:
    s = load_settings({"SENTINEL_OPENLINEAGE_URL": "http://marquez:5000", "SENTINEL_OPENLINEAGE_API_KEY": API_KEY,
                       "SENTINEL_OPENLINEAGE_TIMEOUT_S": "2.5"})
    assert str(s.openlineage_url) == "http://marquez:5000/" and s.openlineage_timeout_s == 2.5
    assert API_KEY not in repr(s) and s.openlineage_api_key.get_secret_value() == API_KEY
    assert load_settings({"SENTINEL_OPENLINEAGE_URL": "", "SENTINEL_OPENLINEAGE_API_KEY": ""}).openlineage_url is None
    assert load_settings({}).openlineage_url is None  # the table only, by default
    with pytest.raises(ValueError, match="openlineage_url"):
        load_settings({"SENTINEL_OPENLINEAGE_URL": "marquez:5000"})
    with pytest.raises(ValueError, match="must not carry credentials; set openlineage_api_key instead") as refused:
        load_settings({"SENTINEL_OPENLINEAGE_URL": f"http://user:{API_KEY}@marquez:5000"})
    assert API_KEY not in str(refused.value)
    assert load_settings(s.as_env()).openlineage_url == s.openlineage_url  # published to Ray workers and jobs
