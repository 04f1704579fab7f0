"""The one definition of every dataset.

Each dataset is a list of `Field`s written once here. The Arrow schema (pipelines and
lake), the ClickHouse DDL (warehouse) and the pydantic model (HTTP edges) are all
derived from it, so a column is added or changed in exactly one place.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Annotated, Any, Optional

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, create_model
from pydantic import Field as PydanticField


class Kind(Enum):
    """Logical column kinds; each knows its Arrow, ClickHouse and Python type."""

    STRING = ("string",)
    SYMBOL = ("symbol",)  # short, repetitive text: tickers, exchanges, sources
    TIMESTAMP = ("timestamp",)
    FLOAT = ("float",)
    INT = ("int",)
    SYMBOLS = ("symbols",)  # list of short repetitive text (tickers mentioned)
    BOOL = ("bool",)  # a flag (is_pump_signal)

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]

    @property
    def python(self) -> type:
        return _PYTHON[self]

    def clickhouse(self, nullable: bool) -> str:
        base = _CLICKHOUSE[self]
        if not nullable or self is Kind.SYMBOLS:
            return base
        if self is Kind.SYMBOL:
            return "LowCardinality(Nullable(String))"
        return f"Nullable({base})"


TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")

_ARROW: dict[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.SYMBOL: pa.string(),
    Kind.TIMESTAMP: TIMESTAMP_TYPE,
    Kind.FLOAT: pa.float64(),
    Kind.INT: pa.int64(),
    Kind.SYMBOLS: pa.list_(pa.string()),
    Kind.BOOL: pa.bool_(),
}
_CLICKHOUSE: dict[Kind, str] = {
    Kind.STRING: "String",
    Kind.SYMBOL: "LowCardinality(String)",
    Kind.TIMESTAMP: "DateTime64(3, 'UTC')",
    Kind.FLOAT: "Float64",
    Kind.INT: "Int64",
    Kind.SYMBOLS: "Array(LowCardinality(String))",
    Kind.BOOL: "Bool",
}
_PYTHON: dict[Kind, type] = {
    Kind.STRING: str,
    Kind.SYMBOL: str,
    Kind.TIMESTAMP: dt.datetime,
    Kind.FLOAT: float,
    Kind.INT: int,
    Kind.SYMBOLS: list[str],
    Kind.BOOL: bool,
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    required: bool = True
    doc: str = ""
    derived: bool = False  # filled by the pipeline's enrich step: sources and webhooks do not send it

    @property
    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.kind.arrow, nullable=not self.required)


# Columns every dataset carries: who wrote the row and when (lineage and freshness).
INGEST_FIELDS: tuple[Field, ...] = (
    Field("source", Kind.SYMBOL, doc="source adapter that produced the row (replay, yahoo, nse, ...)"),
    Field("run_id", Kind.SYMBOL, doc="pipeline run (backfill job or stream batch) that wrote the row"),
    Field("ingested_at", Kind.TIMESTAMP, doc="when the platform received the row; newest wins on re-insert"),
    Field("raw_id", Kind.SYMBOL, required=False,
          doc="the raw payload the row was read from: its path in the lake's raw zone (source=/dataset=/date=/file)"),
    Field("raw_pos", Kind.INT, required=False, doc="the record's 0-based position in that payload"),
)


@dataclass(frozen=True)
class Dataset:
    name: str
    fields: tuple[Field, ...]
    natural_key: tuple[str, ...]
    time_column: str
    version_column: str = "ingested_at"
    doc: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        assert len(names) == len(set(names)), f"duplicate field in {self.name}"
        for col in (*self.natural_key, self.time_column, self.version_column):
            assert col in names, f"{self.name}: unknown column {col}"

    @property
    def column_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def dictionary_columns(self) -> list[str]:
        """Columns with few distinct values: dictionary-encode them in Parquet, not free text or numbers."""
        return [f.name for f in self.fields if f.kind in (Kind.SYMBOL, Kind.SYMBOLS)]

    @property
    def required_columns(self) -> list[str]:
        return [f.name for f in self.fields if f.required]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([f.arrow_field for f in self.fields])

    @cached_property
    def record_schema(self) -> pa.Schema:
        """What source adapters emit: the dataset's columns and types, every one nullable
        (validation decides what a missing value means). Derived columns are left out: the
        pipeline fills them (conform adds them as nulls)."""
        return pa.schema([pa.field(f.name, f.kind.arrow, nullable=True) for f in self.fields if not f.derived])

    @cached_property
    def quarantine_schema(self) -> pa.Schema:
        """Rejected rows: every column nullable (the value may be what was wrong) plus the reason."""
        cols = [pa.field(f.name, f.kind.arrow, nullable=True) for f in self.fields]
        return pa.schema(cols + [pa.field("reject_reason", pa.string(), nullable=False)])

    def ddl(self, database: str) -> str:
        cols = ",\n    ".join(f"`{f.name}` {f.kind.clickhouse(not f.required)}" for f in self.fields)
        key = ", ".join(f"`{c}`" for c in self.natural_key)
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}` (\n    {cols}\n)\n"
            f"ENGINE = ReplacingMergeTree(`{self.version_column}`)\n"
            f"PARTITION BY toYYYYMM(`{self.time_column}`)\n"
            f"ORDER BY ({key})"
        )

    @cached_property
    def model(self) -> type[BaseModel]:
        """pydantic model of one row, for HTTP bodies and responses."""
        spec: dict[str, Any] = {}
        for f in self.fields:
            py = f.kind.python
            spec[f.name] = (py, ...) if f.required else (Optional[py], None)
        return create_model(f"{self.name.title().replace('_', '')}Row", **spec)

    @cached_property
    def intake_model(self) -> type[BaseModel]:
        """One record as a push source (webhook) sends it: shape and types are checked here;
        missing or implausible values are the pipeline's to quarantine, so every field is
        optional. Lineage and derived columns are the platform's to set, so they are not accepted."""
        lineage = {f.name for f in INGEST_FIELDS} | {f.name for f in self.fields if f.derived}
        int64 = Annotated[int, PydanticField(ge=-(2**63), le=2**63 - 1)]  # what the columns can hold
        spec: dict[str, Any] = {f.name: (Optional[int64 if f.kind is Kind.INT else f.kind.python], None)
                                for f in self.fields if f.name not in lineage}
        return create_model(f"{self.name.title().replace('_', '')}Intake", __config__=ConfigDict(extra="forbid"),
                            **spec)


