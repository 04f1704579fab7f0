"""Compaction: fewer files, the same rows, at every crash point and across redeliveries."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sentinel_ray.config import Settings
from sentinel_ray.schemas import PRICES
from sentinel_ray.storage.compaction import (
    CompactionBusy,
    CompactionLockTrouble,
    CompactionLoop,
    compact,
    one_compactor,
)
from sentinel_ray.storage.lake import MANIFEST, Lake
from tests.ingest.conftest import ingest_settings, prefix, store  # noqa: F401 - fixtures

UTC = dt.timezone.utc
DAY = dt.date(2026, 11, 5)
OTHER_DAY = dt.date(2026, 11, 6)
KEY = [("ticker", "ascending"), ("ts", "ascending"), ("run_id", "ascending")]


def _batch(k: int, day: dt.date = DAY, minutes: int = 375) -> pa.Table:
    """One stream batch's bars: a ticker per batch, a session of random-walk bars (they
    compress like real ones, so file sizes are realistic)."""
    rng = np.random.default_rng(k)
    close = 100.0 + k + np.cumsum(rng.normal(0, 0.2, minutes))
    start = dt.datetime.combine(day, dt.time(3, 45), UTC)
    columns = {
        "ticker": [f"T{k:03d}"] * minutes, "exchange": ["NSE"] * minutes, "interval": ["1m"] * minutes,
        "ts": [start + dt.timedelta(minutes=m) for m in range(minutes)],
        "open": close + rng.normal(0, 0.05, minutes), "high": close + 0.3, "low": close - 0.3, "close": close,
        "volume": rng.integers(1_000, 50_000, minutes), "source": ["replay"] * minutes,
        "run_id": [f"prices-{k}"] * minutes, "ingested_at": [start] * minutes}
    schema = PRICES.arrow_schema  # any other column (lineage) is null
    return pa.table([pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(minutes, f.type)
                     for f in schema], schema=schema)


def _stream_day(lake: Lake, batches: int = 40) -> None:
    for k in range(batches):
        lake.write_curated(PRICES, _batch(k), batch_key=f"prices-{k:06d}-0")
    lake.write_curated(PRICES, _batch(999, OTHER_DAY), batch_key="prices-backfill")  # a day of one file


def _rows(lake: Lake) -> pa.Table:
    return lake.read("curated", "prices").sort_by(KEY)


def _readable(lake: Lake, day: dt.date = DAY) -> list[str]:
    [part] = [p for p in lake.partitions("curated", "prices") if f"date={day}" in p.directory]
    return part.readable


def _on_disk(lake: Lake, day: dt.date = DAY) -> list[str]:
    [part] = [p for p in lake.partitions("curated", "prices") if f"date={day}" in p.directory]
    return sorted(part.files)


def test_a_closed_day_becomes_a_few_files_with_the_same_rows(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    _stream_day(lake)
    before, listed = _rows(lake), lake.list_files("curated", "prices")
    sizes = sum(Path(p).stat().st_size for p in listed)
    target = sizes // 3  # three-ish files

    summary = compact(lake, target_bytes=target, quiet_s=0)
    [done] = summary.compacted
    assert done.files_before == 40 and 1 < done.files_after <= 4 and done.batch_files == 40 and done.rows == 40 * 375
    assert "date=2026-11-05: 40 files" in summary.render()
    assert _rows(lake).equals(before)
    assert len(_readable(lake)) == done.files_after
    assert all(n.startswith("compacted-") or n == MANIFEST for n in _on_disk(lake))  # batch files gone
    assert lake.list_files("curated", "prices") == listed  # each batch still listed once, readable alone
    assert lake.read_file(listed[7]).equals(_batch(7))
    assert _readable(lake, OTHER_DAY) == ["part-prices-backfill.parquet"]  # one file: nothing to do

    again = compact(lake, target_bytes=target, quiet_s=0)  # idempotent
    assert again.compacted == [] and _rows(lake).equals(before)


def test_a_day_still_written_to_waits(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    _stream_day(lake)
    waiting = compact(lake, target_bytes=10**9, quiet_s=3600)
    assert waiting.compacted == [] and waiting.open_days == 1 and len(_readable(lake)) == 40
    later = compact(lake, target_bytes=10**9, quiet_s=3600, now=dt.datetime.now(UTC) + dt.timedelta(hours=2))
    assert [p.files_after for p in later.compacted] == [1]


class Crash(Exception):
    pass


def _crash_on(monkeypatch, method: str, after: int, when=lambda *a: True) -> None:
    """Make Lake.<method> raise on its (after+1)-th call that `when` accepts."""
    real = getattr(Lake, method)
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        if when(*args):
            calls["n"] += 1
            if calls["n"] > after:
                raise Crash(f"{method} #{calls['n']}")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Lake, method, crashing)


CRASH_POINTS = {
    # the second compacted file half-way: the first is written, no manifest yet
    "writing outputs": ("put_bytes", 1, lambda path, data: "/compacted-" in path),
    # every output written, the manifest not
    "publishing": ("publish", 0, lambda *a: True),
    # published; some batch files deleted, the rest still on disk
    "deleting inputs": ("delete_quietly", 5, lambda path: "/part-" in path),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_at_any_step_leaves_every_row_readable_once(point: str, tmp_path: Path, monkeypatch) -> None:
    lake = Lake(str(tmp_path))
    _stream_day(lake)
    before = _rows(lake)
    target = sum(Path(p).stat().st_size for p in lake.list_files("curated", "prices")) // 3
    with monkeypatch.context() as patch:
        _crash_on(patch, *CRASH_POINTS[point])
        with pytest.raises(Crash):
            compact(lake, target_bytes=target, quiet_s=0)
    assert _rows(lake).equals(before)  # old files, or new ones: never both
    published = (tmp_path / "curated/dataset=prices/source=replay/date=2026-11-05" / MANIFEST).exists()
    assert published == (point == "deleting inputs")

    compact(lake, target_bytes=target, quiet_s=0, orphan_age_s=0)  # run again: it finishes
    assert _rows(lake).equals(before)
    clean = Lake(str(tmp_path / "clean"))
    _stream_day(clean)
    compact(clean, target_bytes=target, quiet_s=0)
    assert _on_disk(lake) == _on_disk(clean)  # the same files as a run that never crashed


def test_rewriting_a_compacted_batch(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    _stream_day(lake)
    before = _rows(lake)
    compact(lake, target_bytes=10**9, quiet_s=0)
    manifest = (tmp_path / "curated/dataset=prices/source=replay/date=2026-11-05" / MANIFEST).read_bytes()
    files = _on_disk(lake)

    # the same batch stored again (a redelivery): nothing changes, not even a file
    lake.write_curated(PRICES, _batch(7), batch_key="prices-000007-0")
    assert _rows(lake).equals(before) and _on_disk(lake) == files
    assert (tmp_path / "curated/dataset=prices/source=replay/date=2026-11-05" / MANIFEST).read_bytes() == manifest

    # the batch stored again with other rows: they replace its held ones
    changed = _batch(7, minutes=10)
    lake.write_curated(PRICES, changed, batch_key="prices-000007-0")
    now = _rows(lake)
    assert now.num_rows == before.num_rows - 365
    assert now.filter(pa.compute.equal(now.column("ticker"), "T007")).sort_by(KEY).equals(changed.sort_by(KEY))
    assert "part-prices-000007-0.parquet" in _readable(lake)

    # a batch removed (a dead-lettered batch's undo) leaves the compacted file too
    held = [p for p in lake.list_files("curated", "prices") if p.endswith("part-prices-000003-0.parquet")]
    lake.replace_file(held[0], PRICES.arrow_schema.empty_table(), PRICES)
    assert _rows(lake).num_rows == before.num_rows - 365 - 375
    assert len(lake.list_files("curated", "prices")) == 40  # 41 batch files, one gone

    compact(lake, target_bytes=10**9, quiet_s=0)  # the rewritten batch joins the compacted file again
    assert len(_readable(lake)) == 1 and _rows(lake).num_rows == before.num_rows - 365 - 375


@pytest.mark.parametrize("where", ["local", "s3"])
def test_files_matching_names_the_batch_files_held_or_on_their_own(where, tmp_path: Path, isolated_settings,
                                                                    s3_endpoint) -> None:
    """What a raw-zone replay rewrites: the batch files holding rows of its payloads, found by
    one scan whether a compacted file holds them or they stand on their own."""
    from tests.storage.conftest import on_s3

    lake = Lake(on_s3(isolated_settings, s3_endpoint).resolved_lake_uri if where == "s3" else str(tmp_path))

    def with_raw_id(k: int, day: dt.date = DAY) -> pa.Table:
        t = _batch(k, day, minutes=5)
        return t.set_column(t.schema.get_field_index("raw_id"), "raw_id", pa.array([f"raw-{k}"] * 5))

    for k in range(6):
        lake.write_curated(PRICES, with_raw_id(k), batch_key=f"prices-{k:06d}-0")
    compact(lake, target_bytes=10**9, quiet_s=0)  # all six in one compacted file
    lake.write_curated(PRICES, with_raw_id(6), batch_key="prices-000006-0")  # late: on its own
    lake.write_curated(PRICES, with_raw_id(7, OTHER_DAY), batch_key="prices-000007-0")
    where = pa.compute.field("raw_id").isin(pa.array(["raw-2", "raw-6", "raw-7", "raw-none"]))

    found = [p.rsplit("/", 2)[-2:] for p in lake.files_matching("curated", "prices", where)]

    day, other = f"date={DAY}", f"date={OTHER_DAY}"
    held = [[day, f"part-prices-{k:06d}-0.parquet"] for k in range(6)]  # raw-2's compacted file holds these
    assert sorted(found) == sorted([*held, [day, "part-prices-000006-0.parquet"],
                                    [other, "part-prices-000007-0.parquet"]])
    assert lake.files_matching("curated", "prices", pa.compute.field("raw_id") == "raw-none") == []
    assert lake.files_matching("quarantine", "prices", where) == []


def test_a_rewrite_left_on_disk_by_a_crash_is_taken_in(tmp_path: Path, monkeypatch) -> None:
    """A batch rewritten with other rows, and the process dying before its rows were released:
    readers keep the held rows until the next pass, which releases the new ones."""
    lake = Lake(str(tmp_path))
    _stream_day(lake)
    compact(lake, target_bytes=10**9, quiet_s=0)
    changed = _batch(7, minutes=10)
    with monkeypatch.context() as patch:
        patch.setattr(Lake, "release", lambda *a: (_ for _ in ()).throw(Crash("before release")))
        with pytest.raises(Crash):
            lake.write_curated(PRICES, changed, batch_key="prices-000007-0")
    total = 41 * 375
    assert _rows(lake).num_rows == total  # the old rows, once
    summary = compact(lake, target_bytes=10**9, quiet_s=0)
    assert summary.tidied == 1
    rows = _rows(lake)
    assert rows.num_rows == total - 365
    assert rows.filter(pa.compute.equal(rows.column("ticker"), "T007")).num_rows == 10


def test_the_cli_prints_files_per_day_before_and_after(tmp_path: Path, monkeypatch, capsys) -> None:
    from sentinel_ray.cli import main

    lake = Lake(str(tmp_path / "lake"))
    _stream_day(lake)
    before = _rows(lake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(tmp_path))
    # main() sets RAY_AUTH_MODE for good otherwise: this process's later ray.init would then fail
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "token"))
    assert main(["compact", "--dataset", "prices"]) == 0
    assert "0 day partition(s) compacted" in capsys.readouterr().out  # written just now: still open
    assert main(["compact", "--dataset", "prices", "--date", "2026-11-05"]) == 0
    out = capsys.readouterr().out
    assert "curated/dataset=prices/source=replay/date=2026-11-05: 40 files" in out and "-> 1 (" in out, out
    assert _rows(lake).equals(before)


def _stop_after_a_report(loop: CompactionLoop, said: list[str], timeout_s: float = 30.0) -> None:
    """Wait until `up`'s loop has said what a pass compacted, then stop it."""
    try:
        deadline = time.monotonic() + timeout_s
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop()


