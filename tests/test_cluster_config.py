"""cluster.yaml (AWS) and docs/cluster-local.yaml (on-premise) as `ray up` reads them, offline.

What can be checked without a cloud account or SSH: the launcher's own schema and defaults
(`prepare_config`, `validate_config`; for the local provider the whole `_bootstrap_config`
that `ray up` runs before it opens SSH), every `ray start` flag against the installed Ray's
CLI, the shell of every command, and that the environment the nodes get makes settings
that point at shared services rather than embedded ones. AWS's own checks (AMI, subnets,
IAM profile, spot capacity) happen only at `ray up` with credentials.
"""
from __future__ import annotations

import copy
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "cluster.yaml", ROOT / "docs" / "cluster-local.yaml"]


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_launcher_accepts_it(path: Path) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(path)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)  # Ray's ray-schema.json, plus its node-type checks
    head = prepared["head_node_type"]
    workers = [t for t in prepared["available_node_types"] if t != head]
    if config["provider"]["type"] == "local":
        assert prepared["available_node_types"][head]["min_workers"] == len(config["provider"]["worker_ips"]) == 2
    else:
        assert workers, "a worker node type"
        assert sum(prepared["available_node_types"][t].get("min_workers", 0) for t in workers) >= 2


def test_the_aws_config_is_a_real_cluster() -> None:
    config = _load(ROOT / "cluster.yaml")
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    worker = types["sentinel.worker"]["node_config"]
    for node_type in types.values():
        assert node_type["node_config"]["ImageId"].startswith(("ami-", "resolve:ssm:"))
        assert node_type["resources"]["CPU"] > 0  # offline, the launcher cannot look instance types up
    assert "IamInstanceProfile" in worker, "workers write the S3 lake: they need a role that may"


def test_local_provider_config_resolves_as_ray_up_does() -> None:
    from ray.autoscaler._private.commands import _bootstrap_config

    resolved = _bootstrap_config(_load(ROOT / "docs" / "cluster-local.yaml"), no_config_cache=True)
    assert resolved["provider"]["type"] == "local"
    assert resolved["head_start_ray_commands"] and resolved["worker_start_ray_commands"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_nodes_get_the_project_the_token_and_this_ray(path: Path) -> None:
    config = _load(path)
    mounts = config["file_mounts"]
    assert mounts["~/sentinel-ray"] == "."
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert ".gitignore" in config["rsync_filter"]  # not .venv, not .sentinel
    install = next(c for c in config["setup_commands"] if "pip install" in c)
    assert "-e ~/sentinel-ray" in install
    assert f'"ray[default,serve]=={ray.__version__}"' in install, (
        f"pin the nodes' Ray to the one here ({ray.__version__}): the launcher and the CLIs need the same version")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_command_is_valid_shell(path: Path) -> None:
    config = _load(path)
    keys = ["initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands"]
    for command in (c for key in keys for c in config.get(key) or []):
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, f"{command!r}: {check.stderr}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ray_start_flags_exist_in_this_ray(path: Path) -> None:
    from ray.scripts.scripts import start

    config = _load(path)
    starts = {"head": config["head_start_ray_commands"], "worker": config["worker_start_ray_commands"]}
    for role, commands in starts.items():
        assert any(c.split("&&")[-1].split() == ["ray", "stop"] for c in commands), role
        [command] = [c for c in commands if "ray start" in c]
        args = shlex.split(command.split("ray start", 1)[1].replace("$RAY_HEAD_IP", "10.0.0.10"))
        params = start.make_context("ray start", args).params  # raises on an unknown flag or a bad value
        assert params["metrics_export_port"] == 8080, role  # docs/monitoring.md scrapes it on every node
        if role == "head":
            assert params["head"] and params["port"] == 6379 and params["autoscaling_config"]
            # room for the backfill service's warm workers beside other jobs' (runtime.warm_workers_config)
            assert params["system_config"]["num_workers_soft_limit"] >= 10
        else:
            assert not params.get("head") and params["address"] == "10.0.0.10:6379"
        assert command.lstrip().startswith(". ~/sentinel.env"), "Ray processes inherit the services' settings"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_node_environment_points_at_shared_services(path: Path, tmp_path: Path) -> None:
    """Run the setup command that writes ~/sentinel.env in a scratch HOME, source the file,
    and load the platform's settings from what it exports."""
    from sentinel_ray.config import load_settings

    config = _load(path)
    [writer] = [c for c in config["setup_commands"] if "> ~/sentinel.env" in c]
    home = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    subprocess.run(["bash", "-c", writer], env=home, check=True)
    dump = subprocess.run(["bash", "-c", ". ~/sentinel.env && env -0"], env=home, check=True,
                          capture_output=True, text=True).stdout
    env = dict(item.split("=", 1) for item in dump.split("\0") if "=" in item)
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["PATH"].startswith(f"{tmp_path}/venv/bin:")
    settings = load_settings({k: v for k, v in env.items() if k.startswith("SENTINEL_")})
    assert not settings.warehouse_is_embedded and settings.resolved_warehouse_dsn.startswith("http")
    assert not settings.redis_is_embedded and settings.resolved_redis_url.startswith("redis://")
    assert settings.resolved_lake_uri.startswith("s3://")
    # a secrets file, when the user mounts one, is read after the defaults
    (tmp_path / "sentinel.secrets.env").write_text("export SENTINEL_REDIS_URL=redis://:pw@redis:6379/0\n")
    url = subprocess.run(["bash", "-c", '. ~/sentinel.env && echo "$SENTINEL_REDIS_URL"'], env=home, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert url == "redis://:pw@redis:6379/0"
