"""OpenLineage run events of the platform's jobs: backfills, replays and stream batches.

A job says when a run starts, completes or fails, and what it read and wrote:

    emitter = LineageEmitter.from_settings(settings)          # or LineageEmitter(settings, warehouse)
    run = emitter.start(run_id, job="backfill", params={"source": "replay", "start": start},
                        inputs=[LineageDataset.lake("raw/source=replay")],
                        outputs=[LineageDataset.warehouse("prices"),
                                 LineageDataset.lake("curated/dataset=prices", schema="prices")])
    ...
    run.complete(output_stats={"prices": rows})   # rows written per output (the dataset, or its name)
    run.fail(error)                               # instead, on an error: the message and the stack trace
    emitter.close()                               # at the end of the process (or `with emitter:`)

`emitter.complete(run_id, job=..., ...)` and `emitter.fail(run_id, job=..., error=...)` do the same
for a run started elsewhere (another process, before a restart).

Each call builds one OpenLineage RunEvent (openlineage-python's models of the spec, so every facet
carries the `_schemaURL` of the spec version it follows) and
- writes it to the warehouse table `lineage_events` (schemas.py), the record of every event. A row
  is keyed by the event's id, derived from the run and the event type: emitting an event again (a
  redelivered stream batch, a retried job) replaces its row, it never adds one;
- when `openlineage_url` is set, queues it for that server (Marquez, a catalog). One thread of the
  emitter's own POSTs the queued events in order with a bounded timeout; the caller never waits on
  the network. A server that is down or slow costs no run anything: its failures are counted
  (`http_stats`) and logged at most once a minute, a full queue drops events (counted too), and the
  table still has every event. The API key goes out as `Authorization: Bearer ...`, never to a log.

Ids. run.runId is uuid5 of the platform's run id in the job namespace's own uuid namespace, so a
run's START and COMPLETE share it even when different processes emit them, and re-emitting an event
repeats it; the event id is uuid5 of the runId and the event type.

Names follow OpenLineage's naming conventions, so the lineage joins up with other tools':
- jobs: namespace `sentinel-ray://<warehouse database>`, name the job (backfill, replay, stream.prices);
- the lake: `file` and the absolute path of a local lake; `s3://<bucket>` and the key on S3;
- the warehouse: `clickhouse://<host>:<port>` of a server (`chdb://<data dir>` embedded) and
  `<database>.<table>`;
- Redis: its URL without the password, and the key.
Credentials never reach a name: user info, queries and fragments are dropped from every URL.
"""
from __future__ import annotations

import atexit
import datetime as dt
import functools
import importlib.metadata
import json
import logging
import os
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping, Sequence
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (error_message_run, execution_parameters_run, job_type_job,
                                         output_statistics_output_dataset, processing_engine_run, schema_dataset)
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider

from sentinel_ray.config import Settings
from sentinel_ray.market import as_utc
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import ALL_DATASETS, LINEAGE_EVENTS, dataset
from sentinel_ray.storage.warehouse import Warehouse, connect_warehouse

log = logging.getLogger(__name__)


@functools.cache
def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


VERSION = _version("sentinel-ray")
# A URI naming this package and its version: the project has no public URL to point at yet
PRODUCER = f"urn:sentinel-ray:{VERSION}"
JOB_SCHEME = "sentinel-ray"
LAKE, WAREHOUSE, REDIS = "lake", "warehouse", "redis"

QUEUE_CAPACITY = 10_000  # events waiting for the server; past this they are dropped (the table has them)
LOG_EVERY_S = 60.0  # the server's failures are logged at most this often, with their count
_STACK_CHARS = 16_000  # the end of a stack trace is the part that says what failed
# One quick second try: a kept-alive connection the server closed meanwhile fails the first attempt
_RETRY = {"total": 1, "backoff_factor": 0, "allowed_methods": ["POST"]}
# START before COMPLETE or FAIL when two events of a run share a millisecond
_ORDER = {state.value: i for i, state in enumerate((RunState.START, RunState.RUNNING, RunState.COMPLETE,
                                                     RunState.ABORT, RunState.FAIL, RunState.OTHER))}


