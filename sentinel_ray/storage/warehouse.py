"""The ClickHouse warehouse, through clickhouse-connect only.

One DSN setting picks the engine: `chdb:///dir` runs the real ClickHouse engine inside
the process (embedded default), `http(s)://host:8123` talks to a server. chdb allows a
single process per data directory, so in embedded mode every caller goes through one
named Ray actor that owns the client (`WarehouseActor`); with a server each process
connects itself. Both are used through the same `Warehouse` interface.

Values always travel as server-side parameters (`{ticker:String}`); the only text put
into SQL is the database name, which the settings restrict to an identifier.

The schema is versioned: `ensure_schema` applies the pending migrations of
`storage/migrations.py` (recorded in the database's `schema_migrations`) and checks the
tables against schemas.py; see that module for the rules and for how concurrent starts
are kept from applying one twice.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.records import (ErrorKind, SentinelError, WarehouseError, WarehouseRefused, WarehouseUnavailable,
                                  classify)
from sentinel_ray.runtime import RAY_NAMESPACE, on_the_head_node
from sentinel_ray.schemas import dataset
from sentinel_ray.storage import migrations, rollups
from sentinel_ray.storage.migrations import SchemaStatus

ACTOR_NAME = "sentinel-warehouse"
_ERROR_CHARS = 1_000  # ClickHouse messages can quote a whole statement
_MAPPED = {ErrorKind.TRANSIENT: WarehouseUnavailable, ErrorKind.TERMINAL: WarehouseRefused}
# Every table is a ReplacingMergeTree read with FINAL (or merged by OPTIMIZE ... FINAL), and
# no insert holds one key twice (the pipeline drops in-batch duplicates; features and risk
# have one row per bar), so the merge ClickHouse would run on each inserted block finds
# nothing to do: skipping it cuts a third of the engine's insert time (measured: 68 -> 44 ms
# for 70k feature rows).
INSERT_SETTINGS = {"optimize_on_insert": 0}


@contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Driver errors as the platform's, original as __cause__: WarehouseUnavailable when a
    retry may help, WarehouseRefused when it will not, WarehouseError when unknown."""
    try:
        yield
    except SentinelError:
        raise
    except Exception as e:  # noqa: BLE001 - every driver error is mapped, none swallowed
        cls = _MAPPED.get(classify(e), WarehouseError)
        raise cls(f"{what}: {type(e).__name__}: {str(e)[:_ERROR_CHARS]}") from e


class Warehouse(Protocol):
    database: str

    def ensure_schema(self) -> None: ...
    def migrate(self) -> SchemaStatus: ...
    def schema_status(self) -> SchemaStatus: ...
    def insert(self, dataset_name: str, table: pa.Table) -> int: ...
    def insert_started(self, dataset_name: str, table: pa.Table) -> Callable[[], int]: ...
    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table: ...
    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...
    def ping(self) -> bool: ...


