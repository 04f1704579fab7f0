"""The HTTP API's response bodies (pydantic), as OpenAPI documents them."""
# No `from __future__ import annotations`: FastAPI reads these annotations inside Serve replicas.
import datetime as dt
from enum import StrEnum
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinel_ray.detect.alerts import DISPOSITIONS, STATES
from sentinel_ray.ingest.webhook import MAX_RECORDS, MAX_SOURCE_CHARS
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M, FILINGS, POSTS
from sentinel_ray.serve.queries import Interval


class Bar(BaseModel):
    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: int


class PriceResponse(BaseModel):
    ticker: str
    exchange: str
    interval: Interval
    start: dt.datetime
    end: dt.datetime
    bars: list[Bar]


class StockSummary(BaseModel):
    ticker: str
    name: str
    exchanges: list[str]
    last_close: float | None = None
    last_ts: dt.datetime | None = None
    bars: int = 0


class PostsResponse(BaseModel):
    ticker: str
    start: dt.datetime
    end: dt.datetime
    posts: list[POSTS.model]  # type: ignore[valid-type]


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx the API answers itself."""
    detail: str


class IntakeRequest(BaseModel):
    """A webhook body (documentation only: the route parses it, so no refused value is echoed back)."""
    source: str = Field("webhook", min_length=1, max_length=MAX_SOURCE_CHARS,
                        description="who pushed the records; stored with every row")
    records: list[dict[str, Any]] = Field(..., min_length=1, max_length=MAX_RECORDS,
                                          description="rows of the dataset in the path, its fields "
                                                      "(all optional; lineage columns are the platform's)")


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
    opened_at: dt.datetime = Field(..., description="the bar that crossed the open threshold")
    last_bar_ts: dt.datetime = Field(..., description="the latest bar of the episode")
    peak_score: float
    peak_ts: dt.datetime
    state: AlertState
    disposition: Optional[Disposition] = None
    reasons: list[Reason] = Field(..., description="at the peak, strongest first")
    detected_by: str
    updated_at: dt.datetime
    posts: int = Field(..., description="posts in the evidence")


class AlertEvidence(BaseModel):
    start: dt.datetime = Field(..., description="first bar of the evidence range")
    end: dt.datetime = Field(..., description="last bar of the evidence range")
    post_ids: list[str] = Field(..., description="platform:post_id of the posts mentioning the ticker in the range")


class AlertEvent(BaseModel):
    event_id: str
    at: dt.datetime
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
    model_config = ConfigDict(extra="forbid")
    state: Optional[AlertState] = None
    disposition: Optional[Disposition] = None
    actor: str = Field("api", min_length=1, max_length=64, pattern=r"^[\w .@-]+$",
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
    start: dt.datetime
    end: dt.datetime
    rows: list[FEATURES_1M.model] | list[FEATURES_1D.model]  # type: ignore[valid-type]


class RiskResponse(BaseModel):
    ticker: str
    exchange: str
    ts: dt.datetime = Field(..., description="the bar scored")
    score: float = Field(..., description="0-100")
    volume_score: float
    price_score: float
    promo_score: float
    chatter_score: float
    reasons: list[Reason]
    computed_at: dt.datetime


class AsOfRow(BaseModel):
    ticker: str
    features: Optional[FEATURES_1M.model] = None  # type: ignore[valid-type]


class AsOfResponse(BaseModel):
    ts: dt.datetime = Field(..., description="the as-of time: only bars closed by then")
    exchange: str
    rows: list[AsOfRow]


class TrendingRow(BaseModel):
    ticker: str
    exchange: str
    max_posts_z: float
    latest_posts_z: Optional[float] = None
    peak_ts: dt.datetime
    max_posts_60m: int
    max_promo_z: Optional[float] = None


class TrendingResponse(BaseModel):
    start: dt.datetime
    end: dt.datetime
    tickers: list[TrendingRow]


class FilingsResponse(BaseModel):
    ticker: str
    start: dt.datetime
    end: dt.datetime
    filings: list[FILINGS.model]  # type: ignore[valid-type]