# --- datasets ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LineageDataset:
    """A dataset a run reads or writes, named by where it lives in this deployment; the emitter
    turns the place into its OpenLineage namespace (see the module doc)."""

    place: str  # LAKE, WAREHOUSE or REDIS; anything else is an OpenLineage namespace, taken as it is
    name: str  # the lake: a path under its root; the warehouse: a table; Redis: a key; else the dataset's name
    schema: str | None = None  # the schemas.py dataset it holds: its fields make the schema facet

    def __post_init__(self) -> None:
        if self.schema is not None:
            dataset(self.schema)  # a misspelt name fails here, not in an event nobody reads

    @classmethod
    def lake(cls, path: str, schema: str | None = None) -> LineageDataset:
        """A path under the lake's root: raw/source=replay, curated/dataset=prices, quarantine/dataset=posts
        (the quarantine zone's schema adds reject_reason)."""
        return cls(LAKE, path.strip("/"), schema)

    @classmethod
    def warehouse(cls, table: str) -> LineageDataset:
        """A warehouse table, described by its schemas.py dataset when it has one."""
        return cls(WAREHOUSE, table, table if table in ALL_DATASETS else None)

    @classmethod
    def stream(cls, key: str, schema: str | None = None) -> LineageDataset:
        """A Redis key (a stream of records of `schema`)."""
        return cls(REDIS, key, schema)


def _strip_secrets(url: str) -> str:
    """The URL without user info, query and fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def lake_location(lake_uri: str, path: str) -> tuple[str, str]:
    """(namespace, name) of a path under the lake's root: `file` and the absolute path of a local
    lake, `<scheme>://<bucket>` and the key in an object store."""
    full = f"{str(lake_uri).rstrip('/')}/{path}" if path else str(lake_uri)
    scheme, sep, rest = full.partition("://")
    if not sep:
        return "file", os.path.abspath(full)
    if scheme == "file":  # file:///abs/path, or file://host/abs/path
        return "file", rest if rest.startswith("/") else "/" + rest.partition("/")[2]
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket.rpartition('@')[2]}", key


def warehouse_namespace(dsn: str) -> str:
    """A server's `clickhouse://host:port`; the embedded engine's `chdb://<data dir>`."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        return f"chdb://{parts.netloc}{parts.path}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"clickhouse://{host}:{parts.port or (8443 if parts.scheme == 'https' else 8123)}"


def job_namespace(settings: Settings) -> str:
    return f"{JOB_SCHEME}://{settings.warehouse_database}"


def run_uuid(job_ns: str, run_id: str) -> str:
    """OpenLineage's runId of a platform run: the same run id, the same UUID, in any process."""
    return str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, job_ns), run_id))


def event_id(run_uuid_: str, event_type: str) -> str:
    return str(uuid.uuid5(uuid.UUID(run_uuid_), event_type))


# --- the emitter ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LineageRun:
    """A started run: what its COMPLETE or FAIL repeats (job, inputs, outputs, parameters)."""

    emitter: LineageEmitter
    run_id: str
    job: str
    inputs: tuple[LineageDataset, ...]
    outputs: tuple[LineageDataset, ...]
    params: Mapping[str, Any] | None = None

    @property
    def run_uuid(self) -> str:
        return self.emitter.run_uuid(self.run_id)

    def complete(self, output_stats: Mapping[LineageDataset | str, int] | None = None, *,
                 event_time: dt.datetime | None = None) -> dict[str, Any]:
        return self.emitter.complete(self.run_id, job=self.job, inputs=self.inputs, outputs=self.outputs,
                                     output_stats=output_stats, params=self.params, event_time=event_time)

    def fail(self, error: BaseException | str, *, event_time: dt.datetime | None = None) -> dict[str, Any] | None:
        return self.emitter.fail(self.run_id, job=self.job, error=error, inputs=self.inputs, outputs=self.outputs,
                                 params=self.params, event_time=event_time)


