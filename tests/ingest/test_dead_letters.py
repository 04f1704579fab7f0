"""Dead letters: a batch no retry can store is set aside with its error, counted and
replayable; a transient error is retried, never set aside. Every test counts exact rows."""
from __future__ import annotations

import asyncio
import time

import pyarrow as pa

from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.ingest.streams import GROUP, decode_table
from sentinel_ray.ingest.supervisor import replay_dead_letters, with_key_prefix
from sentinel_ray.records import ErrorKind, WarehouseUnavailable
from sentinel_ray.schemas import PRICES, QUALITY_METRICS
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import drain, expected, firehose, make_consumer, poll_all

CUTOFF = "2026-11-05 07:00:00"  # mid-session: batches of bars after it are refused while the constraint holds


def _small_batches(settings):
    """One poll's entry per batch (an entry is never split), a dozen batches for the day."""
    return settings.model_copy(update={"replay_chunk_rows": 2_500, "batch_max_rows": 1_000,
                                       "batch_max_wait_s": 0.02})


def _publish(settings, store) -> int:
    """The replay day into the streams; the prices rows published."""
    poll_all(SourcePoller(settings, firehose(settings), store=store, lake=Lake(settings.resolved_lake_uri)))
    return sum(int(f[b"rows"]) for _id, f in store.redis.xrange(store.stream_key("prices")))


def _flow(settings, store, consumer) -> tuple[int, list[bool]]:
    """Poll and consume in turn (one poll's entry per batch), as the run loop does without its
    backoff; the prices rows published, and `handle_failure`'s answer for each failure."""
    poller = SourcePoller(settings, firehose(settings), store=store, lake=Lake(settings.resolved_lake_uri))
    published, outcomes = 0, []
    while True:
        assert store.length("prices") == 0  # every batch so far stored or set aside
        polled = asyncio.run(poller.poll_once())
        published += sum(int(f[b"rows"]) for _i, f in store.redis.xrange(store.stream_key("prices")))
        while True:
            try:
                if not consumer.run_once():
                    break
            except Exception as e:  # noqa: BLE001 - what the run loop catches
                outcomes.append(consumer.handle_failure(e))
        if not polled and poller.stats.state == "idle":
            return published, outcomes


def _prices(settings) -> dict[str, int]:
    lake = Lake(settings.resolved_lake_uri)
    curated = lake.read("curated", "prices")
    keys = curated.group_by(["ticker", "exchange", "interval", "source", "ts"]).aggregate([([], "count_all")])
    [row] = connect_warehouse(settings).query_rows("SELECT count() AS n FROM {db}.prices FINAL")
    return {"curated": curated.num_rows, "curated_keys": keys.num_rows,
            "quarantine": lake.read("quarantine", "prices").num_rows, "warehouse": row["n"]}


def _expected_prices(settings) -> dict[str, int]:
    exp = expected(settings)["prices"]
    return {"curated": exp["valid"], "curated_keys": exp["valid"], "quarantine": sum(exp["rejected"].values()),
            "warehouse": exp["valid"]}


def _dead_rows(store, dataset: str = "prices") -> int:
    return sum(d["rows"] for d in store.dead_letters(dataset, count=10_000))


