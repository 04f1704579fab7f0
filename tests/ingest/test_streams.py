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
