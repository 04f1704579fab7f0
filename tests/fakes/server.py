"""A local HTTP fixture server standing in for a real service (aiohttp, 127.0.0.1 only).

Routes reply from a script: each request to a route takes the next step (the last one
repeats), so a test can say "429 with Retry-After, then 500, then the real payload". A
step is a `Reply`, or a handler called with the request that returns a `Reply` (or an
aiohttp response), so a script can mix the two: "429, then answer by the query".
The server runs on its own event loop in a thread, so both async adapters and
synchronous libraries (yfinance, praw) can talk to it. Every request is recorded.
"""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay_s: float = 0.0  # sleep before answering (timeouts)

    def render(self) -> web.Response:
        body = self.body
        content_type = self.content_type
        if self.json is not None:
            body = json.dumps(self.json)
            content_type = content_type or "application/json"
        if isinstance(body, str):
            body = body.encode()
        return web.Response(status=self.status, body=body or b"", headers=self.headers,
                            content_type=content_type or "application/octet-stream")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Handler = Callable[[web.Request], "web.Response | Reply"]
Step = Reply | Handler


class FakeService:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._scripts: dict[tuple[str, str], list[Step]] = {}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- scripting -------------------------------------------------------------
    def route(self, method: str, path: str, *steps: Step) -> "FakeService":
        """Answer each request with the next step (the last repeats): a Reply, or a handler of the request."""
        if not steps:
            raise ValueError(f"route {method} {path}: give at least one Reply or handler")
        self._scripts[(method.upper(), path)] = list(steps)
        return self

    def seen(self, path: str | None = None) -> list[Seen]:
        return [r for r in self.requests if path is None or r.path == path]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- serving -----------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), body))
        script = self._scripts.get((request.method, request.path))
        if script is None:
            return web.Response(status=404, text=f"fake service: no route {request.method} {request.path}")
        step = script.pop(0) if len(script) > 1 else script[0]
        reply = step if isinstance(step, Reply) else step(request)
        if isinstance(reply, Reply):
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            return reply.render()
        return reply

    def start(self) -> "FakeService":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that timed out on a delayed Reply hangs up, and its
        # handler stops there rather than hold stop() until the delay is over
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())  # type: ignore[union-attr]
            site = web.TCPSite(self._runner, "127.0.0.1", 0)  # type: ignore[arg-type]
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-service", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake service did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()  # its selector and self-pipe sockets, or they leak (ResourceWarning)

    def __enter__(self) -> "FakeService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
