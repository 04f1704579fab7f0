"""The quality report through the CLI (what jobs/quality_report.py runs), written to the lake."""
from __future__ import annotations

import json

import pytest

from sentinel_ray.cli import main
from sentinel_ray.storage.lake import Lake

pytestmark = pytest.mark.ray


@pytest.fixture
def platform_env(backfilled, monkeypatch: pytest.MonkeyPatch):
    settings, *_ = backfilled
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(settings.resolved_data_dir))
    monkeypatch.setenv("SENTINEL_WAREHOUSE_DATABASE", settings.warehouse_database)
    monkeypatch.setenv("SENTINEL_LAKE_URI", settings.resolved_lake_uri)
    return settings


def test_quality_report_json_and_html_in_the_lake(platform_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quality", "--json", "--write"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert set(report["datasets"]) == {"prices", "posts", "filings"}
    assert report["datasets"]["prices"]["rows_in"] > 0
    # the replay files announcements for its earnings and filing-move episodes (and routine ones)
    assert report["datasets"]["filings"]["rows_in"] > 0 and report["datasets"]["filings"]["status"] == "healthy"
    assert any(p["pipeline"] == "backfill" for p in report["pipelines"])
    files = Lake(platform_env.resolved_lake_uri).list_files("reports")
    assert [f.rsplit(".", 1)[1] for f in files[-2:]] == ["html", "json"]
    html = open(files[-2]).read()
    assert "<h2>prices" in html and "rejected by rule" in html


def test_quality_report_text(platform_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quality"]) == 0
    text = capsys.readouterr().out
    assert "prices" in text and "rejected:" in text and "pipelines" in text


def test_quarantine_list_cli(platform_env, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quarantine", "list", "--dataset", "prices", "--rule", "non_positive_price", "--limit", "3"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert len(lines) == 3 and all("non_positive_price" in line for line in lines)
    assert "3 rows" in out.err
