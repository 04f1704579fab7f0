import os
import signal
import time
from pathlib import Path

from sentinel_ray.storage.redis import EmbeddedRedis, connect_redis, redis_ok, supervisor_status


def test_embedded_redis_starts_persists_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    try:
        client = connect_redis(server.url)
        client.xadd("s", {"k": "v"})
        assert client.xlen("s") == 1
    finally:
        server.stop()
    assert not redis_ok(server.url)
    again = EmbeddedRedis(tmp_path / "r").start()  # append-only file brings the stream back
    try:
        assert connect_redis(again.url).xlen("s") == 1
    finally:
        again.stop()


def _supervised(tmp_path: Path, **options: float):
    from sentinel_ray.storage.redis import RedisSupervisor

    server = EmbeddedRedis(tmp_path / "r").start()
    said: list[str] = []
    return server, RedisSupervisor(server, say=said.append, check_every_s=0.05, **options).start(), said


def _until(predicate, timeout_s: float = 10.0) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout_s, "timed out"
        time.sleep(0.02)
    return time.monotonic() - began


def test_a_sigkilled_embedded_redis_is_restarted_with_every_acknowledged_write(tmp_path: Path) -> None:
    server, supervisor, said = _supervised(tmp_path)
    try:
        client = connect_redis(server.url)
        for i in range(20):  # acknowledged writes up to the instant of the kill
            pipe = client.pipeline(transaction=True)
            for j in range(100):
                pipe.xadd("s", {"n": i * 100 + j})
            pipe.set("cursor", i)
            pipe.execute()
        pid = server.pid
        os.kill(pid, signal.SIGKILL)
        took = _until(lambda: supervisor.restarts == 1 and redis_ok(server.url))
        assert took < 3.0 and server.pid != pid
        assert client.xlen("s") == 2000 and client.get("cursor") == b"19"  # the client reconnects by itself
        assert said == [said[0]] and said[0].startswith("embedded Redis died (signal 9, SIGKILL); restarted in ")
        watched = supervisor_status(server.directory)
        assert watched is not None and watched["alive"] and watched["restarts"] == 1
    finally:
        supervisor.stop()
        server.stop()
    assert supervisor_status(server.directory) is None  # a stopped supervisor says so


def test_a_hung_embedded_redis_is_killed_and_restarted(tmp_path: Path) -> None:
    server, supervisor, said = _supervised(tmp_path, hung_after_s=0.5)
    try:
        connect_redis(server.url).set("k", "v")
        os.kill(server.pid, signal.SIGSTOP)
        _until(lambda: supervisor.restarts == 1 and redis_ok(server.url))
        assert connect_redis(server.url).get("k") == b"v"
        assert "stopped answering" in said[0]
    finally:
        supervisor.stop()
        server.stop()
