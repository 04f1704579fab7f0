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


def test_an_insert_started_is_stored_when_its_wait_returns(warehouse: ClickHouseWarehouse) -> None:
    bars = _bars(4, 50.0, dt.datetime(2026, 11, 3, tzinfo=UTC))
    bars = bars.set_column(0, "ticker", pa.array(["WIPRO"] * 4))
    wait = warehouse.insert_started("prices", bars)
    assert wait() == 4
    assert warehouse.query_rows("SELECT count() AS n FROM {db}.prices FINAL WHERE ticker = 'WIPRO'") == [{"n": 4}]


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


# --- price roll-ups (storage/rollups.py) and the 1h/1d bars read from them ----------------
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def _session(ticker: str, day: dt.date, *, source: str = "replay", shift: float = 0.0,
             ingested: dt.datetime | None = None) -> pa.Table:
    """A trading day of 1m bars (09:15-15:29 IST) with prices that differ bar to bar."""
    open_ = dt.datetime.combine(day, dt.time(9, 15), IST).astimezone(UTC)
    rows = [{"ticker": ticker, "exchange": "NSE", "interval": "1m", "ts": open_ + dt.timedelta(minutes=i),
             "open": 100 + shift + (i % 7), "high": 110 + shift + (i % 11), "low": 90 + shift - (i % 5),
             "close": 101 + shift + (i % 13), "volume": 1000 + i, "source": source, "run_id": "r",
             "ingested_at": ingested or dt.datetime(2026, 11, 3, tzinfo=UTC)} for i in range(375)]
    return pa.Table.from_pylist(rows, schema=PRICES.arrow_schema)


def _expected(bars: list[dict], interval: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The bars of [start, end) rolled up in Python: the reference the SQL must equal."""
    chosen = sorted((b for b in bars if start <= b["ts"] < end), key=lambda b: b["ts"])
    buckets: dict[dt.datetime, list[dict]] = {}
    for b in chosen:
        if interval == "1h":
            key = b["ts"].replace(minute=0, second=0, microsecond=0)
        else:
            key = dt.datetime.combine(b["ts"].astimezone(IST).date(), dt.time(), IST).astimezone(UTC)
        buckets.setdefault(key, []).append(b)
    return [{"ts": k, "open": v[0]["open"], "high": max(x["high"] for x in v), "low": min(x["low"] for x in v),
             "close": v[-1]["close"], "volume": sum(x["volume"] for x in v)} for k, v in sorted(buckets.items())]


def _stored_buckets(warehouse: ClickHouseWarehouse, ticker: str) -> list[dict]:
    return warehouse.query_rows("SELECT bucket, bars, volume FROM {db}.prices_30m FINAL WHERE ticker = {t:String} "
                                "AND bars > 0 ORDER BY bucket", {"t": ticker})


def test_rollups_never_count_a_reinserted_bar_twice_and_follow_corrections(warehouse: ClickHouseWarehouse) -> None:
    from sentinel_ray.serve.queries import Interval, price_bars
    from sentinel_ray.storage import rollups

    days = [dt.date(2026, 11, 2), dt.date(2026, 11, 3)]
    for day in days:
        batch = _session("ROLLA", day)
        warehouse.insert("prices", batch)
        rollups.refresh(warehouse, batch)
    first = _stored_buckets(warehouse, "ROLLA")
    assert sum(r["bars"] for r in first) == 750 and len(first) == 2 * 13  # 09:15-15:29 IST: 13 half hours

    again = _session("ROLLA", days[0])  # a redelivered batch: the same bars again
    warehouse.insert("prices", again)
    change = rollups.refresh(warehouse, again)
    assert _stored_buckets(warehouse, "ROLLA") == first
    assert [c["bars_delta"] for c in change.per_ticker] == [0]

    # a second source for the same minutes: one bar per minute still, nse's preferred
    nse = _session("ROLLA", days[1], source="nse", shift=5.0)
    warehouse.insert("prices", nse)
    rollups.refresh(warehouse, nse)
    assert sum(r["bars"] for r in _stored_buckets(warehouse, "ROLLA")) == 750

    # a correction (same keys, newer ingested_at, other values) replaces what it corrects
    fixed = _session("ROLLA", days[0], shift=1.0, ingested=dt.datetime(2026, 11, 4, tzinfo=UTC))
    warehouse.insert("prices", fixed)
    rollups.refresh(warehouse, fixed)

    truth = fixed.to_pylist() + nse.to_pylist()
    window = (dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 5, tzinfo=UTC))
    ragged = (dt.datetime(2026, 11, 2, 4, 7, tzinfo=UTC), dt.datetime(2026, 11, 3, 8, 41, tzinfo=UTC))
    for interval in (Interval.HOUR, Interval.DAY):
        for start, end in (window, ragged):
            got = price_bars(warehouse, "ROLLA", start, end, interval)
            assert got == _expected(truth, interval.value, start, end), (interval, start, end)


def test_rollups_drop_buckets_whose_bars_are_gone_and_fill_an_empty_table(warehouse: ClickHouseWarehouse) -> None:
    from sentinel_ray.serve.queries import Interval, price_bars
    from sentinel_ray.storage import rollups

    day = dt.date(2026, 11, 4)
    batch = _session("ROLLB", day)
    warehouse.insert("prices", batch)
    rollups.refresh(warehouse, batch)
    warehouse.command("DELETE FROM {db}.prices WHERE ticker = 'ROLLB' AND ts >= {t:DateTime64(3, 'UTC')}",
                      {"t": dt.datetime(2026, 11, 4, 8, 0, tzinfo=UTC)})
    change = rollups.refresh(warehouse, batch)
    assert change.emptied == {("ROLLB", "NSE")}
    assert max(r["bucket"] for r in _stored_buckets(warehouse, "ROLLB")) == dt.datetime(2026, 11, 4, 7, 30)
    start, end = dt.datetime(2026, 11, 4, tzinfo=UTC), dt.datetime(2026, 11, 5, tzinfo=UTC)
    remaining = [b for b in batch.to_pylist() if b["ts"] < dt.datetime(2026, 11, 4, 8, 0, tzinfo=UTC)]
    assert price_bars(warehouse, "ROLLB", start, end, Interval.HOUR) == _expected(remaining, "1h", start, end)

    before = warehouse.query_rows("SELECT ticker, bucket, bars, volume, close FROM {db}.prices_30m FINAL "
                                  "WHERE bars > 0 AND ticker LIKE 'ROLL%' ORDER BY ticker, bucket")
    warehouse.command("TRUNCATE TABLE {db}.prices_30m")
    rollups.refresh_in_place(warehouse, batch)  # what a backfill without a cache does: the same buckets
    assert warehouse.query_rows("SELECT ticker, bucket, bars, volume, close FROM {db}.prices_30m FINAL "
                                "WHERE bars > 0 AND ticker = 'ROLLB' ORDER BY ticker, bucket") == [
        r for r in before if r["ticker"] == "ROLLB"]
    warehouse.command("TRUNCATE TABLE {db}.prices_30m")
    assert rollups.fill_if_empty(warehouse) > 0
    assert rollups.fill_if_empty(warehouse) == 0  # filled: nothing to do
    assert warehouse.query_rows("SELECT ticker, bucket, bars, volume, close FROM {db}.prices_30m FINAL "
                                "WHERE bars > 0 AND ticker LIKE 'ROLL%' ORDER BY ticker, bucket") == before
