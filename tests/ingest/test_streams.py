import pyarrow as pa

from sentinel_ray.ingest.streams import GROUP, decode_table, encode_table
from sentinel_ray.schemas import PRICES


def test_arrow_entries_round_trip() -> None:
    table = pa.table({"a": [1, 2, None], "b": ["x", None, "z"]})
    assert decode_table(encode_table(table)).equals(table)


def test_publish_writes_entries_and_cursor_together(store) -> None:
    table = PRICES.record_schema.empty_table()
    rows = pa.Table.from_pylist([{"ticker": "TCS"}, {"ticker": "INFY"}], schema=PRICES.record_schema)
    ids = store.publish("replay", {"prices": rows, "posts": table}, {"day": "2026-11-05"})
    assert len(ids) == 1  # empty tables add nothing
    assert store.load_cursor("replay") == {"day": "2026-11-05"}
    [(entry_id, fields)] = store.redis.xrange(store.stream_key("prices"))
    assert int(fields[b"rows"]) == 2 and decode_table(fields[b"arrow"]).column("ticker").to_pylist() == ["TCS", "INFY"]


def test_lag_reports_length_pending_and_age(store) -> None:
    store.ensure_group("prices")
    rows = pa.Table.from_pylist([{"ticker": "TCS"}], schema=PRICES.record_schema)
    for _ in range(3):
        store.publish("replay", {"prices": rows}, None)
    store.redis.xreadgroup(GROUP, "c1", {store.stream_key("prices"): ">"}, count=2)
    lag = store.lag("prices")
    assert (lag.length, lag.pending, lag.consumers) == (3, 2, 1) and lag.oldest_pending_age_s >= 0


def test_consumer_group_protocol_reads_claims_and_acknowledges_a_batch(store) -> None:
    store.ensure_group("prices")
    rows = pa.Table.from_pylist([{"ticker": "TCS"}], schema=PRICES.record_schema)
    for _ in range(3):
        store.publish("replay", {"prices": rows}, None)
    batch = store.read_new("prices", "c1", count=2, block_ms=100)
    ids = [e.id for e in batch]
    assert len(ids) == 2 and batch[0].table.column("ticker").to_pylist() == ["TCS"]
    store.save_manifest("prices", "prices-b1", ids)
    assert store.batch_keys_of("prices", [*ids, "0-1"]) == ["prices-b1", "prices-b1", None]
    assert store.load_manifest("prices-b1") == ids

    # c1 dies: c2 takes its entries over only once they have been idle long enough
    assert store.claim_idle("prices", "c2", min_idle_s=60, count=10) == 0
    assert store.claim_idle("prices", "c2", min_idle_s=0, count=10) == 2
    assert [e.id for e in store.read_pending("prices", "c2", count=10)] == ids
    assert store.read_pending("prices", "c1", count=10) == []
    assert [e.id for e in store.claim("prices", "c1", ids[1:])] == ids[1:]

    store.acknowledge("prices", "prices-b1", ids)
    lag = store.lag("prices")
    assert (lag.length, lag.pending) == (1, 0)
    assert store.load_manifest("prices-b1") is None and store.batch_keys_of("prices", ids) == [None, None]


def test_a_pending_entry_deleted_meanwhile_is_acknowledged_not_returned(store) -> None:
    store.ensure_group("prices")
    rows = pa.Table.from_pylist([{"ticker": "TCS"}], schema=PRICES.record_schema)
    [entry_id] = store.publish("replay", {"prices": rows}, None)
    assert [e.id for e in store.read_new("prices", "c1", count=10, block_ms=100)] == [entry_id]
    store.redis.xdel(store.stream_key("prices"), entry_id)
    assert store.read_pending("prices", "c1", count=10) == []
    assert store.lag("prices").pending == 0


def test_the_key_prefix_comes_from_settings(ingest_settings, prefix) -> None:
    from sentinel_ray.ingest.supervisor import stream_store

    configured = ingest_settings.model_copy(update={"redis_key_prefix": prefix})
    assert stream_store(configured).stream_key("prices") == f"{prefix}:stream:prices"
    assert stream_store(ingest_settings, "other").cursor_key("x") == "other:cursor:x"
    assert stream_store(ingest_settings).prefix == ingest_settings.redis_key_prefix
