"""`sentinel-ray sources list|check`: what each source needs, and one small live fetch against local servers."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from sentinel_ray.cli import main
from sentinel_ray.config import Settings
from sentinel_ray.sources import SOURCE_NAMES
from sentinel_ray.sources.check import CheckResult, check_source, list_sources, quick_settings
from tests.fakes.net import free_port
from tests.fakes.server import Reply
from tests.sources.helpers import payloads

rss_payload = payloads("rss")
CREDENTIALS = {"x": ("SENTINEL_X_BEARER_TOKEN",), "youtube": ("SENTINEL_YOUTUBE_API_KEY",),
               "reddit": ("SENTINEL_REDDIT_CLIENT_ID", "SENTINEL_REDDIT_CLIENT_SECRET")}


def check(name: str, settings: Settings, timeout_s: float = 5.0) -> CheckResult:
    return asyncio.run(check_source(name, settings, timeout_s))


closed_port = free_port  # bound to learn a free one, then closed: nothing listens there


# --- list ---------------------------------------------------------------------------------------


def test_list_shows_every_source_with_its_credential_env_vars() -> None:
    statuses = {s.name: s for s in list_sources(Settings())}
    assert tuple(statuses) == SOURCE_NAMES
    for name, status in statuses.items():
        needs = CREDENTIALS.get(name, ())
        assert status.needs == needs
        assert status.configured is not bool(needs)
        assert status.problem == (f"missing {', '.join(needs)}" if needs else "")
        assert status.datasets  # every source says what it emits
    assert statuses["x"].problem == "missing SENTINEL_X_BEARER_TOKEN"
    assert statuses["yahoo"].datasets == ("prices",) and statuses["rss"].datasets == ("posts",)


def test_list_names_only_the_credentials_still_missing() -> None:
    statuses = {s.name: s for s in list_sources(Settings(x_bearer_token="t", reddit_client_id="id"))}
    assert statuses["x"].configured and statuses["x"].problem == ""
    assert not statuses["reddit"].configured
    assert statuses["reddit"].problem == "missing SENTINEL_REDDIT_CLIENT_SECRET"


# --- check ----------------------------------------------------------------------------------------


def test_check_of_a_feed_is_ok_with_record_counts(fake_service) -> None:
    fake_service.route("GET", "/rss/markets.xml", Reply(body=rss_payload("et_markets.xml"), content_type="text/xml"))
    result = check("rss", Settings(rss_feeds=[f"{fake_service.url}/rss/markets.xml"]))
    assert result == CheckResult("rss", True, "ok: 1 payloads, posts=3")
    assert len(fake_service.seen("/rss/markets.xml")) == 1


def test_check_names_an_unreadable_answer_among_readable_ones(fake_service) -> None:
    fake_service.route("GET", "/rss/markets.xml", Reply(body=rss_payload("et_markets.xml"), content_type="text/xml"))
    fake_service.route("GET", "/rss/blocked.xml", Reply(body=b"<html>Access Denied</html>", content_type="text/html"))
    feeds = [f"{fake_service.url}/rss/markets.xml", f"{fake_service.url}/rss/blocked.xml"]
    result = check("rss", Settings(rss_feeds=feeds))
    assert result.ok and result.summary.startswith("ok: 2 payloads, posts=3; 1 could not be read (first: rss: feed ")
    assert f"{fake_service.url}/rss/blocked.xml is not a readable RSS/Atom document" in result.summary


@pytest.mark.parametrize("name, setting", [("rss", "rss_feeds"), ("x", "x_base_url"), ("nse", "nse_base_url"),
                                           ("yahoo", "yahoo_base_url")])
def test_check_against_a_closed_port_fails_clearly(tmp_path: Path, name: str, setting: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    settings = Settings(data_dir=tmp_path, x_bearer_token="t",
                        **{setting: [f"{url}/feed"] if setting == "rss_feeds" else url})
    started = time.monotonic()
    result = check(name, settings)
    assert not result.ok and result.name == name
    assert result.summary.startswith("configuration ok; live fetch failed: ")
    assert "failed after 1 attempts" in result.summary  # one attempt: a check does not retry
    assert "Traceback" not in result.summary and "\n" not in result.summary
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_check_without_credentials_says_which_env_vars(name: str) -> None:
    result = check(name, Settings())
    assert not result.ok
    assert result.summary.startswith(f"not configured: source {name!r} needs ")
    assert all(var in result.summary for var in CREDENTIALS[name])


def test_check_with_a_bad_setting_is_an_invalid_configuration() -> None:
    result = check("rss", Settings(rss_feeds=[]))
    assert not result.ok and result.summary == "invalid configuration: rss: no feeds configured (set rss_feeds)"


def test_a_slow_service_times_out_within_the_check_timeout(fake_service) -> None:
    fake_service.route("GET", "/slow.xml", Reply(delay_s=10.0, body=b"<rss/>"))
    started = time.monotonic()
    result = check("rss", Settings(rss_feeds=[f"{fake_service.url}/slow.xml"]), timeout_s=1.0)
    assert not result.ok and "live fetch failed" in result.summary and "TimeoutError" in result.summary
    assert time.monotonic() - started < 2.0


def test_a_yahoo_check_never_outlasts_its_timeout(fake_service, tmp_path: Path) -> None:
    # yfinance runs in a worker thread no cancellation reaches; its calls must end by themselves
    for path in ("/", "/v1/test/getcrumb", "/consent", "/v8/finance/chart/RELIANCE.NS"):
        fake_service.route("GET", path, Reply(delay_s=10.0, body=b"late"))
    settings = Settings(data_dir=tmp_path, yahoo_base_url=fake_service.url, watch_tickers=["RELIANCE", "TCS"])
    started = time.monotonic()
    result = check("yahoo", settings, timeout_s=1.0)
    assert not result.ok, result.summary
    assert time.monotonic() - started < 1.0 + 1.5  # the timeout, plus at most a quarter of it, plus slack


def test_quick_settings_make_one_small_fetch() -> None:
    quick = quick_settings(Settings(watch_tickers=["RELIANCE", "TCS"], page_cap=10, http_max_attempts=5), 20.0)
    assert (quick.watch_tickers, quick.page_cap, quick.http_max_attempts, quick.http_timeout_s) == (
        ["RELIANCE"], 1, 1, 5.0)


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No SENTINEL_* variables and no sentinel.yaml: the CLI sees only the defaults."""
    for var in [v for v in os.environ if v.startswith("SENTINEL_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "token"))  # main() sets it otherwise
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_cli_sources_list(bare_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    bare_environment.setenv("SENTINEL_YOUTUBE_API_KEY", "a-key")
    assert main(["sources", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert set(SOURCE_NAMES) <= set(lines) and "source" in lines  # a header, then a line per source
    assert lines["x"].rstrip().endswith("missing SENTINEL_X_BEARER_TOKEN")
    assert "SENTINEL_REDDIT_CLIENT_ID, SENTINEL_REDDIT_CLIENT_SECRET" in lines["reddit"]
    assert "SENTINEL_YOUTUBE_API_KEY" in lines["youtube"] and lines["youtube"].rstrip().endswith("ready")
    assert lines["rss"].rstrip().endswith("ready") and " none " in lines["rss"]


def test_cli_sources_check(bare_environment: pytest.MonkeyPatch, fake_service,
                           capsys: pytest.CaptureFixture[str]) -> None:
    fake_service.route("GET", "/feed.xml", Reply(body=rss_payload("atom_markets.xml"),
                                                 content_type="application/atom+xml"))
    bare_environment.setenv("SENTINEL_RSS_FEEDS", f"{fake_service.url}/feed.xml")
    assert main(["sources", "check", "rss"]) == 0
    assert capsys.readouterr().out.split() == ["rss", "OK", "ok:", "1", "payloads,", "posts=2"]
    assert main(["sources", "check", "rss", "x"]) == 1  # one failure fails the command
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:4] == ["x", "FAIL", "not", "configured:"] and "SENTINEL_X_BEARER_TOKEN" in out[1]


def test_a_source_watching_nothing_says_so() -> None:
    result = asyncio.run(check_source("telegram", Settings(telegram_channels=[])))
    assert result.ok and "nothing to fetch" in result.summary
