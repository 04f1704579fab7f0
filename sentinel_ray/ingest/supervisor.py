"""The supervisor: starts pollers and consumers as Ray actors, restarts them, reports on them.

Pollers (one per enabled source) and consumers (`consumers_per_dataset` per dataset) are
long-lived actors with `max_restarts=-1`: when a worker process dies Ray starts a new one
and re-runs its `run()` loop (`max_task_retries=-1`), which resumes from Redis. The
supervisor itself is a named, detached actor (`sentinel-supervisor`), so `sentinel-ray
status` in another terminal can ask it; it also re-creates any actor Ray gave up on. When
the supervisor's own process dies, its pollers and consumers end with it (they are its
own); Ray restarts the supervisor (`max_restarts=-1`), which then starts them again and
watches them, with no one having to call it: they resume from Redis as a restarted actor
does.

On a cluster of several nodes the pollers and consumers are spread over the nodes
(`SPREAD`), and an actor whose node is lost is started again on a surviving one. The
supervisor runs on the head node: it owns them, and Ray ends what an actor owns when
the actor's node goes.

Restarts are counted in Redis (`<prefix>:restarts:<kind>:<name>`), not in the actors'
memory, which a restart wipes: an actor Ray restarted counts itself when it comes back,
and the supervisor counts the actors it re-creates. `start()` sets them back to 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from typing import Any

import ray

from sentinel_ray.config import Settings
from sentinel_ray.ingest.consumer import StreamConsumer
from sentinel_ray.ingest.poller import SourcePoller
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.monitoring import metrics
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.runtime import RAY_NAMESPACE, on_the_head_node
from sentinel_ray.schemas import DATA_DATASETS, PRICES
from sentinel_ray.sources import make_stream_source
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.redis import connect_redis
from sentinel_ray.storage.warehouse import connect_warehouse

log = logging.getLogger(__name__)
SUPERVISOR_NAME = "sentinel-supervisor"
CHECK_EVERY_S = 5.0
# Ingestion actors need no CPU of their own, so the default scheduler would pack them all on
# the supervisor's node; spread, a lost node usually takes only its share of them. SPREAD is
# Ray's best effort (a test run had all six on one worker node); recovery does not depend on
# it (tests/test_multinode.py).
WORKER_SCHEDULING = "SPREAD"


def with_key_prefix(settings: Settings, prefix: str | None) -> Settings:
    """`settings` with `prefix` as its Redis key prefix (None: as configured); tests and benches isolate keys."""
    return settings if prefix is None else settings.model_copy(update={"redis_key_prefix": prefix})


def stream_store(settings: Settings, prefix: str | None = None) -> StreamStore:
    # generous timeouts: a stream read blocks up to batch_max_wait_s on the socket
    return StreamStore(connect_redis(settings.resolved_redis_url, timeout_s=30.0),
                       with_key_prefix(settings, prefix).redis_key_prefix)


def supervisor_restarts(store: StreamStore) -> int:
    """How often Ray restarted the supervisor actor since `start()` (counted in Redis)."""
    return store.restarts("supervisor", [SUPERVISOR_NAME])[SUPERVISOR_NAME]


def _was_restarted() -> bool:
    """In an actor's __init__: whether Ray is re-running it after its process died. Ray's own
    property reads its deprecated `actor_id` and warns about it in every actor's log (and so
    in `up`'s terminal); the warning is Ray's to fix, not ours to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def _count_if_restarted(store: StreamStore, kind: str, name: str) -> None:
    """In an actor's __init__: when Ray is re-running it after the process died, count that."""
    try:
        restarted = _was_restarted()
    except Exception as e:  # noqa: BLE001 - counting must not keep the actor from starting
        log.warning("%s %s: restart not counted (%s)", kind, name, e)
        return
    if restarted:
        _count_restart(store, kind, name)