# A compactor in another process: takes the lake's lock, says so, then holds it.
_HOLD = ("import sys, time\n"
         "from sentinel_ray.storage.compaction import one_compactor\n"
         "from sentinel_ray.storage.lake import Lake\n"
         "with one_compactor(Lake(sys.argv[1])):\n"
         "    print('holding', flush=True)\n"
         "    time.sleep(120)\n")


def test_a_second_compactor_is_refused_and_a_killed_one_blocks_nothing(tmp_path: Path) -> None:
    """Two compactions of one day at once could publish over each other's manifest and delete
    batch files the published one does not hold: while a compactor in another process holds
    the lake, a second is refused and touches nothing; the lock dies with its holder."""
    lake = Lake(str(tmp_path / "lake"))
    _stream_day(lake)
    before, files = _rows(lake), _on_disk(lake)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, lake.uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(CompactionBusy, match=f"pid {holder.pid}"):
            compact(lake, target_bytes=10**9, quiet_s=0)
        assert _on_disk(lake) == files
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own
        holder.wait()
    summary = compact(lake, target_bytes=10**9, quiet_s=0)
    assert summary.compacted and len(_readable(lake)) == 1
    assert _rows(lake).equals(before)


# A compactor of an object-store lake in another process: takes the lake's lock in Redis
# (renewed every 0.5 s, expiring 1.5 s after its last renewal), says so, then holds it.
_HOLD_IN_REDIS = ("import sys, time, types\n"
                  "from sentinel_ray.storage import compaction\n"
                  "compaction.REDIS_LOCK_TTL_S = 1.5\n"
                  "lake = types.SimpleNamespace(local=False, uri=sys.argv[1])  # what the lock reads of a lake\n"
                  "with compaction.one_compactor(lake, sys.argv[2]):\n"
                  "    print('holding', flush=True)\n"
                  "    time.sleep(120)\n")


