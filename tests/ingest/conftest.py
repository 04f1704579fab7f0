from __future__ import annotations

import datetime as dt
import itertools

import pytest

from sentinel_ray.config import Settings

DAY = dt.date(2026, 11, 5)  # a Thursday: a trading day
_prefixes = itertools.count()


@pytest.fixture
def ingest_settings(isolated_settings: Settings, embedded_redis: str) -> Settings:
    return isolated_settings.model_copy(update={
        "batch_max_rows": 8_000, "batch_max_wait_s": 0.2, "claim_idle_s": 1.0, "replay_chunk_rows": 5_000,
        "replay_speed": 0.0, "stream_max_entries": 10_000, "sources_enabled": ["replay"],
        "replay_live_start": DAY, "replay_live_end": DAY,
    })


@pytest.fixture
def prefix(isolated_settings: Settings) -> str:
    return f"t{next(_prefixes)}-{isolated_settings.warehouse_database}"


@pytest.fixture
def store(ingest_settings: Settings, prefix: str):
    from sentinel_ray.ingest.supervisor import stream_store

    s = stream_store(ingest_settings, prefix)
    yield s
    for key in s.redis.scan_iter(match=f"{prefix}:*"):
        s.redis.delete(key)


def firehose(settings: Settings, start: dt.date = DAY, end: dt.date = DAY):
    from sentinel_ray.sources.replay import LiveReplaySource, ReplaySource

    return LiveReplaySource(ReplaySource.from_settings(settings), start=start, end=end, speed=0,
                            chunk_rows=settings.replay_chunk_rows)


def expected(settings: Settings, start: dt.date = DAY, end: dt.date = DAY) -> dict:
    from sentinel_ray.sources.replay import ReplaySource

    return ReplaySource.from_settings(settings).expected_counts(start, end)
