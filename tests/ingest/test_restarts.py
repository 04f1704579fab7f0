"""Restarts are counted where a restart cannot wipe them: `status` shows them after a kill -9."""
from __future__ import annotations

import os
import signal
import time

import pytest

from sentinel_ray.ingest.supervisor import Supervisor, reported_status, with_key_prefix

pytestmark = pytest.mark.ray


def _pid(handle) -> int | None:
    import ray

    try:
        return ray.get(handle.status.remote(), timeout=2)["pid"]
    except Exception:  # noqa: BLE001 - restarting
        return None


def test_a_consumer_killed_with_sigkill_is_counted_as_restarted(ray_session, ingest_settings, prefix) -> None:
    sup = Supervisor(ingest_settings.model_copy(update={"sources_enabled": []}), prefix)
    sup.start()
    try:
        sup.wait_ready()
        assert {n: c["restarts"] for n, c in sup.status()["consumers"].items()} == {
            "prices-0": 0, "posts-0": 0, "filings-0": 0}
        handle = sup.consumers["prices-0"]
        pid = _pid(handle)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while _pid(handle) in (None, pid):
            assert time.monotonic() < deadline, "Ray did not restart the consumer"
            time.sleep(0.1)
        status = sup.status()
        assert status["consumers"]["prices-0"]["restarts"] == 1, status
        assert status["consumers"]["posts-0"]["restarts"] == 0
        assert status["dead_letters"]["prices"]["waiting"] == 0
        # the same count without Ray, from Redis alone (what `status` falls back to)
        redis_only = reported_status(with_key_prefix(sup.settings, prefix))
        assert redis_only["consumers"]["prices-0"]["restarts"] == 1
    finally:
        sup.stop()
