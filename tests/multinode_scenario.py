"""A real multi-node Ray cluster on this machine, for tests/test_multinode.py.

    python -m tests.multinode_scenario WORK_DIR      (prints one JSON line: what it saw)

A head raylet and two worker raylets (`ray.cluster_utils.Cluster`: separate raylets,
object stores and worker processes, one GCS; ports of their own, so it runs beside the
test session's Ray), with token authentication as in production. In the order of
`sentinel-ray up` followed by `ray start --address` on more raylets: the head starts,
the embedded Redis and warehouse owner come up with it (so they are on the head), then
the workers join. Then:

1. a replay backfill, whose days run as Ray Data tasks: which nodes ran `store_days`
   (Ray's state API);
2. continuous ingestion (supervisor actor, pollers, consumers): which nodes the actors
   landed on; consumers are frozen after their writes and before XACK (the consumer's
   `before-ack` fault point), the worker node holding the most of them is removed
   (every process of it SIGKILLed, raylet included), the freeze lifted; then the stored
   counts, checked against the replay's, and where the actors run now.

It runs in a process of its own because a driver joins one cluster for its life, and the
test session already has one. The test asserts; this only reports (and raises on timeouts).
"""
from __future__ import annotations

import os

# Ray reads this when imported: token authentication as `ray.init` turns it on by default
os.environ.setdefault("RAY_AUTH_MODE", "token")

import datetime as dt  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BACKFILL_START, BACKFILL_END = dt.date(2026, 11, 2), dt.date(2026, 11, 4)  # Monday .. Wednesday
STREAM_DAY = dt.date(2026, 11, 5)
DATASETS = ("prices", "posts", "filings")
TIMEOUT_S = 150
# Ray notices a lost node after `health_check_failure_threshold` missed checks, every
# `health_check_period_ms` (defaults 5 x 3 s); shortened so the test does not wait 15 s.
HEAD_SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def _wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _settings(work: Path):
    from sentinel_ray.config import Settings

    return Settings(data_dir=work / "data", api_token="multinode", sources_enabled=["replay"],
                    replay_speed=0.0, replay_live_start=STREAM_DAY, replay_live_end=STREAM_DAY,
                    replay_chunk_rows=700, batch_max_rows=2_000, batch_max_wait_s=0.2, claim_idle_s=1.0,
                    stream_max_entries=10_000, consumers_per_dataset=2)


def _stored(settings) -> dict[str, int]:
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    lake, warehouse = Lake(settings.resolved_lake_uri), connect_warehouse(settings)
    out: dict[str, int] = {}
    for ds in DATASETS:
        out[f"{ds}_curated"] = lake.read("curated", ds).num_rows
        out[f"{ds}_quarantine"] = lake.read("quarantine", ds).num_rows
        try:
            out[f"{ds}_warehouse"] = warehouse.query_rows(f"SELECT count() AS n FROM {{db}}.{ds} FINAL")[0]["n"]
        except Exception:  # noqa: BLE001 - not created yet
            out[f"{ds}_warehouse"] = -1
    return out


def _replay_counts(settings, start: dt.date = STREAM_DAY, end: dt.date = STREAM_DAY) -> dict[str, dict[str, Any]]:
    from sentinel_ray.sources.replay import ReplaySource

    return ReplaySource.from_settings(settings).expected_counts(start, end)


def _expected(settings, start: dt.date, end: dt.date) -> dict[str, int]:
    exp = _replay_counts(settings, start, end)
    out: dict[str, int] = {}
    for ds in DATASETS:
        out[f"{ds}_curated"] = out[f"{ds}_warehouse"] = exp[ds]["valid"]
        out[f"{ds}_quarantine"] = sum(exp[ds]["rejected"].values())
    return out


def _lake_duplicates(settings) -> dict[str, int]:
    """Rows of each curated dataset whose natural key is already in another row."""
    from sentinel_ray.storage.lake import Lake

    keys = {"prices": ["ticker", "exchange", "interval", "source", "ts"], "posts": ["platform", "post_id"]}
    lake = Lake(settings.resolved_lake_uri)
    return {ds: (t := lake.read("curated", ds)).num_rows - t.group_by(key).aggregate([([], "count_all")]).num_rows
            for ds, key in keys.items()}


