"""The API's read routes on plain uvicorn + FastAPI: the baseline bench/api_latency.py sets beside Ray Serve.

Same paths and parameters as the platform's API, answered by the same reads the Serve
ingress makes (`sentinel_ray.serve.reads.WarehouseReads`: the latest-value cache for the
summaries, the `queries` functions in threads for the rest), on the warehouse of the running platform: in embedded mode the warehouse is a Ray actor
owned by `sentinel-ray up`, so this process joins up's Ray cluster as a driver. What it leaves
out is Serve: no proxy, no ingress replica, no handle calls between deployments. Responses
are the same JSON shapes, built as dicts (no response models).

    RAY_ADDRESS=<the address up printed> RAY_AUTH_MODE=token \\
        .venv/bin/python -m uvicorn --app-dir bench --factory plain_api:create_app --port 8001 --workers 1
"""
from __future__ import annotations

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
        from sentinel_ray.serve.reads import WarehouseReads

        join_ray()  # RAY_ADDRESS: the platform's cluster, where the embedded warehouse's owner lives
        app.state.reads = WarehouseReads(settings_for_job())
        app.state.symbols = {row["symbol"]: row for row in symbol_table().to_pylist()}
        yield
        ray.shutdown()

    app = FastAPI(title="Sentinel Ray, plain", lifespan=lifespan, docs_url=None, redoc_url=None)

    def symbol(request: Request, ticker: str) -> str:
        name = ticker.strip().upper()
        if name not in request.app.state.symbols:
            raise HTTPException(404, detail=f"unknown ticker {ticker[:40]!r}")
        return name

    def reads(request: Request) -> Any:
        return request.app.state.reads

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/stocks")
    async def stocks(request: Request, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - the API's name
        latest = await reads(request).latest()
        out = []
        for name, info in request.app.state.symbols.items():
            row = latest.get((name, "NSE"), {})
            if not row and not all:  # as the platform's route: symbols with stored data unless ?all=true
                continue
            risk = row.get("risk") or {}
            out.append({"ticker": name, "name": info["name"], "exchanges": info["exchanges"].split(";"),
                        "last_close": row.get("last_close"), "last_ts": row.get("last_ts"),
                        "bars": row.get("bars", 0), "risk_score": risk.get("score"), "risk_ts": risk.get("ts"),
                        "open_alerts": row.get("open_alerts")})
        return out

    @app.get("/api/stocks/{ticker}/prices")
    async def prices(request: Request, ticker: str, start: dt.datetime | None = None, end: dt.datetime | None = None,
                     interval: Interval = Interval.MINUTE, exchange: str = "NSE",
                     source: str | None = None) -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, DEFAULT_WINDOW[interval])
        bars = await reads(request).prices(name, start, end, interval, exchange, source)
        return {"ticker": name, "exchange": exchange, "interval": interval, "start": start, "end": end, "bars": bars}

    @app.get("/api/stocks/{ticker}/posts")
    async def posts(request: Request, ticker: str, start: dt.datetime | None = None, end: dt.datetime | None = None,
                    limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, dt.timedelta(days=7))
        rows = await reads(request).posts(name, start, end, limit)
        return {"ticker": name, "start": start, "end": end, "posts": rows}

    @app.get("/api/stocks/{ticker}/risk")
    async def risk(request: Request, ticker: str, exchange: str = "NSE") -> dict[str, Any]:
        name = symbol(request, ticker)
        row = await reads(request).risk(name, exchange)
        if row is None:
            raise HTTPException(404, detail=f"no risk score for {name} on {exchange} yet")
        return {**row, "reasons": _reasons(row["reasons"])}

    @app.get("/api/stocks/{ticker}/risk/history")
    async def risk_history(request: Request, ticker: str, start: dt.datetime | None = None,
                           end: dt.datetime | None = None, interval: Interval = Interval.MINUTE,
                           exchange: str = "NSE") -> dict[str, Any]:
        name = symbol(request, ticker)
        start, end = _window(start, end, DEFAULT_WINDOW[interval])
        points = await reads(request).risk_history(name, start, end, interval, exchange)
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
        rows = await reads(request).features(name, start, end, iv, exchange, ds.column_names)
        return {"ticker": name, "exchange": exchange, "interval": iv, "start": start, "end": end, "rows": rows}

    @app.get("/api/alerts")
    async def alerts(request: Request, state: str | None = None, ticker: str | None = None,
                     start: dt.datetime | None = None, end: dt.datetime | None = None,
                     limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        name = symbol(request, ticker) if ticker else None
        start, end = _window(start, end, dt.timedelta(days=30))
        rows = await reads(request).alerts(state, name, start, end, limit)
        return [{**{k: v for k, v in row.items() if k != "post_ids"}, "reasons": _reasons(row["reasons"]),
                 "posts": len(row.get("post_ids") or [])} for row in rows]

    @app.get("/api/trending")
    async def trending(request: Request, hours: int = Query(24, ge=1, le=24 * 31), end: dt.datetime | None = None,
                       limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
        start, end = _window(None, end, dt.timedelta(hours=hours))
        rows = await reads(request).trending(start, end, limit)
        return {"start": start, "end": end, "tickers": rows}

    return app
