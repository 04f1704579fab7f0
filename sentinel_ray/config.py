"""Settings: embedded defaults, then a YAML file, then SENTINEL_* environment variables.

Every setting has an embedded default that works on a laptop with nothing installed.
A YAML file (`SENTINEL_CONFIG`, else `./sentinel.yaml` when present) overrides the
defaults, and `SENTINEL_<NAME>` environment variables override both. A bad value fails
at start with a `ConfigError` that names the setting and where it came from.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import (AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo,
                      field_validator)

ENV_PREFIX = "SENTINEL_"
CONFIG_ENV = "SENTINEL_CONFIG"
DEFAULT_CONFIG_FILE = "sentinel.yaml"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(Path(".sentinel"), description="where embedded state lives (warehouse, lake, redis)")
    warehouse_dsn: str = Field("", description="chdb:///<dir> (embedded, default) or http(s)://host:8123")
    warehouse_database: str = Field("sentinel", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    lake_uri: str = Field("", description="local path or pyarrow filesystem URI (s3://...); default <data_dir>/lake")
    # -- the lake on S3 (lake_uri=s3://bucket/prefix, or any S3-compatible store). Without keys, the
    # AWS SDK's own chain applies (AWS_* variables, ~/.aws, an instance role)
    s3_endpoint_url: str = Field("", description="an S3-compatible server (http://minio:9000); empty: AWS")
    s3_region: str = Field("", description="the bucket's region; empty: the AWS SDK's default")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = Field(None, validate_default=True)
    # -- lake compaction: a day's stream batches leave one small file each; a closed day's are
    # rewritten as a few files of about this size (`sentinel-ray compact`, and `up` on its own)
    lake_compact_target_bytes: int = Field(128 * 1024 * 1024, ge=1024, description="size of a compacted file")
    lake_compact_quiet_s: float = Field(900.0, ge=0, description=(
        "a day partition no file was written to for this long is closed, and may be compacted"))
    lake_compact_interval_s: float = Field(300.0, ge=0, description=(
        "`up` looks for closed days to compact this often; 0: never on its own"))
    redis_url: str = Field("", description="redis://, rediss:// or unix://; empty starts an embedded Redis")
    redis_key_prefix: str = Field("sentinel", pattern=r"^[A-Za-z0-9_.-]+$",
                                  description="prefix of every Redis key the platform writes (streams, cursors, cache)")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_token: SecretStr | None = Field(None, description="token for write and admin endpoints")
    webhook_max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description=(
        "largest POST /ingest/{dataset} body in bytes; a larger one is a 413, from its Content-Length before "
        "it is read, or as soon as a chunked body passes it"))
    # 30: enough sessions for the detector to have opened alerts on the replay's pumps when an
    # analyst first opens the dashboard (3 days gave none: no baselines yet); a later `up` on
    # the same data dir loads only the days it lacks
    backfill_days: int = Field(30, ge=0, le=3650, description="days of replay history `up` loads")
    replay_seed: int = 42
    replay_bad_rate: float = Field(0.002, ge=0.0, le=0.5)
    replay_universe: Literal["core", "all"] = Field("core", description=(
        "symbols the replay plays: core (NIFTY 50 + 20 small caps) or all (every listed NSE security)"))
    replay_pump_probability: float = Field(0.3, ge=0.0, le=1.0, description="chance a pump starts on a trading day")
    replay_episode_rates: dict[str, float] = Field(default_factory=dict, description=(
        "chance per trading day of each other episode kind (earnings, filing_move, viral_largecap, market_rally, "
        "index_rebalance); unset kinds keep the simulator's defaults"))
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs for a Ray cluster that `up` starts")

    # -- data quality
    quality_rules_file: Path | None = Field(None, description="YAML overriding/extending the shipped quality rules")
    quality_degraded_below: float = Field(0.98, ge=0, le=1, description="validity below this: degraded")
    quality_unhealthy_below: float = Field(0.90, ge=0, le=1, description="validity below this: unhealthy")
    quality_max_silence_s: float = Field(3600.0, gt=0, description="a source silent this long raises an alert")
    quality_volume_drop_ratio: float = Field(0.2, gt=0, le=1,
                                             description="hourly rows below this x trailing median: alert")
    quality_agreement_tolerance: float = Field(0.005, gt=0, description="NSE vs Yahoo close: relative tolerance")

    # -- continuous ingestion
    ingest_on_up: bool = Field(True, description="`up` runs pollers and consumers continuously")
    sources_enabled: list[str] = Field(default_factory=lambda: ["replay"], description="sources `up` polls")
    poll_interval_s: float = Field(60.0, gt=0, description="seconds between polls of a network source")
    # YouTube's daily quota (10,000 units; a poll costs ~150) allows a poll every ~25 min;
    # feeds and filings change slowly
    poll_intervals: dict[str, float] = Field(
        default_factory=lambda: {"youtube": 1800.0, "rss": 300.0, "filings": 300.0},
        description="per-source seconds between polls, overriding poll_interval_s")
    replay_speed: float = Field(60.0, ge=0, description="live replay: simulated seconds per second; 0 = firehose")
    replay_live_start: dt.date | None = Field(None, description="first day the live replay plays (default: the latest session opened by now)")
    replay_live_end: dt.date | None = Field(None, description="last day it plays (default: never stops)")
    replay_chunk_rows: int = Field(20_000, ge=1, description="firehose: rows per poll")
    stream_max_entries: int = Field(2_000, ge=1, description="backpressure: pollers wait while a stream holds more")
    consumers_per_dataset: int = Field(1, ge=1, le=64)
    dead_letter_after_failures: int = Field(5, ge=1, description=(
        "failures of unknown kind before a stream batch is dead-lettered; terminal errors are at once"))
    batch_max_rows: int = Field(50_000, ge=1, description="micro-batch: at most this many rows ...")
    batch_max_wait_s: float = Field(0.5, gt=0, description="... or what arrived within this many seconds")
    claim_idle_s: float = Field(30.0, gt=0, description="entries pending this long are taken from a dead consumer")
    stream_signals: bool = Field(True, description="prices consumers compute features, risk and alerts per batch "
                                                   "(posts consumers refresh the features their posts fall in)")

    # -- lineage: OpenLineage run events of backfills, replays and stream batches go to the warehouse's
    # lineage_events table, and to this server too when it is set (Marquez, a data catalog). The server
    # is best effort: one that is down or slow never fails a run or holds it up (the table keeps every event)
    openlineage_url: AnyHttpUrl | None = Field(None, description=(
        "OpenLineage server the run events are POSTed to (http://marquez:5000); unset: the table only"))
    openlineage_endpoint: str = Field("api/v1/lineage", description="the events' path under openlineage_url")
    openlineage_api_key: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer <key>'")
    openlineage_timeout_s: float = Field(5.0, gt=0, le=60, description="seconds one POST of an event may take")

    # -- sources (base URLs are settings so tests and proxies can point the real clients elsewhere).
    # Each adapter reads these through its own typed view below (`NseSettings`, ...).
    http_timeout_s: float = Field(20.0, gt=0, le=300)
    http_max_attempts: int = Field(5, ge=1, le=20)
    max_server_wait_s: float = Field(300.0, gt=0, description=(
        "a server-asked wait (Retry-After, rate-limit reset) longer than this fails the poll with a clear error"))
    http_user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) sentinel-ray/0.1 (+market surveillance research)"
    watch_tickers: list[str] = Field(default_factory=lambda: ["RELIANCE", "TCS", "HDFCBANK", "INFY", "ITC",
                                                              "SUZLON", "YESBANK", "IDEA"],
                                     description="tickers searched on X and YouTube, quoted by Yahoo/NSE pollers")
    page_cap: int = Field(10, ge=1, le=1000, description="most pages one fetch follows")
    yahoo_base_url: str = "https://query2.finance.yahoo.com"
    nse_base_url: str = "https://www.nseindia.com"
    bse_base_url: str = "https://api.bseindia.com"
    bse_site_url: str = Field("https://www.bseindia.com", description=(
        "BSE's website: BSE's API answers only requests that name it as their Referer"))
    nse_archives_url: str = Field("https://archives.nseindia.com", description=(
        "where NSE publishes its list of listed equities (EQUITY_L.csv), read by `reference refresh`"))
    reference_timeout_s: float = Field(60.0, gt=0, le=3600, description=(
        "`reference refresh`: seconds each exchange list may take to download (they run to megabytes)"))
    reddit_base_url: str = "https://www.reddit.com"
    reddit_oauth_url: str = "https://oauth.reddit.com"
    reddit_client_id: SecretStr | None = None
    reddit_client_secret: SecretStr | None = None
    reddit_subreddits: list[str] = Field(default_factory=lambda: [
        "IndianStreetBets", "IndianStockMarket", "DalalStreetTalks"])
    x_base_url: str = "https://api.x.com"
    x_bearer_token: SecretStr | None = None
    telegram_base_url: str = "https://t.me"
    telegram_channels: list[str] = Field(default_factory=list, description="public channel names (t.me/s/<name>)")
    youtube_base_url: str = "https://www.googleapis.com/youtube/v3"
    youtube_api_key: SecretStr | None = None
    rss_feeds: list[str] = Field(default_factory=lambda: [
        "https://economictimes.indiatimes.com/markets/rssfeeds/1977021501.cms",
        "https://www.moneycontrol.com/rss/marketreports.xml",
        "https://www.business-standard.com/rss/markets-106.rss",
    ])

    @field_validator("watch_tickers", "reddit_subreddits", "telegram_channels", "rss_feeds", "sources_enabled",
                     mode="before")
    @classmethod
    def _comma_separated(cls, v: Any) -> Any:
        # lists come from env vars as "a,b,c"
        if isinstance(v, str):
            return [item.strip() for item in v.split(",") if item.strip()]
        return v

    @field_validator("openlineage_url", "openlineage_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        # SENTINEL_OPENLINEAGE_URL= (set, but empty) turns the endpoint off rather than failing the start
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("openlineage_url")
    @classmethod
    def _no_credentials_in_url(cls, v: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # settings are printed and published to workers as text: a secret belongs in a SecretStr
        if v is not None and (v.username or v.password):
            raise ValueError("must not carry credentials; set openlineage_api_key instead")
        return v

    @field_validator("poll_intervals", "replay_episode_rates", mode="before")
    @classmethod
    def _json_mapping(cls, v: Any) -> Any:
        # from the environment as JSON: SENTINEL_POLL_INTERVALS='{"youtube": 3600}'
        if isinstance(v, str):
            try:
                return json.loads(v)
            except json.JSONDecodeError as e:
                raise ValueError(f"must be a JSON object like {{\"youtube\": 1800}} ({e.msg})") from None
        return v

    @field_validator("poll_intervals")
    @classmethod
    def _positive_intervals(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [name for name, seconds in v.items() if seconds <= 0]
        if bad:
            raise ValueError(f"intervals must be positive: {', '.join(bad)}")
        return v

    def poll_interval_for(self, source: str) -> float:
        return self.poll_intervals.get(source, self.poll_interval_s)

    @field_validator("warehouse_dsn")
    @classmethod
    def _dsn_scheme(cls, v: str) -> str:
        if v and not v.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return v

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_endpoint_scheme(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("s3_secret_access_key")
    @classmethod
    def _s3_key_pair(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (v is None) != (info.data.get("s3_access_key_id") is None):
            raise ValueError("set s3_access_key_id and s3_secret_access_key together, or neither "
                             "(then the AWS SDK finds credentials itself)")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    # Derived values: one place that turns the settings into concrete locations.
    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_warehouse_dsn(self) -> str:
        return self.warehouse_dsn or f"chdb://{self.resolved_data_dir / 'warehouse'}"

    @property
    def warehouse_is_embedded(self) -> bool:
        return self.resolved_warehouse_dsn.startswith("chdb://")

    @property
    def resolved_lake_uri(self) -> LakeUri:
        return LakeUri(self.lake_uri or str(self.resolved_data_dir / "lake"), LakeS3Settings.of(self))

    @property
    def embedded_redis_dir(self) -> Path:
        return self.resolved_data_dir / "redis"

    @property
    def resolved_redis_url(self) -> str:
        """The configured URL, else the embedded server's socket under the data dir."""
        return self.redis_url or f"unix://{self.embedded_redis_dir / 'redis.sock'}"

    @property
    def redis_is_embedded(self) -> bool:
        return not self.redis_url

    def as_env(self, *, include_secrets: bool = True) -> dict[str, str]:
        """These settings as SENTINEL_* variables, for processes started elsewhere (Ray workers, jobs)."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                if not include_secrets:
                    continue
                value = value.get_secret_value()
            if name == "data_dir":
                value = self.resolved_data_dir
            if isinstance(value, list):
                value = ",".join(value)
            if isinstance(value, dict):
                value = json.dumps(value)
            env[env_name(name)] = str(value)
        return env


# --- per-source settings -----------------------------------------------------------------
#
# What each source adapter reads, typed once, under the adapter's own names. Every field is
# one of the flat settings above (`_setting` names it), whose env var (`SENTINEL_NSE_BASE_URL`),
# YAML key, checks and default are written there only. `NseSettings.of(settings)` is the
# platform's view; tests build one directly: `NseSettings(base_url=server.url)`.

def _setting(flat: str) -> Any:
    """A per-source field that is the flat setting `flat`, with that setting's default."""
    field = Settings.model_fields[flat]
    return Field(default_factory=lambda: field.get_default(call_default_factory=True), validation_alias=flat,
                 description=field.description)


