"""A traced row's quarantine history: every time a row with its key was rejected, whichever
day's partition the rejecting batch filed it under (no Ray: the lake alone)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from sentinel_ray.ingest.lineage import _quarantine_history
from sentinel_ray.schemas import POSTS, PRICES
from sentinel_ray.storage.lake import Lake

UTC = dt.timezone.utc
TS = dt.datetime(2026, 11, 5, 4, 0, tzinfo=UTC)
KEY = {"ticker": "TCS", "exchange": "NSE", "interval": "1m", "ts": TS}


def _rejected(rows: list[dict], reason: str, run_id: str) -> pa.Table:
    schema = PRICES.quarantine_schema
    full = [{"interval": "1m", "source": "replay", "run_id": run_id, "reject_reason": reason,
             "ingested_at": TS, "raw_id": f"raw-{run_id}", "raw_pos": i, **row} for i, row in enumerate(rows)]
    return pa.Table.from_pylist(full, schema=schema)


def test_every_rejection_of_the_key_on_any_day_in_file_order(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    same = {"ticker": "TCS", "exchange": "NSE", "ts": TS}
    lake.write_quarantine(PRICES, _rejected([same, {**same, "ticker": "INFY"}], "duplicate", "b1"),
                          day=dt.date(2026, 11, 5), batch_key="prices-000001-0")
    lake.write_quarantine(PRICES, _rejected([{**same, "ts": TS + dt.timedelta(minutes=1)}], "duplicate", "b2"),
                          day=dt.date(2026, 11, 5), batch_key="prices-000002-0")  # another minute: not it
    lake.write_quarantine(PRICES, _rejected([{**same, "exchange": "BSE"}, same], "ohlc_inconsistent", "b3"),
                          day=dt.date(2026, 11, 9), batch_key="prices-000003-0")  # arrived days later
    lake.write_quarantine(POSTS, POSTS.quarantine_schema.empty_table(), day=dt.date(2026, 11, 5),
                          batch_key="posts-1")

    found = _quarantine_history(lake, PRICES, KEY)

    assert found == [
        {"batch_file": "part-prices-000001-0.parquet", "reject_reason": "duplicate", "run_id": "b1",
         "raw_id": "raw-b1", "raw_pos": 0, "ingested_at": TS},
        {"batch_file": "part-prices-000003-0.parquet", "reject_reason": "ohlc_inconsistent", "run_id": "b3",
         "raw_id": "raw-b3", "raw_pos": 1, "ingested_at": TS},
    ]
    assert _quarantine_history(lake, PRICES, {**KEY, "ticker": "WIPRO"}) == []
    assert _quarantine_history(Lake(str(tmp_path / "empty")), PRICES, KEY) == []