def test_an_object_store_lakes_second_compactor_is_refused_through_redis(s3_settings, embedded_redis) -> None:
    """S3 has no lock: the lake's compaction lock is a Redis key. Held past its TTL it is
    renewed, so a second compactor is refused and touches nothing; its holder killed, it
    expires and the next compaction runs."""
    lake = Lake(s3_settings.resolved_lake_uri)
    _stream_day(lake)
    before, files = _rows(lake), _on_disk(lake)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_IN_REDIS, lake.uri, embedded_redis],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        time.sleep(2.0)  # longer than its TTL: renewed meanwhile
        with pytest.raises(CompactionBusy, match=f"pid {holder.pid}"):
            compact(lake, target_bytes=10**9, quiet_s=0, redis_url=embedded_redis)
        assert _on_disk(lake) == files
    finally:
        holder.kill()  # SIGKILL: its lock is released by nobody
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            summary = compact(lake, target_bytes=10**9, quiet_s=0, redis_url=embedded_redis)
            break
        except CompactionBusy:
            assert time.monotonic() < deadline, "a killed holder's lock did not expire"
            time.sleep(0.2)
    assert summary.compacted and len(_readable(lake)) == 1
    assert _rows(lake).equals(before)


def test_a_compactor_that_loses_its_redis_lock_stops_before_the_next_day(embedded_redis, monkeypatch) -> None:
    from types import SimpleNamespace

    from sentinel_ray.storage import compaction
    from sentinel_ray.storage.redis import connect_redis

    monkeypatch.setattr(compaction, "REDIS_LOCK_TTL_S", 0.6)
    lake = SimpleNamespace(local=False, uri="s3://bucket/lost-lock")
    with one_compactor(lake, embedded_redis) as still_held:
        still_held()
        connect_redis(embedded_redis).delete(f"sentinel-ray:lake-compaction:{lake.uri}")  # e.g. Redis lost it
        deadline = time.monotonic() + 10
        with pytest.raises(CompactionLockTrouble, match="lost the compaction lock"):
            while time.monotonic() < deadline:  # until a renewal (every 0.2 s) finds it gone
                still_held()
                time.sleep(0.05)


