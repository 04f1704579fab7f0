"""HTTP API throughput and latency on Ray Serve: our deployment options vs Serve's defaults.

    .venv/bin/python bench/api_latency.py [--seconds 10] [--concurrency 32]

Backfills one replay day into a temporary platform, deploys the API twice (Serve defaults:
max_ongoing_requests 5 and an access-log line per request; then the project's options)
and drives each with an aiohttp client from this process, on 127.0.0.1. The last line
printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import aiohttp

PATHS = ["/api/stocks/TCS/prices?start=2026-11-05&end=2026-11-06&interval=1h", "/health",
         "/api/stocks/INFY/posts?start=2026-11-01&end=2026-11-08&limit=20"]


async def load(base: str, seconds: float, concurrency: int) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession, k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            async with session.get(base + PATHS[i % len(PATHS)]) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - began)
            i += 1

    async with aiohttp.ClientSession() as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return (len(latencies) / elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)], errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    import ray
    from ray import serve

    from sentinel_ray.config import Settings
    from sentinel_ray.ingest.backfill import run_backfill
    from sentinel_ray.serve.deployments import ApiIngress, OperationsService, QueryService
    from sentinel_ray.storage.redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="sentinel-api-bench-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(data_dir=work)
    redis = EmbeddedRedis(settings.embedded_redis_dir).start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    figures = {}
    try:
        run_backfill(settings, "replay", dt.date(2026, 11, 5), dt.date(2026, 11, 5))
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        defaults = {"max_ongoing_requests": 5, "logging_config": {"enable_access_log": True}}
        for label, options in (("serve defaults", defaults), ("project options", None)):
            def opt(d):  # noqa: ANN001, ANN202 - a deployment with either option set
                return d if options is None else d.options(**options)

            app = opt(ApiIngress).bind(opt(QueryService).bind(settings), opt(OperationsService).bind(settings),
                                       settings)
            serve.run(app, name="bench", route_prefix="/")
            asyncio.run(load(f"http://127.0.0.1:{port}", 2.0, args.concurrency))  # warm up
            rps, p50, p99, errors = asyncio.run(load(f"http://127.0.0.1:{port}", args.seconds, args.concurrency))
            figures[label] = (rps, p50, p99)
            print(f"{label:<16} {rps:>8,.0f} req/s  p50 {p50 * 1000:>7.1f} ms  p99 {p99 * 1000:>7.1f} ms  "
                  f"errors {errors}", flush=True)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    (d_rps, _, _), (p_rps, p50, p99) = figures["serve defaults"], figures["project options"]
    print(f"project/defaults = {p_rps / d_rps:.1f}x")
    print(json.dumps({"rps": round(p_rps), "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                      "defaults_rps": round(d_rps), "concurrency": args.concurrency}))


if __name__ == "__main__":
    main()
