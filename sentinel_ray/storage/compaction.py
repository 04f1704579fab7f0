"""Compaction of the lake: a closed day's batch files rewritten as a few files of a target size.

Every stream micro-batch leaves one small curated Parquet file per (dataset, source, day) it
touches, named by its batch key (that name is what makes a redelivered batch rewrite
instead of add). A day of prices at real-time pace leaves tens of thousands. Once a day
partition is closed, nothing written to it for `lake_compact_quiet_s`, its small files
are rewritten as `compacted-<digest>.parquet` files of about `lake_compact_target_bytes`.

Crash-safe and idempotent, in this order (the manifest format is `storage.lake`'s):
  1. each compacted file is written whole under a name derived from the batch files it
     holds and their SHA-256s; until step 2 no reader looks at it (an orphan);
  2. the partition's `_compaction.json` is published in one atomic write: from then on
     readers read the compacted files and skip every batch file it names;
  3. the batch files (and compacted files it replaced) are deleted; a batch file written
     again since the pass listed it is released instead (its new rows stand on their own).
A crash before 2 leaves the old files read as before; run again, the same inputs give
the same names. A crash after 2 leaves covered copies nobody reads; the next pass
deletes them (first checking each still has the bytes the manifest holds: a batch
rewritten differently meanwhile is released instead, see `Lake.release`). Compacted files
no manifest names are deleted once older than `orphan_age_s`, so a compaction or release
running elsewhere at that moment keeps the file it is about to publish.

One compactor per lake at a time (`up`'s loop, `sentinel-ray compact`): two at once on the
same day write the same files and the same manifest, but one that listed a late file the
other did not could publish over the other's manifest, and delete batch files that manifest
does not hold. On a local lake `compact` takes the lake's lock (`one_compactor`) and a
second one is refused (`CompactionBusy`). An object store has no lock of its own: there the
lock is a key in the platform's Redis, named by the lake's URI (so platforms sharing a
Redis and a lake share it too), renewed while the pass runs and expiring soon after a killed
holder's last renewal; with no Redis given it holds nothing. Each day is compacted holding that
partition's lock (`Lake.partition_lock`), which a late write to the day takes too: it waits
for the day's pass rather than land between the pass's reads and its deletes (an object
store has no such lock: there step 3's check is what keeps a late write).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Self

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from sentinel_ray.config import Settings
from sentinel_ray.schemas import Dataset
from sentinel_ray.schemas import dataset as dataset_named
from sentinel_ray.storage.lake import Lake, Manifest, Partition, partition_day, sha256
from sentinel_ray.storage.redis import connect_redis, redis_ok, supervisor_status

log = logging.getLogger(__name__)
ORPHAN_AGE_S = 600.0
MAX_ROUNDS = 4  # rewrites of one partition per pass (two suffice but for tiny targets)
_DATASET = re.compile(r"/dataset=([^/]+)/")
LOCK_FILE = "_compaction.lock"  # at a local lake's root: who compacts it now
REDIS_LOCK_TTL_S = 30.0  # an object-store lake's lock in Redis: renewed every third of it while held


class CompactionBusy(RuntimeError):
    """Another process (or thread) is compacting this lake."""


class CompactionLockTrouble(CompactionBusy):
    """An object-store lake's lock could not be taken or kept (Redis unreachable, or the lock
    lost mid-pass): not another compactor's turn, something to look into."""