def test_renewals_redis_does_not_answer_are_retried_while_the_key_cannot_have_expired(embedded_redis,
                                                                                     monkeypatch) -> None:
    """A renewal failing for a moment (the embedded Redis restarting) is retried and the lock
    kept; renewals failing for longer than the key could live make the check raise."""
    from types import SimpleNamespace

    import redis

    from sentinel_ray.storage import compaction
    from sentinel_ray.storage.redis import connect_redis

    monkeypatch.setattr(compaction, "REDIS_LOCK_TTL_S", 3.0)  # renewed every 1 s, retried every 0.1 s
    reacquire = redis.lock.Lock.reacquire
    failures = {"left": 2}

    def flaky(self):
        if failures["left"]:
            failures["left"] -= 1
            raise redis.exceptions.ConnectionError("Redis is restarting")
        return reacquire(self)

    monkeypatch.setattr(redis.lock.Lock, "reacquire", flaky)
    lake = SimpleNamespace(local=False, uri="s3://bucket/flaky-renewals")
    key = f"sentinel-ray:lake-compaction:{lake.uri}"
    with one_compactor(lake, embedded_redis) as still_held:
        deadline = time.monotonic() + 4.0  # past the TTL: two failures, then renewed
        while time.monotonic() < deadline:
            still_held()
            time.sleep(0.05)
        assert failures["left"] == 0 and connect_redis(embedded_redis).pttl(key) > 0
        failures["left"] = 10**6  # Redis gone for good
        with pytest.raises(CompactionLockTrouble, match="lost the compaction lock"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                still_held()
                time.sleep(0.05)


def test_a_pass_that_loses_the_lake_lock_mid_day_publishes_nothing(s3_settings, embedded_redis,
                                                                   monkeypatch) -> None:
    """The lock lost while a day's compacted files are written: the pass stops before its
    manifest is published, so readers keep reading the batch files (the orphans it wrote are
    tidied later) and no batch file is deleted."""
    from sentinel_ray.storage import compaction
    from sentinel_ray.storage.redis import connect_redis

    monkeypatch.setattr(compaction, "REDIS_LOCK_TTL_S", 0.6)
    lake = Lake(s3_settings.resolved_lake_uri)
    _stream_day(lake)
    before, files = _rows(lake), _on_disk(lake)
    write_compacted = Lake.write_compacted

    def lock_lost_meanwhile(self, *args, **kwargs):
        connect_redis(embedded_redis).delete(f"sentinel-ray:lake-compaction:{lake.uri.rstrip('/')}")
        time.sleep(0.5)  # past a renewal (every 0.2 s): it finds the key gone
        return write_compacted(self, *args, **kwargs)

    monkeypatch.setattr(Lake, "write_compacted", lock_lost_meanwhile)
    with pytest.raises(CompactionLockTrouble, match="lost the compaction lock"):
        compact(lake, target_bytes=10**9, quiet_s=0, day=DAY, redis_url=embedded_redis)
    assert _readable(lake) == files and set(files) <= set(_on_disk(lake))
    assert _rows(lake).equals(before)


def test_the_cli_on_an_object_store_lake_takes_its_lock_in_redis(s3_settings, embedded_redis, tmp_path: Path,
                                                                  monkeypatch, capsys) -> None:
    """With the platform's Redis configured, `compact` takes the lock there (refused while
    another holds it); with the embedded one not running (no `up`, so no loop compacting
    either) it says that nothing holds the lock, and compacts."""
    from sentinel_ray.cli import main

    lake = Lake(s3_settings.resolved_lake_uri)
    _stream_day(lake)
    before = _rows(lake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "token"))  # as in the CLI test above
    for name, value in s3_settings.model_copy(update={"data_dir": tmp_path}).as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SENTINEL_REDIS_URL", embedded_redis)
    with one_compactor(lake, embedded_redis):
        assert main(["compact", "--dataset", "prices", "--date", "2026-11-05"]) == 1
        assert f"another compaction of the lake {lake.uri} is running" in capsys.readouterr().err
    monkeypatch.setenv("SENTINEL_REDIS_URL", "")  # the embedded Redis, under tmp_path: not running
    assert main(["compact", "--dataset", "prices", "--date", "2026-11-05"]) == 0
    out, err = capsys.readouterr()
    assert "nothing holds the lake's compaction lock" in err and "-> 1 (" in out, (out, err)
    assert _rows(lake).equals(before)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_late_write_to_a_day_being_compacted_is_kept(where, tmp_path: Path, isolated_settings,
                                                        s3_endpoint, monkeypatch) -> None:
    """A batch stored again with other rows while its day is compacted (a redelivery, a replay):
    landing between the pass's reads and its publish, the pass would delete it as a batch file
    it had taken in, and its old rows would stand. On a local lake it waits for the day's pass
    (the partition lock); on S3, which has no lock, the pass sees the file changed since it
    listed it and releases it instead of deleting it. Either way its new rows replace the old."""
    from tests.storage.conftest import on_s3

    lake = Lake(on_s3(isolated_settings, s3_endpoint).resolved_lake_uri if where == "s3" else str(tmp_path))
    _stream_day(lake)
    before = _rows(lake)
    changed = _batch(7, minutes=10)
    writer: list[threading.Thread] = []
    write_compacted = Lake.write_compacted

    def write_during_the_pass(self, *args, **kwargs):
        if not writer:  # the pass has read its inputs: a late write of a batch it holds
            writer.append(threading.Thread(target=lake.write_curated, args=(PRICES, changed),
                                           kwargs={"batch_key": "prices-000007-0"}))
            writer[0].start()
            if where == "local":
                writer[0].join(0.5)
                assert writer[0].is_alive(), "the write went ahead during the day's compaction"
            else:
                writer[0].join(30)  # no lock: the write lands in the middle of the pass
        return write_compacted(self, *args, **kwargs)

    monkeypatch.setattr(Lake, "write_compacted", write_during_the_pass)
    assert compact(lake, target_bytes=10**9, quiet_s=0).compacted
    writer[0].join(30)
    assert not writer[0].is_alive()
    now = _rows(lake)
    assert now.num_rows == before.num_rows - 365
    assert now.filter(pa.compute.equal(now.column("ticker"), "T007")).sort_by(KEY).equals(changed.sort_by(KEY))


