"""Quality metrics are exact on a known batch."""
from __future__ import annotations

import datetime as dt

import pyarrow as pa

from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.metrics import batch_metrics
from sentinel_ray.schemas import PRICES, QUALITY_METRICS
from tests.pipeline.rows import KNOWN, NOW, TS, price_row


def _metrics(rows: list[dict]) -> dict[tuple[str, str, str], float]:
    result = process_batch(pa.Table.from_pylist(rows), PRICES, now=NOW, known_tickers=KNOWN)
    table = batch_metrics(result, PRICES, run_id="r1", batch="b1", pipeline="test", measured_at=NOW)
    assert table.schema == QUALITY_METRICS.arrow_schema
    assert set(table.column("run_id").to_pylist()) == {"r1"}
    return {(r["source"], r["metric"], r["column"]): r["value"] for r in table.to_pylist()}


def test_exact_values_on_a_known_batch() -> None:
    later = TS + dt.timedelta(minutes=1)
    rows = [
        price_row(),                                   # valid
        price_row(ts=later),                           # valid
        price_row(ts=later),                           # duplicate
        price_row(ts=TS + dt.timedelta(minutes=2), high=90.0),   # ohlc_inconsistent
        price_row(ts=TS + dt.timedelta(minutes=3), close=None),  # missing_field
        price_row(ts=TS + dt.timedelta(minutes=4), source="nse"),  # valid, other source
    ]
    m = _metrics(rows)
    replay = {k[1:]: v for k, v in m.items() if k[0] == "replay"}
    assert replay[("rows_in", "")] == 5
    assert replay[("rows_valid", "")] == 2
    assert replay[("rows_quarantined", "")] == 3
    assert replay[("rejected", "duplicate")] == 1
    assert replay[("rejected", "ohlc_inconsistent")] == 1
    assert replay[("rejected", "missing_field")] == 1
    assert replay[("validity", "")] == 2 / 5
    assert replay[("uniqueness", "")] == 1 - 1 / 5
    assert replay[("consistency", "")] == 1 - 1 / 5
    assert replay[("completeness", "close")] == 4 / 5
    assert replay[("completeness", "ticker")] == 1.0
    assert replay[("freshness_s", "")] > 0
    nse = {k[1:]: v for k, v in m.items() if k[0] == "nse"}
    assert nse[("rows_in", "")] == 1 and nse[("validity", "")] == 1.0


def test_empty_strings_are_not_complete() -> None:
    m = _metrics([price_row(), price_row(ts=TS + dt.timedelta(minutes=1), exchange="  ")])
    assert m[("replay", "completeness", "exchange")] == 0.5
