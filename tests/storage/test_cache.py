from pathlib import Path

from sentinel_ray.storage.redis import EmbeddedRedis, connect_redis, redis_ok


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
