"""What the command line shows people: times in IST with the zone said (`query`, `status`,
`quality`; `alerts` already did), and the `up` banner: where the dashboard is, and how to open
the token-protected Ray dashboard."""
from __future__ import annotations

import datetime as dt

import pytest

from sentinel_ray.cli import _ist_clock, main
from sentinel_ray.lifecycle import Endpoints, banner


@pytest.fixture
def platform_env(backfilled, monkeypatch: pytest.MonkeyPatch):
    settings, *_ = backfilled
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(settings.resolved_data_dir))
    monkeypatch.setenv("SENTINEL_WAREHOUSE_DATABASE", settings.warehouse_database)
    monkeypatch.setenv("SENTINEL_LAKE_URI", settings.resolved_lake_uri)
    return settings


@pytest.mark.ray
@pytest.mark.parametrize("interval, first, count", [
    ("1m", "2026-11-05 09:15 IST", (370, 375)),  # the session opens 09:15 IST (03:45 UTC)
    ("1h", "2026-11-05 08:30 IST", (7, 7)),       # hours are UTC hours: 03:00 UTC is 08:30 IST
    ("1d", "2026-11-05 IST", (1, 1)),             # a daily bar is its IST trading day
])
def test_query_prints_ist(platform_env, capsys: pytest.CaptureFixture[str], interval: str, first: str,
                          count: tuple[int, int]) -> None:
    assert main(["query", "TCS", "--start", "2026-11-05", "--end", "2026-11-05", "--interval", interval]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].startswith(first + " ") and all(" IST " in line for line in lines)
    assert count[0] <= len(lines) <= count[1]
    assert out.err.strip() == f"{len(lines)} bars (times in IST)"


@pytest.mark.ray
def test_quality_prints_ist(platform_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quality"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("data quality, last 24 h (as of ") and text.splitlines()[0].endswith(" IST)")
    assert "last seen 20" in text and " UTC" not in text


def test_status_times_in_ist() -> None:
    assert _ist_clock("2026-11-05T04:10:07.5+00:00") == "2026-11-05 09:40:07 IST"
    assert _ist_clock(dt.datetime(2026, 11, 5, 4, 10, 7)) == "2026-11-05 09:40:07 IST"  # naive means UTC
    assert _ist_clock(None) == "-" and _ist_clock("") == "-" and _ist_clock("not a time") == "not a time"


UP = Endpoints(api="http://127.0.0.1:8000", ray_dashboard="http://127.0.0.1:8265",
               metrics=["http://127.0.0.1:44217/metrics"])


def test_up_banner_says_where_things_are_and_how_to_open_the_ray_dashboard() -> None:
    lines = banner(UP, api_token_set=True, ray_auth_mode="token")
    text = "\n".join(lines)
    assert lines[0].startswith("  dashboard  http://127.0.0.1:8000/  ") and "SENTINEL_API_TOKEN" in lines[0]
    ray_line = next(line for line in lines if line.startswith("  Ray dash   "))
    assert ray_line.startswith("  Ray dash   http://127.0.0.1:8265  ") and "`ray get-auth-token`" in ray_line
    assert "  API docs   http://127.0.0.1:8000/docs" in text and "http://127.0.0.1:44217/metrics (Prometheus" in text
    assert "read-only until SENTINEL_API_TOKEN is set" in banner(UP, api_token_set=False, ray_auth_mode="token")[0]
    # without token authentication the dashboard opens as it is; without a dashboard there is no line
    assert "get-auth-token" not in "\n".join(banner(UP, api_token_set=True, ray_auth_mode="disabled"))
    bare = Endpoints(api=UP.api, ray_dashboard=None, metrics=[])
    assert not any(line.startswith("  Ray dash") for line in banner(bare, api_token_set=True, ray_auth_mode="token"))
