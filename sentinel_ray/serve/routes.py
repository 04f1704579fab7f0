"""The HTTP API: the FastAPI app, its error handling and its routes.

`ApiRoutes` holds the routes as methods and is a Serve ingress class; deployments.py
deploys it as `ApiIngress`, handing it the QueryService and OperationsService handles.
Every warehouse and lake access goes through those handles; the ingress itself holds only
the Redis client the webhook intake publishes with.
"""
# No `from __future__ import annotations` here: Serve rebuilds the FastAPI routes inside
# each replica, where string annotations no longer resolve.
import datetime as dt
import json
import logging
import secrets
from typing import Any

import redis
from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle
from starlette.requests import ClientDisconnect

from sentinel_ray.config import Settings
from sentinel_ray.ingest import webhook
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.market import EXCHANGES, as_utc
from sentinel_ray.records import WarehouseError, utc_now
from sentinel_ray.reference import symbol_table
from sentinel_ray.schemas import DATA_DATASETS, FEATURES_1D, FEATURES_1M
from sentinel_ray.serve.http_metrics import instrument
from sentinel_ray.serve.models import (
    AlertDetail,
    AlertState,
    AlertSummary,
    AlertUpdate,
    AsOfResponse,
    AsOfRow,
    ErrorResponse,
    FeaturesResponse,
    FilingsResponse,
    IntakeRequest,
    IntakeResponse,
    PostsResponse,
    PriceResponse,
    ReadyResponse,
    RiskResponse,
    StockSummary,
    TrendingResponse,
)
from sentinel_ray.serve.queries import DEFAULT_WINDOW, MAX_WINDOW, Interval
from sentinel_ray.storage.redis import connect_redis

log = logging.getLogger(__name__)

_DATASET_PATTERN = "^(" + "|".join(DATA_DATASETS) + ")$"
_EXCHANGE_PATTERN = "^(" + "|".join(EXCHANGES) + ")$"

api = FastAPI(
    title="Sentinel Ray",
    description="Market-surveillance data for NSE/BSE equities: prices, social mentions, pipeline health.",
    version="0.1.0",
)
instrument(api)  # request count and latency per route template, as Ray metrics

_BACKEND_ERRORS: tuple[type[BaseException], ...] = (WarehouseError, redis.RedisError, RayError, ConnectionError,
                                                    TimeoutError)


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Bad input never reaches here (FastAPI answers 4xx); what does is a backend that is
    # down or failing, which the caller should retry rather than read as a bug.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=503, content={"detail": f"backend unavailable: {type(exc).__name__}"})


for _error in _BACKEND_ERRORS:
    api.add_exception_handler(_error, _storage_unavailable)


def _known_symbols() -> dict[str, dict[str, Any]]:
    table = symbol_table()
    return {row["symbol"]: row for row in table.to_pylist()}


