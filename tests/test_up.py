"""`sentinel-ray up` end to end in a subprocess: starts everything, serves, stops on Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fakes.net import free_port




def test_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTINEL_", "RAY_ADDRESS"))}
    env.update({"SENTINEL_DATA_DIR": str(tmp_path / "data"), "SENTINEL_API_PORT": str(port),
                "SENTINEL_BACKFILL_DAYS": "1", "RAY_USAGE_STATS_ENABLED": "0",
                "SENTINEL_REPLAY_SPEED": "600", "SENTINEL_REPLAY_LIVE_START": "2026-11-05"})
    proc = subprocess.Popen([sys.executable, "-m", "sentinel_ray.cli", "up", "--no-dashboard"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        assert "Sentinel Ray is up." in output, output[-3000:]
        assert f"http://127.0.0.1:{port}/docs" in output
        assert "/metrics (Prometheus" in output
        assert "backfill backfill-" in output and "quarantined" in output
        ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        stocks = requests.get(f"http://127.0.0.1:{port}/api/stocks", timeout=30).json()
        assert sum(s["bars"] for s in stocks) > 0
        assert "ingestion  pollers replay" in output
        address = next(line.split()[1] for line in lines if line.startswith("ray "))
        status = _status(address, tmp_path, env)
        assert status["pollers"]["replay"]["actor"] == "alive"
        deadline = time.monotonic() + 60
        while status["consumers"]["prices-0"]["rows_valid"] < 1000 and time.monotonic() < deadline:
            time.sleep(1)
            status = _status(address, tmp_path, env)
        prices = status["consumers"]["prices-0"]
        assert prices["rows_valid"] >= 1000, status  # live replay rows are flowing, and they are valid
        assert prices["rows_quarantined"] < 0.01 * prices["rows_in"], status
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    assert proc.returncode == 0, rest[-3000:]
    for part in ("stopped Ray Serve", "stopped ingestion", "stopped embedded warehouse", "stopped Ray", "stopped embedded Redis"):
        assert part in rest, rest[-3000:]
    assert not (tmp_path / "data" / "redis" / "redis.sock").exists() or not _answers(tmp_path)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)


def _status(address: str, cwd: Path, env: dict[str, str]) -> dict:
    import json

    out = subprocess.run([sys.executable, "-m", "sentinel_ray.cli", "status", "--json"], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env={**env, "RAY_ADDRESS": address})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout[out.stdout.index("{"):])


def _answers(tmp_path: Path) -> bool:
    from sentinel_ray.storage.redis import redis_ok

    return redis_ok(f"unix://{tmp_path / 'data' / 'redis' / 'redis.sock'}")
