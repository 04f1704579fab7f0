"""The lake on S3 (a local moto server): every zone, whole-file publication, and the platform's
own scenarios run unchanged on an s3:// lake with exact counts."""
from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pytest

from sentinel_ray.records import RawPayload
from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.lake import Lake
from tests.ingest import test_backfill as backfill_tests
from tests.ingest import test_faults as fault_tests
from tests.ingest.conftest import DAY, ingest_settings, prefix, store  # noqa: F401 - fixtures
from tests.quality import test_quarantine as quarantine_tests
from tests.storage.conftest import BUCKET, S3_KEY_ID, S3_SECRET, bucket_keys, on_s3
from tests.storage.test_lake import _bars

UTC = dt.timezone.utc


def _prefix_of(settings) -> str:
    return settings.lake_uri.split(f"s3://{BUCKET}/", 1)[1]


def test_every_zone_on_s3(s3_settings, s3_endpoint) -> None:
    lake = Lake(s3_settings.resolved_lake_uri)
    assert lake.object_store and lake.ping()
    day = dt.date(2026, 11, 2)
    body = b'{"a": 1}\n{"b": "\xe2\x82\xb9"}\n'
    raw = lake.write_raw(RawPayload("replay", "prices", dt.datetime.now(UTC), body, "application/x-ndjson", "r://p"),
                         day=day, batch_key="replay-2026-11-02")
    report = lake.write_report("quality", "quality-1.json", b'{"ok": true}', day=day)
    curated = lake.write_curated(PRICES, _bars([day, day + dt.timedelta(days=1)]), batch_key="replay-x")
    lake.write_curated(PRICES, _bars([day, day + dt.timedelta(days=1)]), batch_key="replay-x")  # again: replaces
    bad = _bars([dt.date(2036, 1, 1)]).append_column("reject_reason", pa.array(["future_timestamp"] * 3))
    [quarantined] = lake.write_quarantine(PRICES, bad, day=day, batch_key="replay-x")

    assert lake.read_bytes(raw) == body and lake.read_bytes(report) == b'{"ok": true}'
    assert lake.read("curated", "prices").num_rows == 6
    assert lake.read("quarantine", "prices").column("reject_reason").to_pylist() == ["future_timestamp"] * 3
    assert lake.list_files("raw", "prices") == [raw] and lake.list_files("reports") == [report]
    # what is in the bucket, seen by another client: exactly these objects, no temporary ones
    data = [k for k in bucket_keys(s3_endpoint, _prefix_of(s3_settings)) if not k.endswith("/")]
    sidecar = raw.rsplit("/", 1)[0] + "/_meta-" + raw.rsplit("/", 1)[1] + ".json"  # the raw payload's request and time
    assert data == sorted(p.split("/", 1)[1] for p in [raw, sidecar, report, *curated, quarantined])
    assert lake.read_raw(raw[len(lake.root) + 1:]).body == body  # by its raw-zone id

    lake.replace_file(curated[0], PRICES.arrow_schema.empty_table(), PRICES)  # removal
    assert lake.read("curated", "prices").num_rows == 3


def test_credentials_never_show(s3_settings) -> None:
    uri = s3_settings.resolved_lake_uri
    shown = [str(uri), repr(uri), f"lake {uri}", repr(s3_settings), str(uri.s3),
             json.dumps(s3_settings.as_env(include_secrets=False))]
    for text in shown:
        assert S3_SECRET not in text and S3_KEY_ID not in text, text
    assert uri == s3_settings.lake_uri  # the text is the URI, nothing more


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_write_failing_half_way_publishes_nothing(where, isolated_settings, s3_endpoint, monkeypatch) -> None:
    """pyarrow's S3 stream completes its upload when closed, by an exception too: the lake must
    never hand it a half-serialised file."""
    import pyarrow.parquet as pq

    settings = on_s3(isolated_settings, s3_endpoint) if where == "s3" else isolated_settings
    lake = Lake(settings.resolved_lake_uri)

    def dies_half_way(table, sink, **_):  # the serialiser writes a part, then fails
        sink.write(b"PAR1" + b"\0" * 4096)
        raise OSError("out of memory half-way")

    with monkeypatch.context() as patch:
        patch.setattr(pq, "write_table", dies_half_way)
        with pytest.raises(OSError, match="half-way"):
            lake.write_curated(PRICES, _bars([dt.date(2026, 11, 2)]), batch_key="replay-x")
    if where == "s3":
        assert bucket_keys(s3_endpoint, _prefix_of(settings)) == []
    else:
        assert not os.path.exists(settings.lake_uri) or not [f for _, _, fs in os.walk(settings.lake_uri) for f in fs]
    # a file larger than an upload part (multipart on S3) lands whole
    big = os.urandom(12 * 1024 * 1024)
    path = lake.write_raw(RawPayload("replay", "prices", dt.datetime.now(UTC), big, "application/octet-stream",
                                     "r://big"), day=dt.date(2026, 11, 2), batch_key="big")
    assert lake.read_bytes(path) == big
    assert lake.list_files("raw") == [path]


@pytest.mark.ray
def test_backfill_on_s3(ray_session, embedded_redis, isolated_settings, s3_endpoint) -> None:
    from sentinel_ray.ingest.backfill import run_backfill

    settings = on_s3(isolated_settings, s3_endpoint)
    start, end = DAY, DAY + dt.timedelta(days=1)
    summary = run_backfill(settings, "replay", start, end)
    backfill_tests.test_counts_match_what_the_source_produced((settings, summary, start, end))
    lake = Lake(settings.resolved_lake_uri)
    lines = sum(len(lake.read_bytes(f).splitlines()) for f in lake.list_files("raw", "prices"))
    assert lines == backfill_tests._expected(settings, start, end)["prices"]["rows"]
    # a forced re-run replaces every file: the same counts, no second copy
    files = bucket_keys(s3_endpoint, _prefix_of(settings))
    again = run_backfill(settings, "replay", start, end, force=True)
    backfill_tests.test_counts_match_what_the_source_produced((settings, again, start, end))
    assert bucket_keys(s3_endpoint, _prefix_of(settings)) == files


@pytest.mark.ray
def test_stream_with_a_consumer_killed_on_s3(ray_session, ingest_settings, prefix, s3_endpoint) -> None:  # noqa: F811
    """The SIGKILL-before-XACK drill of tests/ingest/test_faults.py, on an S3 lake: exact counts, no doubles."""
    fault_tests.test_consumer_killed_after_lake_write_before_ack(ray_session, on_s3(ingest_settings, s3_endpoint),
                                                                 prefix)


@pytest.mark.ray
def test_quarantine_replay_on_s3(ray_session, s3_settings) -> None:
    """tests/quality/test_quarantine.py's replay, exactly once, on an S3 lake."""
    quarantine_tests.test_replay_moves_rows_that_now_pass_once(ray_session, s3_settings)
