"""The HTTP API's response bodies (pydantic), as OpenAPI documents them."""
# No `from __future__ import annotations`: FastAPI reads these annotations inside Serve replicas.
import datetime as dt

from pydantic import BaseModel

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


class IntakeResponse(BaseModel):
    dataset: str
    accepted: int
    entry_id: str


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, bool]
