"""A backfill of days a live consumer's feature state spans moves the stream's signals epoch, so
the consumers rebuild their states with those days (one started before the history was stored
would otherwise keep baselines without it); older history leaves them alone."""
from __future__ import annotations

import datetime as dt
import itertools
from types import SimpleNamespace

from sentinel_ray.config import Settings
from sentinel_ray.ingest.serving import STATE_REACH, ServingUpdater
from sentinel_ray.ingest.supervisor import stream_store

_prefixes = itertools.count()


def test_recent_history_moves_the_signals_epoch_and_old_history_does_not(
        embedded_redis, isolated_settings: Settings) -> None:
    store = stream_store(isolated_settings, f"history{next(_prefixes)}-{isolated_settings.warehouse_database}")
    serving = ServingUpdater(SimpleNamespace(database=isolated_settings.warehouse_database), store)
    today = dt.datetime.now(dt.timezone.utc).date()
    epoch = store.signals_epoch()
    serving.on_history(today - STATE_REACH - dt.timedelta(days=1))  # before any live state's sessions
    assert store.signals_epoch() == epoch
    serving.on_history(today - dt.timedelta(days=1))
    assert store.signals_epoch() == epoch + 1
    ServingUpdater(SimpleNamespace(database="x"), None).on_history(today)  # no Redis: nothing to tell


def test_a_recomputed_block_holds_the_stream_only_when_a_live_state_can_hold_its_sessions(
        embedded_redis, isolated_settings: Settings, monkeypatch) -> None:
    """A block of sessions a replay or backfill computes again: recent, under the stream's
    signals lock and then the epoch moved; older than any live state's sessions, neither (the
    consumers would rebuild their states for nothing)."""
    import pytest

    from sentinel_ray.ingest.streams import SIGNALS_LOCK

    store = stream_store(isolated_settings, f"history{next(_prefixes)}-{isolated_settings.warehouse_database}")
    monkeypatch.setattr("sentinel_ray.ingest.serving.STREAM_TURN_S", 0.0)
    serving = ServingUpdater(SimpleNamespace(database=isolated_settings.warehouse_database), store)
    today = dt.datetime.now(dt.UTC).date()
    epoch = store.signals_epoch()
    old = [today - STATE_REACH - dt.timedelta(days=k) for k in (8, 1)]
    with serving.stream_signals_held(old), store.exclusive(SIGNALS_LOCK, wait_s=0.1):  # no consumer kept waiting
        pass
    assert store.signals_epoch() == epoch
    with serving.stream_signals_held([today - dt.timedelta(days=3), today - dt.timedelta(days=1)]):
        with pytest.raises(TimeoutError), store.exclusive(SIGNALS_LOCK, wait_s=0.1):
            pass
        assert store.signals_epoch() == epoch
    assert store.signals_epoch() == epoch + 1