class SettingsView(BaseModel):
    """Some of the flat settings, typed under their reader's own names (every field a `_setting`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @classmethod
    def of(cls, settings: Settings) -> Self:
        """This reader's view of the platform settings."""
        return cls(**{name: getattr(settings, cls.setting_name(name)) for name in cls.model_fields})

    @classmethod
    def setting_name(cls, field: str) -> str:
        """The flat setting behind `field` (its env var is `env_name` of it)."""
        alias = cls.model_fields[field].validation_alias
        assert isinstance(alias, str), f"{cls.__name__}.{field} names no setting"
        return alias


class SourceSettings(SettingsView):
    """The settings every network source reads; subclasses add their own."""

    timeout_s: float = _setting("http_timeout_s")
    max_attempts: int = _setting("http_max_attempts")
    max_server_wait_s: float = _setting("max_server_wait_s")

    @classmethod
    def secret_fields(cls) -> dict[str, str]:
        """This source's secrets (SecretStr fields): field -> flat setting. It cannot start without them."""
        return {name: cls.setting_name(name) for name, f in cls.model_fields.items()
                if SecretStr in getattr(f.annotation, "__args__", (f.annotation,))}

    @classmethod
    def credentials(cls) -> tuple[str, ...]:
        """The flat settings of this source's secrets (`Source.credentials`)."""
        return tuple(cls.secret_fields().values())


