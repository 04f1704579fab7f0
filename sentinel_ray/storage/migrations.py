"""Versioned, forward-only migrations of the warehouse schema.

`ensure_schema` (every start, `sentinel-ray migrate`) applies, in order, the migrations of
`MIGRATIONS` that a database has not had yet and records each in its `schema_migrations`
table; then it checks the tables against `schemas.py`.

The rules of the chain
- Append only. A migration, once merged, is never edited, renumbered or removed: its
  checksum is recorded where it was applied, and a start against a warehouse whose record
  differs, or that lacks a migration older than one it has, refuses (`SchemaMismatch`).
  A schema change is a new `Migration(N + 1, ...)` at the end.
- Every statement is idempotent: `CREATE TABLE IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`,
  `DROP COLUMN IF EXISTS`, `RENAME COLUMN IF EXISTS`, `MODIFY COLUMN` (to the type it
  already has: a no-op). A migration interrupted half-way is run again whole at the next
  start, and two processes that both ran one would end in the same state.
- Statements name the database `{db}` (the warehouse puts its name in) and carry no values.
- schemas.py stays the one definition of every table. tests/storage/test_migrations.py
  builds a database from the migrations alone and compares it with what schemas.py derives
  (`schema_drift`): a field added, dropped, renamed or retyped in schemas.py without its
  migration fails there, with the `Migration(...)` to append. `ensure_schema` runs the same
  comparison after migrating and refuses to start on what would break writes or
  idempotence (a missing column, another type, another key); extra columns (a newer
  release's, during a rolling upgrade) and another column order are only logged.
- New fields: `ADD COLUMN IF NOT EXISTS ... AFTER <the field before it in schemas.py>`, so
  an upgraded table and a fresh one list their columns in the same order. Existing rows
  read the column's default: NULL for a `Nullable` (optional) field, the `DEFAULT` the
  migration gives for a required one (without one, ClickHouse's zero value).

Version 1 is the baseline: every table as schemas.py derived it when migrations were
introduced, written out here (frozen: were it derived at run time, a new field would reach
fresh warehouses while existing ones never got it, and the check above could not see the
difference). A fresh warehouse is created by it in one step. Warehouses created before
migrations existed hold tables from an earlier schemas.py (CREATE TABLE IF NOT EXISTS left
them as they were): version 1 creates only the tables they lack, 2 and 3 bring the older
ones up to the baseline, and on a fresh warehouse 2 and 3 change nothing, so both end
identical (tested from the DDL of commits 02f4eec and 8e1f259). Warehouses older than
787cff7 (2026-11-26) keyed quality_metrics without `batch`, which no ALTER can change:
the check refuses them and says so (drop that table; its rows are re-measured by the runs).

Concurrent starts. Embedded (chdb): one process owns the data directory (the
`sentinel-warehouse` actor) and its warehouse lock serialises every caller, so a migration
runs once. With a server (`http://`), processes coordinate through a lease in the database
itself (`schema_migrations_lock`): each writer inserts a claim stamped by the server's
clock, waits a moment so claims made at the same time are all visible, and the earliest
unexpired claim migrates while the others wait (their own claims kept alive) and then find
nothing pending. The holder renews the lease after each migration; one that dies lets it
expire (`LEASE_S`) and the next claimant takes over. The lease is only taken when something
is pending, so an up-to-date warehouse starts without waiting. Should two writers still
overlap (a lease expired under a migration slower than `LEASE_S`, or a replicated cluster
whose replicas lag each other), the statements are idempotent and the history keeps every
application (a version listed twice by `sentinel-ray migrate --dry-run` is the sign).

Bookkeeping tables are not datasets of schemas.py: they must exist before any migration
runs, so their shape can never depend on one.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Mapping, Protocol, Sequence

from sentinel_ray.records import WarehouseError, WarehouseRefused, WarehouseUnavailable
from sentinel_ray.schemas import ALL_DATASETS, Dataset, Field, Kind

log = logging.getLogger(__name__)

HISTORY_TABLE = "schema_migrations"
LOCK_TABLE = "schema_migrations_lock"
BOOKKEEPING_TABLES = frozenset({HISTORY_TABLE, LOCK_TABLE})
LEASE_S = 300  # a holder renews after each migration; a dead one's lease lapses after this
SETTLE_S = 1.0  # claims made within this of each other are all visible before one is chosen
POLL_S = 1.0


class SchemaMismatch(WarehouseRefused):
    """The warehouse's schema or migration history disagrees with this code's."""


@dataclass(frozen=True)
class Migration:
    """One step of the schema: its statements run in order, `{db}` naming the database."""

    version: int
    description: str
    statements: Sequence[str]  # kept as a tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "statements", tuple(self.statements))

    @property
    def checksum(self) -> str:
        """sha256 of the statements (leading and trailing blanks aside): what was applied."""
        return hashlib.sha256("\n;\n".join(s.strip() for s in self.statements).encode()).hexdigest()




# --- the chain -----------------------------------------------------------------------------
# Version 1, frozen: what `Dataset.ddl` gave for every dataset at bcad2f8. Never edit it.
_BASELINE: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {db}.`prices` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `interval` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `open` Float64,
    `high` Float64,
    `low` Float64,
    `close` Float64,
    `volume` Int64,
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `interval`, `source`, `ts`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`posts` (
    `platform` LowCardinality(String),
    `post_id` String,
    `author` Nullable(String),
    `text` String,
    `ts` DateTime64(3, 'UTC'),
    `url` Nullable(String),
    `engagement` Nullable(Int64),
    `tickers` Array(LowCardinality(String)),
    `sentiment` Nullable(Float64),
    `promo_score` Nullable(Float64),
    `is_pump_signal` Nullable(Bool),
    `promo_evidence` Array(LowCardinality(String)),
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`platform`, `post_id`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`filings` (
    `exchange` LowCardinality(String),
    `filing_id` String,
    `ticker` LowCardinality(Nullable(String)),
    `company` String,
    `subject` String,
    `details` Nullable(String),
    `ts` DateTime64(3, 'UTC'),
    `attachment_url` Nullable(String),
    `source` LowCardinality(String),
    `run_id` LowCardinality(String),
    `ingested_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`ingested_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`exchange`, `filing_id`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`pipeline_runs` (
    `run_id` String,
    `pipeline` LowCardinality(String),
    `params` String,
    `started_at` DateTime64(3, 'UTC'),
    `ended_at` Nullable(DateTime64(3, 'UTC')),
    `status` LowCardinality(String),
    `rows_in` Int64,
    `rows_valid` Int64,
    `rows_quarantined` Int64,
    `error` Nullable(String),
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`updated_at`)
PARTITION BY toYYYYMM(`started_at`)
ORDER BY (`pipeline`, `run_id`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`quality_metrics` (
    `run_id` LowCardinality(String),
    `batch` String,
    `pipeline` LowCardinality(String),
    `dataset` LowCardinality(String),
    `source` LowCardinality(String),
    `metric` LowCardinality(String),
    `column` LowCardinality(String),
    `value` Float64,
    `measured_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`measured_at`)
PARTITION BY toYYYYMM(`measured_at`)
ORDER BY (`dataset`, `source`, `metric`, `column`, `run_id`, `batch`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`quality_alerts` (
    `alert_id` String,
    `raised_at` DateTime64(3, 'UTC'),
    `dataset` LowCardinality(String),
    `source` LowCardinality(String),
    `kind` LowCardinality(String),
    `severity` LowCardinality(String),
    `message` String,
    `value` Nullable(Float64),
    `threshold` Nullable(Float64)
)
ENGINE = ReplacingMergeTree(`raised_at`)
PARTITION BY toYYYYMM(`raised_at`)
ORDER BY (`alert_id`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`backfill_days` (
    `source` LowCardinality(String),
    `day` DateTime64(3, 'UTC'),
    `run_id` String,
    `rows_in` Int64,
    `rows_valid` Int64,
    `rows_quarantined` Int64,
    `finished_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`finished_at`)
PARTITION BY toYYYYMM(`day`)
ORDER BY (`source`, `day`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`features_1m` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `close` Float64,
    `volume` Int64,
    `ret_1m` Nullable(Float64),
    `ret_5m` Nullable(Float64),
    `ret_15m` Nullable(Float64),
    `ret_60m` Nullable(Float64),
    `ret_prev_close` Nullable(Float64),
    `volume_z` Nullable(Float64),
    `volume_ratio` Nullable(Float64),
    `range_pct` Nullable(Float64),
    `gap_pct` Nullable(Float64),
    `posts_15m` Int64,
    `posts_60m` Int64,
    `promo_posts_15m` Int64,
    `promo_posts_60m` Int64,
    `posts_z` Nullable(Float64),
    `promo_z` Nullable(Float64),
    `authors_60m` Int64,
    `platforms_60m` Int64,
    `sentiment_60m` Nullable(Float64),
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `ts`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`features_1d` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `day` DateTime64(3, 'UTC'),
    `close` Float64,
    `volume` Int64,
    `ret_1d` Nullable(Float64),
    `ret_5d` Nullable(Float64),
    `ret_20d` Nullable(Float64),
    `volume_vs_median_20d` Nullable(Float64),
    `posts` Int64,
    `promo_posts` Int64,
    `posts_vs_median_20d` Nullable(Float64),
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`day`)
ORDER BY (`ticker`, `exchange`, `day`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`risk_1m` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `ts` DateTime64(3, 'UTC'),
    `score` Float64,
    `volume_score` Float64,
    `price_score` Float64,
    `promo_score` Float64,
    `chatter_score` Float64,
    `reasons` String,
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`ts`)
ORDER BY (`ticker`, `exchange`, `ts`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`alerts` (
    `alert_id` String,
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `opened_at` DateTime64(3, 'UTC'),
    `last_bar_ts` DateTime64(3, 'UTC'),
    `peak_score` Float64,
    `peak_ts` DateTime64(3, 'UTC'),
    `state` LowCardinality(String),
    `disposition` LowCardinality(Nullable(String)),
    `reasons` String,
    `evidence_start` DateTime64(3, 'UTC'),
    `evidence_end` DateTime64(3, 'UTC'),
    `post_ids` Array(LowCardinality(String)),
    `detected_by` LowCardinality(String),
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`updated_at`)
PARTITION BY toYYYYMM(`opened_at`)
ORDER BY (`alert_id`)""",
    """CREATE TABLE IF NOT EXISTS {db}.`alert_events` (
    `event_id` String,
    `alert_id` String,
    `at` DateTime64(3, 'UTC'),
    `actor` LowCardinality(String),
    `action` LowCardinality(String),
    `from_state` LowCardinality(Nullable(String)),
    `to_state` LowCardinality(String),
    `disposition` LowCardinality(Nullable(String)),
    `note` Nullable(String)
)
ENGINE = ReplacingMergeTree(`at`)
PARTITION BY toYYYYMM(`at`)
ORDER BY (`alert_id`, `event_id`)""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: every table as schemas.py defined it at bcad2f8", _BASELINE),
    # Tables created before 7d89135 (detect/ and post enrichment) lack these; a no-op on newer ones.
    Migration(2, "posts: sentiment, promo_score, is_pump_signal, promo_evidence; risk_1m: the four sub-scores", [
        "ALTER TABLE {db}.`posts`\n"
        "    ADD COLUMN IF NOT EXISTS `sentiment` Nullable(Float64) AFTER `tickers`,\n"
        "    ADD COLUMN IF NOT EXISTS `promo_score` Nullable(Float64) AFTER `sentiment`,\n"
        "    ADD COLUMN IF NOT EXISTS `is_pump_signal` Nullable(Bool) AFTER `promo_score`,\n"
        "    ADD COLUMN IF NOT EXISTS `promo_evidence` Array(LowCardinality(String)) AFTER `is_pump_signal`",
        # no DEFAULT clause, so an upgraded table and a fresh one are alike to the last detail:
        # the rows of before read 0 (no detector wrote risk_1m before 7d89135 anyway)
        "ALTER TABLE {db}.`risk_1m`\n"
        "    ADD COLUMN IF NOT EXISTS `volume_score` Float64 AFTER `score`,\n"
        "    ADD COLUMN IF NOT EXISTS `price_score` Float64 AFTER `volume_score`,\n"
        "    ADD COLUMN IF NOT EXISTS `promo_score` Float64 AFTER `price_score`,\n"
        "    ADD COLUMN IF NOT EXISTS `chatter_score` Float64 AFTER `promo_score`",
    ]),
    # Tables created before adce1dc stored the flag as 0/1; they become false/true. A no-op on newer ones.
    Migration(3, "posts.is_pump_signal: Nullable(Int64) -> Nullable(Bool)", [
        "ALTER TABLE {db}.`posts` MODIFY COLUMN `is_pump_signal` Nullable(Bool) SETTINGS mutations_sync = 2",
    ]),
    # Lineage: each row names the raw payload it was read from and its place in it. Rows
    # stored before this read NULL (their payloads are in the raw zone, unlinked).
    Migration(4, "prices, posts, filings: raw_id and raw_pos (lineage to the raw zone)", [
        f"ALTER TABLE {{db}}.`{table}` ADD COLUMN IF NOT EXISTS `raw_id` LowCardinality(Nullable(String)) "
        f"AFTER `ingested_at`, ADD COLUMN IF NOT EXISTS `raw_pos` Nullable(Int64) AFTER `raw_id`"
        for table in ("prices", "posts", "filings")
    ]),
    # OpenLineage run events of backfills, replays and stream batches (monitoring/lineage_events.py)
    Migration(5, "create lineage_events", [
        """CREATE TABLE IF NOT EXISTS {db}.`lineage_events` (
    `event_id` String,
    `event_time` DateTime64(3, 'UTC'),
    `event_type` LowCardinality(String),
    `run_id` String,
    `run_uuid` String,
    `job_namespace` LowCardinality(String),
    `job` LowCardinality(String),
    `inputs` String,
    `outputs` String,
    `error` Nullable(String),
    `event` String,
    `emitted_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`emitted_at`)
PARTITION BY toYYYYMM(`event_time`)
ORDER BY (`run_id`, `event_id`)""",
    ]),
    # 30-minute price roll-ups for the API's 1h and 1d bars (storage/rollups.py). Created
    # empty: the warehouse fills it from the stored 1m bars when it finds it empty
    # (`rollups.fill_if_empty`, after migrating), since how bars roll up is code, not schema.
    Migration(6, "create prices_30m", [
        """CREATE TABLE IF NOT EXISTS {db}.`prices_30m` (
    `ticker` LowCardinality(String),
    `exchange` LowCardinality(String),
    `bucket` DateTime64(3, 'UTC'),
    `open` Nullable(Float64),
    `high` Nullable(Float64),
    `low` Nullable(Float64),
    `close` Nullable(Float64),
    `volume` Int64,
    `bars` Int64,
    `last_ts` Nullable(DateTime64(3, 'UTC')),
    `computed_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`computed_at`)
