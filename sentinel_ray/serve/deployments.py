"""Ray Serve deployments of the HTTP API, and the application that wires them.

    ApiIngress (FastAPI, routes.py; OpenAPI at /docs; the dashboard at /)
      in the replica:       stocks, prices, posts, features, risk,      (reads.py: the latest-value
                            trending, filings, alerts                    cache, warehouse queries,
                                                                         the alert workflow's write)
      -> OperationsService  readiness, pipeline runs, freshness,
                            data quality, quarantine, lineage           (Redis, warehouse, lake)

`build_app(settings)` is used by `sentinel-ray up`; `app_builder(args)` is the
`serve deploy serve_config.yaml` entrypoint and takes the settings the running
platform published (or SENTINEL_* variables).
"""
import datetime as dt
from typing import Any

from ray import serve

from sentinel_ray.config import Settings
from sentinel_ray.ingest.lineage import LineageError, RowNotFound, trace
from sentinel_ray.monitoring.runs import pipeline_health, recent_runs
from sentinel_ray.quality.quarantine import list_quarantined
from sentinel_ray.quality.report import dataset_quality, quality_report
from sentinel_ray.runtime import settings_for_job
from sentinel_ray.schemas import DATA_DATASETS
from sentinel_ray.serve import queries
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
    return ApiIngress.bind(OperationsService.bind(settings), settings)


def app_builder(args: dict[str, str]) -> serve.Application:
    """`serve deploy serve_config.yaml` entrypoint: settings from the running platform or SENTINEL_*."""
    return build_app(settings_for_job())
