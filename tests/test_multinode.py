"""Sentinel Ray on a real multi-node Ray cluster: three raylets on this machine.

The cluster runs in a subprocess (tests/multinode_scenario.py; a driver joins one cluster
for its life and this session has its own). One run, several assertions: where the parts
are placed, a backfill whose days run on several nodes, and a worker node lost while
ingestion runs, ending with exact counts and the actors on the surviving nodes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("multinode")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTINEL_", "RAY_ADDRESS"))}
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"})
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tests.multinode_scenario", str(work)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=420)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("MULTINODE ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    report = json.loads(lines[-1].removeprefix("MULTINODE "))
    report["wall_s"] = time.monotonic() - began
    print(f"multinode scenario: {report['wall_s']:.0f}s, laps {report['timings_s']}")
    return report


def test_three_nodes_with_state_on_the_head(scenario: dict[str, Any]) -> None:
    assert scenario["alive_nodes_at_start"] == 3
    head = scenario["head"]
    # embedded mode: the warehouse's owner actor (and the supervisor) on the head, with the embedded Redis
    assert scenario["warehouse_owner_node"] == head
    assert scenario["supervisor_node"] == head


def test_backfill_days_run_on_several_nodes(scenario: dict[str, Any]) -> None:
    backfill = scenario["backfill"]
    assert backfill["days"] == 3
    assert len(backfill["task_nodes"]) > 1, backfill["task_nodes"]
    assert sum(backfill["task_nodes"].values()) >= 3  # one day a task here (3 CPUs, 3 days)
    assert backfill["stored"] == backfill["expected"]
    assert backfill["rows_valid"]["prices"] == backfill["expected"]["prices_warehouse"]


def test_node_lost_mid_stream_loses_and_doubles_nothing(scenario: dict[str, Any]) -> None:
    assert "error" not in scenario, scenario.get("error")
    # the node went while consumers on it had written a batch and not acknowledged it
    assert scenario["held_at_kill"] and scenario["actors_on_victim"]
    assert sum(scenario["pending_at_kill"].values()) > 0
    assert scenario["stored_at_kill"] != scenario["stream"]["expected"]
    assert 0 < scenario["published_at_kill"] < scenario["rows_in_replay"]  # the poller was mid-day
    stream = scenario["stream"]
    assert stream["stored"] == stream["expected"]
    assert stream["lake_duplicates"] == {"prices": 0, "posts": 0}
    assert all(s["entries_total"] == 0 for s in stream["dead_letters"].values()), stream["dead_letters"]
    assert scenario["alive_nodes_at_end"] == 2


def test_lost_actors_restarted_on_the_surviving_nodes(scenario: dict[str, Any]) -> None:
    victim, after = scenario["victim"], scenario["after"]
    survivors = {scenario["head"], *scenario["workers"]} - {victim}
    assert {a["node"] for a in after.values()} <= survivors
    for name in scenario["actors_on_victim"]:
        assert after[name]["num_restarts"] >= 1, after[name]
        assert after[name]["pid"] != scenario["placed"][name]["pid"]
    restarts = {**scenario["stream"]["restarts"]["pollers"], **scenario["stream"]["restarts"]["consumers"]}
    for name in scenario["actors_on_victim"]:
        short = name.split("-poller-", 1)[-1].split("-consumer-", 1)[-1]
        assert restarts[short] >= 1, restarts  # counted in Redis by the restarted actor
