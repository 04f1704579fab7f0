"""Schema migrations: the chain builds what schemas.py defines, upgrades warehouses of earlier
releases in place (rows kept, new columns at their defaults), refuses histories it cannot
continue, and runs once however many processes start together.

Warehouses of earlier releases are built from frozen DDL (tests/storage/previous_ddl/<commit>.sql:
what schemas.py generated at that commit; see each file's header). chdb runs in this process
(one data dir per process: this module's, closed at its end); a ClickHouse server too when
SENTINEL_TEST_CLICKHOUSE_URL is set.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pytest

from sentinel_ray.records import WarehouseRefused
from sentinel_ray.schemas import ALL_DATASETS, FEATURES_1D, FEATURES_1M, POSTS, Dataset, Field, Kind
from sentinel_ray.storage import migrations
from sentinel_ray.storage.migrations import (MIGRATIONS, Lease, Migration, SchemaMismatch, drift_messages,
                                             read_live_schema, schema_drift)
from sentinel_ray.storage.warehouse import ClickHouseWarehouse

SERVER_URL = os.environ.get("SENTINEL_TEST_CLICKHOUSE_URL")
PREVIOUS_DDL = Path(__file__).parent / "previous_ddl"
NEXT = MIGRATIONS[-1].version + 1
ALL_VERSIONS = [m.version for m in MIGRATIONS]
UTC = dt.timezone.utc

# The checksums of released migrations. A mismatch means one was edited: every warehouse that
# applied it would refuse to start. Append a migration instead (and its checksum here).
RELEASED = {
    1: "8158b929da10e572f89beec884e29a980919b0c6107bf82e906eac08c625fbcd",
    2: "7c45c3f4b9522acb4620d2562b07fca54c3da5f6e63dfd15cf2cefa50a27b0a5",
    3: "f77a373662280f455ff7e00fdff1c7907807ea85fe2fba9b60290e67b1e212be",
    4: "163059022275416159dd495ed41ac5593db9e0fb494ea5e4c83569aad9974e3b",
    5: "5e05a0ab135d506f905d4f5b1536750fd15bcb8f9d4cfe08534b83585c386f1d",
    6: "9d2e0ddc265920f773231038ff1d29b085161251b778b3d0b596c7e29bd59de1",
}

Open = Callable[[str], ClickHouseWarehouse]


@pytest.fixture(scope="module", params=["chdb", "server"])
def open_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Open]:
    """Opens an empty database of the given name on this module's engine (a client each)."""
    if request.param == "server":
        if not SERVER_URL:
            pytest.skip("set SENTINEL_TEST_CLICKHOUSE_URL=http://host:8123 to test against a ClickHouse server")
        dsn = SERVER_URL
    else:
        dsn = f"chdb://{tmp_path_factory.mktemp('chdb-migrations')}"
    opened: list[ClickHouseWarehouse] = []

    def open_(name: str) -> ClickHouseWarehouse:
        wh = ClickHouseWarehouse(dsn, f"sentinel_test_mig_{name}")
        if not any(o.database == wh.database for o in opened):
            wh.command("DROP DATABASE IF EXISTS {db}")
        opened.append(wh)
        return wh

    yield open_
    for wh in opened:
        wh.command("DROP DATABASE IF EXISTS {db}")
    for wh in opened:
        wh.close()


def _previous_release(wh: ClickHouseWarehouse, commit: str) -> None:
    """A warehouse as `ensure_schema` left it at `commit`, before migrations existed."""
    text = "\n".join(line for line in (PREVIOUS_DDL / f"{commit}.sql").read_text().splitlines()
                     if not line.startswith("--"))
    wh.command("CREATE DATABASE IF NOT EXISTS {db}")
    for statement in filter(str.strip, text.split(";")):
        wh.command(statement)


def _columns(wh: ClickHouseWarehouse) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for r in wh.query_rows("SELECT table, name, type FROM system.columns WHERE database = {d:String} "
                           "ORDER BY table, position", {"d": wh.database}):
        out.setdefault(r["table"], []).append((r["name"], r["type"]))
    return out


