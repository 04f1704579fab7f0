"""Hand-made rows for pipeline tests: one valid row per dataset, overridable per field."""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from sentinel_ray.schemas import Dataset

UTC = timezone.utc
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
TS = datetime(2024, 1, 2, 4, 0, tzinfo=UTC)  # a Tuesday, 09:30 IST
KNOWN = pa.array(["RELIANCE", "TCS", "INFY", "ITC"])


def price_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "ticker": "RELIANCE", "exchange": "NSE", "interval": "1m", "ts": TS,
        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10,
        "source": "replay", "run_id": "r1", "ingested_at": TS, "raw_id": "s/d/2026-11-05/payload.json", "raw_pos": 0,
    }
    row.update(overrides)
    return row


def post_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "platform": "reddit", "post_id": "p1", "author": "a", "text": "RELIANCE to the moon",
        "ts": TS, "url": None, "engagement": 3, "tickers": ["RELIANCE"],
        "source": "reddit", "run_id": "r1", "ingested_at": TS, "raw_id": "s/d/2026-11-05/payload.json", "raw_pos": 0,
    }
    row.update(overrides)
    return row


def filing_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "exchange": "NSE", "filing_id": "f1", "ticker": "RELIANCE", "company": "Reliance Industries Ltd",
        "subject": "Board Meeting Intimation", "details": None, "ts": TS,
        "attachment_url": "https://nsearchives.nseindia.com/corporate/RELIANCE_02012024_Intimation.pdf",
        "source": "nse", "run_id": "r1", "ingested_at": TS, "raw_id": "s/d/2026-11-05/payload.json", "raw_pos": 0,
    }
    row.update(overrides)
    return row


def table_of(ds: Dataset, rows: list[dict[str, object]]) -> pa.Table:
    """Rows as a table of the dataset's columns and types (every column nullable), ready to evaluate."""
    return pa.Table.from_pylist(rows, schema=ds.record_schema)
