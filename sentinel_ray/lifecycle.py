"""The platform on one machine: started part by part, stopped in reverse order, once.

`sentinel-ray up` is the user: Redis, Ray, the warehouse, an optional replay backfill,
ingestion and the Serve API come up in that order, and whatever came up is stopped on
the way out (Ctrl-C, SIGTERM, a failed start or the end of the command), even when a
second signal arrives while stopping. The embedded Redis is supervised while the platform
runs (restarted within seconds when it dies); the supervisor is the first thing stopped, so
it does not start Redis again while the platform is being taken down.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import ray
from ray import serve

from sentinel_ray.config import Settings
from sentinel_ray.ingest.supervisor import start_ingestion, stop_ingestion
from sentinel_ray.ingest.backfill_service import backfill_through, service_actor, stop_service
from sentinel_ray.runtime import init_ray, publish_settings
from sentinel_ray.serve.deployments import build_app
from sentinel_ray.storage.compaction import CompactionLoop
from sentinel_ray.storage.latest import LatestCache
from sentinel_ray.storage.redis import RedisSupervisor, connect_redis, ensure_redis
from sentinel_ray.storage.warehouse import connect_warehouse, stop_embedded_warehouse

Say = Callable[[str], None]


@dataclass(frozen=True)
class Endpoints:
    """Where the started platform answers."""

    api: str  # base URL of the HTTP API
    ray_dashboard: str | None
    metrics: list[str]  # one Prometheus scrape URL per live Ray node


def banner(up: Endpoints, *, api_token_set: bool, ray_auth_mode: str | None = None) -> list[str]:
    """What `up` prints once everything answers: where to open each part, and what each asks for."""
    mode = (os.environ.get("RAY_AUTH_MODE", "") if ray_auth_mode is None else ray_auth_mode).strip().lower()
    lines = [
        f"  dashboard  {up.api}/  (alert queue, ticker timelines, trending, data quality; times in IST; "
        + ("acknowledge and close alerts with the API token, SENTINEL_API_TOKEN)" if api_token_set
           else "read-only until SENTINEL_API_TOKEN is set)"),
        f"  API        {up.api}/api/stocks",
        f"  API docs   {up.api}/docs",
        f"  health     {up.api}/ready",
        "  status     sentinel-ray status",
    ]
    if up.ray_dashboard:
        # Ray >= 2.59 protects the dashboard of the clusters ray.init starts with a token
        # (unless RAY_AUTH_MODE=disabled): its login page asks for it.
        login = "" if mode == "disabled" else \
            "  (token-protected: run `ray get-auth-token` and paste what it prints at the login)"
        lines.append(f"  Ray dash   {up.ray_dashboard}{login}")
    lines.extend(f"  metrics    {url} (Prometheus; see docs/monitoring.md)" for url in up.metrics)
    return lines


class Platform:
    """Use as a context manager: leaving it stops what `start` started, and Ctrl-C is a
    clean stop rather than an error."""

    def __init__(self, settings: Settings, *, dashboard: bool = True, backfill: tuple[dt.date, dt.date] | None = None,
                 ingest: bool = True, say: Say, warn: Say) -> None:
        self.settings = settings
        self._dashboard = dashboard
        self._backfill = backfill
        self._ingest = ingest
        self._say = say  # progress, one line at a time
        self._warn = warn  # what could not be stopped
        self._stopping = threading.Event()
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        self.redis_supervisor: RedisSupervisor | None = None

    def start(self) -> Endpoints:
        settings, say = self.settings, self._say
        # Ctrl-C raises KeyboardInterrupt even when the shell started us with SIGINT ignored
        # (background jobs); SIGTERM is handled once Ray is up (ray.init installs its own handler).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        redis_server = ensure_redis(settings)
        if redis_server is not None:
            self._cleanups.append(("embedded Redis", redis_server.stop))
            self.redis_supervisor = RedisSupervisor(redis_server, say=self._warn).start()
        say(f"redis      {settings.resolved_redis_url}")
        # backfills and replays run while the platform was down could not move the latest-value
        # cache: the first read after this start rebuilds it from the warehouse
        LatestCache(connect_redis(settings.resolved_redis_url), settings.redis_key_prefix,
                    settings.warehouse_database).invalidate()

        connection = init_ray(settings, include_dashboard=self._dashboard)
        if connection.started_here:
            self._cleanups.append(("Ray", ray.shutdown))
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        publish_settings(settings)
        say(f"ray        {ray.get_runtime_context().gcs_address} (RAY_ADDRESS for other terminals)")
        warehouse = connect_warehouse(settings)
        if settings.warehouse_is_embedded:
            self._cleanups.append(("embedded warehouse", stop_embedded_warehouse))
        warehouse.ensure_schema()
        say(f"warehouse  {settings.resolved_warehouse_dsn}\nlake       {settings.resolved_lake_uri}")

        # every backfill on the platform runs in its service, whose workers stay warm between them
        stop_service()  # one left by an `up` that did not stop cleanly would run older code
        service = service_actor(create=True)
        self._cleanups.append(("backfill service", stop_service))
        if self._backfill is not None:
            first, last = self._backfill
            say(f"backfill   replay history {first}..{last} (days an earlier start loaded are skipped)")
            say(backfill_through(service, settings, "replay", first, last, progress=lambda p: say(p.render())).render())

        if self._ingest:
            start_ingestion(settings)
            self._cleanups.append(("ingestion", stop_ingestion))
            say(f"ingestion  pollers {', '.join(settings.sources_enabled) or 'none'} -> Redis Streams -> "
                f"{settings.consumers_per_dataset} consumer(s) per dataset")
            if settings.lake_compact_interval_s > 0:  # the stream's days, compacted once closed
                compactor = CompactionLoop(settings, say=say).start()
                self._cleanups.append(("lake compaction", compactor.stop))

        # Serve's controller and proxy log every deployment step at INFO to the terminal `up`
        # runs in; warnings and errors are what an operator there needs (the replicas, our
        # code, keep their own level)
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        serve.start(http_options={"host": settings.api_host, "port": settings.api_port},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
        self._cleanups.append(("Ray Serve", serve.shutdown))
        serve.run(build_app(settings), name="sentinel", route_prefix="/")
        dashboard = connection.dashboard_url
        metrics_ports = sorted({(n["NodeManagerAddress"], n.get("MetricsExportPort")) for n in ray.nodes()
                                if n.get("Alive") and n.get("MetricsExportPort")})
        return Endpoints(
            api=f"http://{settings.api_host}:{settings.api_port}",
            ray_dashboard=(dashboard if "://" in dashboard else "http://" + dashboard) if dashboard else None,
            metrics=[f"http://{host}:{port}/metrics" for host, port in metrics_ports],
        )

    def wait(self) -> None:
        """Until SIGTERM (Ctrl-C raises KeyboardInterrupt)."""
        self._stopping.wait()

    def stop(self) -> None:
        """Stop what was started, newest first; a part that fails to stop does not keep the rest running."""
        # a second Ctrl-C or SIGTERM must not cut the clean stop short (and leave servers behind)
        def still_stopping(*_: object) -> None:
            self._say("  still stopping, please wait ...")

        signal.signal(signal.SIGINT, still_stopping)
        signal.signal(signal.SIGTERM, still_stopping)
        self._say("\nstopping ...")
        if self.redis_supervisor is not None:
            supervisor, self.redis_supervisor = self.redis_supervisor, None
            supervisor.stop()
            self._say(f"  stopped the embedded Redis supervisor ({supervisor.restarts} restart(s))")
        while self._cleanups:
            name, cleanup = self._cleanups.pop()
            try:
                cleanup()
                self._say(f"  stopped {name}")
            except Exception as e:  # noqa: BLE001 - keep stopping the rest
                self._warn(f"  could not stop {name}: {e}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self.stop()
        return exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