class LineageEmitter:
    """Emits the OpenLineage run events of one process's runs: to `lineage_events`, and to the
    configured server. Thread-safe; one per process is enough (close it at the end)."""

    def __init__(self, settings: Settings, warehouse: Warehouse) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.job_namespace = job_namespace(settings)
        self._delivery = _Delivery.of(settings) if settings.openlineage_url is not None else None

    @classmethod
    def from_settings(cls, settings: Settings) -> LineageEmitter:
        """With this process's warehouse (the embedded one needs Ray initialised)."""
        return cls(settings, connect_warehouse(settings))

    def __reduce__(self) -> tuple[Any, ...]:
        # into a Ray task or actor: a new emitter there, with a delivery thread of its own
        return LineageEmitter, (self.settings, self.warehouse)

    # -- the events ---------------------------------------------------------------------------
    def start(self, run_id: str, *, job: str, inputs: Sequence[LineageDataset] = (),
              outputs: Sequence[LineageDataset] = (), params: Mapping[str, Any] | None = None,
              event_time: dt.datetime | None = None) -> LineageRun:
        """START of a run. Raises what the warehouse raises (as the run's own writes would)."""
        run = LineageRun(self, run_id, job, tuple(inputs), tuple(outputs), params)
        self._emit(self.event(RunState.START, run_id, job=job, inputs=run.inputs, outputs=run.outputs,
                              params=params, event_time=event_time), run_id)
        return run

    def complete(self, run_id: str, *, job: str, inputs: Sequence[LineageDataset] = (),
                 outputs: Sequence[LineageDataset] = (), output_stats: Mapping[LineageDataset | str, int] | None = None,
                 params: Mapping[str, Any] | None = None, event_time: dt.datetime | None = None) -> dict[str, Any]:
        """COMPLETE of a run; `output_stats` gives rows written per output (keyed by the output or its
        name). Returns the event. Raises what the warehouse raises."""
        rows = _rows_per_output(tuple(outputs), output_stats or {})
        return self._emit(self.event(RunState.COMPLETE, run_id, job=job, inputs=inputs, outputs=outputs,
                                     params=params, rows=rows, event_time=event_time), run_id)

    def fail(self, run_id: str, *, job: str, error: BaseException | str, inputs: Sequence[LineageDataset] = (),
             outputs: Sequence[LineageDataset] = (), params: Mapping[str, Any] | None = None,
             event_time: dt.datetime | None = None) -> dict[str, Any] | None:
        """FAIL of a run, with the error's message (and stack trace). Never raises: it is called while
        handling the run's own error, which must stay the one raised. A warehouse that cannot take the
        event is logged (the server still gets it); an event that cannot even be built is logged and
        None is returned."""
        try:
            event = self.event(RunState.FAIL, run_id, job=job, inputs=inputs, outputs=outputs, params=params,
                               error=error, event_time=event_time)
        except Exception:  # noqa: BLE001 - see the docstring
            log.warning("lineage: could not build the FAIL event of run %s", run_id, exc_info=True)
            return None
        return self._emit(event, run_id, quiet=True)

    def run_uuid(self, run_id: str) -> str:
        return run_uuid(self.job_namespace, run_id)

    def event(self, state: RunState, run_id: str, *, job: str, inputs: Sequence[LineageDataset] = (),
              outputs: Sequence[LineageDataset] = (), params: Mapping[str, Any] | None = None,
              rows: Mapping[LineageDataset, int] | None = None, error: BaseException | str | None = None,
              event_time: dt.datetime | None = None) -> RunEvent:
        """The RunEvent, built and not emitted."""
        when = _to_ms(event_time or utc_now())
        run_facets: dict[str, Any] = {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=_version("ray"), name="Ray", openlineageAdapterVersion=VERSION, producer=PRODUCER)}
        if params:
            run_facets["executionParameters"] = execution_parameters_run.ExecutionParametersRunFacet(
                parameters=[execution_parameters_run.ExecutionParameter(key=str(k), value=_parameter(v))
                            for k, v in sorted(params.items(), key=lambda kv: str(kv[0]))], producer=PRODUCER)
        if error is not None:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error_message(error), programmingLanguage="python", stackTrace=_stack(error),
                producer=PRODUCER)
        job_facets: dict[str, Any] = {"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="SENTINEL_RAY", jobType="JOB", producer=PRODUCER)}
        return RunEvent(
            eventType=state, eventTime=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            run=Run(runId=self.run_uuid(run_id), facets=run_facets),
            job=Job(namespace=self.job_namespace, name=job, facets=job_facets),
            # an empty facets object is left out (None), not sent as {}
            inputs=[InputDataset(*self._location(d), facets=self._facets(d) or None, inputFacets=None)
                    for d in inputs],
            outputs=[OutputDataset(*self._location(d), facets=self._facets(d) or None,
                                   outputFacets=_statistics(rows, d) or None) for d in outputs],
            producer=PRODUCER)

    def _location(self, d: LineageDataset) -> tuple[str, str]:
        if d.place == LAKE:
            return lake_location(self.settings.resolved_lake_uri, d.name)
        if d.place == WAREHOUSE:
            return warehouse_namespace(self.settings.resolved_warehouse_dsn), f"{self.settings.warehouse_database}.{d.name}"
        if d.place == REDIS:
            return _strip_secrets(self.settings.resolved_redis_url), d.name
        return d.place, d.name

    def _facets(self, d: LineageDataset) -> dict[str, Any]:
        if d.schema is None:
            return {}
        ds = dataset(d.schema)
        docs = {f.name: f.doc or None for f in ds.fields}
        if d.place == WAREHOUSE:
            typed = [(f.name, f.kind.clickhouse(not f.required)) for f in ds.fields]
        else:
            schema = ds.record_schema if d.place == REDIS else (
                ds.quarantine_schema if d.name.startswith("quarantine/") else ds.arrow_schema)
            typed = [(f.name, str(f.type)) for f in schema]
        fields = [schema_dataset.SchemaDatasetFacetFields(name=name, type=type_, description=docs.get(name),
                                                          ordinal_position=i, fields=None)
                  for i, (name, type_) in enumerate(typed, 1)]
        return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)}

    def _emit(self, event: RunEvent, run_id: str, *, quiet: bool = False) -> dict[str, Any]:
        body = Serde.to_json(event)
        try:
            self.warehouse.insert(LINEAGE_EVENTS.name, _row(run_id, event, body))
        except Exception:
            if not quiet:
                raise
            log.warning("lineage: could not store the %s event of run %s", event.eventType.value, run_id,
                        exc_info=True)
        finally:
            if self._delivery is not None:
                self._delivery.submit(event)
        return json.loads(body)

    # -- the server ---------------------------------------------------------------------------
    @property
    def http_stats(self) -> dict[str, int]:
        """Events sent to the server, failed, dropped (queue full or emitter closed), still pending."""
        return self._delivery.stats() if self._delivery else {"sent": 0, "failed": 0, "dropped": 0, "pending": 0}

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait (at most `timeout_s`, default openlineage_timeout_s) until the server has had every queued
        event; True when it has."""
        if self._delivery is None:
            return True
        return self._delivery.flush(self.settings.openlineage_timeout_s if timeout_s is None else timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Flush as `flush` does, then stop the delivery thread. Events emitted afterwards go to the
        table only."""
        if self._delivery is None:
            return True
        return self._delivery.close(self.settings.openlineage_timeout_s if timeout_s is None else timeout_s)

    def __enter__(self) -> LineageEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows_per_output(outputs: tuple[LineageDataset, ...],
                     stats: Mapping[LineageDataset | str, int]) -> dict[LineageDataset, int]:
    rows: dict[LineageDataset, int] = {}
    for key, count in stats.items():
        if isinstance(key, LineageDataset):
            matches = [d for d in outputs if d == key]
        else:
            matches = [d for d in outputs if d.name == key]
        if len(matches) != 1:
            named = ", ".join(f"{d.place}:{d.name}" for d in outputs) or "none"
            raise ValueError(f"output_stats: {key!r} names {'no' if not matches else 'more than one'} output of the "
                             f"run (its outputs: {named}); key it by the LineageDataset")
        rows[matches[0]] = int(count)
    return rows