PRICES = Dataset(
    name="prices",
    doc="OHLCV bars per ticker, exchange and interval",
    fields=(
        Field("ticker", Kind.SYMBOL, doc="exchange symbol, upper case, no suffix (RELIANCE, not RELIANCE.NS)"),
        Field("exchange", Kind.SYMBOL, doc="NSE or BSE"),
        Field("interval", Kind.SYMBOL, doc="bar length: 1m or 1d"),
        Field("ts", Kind.TIMESTAMP, doc="bar open time, UTC"),
        Field("open", Kind.FLOAT),
        Field("high", Kind.FLOAT),
        Field("low", Kind.FLOAT),
        Field("close", Kind.FLOAT),
        Field("volume", Kind.INT, doc="shares traded in the bar"),
        *INGEST_FIELDS,
    ),
    natural_key=("ticker", "exchange", "interval", "source", "ts"),
    time_column="ts",
)

POSTS = Dataset(
    name="posts",
    doc="social and news items that may mention tickers",
    fields=(
        Field("platform", Kind.SYMBOL, doc="reddit, x, telegram, youtube, news, ..."),
        Field("post_id", Kind.STRING, doc="the platform's own id of the item"),
        Field("author", Kind.STRING, required=False),
        Field("text", Kind.STRING),
        Field("ts", Kind.TIMESTAMP, doc="when the item was published, UTC"),
        Field("url", Kind.STRING, required=False),
        Field("engagement", Kind.INT, required=False, doc="likes + replies + shares as the platform counts them"),
        Field("tickers", Kind.SYMBOLS, doc="tickers mentioned in the text"),
        Field("sentiment", Kind.FLOAT, required=False, derived=True,
              doc="-1 (negative) .. 1 (positive), VADER-style compound (pipeline/sentiment.py)"),
        Field("promo_score", Kind.FLOAT, required=False, derived=True,
              doc="0..1: how much the text reads like a tip, a pump call or a countdown (pipeline/promo.py)"),
        Field("is_pump_signal", Kind.BOOL, required=False, derived=True,
              doc="true when promo_score is at or over the promo threshold"),
        Field("promo_evidence", Kind.SYMBOLS, required=False, derived=True,
              doc="the promotional phrases matched in the text ('multibagger', 'target 80', '🚀')"),
        *INGEST_FIELDS,
    ),
    natural_key=("platform", "post_id"),
    time_column="ts",
)