def _ingestion_actors() -> dict[str, dict[str, Any]]:
    """Alive pollers and consumers by name: node, pid, restarts (Ray's state API)."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=1000, raise_on_missing_output=False)
    return {a.name: {"node": a.node_id, "pid": a.pid, "class": a.class_name, "num_restarts": int(a.num_restarts)}
            for a in actors if a.class_name in ("PollerActor", "ConsumerActor")}


def _actor_node(name: str) -> str | None:
    from ray.util.state import list_actors

    found = list_actors(filters=[("name", "=", name), ("state", "=", "ALIVE")], raise_on_missing_output=False)
    return found[0].node_id if found else None


def run(work: Path) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from sentinel_ray.ingest.backfill import run_backfill
    from sentinel_ray.ingest.supervisor import (SUPERVISOR_NAME, ingestion_status, start_ingestion,
                                                stop_ingestion, stream_store)
    from sentinel_ray.runtime import RAY_NAMESPACE, publish_settings
    from sentinel_ray.storage.redis import ensure_redis
    from sentinel_ray.storage.warehouse import ACTOR_NAME, connect_warehouse, stop_embedded_warehouse
    from tests.fakes.net import free_port

    report: dict[str, Any] = {"timings_s": {}}
    began = time.monotonic()

    def lap(name: str) -> None:
        report["timings_s"][name] = round(time.monotonic() - began, 1)

    settings = _settings(work)
    # Cluster() points `address="auto"` at itself (and deletes the pointer at shutdown): put back what was there
    address_file = Path(ray._private.utils.get_ray_address_file(None))
    previous_address = address_file.read_text() if address_file.exists() else None
    redis = ensure_redis(settings)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True, "dashboard_port": free_port(),
        "_system_config": HEAD_SYSTEM_CONFIG})
    try:
        cluster.connect(namespace=RAY_NAMESPACE)
        head = ray.get_runtime_context().get_node_id()
        publish_settings(settings)
        connect_warehouse(settings).ensure_schema()  # the embedded warehouse's owner actor: on the head
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        worker_ids = [w.node_id for w in workers]
        report.update(head=head, workers=worker_ids, alive_nodes_at_start=sum(n["Alive"] for n in ray.nodes()),
                      warehouse_owner_node=_actor_node(ACTOR_NAME))
        lap("cluster_up")

        # 1. a backfill whose days run on several nodes
        backfill = settings.model_copy(update={"warehouse_database": "backfill", "lake_uri": str(work / "lake-bf")})
        summary = run_backfill(backfill, "replay", BACKFILL_START, BACKFILL_END)
        lap("backfill")
        report["backfill"] = {"days": summary.days, "rows_valid": summary.rows_valid,
                              "stored": _stored(backfill),
                              "expected": _expected(backfill, BACKFILL_START, BACKFILL_END),
                              "task_nodes": _store_days_nodes()}

        # 2. continuous ingestion, and a worker node lost while it runs
        # a short stream bound: while the consumers are held the poller waits on backpressure, so
        # when the node goes the replay is only partly published (its cursor mid-day)
        stream = settings.model_copy(update={"warehouse_database": "stream", "lake_uri": str(work / "lake-stream"),
                                             "stream_max_entries": 8})
        store = stream_store(stream)
        store.redis.set(store.fault_key("before-ack"), "1")  # consumers stop after their writes, before XACK
        start_ingestion(stream)
        report["supervisor_node"] = _actor_node(SUPERVISOR_NAME)
        placed = _wait_for(lambda: (a := _ingestion_actors()) and len(a) == 6 and a, "6 ingestion actors alive")
        report["placed"] = placed
        _wait_for(lambda: _held_on_workers(store, placed, worker_ids), "a consumer on a worker node to hold")
        held = _settled(lambda: _held_on_workers(store, placed, worker_ids))
        # the worker node with the most held consumers, then the most ingestion actors
        victim = max({placed[h]["node"] for h in held},
                     key=lambda n: (sum(1 for h in held if placed[h]["node"] == n),
                                    sum(1 for a in placed.values() if a["node"] == n)))
        on_victim = sorted(name for name, a in placed.items() if a["node"] == victim)
        report.update(victim=victim, actors_on_victim=on_victim,
                      held_at_kill=sorted(h for h in held if placed[h]["node"] == victim),
                      stored_at_kill=_stored(stream),
                      published_at_kill=(ingestion_status() or {})["pollers"]["replay"].get("records"),
                      rows_in_replay=sum(c["rows"] for c in _replay_counts(stream).values()),
                      pending_at_kill={ds: store.lag(ds).pending for ds in DATASETS})
        lap("ingestion_held")
        cluster.remove_node(next(w for w in workers if w.node_id == victim), allow_graceful=False)
        store.redis.delete(store.fault_key("before-ack"))
        _wait_for(lambda: not any(n["NodeID"] == victim and n["Alive"] for n in ray.nodes()), "Ray to see the node go")
        lap("node_removed")

        def moved() -> dict[str, dict[str, Any]] | None:
            now = _ingestion_actors()
            return now if len(now) == 6 and all(now[n]["node"] != victim for n in on_victim) else None

        try:
            report["after"] = _wait_for(moved, "the lost node's actors to run on the surviving nodes")
        except TimeoutError:
            from ray.util.state import list_actors

            for a in list_actors(detail=True, limit=1000, raise_on_missing_output=False):
                if a.class_name in ("PollerActor", "ConsumerActor", "SupervisorActor"):
                    print("ACTOR", a.name, a.state, a.node_id, a.num_restarts, a.death_cause, file=sys.stderr)
            raise
        lap("actors_moved")
        want = _expected(stream, STREAM_DAY, STREAM_DAY)

        def drained() -> bool:
            lags = [store.lag(ds) for ds in DATASETS]
            return all(lag.length == 0 and lag.pending == 0 for lag in lags) and _stored(stream) == want

        try:
            _wait_for(drained, "every row stored, the streams empty")
        except TimeoutError as e:
            report["error"] = str(e)
        lap("drained")
        status = ingestion_status() or {}
        report["stream"] = {"stored": _stored(stream), "expected": want, "lake_duplicates": _lake_duplicates(stream),
                            "restarts": {kind: {n: s.get("restarts", 0) for n, s in status.get(kind, {}).items()}
                                         for kind in ("pollers", "consumers")},
                            "dead_letters": {ds: store.dead_letter_summary(ds) for ds in DATASETS}}
        report["alive_nodes_at_end"] = sum(n["Alive"] for n in ray.nodes())
        stop_ingestion()
        stop_embedded_warehouse()
        lap("done")
        return report
    finally:
        ray.shutdown()
        cluster.shutdown()
        if redis is not None:
            redis.stop()
        if previous_address is not None:
            address_file.write_text(previous_address)


def _store_days_nodes() -> dict[str, int]:
    """Node id -> how many `store_days` tasks (the backfill's map tasks) it ran."""
    from ray.util.state import list_tasks

    def finished() -> list[Any]:
        tasks = [t for t in list_tasks(detail=True, limit=10_000, raise_on_missing_output=False)
                 if "store_days" in t.name and t.state == "FINISHED"]
        return tasks

    # task events reach the GCS asynchronously (every second or so)
    tasks = _wait_for(finished, "the backfill's finished tasks in the state API", 30)
    nodes: dict[str, int] = {}
    for task in tasks:
        nodes[task.node_id] = nodes.get(task.node_id, 0) + 1
    return nodes


def _settled(read: Callable[[], list[str]], quiet_s: float = 2.0, timeout_s: float = 20.0) -> list[str]:
    """`read()` once it has not changed for `quiet_s` (the consumers with a batch all reached the hold)."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + timeout_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.25)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


def _held_on_workers(store, placed: dict[str, dict[str, Any]], worker_ids: list[str]) -> list[str]:
    """Consumers on a worker node that stand at the before-ack fault point."""
    held = []
    for name, actor in placed.items():
        if actor["class"] != "ConsumerActor" or actor["node"] not in worker_ids:
            continue
        raw = store.redis.get(store.status_key("consumer", name.split("-consumer-", 1)[1]))
        if raw and b"held at before-ack" in raw:
            held.append(name)
    return held


if __name__ == "__main__":
    work_dir = Path(sys.argv[1])
    work_dir.mkdir(parents=True, exist_ok=True)
    print("MULTINODE " + json.dumps(run(work_dir), default=str), flush=True)