def _statistics(rows: Mapping[LineageDataset, int] | None, d: LineageDataset) -> dict[str, Any]:
    if not rows or d not in rows:
        return {}
    return {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=rows[d], producer=PRODUCER)}


def error_message(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"


def _stack(error: BaseException | str) -> str | None:
    if isinstance(error, str) or error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))[-_STACK_CHARS:]


def _parameter(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float, dt.date, dt.time, PurePath)):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _to_ms(when: dt.datetime) -> dt.datetime:
    """UTC, to the millisecond: what the table keeps, so the stored event and the row agree."""
    if when.tzinfo is None:
        raise ValueError(f"event_time must be timezone-aware: {when!r}")
    when = when.astimezone(dt.timezone.utc)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _row(run_id: str, event: RunEvent, body: str) -> pa.Table:
    parsed = json.loads(body)
    error = parsed["run"].get("facets", {}).get("errorMessage", {}).get("message")
    row = {
        "event_id": event_id(event.run.runId, event.eventType.value),
        "event_time": dt.datetime.fromisoformat(event.eventTime.replace("Z", "+00:00")),
        "event_type": event.eventType.value, "run_id": run_id, "run_uuid": event.run.runId,
        "job_namespace": event.job.namespace, "job": event.job.name,
        "inputs": json.dumps(parsed.get("inputs", []), sort_keys=True),
        "outputs": json.dumps(parsed.get("outputs", []), sort_keys=True),
        "error": error, "event": body, "emitted_at": utc_now(),
    }
    return pa.Table.from_pylist([row], schema=LINEAGE_EVENTS.arrow_schema)


# --- delivery to the server ----------------------------------------------------------------

_STOP = object()


