import datetime as dt
from pathlib import Path

import pyarrow as pa

from sentinel_ray.schemas import PRICES
from sentinel_ray.records import RawPayload
from sentinel_ray.storage.lake import Lake

UTC = dt.timezone.utc


def _bars(days: list[dt.date], source: str = "replay") -> pa.Table:
    rows = [{"ticker": "TCS", "exchange": "NSE", "interval": "1m",
             "ts": dt.datetime.combine(d, dt.time(4, m), UTC), "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
             "volume": 10, "source": source, "run_id": "r1", "ingested_at": dt.datetime(2026, 1, 1, tzinfo=UTC)}
            for d in days for m in range(3)]
    return pa.Table.from_pylist(rows, schema=PRICES.arrow_schema)


def test_curated_partitions_by_source_and_day_and_rewrite_replaces(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    days = [dt.date(2026, 11, 2), dt.date(2026, 11, 3)]
    paths = lake.write_curated(PRICES, _bars(days), batch_key="replay-x")
    assert sorted(p.split("/date=")[1].split("/")[0] for p in paths) == ["2026-11-02", "2026-11-03"]
    assert all("/curated/dataset=prices/source=replay/" in p for p in paths)
    lake.write_curated(PRICES, _bars(days), batch_key="replay-x")  # same batch again
    assert lake.read("curated", "prices").num_rows == 6
    assert len(lake.list_files("curated", "prices")) == 2
    lake.write_curated(PRICES, _bars(days[:1]), batch_key="replay-y")  # another batch adds
    assert lake.read("curated", "prices").num_rows == 9


def test_quarantine_uses_batch_day_and_keeps_reason(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    bad = _bars([dt.date(2036, 1, 1)]).cast(PRICES.quarantine_schema.remove(len(PRICES.fields)))
    bad = bad.append_column("reject_reason", pa.array(["future_timestamp"] * bad.num_rows))
    [path] = lake.write_quarantine(PRICES, bad, day=dt.date(2026, 11, 2), batch_key="replay-x")
    assert "/quarantine/dataset=prices/source=replay/date=2026-11-02/" in path
    back = lake.read("quarantine", "prices")
    assert back.column("reject_reason").to_pylist() == ["future_timestamp"] * 3


def test_raw_bytes_kept_exactly(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    body = b'{"a": 1}\n{"b": "\xe2\x82\xb9"}\n'
    payload = RawPayload("replay", "prices", dt.datetime.now(UTC), body, "application/x-ndjson", "replay://p")
    path = lake.write_raw(payload, day=dt.date(2026, 11, 2), batch_key="replay-2026-11-02")
    assert Path(path).read_bytes() == body
    assert path.endswith("raw/source=replay/dataset=prices/date=2026-11-02/replay-2026-11-02-0.ndjson")
    assert lake.list_files("raw", "prices") == [path]


def test_reading_an_empty_lake(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "none"))
    assert lake.read("curated", "posts").num_rows == 0
    assert lake.list_files("raw") == []
    assert lake.ping()
