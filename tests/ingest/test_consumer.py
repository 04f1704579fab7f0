"""Poller + consumer logic with real Redis, lake and (embedded) warehouse, driven step by step."""
from __future__ import annotations

import asyncio

import pytest

from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import drain as _drain
from tests.ingest.conftest import expected, expected_counts, firehose, stored_counts
from tests.ingest.conftest import make_consumer as _consumer
from tests.ingest.conftest import poll_all as _poll_all

pytestmark = pytest.mark.ray


def test_a_replay_run_stores_exactly_what_the_source_produced(ray_session, ingest_settings, store) -> None:
    poller = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                          lake=Lake(ingest_settings.resolved_lake_uri))
    published = _poll_all(poller)
    exp = expected(ingest_settings)
    assert published == sum(e["rows"] for e in exp.values())
    for ds in ("prices", "posts"):
        _drain(_consumer(ingest_settings, store, f"{ds}-0", ds))
        assert store.lag(ds).length == 0 and store.lag(ds).pending == 0
    assert stored_counts(ingest_settings) == expected_counts(ingest_settings)
    # the poller kept every raw payload
    assert len(Lake(ingest_settings.resolved_lake_uri).list_files("raw")) == poller.stats.raw_payloads
    # a restarted poller resumes from the saved cursor: nothing more to publish
    again = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                         lake=Lake(ingest_settings.resolved_lake_uri))
    assert _poll_all(again) == 0


def test_a_consumer_dying_before_ack_is_taken_over_without_doubles(ray_session, ingest_settings, store) -> None:
    poller = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                          lake=Lake(ingest_settings.resolved_lake_uri))
    _poll_all(poller)
    first = _consumer(ingest_settings, store, "prices-0")

    class Died(BaseException):
        pass

    def die(batch) -> None:
        raise Died()

    first._acknowledge = die  # written to lake and warehouse, then the process "dies"
    batch = first.next_batch()
    with pytest.raises(Died):
        first.store_batch(batch)
    assert store.lag("prices").pending == len(batch.entries)

    # another consumer must not take it before claim_idle_s; then it re-processes that exact batch
    other = _consumer(ingest_settings, store, "prices-1")
    import time

    time.sleep(ingest_settings.claim_idle_s + 0.2)
    retaken = other.next_batch()
    assert retaken.key == batch.key and retaken.ids == batch.ids
    other.store_batch(retaken)
    _drain(other)
    _drain(_consumer(ingest_settings, store, "posts-0", "posts"))
    assert stored_counts(ingest_settings) == expected_counts(ingest_settings)
    files = Lake(ingest_settings.resolved_lake_uri).list_files("curated", "prices")
    assert len(files) == len(set(files))


def test_a_restarted_consumer_finishes_its_own_pending_batch_first(ray_session, ingest_settings, store) -> None:
    poller = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                          lake=Lake(ingest_settings.resolved_lake_uri))
    _poll_all(poller)
    first = _consumer(ingest_settings, store, "prices-0")
    batch = first.next_batch()  # read and registered, then the process dies before writing
    restarted = _consumer(ingest_settings, store, "prices-0")
    again = restarted.next_batch()
    assert again.key == batch.key and again.ids == batch.ids


def test_warehouse_outage_keeps_the_batch_pending_until_it_recovers(ray_session, ingest_settings, store) -> None:
    import ray

    from sentinel_ray.storage.warehouse import ACTOR_NAME, RAY_NAMESPACE

    poller = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                          lake=Lake(ingest_settings.resolved_lake_uri))
    _poll_all(poller)
    consumer = _consumer(ingest_settings, store, "prices-0")
    owner = ray.get_actor(ACTOR_NAME, namespace=RAY_NAMESPACE)
    ray.get(owner.suspend.remote(1.5))
    batch = consumer.next_batch()
    with pytest.raises(Exception, match="suspended"):
        consumer.store_batch(batch)
    assert store.lag("prices").pending == len(batch.entries)
    import time

    time.sleep(1.6)
    _drain(consumer)  # picks its own pending batch first
    _drain(_consumer(ingest_settings, store, "posts-0", "posts"))
    assert stored_counts(ingest_settings) == expected_counts(ingest_settings)


def test_backpressure_bound_holds_while_nobody_consumes(ingest_settings, store) -> None:
    settings = ingest_settings.model_copy(update={"stream_max_entries": 3, "replay_chunk_rows": 2_000})
    poller = SourcePoller(settings, firehose(settings), store=store, lake=Lake(settings.resolved_lake_uri))
    for _ in range(20):
        asyncio.run(poller.poll_once())
        assert store.length("prices") <= settings.stream_max_entries
    assert poller.stats.state == "waiting" and poller.stats.backpressure_waits > 0
    assert store.length("prices") == settings.stream_max_entries


def test_live_replay_never_emits_the_future(ingest_settings) -> None:
    import datetime as dt

    import pyarrow.compute as pc

    from sentinel_ray.sources.replay import LiveReplaySource, ReplaySource

    today = dt.date(2026, 11, 26)
    now = [dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.timezone.utc).timestamp()]  # 11:30 IST
    live = LiveReplaySource(ReplaySource.from_settings(ingest_settings), start=today, speed=3600,
                            clock=lambda: now[0])
    cursor = None
    for _ in range(5):  # at 3600x the simulated clock would be hours ahead after a few polls
        result = asyncio.run(live.fetch(cursor))
        cursor = result.next_cursor
        for table in result.records.values():
            newest = pc.max(table.column("ts")).as_py()
            assert newest.timestamp() <= now[0], newest
        now[0] += 10
    assert cursor["emitted_ms"] <= now[0] * 1000


def test_a_failing_batch_is_retried_and_its_failure_recorded(ray_session, ingest_settings, store,
                                                              monkeypatch) -> None:
    import threading

    from sentinel_ray.monitoring.runs import pipeline_health

    poller = SourcePoller(ingest_settings, firehose(ingest_settings), store=store,
                          lake=Lake(ingest_settings.resolved_lake_uri))
    _poll_all(poller)
    consumer = _consumer(ingest_settings, store, "prices-0")
    real_write = consumer.lake.write_curated
    calls = {"n": 0}

    def flaky_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(consumer.lake, "write_curated", flaky_write)
    stop = threading.Event()
    waits = {"n": 0}

    def stop_when_drained(timeout: float) -> bool:  # the backoff wait: end the loop once drained
        waits["n"] += 1
        if store.lag("prices").length == 0 or waits["n"] > 50:
            stop.set()
        return stop.is_set()

    monkeypatch.setattr(stop, "wait", stop_when_drained)
    monkeypatch.setattr(consumer, "run_once", _stop_when_idle(consumer.run_once, stop))
    consumer.run(stop)
    assert consumer.stats.errors == 1 and "disk full" in consumer.stats.last_error
    assert store.lag("prices").length == 0
    health = {h["pipeline"]: h for h in pipeline_health(connect_warehouse(ingest_settings))}
    assert health["stream"]["failed"] == 1 and "disk full" in health["stream"]["last_error"]


def _stop_when_idle(run_once, stop):
    def wrapped() -> int:
        stored = run_once()
        if not stored:
            stop.set()
        return stored

    return wrapped
