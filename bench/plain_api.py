"""The API's read routes on plain uvicorn + FastAPI: the baseline bench/api_latency.py sets beside Ray Serve.

Same paths and parameters as the platform's API, answered by the same query functions the
Serve deployments call (`sentinel_ray.serve.queries`), each in a thread as QueryService runs
them, on the warehouse of the running platform: in embedded mode the warehouse is a Ray actor
owned by `sentinel-ray up`, so this process joins up's Ray cluster as a driver. What it leaves
out is Serve: no proxy, no ingress replica, no handle calls between deployments. Responses
are the same JSON shapes, built as dicts (no response models).

    RAY_ADDRESS=<the address up printed> RAY_AUTH_MODE=token \\
        .venv/bin/python -m uvicorn --app-dir bench --factory plain_api:create_app --port 8001 --workers 1
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request

from sentinel_ray.market import as_utc
from sentinel_ray.records import utc_now
from sentinel_ray.reference import symbol_table
from sentinel_ray.schemas import FEATURES_1D, FEATURES_1M
from sentinel_ray.serve import queries
from sentinel_ray.serve.queries import DEFAULT_WINDOW, Interval


def _window(start: dt.datetime | None, end: dt.datetime | None,
            default: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    end = as_utc(end) if end else utc_now()
    return (as_utc(start) if start else end - default), end


def _reasons(text: str) -> list[Any]:
    try:
        reasons = json.loads(text or "[]")
    except ValueError:
        return []
    return reasons if isinstance(reasons, list) else []


def create_app() -> FastAPI:
    """The app; joining Ray and connecting the warehouse happen at startup, not at import."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import ray

        from sentinel_ray.runtime import join_ray, settings_for_job
        from sentinel_ray.storage.warehouse import connect_warehouse

        join_ray()  # RAY_ADDRESS: the platform's cluster, where the embedded warehouse's owner lives
        app.state.warehouse = connect_warehouse(settings_for_job())
        app.state.symbols = {row["symbol"]: row for row in symbol_table().to_pylist()}
        yield
        ray.shutdown()

    app = FastAPI(title="Sentinel Ray, plain", lifespan=lifespan, docs_url=None, redoc_url=None)

    def symbol(request: Request, ticker: str) -> str:
        name = ticker.strip().upper()
        if name not in request.app.state.symbols:
            raise HTTPException(404, detail=f"unknown ticker {ticker[:40]!r}")
        return name

    async def run(query: Any, request: Request, *args: Any) -> Any:
        # as QueryService does: the warehouse call blocks, a thread keeps the event loop serving
        return await asyncio.to_thread(query, request.app.state.warehouse, *args)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/stocks")
    async def stocks(request: Request) -> list[dict[str, Any]]:
        rows = await run(queries.stock_summaries, request)
        latest = {row["ticker"]: row for row in rows if row["exchange"] == "NSE"}
        out = []
        for name, info in request.app.state.symbols.items():
            row = latest.get(name, {})
            out.append({"ticker": name, "name": info["name"], "exchanges": info["exchanges"].split(";"),
                        "last_close": row.get("last_close"),
                        "last_ts": as_utc(row["last_ts"]) if row.get("last_ts") else None,
                        "bars": row.get("bars", 0)})
        return out

    @app.get("/api/stocks/{ticker}/prices")
    async def prices(request: Request, ticker: str, start: dt.datetime | None = None, end: dt.datetime | None = None,
                     interval: Interval = Interval.MINUTE, exchange: str = "NSE",
                     source: str | None = None) -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, DEFAULT_WINDOW[interval])
        bars = await run(queries.price_bars, request, name, start, end, interval, exchange, source)
        return {"ticker": name, "exchange": exchange, "interval": interval, "start": start, "end": end, "bars": bars}

    @app.get("/api/stocks/{ticker}/posts")
    async def posts(request: Request, ticker: str, start: dt.datetime | None = None, end: dt.datetime | None = None,
                    limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, dt.timedelta(days=7))
        rows = await run(queries.posts_mentioning, request, name, start, end, limit)
        return {"ticker": name, "start": start, "end": end, "posts": rows}

    @app.get("/api/stocks/{ticker}/risk")
    async def risk(request: Request, ticker: str, exchange: str = "NSE") -> dict[str, Any]:
        name = symbol(request, ticker)
        row = await run(queries.latest_risk, request, name, exchange)
        if row is None:
            raise HTTPException(404, detail=f"no risk score for {name} on {exchange} yet")
        return {**row, "reasons": _reasons(row["reasons"])}

    @app.get("/api/stocks/{ticker}/risk/history")
    async def risk_history(request: Request, ticker: str, start: dt.datetime | None = None,
                           end: dt.datetime | None = None, interval: Interval = Interval.MINUTE,
                           exchange: str = "NSE") -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, DEFAULT_WINDOW[interval])
        points = await run(queries.risk_history, request, name, start, end, interval, exchange)
        return {"ticker": name, "exchange": exchange, "interval": interval, "start": start, "end": end,
                "points": points}

    @app.get("/api/stocks/{ticker}/features")
    async def features(request: Request, ticker: str, start: dt.datetime | None = None,
                       end: dt.datetime | None = None, interval: str = Query("1m", pattern="^(1m|1d)$"),
                       exchange: str = "NSE") -> dict[str, Any]:
        name = symbol(request, ticker)
        iv = Interval(interval)
        start, end = _window(start, end, dt.timedelta(days=1) if iv is Interval.MINUTE else dt.timedelta(days=90))
        ds = FEATURES_1M if iv is Interval.MINUTE else FEATURES_1D
        rows = await run(queries.stock_features, request, name, start, end, iv, exchange, ds.column_names)
        return {"ticker": name, "exchange": exchange, "interval": iv, "start": start, "end": end, "rows": rows}

    @app.get("/api/alerts")
    async def alerts(request: Request, state: str | None = None, ticker: str | None = None,
                     start: dt.datetime | None = None, end: dt.datetime | None = None,
                     limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        name = symbol(request, ticker) if ticker else None
        start, end = _window(start, end, dt.timedelta(days=30))
        rows = await run(queries.alerts_list, request, state, name, start, end, limit)
        return [{**{k: v for k, v in row.items() if k != "post_ids"}, "reasons": _reasons(row["reasons"]),
                 "posts": len(row.get("post_ids") or [])} for row in rows]

    @app.get("/api/trending")
    async def trending(request: Request, hours: int = Query(24, ge=1, le=24 * 31), end: dt.datetime | None = None,
                       limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        start, end = _window(None, end, dt.timedelta(hours=hours))
        rows = await run(queries.trending, request, start, end, limit)
        return {"start": start, "end": end, "tickers": rows}

    return app
