"""Redis Streams: the durable buffer between pollers (and webhooks) and the pipeline.

One stream per dataset. An entry is one poll's records for that dataset as an Arrow IPC
stream (columnar, so consumers never parse rows one by one), plus who sent it and when.

A poll's entries and the source's new cursor are written in one MULTI/EXEC: either both
land or neither, so a poller that dies between the two cannot emit the same records
twice. Consumers read through one consumer group per stream: the group protocol (read,
take over, batch manifests, acknowledge, dead letters) is here; what a micro-batch is, is
in consumer.py.

Dead letters: entries whose batch failed in a way no retry fixes move to
`<prefix>:deadletter:<dataset>`, each with its payload fields unchanged plus why
(`DEAD_LETTER_FIELDS`), and leave the stream in the same atomic step (a Lua script, so
only entries this XACK took off the pending list are moved: a batch two consumers hold at
once is moved, or stored, once). `replay_dead_letters` moves them back, atomically again.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc
import redis

from sentinel_ray.config import Settings
from sentinel_ray.records import ErrorKind, utc_now

GROUP = "pipeline"
# the lock a batch's signals run under (the prices and posts consumers, a replay's recompute)
SIGNALS_LOCK = "signals"
# what a dead-letter entry carries besides the original entry's fields (source, rows, created_ms, arrow)
DEAD_LETTER_FIELDS = ("original_id", "batch_key", "error_type", "error", "error_kind", "consumer", "failed_at",
                      "attempts")

# KEYS: stream, dead-letter stream, batch-of hash, failures hash, dead-letter stats, manifest
# ARGV: group, batch key ('' for none), error_type, error, error_kind, consumer, failed_at, attempts, ids...
_DEAD_LETTER = """
local moved, rows = {}, 0
for i = 9, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('XRANGE', KEYS[1], id, id)
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    if #entry == 1 then
      local fields = entry[1][2]
      for j = 1, #fields, 2 do
        if fields[j] == 'rows' then rows = rows + (tonumber(fields[j + 1]) or 0) end
      end
      local meta = {'original_id', id, 'batch_key', ARGV[2], 'error_type', ARGV[3], 'error', ARGV[4],
                    'error_kind', ARGV[5], 'consumer', ARGV[6], 'failed_at', ARGV[7], 'attempts', ARGV[8]}
      for j = 1, #meta do fields[#fields + 1] = meta[j] end
      redis.call('XADD', KEYS[2], '*', unpack(fields))
      moved[#moved + 1] = id
    end
    redis.call('XDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
  end
end
if ARGV[2] ~= '' then
  redis.call('DEL', KEYS[6])
  redis.call('HDEL', KEYS[4], ARGV[2])
end
if #moved > 0 then
  redis.call('HINCRBY', KEYS[5], 'entries', #moved)
  redis.call('HINCRBY', KEYS[5], 'rows', rows)
  redis.call('HINCRBY', KEYS[5], 'batches', 1)
  redis.call('HSET', KEYS[5], 'last_error_type', ARGV[3], 'last_error', ARGV[4], 'last_error_kind', ARGV[5],
             'last_at', ARGV[7])
end
return moved
"""

# KEYS: dead-letter stream, stream, dead-letter stats. ARGV: dead-letter ids. Returns the new stream ids.
_REPLAY = """
local meta = {original_id = 1, batch_key = 1, error_type = 1, error = 1, error_kind = 1, consumer = 1,
              failed_at = 1, attempts = 1}
local added, rows = {}, 0
for i = 1, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if #entry == 1 then
    local fields, payload = entry[1][2], {}
    for j = 1, #fields, 2 do
      if not meta[fields[j]] then
        payload[#payload + 1] = fields[j]
        payload[#payload + 1] = fields[j + 1]
        if fields[j] == 'rows' then rows = rows + (tonumber(fields[j + 1]) or 0) end
      end
    end
    added[#added + 1] = redis.call('XADD', KEYS[2], '*', unpack(payload))
    redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
if #added > 0 then
  redis.call('HINCRBY', KEYS[3], 'replayed_entries', #added)
  redis.call('HINCRBY', KEYS[3], 'replayed_rows', rows)
end
return added
"""


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def encode_table(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_table(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(data)).read_all()


@dataclass(frozen=True)
class Entry:
    id: str
    source: str
    rows: int
    created_ms: int  # when the poller (or webhook) put it in the stream
    table: pa.Table | None  # None only for a poisoned entry
    poison: Exception | None = field(default=None, compare=False)  # why it could not be decoded

    @classmethod
    def from_redis(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> "Entry":
        return cls(
            id=_text(entry_id),
            source=fields[b"source"].decode(),
            rows=int(fields[b"rows"]),
            created_ms=int(fields[b"created_ms"]),
            table=decode_table(fields[b"arrow"]),
        )

    @classmethod
    def read(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> "Entry":
        """`from_redis`, or, when the fields cannot be decoded, a poisoned entry: no retry will
        decode it, so the consumer dead-letters it rather than fail on it forever."""
        try:
            return cls.from_redis(entry_id, fields)
        except Exception as e:  # noqa: BLE001 - any decoding failure is this entry's, not the stream's
            rows = fields.get(b"rows", b"")
            return cls(_text(entry_id), _text(fields.get(b"source", b"")), int(rows) if rows.isdigit() else 0, 0,
                       None, poison=e)

    @property
    def stream_ms(self) -> int:
        """The millisecond part of the entry id: when Redis accepted it."""
        return int(self.id.split("-", 1)[0])


@dataclass(frozen=True)
class StreamLag:
    dataset: str
    length: int  # entries in the stream (acked entries are deleted, so: not yet stored)
    pending: int  # delivered to a consumer, not yet acknowledged
    oldest_pending_age_s: float | None
    consumers: int

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class StreamStore:
    """Key layout under one prefix, so tests and several platforms can share a Redis."""

    def __init__(self, client: redis.Redis, prefix: str | None = None) -> None:
        self.redis = client
        # callers that have settings pass settings.redis_key_prefix; None keeps the one default
        self.prefix = Settings.model_fields["redis_key_prefix"].default if prefix is None else prefix

    # -- keys ------------------------------------------------------------------
    def stream_key(self, dataset: str) -> str:
        return f"{self.prefix}:stream:{dataset}"

    def cursor_key(self, source: str) -> str:
        return f"{self.prefix}:cursor:{source}"

    def batch_of_key(self, dataset: str) -> str:
        return f"{self.prefix}:batch-of:{dataset}"  # hash: entry id -> batch key

    def manifest_key(self, batch_key: str) -> str:
        return f"{self.prefix}:manifest:{batch_key}"  # entry ids of one micro-batch

    def status_key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:status:{kind}:{name}"

    def fault_key(self, point: str) -> str:
        return f"{self.prefix}:fault:{point}"  # chaos drills: exists while consumers hold at `point`

    def dead_letter_key(self, dataset: str) -> str:
        return f"{self.prefix}:deadletter:{dataset}"  # stream of entries set aside, with why

    def dead_letter_stats_key(self, dataset: str) -> str:
        return f"{self.prefix}:deadletter-stats:{dataset}"  # hash: totals and the last error

    def failures_key(self, dataset: str) -> str:
        return f"{self.prefix}:failures:{dataset}"  # hash: batch key -> failed attempts (unknown errors)

    def restarts_key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:restarts:{kind}:{name}"  # how often that actor was restarted

    # -- writing -----------------------------------------------------------------
    def ensure_group(self, dataset: str) -> None:
        try:
            self.redis.xgroup_create(self.stream_key(dataset), GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def publish(self, source: str, tables: dict[str, pa.Table], cursor: dict[str, Any] | None = None,
                *, update_cursor: bool = True) -> list[str]:
        """Append one entry per non-empty table and save the cursor, atomically."""
        created_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=True)
        datasets = []
        for dataset, table in tables.items():
            if table is None or table.num_rows == 0:
                continue
            pipe.xadd(self.stream_key(dataset), {
                "source": source, "rows": table.num_rows, "created_ms": created_ms, "arrow": encode_table(table)})
            datasets.append(dataset)
        if update_cursor:
            pipe.set(self.cursor_key(source), json.dumps(cursor, sort_keys=True, default=str))
        results = pipe.execute()
        return [r.decode() if isinstance(r, bytes) else r for r in results[:len(datasets)]]

    def load_cursor(self, source: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.cursor_key(source))
        return None if raw is None else json.loads(raw)

    # -- consuming (one group per stream; `consumer` names the group member) ----------------
    def read_pending(self, dataset: str, consumer: str, *, count: int) -> list[Entry]:
        """Entries delivered to `consumer` and not yet acknowledged (what it held when it died)."""
        return self._read_group(dataset, consumer, "0", count=count, block_ms=None)

    def read_new(self, dataset: str, consumer: str, *, count: int, block_ms: int) -> list[Entry]:
        """Entries never delivered to any consumer, waiting up to `block_ms` for the first."""
        return self._read_group(dataset, consumer, ">", count=count, block_ms=block_ms)

    def _read_group(self, dataset: str, consumer: str, start: str, *, count: int,
                    block_ms: int | None) -> list[Entry]:
        key = self.stream_key(dataset)
        reply = self.redis.xreadgroup(GROUP, consumer, {key: start}, count=count, block=block_ms)
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                if fields:  # an id whose entry was deleted comes back without fields
                    entries.append(Entry.read(entry_id, fields))
                else:
                    self.redis.xack(key, GROUP, entry_id)
        return entries

    def claim_idle(self, dataset: str, consumer: str, *, min_idle_s: float, count: int) -> int:
        """Move to `consumer` entries pending elsewhere for `min_idle_s` (XAUTOCLAIM); how many.

        The claimed entries join `consumer`'s pending list: read them with `read_pending`.
        """
        claimed = self.redis.xautoclaim(self.stream_key(dataset), GROUP, consumer, int(min_idle_s * 1000), "0-0",
                                        count=count, justid=True)
        return len(claimed)

    def claim(self, dataset: str, consumer: str, ids: list[str]) -> list[Entry]:
        """Take these entries over now, however briefly idle (XCLAIM): the rest of a batch being resumed."""
        claimed = self.redis.xclaim(self.stream_key(dataset), GROUP, consumer, 0, ids)
        return [Entry.read(entry_id, fields) for entry_id, fields in claimed if fields]

    def save_manifest(self, dataset: str, batch_key: str, ids: list[str]) -> None:
        """Record a micro-batch before anything is written for it: its entry ids, and each id's batch."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.manifest_key(batch_key), ",".join(ids))
        pipe.hset(self.batch_of_key(dataset), mapping={i: batch_key for i in ids})
        pipe.execute()

    def batch_keys_of(self, dataset: str, ids: list[str]) -> list[str | None]:
        """The manifest each entry was registered under (None: never registered)."""
        keys = self.redis.hmget(self.batch_of_key(dataset), ids)
        return [k.decode() if k else None for k in keys]

    def load_manifest(self, batch_key: str) -> list[str] | None:
        raw = self.redis.get(self.manifest_key(batch_key))
        return raw.decode().split(",") if raw else None

    def acknowledge(self, dataset: str, batch_key: str, ids: list[str]) -> None:
        """After the writes: XACK and delete the entries and drop the batch's manifest, atomically."""
        key = self.stream_key(dataset)
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(key, GROUP, *ids)
        pipe.xdel(key, *ids)
        pipe.hdel(self.batch_of_key(dataset), *ids)
        pipe.delete(self.manifest_key(batch_key))
        pipe.hdel(self.failures_key(dataset), batch_key)
        pipe.execute()

    def count_failure(self, dataset: str, batch_key: str) -> int:
        """One more failed attempt at this batch; how many so far (cleared when it is acknowledged)."""
        return int(self.redis.hincrby(self.failures_key(dataset), batch_key, 1))

    # -- dead letters --------------------------------------------------------------
    def dead_letter(self, dataset: str, batch_key: str | None, ids: list[str], *, error: BaseException,
                    kind: ErrorKind, consumer: str, attempts: int = 1) -> list[str]:
        """Move these pending entries to the dead-letter stream and acknowledge them, with the
        batch's manifest dropped, atomically. Returns the ids moved: only entries still pending
        (one another consumer acknowledged meanwhile was stored, and stays so)."""
        keys = [self.stream_key(dataset), self.dead_letter_key(dataset), self.batch_of_key(dataset),
                self.failures_key(dataset), self.dead_letter_stats_key(dataset), self.manifest_key(batch_key or "")]
        args = [GROUP, batch_key or "", type(error).__name__, str(error)[:2_000], kind.value, consumer,
                utc_now().isoformat(), attempts, *ids]
        return [_text(i) for i in self.redis.eval(_DEAD_LETTER, len(keys), *keys, *args)]

    def dead_letters(self, dataset: str, *, count: int = 100) -> list[dict[str, Any]]:
        """The oldest `count` dead letters: id, where they came from, why (no payload)."""
        out = []
        for entry_id, fields in self.redis.xrange(self.dead_letter_key(dataset), count=count):
            out.append({"id": _text(entry_id), "source": _text(fields.get(b"source", b"")),
                        "rows": int(fields.get(b"rows") or 0),
                        **{name: _text(fields.get(name.encode(), b"")) for name in DEAD_LETTER_FIELDS}})
        return out

    def replay_dead_letters(self, dataset: str, ids: list[str] | None = None) -> list[str]:
        """Move dead letters (these, or all there are now) back to the stream, each exactly once:
        appended as new entries and deleted from the dead-letter stream in one atomic step.
        Returns the new stream ids."""
        key = self.dead_letter_key(dataset)
        keys = [key, self.stream_key(dataset), self.dead_letter_stats_key(dataset)]
        if ids is not None:
            return [_text(i) for i in self.redis.eval(_REPLAY, len(keys), *keys, *ids)] if ids else []
        newest = self.redis.xrevrange(key, count=1)  # not past what is there now: replays may fail again
        if not newest:
            return []
        added: list[str] = []
        while chunk := [_text(i) for i, _ in self.redis.xrange(key, max=newest[0][0], count=500)]:
            added += [_text(i) for i in self.redis.eval(_REPLAY, len(keys), *keys, *chunk)]
        return added

    def dead_letter_summary(self, dataset: str) -> dict[str, Any]:
        """What `status` shows per dataset: dead letters waiting, their rows, totals, the last error."""
        stats = {_text(k): _text(v) for k, v in self.redis.hgetall(self.dead_letter_stats_key(dataset)).items()}
        number = (lambda name: int(stats.get(name) or 0))
        return {"waiting": int(self.redis.xlen(self.dead_letter_key(dataset))),
                "rows_waiting": number("rows") - number("replayed_rows"),
                "entries_total": number("entries"), "batches_total": number("batches"),
                "replayed_total": number("replayed_entries"), "last_error": stats.get("last_error"),
                "last_error_type": stats.get("last_error_type"), "last_error_kind": stats.get("last_error_kind"),
                "last_at": stats.get("last_at")}

    # -- restarts --------------------------------------------------------------------
    def count_restart(self, kind: str, name: str) -> int:
        return int(self.redis.incr(self.restarts_key(kind, name)))

    def restarts(self, kind: str, names: list[str] | None = None) -> dict[str, int]:
        """Restarts of these actors (0 when never counted), or of every actor of `kind` counted."""
        if names is None:
            start = len(self.restarts_key(kind, ""))
            names = [_text(k)[start:] for k in self.redis.scan_iter(match=f"{self.restarts_key(kind, '')}*")]
        values = self.redis.mget([self.restarts_key(kind, n) for n in names]) if names else []
        return {n: int(v or 0) for n, v in zip(names, values)}

    def reset_restarts(self, kind: str, names: list[str]) -> None:
        if names:
            self.redis.delete(*[self.restarts_key(kind, n) for n in names])

    def fault_held(self, point: str) -> bool:
        return bool(self.redis.exists(self.fault_key(point)))

    def lock_key(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    @contextmanager
    def exclusive(self, name: str, *, ttl_s: float = 15.0, wait_s: float = 60.0) -> Iterator[None]:
        """One holder at a time across processes (redis-py's Lock: SET NX PX with a token,
        released by its holder only). A holder killed inside frees it after `ttl_s`; a
        section that outlives `ttl_s` loses the guarantee, so keep sections short."""
        lock = self.redis.lock(self.lock_key(name), timeout=ttl_s, blocking_timeout=wait_s)
        if not lock.acquire():
            raise TimeoutError(f"lock {name!r} still held by another process after {wait_s:.0f} s")
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:  # expired meanwhile: nothing of ours to release
                pass

    # -- the signals' epoch ---------------------------------------------------------
    # Writers that change stored bars behind the stream's back move it: a replay recomputing
    # sessions, a backfill recomputing the sessions after its days (both holding SIGNALS_LOCK
    # for each recent block: `ServingUpdater.stream_signals_held`), a backfill of recent days
    # (when it ends).
    # A prices or posts consumer, under SIGNALS_LOCK, seeing it moved rebuilds its in-memory
    # states from the warehouse before its batch's signals.
    def signals_epoch_key(self) -> str:
        return f"{self.prefix}:signals:epoch"

    def signals_epoch(self) -> int:
        return int(self.redis.get(self.signals_epoch_key()) or 0)

    def move_signals_epoch(self) -> None:
        self.redis.incr(self.signals_epoch_key())

    # -- observing -----------------------------------------------------------------
    def length(self, dataset: str) -> int:
        return int(self.redis.xlen(self.stream_key(dataset)))

    def lag(self, dataset: str) -> StreamLag:
        key = self.stream_key(dataset)
        length = int(self.redis.xlen(key))
        try:
            summary = self.redis.xpending(key, GROUP)
            consumers = len(self.redis.xinfo_consumers(key, GROUP))
        except redis.ResponseError:  # no group yet
            return StreamLag(dataset, length, 0, None, 0)
        pending = int(summary["pending"])
        oldest = None
        if pending and summary["min"]:
            oldest_id = summary["min"].decode() if isinstance(summary["min"], bytes) else summary["min"]
            oldest = max(0.0, time.time() - int(oldest_id.split("-")[0]) / 1000)
        return StreamLag(dataset, length, pending, oldest, consumers)

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.redis.set(self.status_key(kind, name), json.dumps(status, default=str))

    def statuses(self, kind: str) -> dict[str, dict[str, Any]]:
        out = {}
        prefix = self.status_key(kind, "")
        for key in self.redis.scan_iter(match=f"{prefix}*"):
            raw = self.redis.get(key)
            if raw:
                out[key.decode()[len(prefix):]] = json.loads(raw)
        return out
