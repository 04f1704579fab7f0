"""Starting or joining Ray, and sharing the platform's settings with jobs on the cluster.

`sentinel-ray up` publishes its resolved settings in the cluster's key-value store, so
a `ray job submit -- python jobs/backfill.py` whose working directory is a copy of the
repository still writes to the same lake and warehouse as the running platform.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from sentinel_ray.config import Settings, load_settings

log = logging.getLogger(__name__)
RAY_NAMESPACE = "sentinel"
_KV_KEY = b"sentinel:settings"
HEAD_RESOURCE = "node:__internal_head__"  # a resource only the head node has (Ray's own)


@dataclass(frozen=True)
class RayConnection:
    started_here: bool  # we started this Ray and must shut it down
    dashboard_url: str | None


def init_ray(settings: Settings, *, include_dashboard: bool = True, num_cpus: int | None = None) -> RayConnection:
    """Join RAY_ADDRESS (or the job's cluster) or start a local one."""
    import ray

    if ray.is_initialized():
        return RayConnection(False, None)
    address = os.environ.get("RAY_ADDRESS") or None
    if address:
        ctx = ray.init(address=address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING)
        return RayConnection(False, ctx.dashboard_url or None)
    cpus = num_cpus or settings.ray_num_cpus
    ctx = ray.init(
        address="local",
        namespace=RAY_NAMESPACE,
        num_cpus=cpus,
        include_dashboard=include_dashboard,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        _system_config=warm_workers_config(cpus or os.cpu_count() or 1),
    )
    return RayConnection(True, ctx.dashboard_url or None)


def warm_workers_config(cpus: int) -> dict[str, int]:
    """Ray's system config for a cluster `up` starts: room for idle workers beyond the CPU count.

    Ray stops idle workers a second after they go idle once there are more than
    `num_workers_soft_limit` (by default the CPU count) on a node, whatever job they belong
    to. The backfill service's task workers, imports done, are what makes a backfill on a
    running platform fast; any other job's workers (a replay, a report, an in-driver
    backfill) pushed the count over and Ray stopped them (a month via the service after an
    in-driver job: 76k rows/s, 101k with this room; bench/backfill_e2e.py). Idle workers of
    a job that ended still go with it."""
    return {"num_workers_soft_limit": 2 * cpus + 2}


def join_ray(address: str | None = None) -> None:
    """Connect to a running cluster (RAY_ADDRESS, else the newest local one)."""
    import ray

    if ray.is_initialized():
        return
    ray.init(address=address or os.environ.get("RAY_ADDRESS", "auto"), namespace=RAY_NAMESPACE,
             logging_level=logging.ERROR, log_to_driver=False)


def join_or_start_ray(settings: Settings) -> RayConnection:
    """Join the running platform's cluster if there is one, else start a local Ray.

    Joining matters with the embedded warehouse: a second cluster would open the same
    chdb data dir from another process."""
    import ray

    try:
        join_ray()
        return RayConnection(False, None)
    except ConnectionError:
        if ray.is_initialized():
            ray.shutdown()
        return init_ray(settings, include_dashboard=False)


def join_platform(settings: Settings, *, needs_ray: bool = False, start_ray: bool = True) -> Settings:
    """The running platform's settings, with this driver on its Ray cluster when it needs one.

    A command needs Ray for work of its own (`needs_ray`) or to reach the embedded
    warehouse, whose only owner is an actor on the platform's cluster. Without a running
    cluster a local one is started, unless `start_ray` is False (then ConnectionError)."""
    if not (needs_ray or settings.warehouse_is_embedded):
        return settings
    if start_ray:
        join_or_start_ray(settings)
    else:
        join_ray()
    return settings_for_job()


def on_the_head_node() -> Any:
    """A scheduling strategy that places an actor on the cluster's head node and nowhere else.

    For the actors that must outlive any one worker node (the ingestion supervisor, which
    owns the pollers and consumers: Ray ends what an actor owns when the actor's node goes).
    The head lives as long as the cluster. A soft affinity is not enough: with free room
    elsewhere Ray places a zero-CPU actor on another node (tests/test_multinode.py)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = next((node["NodeID"] for node in ray.nodes() if node["Alive"] and HEAD_RESOURCE in node["Resources"]),
                None)
    if head is None:
        raise RuntimeError("no alive head node in this Ray cluster")
    return NodeAffinitySchedulingStrategy(head, soft=False)


def publish_settings(settings: Settings) -> None:
    from ray.experimental import internal_kv

    # no secrets: anything on the cluster can read this store; a job brings its own credentials
    internal_kv._internal_kv_put(_KV_KEY, json.dumps(settings.as_env(include_secrets=False)).encode(),
                                 overwrite=True)


def settings_for_job(environ: dict[str, str] | None = None) -> Settings:
    """Settings for a driver joining a cluster: its own env, else what `up` published."""
    import ray
    from ray.experimental import internal_kv

    environ = dict(os.environ if environ is None else environ)
    own = load_settings(environ)
    if "SENTINEL_DATA_DIR" in environ or not ray.is_initialized():
        return own
    published = internal_kv._internal_kv_get(_KV_KEY)
    if not published:
        return own
    log.info("using the settings published by the running platform")
    return load_settings({**json.loads(published), **environ})
