"""Ray Serve deployments: the HTTP API (FastAPI ingress), queries and health.

    ApiIngress (FastAPI, OpenAPI at /docs)
      -> QueryService   prices, posts, stocks       (warehouse reads)
      -> HealthService  /health, /ready, pipelines   (Redis, warehouse, lake checks)

`build_app(settings)` is used by `sentinel-ray up`; `app_builder(args)` is the
`serve deploy serve_config.yaml` entrypoint and takes the settings the running
platform published (or SENTINEL_* variables).
"""
# No `from __future__ import annotations` here: Serve rebuilds the FastAPI routes inside
# each replica, where string annotations no longer resolve.
import asyncio
import datetime as dt
import logging
import secrets
from typing import Any

from fastapi import Body, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from sentinel_ray.config import Settings
from sentinel_ray.reference import symbol_table
from sentinel_ray.schemas import DATA_DATASETS, POSTS
from sentinel_ray.serve.http_metrics import instrument
from sentinel_ray.serve.queries import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    Interval,
    freshness,
    posts_mentioning,
    price_bars,
    stock_summaries,
)

log = logging.getLogger(__name__)

# Serve's defaults (5 ongoing requests, an access-log line per request) cap a replica
# at a few dozen requests/s on a small machine; these lift that.
_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 100,
    "logging_config": {"enable_access_log": False},
    "ray_actor_options": {"num_cpus": 0},
}


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


MAX_INTAKE_RECORDS = 10_000


class IntakeResponse(BaseModel):
    dataset: str
    accepted: int
    entry_id: str


class ReadyResponse(BaseModel):
    ready: bool
    checks: dict[str, bool]