# A process holding one day partition's lock (as a compaction of that day does), until killed.
_HOLD_DAY = ("import sys, time\n"
             "from sentinel_ray.storage.lake import Lake\n"
             "lake = Lake(sys.argv[1])\n"
             "with lake.partition_lock(lake.root + '/curated/dataset=prices/source=replay/date=2026-11-05'):\n"
             "    print('holding', flush=True)\n"
             "    time.sleep(120)\n")


def test_a_write_waits_for_its_days_lock_held_in_another_process_and_not_for_other_days(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    _stream_day(lake)
    before = _rows(lake)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_DAY, lake.uri], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        lake.write_curated(PRICES, _batch(500, OTHER_DAY), batch_key="prices-other-day")  # another day: no wait
        blocked = threading.Thread(target=lake.write_curated, args=(PRICES, _batch(7, minutes=10)),
                                   kwargs={"batch_key": "prices-000007-0"})
        blocked.start()
        blocked.join(0.5)
        assert blocked.is_alive() and _rows(lake).num_rows == before.num_rows + 375
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    blocked.join(30)
    assert not blocked.is_alive() and _rows(lake).num_rows == before.num_rows + 375 - 365


def test_the_cli_and_ups_loop_wait_for_a_running_compaction(tmp_path: Path, monkeypatch, capsys) -> None:
    from sentinel_ray.cli import main

    settings = Settings(data_dir=tmp_path, lake_compact_interval_s=0.05, lake_compact_quiet_s=0)
    lake = Lake(settings.resolved_lake_uri)
    _stream_day(lake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "token"))  # as in the CLI test above
    said: list[str] = []
    with one_compactor(lake):  # another descriptor of the lock file: refused as another process would be
        assert main(["compact", "--dataset", "prices", "--date", "2026-11-05"]) == 1
        assert f"another compaction of the lake {lake.uri} is running (pid {os.getpid()})" in capsys.readouterr().err
        loop = CompactionLoop(settings, say=said.append).start()
        time.sleep(0.5)  # ten of its rounds: each skipped
        assert not said and len(_on_disk(lake)) == 40
    _stop_after_a_report(loop, said)
    assert said and "40 files" in said[0]