def test_a_refused_batch_is_dead_lettered_then_replayed_exactly_once(ray_session, ingest_settings, store,
                                                                     prefix) -> None:
    settings = _small_batches(ingest_settings)
    consumer = make_consumer(settings, store, "prices-0")
    warehouse = connect_warehouse(settings)
    warehouse.command(f"ALTER TABLE {{db}}.prices ADD CONSTRAINT before_cutoff "
                      f"CHECK ts < toDateTime64('{CUTOFF}', 3, 'UTC')")
    published, outcomes = _flow(settings, store, consumer)
    assert published == expected(settings)["prices"]["rows"]
    letters = store.dead_letters("prices", count=10_000)
    assert outcomes and all(outcomes)  # terminal: each refused batch set aside at its first failure
    assert len(letters) == consumer.stats.dead_letters == len(outcomes) and consumer.stats.batches > 0
    assert {(d["error_type"], d["error_kind"], d["consumer"], d["attempts"]) for d in letters} == {
        ("WarehouseRefused", "terminal", "prices-0", "1")}
    assert all("VIOLATED_CONSTRAINT" in d["error"] and d["batch_key"].startswith("prices-") for d in letters)
    # stored + dead-lettered == published: the refused batches left nothing behind in lake or warehouse
    stored = _prices(settings)
    dead = _dead_rows(store)
    assert dead == consumer.stats.dead_letter_rows > 0
    assert stored["curated"] + stored["quarantine"] + dead == published
    assert stored["warehouse"] == stored["curated"] == stored["curated_keys"]
    assert store.lag("prices").length == 0 and store.lag("prices").pending == 0
    summary = store.dead_letter_summary("prices")
    assert (summary["waiting"], summary["rows_waiting"], summary["last_error_type"]) == (
        len(letters), dead, "WarehouseRefused")
    # each dead letter keeps its payload byte for byte
    [(_id, fields)] = store.redis.xrange(store.dead_letter_key("prices"), count=1)
    assert decode_table(fields[b"arrow"]).num_rows == int(fields[b"rows"])

    warehouse.command("ALTER TABLE {db}.prices DROP CONSTRAINT before_cutoff")
    replayed = replay_dead_letters(with_key_prefix(settings, prefix), "prices")
    assert len(replayed) == len(letters)
    assert replay_dead_letters(with_key_prefix(settings, prefix), "prices") == []  # once only
    drain(consumer)
    assert _prices(settings) == _expected_prices(settings)
    assert store.dead_letters("prices") == [] and store.lag("prices").length == 0
    summary = store.dead_letter_summary("prices")
    assert (summary["waiting"], summary["rows_waiting"], summary["replayed_total"]) == (0, 0, len(letters))


def test_a_transient_error_is_retried_and_never_dead_lettered(ray_session, ingest_settings, store) -> None:
    import ray

    from sentinel_ray.storage.warehouse import ACTOR_NAME, RAY_NAMESPACE

    settings = ingest_settings.model_copy(update={"dead_letter_after_failures": 2})
    _publish(settings, store)
    consumer = make_consumer(settings, store, "prices-0")
    ray.get(ray.get_actor(ACTOR_NAME, namespace=RAY_NAMESPACE).suspend.remote(2.0))
    failures = 0
    while True:
        try:
            if not consumer.run_once():
                break
        except WarehouseUnavailable as e:
            failures += 1
            assert not consumer.handle_failure(e)
            time.sleep(0.2)
    assert failures > consumer.dead_letter_after == 2
    assert consumer.stats.dead_letters == 0 and store.dead_letter_summary("prices")["waiting"] == 0
    assert _prices(settings) == _expected_prices(settings)


def test_an_unknown_error_is_retried_then_dead_lettered(ray_session, ingest_settings, store, prefix,
                                                        monkeypatch) -> None:
    settings = _small_batches(ingest_settings).model_copy(update={"dead_letter_after_failures": 3})
    consumer = make_consumer(settings, store, "prices-0")
    real_insert, calls = consumer.warehouse.insert, {"n": 0}

    def insert_failing_once_in_a_while(name: str, table: pa.Table) -> int:
        if name == QUALITY_METRICS.name:  # after the batch's lake files and warehouse rows
            calls["n"] += 1
            if calls["n"] in (2, 3, 4):  # the second batch, three times
                raise RuntimeError("something odd")
        return real_insert(name, table)

    monkeypatch.setattr(consumer.warehouse, "insert", insert_failing_once_in_a_while)
    published, outcomes = _flow(settings, store, consumer)
    assert outcomes == [False, False, True]  # retried twice, set aside at the third failure
    [letter] = {d["batch_key"]: d for d in store.dead_letters("prices", count=10_000)}.values()
    assert (letter["error_type"], letter["error_kind"], letter["attempts"]) == ("RuntimeError", "unknown", "3")
    stored, dead = _prices(settings), _dead_rows(store)
    assert stored["curated"] + stored["quarantine"] + dead == published and stored["warehouse"] == stored["curated"]
    assert store.redis.hlen(store.failures_key("prices")) == 0  # no attempt counts left behind
    replay_dead_letters(with_key_prefix(settings, prefix), "prices")
    drain(consumer)
    assert _prices(settings) == _expected_prices(settings)


