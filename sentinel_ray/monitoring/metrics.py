"""The project's Prometheus metrics, defined once: what is counted, under which name and tags.

Metrics go through `ray.util.metrics`: each process records into Ray's metrics agent on
its node, which serves them on the node's metrics export port for Prometheus. Ray adds
the `ray_` prefix on export, and `_total` to counters, so `sentinel_rows_ingested` is
scraped as `ray_sentinel_rows_ingested_total` (see `MetricSpec.exported`), with Ray's own
labels (SessionName, NodeAddress, WorkerId, ...) next to the tags declared here.

The Ray metric objects are created on first use in each process (`_registry`), not at
import. Recording never raises: a metric is an observation, not a reason to fail a batch,
so errors are swallowed and logged once per process at debug level.

Tag values stay few on purpose (datasets, sources, pipelines, route templates, status
classes): every distinct combination is a time series in Prometheus.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, ParamSpec

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

PREFIX = "ray_"  # what Ray puts in front of every application metric on export

# seconds: a stream micro-batch takes tens of ms, a backfill day a few seconds
BATCH_SECONDS_BOUNDARIES = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
POLL_SECONDS_BOUNDARIES = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_SECONDS_BOUNDARIES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Kind = Literal["counter", "gauge", "histogram"]
P = ParamSpec("P")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    @property
    def exported(self) -> tuple[str, ...]:
        """The series names Prometheus scrapes for this metric."""
        base = PREFIX + self.name
        if self.kind == "counter":
            return (base + "_total",)
        if self.kind == "histogram":
            return (base + "_bucket", base + "_sum", base + "_count")
        return (base,)


ROWS_INGESTED = MetricSpec(
    "sentinel_rows_ingested", "counter",
    "Rows that entered the pipeline (valid + quarantined); a batch processed again after a "
    "consumer takeover counts again", ("pipeline", "dataset", "source"))
ROWS_VALID = MetricSpec(
    "sentinel_rows_valid", "counter", "Rows that passed validation and were stored in lake and warehouse",
    ("pipeline", "dataset", "source"))
ROWS_QUARANTINED = MetricSpec(
    "sentinel_rows_quarantined", "counter", "Rows rejected by validation and written to the quarantine zone",
    ("pipeline", "dataset", "source"))
BATCH_SECONDS = MetricSpec(
    "sentinel_batch_seconds", "histogram",
    "Time to process and store one batch (backfill: one day of one dataset; stream: one micro-batch, "
    "through XACK)", ("pipeline", "dataset"), BATCH_SECONDS_BOUNDARIES)
BATCH_ERRORS = MetricSpec(
    "sentinel_batch_errors", "counter", "Batches that failed and stay pending for a retry",
    ("pipeline", "dataset"))
POLLS = MetricSpec("sentinel_polls", "counter", "Source polls attempted (successful or not)", ("source",))
POLL_RECORDS = MetricSpec("sentinel_poll_records", "counter", "Records a poller published to the streams",
                          ("source",))
POLL_SECONDS = MetricSpec("sentinel_poll_seconds", "histogram",
                          "Time of one poll: fetch, raw payloads to the lake, publish to the streams",
                          ("source",), POLL_SECONDS_BOUNDARIES)
POLLER_ERRORS = MetricSpec("sentinel_poller_errors", "counter", "Polls that failed, by exception class",
                           ("source", "error"))
POLLER_BACKPRESSURE = MetricSpec(
    "sentinel_poller_backpressure_waits", "counter",
    "Polls skipped because a target stream held stream_max_entries or more", ("source",))
STREAM_LENGTH = MetricSpec("sentinel_stream_length", "gauge",
                           "Entries in the dataset's stream, not yet stored (acked entries are deleted)",
                           ("dataset",))
STREAM_PENDING = MetricSpec("sentinel_stream_pending", "gauge",
                            "Entries delivered to a consumer and not yet acknowledged", ("dataset",))
STREAM_OLDEST_PENDING_AGE = MetricSpec(
    "sentinel_stream_oldest_pending_age_seconds", "gauge",
    "Age of the oldest unacknowledged entry (0 when none is pending)", ("dataset",))
HTTP_REQUESTS = MetricSpec("sentinel_http_requests", "counter",
                           "HTTP API requests by route template, method and status class (2xx, 4xx, 5xx)",
                           ("route", "method", "status_class"))
HTTP_REQUEST_SECONDS = MetricSpec("sentinel_http_request_seconds", "histogram",
                                  "HTTP API request latency, first byte in to last byte out, by route template",
                                  ("route", "method"), REQUEST_SECONDS_BOUNDARIES)

METRICS: tuple[MetricSpec, ...] = (
    ROWS_INGESTED, ROWS_VALID, ROWS_QUARANTINED, BATCH_SECONDS, BATCH_ERRORS,
    POLLS, POLL_RECORDS, POLL_SECONDS, POLLER_ERRORS, POLLER_BACKPRESSURE,
    STREAM_LENGTH, STREAM_PENDING, STREAM_OLDEST_PENDING_AGE,
    HTTP_REQUESTS, HTTP_REQUEST_SECONDS,
)


def exported_names() -> set[str]:
    """Every series name the project's metrics appear under in Prometheus."""
    return {name for spec in METRICS for name in spec.exported}