def _shape(wh: ClickHouseWarehouse) -> dict[str, Any]:
    """Everything about the tables but their rows and names of database."""
    columns = wh.query_rows("SELECT table, name, type, position, default_kind, default_expression, compression_codec "
                            "FROM system.columns WHERE database = {d:String} ORDER BY table, position",
                            {"d": wh.database})
    tables = wh.query_rows("SELECT name, engine_full, sorting_key, partition_key, primary_key FROM system.tables "
                           "WHERE database = {d:String} ORDER BY name", {"d": wh.database})
    return {"columns": columns, "tables": tables}


def _value(name: str, typ: str) -> str:
    """SQL for a distinct-per-row value of a column of this type (rows numbered by `number`)."""
    for wrapper in ("LowCardinality(Nullable(", "Nullable("):
        if typ.startswith(wrapper):
            return f"if(number % 3 = 0, NULL, {_value(name, typ[len(wrapper):-wrapper.count('(')])})"
    if typ.startswith("LowCardinality("):
        return _value(name, typ[len("LowCardinality("):-1])
    if typ.startswith("Array("):
        return f"[{_value(name, typ[len('Array('):-1])}]"
    return {"String": f"concat('{name}-', toString(number))", "Int64": "toInt64(number % 2)",
            "Float64": "number + 0.25", "Bool": "number % 2 = 1",
            "DateTime64(3, 'UTC')": "toDateTime64('2026-11-02 03:45:00', 3, 'UTC') + toIntervalMinute(number)"}[typ]


def _write_rows(wh: ClickHouseWarehouse, n: int = 12) -> dict[str, list[tuple]]:
    """n rows in every table, each value different; returns them as read back."""
    written = {}
    for table, cols in _columns(wh).items():
        names = ", ".join(f"`{c}`" for c, _ in cols)
        wh.command(f"INSERT INTO {{db}}.`{table}` ({names}) SELECT {', '.join(_value(c, t) for c, t in cols)} "
                   f"FROM numbers({n})")
        written[table] = _rows(wh, table, [c for c, _ in cols])
    return written


def _rows(wh: ClickHouseWarehouse, table: str, names: list[str]) -> list[tuple]:
    cols = ", ".join(f"`{c}`" for c in names)
    return [tuple(r.values()) for r in wh.query_rows(f"SELECT {cols} FROM {{db}}.`{table}` ORDER BY {cols}")]


# --- the chain and schemas.py --------------------------------------------------------------

def test_released_migrations_are_never_edited() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    for version, checksum in RELEASED.items():
        assert MIGRATIONS[version - 1].checksum == checksum, (
            f"migration {version} was edited after its release: warehouses that applied it would refuse to start; "
            f"restore it and append a new migration for the change")
    for m in MIGRATIONS:
        for statement in m.statements:  # forward-only and safe to run again
            idempotent = ("CREATE TABLE IF NOT EXISTS {db}.", "ALTER TABLE {db}.", "DROP TABLE IF EXISTS {db}.",
                          "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.")
            assert statement.startswith(idempotent), statement
            assert "ADD COLUMN " not in statement.replace("ADD COLUMN IF NOT EXISTS", ""), statement


def test_the_migrations_build_what_schemas_py_defines(open_db: Open) -> None:
    """The guard of schemas.py: a field added (dropped, renamed, retyped) without its migration fails here."""
    wh = open_db("chain")
    migrations.migrate(wh, exclusive=True, check=False)
    drifts = schema_drift(read_live_schema(wh))
    assert not drifts, ("schemas.py and the migrations disagree; in sentinel_ray/storage/migrations.py\n"
                        + "\n".join(drift_messages(drifts, NEXT)))


def _with(ds: Dataset, fields: tuple[Field, ...]) -> dict[str, Dataset]:
    return {**ALL_DATASETS, ds.name: dataclasses.replace(ds, fields=fields)}


def _insert_before(ds: Dataset, before: str, new: Field) -> tuple[Field, ...]:
    i = ds.column_names.index(before)
    return ds.fields[:i] + (new,) + ds.fields[i:]