FILINGS = Dataset(
    name="filings",
    doc="corporate announcements filed with NSE or BSE",
    fields=(
        Field("exchange", Kind.SYMBOL, doc="NSE or BSE"),
        Field("filing_id", Kind.STRING, doc="the exchange's own id of the announcement"),
        Field("ticker", Kind.SYMBOL, required=False, doc="NSE symbol when known (BSE files by scrip code)"),
        Field("company", Kind.STRING, doc="company name as filed"),
        Field("subject", Kind.STRING, doc="headline / category of the announcement"),
        Field("details", Kind.STRING, required=False, doc="body text when the exchange gives one"),
        Field("ts", Kind.TIMESTAMP, doc="when it was disseminated, UTC"),
        Field("attachment_url", Kind.STRING, required=False),
        *INGEST_FIELDS,
    ),
    natural_key=("exchange", "filing_id"),
    time_column="ts",
)

PIPELINE_RUNS = Dataset(
    name="pipeline_runs",
    doc="one row per pipeline run (re-inserted with the final status when the run ends)",
    fields=(
        Field("run_id", Kind.STRING),
        Field("pipeline", Kind.SYMBOL, doc="backfill, stream, quality_report, ..."),
        Field("params", Kind.STRING, doc="JSON of the run's parameters"),
        Field("started_at", Kind.TIMESTAMP),
        Field("ended_at", Kind.TIMESTAMP, required=False),
        Field("status", Kind.SYMBOL, doc="running, success or failed (reads show a running row not re-recorded for 15 min as abandoned)"),
        Field("rows_in", Kind.INT),
        Field("rows_valid", Kind.INT),
        Field("rows_quarantined", Kind.INT),
        Field("error", Kind.STRING, required=False),
        Field("updated_at", Kind.TIMESTAMP, doc="version: the latest state of a run wins"),
    ),
    natural_key=("pipeline", "run_id"),
    time_column="started_at",
    version_column="updated_at",
)

QUALITY_METRICS = Dataset(
    name="quality_metrics",
    doc="data-quality measurements, one row per (run, batch, dataset, source, metric, column)",
    fields=(
        Field("run_id", Kind.SYMBOL, doc="the pipeline run (backfill, stream batch, report) that measured it"),
        Field("batch", Kind.STRING, doc="the batch within the run (a backfill has one per day)"),
        Field("pipeline", Kind.SYMBOL),
        Field("dataset", Kind.SYMBOL),
        Field("source", Kind.SYMBOL),
        Field("metric", Kind.SYMBOL, doc="rows_in, rows_valid, rows_quarantined, rows_warned, rejected, warned, "
                                         "completeness, validity, uniqueness, consistency, freshness_s, agreement"),
        Field("column", Kind.SYMBOL, doc="the column, rule or reason the metric is about; '' for the batch"),
        Field("value", Kind.FLOAT),
        Field("measured_at", Kind.TIMESTAMP),
    ),
    natural_key=("dataset", "source", "metric", "column", "run_id", "batch"),
    time_column="measured_at",
    version_column="measured_at",
)

QUALITY_ALERTS = Dataset(
    name="quality_alerts",
    doc="alerts raised by quality checks; one per (dataset, source, kind, hour)",
    fields=(
        Field("alert_id", Kind.STRING, doc="dataset/source/kind/hour: raising it again changes nothing"),
        Field("raised_at", Kind.TIMESTAMP),
        Field("dataset", Kind.SYMBOL),
        Field("source", Kind.SYMBOL),
        Field("kind", Kind.SYMBOL, doc="volume_drop, silent_source, validity_low"),
        Field("severity", Kind.SYMBOL, doc="warning or critical"),
        Field("message", Kind.STRING),
        Field("value", Kind.FLOAT, required=False),
        Field("threshold", Kind.FLOAT, required=False),
    ),
    natural_key=("alert_id",),
    time_column="raised_at",
    version_column="raised_at",
)

