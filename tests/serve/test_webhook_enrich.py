"""A webhook push without `tickers` gets them found by the pipeline, like a polled post: through
the real route, the Redis stream, a consumer and the warehouse, over HTTP on 127.0.0.1."""
from __future__ import annotations

import datetime as dt
import time
from typing import Iterator

import pytest
import requests

from sentinel_ray.config import Settings
from tests.fakes.net import serve_locally

pytestmark = pytest.mark.ray

TOKEN = {"Authorization": "Bearer test-token"}


@pytest.fixture
def settings(ray_session: None, embedded_redis: str, isolated_settings: Settings) -> Settings:
    # a key prefix of its own: other tests' stream entries never reach this database
    return isolated_settings.model_copy(update={
        "redis_key_prefix": f"enrich-{isolated_settings.warehouse_database}",
        "sources_enabled": [], "batch_max_wait_s": 0.2})


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    from sentinel_ray.serve.deployments import build_app

    with serve_locally(build_app(settings), name="sentinel-enrich-test", ready_path="/health") as base:
        yield base


def test_pushed_posts_without_tickers_are_found_by_their_tickers(api: str, settings: Settings) -> None:
    from sentinel_ray.ingest.supervisor import Supervisor
    from sentinel_ray.storage.warehouse import connect_warehouse

    ts = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat()
    records = [
        {"platform": "telegram", "post_id": "hook/1", "text": "$SUZLON target 80 by Friday", "ts": ts},
        {"platform": "telegram", "post_id": "hook/2", "text": "Yes Bank aur Vodafone Idea kharido abhi", "ts": ts},
        {"platform": "telegram", "post_id": "hook/3", "text": "$SUZLON again", "ts": ts, "tickers": ["YESBANK"]},
        {"platform": "telegram", "post_id": "hook/4", "text": "it is what it is, market will do what it wants",
         "ts": ts},
    ]
    consumers = Supervisor(settings)
    consumers.start()
    try:
        consumers.wait_ready()  # each consumer has created the warehouse tables
        response = requests.post(f"{api}/ingest/posts", json={"source": "tg-bot", "records": records}, headers=TOKEN)
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 4
        wh = connect_warehouse(settings)
        deadline = time.monotonic() + 90
        rows: list = []
        while time.monotonic() < deadline and len(rows) < 4:
            rows = wh.query_rows("SELECT post_id, tickers FROM {db}.posts FINAL WHERE source = 'tg-bot' "
                                 "ORDER BY post_id")
            time.sleep(0.2)
        # all four valid (none quarantined for missing tickers); a sender's own list is kept
        assert [(r["post_id"], list(r["tickers"])) for r in rows] == [
            ("hook/1", ["SUZLON"]), ("hook/2", ["YESBANK", "IDEA"]), ("hook/3", ["YESBANK"]), ("hook/4", [])]
    finally:
        consumers.stop()

    suzlon = requests.get(f"{api}/api/stocks/SUZLON/posts").json()["posts"]
    assert [p["post_id"] for p in suzlon] == ["hook/1"]
    idea = requests.get(f"{api}/api/stocks/IDEA/posts").json()["posts"]
    assert [(p["post_id"], p["tickers"]) for p in idea] == [("hook/2", ["YESBANK", "IDEA"])]
