"""Session-wide real components: one local Ray, one embedded Redis, one chdb data dir.

`ray.init` costs 8-18 s here, so Ray starts once per session. chdb opens one data dir
per process, so every test shares the session's warehouse data dir and isolates itself
with its own database name and lake directory (`isolated_settings`).
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import pytest

from sentinel_ray.config import Settings

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
_counter = itertools.count()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sentinel")


@pytest.fixture(scope="session")
def base_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, api_token="test-token")


@pytest.fixture(scope="session")
def embedded_redis(base_settings: Settings) -> Iterator[str]:
    from sentinel_ray.storage.redis import ensure_redis

    server = ensure_redis(base_settings)
    yield base_settings.resolved_redis_url
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    from sentinel_ray.runtime import RAY_NAMESPACE

    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=RAY_NAMESPACE,
             logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def isolated_settings(base_settings: Settings, tmp_path: Path) -> Settings:
    """The session's warehouse engine, but a database and a lake of this test's own."""
    return base_settings.model_copy(update={
        "warehouse_database": f"t{next(_counter)}_{tmp_path.name[-20:].replace('-', '_')}".lower()[:60],
        "lake_uri": str(tmp_path / "lake"),
    })


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real recorded payloads not present at {SHARED_FIXTURES} (only on development and CI machines)")
    return SHARED_FIXTURES


BACKFILL_START = "2026-11-05"  # Thursday .. Monday: trading days and a weekend
BACKFILL_END = "2026-11-09"


@pytest.fixture(scope="session")
def backfilled(ray_session: None, base_settings: Settings, embedded_redis: str,
               tmp_path_factory: pytest.TempPathFactory):
    """A replay backfill of a fixed range into a database and lake of its own, run once."""
    import datetime as dt

    from sentinel_ray.ingest.backfill import run_backfill

    settings = base_settings.model_copy(update={
        "warehouse_database": "backfilled", "lake_uri": str(tmp_path_factory.mktemp("backfilled-lake"))})
    start, end = dt.date.fromisoformat(BACKFILL_START), dt.date.fromisoformat(BACKFILL_END)
    summary = run_backfill(settings, "replay", start, end)
    return settings, summary, start, end


@pytest.fixture
def fake_service():
    """A local HTTP fixture server (127.0.0.1) replaying scripted payloads."""
    from tests.fakes.server import FakeService

    with FakeService() as service:
        yield service
