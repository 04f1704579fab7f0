"""The HTTP API's bodies and time parameters (pydantic), as OpenAPI documents them.

Every time in a response is an aware UTC datetime (`Time`), written as RFC 3339 with its
offset ("2026-11-05T04:10:00Z"); a naive one is refused here rather than sent ambiguous
(the ingress makes the warehouse's naive UTC times aware before they reach a model).
A time in a query is `QueryTime`: an RFC 3339 date-time with an offset, or a date. Records
pushed to the webhook are checked against their documented schema first (`check_records`).
"""
# No `from __future__ import annotations`: FastAPI reads these annotations inside Serve replicas.
import datetime as dt
import json
import re
from enum import StrEnum
from functools import cache
from typing import Any, Optional, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from sentinel_ray.detect.alerts import DISPOSITIONS, STATES
from sentinel_ray.ingest.webhook import MAX_RECORDS, MAX_SOURCE_CHARS
from sentinel_ray.schemas import DATA_DATASETS, FEATURES_1D, FEATURES_1M, FILINGS, POSTS
from sentinel_ray.serve.queries import Interval

# A response time: aware (any naive time is a bug upstream), UTC by the ingress's conversion.
Time = AwareDatetime

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UTC = dt.timezone.utc
TIME_HINT = "an RFC 3339 date-time with an offset (2026-11-05T09:15:00+05:30, 2026-11-05T03:45:00Z) or a date " \
            "(2026-11-05, its midnight UTC)"


def parse_query_time(value: object) -> dt.datetime:
    """A query time as an aware UTC datetime: exactly what the schema's `date-time` or `date`
    formats accept (a leap second, 23:59:60 UTC, is read as the last microsecond before it);
    anything else, or a time beyond years 1-9999 in UTC, is a ValueError saying what to send."""
    if not isinstance(value, str):
        raise ValueError(f"give {TIME_HINT}")
    if value.startswith("0000-"):  # the formats allow year 0; Python's calendar starts at year 1
        raise ValueError("out of the supported range (years 1 to 9999 in UTC)")
    try:
        if _DATE.fullmatch(value):
            day = dt.date.fromisoformat(value)
            return dt.datetime(day.year, day.month, day.day, tzinfo=_UTC)
        match = _RFC3339.fullmatch(value)
        if match is None:
            raise ValueError
        leap = match.group(3) == "60"
        text = value.upper()
        if leap:
            text = text[:match.start(3)] + "59" + text[match.end(3):]
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a valid time: give {TIME_HINT}") from None
    try:
        moment = moment.astimezone(_UTC)
    except (OverflowError, ValueError):
        raise ValueError("out of the supported range (years 1 to 9999 in UTC)") from None
    if leap:
        if (moment.hour, moment.minute) != (23, 59):
            raise ValueError(f"not a valid time (a leap second is 23:59:60 UTC): give {TIME_HINT}")
        moment = moment.replace(microsecond=999_999)
    return moment


def parse_query_day(value: object) -> dt.date:
    """A query date (YYYY-MM-DD), exactly as the schema's `date` format accepts it."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        if value.startswith("0000-"):
            raise ValueError("out of the supported range (years 1 to 9999)")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("not a valid date: give one like 2026-11-05")


MAX_TICKERS = 100
_SYMBOL = "[A-Za-z0-9&._-]+"
TICKERS_PATTERN = f"^ *{_SYMBOL} *(, *{_SYMBOL} *){{0,{MAX_TICKERS - 1}}}$"


def parse_tickers(value: object) -> list[str]:
    """A comma-separated list of 1 to MAX_TICKERS symbols (as TICKERS_PATTERN says), upper-cased, once each."""
    if not isinstance(value, str):
        raise ValueError("give comma-separated symbols (TCS,INFY)")
    names = [name.strip().upper() for name in value.split(",")]
    if len(names) > MAX_TICKERS:
        raise ValueError(f"at most {MAX_TICKERS} symbols per request, got {len(names)}")
    if not re.fullmatch(TICKERS_PATTERN, value):
        raise ValueError("give 1 to 100 comma-separated symbols of letters, digits and &._- (TCS,INFY)")
    return list(dict.fromkeys(names))


# Query parameter types that accept what their schema says and nothing else (pydantic's own
# datetime would also take naive times, "2026-11-05 04:10" and Unix seconds like "0.5").
# Classes rather than Annotated aliases: FastAPI drops the metadata of an Annotated parameter type.
class QueryTime(dt.datetime):
    """A time parameter: `parse_query_time` reads it, to an aware UTC datetime."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(parse_query_time)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}


class QueryDay(dt.date):
    """A date parameter (YYYY-MM-DD)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(parse_query_day)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "format": "date"}


class Tickers(str):
    """Comma-separated symbols, read to "TCS,INFY": upper case, each once, no spaces."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(lambda value: cls(",".join(parse_tickers(value))))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "pattern": TICKERS_PATTERN}