RENAMED_AUTHOR = tuple(dataclasses.replace(f, name="handle") if f.name == "author" else f for f in POSTS.fields)
WATCHLIST = Dataset(name="watchlist", fields=(Field("ticker", Kind.SYMBOL), Field("added_at", Kind.TIMESTAMP)),
                    natural_key=("ticker",), time_column="added_at", version_column="added_at")
EDITS: dict[str, tuple[dict[str, Dataset], list[str]]] = {
    "optional field": (_with(FEATURES_1M, _insert_before(FEATURES_1M, "computed_at",
                                                         Field("new_col", Kind.FLOAT, required=False))), [
        f"features_1m.new_col (Nullable(Float64)) is in schemas.py but no migration adds it: append Migration({NEXT}, "
        f"'add features_1m.new_col', ['ALTER TABLE {{db}}.`features_1m` ADD COLUMN IF NOT EXISTS `new_col` "
        f"Nullable(Float64) AFTER `sentiment_60m`'])"]),
    "required field": (_with(POSTS, POSTS.fields + (Field("shares", Kind.INT),)), [
        f"posts.shares (Int64) is in schemas.py but no migration adds it: append Migration({NEXT}, 'add posts.shares', "
        f"['ALTER TABLE {{db}}.`posts` ADD COLUMN IF NOT EXISTS `shares` Int64 DEFAULT 0 AFTER `raw_pos`']) "
        f"(existing rows read the DEFAULT: make it what they mean)"]),
    "dropped field": (_with(POSTS, tuple(f for f in POSTS.fields if f.name != "url")), [
        f"posts.url (Nullable(String)) is created by the migrations but is not in schemas.py: append "
        f"Migration({NEXT}, 'drop posts.url', ['ALTER TABLE {{db}}.`posts` DROP COLUMN IF EXISTS `url`']) "
        f"(this deletes its values; keep the field in schemas.py if it should stay)"]),
    "renamed field": (_with(POSTS, RENAMED_AUTHOR), [
        f"posts.handle (Nullable(String)) is in schemas.py and posts.author no longer is, but no migration renames "
        f"it: append Migration({NEXT}, 'rename posts.author to handle', ['ALTER TABLE {{db}}.`posts` RENAME COLUMN "
        f"IF EXISTS `author` TO `handle`']) (if handle is a new field and author is gone, add the one and drop the "
        f"other instead)"]),
    "retyped field": (_with(FEATURES_1M, tuple(dataclasses.replace(f, kind=Kind.FLOAT) if f.name == "posts_60m"
                                               else f for f in FEATURES_1M.fields)), [
        f"features_1m.posts_60m is Int64 where the migrations leave it but Float64 in schemas.py: append "
        f"Migration({NEXT}, 'features_1m.posts_60m: Int64 -> Float64', ['ALTER TABLE {{db}}.`features_1m` MODIFY "
        f"COLUMN `posts_60m` Float64 SETTINGS mutations_sync = 2']) (ClickHouse converts the stored values; one it "
        f"cannot convert fails the migration)"]),
    "moved field": (_with(POSTS, (POSTS.fields[1], POSTS.fields[0], *POSTS.fields[2:])), [
        f"posts.post_id is first in schemas.py but not where the migrations put it: append Migration({NEXT}, "
        f"'move posts.post_id', ['ALTER TABLE {{db}}.`posts` MODIFY COLUMN `post_id` String FIRST'])"]),
    "moved fields": (_with(FEATURES_1D, (*FEATURES_1D.fields[:3], *FEATURES_1D.fields[5:9], *FEATURES_1D.fields[3:5],
                                         *FEATURES_1D.fields[9:])), [
        f"features_1d.ret_1d comes right after day in schemas.py but not where the migrations put it: append "
        f"Migration({NEXT}, 'move features_1d.ret_1d', ['ALTER TABLE {{db}}.`features_1d` MODIFY COLUMN `ret_1d` "
        f"Nullable(Float64) AFTER `day`'])",
        f"features_1d.ret_5d comes right after ret_1d in schemas.py but not where the migrations put it: append "
        f"Migration({NEXT + 1}, 'move features_1d.ret_5d', ['ALTER TABLE {{db}}.`features_1d` MODIFY COLUMN `ret_5d` "
        f"Nullable(Float64) AFTER `ret_1d`'])",
        f"features_1d.ret_20d comes right after ret_5d in schemas.py but not where the migrations put it: append "
        f"Migration({NEXT + 2}, 'move features_1d.ret_20d', ['ALTER TABLE {{db}}.`features_1d` MODIFY COLUMN "
        f"`ret_20d` Nullable(Float64) AFTER `ret_5d`'])",
        f"features_1d.volume_vs_median_20d comes right after ret_20d in schemas.py but not where the migrations put "
        f"it: append Migration({NEXT + 3}, 'move features_1d.volume_vs_median_20d', ['ALTER TABLE "
        f"{{db}}.`features_1d` MODIFY COLUMN `volume_vs_median_20d` Nullable(Float64) AFTER `ret_20d`'])"]),
    "new dataset": ({**ALL_DATASETS, "watchlist": WATCHLIST}, [
        f"table watchlist is in schemas.py but no migration creates it: append Migration({NEXT}, 'create watchlist', "
        f"[{migrations.create_statement(WATCHLIST)!r}])"]),
    "dropped dataset": ({k: v for k, v in ALL_DATASETS.items() if k != "quality_alerts"}, [
        f"table quality_alerts is created by the migrations but schemas.py has no dataset quality_alerts: append "
        f"Migration({NEXT}, 'drop quality_alerts', ['DROP TABLE IF EXISTS {{db}}.`quality_alerts`']) (this deletes "
        f"its rows; define the dataset in schemas.py if it should stay)"]),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_schema_change_without_migration_fails_saying_what_to_append(open_db: Open, edit: str) -> None:
    datasets, expected = EDITS[edit]
    wh = open_db(f"edit_{edit.replace(' ', '_')}")
    wh.command("CREATE DATABASE {db}")
    for ds in ALL_DATASETS.values():  # tables as schemas.py has them now (the test above holds the chain to that)
        wh.command(migrations.create_statement(ds))
    drifts = schema_drift(read_live_schema(wh), datasets)
    assert drift_messages(drifts, NEXT) == expected
    # and what it says to append is right: with those migrations the warehouse matches the edited schemas.py
    appended = tuple(Migration(NEXT + i, d.description, d.statements) for i, d in enumerate(drifts))
    status = migrations.migrate(wh, exclusive=True, migrations=MIGRATIONS + appended, check=False)
    assert status.applied_now == tuple(m.version for m in MIGRATIONS + appended)
    assert schema_drift(read_live_schema(wh), datasets) == []


def test_a_start_refuses_a_warehouse_that_does_not_match_schemas_py(open_db: Open) -> None:
    wh = open_db("hand_changed")
    wh.ensure_schema()
    wh.command("ALTER TABLE {db}.posts DROP COLUMN url")
    with pytest.raises(SchemaMismatch, match=r"(?s)does not match schemas.py.*posts.url \(Nullable\(String\)\) "
                                             r"is in schemas.py but no migration adds it: "
                                             rf"append Migration\({NEXT}, 'add posts.url'"):
        wh.ensure_schema()


def test_a_column_of_a_newer_release_is_only_logged(open_db: Open, caplog: pytest.LogCaptureFixture) -> None:
    wh = open_db("newer_column")
    wh.ensure_schema()
    wh.command("ALTER TABLE {db}.posts ADD COLUMN language LowCardinality(String)")
    with caplog.at_level(logging.WARNING, logger=migrations.__name__):
        wh.ensure_schema()
    assert any("posts.language (LowCardinality(String)) is created by the migrations" in r.getMessage()
               for r in caplog.records)


# --- upgrading warehouses of earlier releases ----------------------------------------------

@pytest.mark.parametrize("commit", ["8e1f259", "02f4eec", "787cff7"])
def test_a_previous_release_upgrades_in_place(open_db: Open, commit: str) -> None:
    old = open_db(f"release_{commit}")
    _previous_release(old, commit)
    old_columns = _columns(old)
    written = _write_rows(old)
    before = old.schema_status()
    assert before.unversioned and [m.version for m in before.pending] == ALL_VERSIONS and before.applied == ()

    status = old.migrate()
    assert status.applied_now == tuple(ALL_VERSIONS) and status.unversioned and status.pending == ()
    assert [(a.version, a.times) for a in status.applied] == [(v, 1) for v in ALL_VERSIONS]
    assert old.migrate().applied_now == ()  # idempotent

    fresh = open_db(f"fresh_for_{commit}")
    fresh.ensure_schema()
    assert _shape(old) == _shape(fresh)  # columns, types, order, defaults, engines and keys alike

    new_columns = _columns(old)
    for table, rows in written.items():
        names = [c for c, _ in old_columns[table]]
        assert _rows(old, table, names) == rows, f"{table}: rows changed"  # 0/1 flags now read False/True
        for name, typ in new_columns[table]:
            if name in names:
                continue
            default = old.query_rows(f"SELECT defaultValueOfTypeName('{typ}') AS v")[0]["v"]
            values = [r["v"] for r in old.query_rows(f"SELECT `{name}` AS v FROM {{db}}.`{table}`")]
            assert values == [default] * len(rows), f"{table}.{name}"
    if commit == "02f4eec":  # spelled out: the defaults new columns have in upgraded rows
        posts = old.query_rows("SELECT DISTINCT sentiment, promo_score, is_pump_signal, promo_evidence FROM {db}.posts")
        assert posts == [{"sentiment": None, "promo_score": None, "is_pump_signal": None, "promo_evidence": []}]
        risk = old.query_rows("SELECT DISTINCT volume_score, price_score, promo_score, chatter_score FROM {db}.risk_1m")
        assert risk == [{"volume_score": 0.0, "price_score": 0.0, "promo_score": 0.0, "chatter_score": 0.0}]
    if commit == "8e1f259":
        flags = old.query_rows("SELECT toTypeName(is_pump_signal) AS t, groupUniqArray(is_pump_signal) AS v "
                               "FROM {db}.posts GROUP BY t")
        assert flags[0]["t"] == "Nullable(Bool)" and sorted(flags[0]["v"]) == [False, True]

    # and today's code writes into it
    ts = dt.datetime(2026, 11, 20, 5, tzinfo=UTC)
    row = {"platform": "x", "post_id": "new-1", "author": None, "text": "RELIANCE to the moon", "ts": ts, "url": None,
           "engagement": 3, "tickers": ["RELIANCE"], "sentiment": 0.5, "promo_score": 0.9, "is_pump_signal": True,
           "promo_evidence": ["moon"], "source": "x", "run_id": "r", "ingested_at": ts}
    assert old.insert("posts", pa.Table.from_pylist([row], schema=POSTS.arrow_schema)) == 1
    assert old.query_rows("SELECT is_pump_signal FROM {db}.posts WHERE post_id = 'new-1'") == [{"is_pump_signal": True}]


def test_a_release_too_old_to_upgrade_is_refused_with_the_reason(open_db: Open) -> None:
    wh = open_db("release_1dfbd8b")
    _previous_release(wh, "1dfbd8b")
    with pytest.raises(SchemaMismatch) as refused:
        wh.ensure_schema()
    message = str(refused.value)
    assert "quality_metrics.batch (String) is in schemas.py but no migration adds it" in message
    assert ("quality_metrics is ENGINE = ReplacingMergeTree(measured_at) ORDER BY (dataset, source, metric, column, "
            "run_id) PARTITION BY toYYYYMM(measured_at) in the warehouse but ENGINE = ReplacingMergeTree(measured_at) "
            "ORDER BY (dataset, source, metric, column, run_id, batch)") in message
    assert "no ALTER re-keys a table" in message


# --- histories the chain cannot continue ---------------------------------------------------

EXTRA = Migration(NEXT, "posts: a column of a later release",
                  ["ALTER TABLE {db}.`posts` ADD COLUMN IF NOT EXISTS `language` LowCardinality(String)"])


def _record(wh: ClickHouseWarehouse, m: Migration) -> None:
    wh.command("INSERT INTO {db}.schema_migrations SELECT {v:UInt32}, {d:String}, {c:String}, now64(3, 'UTC'), "
               "'elsewhere:1', 0", {"v": m.version, "d": m.description, "c": m.checksum})


def test_an_edited_migration_is_refused(open_db: Open) -> None:
    wh = open_db("edited")
    wh.ensure_schema()
    edited = MIGRATIONS[:1] + (dataclasses.replace(MIGRATIONS[1], statements=MIGRATIONS[1].statements[:1]),
                               *MIGRATIONS[2:])
    with pytest.raises(SchemaMismatch, match=r"migration 2 \('posts: sentiment.*was applied with checksum "
                                             r"7c45c3f4b952, but this code's is .* never edited"):
        migrations.migrate(wh, exclusive=True, migrations=edited)
    with pytest.raises(SchemaMismatch):
        migrations.read_status(wh, edited)  # --dry-run says so too


def test_a_migration_inserted_before_applied_ones_is_refused(open_db: Open) -> None:
    wh = open_db("inserted")
    wh.ensure_schema()
    later = dataclasses.replace(EXTRA, version=NEXT + 1)
    _record(wh, later)  # applied by a build that had it as NEXT + 1
    inserted = Migration(NEXT, "inserted in the middle", ["ALTER TABLE {db}.`posts` COMMENT COLUMN `url` 'link'"])
    with pytest.raises(SchemaMismatch, match=rf"migration {NEXT} \('inserted in the middle'\) is not applied but "
                                             rf"{NEXT + 1} is: migrations are appended"):
        migrations.migrate(wh, exclusive=True, migrations=MIGRATIONS + (inserted, later))


def test_a_version_of_a_newer_release_is_tolerated(open_db: Open, caplog: pytest.LogCaptureFixture) -> None:
    wh = open_db("newer_version")
    migrations.migrate(wh, exclusive=True, migrations=MIGRATIONS + (EXTRA,), check=False)  # a newer build ran
    with caplog.at_level(logging.WARNING, logger=migrations.__name__):
        status = wh.migrate()  # this build stops at NEXT - 1
    assert status.version == NEXT and [a.version for a in status.newer] == [NEXT] and status.pending == ()
    assert any(f"version {NEXT} (posts: a column of a later release) was applied by a newer release" in r.getMessage()
               for r in caplog.records)


def test_an_interrupted_migration_runs_again_whole(open_db: Open) -> None:
    wh = open_db("interrupted")
    wh.ensure_schema()
    add = "ALTER TABLE {db}.`posts` ADD COLUMN IF NOT EXISTS `language` LowCardinality(String)"
    broken = Migration(NEXT, "language and a typo", [add, "ALTER TABLE {db}.`postz` ADD COLUMN IF NOT EXISTS x String"])
    with pytest.raises(WarehouseRefused, match=rf"migration {NEXT} \('language and a typo'\), statement 2 of 2: .*"
                                               r"UNKNOWN_TABLE"):
        migrations.migrate(wh, exclusive=True, migrations=MIGRATIONS + (broken,), check=False)
    status = wh.schema_status()
    assert status.version == NEXT - 1 and "language" in dict(_columns(wh)["posts"])  # half done, not recorded
    fixed = Migration(NEXT, "language and a typo", [add, "ALTER TABLE {db}.`posts` ADD COLUMN IF NOT EXISTS x String"])
    status = migrations.migrate(wh, exclusive=True, migrations=MIGRATIONS + (fixed,), check=False)
    assert status.applied_now == (NEXT,) and [a.times for a in status.applied] == [1] * NEXT


def test_the_dry_run_changes_nothing(open_db: Open) -> None:
    missing = open_db("never_created")
    status = missing.schema_status()
    assert (status.version, [m.version for m in status.pending], status.unversioned) == (0, ALL_VERSIONS, False)
    assert missing.query_rows("SELECT count() AS n FROM system.databases WHERE name = {d:String}",
                              {"d": missing.database}) == [{"n": 0}]
    old = open_db("dry_8e1f259")
    _previous_release(old, "8e1f259")
    shape = _shape(old)
    assert old.schema_status().unversioned and _shape(old) == shape


# --- concurrent starts ---------------------------------------------------------------------

def test_concurrent_starts_on_a_server_apply_each_migration_once(open_db: Open) -> None:
    """Writers that share a server (here: clients of their own, no shared lock) take the lease in turn."""
    writers = [open_db("concurrent") for _ in range(3)]
    results: list[Any] = []

    def start(wh: ClickHouseWarehouse) -> None:
        try:
            results.append(migrations.migrate(wh, exclusive=False, settle_s=0.2, poll_s=0.05))
        except Exception as e:  # noqa: BLE001 - the assertion below shows it
            results.append(e)

    threads = [threading.Thread(target=start, args=(wh,)) for wh in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, migrations.SchemaStatus) for r in results), results
    assert sorted(r.applied_now for r in results) == [(), (), tuple(ALL_VERSIONS)]
    assert [(a.version, a.times) for a in writers[0].schema_status().applied] == [(v, 1) for v in ALL_VERSIONS]


