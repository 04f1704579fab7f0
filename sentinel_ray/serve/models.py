"""The HTTP API's response bodies (pydantic), as OpenAPI documents them."""
# No `from __future__ import annotations`: FastAPI reads these annotations inside Serve replicas.
import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from sentinel_ray.ingest.webhook import MAX_RECORDS, MAX_SOURCE_CHARS
from sentinel_ray.schemas import POSTS
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
