"""The HTTP API: the FastAPI app, its error handling and its routes.

`ApiRoutes` holds the routes as methods and is a Serve ingress class; deployments.py
deploys it as `ApiIngress`, handing it the OperationsService handle. Data reads run in the
ingress replica itself (`reads.WarehouseReads`: the latest-value cache, then warehouse
queries in threads), one hop fewer than through a query deployment; operations (readiness,
runs, quality, quarantine, lineage) go through the handle. The ingress also holds what the
webhook intake writes with: the Redis client it publishes with and the lake whose raw zone
keeps each pushed body.

The contract OpenAPI states, and tests/serve/test_openapi_contract.py holds it to:
- every time in a response is RFC 3339 with its offset, in UTC: what the backends answer
  passes through `_utc` (the warehouse hands back naive UTC times) before it is a response;
- every error, ours, FastAPI's parameter checks and Starlette's unknown path or method, has
  one body, `ErrorResponse` ({"detail": "<message naming the parameter>"}), and every status
  a route can answer is listed in its `responses`;
- a time parameter accepts what its schema says (models.QueryTime) and nothing else.
"""
# No `from __future__ import annotations` here: Serve rebuilds the FastAPI routes inside
# each replica, where string annotations no longer resolve.
import datetime as dt
import json
import logging
import re
import secrets
from typing import Any, Awaitable

import redis
from fastapi import FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from sentinel_ray.config import Settings
from sentinel_ray.ingest import webhook
from sentinel_ray.ingest.streams import StreamStore
from sentinel_ray.market import EXCHANGES, as_utc
from sentinel_ray.records import WarehouseError, utc_now
from sentinel_ray.reference import symbol_table
from sentinel_ray.schemas import DATA_DATASETS, FEATURES_1D, FEATURES_1M
from sentinel_ray.serve import pages
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
    IntakeResponse,
    PostsResponse,
    PriceResponse,
    QueryDay,
    QueryTime,
    ReadyResponse,
    RecordsRefused,
    RiskHistoryResponse,
    RiskResponse,
    StockSummary,
    Tickers,
    TrendingResponse,
    check_records,
    intake_request_model,
)
from sentinel_ray.serve.queries import DEFAULT_WINDOW, MAX_WINDOW, Interval
from sentinel_ray.serve.reads import WarehouseReads
from sentinel_ray.serve.response_cache import ResponseCache, ResponseCacheMiddleware
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.redis import connect_redis

log = logging.getLogger(__name__)

_DATASET_PATTERN = "^(" + "|".join(DATA_DATASETS) + ")$"
_EXCHANGE_PATTERN = "^(" + "|".join(EXCHANGES) + ")$"


class _Api(FastAPI):
    """FastAPI, but its OpenAPI leaves out the `"example": {}` every parameter gets in a Serve
    replica: the routes reach it pickled, and FastAPI tells an unset example by the identity of
    its `_Unset` sentinel, which a copy does not keep."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            spec = super().openapi()
            for item in spec.get("paths", {}).values():
                for operation in item.values():
                    for parameter in operation.get("parameters", []):
                        if parameter.get("example") == {}:
                            del parameter["example"]
            _exact_int64_bounds(spec)
        return self.openapi_schema  # type: ignore[return-value]


_INT64 = {"maximum": 2**63 - 1, "minimum": -(2**63)}


def _exact_int64_bounds(node: Any) -> None:
    """FastAPI's OpenAPI model holds bounds as floats, and int64's round to 2**63 there, which
    would document 2**63 as accepted: put the exact integers back."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key, bound in _INT64.items():
                if isinstance(node.get(key), float) and node[key] == float(bound):
                    node[key] = bound
        for value in node.values():
            _exact_int64_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_int64_bounds(value)


