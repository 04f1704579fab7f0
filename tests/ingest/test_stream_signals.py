"""Signals in the stream: the prices consumer computes features, risk and alerts per batch;
a streamed day's features equal a backfill's, even when the consumer dies mid-batch."""
from __future__ import annotations

import json
import os
import signal

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.ingest.backfill import run_backfill
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M
from sentinel_ray.storage.warehouse import connect_warehouse
from tests.ingest.conftest import DAY
from tests.ingest.test_faults import _run, _wait_for

pytestmark = pytest.mark.ray


def _stored(settings: Settings, ds) -> pa.Table:
    """The table's rows (FINAL) without `computed_at`, in key order."""
    cols = [c for c in ds.column_names if c != "computed_at"]
    table = connect_warehouse(settings).query_arrow(
        f"SELECT {', '.join(cols)} FROM {{db}}.{ds.name} FINAL ORDER BY {', '.join(ds.natural_key)}")
    return pa.table({c: table.column(c).cast(ds.arrow_schema.field(c).type) for c in cols})


def _backfilled_twin(settings: Settings) -> Settings:
    twin = settings.model_copy(update={"warehouse_database": settings.warehouse_database + "_bf",
                                       "lake_uri": settings.resolved_lake_uri + "-bf"})
    run_backfill(twin, "replay", DAY, DAY)
    return twin


def test_streamed_features_equal_a_backfill_of_the_day_with_the_prices_consumer_killed_mid_batch(
        ray_session, ingest_settings, prefix) -> None:
    from sentinel_ray.ingest.supervisor import stream_store

    store = stream_store(ingest_settings, prefix)
    hold = f"{prefix}:fault:before-signals"
    store.redis.set(hold, "1")

    def kill_prices_consumer_between_its_writes_and_its_signals(sup) -> None:
        status_key = store.status_key("consumer", "prices-0")

        def held() -> bool:
            raw = store.redis.get(status_key)
            return bool(raw) and b"held at before-signals" in raw

        _wait_for(held, "the prices consumer to store a batch and stop before its signals")
        os.kill(json.loads(store.redis.get(status_key))["pid"], signal.SIGKILL)
        store.redis.delete(hold)

    status = _run(ingest_settings, prefix, kill_prices_consumer_between_its_writes_and_its_signals)
    prices = status["consumers"]["prices-0"]
    assert prices["restarts"] == 1 and prices["feature_rows"] > 0, prices

    streamed = _stored(ingest_settings, FEATURES_1M)
    backfilled = _stored(_backfilled_twin(ingest_settings), FEATURES_1M)
    bars = connect_warehouse(ingest_settings).query_rows(
        "SELECT uniqExact(ticker, exchange, ts) AS n FROM {db}.prices FINAL WHERE interval = '1m'")[0]["n"]
    assert streamed.num_rows == bars > 0
    assert streamed.equals(backfilled)  # every column, every row, nulls and NaNs included
def test_day_rows_and_risk_of_the_stream_match_the_backfill(ray_session, ingest_settings, prefix) -> None:
    _run(ingest_settings, prefix)
    twin = _backfilled_twin(ingest_settings)
    assert _stored(ingest_settings, FEATURES_1D).equals(_stored(twin, FEATURES_1D))
    wh, twin_wh = connect_warehouse(ingest_settings), connect_warehouse(twin)
    count = "SELECT count() AS n, uniqExact(ticker, exchange, ts) AS k FROM {db}.risk_1m FINAL"
    assert wh.query_rows(count)[0] == twin_wh.query_rows(count)[0]
    assert wh.query_rows(count)[0]["n"] == _stored(ingest_settings, FEATURES_1M).num_rows


def test_a_failed_risk_insert_fails_the_batch_after_its_other_writes_settle(ray_session, isolated_settings) -> None:
    """The signals' inserts run in the owner while risk is computed: when one fails, the batch
    fails with that error, the updater forgets its state (rebuilt next batch), and the
    inserts already started have finished before the error reaches the caller."""
    from sentinel_ray.detect.signals import SignalUpdater
    from sentinel_ray.pipeline.transform import process_batch
    from sentinel_ray.quality.rules import rules_for
    from sentinel_ray.records import utc_now
    from sentinel_ray.schemas import PRICES
    from sentinel_ray.sources.replay import ReplaySource

    now = utc_now()
    fetched = ReplaySource.from_settings(isolated_settings).generate_day(DAY, run_id="t", ingested_at=now)
    bars = process_batch(fetched.records["prices"], PRICES, now=now, run_id="t", ingested_at=now,
                         rules=rules_for(isolated_settings)).valid
    warehouse = connect_warehouse(isolated_settings)
    warehouse.ensure_schema()
    warehouse.insert("prices", bars)

    class RiskRefused:
        """The features inserts write only when waited for (so only a wait stores them); the
        risk insert is refused as it starts."""

        def __getattr__(self, name):
            return getattr(warehouse, name)

        def insert_started(self, name, table):
            if name == "risk_1m":
                raise RuntimeError("risk_1m refused")
            return lambda: warehouse.insert(name, table)

    signals = SignalUpdater(RiskRefused(), None, detected_by="stream")
    with pytest.raises(RuntimeError, match="risk_1m refused"):
        signals.on_prices(bars, batch_key="b1")
    assert signals.features.state is None and signals.episodes is None
    features = warehouse.query_rows("SELECT count() AS n FROM {db}.features_1m FINAL")[0]["n"]
    assert features == bars.filter(pc.equal(bars.column("interval"), "1m")).num_rows


def test_a_consumer_rebuilds_its_signal_states_when_stored_bars_changed_behind_it(
        embedded_redis, isolated_settings: Settings) -> None:
    """A replay that computes sessions again moves the store's signals epoch (holding the
    signals lock); a consumer seeing it moved forgets its in-memory states before its next
    batch, so it does not go on from the bars the replay replaced."""
    import itertools
    from types import SimpleNamespace

    from sentinel_ray.detect.signals import SignalCounts
    from sentinel_ray.ingest.consumer import ConsumerStats, StreamConsumer
    from sentinel_ray.ingest.supervisor import stream_store
    from sentinel_ray.schemas import POSTS

    class Signals:
        resets = 0
        counts = SignalCounts()

        def reset(self) -> None:
            self.resets += 1

        def on_posts(self, valid, *, batch_key) -> None:
            pass

    store = stream_store(isolated_settings, f"epoch{next(itertools.count())}-{isolated_settings.warehouse_database}")
    consumer = StreamConsumer.__new__(StreamConsumer)  # only its signals step, on a real store
    consumer.store, consumer.ds, consumer.stats, consumer.signals = store, POSTS, ConsumerStats(), Signals()
    consumer._signals_epoch = None
    batch, result = SimpleNamespace(key="b"), SimpleNamespace(valid=pa.table({"x": [1]}))
    consumer._signals(batch, result)
    consumer._signals(batch, result)
    assert consumer.signals.resets == 0  # a new consumer's states are loaded from the warehouse anyway
    store.move_signals_epoch()
    consumer._signals(batch, result)
    consumer._signals(batch, result)
    assert consumer.signals.resets == 1
