"""The supervisor: starts pollers and consumers as Ray actors, restarts them, reports on them.

Pollers (one per enabled source) and consumers (`consumers_per_dataset` per dataset) are
long-lived actors with `max_restarts=-1`: when a worker process dies Ray starts a new one
and re-runs its `run()` loop (`max_task_retries=-1`), which resumes from Redis. The
supervisor itself is a named, detached actor (`sentinel-supervisor`), so `sentinel-ray
status` in another terminal can ask it; it also re-creates any actor Ray gave up on.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import ray

from sentinel_ray.config import Settings
from sentinel_ray.ingest.consumer import StreamConsumer
from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.monitoring import metrics
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.runtime import RAY_NAMESPACE
from sentinel_ray.schemas import DATA_DATASETS
from sentinel_ray.sources import make_stream_source
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.redis import connect_redis
from sentinel_ray.storage.warehouse import connect_warehouse

log = logging.getLogger(__name__)
SUPERVISOR_NAME = "sentinel-supervisor"
CHECK_EVERY_S = 5.0


def with_key_prefix(settings: Settings, prefix: str | None) -> Settings:
    """`settings` with `prefix` as its Redis key prefix (None: as configured); tests and benches isolate keys."""
    return settings if prefix is None else settings.model_copy(update={"redis_key_prefix": prefix})


def stream_store(settings: Settings, prefix: str | None = None) -> StreamStore:
    # generous timeouts: a stream read blocks up to batch_max_wait_s on the socket
    return StreamStore(connect_redis(settings.resolved_redis_url, timeout_s=30.0),
                       with_key_prefix(settings, prefix).redis_key_prefix)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class PollerActor:
    def __init__(self, settings: Settings, source_name: str) -> None:
        self.poller = SourcePoller(settings, make_stream_source(source_name, settings),
                                   store=stream_store(settings), lake=Lake(settings.resolved_lake_uri))
        self._stop: asyncio.Event | None = None

    async def run(self) -> str:
        self._stop = asyncio.Event()
        await self.poller.run(self._stop)
        return "stopped"

    async def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def status(self) -> dict[str, Any]:
        return {**self.poller.stats.as_dict(), "pid": os.getpid()}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)
class ConsumerActor:
    def __init__(self, settings: Settings, dataset: str, name: str) -> None:
        self.consumer = StreamConsumer(settings, dataset, name, store=stream_store(settings),
                                       lake=Lake(settings.resolved_lake_uri), warehouse=connect_warehouse(settings))
        self._stop = threading.Event()

    def run(self) -> str:
        self.consumer.run(self._stop)
        return "stopped"

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        return {"dataset": self.consumer.ds.name, **self.consumer.stats.as_dict(), "pid": os.getpid()}


class Supervisor:
    """Owns the ingestion actors. Used inside the supervisor actor (and directly in tests)."""

    def __init__(self, settings: Settings, prefix: str | None = None) -> None:
        # the actors get these settings, so every store they open uses the same key prefix
        self.settings = with_key_prefix(settings, prefix)
        self.prefix = self.settings.redis_key_prefix
        self.store = stream_store(self.settings)
        self.pollers: dict[str, Any] = {}
        self.consumers: dict[str, Any] = {}
        self.runs: dict[str, Any] = {}  # actor name -> ObjectRef of its run() call
        self.restarts: dict[str, int] = {}

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        rules_for(self.settings)  # a bad rules file fails here, clearly, not in every consumer
        for ds in DATA_DATASETS:
            self.store.ensure_group(ds)
        for source in self.settings.sources_enabled:
            self._start_poller(source)
        for ds in DATA_DATASETS:
            for i in range(self.settings.consumers_per_dataset):
                self._start_consumer(ds, f"{ds}-{i}")

    def _start_poller(self, source: str) -> None:
        handle = PollerActor.options(name=f"{self.prefix}-poller-{source}", namespace=RAY_NAMESPACE,
                                     get_if_exists=True).remote(self.settings, source)
        self.pollers[source] = handle
        self.runs[f"poller:{source}"] = handle.run.remote()

    def _start_consumer(self, dataset: str, name: str) -> None:
        handle = ConsumerActor.options(name=f"{self.prefix}-consumer-{name}", namespace=RAY_NAMESPACE,
                                       get_if_exists=True).remote(self.settings, dataset, name)
        self.consumers[name] = handle
        self.runs[f"consumer:{name}"] = handle.run.remote()

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until every actor has been constructed and answers."""
        handles = [*self.pollers.values(), *self.consumers.values()]
        ray.get([h.status.remote() for h in handles], timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        for handle in [*self.pollers.values(), *self.consumers.values()]:
            try:
                ray.get(handle.stop.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - stopping: a dead actor is already stopped
                pass
        ray.wait(list(self.runs.values()), num_returns=len(self.runs), timeout=timeout_s)
        for handle in [*self.pollers.values(), *self.consumers.values()]:
            ray.kill(handle, no_restart=True)
        self.pollers.clear(), self.consumers.clear(), self.runs.clear()

    def check(self) -> list[str]:
        """Restart any actor whose run() ended (Ray gave up on it, or it returned); export stream lag."""
        restarted = []
        done, _ = ray.wait(list(self.runs.values()), num_returns=len(self.runs), timeout=0)
        for key, ref in list(self.runs.items()):
            if ref not in done:
                continue
            kind, name = key.split(":", 1)
            log.warning("supervisor: %s %s ended; restarting it", kind, name)
            self.restarts[key] = self.restarts.get(key, 0) + 1
            handle = self.pollers.get(name) if kind == "poller" else self.consumers.get(name)
            if handle is not None:
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:  # noqa: BLE001 - it may be gone already
                    pass
            if kind == "poller":
                self._start_poller(name)
            else:
                self._start_consumer(name.rsplit("-", 1)[0], name)
            restarted.append(key)
        self.export_stream_lag()
        return restarted

    def export_stream_lag(self) -> None:
        """Stream length / pending / oldest pending age per dataset as gauges (best effort)."""
        try:
            for ds in DATA_DATASETS:
                lag = self.store.lag(ds)
                metrics.set_stream_lag(ds, lag.length, lag.pending, lag.oldest_pending_age_s)
        except Exception as e:  # noqa: BLE001 - Redis down: the gauges wait for the next check
            log.debug("supervisor: stream lag not exported (%s)", e)

    # -- reporting -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        def ask(handle: Any) -> dict[str, Any]:
            try:
                return {"actor": "alive", **ray.get(handle.status.remote(), timeout=5)}
            except Exception as e:  # noqa: BLE001 - report, do not raise
                return {"actor": f"unreachable ({type(e).__name__})"}

        return {
            "pollers": {n: {**ask(h), "restarts": self.restarts.get(f"poller:{n}", 0)}
                        for n, h in self.pollers.items()},
            "consumers": {n: {**ask(h), "restarts": self.restarts.get(f"consumer:{n}", 0)}
                          for n, h in self.consumers.items()},
            "streams": {ds: self.store.lag(ds).as_dict() for ds in DATA_DATASETS},
            "checked_at": time.time(),
        }


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class SupervisorActor:
    def __init__(self, settings: Settings) -> None:
        self.supervisor = Supervisor(settings)
        self._stop = threading.Event()

    def start(self) -> None:
        self.supervisor.start()

    def watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                self.supervisor.check()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("supervisor check failed")

    def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def stop(self) -> None:
        self._stop.set()
        self.supervisor.stop()


def start_ingestion(settings: Settings) -> Any:
    """Create (or find) the supervisor actor and start everything it supervises."""
    handle = SupervisorActor.options(name=SUPERVISOR_NAME, namespace=RAY_NAMESPACE, lifetime="detached",
                                     get_if_exists=True).remote(settings)
    ray.get(handle.start.remote())
    handle.watch.remote()
    return handle


def stop_ingestion() -> None:
    try:
        handle = ray.get_actor(SUPERVISOR_NAME, namespace=RAY_NAMESPACE)
    except ValueError:
        return
    try:
        ray.get(handle.stop.remote(), timeout=60)
    finally:
        ray.kill(handle, no_restart=True)


def ingestion_status() -> dict[str, Any] | None:
    try:
        handle = ray.get_actor(SUPERVISOR_NAME, namespace=RAY_NAMESPACE)
    except ValueError:
        return None
    return ray.get(handle.status.remote(), timeout=30)