class _Delivery:
    """Events on their way to the OpenLineage server: a bounded queue, and one thread that POSTs
    them in order, so the emitting thread never waits on the network."""

    def __init__(self, transport: HttpTransport, target: str, timeout_s: float) -> None:
        self._transport = transport
        self.target = target  # for logs: no credentials
        self.timeout_s = timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_CAPACITY)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.sent = self.failed = self.dropped = 0
        self._unlogged = 0
        self._logged_at = -float("inf")

    @classmethod
    def of(cls, settings: Settings) -> _Delivery:
        base = str(settings.openlineage_url).rstrip("/") + "/"  # urljoin keeps a base path only before a '/'
        endpoint = settings.openlineage_endpoint.lstrip("/")
        key = settings.openlineage_api_key
        auth = ApiKeyTokenProvider({"api_key": key.get_secret_value()}) if key is not None else TokenProvider({})
        config = HttpConfig(url=base, endpoint=endpoint, timeout=settings.openlineage_timeout_s, auth=auth,
                            retry=dict(_RETRY))
        return cls(HttpTransport(config), _strip_secrets(urljoin(base, endpoint)), settings.openlineage_timeout_s)

    def submit(self, event: RunEvent) -> None:
        with self._lock:
            if self._closed:
                self.dropped += 1
                closed = True
            else:
                closed = False
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="openlineage-delivery", daemon=True)
                    self._thread.start()
                    atexit.register(self._at_exit)
        if closed:
            self._note("the emitter is closed")
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            self._note(f"{QUEUE_CAPACITY} events are waiting for it")

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is _STOP:
                    self._transport.close()
                    return
                try:
                    self._transport.emit(event)
                except Exception as e:  # noqa: BLE001 - the server is best effort; counted and logged
                    with self._lock:
                        self.failed += 1
                    self._note(_describe(e))
                else:
                    with self._lock:
                        self.sent += 1
            finally:
                self._queue.task_done()

    def _note(self, problem: str) -> None:
        """Log a delivery problem, at most once every LOG_EVERY_S, with the events lost since the last."""
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._logged_at < LOG_EVERY_S:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
            failed, dropped = self.failed, self.dropped
        log.warning("lineage: OpenLineage server %s: %s; %d event(s) not delivered since the last report "
                    "(%d failed, %d dropped in all; every event is in the lineage_events table)",
                    self.target, problem, count, failed, dropped)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                    "pending": self._queue.unfinished_tasks}

    def flush(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def close(self, timeout_s: float) -> bool:
        with self._lock:
            self._closed, thread = True, self._thread
        delivered = self.flush(timeout_s)
        if thread is not None:
            atexit.unregister(self._at_exit)
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass  # the thread is a daemon: it goes with the process
            else:
                if delivered:
                    thread.join(1.0)  # idle: it only has the stop to take
        with self._lock:
            unlogged, self._unlogged = self._unlogged, 0
            failed, dropped = self.failed, self.dropped
        if unlogged:
            log.warning("lineage: OpenLineage server %s: %d more event(s) not delivered (%d failed, %d dropped in "
                        "all; every event is in the lineage_events table)", self.target, unlogged, failed, dropped)
        return delivered

    def _at_exit(self) -> None:
        # a job's last events (its COMPLETE) are emitted just before the process ends
        self.flush(self.timeout_s)


def _describe(e: Exception) -> str:
    response = getattr(e, "response", None)
    status = f" (HTTP {response.status_code})" if getattr(response, "status_code", None) else ""
    return f"{type(e).__name__}{status}: {str(e)[:300]}"


# --- reading them back ---------------------------------------------------------------------

_COLUMNS = "event_id, event_time, event_type, run_id, run_uuid, job_namespace, job, inputs, outputs, error, event"


def events_of(warehouse: Warehouse, run_id: str) -> list[dict[str, Any]]:
    """The events of one run, in order (START first); inputs, outputs and event parsed from JSON."""
    rows = warehouse.query_rows(
        f"SELECT {_COLUMNS} FROM {{db}}.`{LINEAGE_EVENTS.name}` FINAL WHERE run_id = {{run_id:String}} "
        "ORDER BY emitted_at DESC LIMIT 1 BY event_id", {"run_id": run_id})
    return sorted((_parsed(r) for r in rows), key=lambda r: (r["event_time"], _ORDER.get(r["event_type"], 99)))


def recent(warehouse: Warehouse, *, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest events, newest first, of one job or of all."""
    rows = warehouse.query_rows(
        f"SELECT {_COLUMNS} FROM {{db}}.`{LINEAGE_EVENTS.name}` FINAL "
        "WHERE {job:String} = '' OR job = {job:String} "
        "ORDER BY event_time DESC, emitted_at DESC LIMIT 1 BY event_id LIMIT {limit:UInt32}",
        {"job": job or "", "limit": limit})
    return [_parsed(r) for r in rows]


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "event_time": as_utc(row["event_time"]), "inputs": json.loads(row["inputs"]),
            "outputs": json.loads(row["outputs"]), "event": json.loads(row["event"])}