BACKFILL_DAYS = Dataset(
    name="backfill_days",
    doc="one row per (source, day) a backfill finished: a re-run skips these days unless forced",
    fields=(
        Field("source", Kind.SYMBOL),
        Field("day", Kind.TIMESTAMP, doc="the UTC day backfilled, at 00:00"),
        Field("run_id", Kind.STRING, doc="the backfill run that finished it last"),
        Field("rows_in", Kind.INT),
        Field("rows_valid", Kind.INT),
        Field("rows_quarantined", Kind.INT),
        Field("finished_at", Kind.TIMESTAMP, doc="version: the latest finish wins"),
    ),
    natural_key=("source", "day"),
    time_column="day",
    version_column="finished_at",
)

LINEAGE_EVENTS = Dataset(
    name="lineage_events",
    doc="OpenLineage run events (START, COMPLETE, FAIL) of backfills, replays and stream batches, one row per "
        "event (monitoring/lineage_events.py); emitting an event again replaces its row",
    fields=(
        Field("event_id", Kind.STRING, doc="uuid5 of the run's runId and the event type: the same event, the same id"),
        Field("event_time", Kind.TIMESTAMP, doc="the event's eventTime"),
        Field("event_type", Kind.SYMBOL, doc="START, COMPLETE, FAIL (OpenLineage's eventType)"),
        Field("run_id", Kind.STRING, doc="the platform's run id (pipeline_runs.run_id, a stream batch's key)"),
        Field("run_uuid", Kind.STRING, doc="the event's run.runId: uuid5 of run_id in the job namespace"),
        Field("job_namespace", Kind.SYMBOL, doc="sentinel-ray://<warehouse database>"),
        Field("job", Kind.SYMBOL, doc="backfill, replay, stream.prices, ..."),
        Field("inputs", Kind.STRING, doc="JSON list of the event's input datasets (namespace, name, facets)"),
        Field("outputs", Kind.STRING, doc="JSON list of the event's output datasets, with rowCount on a COMPLETE"),
        Field("error", Kind.STRING, required=False, doc="a FAIL's error message"),
        Field("event", Kind.STRING, doc="the whole event as JSON: what the OpenLineage endpoint is sent"),
        Field("emitted_at", Kind.TIMESTAMP, doc="version: the latest emission of an event wins"),
    ),
    natural_key=("run_id", "event_id"),
    time_column="event_time",
    version_column="emitted_at",
)

# --- surveillance: features, risk and alerts (computed, not ingested) ---------------------
# Floats are nullable where a window has too little history to say anything (e.g. a
# 60-minute return in the first hour of the first session); `computed_at` versions a row,
# so recomputing a day replaces its rows instead of adding to them.