def resolve_range(start: dt.datetime | None, end: dt.datetime | None, default: dt.timedelta,
                  maximum: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """Fill a missing end (now) or start (end - default), and refuse empty or oversized ranges."""
    try:
        end = as_utc(end) if end else utc_now()
        start = as_utc(start) if start else end - default
    except (OverflowError, ValueError):  # e.g. year 1 shifted across a time zone
        raise HTTPException(422, detail="start/end out of the supported range") from None
    if start >= end:
        raise HTTPException(422, detail=f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end - start > maximum:
        raise HTTPException(422, detail=f"range of {(end - start).days} days is more than the {maximum.days} "
                                        f"days allowed for this interval; narrow start/end")
    return start, end


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with a 413 once it is known to pass `limit` bytes: by its
    Content-Length before any of it is read, else (chunked) as soon as the bytes read pass it."""
    too_large = HTTPException(413, detail=f"body larger than {limit} bytes: send fewer records per request")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise HTTPException(400, detail="Content-Length must be a number of bytes") from None
        if length > limit:
            raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, detail="the client disconnected before the body ended") from None
    return b"".join(chunks)


# -- surveillance helpers ------------------------------------------------------------
_ALERT_ID_PATTERN = r"^[A-Za-z0-9&._-]{1,80}$"
_MAX_ALERT_UPDATE_BYTES = 16_384
_MAX_ASOF_TICKERS = 100
_FEATURE_DEFAULT_WINDOW = {Interval.MINUTE: dt.timedelta(days=1), Interval.DAY: dt.timedelta(days=90)}


def _reasons(text: str) -> list[dict[str, Any]]:
    try:
        reasons = json.loads(text or "[]")
    except ValueError:
        return []
    return reasons if isinstance(reasons, list) else []


def _alert_summary(row: dict[str, Any]) -> AlertSummary:
    return AlertSummary(**{k: row[k] for k in AlertSummary.model_fields if k in row and k not in ("reasons", "posts")},
                        reasons=_reasons(row["reasons"]), posts=len(row.get("post_ids") or []))


def _alert_detail(alert_id: str, row: dict[str, Any] | None) -> AlertDetail:
    """The alert row with its events (`queries.alert_with_events`) as the response, or a 404."""
    if row is None:
        raise HTTPException(404, detail=f"no alert {alert_id!r} (see GET /api/alerts)")
    return AlertDetail(**_alert_summary(row).model_dump(), events=row["events"],
                       evidence={"start": row["evidence_start"], "end": row["evidence_end"],
                                 "post_ids": row["post_ids"]})


def _parse_alert_update(raw: bytes) -> AlertUpdate:
    """The body as an AlertUpdate, or a 422 naming the fields (never echoing the values)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPException(422, detail="the body is not JSON: send {\"state\": ..., \"disposition\": ...}") from None
    try:
        return AlertUpdate.model_validate(body)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors())
        raise HTTPException(422, detail=problems) from None


# The ingress is applied here, where the routes are defined, not in deployments.py: a
# replica imports this module to unpickle the route methods, and the import must turn
# them into class-based views again (else FastAPI reads `self` as a query parameter).
@serve.ingress(api)
class ApiRoutes:
    def __init__(self, query: DeploymentHandle, operations: DeploymentHandle, settings: Settings) -> None:
        self.query = query
        self.operations = operations
        self.symbols = _known_symbols()
        self.api_token = settings.api_token.get_secret_value() if settings.api_token else ""
        self.streams = StreamStore(connect_redis(settings.resolved_redis_url), settings.redis_key_prefix)
        self.max_body_bytes: int = settings.webhook_max_body_bytes

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

    # -- health ------------------------------------------------------------------
    @api.get("/health", tags=["health"])
    async def health_check(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready", tags=["health"], response_model=ReadyResponse,
             responses={503: {"model": ReadyResponse, "description": "a dependency is down"}})
    async def ready(self) -> JSONResponse:
        checks = await self.operations.ready.remote()
        ok = all(checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks})

    # -- pipelines ---------------------------------------------------------------
    @api.get("/api/data/pipelines", tags=["data"])
    async def pipelines(self, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await self.operations.pipelines.remote(limit)

    @api.get("/api/data/pipelines/health", tags=["data"])
    async def pipelines_health(self, hours: int = Query(24, ge=1, le=24 * 90)) -> list[dict[str, Any]]:
        """Per pipeline: runs, success rate, rows, last run, last error and a status, from pipeline_runs."""
        return await self.operations.pipelines_health.remote(hours)

    @api.get("/api/data/pipelines/{name}/runs", tags=["data"])
    async def pipeline_runs(self, name: str = Path(..., pattern="^[a-z_]{1,40}$"),
                            limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await self.operations.pipeline_runs.remote(name, limit)

    # -- data quality and freshness ----------------------------------------------
    @api.get("/api/data/quality", tags=["quality"])
    async def quality(self, hours: int = Query(24, ge=1, le=24 * 90)) -> dict[str, Any]:
        """Status per dataset and source, rule counts, completeness, NSE/Yahoo agreement, alerts."""
        return await self.operations.quality.remote(hours)

    @api.get("/api/data/quality/{dataset}", tags=["quality"])
    async def dataset_quality(
        self,
        dataset: str = Path(..., pattern=_DATASET_PATTERN),
        start: dt.datetime | None = Query(None),
        end: dt.datetime | None = Query(None),
        bucket: str = Query("hour", pattern="^(hour|day)$"),
    ) -> dict[str, Any]:
        """Quality metrics of one dataset over a time range: totals, per-rule counts, trend per bucket."""
        start, end = resolve_range(start, end, dt.timedelta(days=1), dt.timedelta(days=366))
        return await self.operations.dataset_quality.remote(dataset, start, end, bucket)

    @api.get("/api/data/quarantine", tags=["quality"])
    async def quarantine(
        self,
        dataset: str = Query(..., pattern=_DATASET_PATTERN),
        rule: str | None = Query(None, pattern="^[a-z_]{1,40}$"),
        start: dt.date | None = Query(None, description="first batch day"),
        end: dt.date | None = Query(None, description="last batch day"),
        limit: int = Query(100, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """Quarantined rows with their reason and the day of the batch that rejected them."""
        if start and end and start > end:
            raise HTTPException(422, detail="start must not be after end")
        return await self.operations.quarantine.remote(dataset, rule, start, end, limit)

    @api.get("/api/data/freshness", tags=["data"])
    async def data_freshness(self) -> list[dict[str, Any]]:
        """How old the newest row of each dataset and source is (ingest time), and its event time."""
        return await self.operations.freshness.remote()

    # -- webhook intake ----------------------------------------------------------
    @api.post("/ingest/{dataset}", tags=["ingest"], status_code=202, response_model=IntakeResponse,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": IntakeRequest.model_json_schema(),
                  "example": {"source": "telegram-bot", "records": [
                      {"platform": "telegram", "post_id": "chan/1", "text": "$SUZLON target 80",
                       "ts": "2026-11-26T05:00:00Z", "tickers": ["SUZLON"]}]}}}}},
              responses={status: {"model": ErrorResponse, "description": description} for status, description in (
                  (401, "missing or wrong token"), (413, "body larger than the configured maximum"),
                  (415, "body is not JSON"), (422, "malformed body: the record and field are named"),
                  (503, "write endpoints disabled, or the stream unavailable"))})
    async def ingest(
        self,
        request: Request,
        dataset: str = Path(..., description="prices, posts or filings",
                            json_schema_extra={"enum": list(DATA_DATASETS)}),
        authorization: str | None = Header(None),
    ) -> IntakeResponse:
        """Push records into the same stream the pollers feed (token required). Records with
        implausible values are accepted and quarantined by the pipeline; a body of the wrong
        shape, or a value that cannot be stored (wrong type, NaN, lone surrogate), is a 422
        naming the record and field; a body over the configured size is a 413."""
        self._require_token(authorization)
        if dataset not in DATA_DATASETS:
            raise HTTPException(422, detail=f"unknown dataset {dataset[:40]!r}: one of {', '.join(DATA_DATASETS)}")
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise HTTPException(415, detail="send the body as JSON (Content-Type: application/json)")
        raw = await _read_body(request, self.max_body_bytes)
        try:
            source, records = webhook.parse_body(raw)
            intake = webhook.publish_records(self.streams, dataset, source, records)
        except webhook.IntakeError as e:
            raise HTTPException(e.status_code, detail=str(e)) from None
        return IntakeResponse(dataset=intake.dataset, accepted=intake.accepted, entry_id=intake.entry_id)

    # -- stocks ------------------------------------------------------------------
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
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
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

    # -- surveillance: alerts ----------------------------------------------------
    @api.get("/api/alerts", tags=["alerts"], response_model=list[AlertSummary],
             responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
    async def alerts(
        self,
        state: AlertState | None = Query(None),
        ticker: str | None = Query(None, max_length=40),
        start: dt.datetime | None = Query(None, description="episodes still running at or after this (default end - 30 days)"),
        end: dt.datetime | None = Query(None, description="episodes opened before this (default now)"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[AlertSummary]:
        """Alerts whose episode overlaps [start, end), newest first."""
        symbol = self._symbol(ticker)["symbol"] if ticker else None
        start, end = resolve_range(start, end, dt.timedelta(days=30), dt.timedelta(days=3660))
        rows = await self.query.alerts.remote(state.value if state else None, symbol, start, end, limit)
        return [_alert_summary(row) for row in rows]

    @api.get("/api/alerts/{alert_id}", tags=["alerts"], response_model=AlertDetail,
             responses={404: {"model": ErrorResponse}})
    async def alert(self, alert_id: str = Path(..., pattern=_ALERT_ID_PATTERN)) -> AlertDetail:
        """One alert: reasons at the peak, evidence (bar range and post ids) and its audit trail."""
        return _alert_detail(alert_id, await self.query.alert.remote(alert_id))

    @api.post("/api/alerts/{alert_id}", tags=["alerts"], response_model=AlertDetail,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": AlertUpdate.model_json_schema(),
                  "example": {"state": "closed", "disposition": "true_positive", "actor": "asha",
                              "note": "coordinated Telegram push, volume 9x"}}}}},
              responses={status: {"model": ErrorResponse, "description": description} for status, description in (
                  (401, "missing or wrong token"), (404, "no such alert"),
                  (409, "the change is not allowed from the alert's state, or changes nothing"),
                  (422, "malformed body"), (503, "write endpoints disabled, or the warehouse unavailable"))})
    async def update_alert(self, request: Request, alert_id: str = Path(..., pattern=_ALERT_ID_PATTERN),
                           authorization: str | None = Header(None)) -> AlertDetail:
        """Acknowledge, close (with a disposition), reopen or relabel an alert (token required);
        the change is recorded in alert_events with who made it."""
        self._require_token(authorization)  # before the body is read: no token, no parsing
        update = _parse_alert_update(await _read_body(request, _MAX_ALERT_UPDATE_BYTES))
        row, refused = await self.query.update_alert.remote(alert_id, update.state.value if update.state else None,
                                                             update.disposition.value if update.disposition else None,
                                                             update.actor, update.note)
        if refused is not None:
            raise HTTPException(409, detail=refused)
        return _alert_detail(alert_id, row)

    # -- surveillance: features, risk, trending, filings -------------------------
    @api.get("/api/stocks/{ticker}/features", tags=["stocks"], response_model=FeaturesResponse)
    async def features(
        self,
        ticker: str,
        start: dt.datetime | None = Query(None),
        end: dt.datetime | None = Query(None, description="exclusive; default now"),
        interval: str = Query("1m", pattern="^(1m|1d)$", description="1m: per bar; 1d: per session day"),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
    ) -> FeaturesResponse:
        """Point-in-time features of a ticker (features_1m or features_1d)."""
        info = self._symbol(ticker)
        iv = Interval(interval)
        start, end = resolve_range(start, end, _FEATURE_DEFAULT_WINDOW[iv], MAX_WINDOW[iv])
        ds = FEATURES_1M if iv is Interval.MINUTE else FEATURES_1D
        rows = await self.query.features.remote(info["symbol"], start, end, iv, exchange, ds.column_names)
        return FeaturesResponse(ticker=info["symbol"], exchange=exchange, interval=iv, start=start, end=end,
                                rows=[ds.model(**r) for r in rows])

    @api.get("/api/stocks/{ticker}/risk", tags=["stocks"], response_model=RiskResponse,
             responses={404: {"model": ErrorResponse}})
    async def risk(self, ticker: str, exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN)) -> RiskResponse:
        """The latest risk score of a ticker and the reasons that drove it."""
        info = self._symbol(ticker)
        row = await self.query.risk.remote(info["symbol"], exchange)
        if row is None:
            raise HTTPException(404, detail=f"no risk score for {info['symbol']} on {exchange} yet: detection has "
                                            f"not run over its features")
        return RiskResponse(**{**row, "reasons": _reasons(row["reasons"])})

    @api.get("/api/features/asof", tags=["features"], response_model=AsOfResponse)
    async def features_asof(
        self,
        tickers: str = Query(..., max_length=4000, description="comma-separated symbols, at most 100"),
        ts: dt.datetime = Query(..., description="the as-of time; naive means UTC"),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
    ) -> AsOfResponse:
        """Point-in-time 1m features per ticker as known at `ts` (the newest bar closed by
        then, within 7 days): for building training sets without look-ahead."""
        names = [t.strip().upper() for t in tickers.split(",") if t.strip()]
        if not names:
            raise HTTPException(422, detail="tickers: give at least one symbol")
        if len(names) > _MAX_ASOF_TICKERS:
            raise HTTPException(422, detail=f"tickers: at most {_MAX_ASOF_TICKERS} per request, got {len(names)}")
        unknown = [n for n in dict.fromkeys(names) if n not in self.symbols]
        if unknown:
            raise HTTPException(404, detail=f"unknown ticker(s): {', '.join(u[:40] for u in unknown[:10])}")
        names = list(dict.fromkeys(names))
        try:
            asof = as_utc(ts)
        except (OverflowError, ValueError):
            raise HTTPException(422, detail="ts out of the supported range") from None
        rows = await self.query.features_asof.remote(names, asof, exchange, FEATURES_1M.column_names)
        found = {r["ticker"]: r for r in rows}
        return AsOfResponse(ts=asof, exchange=exchange, rows=[
            AsOfRow(ticker=n, features=FEATURES_1M.model(**found[n]) if n in found else None) for n in names])

    @api.get("/api/trending", tags=["features"], response_model=TrendingResponse)
    async def trending(
        self,
        hours: int = Query(24, ge=1, le=24 * 31),
        end: dt.datetime | None = Query(None, description="end of the window (default now)"),
        limit: int = Query(20, ge=1, le=500),
    ) -> TrendingResponse:
        """Tickers by their highest chatter z-score (posts in 60 min vs their trailing days) in the window."""
        start, end = resolve_range(None, end, dt.timedelta(hours=hours), dt.timedelta(hours=hours))
        rows = await self.query.trending.remote(start, end, limit)
        return TrendingResponse(start=start, end=end, tickers=rows)

    @api.get("/api/stocks/{ticker}/filings", tags=["stocks"], response_model=FilingsResponse)
    async def filings(
        self,
        ticker: str,
        start: dt.datetime | None = Query(None),
        end: dt.datetime | None = Query(None),
        limit: int = Query(100, ge=1, le=1000),
    ) -> FilingsResponse:
        """Corporate announcements of a ticker, newest first."""
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, dt.timedelta(days=90), dt.timedelta(days=3660))
        rows = await self.query.filings.remote(info["symbol"], start, end, limit)
        return FilingsResponse(ticker=info["symbol"], start=start, end=end, filings=rows)