class Bar(BaseModel):
    ts: Time
    open: float
    high: float
    low: float
    close: float
    volume: int


class PriceResponse(BaseModel):
    ticker: str
    exchange: str
    interval: Interval
    start: Time
    end: Time
    bars: list[Bar]


class StockSummary(BaseModel):
    ticker: str
    name: str
    exchanges: list[str]
    last_close: float | None = None
    last_ts: Time | None = None
    bars: int = 0
    risk_score: float | None = Field(None, description="the latest risk score (0-100), at risk_ts")
    risk_ts: Time | None = None
    open_alerts: int | None = Field(None, description="alerts not closed (null when only the warehouse answered)")


class PostsResponse(BaseModel):
    ticker: str
    start: Time
    end: Time
    posts: list[POSTS.model]  # type: ignore[valid-type]


class ErrorResponse(BaseModel):
    """The body of every error the API answers: its own refusals, FastAPI's parameter checks
    and Starlette's unknown paths and methods alike."""
    detail: str = Field(..., description="what went wrong, naming the parameter, field or record at fault",
                        examples=["query parameter end: not a valid time: give an RFC 3339 date-time ..."])


def parse_record_time(value: object) -> str:
    """A record's time as the schema's `date-time` format has it (RFC 3339, with an offset),
    left as text for the webhook to read; its range in UTC is the webhook's to check."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        text = value.upper()  # type: ignore[union-attr]
        if match.group(3) == "60":  # a leap second: the rest must still be a time
            text = text[:match.start(3)] + "59" + text[match.end(3):]
        try:
            dt.datetime.fromisoformat(text)
            return value  # type: ignore[return-value]
        except ValueError:
            pass
    raise ValueError("not an RFC 3339 date-time with an offset (2026-11-26T05:00:00Z)")


class RecordTime(str):
    """A time field of a pushed record (see parse_record_time)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(parse_record_time)


def _holds(annotation: Any, kind: type) -> bool:
    """Whether `kind` is `annotation` or inside it (Optional[...], Annotated[...])."""
    return annotation is kind or any(_holds(arg, kind) for arg in get_args(annotation))


def _integral_float_as_int(cls: type, value: Any) -> Any:
    """5.0 is an integer to JSON Schema; to a strict pydantic int it is not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@cache
def _strict_records(dataset: str) -> TypeAdapter:
    """The dataset's intake model with JSON's types exactly, as its schema documents them: no
    "5" or false for 5, no 5.5 for an integer, no number or naive text for a time. The webhook's
    own check is lax (pydantic's defaults); this one, at the HTTP edge, goes first."""
    intake = DATA_DATASETS[dataset].intake_model
    times = [name for name, f in intake.model_fields.items() if _holds(f.annotation, dt.datetime)]
    integers = [name for name, f in intake.model_fields.items() if _holds(f.annotation, int)]
    namespace: dict[str, Any] = {"__module__": __name__, "model_config": ConfigDict(extra="forbid", strict=True),
                                 "__annotations__": {name: Optional[RecordTime] for name in times},
                                 **dict.fromkeys(times)}
    if integers:
        namespace["integral_floats"] = field_validator(*integers, mode="before")(_integral_float_as_int)
    return TypeAdapter(list[type(f"Strict{intake.__name__}", (intake,), namespace)])  # type: ignore[misc]


def _record_field(loc: tuple[int | str, ...]) -> str:
    """`records[3].text`; a key that is no identifier is quoted, escaped (\\ud800) and cut."""
    out = "records"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and len(part) <= 64:
            out += f".{part}"
        else:
            out += f"[{json.dumps(part[:64])}]"
    return out


class RecordsRefused(ValueError):
    """Pushed records that do not fit their dataset's documented schema; the message names them."""


def check_records(dataset: str, records: list[Any]) -> None:
    """Refuse, naming each record and field (at most 10), records that do not fit the documented
    schema of `dataset`'s intake; no refused value is echoed."""
    try:
        _strict_records(dataset).validate_python(records)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            if err["type"] == "string_unicode" and not err["loc"][1:]:
                message = "a field name is not valid Unicode (lone surrogate)"
            elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
                message = "must be a JSON object"
            else:
                message = str(err["msg"]).removeprefix("Value error, ")[:200]
            problems.append(f"{_record_field(err['loc'])}: {message}")
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise RecordsRefused("; ".join(problems[:10]) + more) from None


def intake_request_model(dataset: str) -> type[BaseModel]:
    """The webhook body of `dataset`, for its documentation only: the route parses the body
    itself (webhook.parse_body), so a refused value is never echoed back. Its records are the
    dataset's intake model (schemas.py): its fields only, each optional, lineage the platform's."""
    intake = DATA_DATASETS[dataset].intake_model
    return create_model(
        f"{intake.__name__}Request",
        # a source must have something besides white space (\x1c-\x1f and \x85 are white space to Python)
        source=(str, Field("webhook", min_length=1, max_length=MAX_SOURCE_CHARS, pattern=r"[^\s\x1c-\x1f\x85]",
                           description="who pushed the records; stored with every row")),
        records=(list[intake], Field(..., min_length=1, max_length=MAX_RECORDS,  # type: ignore[valid-type]
                                     description=f"rows of {dataset}")),
    )


class IntakeResponse(BaseModel):
    dataset: str
    accepted: int
    entry_id: str


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, bool]


