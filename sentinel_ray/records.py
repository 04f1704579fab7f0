"""What every floor passes around: raw payloads, fetch and batch results, reject reasons,
the clock, and the error types.

This module sits at the bottom next to `schemas.py` and `config.py`: it imports nothing
of the package, so sources, storage, quality, pipeline, ingest and serve can all use it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# --- errors -------------------------------------------------------------------------
# Every failure answers one question: will a retry help? TransientError: it may (a
# connection refused or reset, a timeout, a 5xx or 429, a warehouse suspended, Redis
# down). TerminalError: it will not (data the pipeline or the warehouse refuses, a schema
# or type mismatch, bad configuration or credentials). `classify` answers it for foreign
# exceptions too, by class name, so this module imports none of their libraries.


class SentinelError(RuntimeError):
    """Root of the platform's own errors."""


class TransientError(SentinelError):
    """A retry may succeed: keep the work and try again later."""


class TerminalError(SentinelError):
    """Retrying the same thing will fail the same way: set the work aside (dead letters)."""


class SourceError(SentinelError):
    """A source failed. Raised as is, its configuration or its answer is wrong (terminal);
    subclasses may say otherwise (`sources.http.FetchError`: retries ran out, transient)."""


class MissingCredentials(SourceError, TerminalError):
    pass


class WarehouseError(SentinelError):
    """The warehouse could not be reached or refused a statement (raised as one of the two
    below when the cause is known)."""


class WarehouseUnavailable(WarehouseError, TransientError):
    """The warehouse is down, unreachable, overloaded or suspended."""


class WarehouseRefused(WarehouseError, TerminalError):
    """The warehouse refused the statement or its data, or is set up wrongly."""


class RedisUnavailable(TransientError):
    """Redis (server or embedded) could not be reached or started."""


class ErrorKind(StrEnum):
    TRANSIENT = "transient"  # retry
    TERMINAL = "terminal"  # a retry will not help
    UNKNOWN = "unknown"  # not recognised: retried like a transient error (never drops data)