def test_a_writer_waits_for_the_lease_and_takes_over_a_lapsed_one(open_db: Open) -> None:
    holder, waiter = open_db("leased"), open_db("leased")
    holder.command("CREATE DATABASE IF NOT EXISTS {db}")
    done: list[Any] = []
    with Lease(holder, settle_s=0):
        thread = threading.Thread(target=lambda: done.append(
            migrations.migrate(waiter, exclusive=False, settle_s=0.05, poll_s=0.05)))
        thread.start()
        time.sleep(1.5)
        assert not done and waiter.schema_status().applied == ()  # waiting its turn
    thread.join(30)
    assert done[0].applied_now == tuple(ALL_VERSIONS)

    crashed = Lease(holder, lease_s=1, settle_s=0)
    crashed.__enter__()  # and never leaves: its process died
    started = time.monotonic()
    status = migrations.migrate(waiter, exclusive=False, migrations=MIGRATIONS + (EXTRA,), check=False,
                                settle_s=0.05, poll_s=0.05)
    assert status.applied_now == (NEXT,) and 0.5 < time.monotonic() - started < 10


@pytest.mark.ray
def test_concurrent_starts_through_the_embedded_owner_apply_each_migration_once(ray_session, isolated_settings) -> None:
    from sentinel_ray.storage.warehouse import connect_warehouse

    errors: list[BaseException] = []

    def start() -> None:
        try:
            connect_warehouse(isolated_settings).ensure_schema()
        except BaseException as e:  # noqa: BLE001 - the assertion below shows it
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    status = connect_warehouse(isolated_settings).schema_status()
    assert [(a.version, a.times) for a in status.applied] == [(v, 1) for v in ALL_VERSIONS] and status.pending == ()


# --- sentinel-ray migrate ------------------------------------------------------------------

def test_the_migrate_command(open_db: Open, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from sentinel_ray import cli
    from sentinel_ray.storage import warehouse

    wh = open_db("cli")
    _previous_release(wh, "8e1f259")
    monkeypatch.setattr(cli, "join_platform", lambda settings, **_: settings)
    monkeypatch.setattr(warehouse, "connect_warehouse", lambda settings: wh)

    assert cli.main(["migrate", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"warehouse {wh.database}: schema version 0 of {NEXT - 1}" in out and "predate migrations" in out
    assert "pending  1  baseline" in out and "MODIFY COLUMN `is_pump_signal` Nullable(Bool)" in out
    assert wh.schema_status().pending  # nothing applied

    assert cli.main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert f"warehouse {wh.database}: schema version {NEXT - 1} of {NEXT - 1}" in out and (
        "applied now: " + ", ".join(map(str, ALL_VERSIONS))) in out
    assert cli.main(["migrate", "--dry-run"]) == 0
    assert "up to date" in capsys.readouterr().out