def _known_symbols() -> dict[str, dict[str, Any]]:
    table = symbol_table()
    return {row["symbol"]: row for row in table.to_pylist()}


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def resolve_range(start: dt.datetime | None, end: dt.datetime | None, default: dt.timedelta,
                  maximum: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """Fill a missing end (now) or start (end - default), and refuse empty or oversized ranges."""
    try:
        end = _as_utc(end) if end else dt.datetime.now(dt.timezone.utc)
        start = _as_utc(start) if start else end - default
    except (OverflowError, ValueError):  # e.g. year 1 shifted across a time zone
        raise HTTPException(422, detail="start/end out of the supported range") from None
    if start >= end:
        raise HTTPException(422, detail=f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end - start > maximum:
        raise HTTPException(422, detail=f"range of {(end - start).days} days is more than the {maximum.days} "
                                        f"days allowed for this interval; narrow start/end")
    return start, end


@serve.deployment(**_DEPLOYMENT_OPTIONS)
class QueryService:
    def __init__(self, settings: Settings) -> None:
        from sentinel_ray.storage.warehouse import connect_warehouse

        self.warehouse = connect_warehouse(settings)

    # Queries block on the warehouse; threads keep the replica's event loop serving
    # other requests meanwhile (a blocking method would handle one request at a time).
    async def stocks(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(stock_summaries, self.warehouse)

    async def prices(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                     exchange: str, source: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(price_bars, self.warehouse, ticker, start, end, interval, exchange, source)

    async def posts(self, ticker: str, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(posts_mentioning, self.warehouse, ticker, start, end, limit)


@serve.deployment(**_DEPLOYMENT_OPTIONS)
class HealthService:
    def __init__(self, settings: Settings) -> None:
        from sentinel_ray.storage.lake import Lake
        from sentinel_ray.storage.warehouse import connect_warehouse

        self.settings = settings
        self.redis_url = settings.resolved_redis_url
        self.warehouse = connect_warehouse(settings)
        self.lake = Lake(settings.resolved_lake_uri)

    def ready(self) -> dict[str, bool]:
        from sentinel_ray.storage.redis import redis_ok

        return {"redis": redis_ok(self.redis_url), "warehouse": self.warehouse.ping(), "lake": self.lake.ping()}

    def pipelines(self, limit: int) -> list[dict[str, Any]]:
        from sentinel_ray.monitoring.runs import recent_runs

        return recent_runs(self.warehouse, limit=limit)

    def freshness(self) -> list[dict[str, Any]]:
        return freshness(self.warehouse, list(DATA_DATASETS))

    def pipeline_runs(self, name: str, limit: int) -> list[dict[str, Any]]:
        from sentinel_ray.monitoring.runs import recent_runs

        return recent_runs(self.warehouse, limit=limit, pipeline=name)

    def pipelines_health(self, hours: int) -> list[dict[str, Any]]:
        from sentinel_ray.monitoring.runs import pipeline_health

        return pipeline_health(self.warehouse, window_hours=hours)

    def quality(self, hours: int) -> dict[str, Any]:
        from sentinel_ray.quality.report import quality_report

        return quality_report(self.warehouse, self.settings, window=dt.timedelta(hours=hours), record=False)

    def dataset_quality(self, dataset: str, start: dt.datetime, end: dt.datetime, bucket: str) -> dict[str, Any]:
        from sentinel_ray.quality.report import dataset_quality

        return dataset_quality(self.warehouse, dataset, start, end, bucket)

    def quarantine(self, dataset: str, rule: str | None, start: dt.date | None, end: dt.date | None,
                   limit: int) -> list[dict[str, Any]]:
        from sentinel_ray.quality.quarantine import list_quarantined

        return list_quarantined(self.lake, dataset, rule=rule, start=start, end=end, limit=limit)


api = FastAPI(
    title="Sentinel Ray",
    description="Market-surveillance data for NSE/BSE equities: prices, social mentions, pipeline health.",
    version="0.1.0",
)
instrument(api)  # request count and latency per route template, as Ray metrics


def _backend_errors() -> tuple[type[BaseException], ...]:
    import redis
    from ray.exceptions import RayError

    from sentinel_ray.records import WarehouseError

    return (WarehouseError, redis.RedisError, RayError, ConnectionError, TimeoutError)


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Bad input never reaches here (FastAPI answers 4xx); what does is a backend that is
    # down or failing, which the caller should retry rather than read as a bug.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=503, content={"detail": f"backend unavailable: {type(exc).__name__}"})


for _error in _backend_errors():
    api.add_exception_handler(_error, _storage_unavailable)


@serve.deployment(**_DEPLOYMENT_OPTIONS)
@serve.ingress(api)
class ApiIngress:
    def __init__(self, query: DeploymentHandle, health: DeploymentHandle, settings: Settings) -> None:
        from sentinel_ray.ingest.streams import StreamStore
        from sentinel_ray.storage.redis import connect_redis

        self.query = query
        self.health = health
        self.symbols = _known_symbols()
        self.api_token = settings.api_token.get_secret_value() if settings.api_token else ""
        self.streams = StreamStore(connect_redis(settings.resolved_redis_url))

    def _require_token(self, authorization: str | None) -> None:
        if not self.api_token:
            raise HTTPException(503, detail="write endpoints are disabled: set SENTINEL_API_TOKEN on the server")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), self.api_token.encode()):
            raise HTTPException(401, detail="missing or wrong token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def _symbol(self, ticker: str) -> dict[str, Any]:
        symbol = ticker.strip().upper()
        if symbol not in self.symbols:
            raise HTTPException(404, detail=f"unknown ticker {ticker!r}: not an NSE/BSE symbol this platform tracks "
                                            f"(see GET /api/stocks)")
        return self.symbols[symbol]

    @api.get("/health", tags=["health"])
    async def health_check(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready", tags=["health"], response_model=ReadyResponse,
             responses={503: {"model": ReadyResponse, "description": "a dependency is down"}})
    async def ready(self) -> JSONResponse:
        checks = await self.health.ready.remote()
        ok = all(checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks})

    @api.get("/api/data/pipelines", tags=["data"])
    async def pipelines(self, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await self.health.pipelines.remote(limit)

    @api.get("/api/data/pipelines/health", tags=["data"])
    async def pipelines_health(self, hours: int = Query(24, ge=1, le=24 * 90)) -> list[dict[str, Any]]:
        """Per pipeline: runs, success rate, rows, last run, last error and a status, from pipeline_runs."""
        return await self.health.pipelines_health.remote(hours)

    @api.get("/api/data/pipelines/{name}/runs", tags=["data"])
    async def pipeline_runs(self, name: str = Path(..., pattern="^[a-z_]{1,40}$"),
                            limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await self.health.pipeline_runs.remote(name, limit)

    @api.get("/api/data/quality", tags=["quality"])
    async def quality(self, hours: int = Query(24, ge=1, le=24 * 90)) -> dict[str, Any]:
        """Status per dataset and source, rule counts, completeness, NSE/Yahoo agreement, alerts."""
        return await self.health.quality.remote(hours)

    @api.get("/api/data/quality/{dataset}", tags=["quality"])
    async def dataset_quality(
        self,
        dataset: str = Path(..., pattern="^(" + "|".join(DATA_DATASETS) + ")$"),
        start: dt.datetime | None = Query(None),
        end: dt.datetime | None = Query(None),
        bucket: str = Query("hour", pattern="^(hour|day)$"),
    ) -> dict[str, Any]:
        """Quality metrics of one dataset over a time range: totals, per-rule counts, trend per bucket."""
        start, end = resolve_range(start, end, dt.timedelta(days=1), dt.timedelta(days=366))
        return await self.health.dataset_quality.remote(dataset, start, end, bucket)

    @api.get("/api/data/quarantine", tags=["quality"])
    async def quarantine(
        self,
        dataset: str = Query(..., pattern="^(" + "|".join(DATA_DATASETS) + ")$"),
        rule: str | None = Query(None, pattern="^[a-z_]{1,40}$"),
        start: dt.date | None = Query(None, description="first batch day"),
        end: dt.date | None = Query(None, description="last batch day"),
        limit: int = Query(100, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """Quarantined rows with their reason and the day of the batch that rejected them."""
        if start and end and start > end:
            raise HTTPException(422, detail="start must not be after end")
        return await self.health.quarantine.remote(dataset, rule, start, end, limit)

    @api.get("/api/data/freshness", tags=["data"])
    async def data_freshness(self) -> list[dict[str, Any]]:
        """How old the newest row of each dataset and source is (ingest time), and its event time."""
        return await self.health.freshness.remote()

    @api.post("/ingest/{dataset}", tags=["ingest"], status_code=202, response_model=IntakeResponse,
              responses={401: {"description": "missing or wrong token"}, 422: {"description": "malformed body"}})
    async def ingest(
        self,
        dataset: str = Path(..., pattern="^(" + "|".join(DATA_DATASETS) + ")$"),
        body: dict[str, Any] = Body(..., examples=[{"source": "telegram-bot", "records": [
            {"platform": "telegram", "post_id": "chan/1", "text": "$SUZLON target 80", "ts": "2026-11-26T05:00:00Z",
             "tickers": ["SUZLON"]}]}]),
        authorization: str | None = Header(None),
    ) -> IntakeResponse:
        """Push records into the same stream the pollers feed (token required). Records with bad
        values are accepted and quarantined by the pipeline; a body of the wrong shape is a 422."""
        import datetime as _dt

        import pyarrow as pa
        from fastapi.exceptions import RequestValidationError
        from pydantic import ValidationError

        self._require_token(authorization)
        ds = DATA_DATASETS[dataset]
        source, records = body.get("source", "webhook"), body.get("records")
        if not isinstance(source, str) or not source.strip() or len(source) > 64:
            raise HTTPException(422, detail="'source' must be a non-empty string of at most 64 characters")
        if not isinstance(records, list) or not records:
            raise HTTPException(422, detail="'records' must be a non-empty list of objects")
        if len(records) > MAX_INTAKE_RECORDS:
            raise HTTPException(422, detail=f"at most {MAX_INTAKE_RECORDS} records per request")
        try:
            rows = [ds.intake_model.model_validate(r).model_dump() for r in records]
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_url=False)) from None
        now = _dt.datetime.now(_dt.timezone.utc)
        for row in rows:
            row.update(source=source.strip(), run_id=None, ingested_at=now)
        table = pa.Table.from_pylist(rows, schema=ds.record_schema)
        [entry_id] = self.streams.publish(source.strip(), {dataset: table}, update_cursor=False)
        return IntakeResponse(dataset=dataset, accepted=len(rows), entry_id=entry_id)

    @api.get("/api/stocks", tags=["stocks"], response_model=list[StockSummary])
    async def stocks(self) -> list[StockSummary]:
        latest = {row["ticker"]: row for row in await self.query.stocks.remote() if row["exchange"] == "NSE"}
        out = []
        for symbol, info in self.symbols.items():
            row = latest.get(symbol, {})
            out.append(StockSummary(ticker=symbol, name=info["name"], exchanges=info["exchanges"].split(";"),
                                    last_close=row.get("last_close"), last_ts=row.get("last_ts"),
                                    bars=row.get("bars", 0)))
        return out

    @api.get("/api/stocks/{ticker}/prices", tags=["stocks"], response_model=PriceResponse)
    async def prices(
        self,
        ticker: str,
        start: dt.datetime | None = Query(None, description="ISO date or date-time; naive means UTC"),
        end: dt.datetime | None = Query(None, description="exclusive; default now"),
        interval: Interval = Query(Interval.MINUTE),
        exchange: str = Query("NSE", pattern="^(NSE|BSE)$"),
        source: str | None = Query(None, pattern="^[a-z0-9_.-]{1,64}$",
                                   description="only this source's bars (default: one bar per time, "
                                               "preferring nse, then yahoo, then replay)"),
    ) -> PriceResponse:
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, DEFAULT_WINDOW[interval], MAX_WINDOW[interval])
        bars = await self.query.prices.remote(info["symbol"], start, end, interval, exchange, source)
        return PriceResponse(ticker=info["symbol"], exchange=exchange, interval=interval, start=start, end=end,
                             bars=bars)

    @api.get("/api/stocks/{ticker}/posts", tags=["stocks"], response_model=PostsResponse)
    async def posts(
        self,
        ticker: str,
        start: dt.datetime | None = Query(None),
        end: dt.datetime | None = Query(None),
        limit: int = Query(100, ge=1, le=1000),
    ) -> PostsResponse:
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, dt.timedelta(days=7), dt.timedelta(days=366))
        posts = await self.query.posts.remote(info["symbol"], start, end, limit)
        return PostsResponse(ticker=info["symbol"], start=start, end=end, posts=posts)


def build_app(settings: Settings) -> serve.Application:
    return ApiIngress.bind(QueryService.bind(settings), HealthService.bind(settings), settings)


def app_builder(args: dict[str, str]) -> serve.Application:
    """`serve deploy serve_config.yaml` entrypoint: settings from the running platform or SENTINEL_*."""
    from sentinel_ray.runtime import settings_for_job

    return build_app(settings_for_job())
