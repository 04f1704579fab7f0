"""What every floor passes around: raw payloads, fetch and batch results, reject reasons,
the clock, and the error types.

This module sits at the bottom next to `schemas.py` and `config.py`: it imports nothing
of the package, so sources, storage, quality, pipeline, ingest and serve can all use it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- errors -------------------------------------------------------------------------


class SentinelError(RuntimeError):
    """Root of the platform's own errors."""


class SourceError(SentinelError):
    """A source failed in a way retrying will not fix (bad credentials, bad config)."""


class MissingCredentials(SourceError):
    pass


class WarehouseError(SentinelError):
    """The warehouse could not be reached or refused a statement."""


class RedisUnavailable(SentinelError):
    """Redis (server or embedded) could not be reached or started."""


# --- what sources return --------------------------------------------------------------


@dataclass(frozen=True)
class RawPayload:
    """One response exactly as received, kept for the lake's raw zone."""

    source: str
    dataset: str
    received_at: dt.datetime
    body: bytes
    content_type: str = "application/json"
    request: str = ""  # what was asked (URL without secrets, or a description), for audit

    @classmethod
    def of(cls, source: str, dataset: str, response: Any) -> "RawPayload":
        """From an http.HttpResponse (query strings dropped: they may hold keys)."""
        return cls(source, dataset, response.received_at, response.body, response.content_type,
                   response.url.split("?", 1)[0])


@dataclass
class FetchResult:
    raw: list[RawPayload]
    records: dict[str, pa.Table]  # dataset name -> table in that dataset's Arrow schema
    next_cursor: dict[str, Any] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def rows(self, dataset: str) -> int:
        table = self.records.get(dataset)
        return 0 if table is None else table.num_rows


# --- what the pipeline returns ------------------------------------------------------


class Reason(StrEnum):
    """Why a row was rejected: the reason codes the shipped rules use.

    Quarantined rows store the code as a string, so a code keeps its spelling for good.
    Which code a row gets is decided by the rule order of its dataset
    (`quality/default_rules.yaml`, first failing rule wins); a rules override file may
    add codes of its own.
    """

    MISSING_FIELD = "missing_field"  # a required column is absent or null
    BAD_TYPE = "bad_type"  # a value could not be read as its column's type
    UNKNOWN_EXCHANGE = "unknown_exchange"  # exchange is not NSE or BSE
    UNKNOWN_TICKER = "unknown_ticker"  # ticker is not in the shipped symbol list
    NON_POSITIVE_PRICE = "non_positive_price"  # open/high/low/close <= 0
    NEGATIVE_VOLUME = "negative_volume"
    OHLC_INCONSISTENT = "ohlc_inconsistent"  # not low <= open, close <= high
    FUTURE_TIMESTAMP = "future_timestamp"  # ts later than the validation clock (+ small skew)
    OUTSIDE_SESSION = "outside_session"  # intraday bar outside 09:15-15:30 IST or not a trading day
    TEXT_LENGTH = "text_length"  # post text shorter than 5 or longer than 10000 characters (after trim)
    DUPLICATE = "duplicate"  # same natural key as an earlier row in the batch
    IMPLAUSIBLE_PRICE_JUMP = "implausible_price_jump"  # price > factor away from its series' level, volume ordinary
    STALE_TIMESTAMP = "stale_timestamp"  # older than a freshness rule's max_age (not in the shipped rules)


REJECT_REASON = "reject_reason"  # the column quarantined rows carry their Reason in


@dataclass
class BatchResult:
    valid: pa.Table  # exactly ds.arrow_schema
    quarantined: pa.Table  # exactly ds.quarantine_schema (every column plus reject_reason)
    warned: dict[str, int] = field(default_factory=dict)  # warn rule name -> valid rows it flagged
    rows_warned: int = 0  # valid rows flagged by at least one warn rule

    @property
    def rows_valid(self) -> int:
        return self.valid.num_rows

    @property
    def rows_quarantined(self) -> int:
        return self.quarantined.num_rows

    @property
    def rows_in(self) -> int:
        return self.rows_valid + self.rows_quarantined

    def reason_counts(self) -> dict[str, int]:
        if not self.rows_quarantined:
            return {}
        counts = pc.value_counts(self.quarantined.column(REJECT_REASON))
        return {c["values"].as_py(): c["counts"].as_py() for c in counts}