class ClickHouseWarehouse:
    """A clickhouse-connect client for one DSN; the SQL `{db}` placeholder names the database."""

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = database
        self._client: Any = None
        # clickhouse-connect clients are not safe for concurrent queries; actors may
        # run several calls at once, so serialise here.
        self._lock = threading.RLock()

    @property
    def client(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            with mapped_errors(f"cannot open warehouse {self._safe_dsn()}"):
                self._client = clickhouse_connect.get_client(dsn=self.dsn)
        return self._client

    def _safe_dsn(self) -> str:
        # never log credentials embedded in a DSN
        if "@" in self.dsn:
            scheme, rest = self.dsn.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.dsn

    def _sql(self, sql: str) -> str:
        return sql.replace("{db}", f"`{self.database}`")

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb://")

    def ensure_schema(self) -> None:
        """The database at this code's schema version, checked against schemas.py (or SchemaMismatch)."""
        self.migrate()

    def migrate(self) -> SchemaStatus:
        """Apply the pending migrations; the status says which ran. Under this client's lock, so
        one process's callers take turns; a chdb engine has no other process, a server has the
        migrations' lease for those."""
        with self._lock:
            status = migrations.migrate(self, exclusive=self.embedded)
        rollups.fill_if_empty(self)  # a warehouse that has just had migration 6 (roll-ups are code, not schema)
        return status

    def schema_status(self) -> SchemaStatus:
        """Applied and pending migrations, changing nothing."""
        with self._lock:
            return migrations.read_status(self)

    def insert(self, dataset_name: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        ds = dataset(dataset_name)
        table = table.select(ds.column_names)
        with self._lock, mapped_errors(f"insert into {ds.name}"):
            self.client.insert_arrow(f"`{self.database}`.`{ds.name}`", table, settings=INSERT_SETTINGS)
        return table.num_rows

    def insert_started(self, dataset_name: str, table: pa.Table) -> Callable[[], int]:
        """`insert`, returning a call that waits for it: here it is done before returning
        (a client of a server has nothing to overlap it with in this process)."""
        rows = self.insert(dataset_name, table)
        return lambda: rows

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        with self._lock, mapped_errors("query"):
            return self.client.query_arrow(self._sql(sql), parameters=parameters or {})

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock, mapped_errors("query"):
            result = self.client.query(self._sql(sql), parameters=parameters or {})
            return [dict(zip(result.column_names, row)) for row in result.result_rows]

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock, mapped_errors("command"):
            return self.client.command(self._sql(sql), parameters=parameters or {})

    def ping(self) -> bool:
        try:
            with self._lock:
                return self.client.command("SELECT 1") == 1
        except Exception:  # noqa: BLE001 - a health probe answers, it does not raise
            return False

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class ActorWarehouse:
    """Client side of the embedded warehouse: forwards each call to the owning actor."""

    def __init__(self, handle: Any, database: str) -> None:
        self._handle = handle
        self.database = database

    def _call(self, method: str, *args: Any) -> Any:
        return self._result(self._start(method, *args))

    def _start(self, method: str, *args: Any) -> Any:
        """The call sent to the owner; its result (an ObjectRef) is read by `_result`."""
        return self._handle.call.remote(self.database, method, *args)

    def _result(self, ref: Any) -> Any:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, WarehouseError):  # the owner's own error, without Ray's wrapping
                raise e.cause from None
            raise
        except ray.exceptions.RayActorError as e:
            raise WarehouseUnavailable(f"the warehouse actor is not available ({type(e).__name__}); "
                                       f"Ray restarts it") from e

    def ensure_schema(self) -> None:
        self._call("ensure_schema")

    def migrate(self) -> SchemaStatus:
        return self._call("migrate")

    def schema_status(self) -> SchemaStatus:
        return self._call("schema_status")

    def insert(self, dataset_name: str, table: pa.Table) -> int:
        return self._call("insert", dataset_name, table)

    def insert_started(self, dataset_name: str, table: pa.Table) -> Callable[[], int]:
        """Start the insert in the owner and return a call that waits for it (its rows, or its
        error): the caller goes on with its own work while the owner writes."""
        ref = self._start("insert", dataset_name, table)
        return lambda: self._result(ref)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        return self._call("query_arrow", sql, parameters)

    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._call("query_rows", sql, parameters)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._call("command", sql, parameters)

    def ping(self) -> bool:
        try:
            return bool(self._call("ping"))
        except Exception:  # noqa: BLE001 - a dead actor is an unhealthy warehouse
            return False


class DeferredInserts:
    """A warehouse whose inserts are only started: each runs while the caller goes on (in an
    embedded warehouse's owner actor, another process), and `wait` waits for them all.

    For a batch's signals: its features and risk inserts run in the owner while the driver
    writes the lake files and computes risk and alerts. Everything else (queries, commands)
    goes straight through; a batch's reads never need its own writes (they read earlier
    batches' rows, and stored data rows).

    Inserts run side by side in the owner, so they can land in any order. An insert into one
    of the `last` datasets (rows that point at the others: an alert at its risk and features)
    first waits for those started before it, so nobody reads such a row before what it
    points at."""

    def __init__(self, warehouse: Warehouse, *, last: tuple[str, ...] = ()) -> None:
        self._warehouse = warehouse
        self._last = frozenset(last)
        self._started: list[Callable[[], int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._warehouse, name)

    def insert(self, dataset_name: str, table: pa.Table) -> int:
        if table.num_rows:
            if dataset_name in self._last:
                self.wait()  # its error, if one failed, is the batch's: this row is not written
            self._started.append(self._warehouse.insert_started(dataset_name, table))
        return table.num_rows

    def wait(self) -> None:
        """Until every insert started has finished; the first one's error is raised, after all
        of them are done (none lands after the caller moved on: a retry writes the same keys)."""
        started, self._started = self._started, []
        error: BaseException | None = None
        for done in started:
            try:
                done()
            except BaseException as e:  # noqa: BLE001 - raised below, once the rest are done
                error = error or e
        if error is not None:
            raise error


class WarehouseOwner:
    """The one process that opens a chdb data dir; serves every database in it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._warehouses: dict[str, ClickHouseWarehouse] = {}
        self._lock = threading.RLock()
        self._suspended_until = 0.0

    def _for(self, database: str) -> ClickHouseWarehouse:
        with self._lock:
            if database not in self._warehouses:
                warehouse = ClickHouseWarehouse(self.dsn, database)
                shared = next(iter(self._warehouses.values()), None)
                if shared is not None:  # one engine per process: share its client and lock
                    warehouse._client, warehouse._lock = shared.client, shared._lock
                self._warehouses[database] = warehouse
            return self._warehouses[database]

    def call(self, database: str, method: str, *args: Any) -> Any:
        if time.monotonic() < self._suspended_until:
            raise WarehouseUnavailable("warehouse suspended for maintenance (suspend()); retry later")
        return getattr(self._for(database), method)(*args)

    def suspend(self, seconds: float) -> None:
        """Refuse every call for `seconds`: outage drills, and tests of what depends on the warehouse."""
        self._suspended_until = time.monotonic() + seconds

    def opened_dsn(self) -> str:
        return self.dsn


def _owner_actor() -> Any:
    import ray

    return ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3, max_concurrency=8)(WarehouseOwner)


def connect_warehouse(settings: Settings) -> Warehouse:
    """The warehouse for this process: a direct client for a server, the owner actor for chdb.

    In embedded mode Ray must be initialised; the actor is created on first use
    (detached, so jobs submitted later share it) and found by name afterwards.
    """
    dsn = settings.resolved_warehouse_dsn
    if not settings.warehouse_is_embedded:
        return ClickHouseWarehouse(dsn, settings.warehouse_database)
    import ray

    if not ray.is_initialized():
        raise WarehouseRefused("the embedded (chdb) warehouse is owned by a Ray actor: call ray.init first")
    # On the head node, always: the embedded engine's data dir is on the head's disk, and the
    # owner must outlive any worker node (a restart elsewhere would open an empty warehouse).
    handle = _owner_actor().options(
        name=ACTOR_NAME, namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=on_the_head_node(),
    ).remote(dsn)
    opened = ray.get(handle.opened_dsn.remote())
    if opened != dsn:
        raise WarehouseRefused(f"this Ray cluster's embedded warehouse is {opened}, not {dsn}: chdb opens one "
                             f"data dir per process; use the same SENTINEL_DATA_DIR or a ClickHouse server")
    return ActorWarehouse(handle, settings.warehouse_database)


def stop_embedded_warehouse() -> None:
    """Kill the owner actor (it is detached, so Ray would otherwise keep it)."""
    import ray

    try:
        handle = ray.get_actor(ACTOR_NAME, namespace=RAY_NAMESPACE)
    except ValueError:
        return
    ray.kill(handle, no_restart=True)