@contextlib.contextmanager
def one_compactor(lake: Lake, redis_url: str | None = None) -> Iterator[Callable[[], None]]:
    """Hold the lake's compaction lock for a pass, or raise CompactionBusy at once. Yields a
    check to call before each step that changes the lake: CompactionBusy if the lock was lost.

    A local lake's lock is an flock on `<root>/_compaction.lock`: the kernel releases it when
    its holder exits or is killed, so a crashed compactor never blocks the next one. The
    file keeps the holder's pid, for the message. An object store's is a key in the Redis at
    `redis_url` (`_redis_compactor`); without one, nothing is held (the module docstring)."""
    if not lake.local:
        if not redis_url:
            yield lambda: None
            return
        with _redis_compactor(lake, redis_url) as check:
            yield check
        return
    os.makedirs(lake.root, exist_ok=True)
    fd = os.open(os.path.join(lake.root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise CompactionBusy(f"another compaction of the lake {lake.uri} is running (pid {holder}); "
                                 f"try again once it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield lambda: None  # the kernel's lock is not lost while this process lives
    finally:
        os.close(fd)  # releases the lock


def lock_redis_url(settings: Settings, lake: Lake) -> str | None:
    """Where `lake`'s compaction lock is held: None for a local lake (a file of its own); for
    an object store, the platform's Redis. The embedded one runs only under `up`, and so does
    the other compactor (its loop): when it is not running, None (nothing to hold), unless
    `up` is (its Redis restarting: RuntimeError, try again)."""
    if lake.local:
        return None
    url = settings.resolved_redis_url
    if not settings.redis_is_embedded or redis_ok(url):
        return url
    status = supervisor_status(settings.embedded_redis_dir)
    if status is not None and _process_alive(int(status.get("pid") or 0)):  # its file goes on a clean stop
        raise RuntimeError(f"the platform's embedded Redis ({url}), which holds the lake's compaction lock, "
                           f"does not answer while `up` runs (restarting?); try again in a moment")
    return None


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


@contextlib.contextmanager
def _redis_compactor(lake: Lake, redis_url: str) -> Iterator[Callable[[], None]]:
    """An object-store lake's lock: a Redis key set only if absent (its value says who holds
    it), with a TTL a thread renews every third of it, deleted by its holder only (redis-py's
    Lock). A holder killed mid-pass frees it REDIS_LOCK_TTL_S after its last renewal.

    The check raises once the lock may be gone: a renewal found the key gone or another's, or
    no renewal has succeeded for all but a margin of the TTL (Redis unreachable, e.g. the
    embedded one restarting, is retried until then; a renewal counts from when it was sent)."""
    margin = REDIS_LOCK_TTL_S / 6  # 5 s of a 30 s TTL: also each Redis call's timeout
    client = connect_redis(redis_url, timeout_s=margin)
    holder = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
    # not thread-local: the renewing thread uses the token this thread acquired with
    lock = client.lock(f"sentinel-ray:lake-compaction:{lake.uri.rstrip('/')}", timeout=REDIS_LOCK_TTL_S,
                       blocking=False, thread_local=False)
    try:
        taken = time.monotonic()
        if not lock.acquire(token=holder):
            other = client.get(lock.name)
            raise CompactionBusy(f"another compaction of the lake {lake.uri} is running "
                                 f"({(other or b'unknown').decode(errors='replace').rsplit(' ', 1)[0]}); "
                                 f"try again once it has finished")
    except redis.RedisError as e:
        client.close()
        raise CompactionLockTrouble(f"the lake {lake.uri} is an object store, whose compaction lock is held in "
                                    f"Redis ({redis_url}), and Redis could not be reached "
                                    f"({type(e).__name__}: {e})") from e
    renewed = [taken]  # when the key's TTL was last set, at the latest (the renewal's send)
    lost = threading.Event()
    done = threading.Event()

    def give_up(why: str) -> None:
        lost.set()
        log.error("the compaction lock of %s: %s; the pass stops before its next step", lake.uri, why)

    def renew() -> None:
        wait = REDIS_LOCK_TTL_S / 3
        while not done.wait(wait):
            sent = time.monotonic()
            try:
                lock.reacquire()
                renewed[0], wait = sent, REDIS_LOCK_TTL_S / 3
            except redis.exceptions.LockError as e:  # the key is gone, or another's
                give_up(f"lost ({e})")
                return
            except redis.RedisError as e:
                # a retry's reply comes at most `margin` later, and must come before the key
                # could expire, with a margin to spare
                if time.monotonic() - renewed[0] + 2 * margin < REDIS_LOCK_TTL_S:
                    log.warning("renewing the compaction lock of %s failed (%s); retrying", lake.uri, e)
                    wait = REDIS_LOCK_TTL_S / 30
                    continue
                give_up(f"not renewed for {time.monotonic() - renewed[0]:.0f} s ({type(e).__name__}: {e})")
                return
            except Exception as e:  # noqa: BLE001 - whatever stops the renewals stops the pass
                give_up(f"renewals stopped ({type(e).__name__}: {e})")
                return

    def check() -> None:
        if lost.is_set() or time.monotonic() - renewed[0] >= REDIS_LOCK_TTL_S - margin:
            raise CompactionLockTrouble(f"lost the compaction lock of the lake {lake.uri} mid-pass; "
                                        f"stopped before its next step")

    renewer = threading.Thread(target=renew, name="compaction-lock", daemon=True)
    renewer.start()
    try:
        yield check
    finally:
        done.set()
        renewer.join()
        with contextlib.suppress(redis.exceptions.LockError, redis.RedisError):
            lock.release()  # not ours any more (expired, or taken): nothing to release
        client.close()


@dataclass
class PartitionCompaction:
    """What one pass did to one day partition."""

    directory: str  # relative to the lake's root
    files_before: int  # files a reader reads
    files_after: int
    bytes_before: int
    bytes_after: int
    batch_files: int  # batch files in the partition (held in compacted files or on their own)
    rows: int  # rows its compacted files hold

    def render(self) -> str:
        return (f"  {self.directory}: {self.files_before:,} files ({_mb(self.bytes_before)}) -> "
                f"{self.files_after:,} ({_mb(self.bytes_after)}), {self.rows:,} rows, "
                f"{self.batch_files:,} batch files")


@dataclass
class CompactionSummary:
    compacted: list[PartitionCompaction] = field(default_factory=list)
    open_days: int = 0  # partitions with small files still being written to (not closed)
    tidied: int = 0  # covered copies and orphans deleted, batches released
    seconds: float = 0.0

    def render(self) -> str:
        lines = [f"compaction: {len(self.compacted)} day partition(s) compacted in {self.seconds:.1f}s"
                 + (f", {self.open_days} still open" if self.open_days else "")
                 + (f", {self.tidied} leftover file(s) tidied" if self.tidied else "")]
        lines.extend(p.render() for p in self.compacted)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {"compacted": [p.__dict__ for p in self.compacted], "open_days": self.open_days,
                "tidied": self.tidied, "seconds": round(self.seconds, 3)}


def compact(lake: Lake, *, target_bytes: int, quiet_s: float, dataset: str | None = None,
            day: dt.date | None = None, now: dt.datetime | None = None,
            orphan_age_s: float = ORPHAN_AGE_S, redis_url: str | None = None) -> CompactionSummary:
    """Compact every closed day partition of the curated zone (of `dataset`, of `day`), holding
    the lake's lock (CompactionBusy when another compaction holds it; `redis_url`: where an
    object-store lake's lock is, see `one_compactor`).

    Not the quarantine zone: a quarantine replay keys the rows it moves by the bytes of
    each quarantine file (`pipeline.quarantine_replay`), which a compacted file cannot give back."""
    with one_compactor(lake, redis_url) as still_held:
        return _compact(lake, target_bytes=target_bytes, quiet_s=quiet_s, dataset=dataset, day=day,
                        now=now or dt.datetime.now(dt.timezone.utc), orphan_age_s=orphan_age_s,
                        still_held=still_held)


def _compact(lake: Lake, *, target_bytes: int, quiet_s: float, dataset: str | None, day: dt.date | None,
             now: dt.datetime, orphan_age_s: float, still_held: Callable[[], None]) -> CompactionSummary:
    began = time.perf_counter()
    summary = CompactionSummary()
    for listed in lake.partitions("curated", dataset):
        ds = _dataset_of(listed.directory)
        if ds is None or (day is not None and partition_day(listed.directory + "/") != day):
            continue
        still_held()
        # the day's lock for its whole pass: a batch written to it meanwhile waits, instead of
        # landing between this pass's reads and the deletes that follow its publish
        with lake.partition_lock(listed.directory):
            _compact_day(lake, lake.partition(listed.directory), ds, summary, target_bytes=target_bytes,
                         quiet_s=quiet_s, now=now, orphan_age_s=orphan_age_s, still_held=still_held)
    summary.seconds = time.perf_counter() - began
    return summary


def _compact_day(lake: Lake, part: Partition, ds: Dataset, summary: CompactionSummary, *, target_bytes: int,
                 quiet_s: float, now: dt.datetime, orphan_age_s: float, still_held: Callable[[], None]) -> None:
    tidied = tidy(lake, part, ds, now=now, orphan_age_s=orphan_age_s, still_held=still_held)
    if tidied:
        summary.tidied += tidied
        part = lake.partition(part.directory)
    newest = max((part.files[n].mtime for n in part.uncovered), default=None)
    if newest is not None and (now - newest).total_seconds() < quiet_s:
        if _groups(part, target_bytes):
            summary.open_days += 1
        return
    done = compact_partition(lake, part, ds, target_bytes=target_bytes, still_held=still_held)
    if done is not None:
        summary.compacted.append(done)


def compact_partition(lake: Lake, part: Partition, ds: Dataset, *, target_bytes: int,
                      still_held: Callable[[], None] = lambda: None) -> PartitionCompaction | None:
    """Rewrite the small files of one partition as files of up to `target_bytes` (None: nothing to do).
    The caller holds the partition's lock (`Lake.partition_lock`) and the lake's (`still_held`
    raises CompactionBusy once that is lost: checked before the manifest is published and
    before batch files are deleted).

    Groups are cut by the sizes of the files they replace, and a compacted file comes out
    smaller than those (each small file carries its own footer and statistics): so the new
    files are looked at again, and small ones merged, until no two small files remain."""
    first, rounds = part, 0
    while rounds < MAX_ROUNDS and (groups := _groups(part, target_bytes)):
        _rewrite(lake, part, ds, groups, still_held)
        part = lake.partition(part.directory)
        rounds += 1
    if rounds == 0:
        return None
    return PartitionCompaction(
        directory=part.directory[len(lake.root) + 1:], files_before=len(first.readable),
        files_after=len(part.readable), bytes_before=_size(first, first.readable),
        bytes_after=_size(part, part.readable), batch_files=len(part.logical),
        rows=sum(part.manifest.outputs.values()) if part.manifest else 0)


def _rewrite(lake: Lake, part: Partition, ds: Dataset, groups: list[list[str]], still_held: Callable[[], None]) -> None:
    schema = lake.zone_schema(part.directory, ds)
    before = part.manifest or Manifest()
    after = before.without([name for group in groups for name in group if name in before.outputs])
    for group in groups:
        held: list[tuple[str, pa.Table, str]] = []
        for name in group:
            if name in before.outputs:
                held.extend(lake.held_tables(part.directory, before, name, schema))
            else:
                data = lake.read_bytes(part.path(name))
                held.append((name, pq.read_table(pa.BufferReader(data), schema=schema), sha256(data)))
        output, placed = lake.write_compacted(part.directory, held, ds, schema)  # 1. unseen until published
        after.outputs[output] = sum(t.num_rows for _, t, _ in held)
        after.inputs.update(placed)
    still_held()  # a compactor that lost the lake's lock leaves orphans, never a manifest or deletes
    lake.publish(part.directory, after)  # 2. the switch
    for name in (n for group in groups for n in group):  # 3. nobody reads these any more
        if name in after.outputs:
            continue  # rewritten to the same name (the same batches in it)
        still_held()  # a stopped pass leaves covered copies: the next one's tidy deals with them
        if name in before.outputs:
            lake.delete_quietly(part.path(name))  # a compacted file this one replaces
        else:
            _delete_unless_rewritten(lake, part, name, after.inputs[name].sha256, ds)


def _delete_unless_rewritten(lake: Lake, part: Partition, name: str, held_sha256: str, ds: Dataset) -> None:
    """Delete a batch file the published manifest now holds, unless it was written again since
    the pass read it (its bytes are not the ones the manifest holds): then it is released
    instead, so its new rows stand on their own (as `tidy` does with a leftover). On a local
    lake the partition lock keeps writes out of a pass; an object store has no lock, and this
    check leaves a late write only the moment between it and the delete. Bytes, not listed
    sizes and times: an object store's listing and HEAD may give times to different precisions."""
    if lake.local:  # the pass holds the partition's lock: nobody wrote it since it was read
        lake.delete_quietly(part.path(name))
        return
    try:
        data = lake.read_bytes(part.path(name))
    except FileNotFoundError:
        return
    if sha256(data) == held_sha256:
        lake.delete_quietly(part.path(name))
    else:
        lake.release(part.directory, name, ds)


def tidy(lake: Lake, part: Partition, ds: Dataset, *, now: dt.datetime, orphan_age_s: float,
         still_held: Callable[[], None] = lambda: None) -> int:
    """Finish what an interrupted compaction or release left: covered copies still on disk
    (deleted when they hold the bytes the manifest holds, released when they were rewritten
    since), and old compacted files no manifest names. The number of files dealt with.
    `still_held` (the lake's lock) is checked before each delete or release."""
    dealt = 0
    for name in part.leftovers:
        try:
            data = lake.read_bytes(part.path(name))
        except FileNotFoundError:
            continue
        still_held()
        if sha256(data) == part.manifest.inputs[name].sha256:
            lake.delete_quietly(part.path(name))
        else:
            lake.release(part.directory, name, ds)
        dealt += 1
    for name in part.orphans:
        mtime = part.files[name].mtime
        if mtime is not None and (now - mtime).total_seconds() >= orphan_age_s:
            still_held()
            lake.delete_quietly(part.path(name))
            dealt += 1
    return dealt


def _groups(part: Partition, target_bytes: int) -> list[list[str]]:
    """The small files (under half the target) of a partition, in row order (compacted files
    by the batches they hold, then batch files by name, that is by stream id), cut into
    groups of up to the target size (a last lone file joins the group before it); only
    groups of two or more are worth a rewrite."""
    small = [(n, part.files[n].size or 0) for n in part.readable
             if n in part.files and (part.files[n].size or 0) < target_bytes / 2]
    groups: list[list[str]] = []
    size = 0
    for name, n_bytes in small:
        if not groups or (groups[-1] and size + n_bytes > target_bytes):
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += n_bytes
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2].extend(groups.pop())
    return [g for g in groups if len(g) > 1]


def _dataset_of(directory: str) -> Dataset | None:
    match = _DATASET.search(directory + "/")
    if match is None:
        return None
    try:
        return dataset_named(match.group(1))
    except KeyError:  # not a dataset's partition
        return None


def _size(part: Partition, names: list[str]) -> int:
    return sum(part.files[n].size or 0 for n in names if n in part.files)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


class CompactionLoop:
    """`up`'s compactor: every `lake_compact_interval_s`, the curated days closed for
    `lake_compact_quiet_s` are compacted (in a thread of the `up` process: pyarrow does the
    work outside the GIL)."""

    def __init__(self, settings: Settings, *, say: Callable[[str], None]) -> None:
        self.settings = settings
        self._say = say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lake-compaction", daemon=True)
        self.last: CompactionSummary | None = None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        lake = Lake(self.settings.resolved_lake_uri)
        while not self._stop.wait(self.settings.lake_compact_interval_s):
            try:
                self.last = compact(lake, target_bytes=self.settings.lake_compact_target_bytes,
                                    quiet_s=self.settings.lake_compact_quiet_s,
                                    redis_url=lock_redis_url(self.settings, lake))
            except CompactionLockTrouble as e:  # an object store's lock in Redis: worth a look
                log.warning("lake compaction skipped: %s", e)
                continue
            except CompactionBusy as e:  # `sentinel-ray compact` in another terminal: its pass does the work
                log.info("lake compaction skipped: %s", e)
                continue
            except Exception as e:  # noqa: BLE001 - a failed pass leaves readable files; the next one retries
                log.warning("lake compaction failed (%s: %s); trying again in %.0f s", type(e).__name__, e,
                            self.settings.lake_compact_interval_s)
                continue
            if self.last.compacted:
                self._say(self.last.render())
