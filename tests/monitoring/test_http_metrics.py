"""Request metrics per route template: the middleware in-process, then on Ray Serve via the metrics endpoint."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.net import serve_locally
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sentinel_ray.monitoring import metrics
from sentinel_ray.serve.http_metrics import instrument
from tests.monitoring.conftest import total


def _api() -> FastAPI:
    """A small app shaped like serve/routes.py: path parameters, a 4xx, a backend failure turned 503."""
    app = instrument(FastAPI())

    @app.exception_handler(Exception)
    async def unavailable(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": "backend unavailable"})

    @app.get("/api/stocks/{ticker}/prices")
    async def prices(ticker: str) -> dict[str, str]:
        if ticker == "NOPE":
            raise HTTPException(404, detail="unknown ticker")
        return {"ticker": ticker}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("warehouse down")

    async def plain(request: Any) -> PlainTextResponse:
        return PlainTextResponse("plain")

    app.router.routes.append(Route("/plain/{name}", plain))  # a Starlette route: no `route` in the scope
    return app


async def _request(app: Any, method: str, path: str) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "headers": [],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except RuntimeError:
        pass  # Starlette re-raises after its exception handler has answered
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_requests_are_recorded_by_route_template_and_status_class(monkeypatch) -> None:
    calls: list[tuple[str, str, int]] = []
    monkeypatch.setattr(metrics, "record_request",
                        lambda route, method, status, seconds: calls.append((route, method, status)))
    app = _api()
    statuses = [asyncio.run(_request(app, "GET", path)) for path in (
        "/api/stocks/TCS/prices", "/api/stocks/INFY/prices", "/api/stocks/NOPE/prices", "/boom",
        "/plain/x", "/wp-admin/setup.php")]
    assert statuses == [200, 200, 404, 503, 200, 404]
    assert calls == [
        ("/api/stocks/{ticker}/prices", "GET", 200),
        ("/api/stocks/{ticker}/prices", "GET", 200),
        ("/api/stocks/{ticker}/prices", "GET", 404),
        ("/boom", "GET", 500),  # the handler's 503 is written outside the middleware: same 5xx class
        ("/plain/{name}", "GET", 200),
        ("unmatched", "GET", 404),  # never the raw path: made-up URLs cannot add time series
    ]


def test_a_failing_metrics_backend_does_not_fail_requests(monkeypatch) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("no metrics agent")

    monkeypatch.setattr(metrics, "_registry", broken)
    assert asyncio.run(_request(_api(), "GET", "/api/stocks/TCS/prices")) == 200


# -- on Ray Serve: a replica records, the node's metrics endpoint exports -------------------------


@pytest.fixture(scope="module")
def served(ray_session: None) -> Iterator[str]:
    from ray import serve

    api = _api()

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    @serve.ingress(api)
    class Ingress:
        @api.get("/api/stocks/{ticker}/posts")  # a method route, as in serve/routes.py's ApiIngress
        async def posts(self, ticker: str) -> dict[str, str]:
            return {"ticker": ticker}

    with serve_locally(Ingress.bind(), name="metrics-test", ready_path="/plain/ready") as base:
        yield base


@pytest.mark.ray
def test_serve_replica_request_metrics_reach_the_metrics_endpoint(served: str, scrape) -> None:
    for ticker in ("TCS", "INFY", "RELIANCE"):
        assert requests.get(f"{served}/api/stocks/{ticker}/prices", timeout=10).status_code == 200
    assert requests.get(f"{served}/api/stocks/NOPE/prices", timeout=10).status_code == 404
    assert requests.get(f"{served}/boom", timeout=10).status_code == 503
    assert requests.get(f"{served}/no/such/path", timeout=10).status_code == 404
    assert requests.get(f"{served}/api/stocks/TCS/posts", timeout=10).status_code == 200

    route = "/api/stocks/{ticker}/prices"
    name = "ray_sentinel_http_requests_total"

    def exported(s) -> bool:
        return (total(s, name, route=route, method="GET", status_class="2xx") >= 3
                and total(s, name, route=route, status_class="4xx") >= 1
                and total(s, name, route="/boom", status_class="5xx") >= 1
                and total(s, name, route="unmatched", status_class="4xx") >= 1
                and total(s, name, route="/api/stocks/{ticker}/posts", status_class="2xx") >= 1)

    samples = scrape(exported, timeout_s=60)
    assert exported(samples), [x for x in samples.get(name, [])]
    assert total(samples, "ray_sentinel_http_request_seconds_count", route=route, method="GET") >= 4
    assert total(samples, "ray_sentinel_http_request_seconds_sum", route=route, method="GET") > 0
    routes = {lab["route"] for lab, _ in samples[name]}
    assert not any("TCS" in r or "/no/such" in r for r in routes), routes
