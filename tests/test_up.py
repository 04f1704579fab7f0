"""`sentinel-ray up` end to end in a subprocess, and the README's jobs against it.

One platform for the module (~20 s to start): it starts everything and serves;
a backfill submitted with `ray job submit --working-dir . -- python jobs/backfill.py`
writes to its warehouse; `serve deploy serve_config.yaml` redeploys its API; Ctrl-C stops
it all (the last test). Token authentication is on, as Ray turns it on by default; the
CLIs get `RAY_AUTH_MODE=token` as the README says.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.fakes.net import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # this environment's ray, serve and python
JOB_START, JOB_END = dt.date(2026, 11, 2), dt.date(2026, 11, 3)  # the README's range, shortened to two days


@dataclass
class Platform:
    proc: subprocess.Popen
    port: int
    env: dict[str, str]
    cwd: Path
    lines: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def ray_address(self) -> str:
        return next(line.split()[1] for line in self.lines if line.startswith("ray "))

    @property
    def dashboard(self) -> str:
        return next(line.split()[2] for line in self.lines if line.strip().startswith("Ray dash"))

    def cli_env(self) -> dict[str, str]:
        """A shell of the README's: this environment first on PATH (as `up`'s), RAY_AUTH_MODE=token."""
        return {**self.env, "RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="module")
def machine_to_itself(request: pytest.FixtureRequest) -> Iterator[None]:
    """No other Ray on the machine while `up` runs, as on a user's: the test session's own
    (tests/conftest.py `ray_session`) is shut down for this module, and started again after
    it when a later test needs it. Two clusters that `ray.init` started on one machine both
    want the dashboard agent's fixed port (52365; `ray.init` cannot choose another), and the
    one without it refuses job submissions ("No available agent to submit job")."""
    import ray

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    yield
    items = request.session.items
    mine = [i for i, item in enumerate(items) if item.path == request.path]
    later = items[max(mine) + 1:] if mine else []
    if was_up and any("ray_session" in item.fixturenames for item in later):
        from sentinel_ray.runtime import RAY_NAMESPACE

        # as tests/conftest.py's ray_session starts it
        ray.init(address="local", num_cpus=2, include_dashboard=False, namespace=RAY_NAMESPACE,
                 logging_level="WARNING", log_to_driver=False)


@pytest.fixture(scope="module")
def platform(machine_to_itself: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    cwd = tmp_path_factory.mktemp("up")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTINEL_", "RAY_ADDRESS", "RAY_AUTH_MODE"))}
    env.update({"SENTINEL_DATA_DIR": str(cwd / "data"), "SENTINEL_API_PORT": str(port),
                "SENTINEL_BACKFILL_DAYS": "1", "RAY_USAGE_STATS_ENABLED": "0",
                "SENTINEL_REPLAY_SPEED": "600", "SENTINEL_REPLAY_LIVE_START": "2026-11-05",
                # as ./scripts/up does: the cluster runs job entrypoints' `python` from PATH
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    proc = subprocess.Popen([sys.executable, "-m", "sentinel_ray.cli", "up"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    up = Platform(proc, port, env, cwd)
    try:
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            up.lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        yield up
    finally:
        if proc.poll() is None:  # the last test stops it; this is for when a test before it failed
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_up_serves(platform: Platform) -> None:
    output, port = platform.output, platform.port
    assert "Sentinel Ray is up." in output, output[-3000:]
    assert f"http://127.0.0.1:{port}/docs" in output
    assert "/metrics (Prometheus" in output
    assert "backfill backfill-" in output and "quarantined" in output
    ready = requests.get(f"{platform.api}/ready", timeout=30)
    assert ready.status_code == 200, ready.text
    stocks = requests.get(f"{platform.api}/api/stocks", timeout=30).json()
    assert sum(s["bars"] for s in stocks) > 0
    assert "ingestion  pollers replay" in output
    status = _status(platform)
    assert status["pollers"]["replay"]["actor"] == "alive"
    deadline = time.monotonic() + 60
    while status["consumers"]["prices-0"]["rows_valid"] < 1000 and time.monotonic() < deadline:
        time.sleep(1)
        status = _status(platform)
    prices = status["consumers"]["prices-0"]
    assert prices["rows_valid"] >= 1000, status  # live replay rows are flowing, and they are valid
    assert prices["rows_quarantined"] < 0.01 * prices["rows_in"], status


def test_backfill_submitted_as_a_ray_job(platform: Platform) -> None:
    """The README's command, against the running platform's dashboard, from the repository."""
    from sentinel_ray.config import Settings
    from sentinel_ray.sources.replay import ReplaySource

    submit = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", platform.dashboard, "--working-dir", ".", "--",
         "python", "jobs/backfill.py", "--source", "replay", "--start", str(JOB_START), "--end", str(JOB_END),
         "--json"],
        cwd=ROOT, env=platform.cli_env(), capture_output=True, text=True, timeout=240)
    assert submit.returncode == 0, _job_failure(submit)
    assert "succeeded" in submit.stdout, submit.stdout[-3000:]
    # the job's driver hands the range to the platform's backfill service (warm workers)
    assert "run by the platform's backfill service" in submit.stdout, submit.stdout[-3000:]
    summary = json.loads(next(line for line in submit.stdout.splitlines() if line.startswith('{"run_id"')))
    expected = ReplaySource.from_settings(Settings()).expected_counts(JOB_START, JOB_END)
    assert summary["days"] == 2
    assert {ds: n for ds, n in summary["rows_valid"].items() if n} == {
        ds: counts["valid"] for ds, counts in expected.items() if counts["valid"]}

    # in the platform's own warehouse: the run, and bars of both days behind its API
    runs = requests.get(f"{platform.api}/api/data/pipelines/backfill/runs", timeout=30).json()
    run = next(r for r in runs if r["run_id"] == summary["run_id"])
    assert run["status"] == "success" and run["rows_valid"] == sum(summary["rows_valid"].values())
    bars = requests.get(f"{platform.api}/api/stocks/TCS/prices", timeout=30,
                        params={"start": str(JOB_START), "end": str(JOB_END + dt.timedelta(days=1)),
                                "interval": "1d"}).json()["bars"]
    assert len(bars) == 2, bars


def test_quality_report_submitted_as_a_ray_job(platform: Platform) -> None:
    from sentinel_ray.storage.lake import Lake

    submit = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", platform.dashboard, "--working-dir", ".", "--",
         "python", "jobs/quality_report.py", "--hours", "24", "--json"],
        cwd=ROOT, env=platform.cli_env(), capture_output=True, text=True, timeout=240)
    assert submit.returncode == 0, _job_failure(submit)
    lines = submit.stdout.splitlines()  # the job's log between the CLI's own lines: the report, indented JSON
    report = json.loads("\n".join(lines[lines.index("{"):len(lines) - lines[::-1].index("}")]))
    assert report["datasets"]["prices"]["rows_in"] > 0
    assert any(p["pipeline"] == "backfill" for p in report["pipelines"])
    files = Lake(str(platform.cwd / "data" / "lake")).list_files("reports")  # the platform's lake
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["html", "json"], files


def test_serve_deploy_redeploys_the_api(platform: Platform) -> None:
    """`serve deploy serve_config.yaml` onto the running platform: its Serve keeps its port
    (Serve's HTTP options are fixed once it runs), the app is now the config's."""
    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "serve"), *args, "-a", platform.dashboard], cwd=ROOT, env=platform.cli_env(),
                              capture_output=True, text=True, timeout=120)

    deploy = serve("deploy", "serve_config.yaml")
    assert deploy.returncode == 0, deploy.stdout[-2000:] + deploy.stderr[-2000:]
    deadline, status = time.monotonic() + 120, ""
    while time.monotonic() < deadline:
        status = serve("status").stdout
        if "status: RUNNING" in status and "DEPLOYING" not in status:
            break
        time.sleep(1)
    assert "status: RUNNING" in status, status
    config = serve("config").stdout
    assert "import_path: sentinel_ray.serve.deployments:app_builder" in config, config
    for route in ("/health", "/ready", "/docs", "/api/stocks", "/api/alerts", "/api/data/freshness"):
        answer = requests.get(f"{platform.api}{route}", timeout=30)
        assert answer.status_code == 200, (route, answer.status_code, answer.text[:500])
    stocks = requests.get(f"{platform.api}/api/stocks", timeout=30).json()
    assert sum(s["bars"] for s in stocks) > 0  # the app the config built reads the platform's warehouse
    bars = requests.get(f"{platform.api}/api/stocks/TCS/prices", timeout=30,
                        params={"start": str(JOB_START), "end": str(JOB_END + dt.timedelta(days=1)),
                                "interval": "1d"}).json()["bars"]
    assert len(bars) == 2


def test_up_stops_cleanly_on_ctrl_c(platform: Platform) -> None:
    proc = platform.proc
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    assert proc.returncode == 0, rest[-3000:]
    for part in ("stopped Ray Serve", "stopped ingestion", "stopped backfill service", "stopped embedded warehouse",
                 "stopped Ray",
                 "stopped embedded Redis"):
        assert part in rest, rest[-3000:]
    assert not (platform.cwd / "data" / "redis" / "redis.sock").exists() or not _answers(platform.cwd)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{platform.api}/health", timeout=5)


def _job_failure(submit: subprocess.CompletedProcess) -> str:
    """The CLI's own lines (stderr), then the job's log and its status (stdout): the cause last."""
    return f"exit {submit.returncode}\n{submit.stderr[-2000:]}\n--- job log ---\n{submit.stdout[-8000:]}"


def _status(platform: Platform) -> dict:
    out = subprocess.run([sys.executable, "-m", "sentinel_ray.cli", "status", "--json"], cwd=platform.cwd,
                         capture_output=True, text=True, timeout=120,
                         env={**platform.env, "RAY_ADDRESS": platform.ray_address})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout[out.stdout.index("{"):])


def _answers(cwd: Path) -> bool:
    from sentinel_ray.storage.redis import redis_ok

    return redis_ok(f"unix://{cwd / 'data' / 'redis' / 'redis.sock'}")