# --- surveillance ----------------------------------------------------------------------
AlertState = StrEnum("AlertState", {s: s for s in STATES})
Disposition = StrEnum("Disposition", {d: d for d in DISPOSITIONS})


class Reason(BaseModel):
    feature: str
    value: Optional[float] = None
    strength: Optional[float] = Field(None, description="0-1: how unusual the value is")
    text: str = Field(..., description="as an analyst reads it, e.g. 'volume 9.3x usual for 10:42 IST'")


class AlertSummary(BaseModel):
    alert_id: str
    ticker: str
    exchange: str
    opened_at: Time = Field(..., description="the bar that crossed the open threshold")
    last_bar_ts: Time = Field(..., description="the latest bar of the episode")
    peak_score: float
    peak_ts: Time
    state: AlertState
    disposition: Optional[Disposition] = None
    reasons: list[Reason] = Field(..., description="at the peak, strongest first")
    detected_by: str
    updated_at: Time
    posts: int = Field(..., description="posts in the evidence")


class AlertEvidence(BaseModel):
    start: Time = Field(..., description="first bar of the evidence range")
    end: Time = Field(..., description="last bar of the evidence range")
    post_ids: list[str] = Field(..., description="platform:post_id of the posts mentioning the ticker in the range")


class AlertEvent(BaseModel):
    event_id: str
    at: Time
    actor: str
    action: str
    from_state: Optional[str] = None
    to_state: str
    disposition: Optional[str] = None
    note: Optional[str] = None


class AlertDetail(AlertSummary):
    evidence: AlertEvidence
    events: list[AlertEvent] = Field(..., description="the audit trail, oldest first")


class AlertUpdate(BaseModel):
    """An analyst's change: a new state, a disposition, or both (closing needs a disposition)."""
    # The schema says what the validator below checks: a state or a disposition that is not null.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"type": "string"}}} for name in ("state", "disposition")]})
    state: Optional[AlertState] = None
    disposition: Optional[Disposition] = None
    # ASCII spelled out: `\w` is Unicode in Python's regex but ASCII in the schema's (ECMA-262)
    actor: str = Field("api", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_ .@-]+$",
                       description="who makes the change, recorded in alert_events")
    note: Optional[str] = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _changes_something(self) -> "AlertUpdate":
        if self.state is None and self.disposition is None:
            raise ValueError("give a state, a disposition or both")
        return self


class FeaturesResponse(BaseModel):
    ticker: str
    exchange: str
    interval: Interval
    start: Time
    end: Time
    rows: list[FEATURES_1M.model] | list[FEATURES_1D.model]  # type: ignore[valid-type]


class RiskResponse(BaseModel):
    ticker: str
    exchange: str
    ts: Time = Field(..., description="the bar scored")
    score: float = Field(..., description="0-100")
    volume_score: float
    price_score: float
    promo_score: float
    chatter_score: float
    reasons: list[Reason]
    computed_at: Time


class RiskPoint(BaseModel):
    ts: Time = Field(..., description="the bar scored (1m), or the start of the hour or IST trading day (1h, 1d)")
    score: float = Field(..., description="0-100; for 1h and 1d the highest of the bucket")
    volume_score: float = Field(..., description="0-1 (each sub-score its own highest of the bucket)")
    price_score: float
    promo_score: float
    chatter_score: float


class RiskHistoryResponse(BaseModel):
    ticker: str
    exchange: str
    interval: Interval
    start: Time
    end: Time
    points: list[RiskPoint] = Field(..., description="oldest first")


class AsOfRow(BaseModel):
    ticker: str
    features: Optional[FEATURES_1M.model] = None  # type: ignore[valid-type]


class AsOfResponse(BaseModel):
    ts: Time = Field(..., description="the as-of time: only bars closed by then")
    exchange: str
    rows: list[AsOfRow]


class TrendingRow(BaseModel):
    ticker: str
    exchange: str
    max_posts_z: float
    latest_posts_z: Optional[float] = None
    peak_ts: Time
    max_posts_60m: int
    max_promo_z: Optional[float] = None


class TrendingResponse(BaseModel):
    start: Time
    end: Time
    tickers: list[TrendingRow]


class FilingsResponse(BaseModel):
    ticker: str
    start: Time
    end: Time
    filings: list[FILINGS.model]  # type: ignore[valid-type]