@functools.cache
def _registry() -> dict[str, Any]:
    """This process's Ray metric objects, by metric name (created once, on first record)."""
    from ray.util import metrics as ray_metrics

    out: dict[str, Any] = {}
    for spec in METRICS:
        if spec.kind == "counter":
            out[spec.name] = ray_metrics.Counter(spec.name, spec.description, spec.tag_keys)
        elif spec.kind == "gauge":
            out[spec.name] = ray_metrics.Gauge(spec.name, spec.description, spec.tag_keys)
        else:
            out[spec.name] = ray_metrics.Histogram(spec.name, spec.description, list(spec.boundaries),
                                                   spec.tag_keys)
    return out


_failure_logged = False


def _safely(record: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(record)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        global _failure_logged
        try:
            record(*args, **kwargs)
        except Exception:  # noqa: BLE001 - metrics must never fail the work they observe
            if not _failure_logged:
                _failure_logged = True
                log.debug("recording metrics failed; further failures in this process are not logged",
                          exc_info=True)
    return wrapper


def _inc(spec: MetricSpec, value: float, tags: dict[str, str]) -> None:
    if value > 0:  # Ray counters refuse 0; a 0 changes nothing anyway
        _registry()[spec.name].inc(float(value), tags=tags)  # float(): Ray refuses numpy integers


@_safely
def record_batch(pipeline: str, dataset: str, source: str, rows_in: int, rows_valid: int, rows_quarantined: int,
                 seconds: float | None) -> None:
    """One stored batch of one source: its row counts and, unless None, its latency."""
    record_rows(pipeline, dataset, source, rows_in, rows_valid, rows_quarantined)
    if seconds is not None:
        record_batch_seconds(pipeline, dataset, seconds)


@_safely
def record_rows(pipeline: str, dataset: str, source: str, rows_in: int, rows_valid: int,
                rows_quarantined: int) -> None:
    tags = {"pipeline": pipeline, "dataset": dataset, "source": str(source or "unknown")}
    _inc(ROWS_INGESTED, rows_in, tags)
    _inc(ROWS_VALID, rows_valid, tags)
    _inc(ROWS_QUARANTINED, rows_quarantined, tags)


@_safely
def record_batch_by_source(pipeline: str, dataset: str, valid: pa.Table, quarantined: pa.Table,
                           seconds: float) -> None:
    """One stored batch that may mix sources: row counts per the rows' own `source` column."""
    valid_by, quarantined_by = _rows_by_source(valid), _rows_by_source(quarantined)
    for source in sorted(valid_by.keys() | quarantined_by.keys()):
        v, q = valid_by.get(source, 0), quarantined_by.get(source, 0)
        record_rows(pipeline, dataset, source, v + q, v, q)
    record_batch_seconds(pipeline, dataset, seconds)


def _rows_by_source(table: pa.Table) -> dict[str, int]:
    import pyarrow.compute as pc

    if not table.num_rows:
        return {}
    counts = pc.value_counts(pc.fill_null(table.column("source"), "unknown"))
    return {c["values"].as_py(): c["counts"].as_py() for c in counts}


@_safely
def record_batch_seconds(pipeline: str, dataset: str, seconds: float) -> None:
    _registry()[BATCH_SECONDS.name].observe(max(0.0, float(seconds)), tags={"pipeline": pipeline, "dataset": dataset})


@_safely
def record_batch_error(pipeline: str, dataset: str) -> None:
    _inc(BATCH_ERRORS, 1, {"pipeline": pipeline, "dataset": dataset})


@_safely
def record_poll(source: str, records: int, seconds: float, error: str | None = None) -> None:
    """One poll attempt; `error` is the exception class name when it failed."""
    tags = {"source": source}
    _inc(POLLS, 1, tags)
    _inc(POLL_RECORDS, records, tags)
    _registry()[POLL_SECONDS.name].observe(max(0.0, float(seconds)), tags=tags)
    if error is not None:
        _inc(POLLER_ERRORS, 1, {"source": source, "error": error})


@_safely
def record_backpressure(source: str) -> None:
    _inc(POLLER_BACKPRESSURE, 1, {"source": source})


@_safely
def set_stream_lag(dataset: str, length: int, pending: int, oldest_pending_age_s: float | None) -> None:
    """Ray drops a gauge not set again within two report intervals (~20 s): call this regularly
    (the supervisor does, every 5 s), so a stopped platform's gauges vanish instead of going stale."""
    reg, tags = _registry(), {"dataset": dataset}
    reg[STREAM_LENGTH.name].set(float(length), tags=tags)
    reg[STREAM_PENDING.name].set(float(pending), tags=tags)
    # set 0 rather than skip: a skipped gauge would keep showing the last (stale) age
    reg[STREAM_OLDEST_PENDING_AGE.name].set(float(oldest_pending_age_s or 0.0), tags=tags)


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


@_safely
def record_request(route: str, method: str, status: int, seconds: float) -> None:
    reg = _registry()
    reg[HTTP_REQUESTS.name].inc(1, tags={"route": route, "method": method, "status_class": status_class(status)})
    reg[HTTP_REQUEST_SECONDS.name].observe(max(0.0, float(seconds)), tags={"route": route, "method": method})