def _count_restart(store: StreamStore, kind: str, name: str) -> None:
    """Count one restart of an actor Ray re-ran (in Redis, where `status` reads it)."""
    try:
        count = store.count_restart(kind, name)
        log.warning("%s %s: restarted by Ray (restart %d)", kind, name, count)
    except Exception as e:  # noqa: BLE001 - counting must not keep the actor from starting
        log.warning("%s %s: restart not counted (%s)", kind, name, e)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class PollerActor:
    def __init__(self, settings: Settings, source_name: str) -> None:
        store = stream_store(settings)
        _count_if_restarted(store, "poller", source_name)
        self.poller = SourcePoller(settings, make_stream_source(source_name, settings),
                                   store=store, lake=Lake(settings.resolved_lake_uri))
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
        store = stream_store(settings)
        _count_if_restarted(store, "consumer", name)
        self.consumer = StreamConsumer(settings, dataset, name, store=store,
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

    # -- lifecycle -----------------------------------------------------------------
    def start(self, *, resume: bool = False) -> None:
        """Start the pollers and consumers; restart counts go back to 0 unless `resume` (the
        supervisor restarted after its process died: the counts carry on)."""
        rules_for(self.settings)  # a bad rules file fails here, clearly, not in every consumer
        for ds in DATA_DATASETS:
            self.store.ensure_group(ds)
        if not resume:
            self.store.reset_restarts("poller", list(self.settings.sources_enabled))
            self.store.reset_restarts("consumer", [name for _ds, name in self._consumer_names()])
            self.store.reset_restarts("supervisor", [SUPERVISOR_NAME])
        for source in self.settings.sources_enabled:
            self._start_poller(source)
        for ds, name in self._consumer_names():
            self._start_consumer(ds, name)

    def _consumer_names(self) -> list[tuple[str, str]]:
        return [(ds, f"{ds}-{i}") for ds in DATA_DATASETS for i in range(self._consumers_of(ds))]

    def _consumers_of(self, dataset: str) -> int:
        # The signals carry state from bar to bar: one prices consumer sees them all in order
        # (it keeps up with 150k events/s; posts and filings scale out).
        if dataset == PRICES.name and self.settings.stream_signals:
            return 1
        return self.settings.consumers_per_dataset

    def _start_poller(self, source: str) -> None:
        handle = PollerActor.options(name=f"{self.prefix}-poller-{source}", namespace=RAY_NAMESPACE,
                                     get_if_exists=True, scheduling_strategy=WORKER_SCHEDULING,
                                     ).remote(self.settings, source)
        self.pollers[source] = handle
        self.runs[f"poller:{source}"] = handle.run.remote()

    def _start_consumer(self, dataset: str, name: str) -> None:
        handle = ConsumerActor.options(name=f"{self.prefix}-consumer-{name}", namespace=RAY_NAMESPACE,
                                       get_if_exists=True, scheduling_strategy=WORKER_SCHEDULING,
                                       ).remote(self.settings, dataset, name)
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
            try:
                self.store.count_restart(kind, name)
            except Exception as e:  # noqa: BLE001 - Redis down: restart it all the same
                log.warning("supervisor: restart of %s %s not counted (%s)", kind, name, e)
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

        poller_restarts = self.store.restarts("poller", list(self.pollers))
        consumer_restarts = self.store.restarts("consumer", list(self.consumers))
        return {
            "supervisor": {"pid": os.getpid(), "restarts": supervisor_restarts(self.store)},
            "pollers": {n: {**ask(h), "restarts": poller_restarts[n]} for n, h in self.pollers.items()},
            "consumers": {n: {**ask(h), "restarts": consumer_restarts[n]} for n, h in self.consumers.items()},
            "streams": {ds: self.store.lag(ds).as_dict() for ds in DATA_DATASETS},
            "dead_letters": {ds: self.store.dead_letter_summary(ds) for ds in DATA_DATASETS},
            "checked_at": time.time(),
        }

    def replay_dead_letters(self, dataset: str, ids: list[str] | None = None) -> list[str]:
        return replay_dead_letters(self.settings, dataset, ids)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=4)
class SupervisorActor:
    def __init__(self, settings: Settings) -> None:
        self.supervisor = Supervisor(settings)
        self._stop = threading.Event()
        if _was_restarted():
            # Ray re-ran this after the supervisor's process died: its pollers and consumers
            # died with it, and nobody will call start() and watch() again
            _count_restart(self.supervisor.store, "supervisor", SUPERVISOR_NAME)
            threading.Thread(target=self._resume, name="supervisor-resume", daemon=True).start()

    def start(self) -> None:
        self.supervisor.start()

    def watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            try:
                self.supervisor.check()
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("supervisor check failed")

    def _resume(self) -> None:
        """Start the pollers and consumers again (they resume from Redis), then watch them;
        while that fails (Redis down), try again every check."""
        while not self._stop.is_set():
            try:
                self.supervisor.start(resume=True)
                break
            except Exception:  # logged; tried again after a check interval
                log.exception("supervisor: restarted, could not start ingestion again; retrying")
                self._stop.wait(CHECK_EVERY_S)
        self.watch()

    def status(self) -> dict[str, Any]:
        return self.supervisor.status()

    def replay_dead_letters(self, dataset: str, ids: list[str] | None = None) -> list[str]:
        return self.supervisor.replay_dead_letters(dataset, ids)

    def stop(self) -> None:
        self._stop.set()
        self.supervisor.stop()


def start_ingestion(settings: Settings) -> Any:
    """Create (or find) the supervisor actor and start everything it supervises."""
    # on the head: the pollers and consumers are its own, and Ray ends them with it
    handle = SupervisorActor.options(name=SUPERVISOR_NAME, namespace=RAY_NAMESPACE, lifetime="detached",
                                     get_if_exists=True, scheduling_strategy=on_the_head_node()).remote(settings)
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


def reported_status(settings: Settings) -> dict[str, Any]:
    """Ingestion state from Redis alone (no Ray): what the workers last reported, restarts,
    stream lag and dead letters, in the shape of `ingestion_status()`."""
    store = stream_store(settings)

    def merged(kind: str) -> dict[str, dict[str, Any]]:
        reported, counted = store.statuses(kind), store.restarts(kind)
        return {n: {**reported.get(n, {}), "restarts": counted.get(n, 0)} for n in sorted({*reported, *counted})}

    return {"supervisor": {"restarts": supervisor_restarts(store)},
            "pollers": merged("poller"), "consumers": merged("consumer"),
            "streams": {ds: store.lag(ds).as_dict() for ds in DATA_DATASETS},
            "dead_letters": {ds: store.dead_letter_summary(ds) for ds in DATA_DATASETS}}


def dead_letters(settings: Settings, dataset: str, *, count: int = 100) -> list[dict[str, Any]]:
    """The oldest dead letters of `dataset`: ids, origin, error (Redis only; no Ray needed)."""
    return stream_store(settings).dead_letters(_data_dataset(dataset), count=count)


def replay_dead_letters(settings: Settings, dataset: str, ids: list[str] | None = None) -> list[str]:
    """Move `dataset`'s dead letters (these ids, or all) back to its stream, each exactly once;
    the running consumers store them. Returns the new stream ids."""
    return stream_store(settings).replay_dead_letters(_data_dataset(dataset), ids)


def _data_dataset(name: str) -> str:
    if name not in DATA_DATASETS:
        raise ValueError(f"no stream for {name!r}: one of {', '.join(DATA_DATASETS)}")
    return name
