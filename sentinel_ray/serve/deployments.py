"""Ray Serve deployments of the HTTP API, and the application that wires them.

    ApiIngress (FastAPI, routes.py; OpenAPI at /docs)
      -> QueryService       stocks, prices, posts, features, risk,
                            trending, filings, alerts                   (warehouse reads, and the
                                                                         alert workflow's write)
      -> OperationsService  readiness, pipeline runs, freshness,
                            data quality, quarantine                    (Redis, warehouse, lake)

`build_app(settings)` is used by `sentinel-ray up`; `app_builder(args)` is the
`serve deploy serve_config.yaml` entrypoint and takes the settings the running
platform published (or SENTINEL_* variables).
"""
import asyncio
import datetime as dt
from typing import Any

from ray import serve

from sentinel_ray.config import Settings
from sentinel_ray.detect.alerts import TransitionError
from sentinel_ray.detect.run import AlertNotFound, apply_transition
from sentinel_ray.ingest.lineage import LineageError, RowNotFound, trace
from sentinel_ray.monitoring.runs import pipeline_health, recent_runs
from sentinel_ray.quality.quarantine import list_quarantined
from sentinel_ray.quality.report import dataset_quality, quality_report
from sentinel_ray.runtime import settings_for_job
from sentinel_ray.schemas import DATA_DATASETS
from sentinel_ray.serve import queries
from sentinel_ray.serve.queries import Interval
from sentinel_ray.serve.routes import ApiRoutes
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.redis import redis_ok
from sentinel_ray.storage.warehouse import connect_warehouse

# Serve's defaults (5 ongoing requests, an access-log line per request) cap a replica
# at a few dozen requests/s on a small machine; these lift that.
_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 100,
    "logging_config": {"enable_access_log": False},
    "ray_actor_options": {"num_cpus": 0},
}


@serve.deployment(**_DEPLOYMENT_OPTIONS)
class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.warehouse = connect_warehouse(settings)

    # Queries block on the warehouse; threads keep the replica's event loop serving
    # other requests meanwhile (a blocking method would handle one request at a time).
    async def stocks(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.stock_summaries, self.warehouse)

    async def prices(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                     exchange: str, source: str | None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.price_bars, self.warehouse, ticker, start, end, interval, exchange,
                                       source)

    async def posts(self, ticker: str, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.posts_mentioning, self.warehouse, ticker, start, end, limit)

    async def features(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval, exchange: str,
                       columns: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.stock_features, self.warehouse, ticker, start, end, interval,
                                       exchange, columns)

    async def features_asof(self, tickers: list[str], asof: dt.datetime, exchange: str,
                            columns: list[str]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.features_asof, self.warehouse, tickers, asof, exchange, columns)

    async def risk(self, ticker: str, exchange: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(queries.latest_risk, self.warehouse, ticker, exchange)

    async def risk_history(self, ticker: str, start: dt.datetime, end: dt.datetime, interval: Interval,
                           exchange: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.risk_history, self.warehouse, ticker, start, end, interval, exchange)

    async def trending(self, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.trending, self.warehouse, start, end, limit)

    async def filings(self, ticker: str, start: dt.datetime, end: dt.datetime, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.stock_filings, self.warehouse, ticker, start, end, limit)

    async def alerts(self, state: str | None, ticker: str | None, start: dt.datetime, end: dt.datetime,
                     limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(queries.alerts_list, self.warehouse, state, ticker, start, end, limit)

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(queries.alert_with_events, self.warehouse, alert_id)

    async def update_alert(self, alert_id: str, state: str | None, disposition: str | None, actor: str,
                           note: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """Apply an analyst's change: (the alert with its events, None), (None, None) when there
        is no such alert, or (None, why) when its state does not allow the change. A refusal comes
        back as a value: raised, it would cross the handle wrapped in Ray's error and traceback."""
        def apply() -> tuple[dict[str, Any] | None, str | None]:
            try:
                apply_transition(self.warehouse, alert_id, state, disposition, actor, note)
            except AlertNotFound:
                return None, None
            except TransitionError as e:
                return None, str(e)
            return queries.alert_with_events(self.warehouse, alert_id), None
        return await asyncio.to_thread(apply)


@serve.deployment(**_DEPLOYMENT_OPTIONS)
class OperationsService:
    """What the platform's operators ask: is it up, how did the pipelines run, how good is the data."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis_url = settings.resolved_redis_url
        self.warehouse = connect_warehouse(settings)
        self.lake = Lake(settings.resolved_lake_uri)

    def ready(self) -> dict[str, bool]:
        return {"redis": redis_ok(self.redis_url), "warehouse": self.warehouse.ping(), "lake": self.lake.ping()}

    def pipelines(self, limit: int) -> list[dict[str, Any]]:
        return recent_runs(self.warehouse, limit=limit)

    def lineage(self, dataset: str, key: list[str]) -> tuple[dict[str, Any] | None, int, str]:
        """(the trace, 0, "") or (None, its HTTP status, why): refusals come back as values, so the
        route answers them plainly instead of unwrapping a Ray error."""
        try:
            return trace(dataset, key, warehouse=self.warehouse, lake=self.lake), 0, ""
        except LineageError as e:
            return None, 422, str(e)
        except RowNotFound as e:
            return None, 404, str(e)

    def freshness(self) -> list[dict[str, Any]]:
        return queries.freshness(self.warehouse, list(DATA_DATASETS))

    def pipeline_runs(self, name: str, limit: int) -> list[dict[str, Any]]:
        return recent_runs(self.warehouse, limit=limit, pipeline=name)

    def pipelines_health(self, hours: int) -> list[dict[str, Any]]:
        return pipeline_health(self.warehouse, window_hours=hours)

    def quality(self, hours: int) -> dict[str, Any]:
        return quality_report(self.warehouse, self.settings, window=dt.timedelta(hours=hours), record=False)

    def dataset_quality(self, dataset: str, start: dt.datetime, end: dt.datetime, bucket: str) -> dict[str, Any]:
        return dataset_quality(self.warehouse, dataset, start, end, bucket)

    def quarantine(self, dataset: str, rule: str | None, start: dt.date | None, end: dt.date | None,
                   limit: int) -> list[dict[str, Any]]:
        return list_quarantined(self.lake, dataset, rule=rule, start=start, end=end, limit=limit)


ApiIngress = serve.deployment(name="ApiIngress", **_DEPLOYMENT_OPTIONS)(ApiRoutes)


def build_app(settings: Settings) -> serve.Application:
    return ApiIngress.bind(QueryService.bind(settings), OperationsService.bind(settings), settings)


def app_builder(args: dict[str, str]) -> serve.Application:
    """`serve deploy serve_config.yaml` entrypoint: settings from the running platform or SENTINEL_*."""
    return build_app(settings_for_job())
