"""Redis Streams: the durable buffer between pollers (and webhooks) and the pipeline.

One stream per dataset. An entry is one poll's records for that dataset as an Arrow IPC
stream (columnar, so consumers never parse rows one by one), plus who sent it and when.

A poll's entries and the source's new cursor are written in one MULTI/EXEC: either both
land or neither, so a poller that dies between the two cannot emit the same records
twice. Consumers read through one consumer group per stream: the group protocol (read,
take over, batch manifests, acknowledge) is here; what a micro-batch is, is in consumer.py.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import redis

from sentinel_ray.config import Settings

GROUP = "pipeline"


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
    table: pa.Table

    @classmethod
    def from_redis(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> "Entry":
        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            source=fields[b"source"].decode(),
            rows=int(fields[b"rows"]),
            created_ms=int(fields[b"created_ms"]),
            table=decode_table(fields[b"arrow"]),
        )

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
                    entries.append(Entry.from_redis(entry_id, fields))
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
        return [Entry.from_redis(entry_id, fields) for entry_id, fields in claimed if fields]

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
        pipe.execute()

    def fault_held(self, point: str) -> bool:
        return bool(self.redis.exists(self.fault_key(point)))

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