class HttpSourceSettings(SourceSettings):
    """A source that sends its own requests, with the platform's User-Agent."""

    user_agent: str = _setting("http_user_agent")


class PagedSourceSettings(HttpSourceSettings):
    """A source that follows pages, up to `page_cap` per poll."""

    page_cap: int = _setting("page_cap")


class YahooSettings(SourceSettings):
    # no user_agent: yfinance's curl session presents Chrome's fingerprint and headers
    base_url: str = _setting("yahoo_base_url")
    tickers: list[str] = _setting("watch_tickers")


class NseSettings(HttpSourceSettings):
    base_url: str = _setting("nse_base_url")
    tickers: list[str] = _setting("watch_tickers")


class FilingsSettings(PagedSourceSettings):
    nse_base_url: str = _setting("nse_base_url")
    bse_base_url: str = _setting("bse_base_url")


class RedditSettings(PagedSourceSettings):
    client_id: SecretStr | None = _setting("reddit_client_id")
    client_secret: SecretStr | None = _setting("reddit_client_secret")
    subreddits: list[str] = _setting("reddit_subreddits")
    base_url: str = _setting("reddit_base_url")
    oauth_url: str = _setting("reddit_oauth_url")


class XSettings(PagedSourceSettings):
    bearer_token: SecretStr | None = _setting("x_bearer_token")
    tickers: list[str] = _setting("watch_tickers")
    base_url: str = _setting("x_base_url")


