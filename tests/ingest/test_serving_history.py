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