def test_up_compacts_on_its_own(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, lake_compact_interval_s=0.05, lake_compact_quiet_s=0)
    lake = Lake(settings.resolved_lake_uri)
    _stream_day(lake)
    said: list[str] = []
    loop = CompactionLoop(settings, say=said.append).start()
    _stop_after_a_report(loop, said)
    assert said and "40 files" in said[0]
    assert len(_readable(lake)) == 1


@pytest.mark.ray
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_batch_redelivered_after_its_day_was_compacted_adds_no_rows(where, ray_session, ingest_settings, store,
                                                                      s3_endpoint) -> None:  # noqa: F811
    """A consumer dies after its writes, before its XACK; the day is compacted meanwhile (its
    files included); its restart stores the batch again: exact counts, no doubles, no new file."""
    from sentinel_ray.ingest.poller import SourcePoller
    from tests.ingest.conftest import drain, expected_counts, firehose, make_consumer, stored_counts
    from tests.ingest.test_faults import _assert_no_duplicate_files
    from tests.storage.conftest import on_s3

    settings = ingest_settings.model_copy(update={"replay_chunk_rows": 1500, "batch_max_rows": 1500})  # ~18 batches
    settings = on_s3(settings, s3_endpoint) if where == "s3" else settings
    lake = Lake(settings.resolved_lake_uri)
    poller = SourcePoller(settings, firehose(settings), store=store, lake=lake)
    asyncio.run(poller.poll_once())

    class Died(BaseException):
        pass

    first = make_consumer(settings, store, "prices-0")
    first._acknowledge = lambda batch: (_ for _ in ()).throw(Died())  # written, then the process dies
    batch = first.next_batch()
    with pytest.raises(Died):
        first.store_batch(batch)
    # the rest as it streams in, a micro-batch per poll, leaving the dead one's batch pending
    patient = settings.model_copy(update={"claim_idle_s": 3600.0})
    prices, posts = make_consumer(patient, store, "prices-1"), make_consumer(patient, store, "posts-0", "posts")
    while asyncio.run(poller.poll_once()) or poller.stats.state != "idle":
        prices.run_once()
        posts.run_once()
    drain(prices)
    drain(posts)
    assert stored_counts(settings) == expected_counts(settings)
    before = _rows(lake)

    summary = compact(lake, target_bytes=settings.lake_compact_target_bytes, quiet_s=0, dataset="prices")
    print(summary.render())
    [day] = [p for p in summary.compacted if "source=replay" in p.directory]
    assert day.files_before > 10 and day.files_after == 1
    assert _rows(lake).equals(before)
    held = f"part-{batch.key}.parquet"
    assert any(p.endswith("/" + held) for p in lake.list_files("curated", "prices"))
    assert held not in _on_disk(lake)
    files = _on_disk(lake)

    restarted = make_consumer(settings, store, "prices-0")  # its own pending batch first
    again = restarted.next_batch()
    assert again.key == batch.key and again.ids == batch.ids
    restarted.store_batch(again)
    drain(restarted)
    assert store.lag("prices").pending == 0
    assert stored_counts(settings) == expected_counts(settings)
    _assert_no_duplicate_files(settings)
    assert _rows(lake).equals(before)
    assert _on_disk(lake) == files  # the same bytes were held already: nothing written
