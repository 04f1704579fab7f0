-- Frozen: the warehouse DDL that sentinel_ray/schemas.py generated at commit 02f4eec,
-- an older release: before 7d89135 added posts' enrichment columns and risk_1m's sub-scores;
-- `ensure_schema` ran these (CREATE TABLE IF NOT EXISTS only) before migrations existed.
-- Made by: git show 02f4eec:sentinel_ray/schemas.py, then Dataset.ddl('{db}') of every
-- dataset, with `{db}` written as {db}. Never regenerate: it stands for warehouses that exist.

CREATE TABLE IF NOT EXISTS {db}.`prices` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `interval` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `open` Float64,
    `high` Float64,
    `low` Float64,
    `close` Float64,
    `volume` Int64,
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `interval`, `source`, `ts`);

CREATE TABLE IF NOT EXISTS {db}.`posts` (
    `platform` LowCardinality(String),
    `post_id` String,
    `author` Nullable(String),
    `text` String,
    `ts` DateTime64(3, 'UTC'),
    `url` Nullable(String),
    `engagement` Nullable(Int64),
    `tickers` Array(LowCardinality(String)),
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`platform`, `post_id`);

CREATE TABLE IF NOT EXISTS {db}.`filings` (
    `exchange` LowCardinality(String),
    `filing_id` String,
    `ticker` LowCardinality(Nullable(String)),
    `company` String,
    `subject` String,
    `details` Nullable(String),
    `ts` DateTime64(3, 'UTC'),
    `attachment_url` Nullable(String),
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`exchange`, `filing_id`);

CREATE TABLE IF NOT EXISTS {db}.`pipeline_runs` (
    `run_id` String,
    `pipeline` LowCardinality(String),
    `params` String,
    `started_at` DateTime64(3, 'UTC'),
    `ended_at` Nullable(DateTime64(3, 'UTC')),
    `status` LowCardinality(String),
    `rows_in` Int64,
    `rows_valid` Int64,
    `rows_quarantined` Int64,
    `error` Nullable(String),
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`updated_at`)
PARTITION BY toYYYYMM(`started_at`)
ORDER BY (`pipeline`, `run_id`);

CREATE TABLE IF NOT EXISTS {db}.`quality_metrics` (
    `run_id` LowCardinality(String),
    `batch` String,
    `pipeline` LowCardinality(String),
    `dataset` LowCardinality(String),
    `source` LowCardinality(String),
    `metric` LowCardinality(String),
    `column` LowCardinality(String),
    `value` Float64,
    `measured_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`measured_at`)
PARTITION BY toYYYYMM(`measured_at`)
ORDER BY (`dataset`, `source`, `metric`, `column`, `run_id`, `batch`);

CREATE TABLE IF NOT EXISTS {db}.`quality_alerts` (
    `alert_id` String,
    `raised_at` DateTime64(3, 'UTC'),
    `dataset` LowCardinality(String),
    `source` LowCardinality(String),
    `kind` LowCardinality(String),
    `severity` LowCardinality(String),
    `message` String,
    `value` Nullable(Float64),
    `threshold` Nullable(Float64)
)
ENGINE = ReplacingMergeTree(`raised_at`)
PARTITION BY toYYYYMM(`raised_at`)
ORDER BY (`alert_id`);

CREATE TABLE IF NOT EXISTS {db}.`backfill_days` (
    `source` LowCardinality(String),
    `day` DateTime64(3, 'UTC'),
    `run_id` String,
    `rows_in` Int64,
    `rows_valid` Int64,
    `rows_quarantined` Int64,
    `finished_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`finished_at`)
PARTITION BY toYYYYMM(`day`)
ORDER BY (`source`, `day`);

CREATE TABLE IF NOT EXISTS {db}.`features_1m` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `close` Float64,
    `volume` Int64,
    `ret_1m` Nullable(Float64),
    `ret_5m` Nullable(Float64),
    `ret_15m` Nullable(Float64),
    `ret_60m` Nullable(Float64),
    `ret_prev_close` Nullable(Float64),
    `volume_z` Nullable(Float64),
    `volume_ratio` Nullable(Float64),
    `range_pct` Nullable(Float64),
    `gap_pct` Nullable(Float64),
    `posts_15m` Int64,
    `posts_60m` Int64,
    `promo_posts_15m` Int64,
    `promo_posts_60m` Int64,
    `posts_z` Nullable(Float64),
    `promo_z` Nullable(Float64),
    `authors_60m` Int64,
    `platforms_60m` Int64,
    `sentiment_60m` Nullable(Float64),
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `ts`);

CREATE TABLE IF NOT EXISTS {db}.`features_1d` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `day` DateTime64(3, 'UTC'),
    `close` Float64,
    `volume` Int64,
    `ret_1d` Nullable(Float64),
    `ret_5d` Nullable(Float64),
    `ret_20d` Nullable(Float64),
    `volume_vs_median_20d` Nullable(Float64),
    `posts` Int64,
    `promo_posts` Int64,
    `posts_vs_median_20d` Nullable(Float64),
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`day`)
ORDER BY (`ticker`, `exchange`, `day`);

CREATE TABLE IF NOT EXISTS {db}.`risk_1m` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `score` Float64,
    `reasons` String,
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `ts`);

CREATE TABLE IF NOT EXISTS {db}.`alerts` (
    `alert_id` String,
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `opened_at` DateTime64(3, 'UTC'),
    `last_bar_ts` DateTime64(3, 'UTC'),
    `peak_score` Float64,
    `peak_ts` DateTime64(3, 'UTC'),
    `state` LowCardinality(String),
    `disposition` LowCardinality(Nullable(String)),
    `reasons` String,
    `evidence_start` DateTime64(3, 'UTC'),
    `evidence_end` DateTime64(3, 'UTC'),
    `post_ids` Array(LowCardinality(String)),
    `detected_by` LowCardinality(String),
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`updated_at`)
PARTITION BY toYYYYMM(`opened_at`)
ORDER BY (`alert_id`);

CREATE TABLE IF NOT EXISTS {db}.`alert_events` (
    `event_id` String,
    `alert_id` String,
    `at` DateTime64(3, 'UTC'),
    `actor` LowCardinality(String),
    `action` LowCardinality(String),
    `from_state` LowCardinality(Nullable(String)),
    `to_state` LowCardinality(String),
    `disposition` LowCardinality(Nullable(String)),
    `note` Nullable(String)
)
ENGINE = ReplacingMergeTree(`at`)
PARTITION BY toYYYYMM(`at`)
ORDER BY (`alert_id`, `event_id`);

