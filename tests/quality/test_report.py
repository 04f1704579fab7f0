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


def test_trend_per_source_and_its_charts_in_the_html(backfilled) -> None:
    """Validity, volume and freshness per source over time: rows in the report, inline SVG in its HTML
    (no script, nothing loaded: the file is read from the lake as it is)."""
    import datetime as dt
    import re

    from sentinel_ray.quality.report import quality_report, source_trend, to_html, trend_bucket_s
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings, summary, *_ = backfilled
    warehouse = connect_warehouse(settings)
    report = quality_report(warehouse, settings, record=False)
    assert report["trend_bucket_s"] == 900  # 24 h in at most 96 buckets
    rows = report["trend"]
    # the backfill's source in every dataset (webhook tests of this session may add sources of their own)
    assert {("prices", "replay"), ("posts", "replay"), ("filings", "replay")} <= {(r["dataset"], r["source"])
                                                                               for r in rows}
    for name in ("prices", "posts", "filings"):
        mine = [r for r in rows if r["dataset"] == name]
        # every row measured is in some bucket, and the trend adds up to the report's totals
        assert sum(r["rows_in"] for r in mine) == report["datasets"][name]["rows_in"]
        assert sum(r["rows_valid"] for r in mine) == report["datasets"][name]["rows_valid"]
        assert all(r["bucket"].tzinfo is not None for r in mine)
        assert all(r["freshness_s"] > 0 for r in mine if r["source"] == "replay")
        assert all(r["validity"] == r["rows_valid"] / r["rows_in"] for r in mine if r["rows_in"])
    # buckets are aligned on the bucket size, so a narrower window of the same data sums to the same
    start = min(r["bucket"] for r in rows)
    same = source_trend(warehouse, start, start + dt.timedelta(days=1), 900)

    def key(r: dict) -> tuple:
        return r["dataset"], r["source"], r["bucket"], r["rows_in"]
    assert sorted(map(key, same)) == sorted(map(key, rows))
    assert trend_bucket_s(dt.timedelta(days=30)) == 43200 and trend_bucket_s(dt.timedelta(hours=1)) == 60

    html = to_html(report)
    assert "<script" not in html and not re.search(r"\b(src|href)=", html)  # nothing to load
    for name in ("prices", "posts", "filings"):
        section = html.split(f"<h2>{name}: ")[1].split("<h2>")[0]
        charts = re.findall(r"<figure><figcaption>([^<]+)</figcaption><svg", section)
        assert charts == ["validity (valid / rows in)", "volume (rows in)", "freshness (age of the newest row stored)"]
        # a line per source in each chart, a dot per point (few points), the source in the key
        sources = {r["source"] for r in rows if r["dataset"] == name}
        assert 3 <= section.count("<polyline") <= 3 * len(sources) and section.count("<circle") >= 3
        assert all(f"</i>{source}</span>" in section for source in sources)
    assert "IST" in html
