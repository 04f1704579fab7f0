"""Request count and latency per API route, recorded as the project's Ray metrics.

`instrument(api)` adds an ASGI middleware to a FastAPI app. Requests are labelled by the
route *template* that served them (`/api/stocks/{ticker}/prices`), never the raw path,
so a scan of made-up URLs cannot create a time series per URL: anything no route matches
is labelled `unmatched`. Status is recorded as a class (2xx, 4xx, 5xx).

It is a plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: it does not
buffer or re-wrap the response, and it sees the scope the router fills in (`route`).
"""
from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentinel_ray.monitoring import metrics

UNMATCHED = "unmatched"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, router: Router | None = None) -> None:
        self.app = app
        self.router = router  # to find the template of a route that does not put itself in the scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        before_routing = dict(scope)  # routing rewrites the scope (a Mount changes root_path)
        status = 500  # what the client gets if the app raises before starting a response

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = scope.get("route")  # FastAPI's APIRoute records itself here when it matches
            metrics.record_request(route_template(before_routing, self.router, route), scope.get("method", "GET"),
                                   status, time.perf_counter() - began)


def route_template(scope: Scope, router: Router | None = None, route: Any = None) -> str:
    """The path template of `route`, else of the router's route matching `scope`, else `unmatched`."""
    if route is None and router is not None:
        try:
            route = next((r for r in router.routes if r.matches(scope)[0] == Match.FULL), None)
        except Exception:  # noqa: BLE001 - labelling a request must never fail it
            route = None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) and template else UNMATCHED


def instrument(app: FastAPI) -> FastAPI:
    """Record every request to `app` (call once, before the app serves its first request)."""
    app.add_middleware(RequestMetricsMiddleware, router=app.router)
    return app
