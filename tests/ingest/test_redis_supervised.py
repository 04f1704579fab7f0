"""The embedded Redis under its supervisor: SIGKILLed mid-stream, restarted within seconds on
the same data dir, and the run ends with exact counts (no loss, no doubles); `status` says
clearly what is down."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from sentinel_ray.ingest.supervisor import Supervisor
from sentinel_ray.storage.redis import EmbeddedRedis, RedisSupervisor, redis_ok
from tests.ingest.test_faults import _run, _wait_for

pytestmark = pytest.mark.ray


@pytest.fixture
def supervised_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, RedisSupervisor, list[str]]]:
    """An embedded Redis of this test's own (as `up` runs it) and its supervisor."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    said: list[str] = []
    supervisor = RedisSupervisor(server, say=said.append, check_every_s=0.1).start()
    yield server, supervisor, said
    supervisor.stop()
    server.stop()


def test_redis_sigkilled_mid_stream_is_restarted_and_counts_are_exact(ray_session, ingest_settings, prefix,
                                                                      supervised_redis) -> None:
    import ray

    server, supervisor, said = supervised_redis
    settings = ingest_settings.model_copy(update={"redis_url": server.url, "replay_chunk_rows": 700})
    outages: list[float] = []

    def kill_redis(sup: Supervisor) -> None:
        _wait_for(lambda: ray.get(sup.pollers["replay"].status.remote())["records"] > 0, "records to flow")
        for n in (1, 2):  # the second one while consumers are busy with what the first left
            pid = server.pid
            assert pid is not None
            began = time.monotonic()
            os.kill(pid, signal.SIGKILL)  # not a clean stop: nothing is flushed or saved
            _wait_for(lambda: supervisor.restarts == n and redis_ok(server.url), "the supervisor to restart Redis",
                      10)
            outages.append(time.monotonic() - began)
            assert server.pid != pid
            time.sleep(0.7)

    status = _run(settings, prefix, kill_redis)  # exact lake + warehouse counts, no duplicate keys or files
    assert len(outages) == 2 and max(outages) < 3.0, outages
    assert len(said) == 2 and all("embedded Redis died (signal 9, SIGKILL); restarted in" in s for s in said), said
    workers = [*status["pollers"].values(), *status["consumers"].values()]
    assert any(w.get("errors") for w in workers), status  # the kills did land mid-stream


def _status(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env["SENTINEL_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "sentinel_ray.cli", "status"], capture_output=True, text=True,
                          timeout=120, env=env)


def test_status_says_what_is_down_without_a_traceback(ray_session, tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = _status(data)  # nothing running under this data dir
    assert out.returncode == 1, out.stderr
    assert (f"DOWN  Redis: embedded Redis not running at unix://{data / 'redis' / 'redis.sock'} \u2014 "
            f"is `sentinel-ray up` running?") in out.stderr, out.stderr
    assert "Traceback" not in out.stderr + out.stdout

    server = EmbeddedRedis(data / "redis").start()  # Redis up, but nobody watching it
    try:
        out = _status(data)
        assert out.returncode == 1, out.stderr
        assert "DOWN  Redis supervisor: none running for the embedded Redis" in out.stderr, out.stderr
        assert "ingestion supervisor: not running" in out.stderr and "Traceback" not in out.stderr
        assert "pollers" in out.stdout  # what the workers last reported (nothing yet) is still shown
    finally:
        server.stop()