PARTITION BY toYYYYMM(`bucket`)
ORDER BY (`ticker`, `exchange`, `bucket`)""",
    ]),
)


# --- bookkeeping ---------------------------------------------------------------------------

_HISTORY_DDL = f"""CREATE TABLE IF NOT EXISTS {{db}}.`{HISTORY_TABLE}` (
    `version` UInt32,
    `description` String,
    `checksum` String,
    `applied_at` DateTime64(3, 'UTC'),
    `applied_by` String,
    `duration_ms` UInt64
)
ENGINE = MergeTree
ORDER BY (`version`, `applied_at`)"""

_LOCK_DDL = f"""CREATE TABLE IF NOT EXISTS {{db}}.`{LOCK_TABLE}` (
    `token` String,
    `owner` String,
    `claimed_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    `updated_at` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(`updated_at`)
ORDER BY `token`
TTL toDateTime(`updated_at`) + INTERVAL 7 DAY"""


class SqlRunner(Protocol):
    """What migrations need of a warehouse (`ClickHouseWarehouse`): `{db}` is its database."""

    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...
    def query_rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    description: str
    checksum: str
    applied_at: dt.datetime  # UTC, the first application
    applied_by: str  # host:pid of the process that applied it
    duration_ms: int
    times: int  # applications recorded: 1, unless two writers overlapped (harmless: statements are idempotent)


@dataclass(frozen=True)
class SchemaStatus:
    database: str
    latest: int  # the last version this code knows
    applied: tuple[AppliedMigration, ...]  # recorded in the database, oldest first
    pending: tuple[Migration, ...]  # this code's migrations the database has not had, in order
    applied_now: tuple[int, ...] = ()  # versions this call applied
    unversioned: bool = False  # tables but no history: a warehouse from before migrations (v1.. adopt it)

    @property
    def version(self) -> int:
        return max((a.version for a in self.applied), default=0)

    @property
    def newer(self) -> tuple[AppliedMigration, ...]:
        """Versions applied by a newer release than this code (a rolling upgrade): tolerated."""
        return tuple(a for a in self.applied if a.version > self.latest)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _tables(runner: SqlRunner) -> dict[str, dict[str, Any]]:
    rows = runner.query_rows("SELECT name, engine, engine_full, sorting_key, partition_key FROM system.tables "
                             "WHERE database = {database:String}", {"database": runner.database})
    return {r["name"]: r for r in rows}


def _check_chain(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3 ... in order, without gaps: {versions}")
    empty = [m.version for m in migrations if not m.statements]
    if empty:
        raise ValueError(f"migrations without statements: {empty}")


def _read_history(runner: SqlRunner) -> tuple[AppliedMigration, ...]:
    # aliases differ from the columns: ClickHouse would read `applied_at` in argMin as the alias
    rows = runner.query_rows(
        "SELECT version AS v, argMin(description, applied_at) AS d, argMin(checksum, applied_at) AS c, "
        "min(applied_at) AS at, argMin(applied_by, applied_at) AS by, argMin(duration_ms, applied_at) AS ms, "
        f"count() AS n FROM {{db}}.`{HISTORY_TABLE}` GROUP BY version ORDER BY version")
    return tuple(AppliedMigration(int(r["v"]), r["d"], r["c"], _utc(r["at"]), r["by"], int(r["ms"]), int(r["n"]))
                 for r in rows)


def _pending(applied: Sequence[AppliedMigration], migrations: Sequence[Migration],
             database: str) -> tuple[Migration, ...]:
    """This code's migrations not yet applied; refuses a history this chain cannot continue."""
    known = {m.version: m for m in migrations}
    for a in applied:
        m = known.get(a.version)
        if m is None:
            continue  # a newer release's (a rolling upgrade): this chain is 1..n, so nothing else is unknown
        if a.checksum != m.checksum:
            raise SchemaMismatch(
                f"warehouse {database}: migration {m.version} ({m.description!r}) was applied with checksum "
                f"{a.checksum[:12]}, but this code's is {m.checksum[:12]}: an applied migration is never edited; "
                f"restore it in sentinel_ray/storage/migrations.py and append a new migration for the change")
    done = {a.version for a in applied}
    pending = tuple(m for m in migrations if m.version not in done)
    top = max((v for v in done if v in known), default=0)
    skipped = [m for m in pending if m.version < top]
    if skipped:
        m = skipped[0]
        raise SchemaMismatch(
            f"warehouse {database}: migration {m.version} ({m.description!r}) is not applied but {top} is: "
            f"migrations are appended, never inserted before applied ones; give it the next free number")
    return pending


def read_status(runner: SqlRunner, migrations: Sequence[Migration] = MIGRATIONS) -> SchemaStatus:
    """Applied and pending versions, changing nothing (`sentinel-ray migrate --dry-run`)."""
    _check_chain(migrations)
    tables = _tables(runner)
    applied = _read_history(runner) if HISTORY_TABLE in tables else ()
    unversioned = not applied and any(name not in BOOKKEEPING_TABLES for name in tables)
    return SchemaStatus(runner.database, migrations[-1].version, applied,
                        _pending(applied, migrations, runner.database), unversioned=unversioned)


def migrate(runner: SqlRunner, *, exclusive: bool, migrations: Sequence[Migration] = MIGRATIONS,
            check: bool = True, lease_s: float = LEASE_S, settle_s: float = SETTLE_S,
            poll_s: float = POLL_S) -> SchemaStatus:
    """Apply the pending migrations in order, then (`check`) compare the tables with schemas.py.

    `exclusive`: the caller is the only process that can write this database's schema (the
    chdb owner, under its lock); otherwise the server-side lease serialises writers."""
    runner.command("CREATE DATABASE IF NOT EXISTS {db}")
    runner.command(_HISTORY_DDL)
    status = read_status(runner, migrations)
    if status.pending:
        if exclusive:
            applied_now = _apply(runner, status.pending)
        else:
            with Lease(runner, lease_s=lease_s, settle_s=settle_s, poll_s=poll_s) as lease:
                # whoever held the lease before may have applied them meanwhile
                applied_now = _apply(runner, read_status(runner, migrations).pending, lease)
        status = replace(read_status(runner, migrations), applied_now=applied_now, unversioned=status.unversioned)
    for a in status.newer:
        log.warning("warehouse %s: version %d (%s) was applied by a newer release than this one (which knows up "
                    "to %d); carrying on", runner.database, a.version, a.description, status.latest)
    if check:
        check_schema(runner, migrations)
    return status


def _apply(runner: SqlRunner, pending: Sequence[Migration], lease: Lease | None = None) -> tuple[int, ...]:
    applied = []
    for m in pending:
        started = time.monotonic()
        log.info("warehouse %s: applying migration %d (%s)", runner.database, m.version, m.description)
        for i, statement in enumerate(m.statements, 1):
            try:
                runner.command(statement)
            except WarehouseError as e:
                # nothing of this migration is recorded: the next start runs it again, whole
                raise type(e)(f"migration {m.version} ({m.description!r}), statement {i} of "
                              f"{len(m.statements)}: {e}") from e
        runner.command(f"INSERT INTO {{db}}.`{HISTORY_TABLE}` SELECT {{version:UInt32}}, {{description:String}}, "
                       "{checksum:String}, now64(3, 'UTC'), {applied_by:String}, {duration_ms:UInt64}",
                       {"version": m.version, "description": m.description, "checksum": m.checksum,
                        "applied_by": _owner(), "duration_ms": int((time.monotonic() - started) * 1000)})
        applied.append(m.version)
        if lease is not None:
            lease.renew()
    return tuple(applied)


class Lease:
    """The schema-migration lease of one database on a shared server (see the module doc).

    Claims are rows stamped with the server's clock (no trust in clients' clocks); the
    earliest unexpired claim holds the lease. A waiter keeps its own claim alive, so its
    place in line stays while the holder works."""

    def __init__(self, runner: SqlRunner, *, lease_s: float = LEASE_S, settle_s: float = SETTLE_S,
                 poll_s: float = POLL_S, wait_s: float | None = None) -> None:
        self.runner = runner
        self.token = uuid.uuid4().hex
        self.owner = _owner()
        self.lease_ms = int(lease_s * 1000)
        self.settle_s, self.poll_s = settle_s, poll_s
        self.wait_s = 2 * lease_s if wait_s is None else wait_s  # a dead holder's lease lapses well before

    def _write(self, expires: str, parameters: dict[str, Any]) -> None:
        self.runner.command(
            f"INSERT INTO {{db}}.`{LOCK_TABLE}` SELECT token, owner, claimed_at, {expires}, now64(3, 'UTC') "
            f"FROM {{db}}.`{LOCK_TABLE}` FINAL WHERE token = {{token:String}}", {"token": self.token, **parameters})

    def holder(self) -> dict[str, Any] | None:
        rows = self.runner.query_rows(f"SELECT token, owner FROM {{db}}.`{LOCK_TABLE}` FINAL "
                                      "WHERE expires_at > now64(3, 'UTC') ORDER BY claimed_at, token LIMIT 1")
        return rows[0] if rows else None

    def renew(self) -> None:
        self._write("now64(3, 'UTC') + toIntervalMillisecond({lease_ms:UInt64})", {"lease_ms": self.lease_ms})

    def release(self) -> None:
        self._write("toDateTime64(0, 3, 'UTC')", {})

    def __enter__(self) -> Lease:
        self.runner.command(_LOCK_DDL)
        self.runner.command(
            f"INSERT INTO {{db}}.`{LOCK_TABLE}` SELECT {{token:String}}, {{owner:String}}, now64(3, 'UTC'), "
            "now64(3, 'UTC') + toIntervalMillisecond({lease_ms:UInt64}), now64(3, 'UTC')",
            {"token": self.token, "owner": self.owner, "lease_ms": self.lease_ms})
        try:
            self._wait_for_turn()
        except BaseException:
            with contextlib.suppress(Exception):  # the error that got here matters more
                self.release()  # a claim left behind would hold the others up until it lapsed
            raise
        return self

    def _wait_for_turn(self) -> None:
        time.sleep(self.settle_s)
        deadline = time.monotonic() + self.wait_s
        while True:
            holder = self.holder()
            if holder is not None and holder["token"] == self.token:
                return
            if time.monotonic() >= deadline:
                raise WarehouseUnavailable(
                    f"warehouse {self.runner.database}: {holder['owner'] if holder else 'another process'} has held "
                    f"the schema migration lease for over {self.wait_s:.0f} s; retry later")
            log.info("warehouse %s: %s is migrating the schema; waiting", self.runner.database,
                     holder["owner"] if holder else "another process")
            time.sleep(self.poll_s)
            self.renew()

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- schemas.py against the tables ---------------------------------------------------------

@dataclass(frozen=True)
class LiveTable:
    """A table as the database describes it (system.tables, system.columns)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, type), in position order
    engine: str  # ReplacingMergeTree(`version`) as in the DDL, without quotes
    sorting_key: str
    partition_key: str


_ENGINE = re.compile(r"\w+(\([^)]*\))?")  # ReplacingMergeTree(`v`) of 'ReplacingMergeTree(v) PARTITION BY ...'


def read_live_schema(runner: SqlRunner) -> dict[str, LiveTable]:
    """The database's tables of the MergeTree family (views and bookkeeping aside)."""
    tables = {name: t for name, t in _tables(runner).items()
              if t["engine"].endswith("MergeTree") and name not in BOOKKEEPING_TABLES and not name.startswith(".")}
    columns: dict[str, list[tuple[str, str]]] = {name: [] for name in tables}
    for r in runner.query_rows("SELECT table, name, type FROM system.columns WHERE database = {database:String} "
                               "ORDER BY table, position", {"database": runner.database}):
        if r["table"] in columns:
            columns[r["table"]].append((r["name"], r["type"]))
    return {name: LiveTable(name, tuple(columns[name]), _engine(t["engine_full"]), t["sorting_key"],
                            t["partition_key"]) for name, t in tables.items()}


def _engine(engine_full: str) -> str:
    match = _ENGINE.match(engine_full)
    return match.group(0) if match else engine_full


@dataclass(frozen=True)
class Drift:
    """One difference between schemas.py and the tables, with the migration that removes it."""

    problem: str
    description: str = ""  # of the migration to append
    statements: tuple[str, ...] = ()  # empty when no ALTER can do it (see `remedy`)
    fatal: bool = True  # breaks writes or idempotence: ensure_schema refuses to start
    remedy: str = ""  # when there is no statement to give, or a caveat to it

    def message(self, version: int) -> str:
        if not self.statements:
            return f"{self.problem}: {self.remedy}"
        text = f"{self.problem}: append Migration({version}, {self.description!r}, {list(self.statements)!r})"
        return f"{text} ({self.remedy})" if self.remedy else text


def drift_messages(drifts: Sequence[Drift], next_version: int) -> list[str]:
    """Each drift's message, numbering the migrations to append from `next_version`."""
    out, version = [], next_version
    for d in drifts:
        out.append(d.message(version))
        version += bool(d.statements)
    return out


_REQUIRED_DEFAULTS = {Kind.STRING: "''", Kind.SYMBOL: "''", Kind.FLOAT: "0", Kind.INT: "0", Kind.BOOL: "false",
                      Kind.SYMBOLS: "[]", Kind.TIMESTAMP: "toDateTime64(0, 3, 'UTC')"}


def _type(f: Field) -> str:
    return f.kind.clickhouse(not f.required)


def create_statement(ds: Dataset) -> str:
    """schemas.py's CREATE of a dataset as a migration writes it (`{db}` for the database)."""
    return ds.ddl("{db}").replace("`{db}`", "{db}", 1)


def _unkey(key: str) -> str:
    key = key.replace("`", "").strip()
    return key[1:-1] if key.startswith("(") and key.endswith(")") and key.count("(") == 1 else key


def schema_drift(live: Mapping[str, LiveTable],
                 datasets: Mapping[str, Dataset] = ALL_DATASETS) -> list[Drift]:
    """What differs between the tables of schemas.py and `live`, table by table."""
    drifts: list[Drift] = []
    for name, ds in datasets.items():
        table = live.get(name)
        if table is None:
            drifts.append(Drift(f"table {name} is in schemas.py but no migration creates it", f"create {name}",
                                (create_statement(ds),)))
            continue
        drifts += _column_drift(ds, table)
        drifts += _key_drift(ds, table)
    for name in sorted(set(live) - set(datasets)):
        drifts.append(Drift(f"table {name} is created by the migrations but schemas.py has no dataset {name}",
                            f"drop {name}", (f"DROP TABLE IF EXISTS {{db}}.`{name}`",), fatal=False,
                            remedy="this deletes its rows; define the dataset in schemas.py if it should stay"))
    return drifts


def _column_drift(ds: Dataset, table: LiveTable) -> list[Drift]:
    t, alter = ds.name, f"ALTER TABLE {{db}}.`{ds.name}`"
    live_types = dict(table.columns)
    expected = {f.name: _type(f) for f in ds.fields}
    missing = [f for f in ds.fields if f.name not in live_types]
    extra = [(n, typ) for n, typ in table.columns if n not in expected]
    renamed: dict[str, str] = {}  # new name -> old name: a missing field and a gone column of one type
    for f in missing:
        old = next((n for n, typ in extra if typ == _type(f) and n not in renamed.values()), None)
        if old is not None:
            renamed[f.name] = old
    drifts: list[Drift] = []
    names = [f.name for f in ds.fields]
    for i, f in enumerate(ds.fields):
        place = f"AFTER `{names[i - 1]}`" if i else "FIRST"
        if f.name in renamed:
            old = renamed[f.name]
            drifts.append(Drift(
                f"{t}.{f.name} ({_type(f)}) is in schemas.py and {t}.{old} no longer is, but no migration renames it",
                f"rename {t}.{old} to {f.name}", (f"{alter} RENAME COLUMN IF EXISTS `{old}` TO `{f.name}`",),
                remedy=f"if {f.name} is a new field and {old} is gone, add the one and drop the other instead"))
        elif f.name not in live_types:
            default = "" if not f.required else f" DEFAULT {_REQUIRED_DEFAULTS[f.kind]}"
            drifts.append(Drift(
                f"{t}.{f.name} ({_type(f)}) is in schemas.py but no migration adds it", f"add {t}.{f.name}",
                (f"{alter} ADD COLUMN IF NOT EXISTS `{f.name}` {_type(f)}{default} {place}",),
                remedy="" if not f.required else "existing rows read the DEFAULT: make it what they mean"))
        elif live_types[f.name] != _type(f):
            drifts.append(Drift(
                f"{t}.{f.name} is {live_types[f.name]} where the migrations leave it but {_type(f)} in schemas.py",
                f"{t}.{f.name}: {live_types[f.name]} -> {_type(f)}",
                (f"{alter} MODIFY COLUMN `{f.name}` {_type(f)} SETTINGS mutations_sync = 2",),
                remedy="ClickHouse converts the stored values; one it cannot convert fails the migration"))
    for n, typ in extra:
        if n not in renamed.values():
            drifts.append(Drift(f"{t}.{n} ({typ}) is created by the migrations but is not in schemas.py",
                                f"drop {t}.{n}", (f"{alter} DROP COLUMN IF EXISTS `{n}`",), fatal=False,
                                remedy="this deletes its values; keep the field in schemas.py if it should stay"))
    # order: the columns both have (renamed ones under their new names), moved one by one
    # in schemas.py's order, as the suggested statements would move them
    current = [next((new for new, old in renamed.items() if old == n), n) for n, _ in table.columns]
    current = [n for n in current if n in expected]
    order = [n for n in names if n in current]
    for i, name in enumerate(order):
        want = order[i - 1] if i else None
        at = current.index(name)
        if (current[at - 1] if at else None) == want:
            continue
        current.remove(name)
        current.insert(current.index(want) + 1 if want else 0, name)
        drifts.append(Drift(
            f"{t}.{name} {f'comes right after {want}' if want else 'is first'} in schemas.py but not where the "
            "migrations put it",
            f"move {t}.{name}", (f"{alter} MODIFY COLUMN `{name}` {expected[name]} "
                                 f"{f'AFTER `{want}`' if want else 'FIRST'}",), fatal=False))
    return drifts


def _key_drift(ds: Dataset, table: LiveTable) -> list[Drift]:
    want = (f"ReplacingMergeTree({ds.version_column})", ", ".join(ds.natural_key), f"toYYYYMM({ds.time_column})")
    have = (table.engine.replace("`", ""), _unkey(table.sorting_key), _unkey(table.partition_key))
    if want == have:
        return []
    return [Drift(
        f"{ds.name} is ENGINE = {have[0]} ORDER BY ({have[1]}) PARTITION BY {have[2]} in the warehouse but "
        f"ENGINE = {want[0]} ORDER BY ({want[1]}) PARTITION BY {want[2]} in schemas.py",
        remedy="no ALTER re-keys a table: rebuild it (a table with the new key, INSERT ... SELECT, EXCHANGE TABLES, "
               "drop the old) in a migration written to be safe to run twice, or drop the table if its rows "
               "are recomputed")]


def check_schema(runner: SqlRunner, migrations: Sequence[Migration] = MIGRATIONS,
                 datasets: Mapping[str, Dataset] = ALL_DATASETS) -> list[Drift]:
    """Compare the tables with schemas.py: raise on what breaks writes or idempotence, log the rest."""
    drifts = schema_drift(read_live_schema(runner), datasets)
    next_version = migrations[-1].version + 1
    for message in drift_messages([d for d in drifts if not d.fatal], next_version):
        log.warning("warehouse %s: %s", runner.database, message)
    fatal = [d for d in drifts if d.fatal]
    if fatal:
        raise SchemaMismatch(
            f"warehouse {runner.database} does not match schemas.py (a migration is missing from "
            f"sentinel_ray/storage/migrations.py, or a table was changed by hand):\n"
            + "\n".join(f"  - {m}" for m in drift_messages(fatal, next_version)))
    return drifts
