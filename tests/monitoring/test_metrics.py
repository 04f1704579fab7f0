"""The project's metrics: recorded by the helpers, exported by a running local Ray."""
from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.monitoring import metrics
from tests.monitoring.conftest import total

_prefixes = itertools.count()


# -- the helpers, against a recording stand-in for Ray's metric objects ------------------------
class _Recorder:
    def __init__(self, name: str, calls: list[tuple[Any, ...]]) -> None:
        self.name, self.calls = name, calls

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((self.name, "inc", value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((self.name, "observe", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((self.name, "set", value, tags))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    registry = {spec.name: _Recorder(spec.name, calls) for spec in metrics.METRICS}
    monkeypatch.setattr(metrics, "_registry", lambda: registry)
    return calls


def test_record_batch_counts_rows_and_latency_and_skips_zero_counts(recorded) -> None:
    metrics.record_batch("backfill", "prices", "replay", 10, 10, 0, 1.5)
    tags = {"pipeline": "backfill", "dataset": "prices", "source": "replay"}
    assert recorded == [
        ("sentinel_rows_ingested", "inc", 10, tags),
        ("sentinel_rows_valid", "inc", 10, tags),
        ("sentinel_batch_seconds", "observe", 1.5, {"pipeline": "backfill", "dataset": "prices"}),
    ]


def test_a_mixed_stream_batch_is_counted_per_source(recorded) -> None:
    valid = pa.table({"source": ["replay", "replay", "tg-bot", None]})
    quarantined = pa.table({"source": ["tg-bot"]})
    metrics.record_batch_by_source("stream", "posts", valid, quarantined, 0.2)
    rows = {(c[0], c[3]["source"]): c[2] for c in recorded if c[0].startswith("sentinel_rows")}
    assert rows == {
        ("sentinel_rows_ingested", "replay"): 2, ("sentinel_rows_valid", "replay"): 2,
        ("sentinel_rows_ingested", "tg-bot"): 2, ("sentinel_rows_valid", "tg-bot"): 1,
        ("sentinel_rows_quarantined", "tg-bot"): 1,
        ("sentinel_rows_ingested", "unknown"): 1, ("sentinel_rows_valid", "unknown"): 1,
    }
    assert [c[:3] for c in recorded if c[0] == "sentinel_batch_seconds"] == [("sentinel_batch_seconds", "observe", 0.2)]


def test_record_poll_counts_errors_by_exception_class(recorded) -> None:
    metrics.record_poll("reddit", 0, 0.3, error="AuthError")
    metrics.record_poll("reddit", 25, 0.1)
    counted = [(c[0], c[2], c[3]) for c in recorded if c[1] == "inc"]
    assert counted == [
        ("sentinel_polls", 1, {"source": "reddit"}),
        ("sentinel_poller_errors", 1, {"source": "reddit", "error": "AuthError"}),
        ("sentinel_polls", 1, {"source": "reddit"}),
        ("sentinel_poll_records", 25, {"source": "reddit"}),
    ]
    assert [c[2] for c in recorded if c[0] == "sentinel_poll_seconds"] == [0.3, 0.1]


def test_stream_lag_without_pending_entries_reports_age_zero(recorded) -> None:
    metrics.set_stream_lag("prices", 12, 0, None)
    assert recorded == [("sentinel_stream_length", "set", 12.0, {"dataset": "prices"}),
                        ("sentinel_stream_pending", "set", 0.0, {"dataset": "prices"}),
                        ("sentinel_stream_oldest_pending_age_seconds", "set", 0.0, {"dataset": "prices"})]


def test_record_request_labels_the_status_class(recorded) -> None:
    metrics.record_request("/api/stocks/{ticker}/prices", "GET", 404, 0.02)
    assert recorded[0] == ("sentinel_http_requests", "inc", 1,
                           {"route": "/api/stocks/{ticker}/prices", "method": "GET", "status_class": "4xx"})
    assert [metrics.status_class(s) for s in (200, 307, 422, 503, 0)] == ["2xx", "3xx", "4xx", "5xx", "other"]


def test_a_failing_metric_never_raises_and_is_logged_once(monkeypatch, caplog) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("metrics agent unreachable")

    monkeypatch.setattr(metrics, "_registry", broken)
    monkeypatch.setattr(metrics, "_failure_logged", False)
    with caplog.at_level(logging.DEBUG, logger=metrics.__name__):
        metrics.record_batch("stream", "prices", "replay", 5, 4, 1, 0.1)
        metrics.record_poll("replay", 5, 0.1)
        metrics.set_stream_lag("prices", 1, 1, 2.0)
        metrics.record_request("/health", "GET", 200, 0.001)
    failures = [r for r in caplog.records if "recording metrics failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.DEBUG


def test_helpers_in_a_plain_process_do_not_start_or_need_ray() -> None:
    code = (
        "import sys, pyarrow as pa\n"
        "from sentinel_ray.monitoring import metrics as m\n"
        "assert 'ray' not in sys.modules, 'importing metrics imported ray'\n"
        "m.record_batch('backfill', 'prices', 'replay', 10, 9, 1, 0.5)\n"
        "m.record_batch_by_source('stream', 'posts', pa.table({'source': ['x']}), pa.table({'source': ['x']}), 0.1)\n"
        "m.record_poll('replay', 3, 0.1, error='TimeoutError')\n"
        "m.record_backpressure('replay')\n"
        "m.set_stream_lag('prices', 3, 1, None)\n"
        "m.record_request('/health', 'GET', 200, 0.001)\n"
        "import ray\n"
        "assert not ray.is_initialized()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_exported_names_follow_rays_prefix_and_suffix_rules() -> None:
    assert metrics.ROWS_INGESTED.exported == ("ray_sentinel_rows_ingested_total",)
    assert metrics.STREAM_LENGTH.exported == ("ray_sentinel_stream_length",)
    assert metrics.BATCH_SECONDS.exported == ("ray_sentinel_batch_seconds_bucket", "ray_sentinel_batch_seconds_sum",
                                              "ray_sentinel_batch_seconds_count")
    names = [spec.name for spec in metrics.METRICS]
    assert len(names) == len(set(names)) and all(n.startswith("sentinel_") for n in names)
    assert not any(n.endswith("_total") for n in names)  # Ray adds it to counters


# -- a running local Ray: what Prometheus would scrape ----------------------------------------
class _BrokenSource:
    name = "broken-test"
    datasets = ("prices",)
    poll_interval_s = 0

    async def fetch(self, cursor: Any) -> Any:
        raise ConnectionError("exchange unreachable")

    async def close(self) -> None:
        pass


@pytest.fixture
def stream_settings(isolated_settings: Settings, embedded_redis: str) -> Settings:
    from tests.ingest.conftest import DAY

    return isolated_settings.model_copy(update={
        "batch_max_rows": 8_000, "batch_max_wait_s": 0.2, "replay_chunk_rows": 5_000, "replay_speed": 0.0,
        "stream_max_entries": 10_000, "replay_live_start": DAY, "replay_live_end": DAY})


@pytest.fixture
def stream_prefix(stream_settings: Settings) -> Iterator[str]:
    from sentinel_ray.ingest.supervisor import stream_store

    prefix = f"m{next(_prefixes)}-{stream_settings.warehouse_database}"
    yield prefix
    store = stream_store(stream_settings, prefix)
    for key in store.redis.scan_iter(match=f"{prefix}:*"):
        store.redis.delete(key)


@pytest.mark.ray
def test_metrics_endpoint_shows_project_metrics_after_a_backfill_and_stream_batch(
        backfilled, stream_settings: Settings, stream_prefix: str, scrape) -> None:
    from sentinel_ray.ingest.consumer import StreamConsumer
    from sentinel_ray.ingest.poller import SourcePoller
    from sentinel_ray.ingest.supervisor import Supervisor, stream_store
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse
    from tests.ingest.conftest import firehose

    _, summary, *_ = backfilled
    assert summary.total_in and summary.total_quarantined  # the replay has bad rows: every counter moves

    # the stream side, in this process: one poll, lag as the supervisor sees it, one micro-batch
    settings, lake = stream_settings, Lake(stream_settings.resolved_lake_uri)
    store = stream_store(settings, stream_prefix)
    published = asyncio.run(SourcePoller(settings, firehose(settings), store=store, lake=lake).poll_once())
    assert published > 0
    supervisor = Supervisor(settings, stream_prefix)
    supervisor.export_stream_lag()  # as its check loop does, before the batch below is consumed
    assert store.length("prices") > 0
    consumer = StreamConsumer(settings, "prices", "prices-0", store=store, lake=lake,
                              warehouse=connect_warehouse(settings))
    assert consumer.run_once() > 0
    broken = SourcePoller(settings, _BrokenSource(), store=store, lake=lake)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        asyncio.run(broken.poll_once())

    queued = {ds: store.length(ds) for ds in ("prices", "posts")}
    assert queued["posts"] > 0  # the posts stream keeps its entries: its gauge must stay non-zero

    def backfill_counted(s) -> bool:
        # >=: the counters are cumulative over the session, which may have run other backfills
        return all(total(s, f"ray_sentinel_rows_{kind}_total", pipeline="backfill", dataset=ds, source="replay")
                   >= rows[ds]
                   for kind, rows in (("ingested", summary.rows_in), ("valid", summary.rows_valid),
                                      ("quarantined", summary.rows_quarantined))
                   for ds in summary.rows_in)

    def everything_exported(s) -> bool:
        return (backfill_counted(s)
                and total(s, "ray_sentinel_rows_ingested_total", pipeline="stream", dataset="prices")
                >= consumer.stats.rows_in
                and total(s, "ray_sentinel_poll_records_total", source="replay") >= published
                and total(s, "ray_sentinel_poller_errors_total", source="broken-test", error="ConnectionError") >= 1
                and any(lab.get("dataset") == "posts" and v == queued["posts"]
                        for lab, v in s.get("ray_sentinel_stream_length", [])))

    samples = scrape(everything_exported, timeout_s=60, every_scrape=supervisor.export_stream_lag)
    assert backfill_counted(samples), {n: sum(v for _, v in series) for n, series in samples.items()
                                       if n.startswith("ray_sentinel_")}
    for ds in summary.rows_in:
        assert total(samples, "ray_sentinel_batch_seconds_count", pipeline="backfill", dataset=ds) >= 1
        assert total(samples, "ray_sentinel_batch_seconds_sum", pipeline="backfill", dataset=ds) > 0
    assert total(samples, "ray_sentinel_rows_ingested_total", pipeline="stream", dataset="prices",
                 source="replay") >= consumer.stats.rows_in > 0
    assert total(samples, "ray_sentinel_batch_seconds_count", pipeline="stream", dataset="prices") >= 1
    assert total(samples, "ray_sentinel_polls_total", source="replay") >= 1
    assert total(samples, "ray_sentinel_poll_records_total", source="replay") >= published
    assert total(samples, "ray_sentinel_poller_errors_total", source="broken-test", error="ConnectionError") >= 1
    for ds, n in queued.items():  # (another process of the session may export the same gauge too)
        assert float(n) in [v for lab, v in samples["ray_sentinel_stream_length"] if lab.get("dataset") == ds]
    assert {lab.get("dataset") for lab, _ in samples["ray_sentinel_stream_pending"]} >= set(queued)
    assert {lab.get("dataset") for lab, _ in samples["ray_sentinel_stream_oldest_pending_age_seconds"]} >= set(queued)
    # every name the dashboard and docs rely on is spelled as exported
    assert {n for n in samples if n.startswith("ray_sentinel_")} <= metrics.exported_names()