api = _Api(
    title="Sentinel Ray",
    description="Market-surveillance data for NSE/BSE equities: prices, social mentions, pipeline health.",
    version="0.1.0",
    # FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN: blank with no internet.
    # pages.router serves /docs from the package instead, with the dashboard page at /.
    docs_url=None,
    redoc_url=None,
)
# before @serve.ingress below, which freezes a copy of the app with the routes it has then
api.include_router(pages.router)
RESPONSES = ResponseCache()  # read responses kept until the data changes (per replica)
api.add_middleware(ResponseCacheMiddleware, cache=RESPONSES)
instrument(api)  # request count and latency per route template, as Ray metrics (outermost: hits count too)

_BACKEND_ERRORS: tuple[type[BaseException], ...] = (WarehouseError, redis.RedisError, RayError, ConnectionError,
                                                    TimeoutError)


# -- one error body for every error -------------------------------------------------
def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=ErrorResponse(detail=detail).model_dump(), headers=headers)


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Bad input never reaches here (FastAPI answers 4xx); what does is a backend that is
    # down or failing, which the caller should retry rather than read as a bug.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(503, f"backend unavailable: {type(exc).__name__}")


_PARAMETER_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}


def validation_message(errors: Any) -> str:
    """FastAPI's parameter errors as one readable line, each naming its parameter
    ("query parameter limit: Input should be greater than or equal to 1"); no value is echoed."""
    problems = []
    for err in list(errors)[:10]:
        loc = [str(part) for part in err.get("loc", ())]
        place, names = (loc[0], loc[1:]) if loc and loc[0] in (*_PARAMETER_PLACES, "body") else ("", loc)
        where = " ".join(filter(None, (_PARAMETER_PLACES.get(place, place), ".".join(names))))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "required"
        problems.append(f"{where}: {message}"[:300] if where else message[:300])
    return "; ".join(problems) or "invalid request"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error(422, validation_message(exc.errors()))


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Our HTTPExceptions and Starlette's own (unknown path, method not allowed) as ErrorResponse."""
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":  # Starlette's: no route has this path
        detail = "no such path: see /docs for the API's routes"
    elif exc.status_code == 405:
        # Starlette names only the first route of the path; the path may have several (GET and POST)
        allowed = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
        allowed |= _documented_methods(request.app.openapi(), request.url.path)
        headers["Allow"] = ", ".join(sorted(allowed))
        detail = f"method {request.method[:20]} not allowed here; allowed: {headers['Allow'] or 'none'}"
    return _error(exc.status_code, detail, headers or None)


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _documented_methods(spec: dict[str, Any], path: str) -> set[str]:
    """The methods OpenAPI documents for the paths whose template `path` fits."""
    methods: set[str] = set()
    for template, item in spec.get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            methods.update(m.upper() for m in item if m in _HTTP_METHODS)
    return methods


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}): the server log has the details")


for _error_type in _BACKEND_ERRORS:
    api.add_exception_handler(_error_type, _storage_unavailable)
api.add_exception_handler(RequestValidationError, _invalid_request)
api.add_exception_handler(StarletteHTTPException, _http_error)
api.add_exception_handler(Exception, _internal_error)

# What each error status of a route means, for its `responses` (bodies: ErrorResponse).
_ERROR_MEANINGS = {
    400: "the body could not be read (Content-Length not a number, the client went away)",
    401: "missing or wrong token: send 'Authorization: Bearer <token>'",
    404: "unknown ticker or alert",
    409: "the change is not allowed from the alert's state, or changes nothing",
    413: "body larger than the configured maximum",
    415: "body is not JSON",
    422: "a malformed or out-of-range parameter or body, named in the message",
    503: "a backend (warehouse, Redis, lake or a Serve replica) is unavailable",
}