class TelegramSettings(PagedSourceSettings):
    channels: list[str] = _setting("telegram_channels")
    base_url: str = _setting("telegram_base_url")


class YouTubeSettings(PagedSourceSettings):
    api_key: SecretStr | None = _setting("youtube_api_key")
    tickers: list[str] = _setting("watch_tickers")
    base_url: str = _setting("youtube_base_url")


class RssSettings(HttpSourceSettings):
    feeds: list[str] = _setting("rss_feeds")


class ReferenceSettings(SettingsView):
    """What `reference refresh` reads: where each exchange publishes its list, and how to ask."""

    nse_archives_url: str = _setting("nse_archives_url")
    bse_base_url: str = _setting("bse_base_url")
    bse_site_url: str = _setting("bse_site_url")
    user_agent: str = _setting("http_user_agent")
    timeout_s: float = _setting("reference_timeout_s")


class LakeS3Settings(SettingsView):
    """How the lake reaches S3 when its URI is s3://... (`storage.lake`)."""

    endpoint_url: str = _setting("s3_endpoint_url")
    region: str = _setting("s3_region")
    access_key_id: SecretStr | None = _setting("s3_access_key_id")
    secret_access_key: SecretStr | None = _setting("s3_secret_access_key")


class LakeUri(str):
    """`Settings.resolved_lake_uri`: the lake's URI as text, with the S3 settings it is reached
    with attached. Every process opens the lake as `Lake(settings.resolved_lake_uri)` (drivers, Ray
    actors and tasks, jobs), so the endpoint and credentials travel with the settings they came in,
    never as part of the text that is printed and logged."""

    s3: LakeS3Settings | None

    def __new__(cls, uri: str, s3: LakeS3Settings | None = None) -> Self:
        made = super().__new__(cls, uri)
        made.s3 = s3
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return LakeUri, (str(self), self.s3)


