-- Frozen: the warehouse DDL that sentinel_ray/schemas.py generated at commit 787cff7,
-- the oldest release migrations upgrade: before backfill_days and the surveillance tables existed;
-- `ensure_schema` ran these (CREATE TABLE IF NOT EXISTS only) before migrations existed.
-- Made by: git show 787cff7:sentinel_ray/schemas.py, then Dataset.ddl('{db}') of every
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

