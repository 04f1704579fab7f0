"""The embedded warehouse through its owner actor: an insert started goes on in the owner
while the caller works; its wait returns the rows, or raises the insert's error."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.warehouse import ActorWarehouse, connect_warehouse

pytestmark = pytest.mark.ray


def _bars(n: int) -> pa.Table:
    base = dt.datetime(2026, 11, 2, 3, 45, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist(
        [{"ticker": "TCS", "exchange": "NSE", "interval": "1m", "ts": base + dt.timedelta(minutes=i), "open": 10.0,
          "high": 11.0, "low": 9.0, "close": 10.0, "volume": 5, "source": "replay", "run_id": "r",
          "ingested_at": base} for i in range(n)], schema=PRICES.arrow_schema)


def test_a_started_insert_is_stored_by_the_owner_and_its_wait_raises_its_error(
        ray_session: None, isolated_settings: Settings) -> None:
    warehouse = connect_warehouse(isolated_settings)
    assert isinstance(warehouse, ActorWarehouse)
    warehouse.ensure_schema()
    wait = warehouse.insert_started("prices", _bars(3))
    assert wait() == 3
    assert warehouse.query_rows("SELECT count() AS n FROM {db}.prices FINAL") == [{"n": 3}]
    refused = warehouse.insert_started("no_such_dataset", _bars(1))  # started: nothing raised yet
    with pytest.raises(Exception, match="no_such_dataset"):
        refused()