def test_an_entry_that_cannot_be_decoded_is_dead_lettered_as_it_is_read(ray_session, ingest_settings, store) -> None:
    published = _publish(ingest_settings, store)
    poison_id = store.redis.xadd(store.stream_key("prices"), {"source": "replay", "rows": 3, "created_ms": 1,
                                                             "arrow": b"not arrow at all"}).decode()
    consumer = make_consumer(ingest_settings, store, "prices-0")
    drain(consumer)
    [letter] = store.dead_letters("prices")
    assert (letter["original_id"], letter["error_kind"], letter["batch_key"], letter["rows"]) == (
        poison_id, "terminal", "", 3)
    assert letter["error_type"] == "ArrowInvalid" and consumer.stats.dead_letters == 1
    [(_id, fields)] = store.redis.xrange(store.dead_letter_key("prices"))
    assert fields[b"arrow"] == b"not arrow at all"  # kept as received
    stored = _prices(ingest_settings)
    assert stored == _expected_prices(ingest_settings)
    assert stored["curated"] + stored["quarantine"] == published
    assert store.lag("prices").length == 0 and store.lag("prices").pending == 0


def _pending_entries(store, n: int) -> list[str]:
    store.ensure_group("prices")
    rows = pa.Table.from_pylist([{"ticker": "TCS"}, {"ticker": "INFY"}], schema=PRICES.record_schema)
    for _ in range(n):
        store.publish("replay", {"prices": rows}, None)
    return [e.id for e in store.read_new("prices", "c1", count=n, block_ms=100)]


def test_dead_lettering_moves_each_pending_entry_once(store) -> None:
    ids = _pending_entries(store, 3)
    store.save_manifest("prices", "prices-b1", ids)
    store.acknowledge("prices", "prices-other", ids[2:])  # another consumer stored this one meanwhile
    moved = store.dead_letter("prices", "prices-b1", ids, error=ValueError("bad"),
                              kind=ErrorKind.TERMINAL, consumer="c1")
    assert moved == ids[:2]
    again = store.dead_letter("prices", "prices-b1", ids, error=ValueError("bad"),
                              kind=ErrorKind.TERMINAL, consumer="c1")
    assert again == []  # nothing pending any more: nothing doubled
    assert store.length("prices") == 0 and store.lag("prices").pending == 0
    assert store.load_manifest("prices-b1") is None and store.batch_keys_of("prices", ids) == [None] * 3
    assert [d["original_id"] for d in store.dead_letters("prices")] == ids[:2]
    summary = store.dead_letter_summary("prices")
    assert (summary["waiting"], summary["rows_waiting"], summary["entries_total"], summary["batches_total"]) == (
        2, 4, 2, 1)
    assert summary["last_error"] == "bad" and summary["last_error_kind"] == "terminal"

    first = store.dead_letters("prices")[0]["id"]
    assert len(store.replay_dead_letters("prices", [first])) == 1
    assert store.replay_dead_letters("prices", [first]) == []  # already back
    assert len(store.replay_dead_letters("prices")) == 1
    assert store.length("prices") == 2 and store.dead_letter_summary("prices")["rows_waiting"] == 0
    # back as ordinary new entries: exactly the original payload, none of the dead-letter fields
    replayed = store.read_new("prices", "c2", count=10, block_ms=100)
    assert [e.table.column("ticker").to_pylist() for e in replayed] == [["TCS", "INFY"]] * 2
    assert all(set(f) == {b"source", b"rows", b"created_ms", b"arrow"}
               for _id, f in store.redis.xrange(store.stream_key("prices")))
    assert store.redis.xpending(store.stream_key("prices"), GROUP)["pending"] == 2