_T, _X = ErrorKind.TRANSIENT, ErrorKind.TERMINAL
# Foreign classes by "module.qualname". The first class of an exception's MRO found here
# decides, so a subclass listed overrides its base (redis AuthenticationError is a
# ConnectionError).
_FOREIGN_KINDS: dict[str, ErrorKind] = {
    # sources/http.py, by name: records sits below sources
    "sentinel_ray.sources.http.AuthError": _X,  # 401/403
    "sentinel_ray.sources.http.HttpStatusError": _X,  # other 4xx (by .status, below)
    "sentinel_ray.sources.http.FetchError": _T,  # retries on 5xx/429/timeouts ran out
    "sentinel_ray.records.SourceError": _X,
    # redis-py
    "redis.exceptions.AuthenticationError": _X,
    "redis.exceptions.AuthorizationError": _X,
    "redis.exceptions.ExternalAuthProviderError": _X,
    "redis.exceptions.NoPermissionError": _X,
    "redis.exceptions.DataError": _X,
    "redis.exceptions.ConnectionError": _T,
    "redis.exceptions.TimeoutError": _T,
    "redis.exceptions.BusyLoadingError": _T,
    "redis.exceptions.ReadOnlyError": _T,  # a replica during failover
    "redis.exceptions.TryAgainError": _T,
    "redis.exceptions.ClusterDownError": _T,
    "redis.exceptions.OutOfMemoryError": _T,  # maxmemory: frees up as consumers acknowledge
    "redis.exceptions.WatchError": _T,
    # clickhouse-connect (a DatabaseError with a transient server code is transient, below)
    "clickhouse_connect.driver.exceptions.OperationalError": _T,  # network, stream broken
    "clickhouse_connect.driver.exceptions.DatabaseError": _X,  # ProgrammingError, DataError, ...
    "clickhouse_connect.driver.exceptions.InterfaceError": _X,
    # aiohttp (ClientResponseError: by .status, below)
    "aiohttp.client_exceptions.ClientConnectionError": _T,
    "aiohttp.client_exceptions.ClientPayloadError": _T,
    "aiohttp.client_exceptions.ClientResponseError": _X,
    # ray: an actor restarting; a task's error is classified by its cause (below)
    "ray.exceptions.RayActorError": _T,
    "ray.exceptions.ObjectLostError": _T,
    # pyarrow: data that cannot be read or converted
    "pyarrow.lib.ArrowCancelled": _T,
    "pyarrow.lib.ArrowException": _X,
    # builtins: the network and the disk may come back; bad data does not change
    "builtins.OSError": _T,  # ConnectionError, TimeoutError (asyncio's too), ...
    "builtins.ValueError": _X,  # UnicodeError, ArrowInvalid, json.JSONDecodeError, ...
    "builtins.TypeError": _X,
    "builtins.NotImplementedError": _X,
    "builtins.MemoryError": _X,  # for one batch: it will not get smaller
}
# ClickHouse server codes a retry can fix
# (timeouts, overload, read-only or missing replicas, keeper); MEMORY_LIMIT_EXCEEDED may be
# a busy server or a batch too big for it: unknown, so it is retried a few times only.
_CLICKHOUSE_TRANSIENT_CODES = frozenset({159, 202, 203, 209, 210, 242, 252, 285, 319, 425, 439, 999})
_CLICKHOUSE_UNKNOWN_CODES = frozenset({241})
_HTTP_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def classify(exc: BaseException) -> ErrorKind:
    """Whether retrying what raised `exc` may help. The platform's own errors say so by
    their class; foreign ones are looked up by class name (then by their `__cause__`);
    anything else is UNKNOWN."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _kind_of(current)
        if kind is not None:
            return kind
        current = current.__cause__
    return ErrorKind.UNKNOWN


def is_transient(exc: BaseException) -> bool:
    """True unless a retry is known not to help (unknown errors are retried: nothing is dropped)."""
    return classify(exc) is not ErrorKind.TERMINAL


def _kind_of(exc: BaseException) -> ErrorKind | None:
    for cls in type(exc).__mro__:
        if cls is TransientError:
            return ErrorKind.TRANSIENT
        if cls is TerminalError:
            return ErrorKind.TERMINAL
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name == "ray.exceptions.RayTaskError":  # raised by a remote call: what the call raised decides
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException) and cause is not exc:
                return classify(cause)
            continue
        kind = _FOREIGN_KINDS.get(name)
        if kind is not None:
            return _refined(exc, name, kind)
    return None


def _refined(exc: BaseException, name: str, kind: ErrorKind) -> ErrorKind:
    """Classes whose instances differ: HTTP errors by status, ClickHouse errors by server code."""
    if name in ("aiohttp.client_exceptions.ClientResponseError", "sentinel_ray.sources.http.HttpStatusError"):
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            return ErrorKind.TRANSIENT if status in _HTTP_TRANSIENT_STATUSES or status >= 500 else ErrorKind.TERMINAL
    elif name == "clickhouse_connect.driver.exceptions.DatabaseError":
        code = getattr(exc, "code", None)
        if code is None:  # an older driver: the code is only in the message
            import re

            match = re.search(r"\bCode:\s*(\d+)", str(exc))
            code = int(match.group(1)) if match else None
        if code in _CLICKHOUSE_TRANSIENT_CODES:
            return ErrorKind.TRANSIENT
        if code in _CLICKHOUSE_UNKNOWN_CODES:
            return ErrorKind.UNKNOWN
    return kind


# --- what sources return --------------------------------------------------------------

# Lineage: the two columns on every record table an adapter returns, naming the raw payload
# the record was read from (RawPayload.payload_id) and its 0-based position in that payload
# (in the order the payload lists its records).
RAW_ID = "raw_id"
RAW_POS = "raw_pos"


@dataclass(frozen=True)
class RawPayload:
    """One response exactly as received, kept for the lake's raw zone."""

    source: str
    dataset: str
    received_at: dt.datetime
    body: bytes
    content_type: str = "application/json"
    request: str = ""  # what was asked (URL without secrets, or a description), for audit and replay

    @cached_property
    def payload_id(self) -> str:
        """`source/dataset/<received UTC date>/<sha1 of the body, 16 hex>`: the same bytes received
        the same day have the same id, whoever fetched them and however often (content-addressed),
        and the id names the raw-zone partition (source, dataset, date) the payload is kept in."""
        received = self.received_at if self.received_at.tzinfo is not None \
            else self.received_at.replace(tzinfo=dt.timezone.utc)  # naive means UTC
        day = received.astimezone(dt.timezone.utc).date().isoformat()
        digest = hashlib.sha1(self.body, usedforsecurity=False).hexdigest()[:16]
        return f"{self.source}/{self.dataset}/{day}/{digest}"

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
    # Values no real market or platform produces (after the codes above in every dataset's order):
    IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"  # ts/ingested_at before 1990 (posts 2000), ingested_at > now + 1d
    IMPLAUSIBLE_PRICE = "implausible_price"  # open/high/low/close above 1e7 rupees (1 crore)
    IMPLAUSIBLE_COUNT = "implausible_count"  # volume above 1e12; engagement negative or above 1e10
    NON_TEXT = "non_text"  # text, company or subject with no letter or digit ("{}", "[]") or a placeholder ("null")
    BAD_URL = "bad_url"  # a link that is not http(s)://host (javascript:, data:, relative)
    UNPARSEABLE = "unparseable"  # the adapter could not read the record at all (run_id points at its raw payload)


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
