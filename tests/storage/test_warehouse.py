"""The warehouse through clickhouse-connect: embedded chdb always, a server when one is given."""
import datetime as dt
import os
from typing import Iterator

import pyarrow as pa
import pytest

from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.warehouse import ClickHouseWarehouse

UTC = dt.timezone.utc
SERVER_URL = os.environ.get("SENTINEL_TEST_CLICKHOUSE_URL")


@pytest.fixture(scope="module", params=["chdb", "server"])
def warehouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseWarehouse]:
    if request.param == "server":
        if not SERVER_URL:
            pytest.skip("set SENTINEL_TEST_CLICKHOUSE_URL=http://host:8123 to test against a ClickHouse server")
        dsn = SERVER_URL
    else:
        # chdb opens one data dir per process: this module owns this pytest process's one
        dsn = f"chdb://{tmp_path_factory.mktemp('chdb-direct')}"
    wh = ClickHouseWarehouse(dsn, "sentinel_test_direct")
    wh.command("DROP DATABASE IF EXISTS {db}")
    wh.ensure_schema()
    yield wh
    wh.command("DROP DATABASE IF EXISTS {db}")
    wh.close()


def _bars(n: int, close: float, ingested: dt.datetime) -> pa.Table:
    base = dt.datetime(2026, 11, 2, 3, 45, tzinfo=UTC)
    rows = [{"ticker": "INFY", "exchange": "NSE", "interval": "1m", "ts": base + dt.timedelta(minutes=i),
             "open": close, "high": close + 1, "low": close - 1, "close": close, "volume": 100 + i,
             "source": "replay", "run_id": "r", "ingested_at": ingested} for i in range(n)]
    return pa.Table.from_pylist(rows, schema=PRICES.arrow_schema)


def test_ddl_is_derived_from_schema() -> None:
    ddl = PRICES.ddl("db")
    assert "ENGINE = ReplacingMergeTree(`ingested_at`)" in ddl
    assert "PARTITION BY toYYYYMM(`ts`)" in ddl
    assert "`ticker` LowCardinality(String)" in ddl and "`ts` DateTime64(3, 'UTC')" in ddl
    assert "ORDER BY (`ticker`, `exchange`, `interval`, `source`, `ts`)" in ddl


def test_reinsert_is_idempotent_and_newest_wins(warehouse: ClickHouseWarehouse) -> None:
    t1 = dt.datetime(2026, 11, 3, tzinfo=UTC)
    assert warehouse.insert("prices", _bars(10, 100.0, t1)) == 10
    warehouse.insert("prices", _bars(10, 100.0, t1))
    warehouse.insert("prices", _bars(5, 101.0, t1 + dt.timedelta(hours=1)))
    rows = warehouse.query_rows("SELECT count() AS n, sum(close) AS s FROM {db}.prices FINAL "
                                "WHERE ticker = {t:String}", {"t": "INFY"})
    assert rows == [{"n": 10, "s": 5 * 101.0 + 5 * 100.0}]


def test_parameters_are_bound_server_side(warehouse: ClickHouseWarehouse) -> None:
    hostile = "INFY' OR 1=1 --"
    rows = warehouse.query_rows("SELECT count() AS n FROM {db}.prices FINAL WHERE ticker = {t:String}", {"t": hostile})
    assert rows == [{"n": 0}]
    table = warehouse.query_arrow(
        "SELECT ts, close FROM {db}.prices FINAL WHERE ticker = {t:String} AND ts >= {s:DateTime64(3, 'UTC')} "
        "ORDER BY ts", {"t": "INFY", "s": dt.datetime(2026, 11, 2, 3, 50, tzinfo=UTC)})
    assert table.num_rows == 5


def test_ping(warehouse: ClickHouseWarehouse) -> None:
    assert warehouse.ping()


def test_errors_say_whether_a_retry_helps(warehouse: ClickHouseWarehouse) -> None:
    import clickhouse_connect.driver.exceptions as ch

    from sentinel_ray.records import WarehouseRefused, is_transient

    with pytest.raises(WarehouseRefused, match="UNKNOWN_TABLE") as unknown:
        warehouse.query_rows("SELECT count() AS n FROM {db}.no_such_table")
    assert isinstance(unknown.value.__cause__, ch.DatabaseError) and not is_transient(unknown.value)
    warehouse.command("ALTER TABLE {db}.prices ADD CONSTRAINT no_low_close CHECK close > 10")
    try:
        with pytest.raises(WarehouseRefused, match="insert into prices: DatabaseError: .*VIOLATED_CONSTRAINT"):
            warehouse.insert("prices", _bars(3, 5.0, dt.datetime(2026, 11, 3, tzinfo=UTC)))
    finally:
        warehouse.command("ALTER TABLE {db}.prices DROP CONSTRAINT no_low_close")
    rows = warehouse.query_rows("SELECT count() AS n FROM {db}.prices FINAL WHERE close = 5")
    assert rows == [{"n": 0}]  # refused whole: nothing of it was stored