def errors(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """The `responses` entries of a route's error statuses; `meanings` (`e503=...`) override the defaults."""
    return {status: {"model": ErrorResponse, "description": meanings.get(f"e{status}", _ERROR_MEANINGS[status])}
            for status in statuses}


def _utc(value: Any) -> Any:
    """`value` with every datetime in it aware UTC: the one place the API makes the warehouse's
    naive UTC times say so, for typed and untyped (dict) responses alike."""
    if isinstance(value, dt.datetime):
        return as_utc(value)
    if isinstance(value, dict):
        return {k: _utc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utc(v) for v in value]
    return value


async def _answer(call: Awaitable[Any]) -> Any:
    """A backend's answer, its times aware UTC."""
    return _utc(await call)


def _inline_schema(model: type) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` inlined: a request body documented through
    openapi_extra has no components section of its own for `#/$defs/...` to point into."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve({**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node
    return resolve(schema)


def _known_symbols() -> dict[str, dict[str, Any]]:
    table = symbol_table()
    return {row["symbol"]: row for row in table.to_pylist()}


def resolve_range(start: dt.datetime | None, end: dt.datetime | None, default: dt.timedelta,
                  maximum: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """Fill a missing end (now) or start (end - default), and refuse empty or oversized ranges."""
    try:
        end = as_utc(end) if end else utc_now()
        start = as_utc(start) if start else end - default
    except (OverflowError, ValueError):  # e.g. year 1 shifted across a time zone, or year 1 minus the default
        raise HTTPException(422, detail="start/end out of the supported range (years 1 to 9999 in UTC)") from None
    if start >= end:
        raise HTTPException(422, detail=f"start ({start.isoformat()}) must be before end ({end.isoformat()})")
    if end - start > maximum:
        raise HTTPException(422, detail=f"range of {(end - start).days} days is more than the {maximum.days} "
                                        f"days allowed for this interval; narrow start/end")
    return start, end


# The warehouse stores times of 1900-01-01 .. 2299-12-31 (DateTime64) and nothing beyond, so
# a bound outside is moved to the edge before it is sent: the same rows, and no refusal of
# a well-formed time (ClickHouse cannot even parse a parameter before the year 1000).
_STORED_FROM = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
_STORED_UNTIL = dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc)


def stored(*moments: dt.datetime) -> tuple[dt.datetime, ...]:
    """`moments` moved into the range of times the warehouse can hold."""
    return tuple(min(max(m, _STORED_FROM), _STORED_UNTIL) for m in moments)


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
    row = _utc(row)
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


def _intake_route(dataset: str, example: dict[str, Any]) -> dict[str, Any]:
    """The route arguments of POST /ingest/<dataset>: its body schema, example and statuses."""
    return {"status_code": 202, "response_model": IntakeResponse, "openapi_extra": {"requestBody": {
        "required": True, "content": {"application/json": {
            "schema": _inline_schema(intake_request_model(dataset)),
            "example": {"source": "my-bot", "records": [example]}}}}},
        "responses": errors(400, 401, 413, 415, 422, 503,
                            e422="malformed body, or a value that cannot be stored: the record and field are named",
                            e503="write endpoints disabled (no token configured), or the stream unavailable")}


# Documents the write routes' bearer token as a security scheme; the check itself is
# `_require_token`'s (a missing token is our 401, not FastAPI's 403).
_bearer = HTTPBearer(auto_error=False, description="SENTINEL_API_TOKEN of the server",
                     scheme_name="bearerToken")


# The ingress is applied here, where the routes are defined, not in deployments.py: a
# replica imports this module to unpickle the route methods, and the import must turn
# them into class-based views again (else FastAPI reads `self` as a query parameter).
@serve.ingress(api)
class ApiRoutes:
    def __init__(self, operations: DeploymentHandle, settings: Settings) -> None:
        self.query = WarehouseReads(settings)  # in this replica: no hop to a query deployment
        RESPONSES.version_source = self.query.cache_version
        self.operations = operations
        self.symbols = _known_symbols()
        # /api/stocks rows of symbols with nothing stored, rendered once: the route is re-read at
        # every write (its kept answer retires), and building ~2,000 models for it each time held
        # the replica's event loop for ~15 ms, stalling every other request meanwhile
        self._stocks_without_data = {symbol: self._stock_summary(symbol, info, {}).model_dump_json().encode()
                                     for symbol, info in self.symbols.items()}
        self.api_token = settings.api_token.get_secret_value() if settings.api_token else ""
        self.streams = StreamStore(connect_redis(settings.resolved_redis_url), settings.redis_key_prefix)
        self.lake = Lake(settings.resolved_lake_uri)  # pushed bodies are kept in the raw zone
        self.max_body_bytes: int = settings.webhook_max_body_bytes

    def _require_token(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if not self.api_token:
            raise HTTPException(503, detail="write endpoints are disabled: set SENTINEL_API_TOKEN on the server")
        given = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else ""
        if not given or not secrets.compare_digest(given.encode(), self.api_token.encode()):
            raise HTTPException(401, detail="missing or wrong token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    def _symbol(self, ticker: str) -> dict[str, Any]:
        symbol = ticker.strip().upper()
        if symbol not in self.symbols:
            raise HTTPException(404, detail=f"unknown ticker {ticker[:40]!r}: not an NSE/BSE symbol this platform "
                                            f"tracks (see GET /api/stocks?all=true)")
        return self.symbols[symbol]

    # -- health ------------------------------------------------------------------
    @api.get("/health", tags=["health"])
    async def health_check(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/ready", tags=["health"], response_model=ReadyResponse,
             responses={503: {"model": ReadyResponse, "description": "a dependency is down (false in `checks`)"}})
    async def ready(self) -> JSONResponse:
        try:
            checks = await self.operations.ready.remote()
        except _BACKEND_ERRORS:  # the service that runs the checks did not answer: say so in the same shape
            log.warning("readiness checks failed", exc_info=True)
            checks = {"operations_service": False}
        ok = all(checks.values())
        return JSONResponse(status_code=200 if ok else 503, content={"ready": ok, "checks": checks})

    # -- pipelines ---------------------------------------------------------------
    @api.get("/api/data/pipelines", tags=["data"], responses=errors(422, 503))
    async def pipelines(self, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await _answer(self.operations.pipelines.remote(limit))

    @api.get("/api/data/pipelines/health", tags=["data"], responses=errors(422, 503))
    async def pipelines_health(self, hours: int = Query(24, ge=1, le=24 * 90)) -> list[dict[str, Any]]:
        """Per pipeline: runs, success rate, rows, last run, last error and a status, from pipeline_runs."""
        return await _answer(self.operations.pipelines_health.remote(hours))

    @api.get("/api/data/pipelines/{name}/runs", tags=["data"], responses=errors(422, 503))
    async def pipeline_runs(self, name: str = Path(..., pattern="^[a-z_]{1,40}$"),
                            limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await _answer(self.operations.pipeline_runs.remote(name, limit))

    # -- data quality and freshness ----------------------------------------------
    @api.get("/api/data/quality", tags=["quality"], responses=errors(422, 503))
    async def quality(self, hours: int = Query(24, ge=1, le=24 * 90)) -> dict[str, Any]:
        """Status per dataset and source, rule counts, completeness, NSE/Yahoo agreement, alerts."""
        return await _answer(self.operations.quality.remote(hours))

    @api.get("/api/data/quality/{dataset}", tags=["quality"], responses=errors(422, 503))
    async def dataset_quality(
        self,
        dataset: str = Path(..., pattern=_DATASET_PATTERN),
        start: QueryTime | None = Query(None, description="default end - 1 day"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 366 days after start"),
        bucket: str = Query("hour", pattern="^(hour|day)$"),
    ) -> dict[str, Any]:
        """Quality metrics of one dataset over a time range: totals, per-rule counts, trend per bucket."""
        start, end = resolve_range(start, end, dt.timedelta(days=1), dt.timedelta(days=366))
        return await _answer(self.operations.dataset_quality.remote(dataset, *stored(start, end), bucket))

    @api.get("/api/data/quarantine", tags=["quality"], responses=errors(422, 503))
    async def quarantine(
        self,
        dataset: str = Query(..., pattern=_DATASET_PATTERN),
        rule: str | None = Query(None, pattern="^[a-z_]{1,40}$"),
        start: QueryDay | None = Query(None, description="first batch day"),
        end: QueryDay | None = Query(None, description="last batch day"),
        limit: int = Query(100, ge=1, le=5000),
    ) -> list[dict[str, Any]]:
        """Quarantined rows with their reason and the day of the batch that rejected them."""
        if start and end and start > end:
            raise HTTPException(422, detail=f"start ({start.isoformat()}) must not be after end ({end.isoformat()})")
        return await _answer(self.operations.quarantine.remote(dataset, rule, start, end, limit))

    @api.get("/api/lineage/{dataset}", tags=["data"], responses=errors(404, 422, 503))
    async def lineage(
        self,
        dataset: str = Path(..., pattern=_DATASET_PATTERN),
        key: list[str] = Query(..., min_length=1, max_length=8, description=(
            "the row's natural key, one `key=` per column in order: prices ticker, exchange, interval, source, "
            "ts (RFC 3339); posts platform, post_id; filings exchange, filing_id")),
    ) -> dict[str, Any]:
        """Where a stored row came from: the raw payload it was read from (request, arrival, body and
        the record at its position, read again by today's parser), the run that wrote it (parameters
        and the rules version it applied) and its quarantine history."""
        found, status, why = await _answer(self.operations.lineage.remote(dataset, key))
        if found is None:
            raise HTTPException(status, detail=why)
        return found

    @api.get("/api/data/freshness", tags=["data"], responses=errors(503))
    async def data_freshness(self) -> list[dict[str, Any]]:
        """How old the newest row of each dataset and source is (ingest time), and its event time."""
        return await _answer(self.operations.freshness.remote())

    # -- webhook intake ----------------------------------------------------------
    # One documented route per dataset, each with its own record schema (a path parameter could
    # not say which records fit which dataset); `/ingest/{dataset}` answers the rest with a 422.
    @api.post("/ingest/prices", tags=["ingest"], **_intake_route("prices", {
        "ticker": "SUZLON", "exchange": "NSE", "interval": "1m", "ts": "2026-11-26T04:00:00Z", "open": 61.5,
        "high": 62.0, "low": 61.2, "close": 61.9, "volume": 120500}))
    async def ingest_prices(self, request: Request,
                            credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> IntakeResponse:
        """Push price bars into the stream the pollers feed (token required)."""
        return await self._ingest("prices", request, credentials)

    @api.post("/ingest/posts", tags=["ingest"], **_intake_route("posts", {
        "platform": "telegram", "post_id": "chan/1", "text": "$SUZLON target 80", "ts": "2026-11-26T05:00:00Z",
        "tickers": ["SUZLON"]}))
    async def ingest_posts(self, request: Request,
                           credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> IntakeResponse:
        """Push social posts into the stream the pollers feed (token required); posts without
        `tickers` get them found in their text by the pipeline."""
        return await self._ingest("posts", request, credentials)

    @api.post("/ingest/filings", tags=["ingest"], **_intake_route("filings", {
        "exchange": "NSE", "filing_id": "nse-2026-1", "ticker": "SUZLON", "company": "Suzlon Energy Ltd",
        "subject": "Board meeting", "ts": "2026-11-26T06:00:00Z"}))
    async def ingest_filings(self, request: Request,
                             credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> IntakeResponse:
        """Push corporate announcements into the stream the pollers feed (token required)."""
        return await self._ingest("filings", request, credentials)

    @api.post("/ingest/{dataset}", include_in_schema=False)
    async def ingest_unknown(self, dataset: str,
                             credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> None:
        self._require_token(credentials)
        raise HTTPException(422, detail=f"unknown dataset {dataset[:40]!r}: one of {', '.join(DATA_DATASETS)}")

    async def _ingest(self, dataset: str, request: Request,
                      credentials: HTTPAuthorizationCredentials | None) -> IntakeResponse:
        """Records with implausible values are accepted and quarantined by the pipeline; a body of
        the wrong shape, or a value that cannot be stored (wrong type, NaN, lone surrogate), is a
        422 naming the record and field; a body over the configured size is a 413."""
        self._require_token(credentials)
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise HTTPException(415, detail="send the body as JSON (Content-Type: application/json)")
        raw = await _read_body(request, self.max_body_bytes)
        try:
            source, records = webhook.parse_body(raw)
            check_records(dataset, records)
            intake = webhook.publish_records(self.streams, dataset, source, records, body=raw, lake=self.lake)
        except webhook.IntakeError as e:
            raise HTTPException(e.status_code, detail=str(e)) from None
        except RecordsRefused as e:
            raise HTTPException(422, detail=str(e)) from None
        return IntakeResponse(dataset=intake.dataset, accepted=intake.accepted, entry_id=intake.entry_id)

    # -- stocks ------------------------------------------------------------------
    @api.get("/api/stocks", tags=["stocks"], response_model=list[StockSummary], responses=errors(422, 503))
    async def stocks(
        self,
        all_symbols: bool = Query(False, alias="all", description="every tracked symbol (~2,000), also those with "
                                                                   "nothing stored yet"),
    ) -> Response:
        """The symbols with stored data (bars, a risk score or alerts) and their NSE summary:
        bars stored, the newest bar, the latest risk score and the open alerts (from the
        latest-value cache, kept as rows are stored). `all=true` lists every tracked symbol."""
        latest = await _answer(self.query.latest())
        rows = []
        for symbol, info in self.symbols.items():
            row = latest.get((symbol, "NSE"))
            if row:
                rows.append(self._stock_summary(symbol, info, row).model_dump_json().encode())
            elif all_symbols:
                rows.append(self._stocks_without_data[symbol])
        # the bytes FastAPI would make of list[StockSummary] (it dumps with the same pydantic
        # serializer), built from one model per symbol with data instead of one per symbol
        return Response(b"[" + b",".join(rows) + b"]", media_type="application/json")

    @staticmethod
    def _stock_summary(symbol: str, info: dict[str, Any], row: dict[str, Any]) -> StockSummary:
        risk = row.get("risk") or {}
        return StockSummary(ticker=symbol, name=info["name"], exchanges=info["exchanges"].split(";"),
                            last_close=row.get("last_close"), last_ts=row.get("last_ts"), bars=row.get("bars", 0),
                            risk_score=risk.get("score"), risk_ts=risk.get("ts"), open_alerts=row.get("open_alerts"))

    @api.get("/api/stocks/{ticker}/prices", tags=["stocks"], response_model=PriceResponse,
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def prices(
        self,
        ticker: str,
        start: QueryTime | None = Query(None, description="default end - 7 d (1m), 90 d (1h) or 2 y (1d)"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 31 d (1m), 366 d (1h) "
                                                        "or 10 y (1d) after start"),
        interval: Interval = Query(Interval.MINUTE),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
        source: str | None = Query(None, pattern="^[a-z0-9_.-]{1,64}$",
                                   description="only this source's bars (default: one bar per time, "
                                               "preferring nse, then yahoo, then replay)"),
    ) -> PriceResponse:
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, DEFAULT_WINDOW[interval], MAX_WINDOW[interval])
        bars = await _answer(self.query.prices(info["symbol"], *stored(start, end), interval, exchange,
                                                      source))
        return PriceResponse(ticker=info["symbol"], exchange=exchange, interval=interval, start=start, end=end,
                             bars=bars)

    @api.get("/api/stocks/{ticker}/posts", tags=["stocks"], response_model=PostsResponse,
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def posts(
        self,
        ticker: str,
        start: QueryTime | None = Query(None, description="default end - 7 days"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 366 days after start"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> PostsResponse:
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, dt.timedelta(days=7), dt.timedelta(days=366))
        posts = await _answer(self.query.posts(info["symbol"], *stored(start, end), limit))
        return PostsResponse(ticker=info["symbol"], start=start, end=end, posts=posts)

    # -- surveillance: alerts ----------------------------------------------------
    @api.get("/api/alerts", tags=["alerts"], response_model=list[AlertSummary],
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def alerts(
        self,
        state: AlertState | None = Query(None),
        ticker: str | None = Query(None, max_length=40),
        start: QueryTime | None = Query(None, description="episodes still running at or after this "
                                                          "(default end - 30 days)"),
        end: QueryTime | None = Query(None, description="episodes opened before this (default now; at most "
                                                        "3660 days after start)"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[AlertSummary]:
        """Alerts whose episode overlaps [start, end), newest first."""
        symbol = self._symbol(ticker)["symbol"] if ticker else None
        start, end = resolve_range(start, end, dt.timedelta(days=30), dt.timedelta(days=3660))
        rows = await _answer(self.query.alerts(state.value if state else None, symbol, *stored(start, end),
                                                      limit))
        return [_alert_summary(row) for row in rows]

    @api.get("/api/alerts/{alert_id}", tags=["alerts"], response_model=AlertDetail,
             responses=errors(404, 422, 503, e404="no such alert", e422="not an alert id"))
    async def alert(self, alert_id: str = Path(..., pattern=_ALERT_ID_PATTERN,
                                               examples=["SUZLON-NSE-20261105T0410Z"])) -> AlertDetail:
        """One alert: reasons at the peak, evidence (bar range and post ids) and its audit trail."""
        return _alert_detail(alert_id, await self.query.alert(alert_id))

    @api.post("/api/alerts/{alert_id}", tags=["alerts"], response_model=AlertDetail,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": _inline_schema(AlertUpdate),
                  "example": {"state": "closed", "disposition": "true_positive", "actor": "asha",
                              "note": "coordinated Telegram push, volume 9x"}}}}},
              responses=errors(400, 401, 404, 409, 413, 422, 503, e404="no such alert",
                               e413=f"body larger than {_MAX_ALERT_UPDATE_BYTES} bytes",
                               e422="malformed body or alert id: the field is named",
                               e503="write endpoints disabled (no token configured), or the warehouse unavailable"))
    async def update_alert(self, request: Request,
                           alert_id: str = Path(..., pattern=_ALERT_ID_PATTERN,
                                                examples=["SUZLON-NSE-20261105T0410Z"]),
                           credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> AlertDetail:
        """Acknowledge, close (with a disposition), reopen or relabel an alert (token required);
        the change is recorded in alert_events with who made it."""
        self._require_token(credentials)  # before the body is read: no token, no parsing
        update = _parse_alert_update(await _read_body(request, _MAX_ALERT_UPDATE_BYTES))
        row, refused = await self.query.update_alert(alert_id, update.state.value if update.state else None,
                                                             update.disposition.value if update.disposition else None,
                                                             update.actor, update.note)
        if refused is not None:
            raise HTTPException(409, detail=refused)
        return _alert_detail(alert_id, row)

    # -- surveillance: features, risk, trending, filings -------------------------
    @api.get("/api/stocks/{ticker}/features", tags=["stocks"], response_model=FeaturesResponse,
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def features(
        self,
        ticker: str,
        start: QueryTime | None = Query(None, description="default end - 1 day (1m) or 90 days (1d)"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 31 days (1m) or "
                                                        "3660 days (1d) after start"),
        interval: str = Query("1m", pattern="^(1m|1d)$", description="1m: per bar; 1d: per session day"),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
    ) -> FeaturesResponse:
        """Point-in-time features of a ticker (features_1m or features_1d)."""
        info = self._symbol(ticker)
        iv = Interval(interval)
        start, end = resolve_range(start, end, _FEATURE_DEFAULT_WINDOW[iv], MAX_WINDOW[iv])
        ds = FEATURES_1M if iv is Interval.MINUTE else FEATURES_1D
        rows = await _answer(self.query.features(info["symbol"], *stored(start, end), iv, exchange,
                                                        ds.column_names))
        return FeaturesResponse(ticker=info["symbol"], exchange=exchange, interval=iv, start=start, end=end,
                                rows=[ds.model(**r) for r in rows])

    @api.get("/api/stocks/{ticker}/risk", tags=["stocks"], response_model=RiskResponse,
             responses=errors(404, 422, 503, e404="unknown ticker, or no risk score for it yet"))
    async def risk(self, ticker: str, exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN)) -> RiskResponse:
        """The latest risk score of a ticker and the reasons that drove it."""
        info = self._symbol(ticker)
        row = await _answer(self.query.risk(info["symbol"], exchange))
        if row is None:
            raise HTTPException(404, detail=f"no risk score for {info['symbol']} on {exchange} yet: detection has "
                                            f"not run over its features")
        return RiskResponse(**{**row, "reasons": _reasons(row["reasons"])})

    @api.get("/api/stocks/{ticker}/risk/history", tags=["stocks"], response_model=RiskHistoryResponse,
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def risk_history(
        self,
        ticker: str,
        start: QueryTime | None = Query(None, description="default end - 7 d (1m), 90 d (1h) or 2 y (1d)"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 31 d (1m), 366 d (1h) "
                                                        "or 10 y (1d) after start"),
        interval: Interval = Query(Interval.MINUTE, description="1m: every scored bar; 1h, 1d: the highest "
                                                                 "scores of each hour or IST trading day"),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
    ) -> RiskHistoryResponse:
        """The risk score of a ticker over time (risk_1m), on the same time buckets as its price
        bars: the line under a price chart. No scores in the range is an empty list."""
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, DEFAULT_WINDOW[interval], MAX_WINDOW[interval])
        points = await _answer(self.query.risk_history(info["symbol"], *stored(start, end), interval,
                                                              exchange))
        return RiskHistoryResponse(ticker=info["symbol"], exchange=exchange, interval=interval, start=start,
                                   end=end, points=points)

    @api.get("/api/features/asof", tags=["features"], response_model=AsOfResponse,
             responses=errors(404, 422, 503, e404="an unknown ticker among `tickers`"))
    async def features_asof(
        self,
        tickers: Tickers = Query(..., description="comma-separated symbols, at most 100"),
        ts: QueryTime = Query(..., description="the as-of time"),
        exchange: str = Query("NSE", pattern=_EXCHANGE_PATTERN),
    ) -> AsOfResponse:
        """Point-in-time 1m features per ticker as known at `ts` (the newest bar closed by
        then, within 7 days): for building training sets without look-ahead."""
        names = tickers.split(",")
        unknown = [n for n in names if n not in self.symbols]
        if unknown:
            raise HTTPException(404, detail=f"unknown ticker(s): {', '.join(u[:40] for u in unknown[:10])}")
        rows = await _answer(self.query.features_asof(names, *stored(ts), exchange, FEATURES_1M.column_names))
        found = {r["ticker"]: r for r in rows}
        return AsOfResponse(ts=ts, exchange=exchange, rows=[
            AsOfRow(ticker=n, features=FEATURES_1M.model(**found[n]) if n in found else None) for n in names])

    @api.get("/api/trending", tags=["features"], response_model=TrendingResponse, responses=errors(422, 503))
    async def trending(
        self,
        hours: int = Query(24, ge=1, le=24 * 31),
        end: QueryTime | None = Query(None, description="end of the window (default now)"),
        limit: int = Query(20, ge=1, le=500),
    ) -> TrendingResponse:
        """Tickers by their highest chatter z-score (posts in 60 min vs their trailing days) in the window."""
        start, end = resolve_range(None, end, dt.timedelta(hours=hours), dt.timedelta(hours=hours))
        rows = await _answer(self.query.trending(*stored(start, end), limit))
        return TrendingResponse(start=start, end=end, tickers=rows)

    @api.get("/api/stocks/{ticker}/filings", tags=["stocks"], response_model=FilingsResponse,
             responses=errors(404, 422, 503, e404="unknown ticker"))
    async def filings(
        self,
        ticker: str,
        start: QueryTime | None = Query(None, description="default end - 90 days"),
        end: QueryTime | None = Query(None, description="exclusive; default now; at most 3660 days after start"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> FilingsResponse:
        """Corporate announcements of a ticker, newest first."""
        info = self._symbol(ticker)
        start, end = resolve_range(start, end, dt.timedelta(days=90), dt.timedelta(days=3660))
        rows = await _answer(self.query.filings(info["symbol"], *stored(start, end), limit))
        return FilingsResponse(ticker=info["symbol"], start=start, end=end, filings=rows)