def env_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = environ.get(env_name(name))
        if raw is not None:
            values[name] = raw
    return values


def _from_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: must be a mapping of setting: value")
    return loaded


def load_settings(environ: dict[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Defaults < YAML file < environment. Raises ConfigError naming the bad setting."""
    environ = dict(os.environ if environ is None else environ)
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
        if not config_file.exists():
            raise ConfigError(f"{CONFIG_ENV}={config_file}: file does not exist")
    if config_file is None and Path(DEFAULT_CONFIG_FILE).exists():
        config_file = Path(DEFAULT_CONFIG_FILE)

    from_file = _from_file(config_file) if config_file else {}
    from_env = _from_env(environ)
    try:
        return Settings(**{**from_file, **from_env})
    except ValidationError as e:
        raise ConfigError(_describe(e, from_env, config_file)) from None


def _describe(error: ValidationError, from_env: dict[str, Any], config_file: Path | None) -> str:
    lines = []
    for err in error.errors():
        name = str(err["loc"][0]) if err["loc"] else "?"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting '{name}' in config file {config_file}")
            continue
        origin = f"env {env_name(name)}" if name in from_env else f"config file {config_file}"
        if name not in from_env and config_file is None:
            origin = "default"
        lines.append(f"invalid setting '{name}' (from {origin}): {err['msg']}")
    return "; ".join(lines)