FEATURES_1M = Dataset(
    name="features_1m",
    doc="point-in-time features per ticker per 1m bar: from prices and posts at or before the bar only",
    fields=(
        Field("ticker", Kind.SYMBOL),
        Field("exchange", Kind.SYMBOL),
        Field("ts", Kind.TIMESTAMP, doc="the bar's open, UTC; features use data up to the bar's close"),
        Field("close", Kind.FLOAT),
        Field("volume", Kind.INT),
        Field("ret_1m", Kind.FLOAT, required=False, doc="close / close 1 bar earlier - 1"),
        Field("ret_5m", Kind.FLOAT, required=False),
        Field("ret_15m", Kind.FLOAT, required=False),
        Field("ret_60m", Kind.FLOAT, required=False),
        Field("ret_prev_close", Kind.FLOAT, required=False, doc="close / previous session's close - 1"),
        Field("volume_z", Kind.FLOAT, required=False,
              doc="volume z-score against the same minute-of-day over the trailing 20 sessions"),
        Field("volume_ratio", Kind.FLOAT, required=False, doc="volume / median of the same minute, trailing 20 sessions"),
        Field("range_pct", Kind.FLOAT, required=False, doc="(high - low) / close"),
        Field("gap_pct", Kind.FLOAT, required=False, doc="session open / previous close - 1 (same all session)"),
        Field("posts_15m", Kind.INT, doc="posts mentioning the ticker in the last 15 minutes"),
        Field("posts_60m", Kind.INT),
        Field("promo_posts_15m", Kind.INT, doc="of those, posts flagged is_pump_signal"),
        Field("promo_posts_60m", Kind.INT),
        Field("posts_z", Kind.FLOAT, required=False, doc="posts_60m z-score against the ticker's trailing days"),
        Field("promo_z", Kind.FLOAT, required=False, doc="promo_posts_60m z-score against the ticker's trailing days"),
        Field("authors_60m", Kind.INT, doc="distinct authors of the last 60 minutes' posts"),
        Field("platforms_60m", Kind.INT, doc="distinct platforms mentioning it in the last 60 minutes"),
        Field("sentiment_60m", Kind.FLOAT, required=False, doc="mean sentiment of the last 60 minutes' posts"),
        Field("computed_at", Kind.TIMESTAMP, doc="version: the latest computation wins"),
    ),
    natural_key=("ticker", "exchange", "ts"),
    time_column="ts",
    version_column="computed_at",
)

FEATURES_1D = Dataset(
    name="features_1d",
    doc="features per ticker per trading day (IST session date)",
    fields=(
        Field("ticker", Kind.SYMBOL),
        Field("exchange", Kind.SYMBOL),
        Field("day", Kind.TIMESTAMP, doc="00:00 IST of the session date, in UTC (as daily bars)"),
        Field("close", Kind.FLOAT),
        Field("volume", Kind.INT),
        Field("ret_1d", Kind.FLOAT, required=False, doc="close-to-close change"),
        Field("ret_5d", Kind.FLOAT, required=False),
        Field("ret_20d", Kind.FLOAT, required=False),
        Field("volume_vs_median_20d", Kind.FLOAT, required=False),
        Field("posts", Kind.INT, doc="posts of the session date published before its close (15:30 IST)"),
        Field("promo_posts", Kind.INT, doc="of them, flagged is_pump_signal"),
        Field("posts_vs_median_20d", Kind.FLOAT, required=False, doc="posts vs the median of the 20 sessions before"),
        Field("computed_at", Kind.TIMESTAMP, doc="version: the latest computation wins"),
    ),
    natural_key=("ticker", "exchange", "day"),
    time_column="day",
    version_column="computed_at",
)

RISK_1M = Dataset(
    name="risk_1m",
    doc="risk score per ticker per 1m bar with the reasons that drove it",
    fields=(
        Field("ticker", Kind.SYMBOL),
        Field("exchange", Kind.SYMBOL),
        Field("ts", Kind.TIMESTAMP),
        Field("score", Kind.FLOAT, doc="0-100"),
        Field("volume_score", Kind.FLOAT, doc="0-1 volume-anomaly sub-score (detect/risk.py)"),
        Field("price_score", Kind.FLOAT, doc="0-1 price-move sub-score"),
        Field("promo_score", Kind.FLOAT, doc="0-1 promotional-chatter sub-score"),
        Field("chatter_score", Kind.FLOAT, doc="0-1 chatter-surge sub-score"),
        Field("reasons", Kind.STRING, doc="JSON list of {feature, value, strength, text}, strongest first"),
        Field("computed_at", Kind.TIMESTAMP, doc="version: the latest computation wins"),
    ),
    natural_key=("ticker", "exchange", "ts"),
    time_column="ts",
    version_column="computed_at",
)

