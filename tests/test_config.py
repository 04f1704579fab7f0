from pathlib import Path

import pytest

from sentinel_ray.config import ConfigError, load_settings


def test_embedded_defaults(tmp_path: Path) -> None:
    s = load_settings({"SENTINEL_DATA_DIR": str(tmp_path)})
    assert s.resolved_warehouse_dsn == f"chdb://{tmp_path}/warehouse"
    assert s.warehouse_is_embedded
    assert s.resolved_lake_uri == str(tmp_path / "lake")
    assert s.redis_is_embedded and s.resolved_redis_url == f"unix://{tmp_path}/redis/redis.sock"


def test_env_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "sentinel.yaml"
    cfg.write_text("api_port: 9001\nbackfill_days: 2\n")
    s = load_settings({"SENTINEL_CONFIG": str(cfg), "SENTINEL_API_PORT": "9002"})
    assert s.api_port == 9002 and s.backfill_days == 2


def test_server_dsn(tmp_path: Path) -> None:
    s = load_settings({"SENTINEL_WAREHOUSE_DSN": "http://ch.example:8123"})
    assert not s.warehouse_is_embedded


@pytest.mark.parametrize("env, named", [
    ({"SENTINEL_API_PORT": "notaport"}, "'api_port' (from env SENTINEL_API_PORT)"),
    ({"SENTINEL_API_PORT": "70000"}, "'api_port'"),
    ({"SENTINEL_WAREHOUSE_DSN": "postgres://x"}, "'warehouse_dsn' (from env SENTINEL_WAREHOUSE_DSN)"),
    ({"SENTINEL_REDIS_URL": "localhost:6379"}, "'redis_url'"),
    ({"SENTINEL_WAREHOUSE_DATABASE": "drop table;"}, "'warehouse_database'"),
    ({"SENTINEL_REPLAY_BAD_RATE": "2"}, "'replay_bad_rate'"),
])
def test_bad_setting_is_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match="invalid setting") as e:
        load_settings(env)
    assert named in str(e.value)


def test_bad_file_settings_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api_port: [1, 2]\nno_such_thing: 1\n")
    with pytest.raises(ConfigError) as e:
        load_settings({"SENTINEL_CONFIG": str(cfg)})
    assert f"'api_port' (from config file {cfg})" in str(e.value)
    assert "unknown setting 'no_such_thing'" in str(e.value)


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SENTINEL_CONFIG=.*does not exist"):
        load_settings({"SENTINEL_CONFIG": str(tmp_path / "nope.yaml")})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings({"SENTINEL_CONFIG": str(bad)})


def test_cli_reports_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sentinel_ray.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_API_PORT", "eighty")
    assert main(["backfill"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "SENTINEL_API_PORT" in err


def test_published_settings_carry_no_secrets(tmp_path: Path) -> None:
    s = load_settings({"SENTINEL_DATA_DIR": str(tmp_path), "SENTINEL_X_BEARER_TOKEN": "sekret",
                       "SENTINEL_API_TOKEN": "tok"})
    published = s.as_env(include_secrets=False)
    assert "sekret" not in str(published) and "tok" not in published.values()
    assert s.as_env()["SENTINEL_X_BEARER_TOKEN"] == "sekret"


def test_per_source_poll_intervals(tmp_path: Path) -> None:
    s = load_settings({"SENTINEL_POLL_INTERVALS": '{"youtube": 3600, "x": 120}', "SENTINEL_POLL_INTERVAL_S": "30"})
    assert (s.poll_interval_for("youtube"), s.poll_interval_for("x"), s.poll_interval_for("nse")) == (3600, 120, 30)
    assert load_settings(s.as_env()).poll_intervals == {"youtube": 3600, "x": 120}
    assert load_settings({}).poll_interval_for("youtube") == 1800  # the quota allows no more by default
    with pytest.raises(ConfigError, match="'poll_intervals'.*JSON object"):
        load_settings({"SENTINEL_POLL_INTERVALS": "youtube=3600"})
    with pytest.raises(ConfigError, match="must be positive: x"):
        load_settings({"SENTINEL_POLL_INTERVALS": '{"x": 0}'})


def test_source_settings_read_the_flat_settings_and_their_env_vars() -> None:
    from sentinel_ray.config import NseSettings, RedditSettings, Settings, YouTubeSettings

    s = load_settings({"SENTINEL_REDDIT_BASE_URL": "http://proxy:1", "SENTINEL_REDDIT_SUBREDDITS": "a, b",
                       "SENTINEL_HTTP_USER_AGENT": "UA/2", "SENTINEL_PAGE_CAP": "3",
                       "SENTINEL_REDDIT_CLIENT_ID": "id"})
    reddit = RedditSettings.of(s)
    assert (reddit.base_url, reddit.subreddits, reddit.user_agent, reddit.page_cap) == ("http://proxy:1", ["a", "b"],
                                                                                        "UA/2", 3)
    assert reddit.client_id is not None and reddit.client_id.get_secret_value() == "id"
    assert RedditSettings.credentials() == ("reddit_client_id", "reddit_client_secret")
    # built directly, every field not given is the flat setting's one default
    defaults = Settings()
    direct = NseSettings(base_url="http://127.0.0.1:9")
    assert direct.base_url == "http://127.0.0.1:9" and direct.tickers == defaults.watch_tickers
    assert (direct.user_agent, direct.timeout_s, direct.max_attempts) == (
        defaults.http_user_agent, defaults.http_timeout_s, defaults.http_max_attempts)
    assert YouTubeSettings().base_url == defaults.youtube_base_url and YouTubeSettings().api_key is None
    with pytest.raises(ValueError, match="bse_base_url"):
        NseSettings(bse_base_url="http://elsewhere")  # not an NSE setting