ALERTS = Dataset(
    name="alerts",
    doc="one alert per ticker per episode; its latest state wins (audit trail in alert_events)",
    fields=(
        Field("alert_id", Kind.STRING, doc="ticker/exchange/opening bar: the same episode never opens twice"),
        Field("ticker", Kind.SYMBOL),
        Field("exchange", Kind.SYMBOL),
        Field("opened_at", Kind.TIMESTAMP, doc="the bar that crossed the threshold"),
        Field("last_bar_ts", Kind.TIMESTAMP, doc="the latest bar of the episode seen so far"),
        Field("peak_score", Kind.FLOAT),
        Field("peak_ts", Kind.TIMESTAMP),
        Field("state", Kind.SYMBOL, doc="open, acknowledged or closed"),
        Field("disposition", Kind.SYMBOL, required=False, doc="true_positive, false_positive or unsure"),
        Field("reasons", Kind.STRING, doc="JSON list of the reasons at the peak"),
        Field("evidence_start", Kind.TIMESTAMP, doc="first bar of the evidence range"),
        Field("evidence_end", Kind.TIMESTAMP, doc="last bar of the evidence range"),
        Field("post_ids", Kind.SYMBOLS, doc="platform:post_id of the posts in the evidence"),
        Field("detected_by", Kind.SYMBOL, doc="stream, backfill or replay (the run that first raised it)"),
        Field("updated_at", Kind.TIMESTAMP, doc="version: the latest state wins"),
    ),
    natural_key=("alert_id",),
    time_column="opened_at",
    version_column="updated_at",
)

ALERT_EVENTS = Dataset(
    name="alert_events",
    doc="append-only audit log of alerts: who changed what, when",
    fields=(
        Field("event_id", Kind.STRING),
        Field("alert_id", Kind.STRING),
        Field("at", Kind.TIMESTAMP),
        Field("actor", Kind.SYMBOL, doc="detector (stream/backfill/replay) or the analyst's name"),
        Field("action", Kind.SYMBOL, doc="opened, updated, acknowledged, closed, reopened, not_raised_again (a replay)"),
        Field("from_state", Kind.SYMBOL, required=False),
        Field("to_state", Kind.SYMBOL),
        Field("disposition", Kind.SYMBOL, required=False),
        Field("note", Kind.STRING, required=False),
    ),
    natural_key=("alert_id", "event_id"),
    time_column="at",
    version_column="at",
)

# --- serving: roll-ups the read path keeps (storage/rollups.py) ------------------------------
PRICES_30M = Dataset(
    name="prices_30m",
    doc="30-minute bars rolled up from the 1m prices (one bar per minute, from the preferred source), "
        "refreshed for every bucket a stored batch touches; the API's 1h and 1d bars are sums of these",
    fields=(
        Field("ticker", Kind.SYMBOL),
        Field("exchange", Kind.SYMBOL),
        Field("bucket", Kind.TIMESTAMP, doc="start of the half hour, UTC"),
        Field("open", Kind.FLOAT, required=False, doc="null with bars = 0: the bucket's 1m bars are gone"),
        Field("high", Kind.FLOAT, required=False),
        Field("low", Kind.FLOAT, required=False),
        Field("close", Kind.FLOAT, required=False),
        Field("volume", Kind.INT),
        Field("bars", Kind.INT, doc="1m bars in the bucket (0: all removed, the bucket reads as absent)"),
        Field("last_ts", Kind.TIMESTAMP, required=False, doc="the bucket's newest 1m bar"),
        Field("computed_at", Kind.TIMESTAMP, doc="version: the latest refresh wins"),
    ),
    natural_key=("ticker", "exchange", "bucket"),
    time_column="bucket",
    version_column="computed_at",
)

SURVEILLANCE_DATASETS: dict[str, Dataset] = {d.name: d for d in (FEATURES_1M, FEATURES_1D, RISK_1M, ALERTS,
                                                                    ALERT_EVENTS)}

# Datasets that flow through the pipeline (sources -> lake -> warehouse).
DATA_DATASETS: dict[str, Dataset] = {d.name: d for d in (PRICES, POSTS, FILINGS)}
ALL_DATASETS: dict[str, Dataset] = {**DATA_DATASETS, **{d.name: d for d in (PIPELINE_RUNS, QUALITY_METRICS,
                                                                               QUALITY_ALERTS, BACKFILL_DAYS,
                                                                               LINEAGE_EVENTS, PRICES_30M)},
                                     **SURVEILLANCE_DATASETS}


def dataset(name: str) -> Dataset:
    try:
        return ALL_DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(ALL_DATASETS)}") from None


def empty_table(ds: Dataset) -> pa.Table:
    return ds.arrow_schema.empty_table()
