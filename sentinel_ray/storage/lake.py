"""The Parquet lake: raw payloads, curated rows and quarantined rows.

Layout (Hive partitions, so any engine can read it):

    raw/source=S/dataset=D/date=YYYY-MM-DD/<batch>-<n>.<ext>    payloads exactly as received
    reports/<kind>/date=YYYY-MM-DD/<name>                      generated reports (quality)
    curated/dataset=D/source=S/date=YYYY-MM-DD/part-<batch>.parquet   valid rows (date of ts, UTC)
    quarantine/dataset=D/source=S/date=YYYY-MM-DD/part-<batch>.parquet  rejected rows + reason

Every file name is derived from the batch that wrote it (a backfill partition, a stream
batch), so writing the same batch again replaces its files instead of adding copies:
that is what makes re-runs idempotent.

A file is published whole, so a reader never sees half of one: on a local disk it is
written under a temporary name and renamed into place; on an object store (s3://), which
has no rename, it is serialised in memory first and sent as one upload of the final key
(a PutObject, or above 10 MiB a multipart upload, which shows nothing until it completes).
It is never streamed: pyarrow's S3 stream completes its upload when it is closed, by an
exception too, and would publish the part written so far.

Compaction (`storage/compaction.py`) rewrites a closed day's many batch files as a few
`compacted-<digest>.parquet` files. A partition's `_compaction.json` manifest says which
batch files each compacted file holds (rows `offset`..`offset + rows`, and the SHA-256 of
the batch file's bytes). A batch file a published manifest names is covered: it is read
from its compacted file only (`read` skips a copy still on disk), so a reader sees the old
files or the compacted ones, never both. `list_files` still lists it (its rows can be read
with `read_file`, replaced or removed with `replace_file`), and writing it again stays
idempotent: the same bytes change nothing, other bytes take its rows out of the compacted
file and stand on their own.

A partition's manifest changes under that partition's lock (`partition_lock`): a write of a
batch file (which may release it from its compacted file) and a compaction of the day take
it for their whole read-change-publish, so neither publishes over the other's manifest nor
deletes a batch file the other just wrote. On a local lake it is an flock on
`_locks/<partition>.lock` under the root (the kernel drops it when its holder dies). An
object store (or any filesystem but a local one) has none: there one compactor is the
operator's rule, and a compaction checks each batch file just before deleting it
(`compaction._delete_unless_rewritten`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sentinel_ray.records import RawPayload
from sentinel_ray.schemas import Dataset, dataset

COMPUTED_SOURCE = "computed"  # the source partition of rows the platform derives (features)
MANIFEST = "_compaction.json"
RAW_META_PREFIX = "_meta-"  # beside each raw payload: its arrival time, content type and request text  # per partition: which batch files its compacted files hold
COMPACTED_PREFIX = "compacted-"
PARQUET_ZONES = ("curated", "quarantine")
_OBJECT_STORES = ("s3", "gcs")
_READ_ATTEMPTS = 3  # a compaction may delete the files a read listed: list again
_EXTENSIONS = {"application/json": "json", "application/x-ndjson": "ndjson", "text/html": "html",
               "application/xml": "xml", "text/csv": "csv", "application/rss+xml": "xml"}
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def _safe(part: str) -> str:
    return _SAFE.sub("_", part)


def sha256(data: bytes | pa.Buffer) -> str:
    return hashlib.sha256(memoryview(data)).hexdigest()


@dataclass(frozen=True)
class Held:
    """A batch file inside a compacted file: its rows there, and the SHA-256 of its own bytes."""

    output: str
    offset: int
    rows: int
    sha256: str


@dataclass
class Manifest:
    """A partition's `_compaction.json`: compacted file -> rows, batch file -> where it is held."""

    outputs: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, Held] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = json.loads(data)
        return cls(dict(doc["outputs"]), {name: Held(**held) for name, held in doc["inputs"].items()})

    def to_json(self) -> bytes:
        return json.dumps({"format": 1, "outputs": self.outputs,
                           "inputs": {name: held.__dict__ for name, held in self.inputs.items()}},
                          sort_keys=True, indent=0).encode()

    def held_by(self, output: str) -> list[tuple[str, Held]]:
        """The batch files `output` holds, in its row order."""
        return sorted(((n, h) for n, h in self.inputs.items() if h.output == output), key=lambda nh: nh[1].offset)

    def without(self, outputs: list[str]) -> Manifest:
        gone = set(outputs)
        return Manifest({o: r for o, r in self.outputs.items() if o not in gone},
                        {n: h for n, h in self.inputs.items() if h.output not in gone})


@dataclass(frozen=True)
class Partition:
    """One partition directory as it is on disk: its files (name -> info) and its manifest."""

    directory: str
    files: dict[str, pafs.FileInfo]
    manifest: Manifest | None

    def _is_batch_file(self, name: str) -> bool:
        return not name.startswith(("_", ".", COMPACTED_PREFIX))

    @property
    def uncovered(self) -> list[str]:
        """Batch files read on their own (no published compacted file holds them)."""
        covered = self.manifest.inputs if self.manifest else {}
        return sorted(n for n in self.files if self._is_batch_file(n) and n not in covered)

    @property
    def readable(self) -> list[str]:
        """What a reader reads: the published compacted files and the uncovered batch files."""
        return self.outputs + self.uncovered

    @property
    def outputs(self) -> list[str]:
        """The published compacted files, in the order of the batch files they hold."""
        if self.manifest is None:
            return []
        first: dict[str, str] = {}
        for name, held in self.manifest.inputs.items():
            first[held.output] = min(first.get(held.output, name), name)
        return sorted(self.manifest.outputs, key=lambda o: (first.get(o, ""), o))

    @property
    def logical(self) -> list[str]:
        """Every batch file, held in a compacted file or on its own."""
        return sorted(self.uncovered + (list(self.manifest.inputs) if self.manifest else []))

    @property
    def leftovers(self) -> list[str]:
        """Batch files still on disk that a published compacted file holds (read from there)."""
        return sorted(n for n in self.files if self.manifest and n in self.manifest.inputs)

    @property
    def orphans(self) -> list[str]:
        """Compacted files no published manifest names (an interrupted compaction's, or replaced ones)."""
        published = self.manifest.outputs if self.manifest else {}
        return sorted(n for n in self.files if n.startswith(COMPACTED_PREFIX) and n not in published)

    def path(self, name: str) -> str:
        return f"{self.directory}/{name}"


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        return _s3_filesystem(getattr(uri, "s3", None)), f"{parts.netloc}{parts.path}"
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def _s3_filesystem(s3: object | None) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the lake's S3 settings (`config.LakeS3Settings`, attached to
    `settings.resolved_lake_uri`); a plain s3:// string gets the AWS SDK's defaults."""
    # Delayed open: the upload starts at close, so an object smaller than a part (10 MiB) goes
    # up as one PutObject instead of a three-request multipart upload.
    options: dict[str, object] = {"allow_delayed_open": True}
    if s3 is not None:
        if s3.endpoint_url:
            endpoint = urlsplit(s3.endpoint_url)
            options.update(endpoint_override=endpoint.netloc + endpoint.path, scheme=endpoint.scheme)
        if s3.region:
            options["region"] = s3.region
        if s3.access_key_id is not None and s3.secret_access_key is not None:
            options.update(access_key=s3.access_key_id.get_secret_value(),
                           secret_key=s3.secret_access_key.get_secret_value())
    return pafs.S3FileSystem(**options)


def _empty(schema: pa.Schema, columns: list[str] | None) -> pa.Table:
    """No rows, with the columns a scan of `schema` for `columns` would have given."""
    if columns is None:
        return schema.empty_table()
    return pa.schema([pa.field(c, pa.string()) if c == "__filename" else schema.field(c) for c in columns]).empty_table()


LOCKS_DIR = "_locks"  # under a local lake's root: one lock file per partition a manifest was changed in
_held = threading.local()  # the partitions this thread holds the lock of (a release inside a write)


class Lake:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root = _filesystem(uri)
        self.root = self.root.rstrip("/")
        # no directories to create and no rename: a whole-object upload is the atomic step
        self.object_store = self.fs.type_name in _OBJECT_STORES
        # a folder on this machine's disk (or a mount of one): where flock locks can live
        self.local = self.fs.type_name == "local"

    # -- writing -----------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def put_bytes(self, path: str, data: bytes | pa.Buffer) -> None:
        """Publish one whole file at `path` (replacing any): readers see the old one or this one."""
        if self.object_store:
            out = self.fs.open_output_stream(path)
            out.write(data)  # one call: the bytes are complete before the upload begins
            out.close()
            return
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def write_raw(self, payload: RawPayload, *, day: dt.date, batch_key: str, seq: int = 0) -> str:
        """The body exactly as received, and beside it (`_meta-<file>.json`) what a parser needs
        besides the body: when it arrived, its content type and the request text. Returns the path."""
        ext = _EXTENSIONS.get(payload.content_type.split(";")[0].strip(), "bin")
        path = self._path("raw", f"source={_safe(payload.source)}", f"dataset={_safe(payload.dataset)}",
                          f"date={day.isoformat()}", f"{_safe(batch_key)}-{seq}.{ext}")
        self.put_bytes(path, payload.body)
        received = payload.received_at if payload.received_at.tzinfo else payload.received_at.replace(
            tzinfo=dt.timezone.utc)
        meta = {"source": payload.source, "dataset": payload.dataset, "received_at": received.isoformat(),
                "content_type": payload.content_type, "request": payload.request, "payload_id": payload.payload_id}
        directory, name = path.rsplit("/", 1)
        self.put_bytes(f"{directory}/{RAW_META_PREFIX}{name}.json", json.dumps(meta).encode())
        return path

    def read_raw(self, raw_id: str) -> RawPayload:
        """A kept payload by its raw-zone id (its path under the lake root, what rows carry as
        `raw_id`). A payload kept before its sidecar existed reads with what its path tells."""
        if not raw_id.startswith("raw/") or ".." in raw_id.split("/"):
            raise FileNotFoundError(f"not a raw-zone id: {raw_id!r}")
        path = self._path(raw_id)
        body = self.read_bytes(path)
        directory, name = path.rsplit("/", 1)
        try:
            meta = json.loads(self.read_bytes(f"{directory}/{RAW_META_PREFIX}{name}.json"))
        except (FileNotFoundError, OSError, ValueError):
            parts = dict(p.split("=", 1) for p in raw_id.split("/")[1:-1] if "=" in p)
            ext = name.rsplit(".", 1)[-1]
            meta = {"source": parts.get("source", ""), "dataset": parts.get("dataset", ""),
                    "received_at": f"{parts.get('date', '1970-01-01')}T00:00:00+00:00",
                    "content_type": next((k for k, v in _EXTENSIONS.items() if v == ext), "application/octet-stream"),
                    "request": ""}
        return RawPayload(meta["source"], meta["dataset"], dt.datetime.fromisoformat(meta["received_at"]), body,
                          meta["content_type"], meta["request"])

    def raw_ids(self, source: str, dataset_name: str, start: dt.date, end: dt.date) -> list[str]:
        """Raw-zone ids of the payloads of `source`/`dataset_name` kept under the dates [start, end]."""
        ids = []
        for partition in self.partitions("raw", dataset_name):
            parts = dict(p.split("=", 1) for p in partition.directory.rsplit("/", 3)[1:] if "=" in p)
            day = parts.get("date", "")
            if parts.get("source") != _safe(source) or not (start.isoformat() <= day <= end.isoformat()):
                continue
            root = self.root + "/"
            ids += [partition.path(n)[len(root):] for n in partition.logical]
        return sorted(ids)

    @staticmethod
    def parquet_bytes(table: pa.Table, ds: Dataset) -> pa.Buffer:
        sink = pa.BufferOutputStream()
        # Dictionary pages only where values repeat: on prices and timestamps they cost
        # time and save nothing (measured: a third of the write time on 1M bars).
        pq.write_table(table, sink, compression="zstd", use_dictionary=ds.dictionary_columns)
        return sink.getvalue()

    @contextlib.contextmanager
    def partition_lock(self, directory: str) -> Iterator[None]:
        """Hold a partition's lock while its manifest is read, changed and published (blocking:
        a compaction holds it for one day's rewrite). Re-entrant in a thread: a write that
        releases its batch from a compacted file, and a compaction's tidy that does, already
        hold it."""
        held: set[str] = _held.__dict__.setdefault("directories", set())
        if not self.local or directory in held:
            yield
            return
        lock = os.path.join(self.root, LOCKS_DIR, f"{directory[len(self.root) + 1:]}.lock")
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.add(directory)
            try:
                yield
            finally:
                held.discard(directory)
        finally:
            os.close(fd)  # releases the lock

    def _write_parquet(self, path: str, table: pa.Table, ds: Dataset) -> None:
        data = self.parquet_bytes(table, ds)
        directory, name = path.rsplit("/", 1)
        with self.partition_lock(directory):
            self._put_batch_file(directory, name, path, data, ds)

    def _put_batch_file(self, directory: str, name: str, path: str, data: bytes | pa.Buffer, ds: Dataset) -> None:
        manifest = self.manifest(directory)
        held = manifest.inputs.get(name) if manifest else None
        if held is None:
            self.put_bytes(path, data)
        elif held.sha256 != sha256(data):
            # Other rows under a name a compacted file holds (a batch stored again differently):
            # they replace the held ones. Written first, unseen while covered; then the compacted
            # file is rewritten without the old rows, and the new file stands on its own.
            self.put_bytes(path, data)
            self.release(directory, name, ds)
        # else: the same bytes are held already (a batch redelivered after its day was compacted)

    def write_curated(self, ds: Dataset, table: pa.Table, *, batch_key: str) -> list[str]:
        """Valid rows, one file per (source, date of ts) the batch touches."""
        return [
            self._write_parquet_to("curated", ds, source, day, part, batch_key)
            for source, day, part in _split_by_source_and_day(table, ds.time_column)
        ]

    def write_quarantine(self, ds: Dataset, table: pa.Table, *, day: dt.date, batch_key: str) -> list[str]:
        """Rejected rows go to the batch's own date: their timestamps may be the bad part."""
        if table.num_rows == 0:
            return []
        paths = []
        sources = pc.unique(pc.fill_null(table.column("source"), "unknown")).to_pylist()
        for source in sources:
            part = table.filter(pc.equal(pc.fill_null(table.column("source"), "unknown"), source))
            paths.append(self._write_parquet_to("quarantine", ds, source, day, part, batch_key))
        return paths

    def write_computed(self, ds: Dataset, table: pa.Table, *, day: dt.date, batch_key: str) -> str:
        """Rows the platform computed (features), under `source=computed`: they come from every
        source's rows, so no source partition is theirs."""
        return self._write_parquet_to("curated", ds, COMPUTED_SOURCE, day, table, batch_key)

    def _write_parquet_to(self, zone: str, ds: Dataset, source: str, day: dt.date, table: pa.Table,
                          batch_key: str) -> str:
        path = self._path(zone, f"dataset={ds.name}", f"source={_safe(source)}", f"date={day.isoformat()}",
                          f"part-{_safe(batch_key)}.parquet")
        self._write_parquet(path, table, ds)
        return path

    def write_report(self, kind: str, name: str, body: bytes, *, day: dt.date) -> str:
        """Reports (JSON, HTML) under reports/<kind>/date=<day>/<name>."""
        path = self._path("reports", _safe(kind), f"date={day.isoformat()}", _safe(name))
        self.put_bytes(path, body)
        return path

    def replace_file(self, path: str, table: pa.Table, ds: Dataset) -> None:
        """Rewrite one Parquet file of the lake in place (atomically), or remove it when empty.
        A batch file a compacted file holds is rewritten or removed there."""
        if table.num_rows:
            self._write_parquet(path, table, ds)
            return
        directory, name = path.rsplit("/", 1)
        with self.partition_lock(directory):
            manifest = self.manifest(directory)
            if manifest is None or name not in manifest.inputs:
                self.fs.delete_file(path)
                return
            self.delete_quietly(path)  # a copy still on disk first: once released it would be read
            self.release(directory, name, ds)

    def read_file(self, path: str) -> pa.Table:
        directory, name = path.rsplit("/", 1)
        manifest = self.manifest(directory) if name.endswith(".parquet") else None
        if manifest is not None and name in manifest.inputs:
            held = manifest.inputs[name]
            return pq.read_table(f"{directory}/{held.output}", filesystem=self.fs).slice(held.offset, held.rows)
        return pq.read_table(path, filesystem=self.fs)

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    # -- compacted partitions ------------------------------------------------------
    def manifest(self, directory: str) -> Manifest | None:
        """A partition's published manifest (None: nothing in it is compacted)."""
        try:
            return Manifest.from_json(self.read_bytes(f"{directory}/{MANIFEST}"))
        except FileNotFoundError:
            return None

    def publish(self, directory: str, manifest: Manifest) -> None:
        """The step that switches readers from the batch files to the compacted ones (one atomic write)."""
        if manifest.inputs:
            self.put_bytes(f"{directory}/{MANIFEST}", manifest.to_json())
        else:
            self.delete_quietly(f"{directory}/{MANIFEST}")

    def write_compacted(self, directory: str, held: list[tuple[str, pa.Table, str]], ds: Dataset,
                        schema: pa.Schema) -> tuple[str, dict[str, Held]]:
        """One compacted file holding these batch files' rows in this order: (name, rows, sha256) ->
        its name and where each batch file sits in it. The name is derived from what it holds, so
        a compaction interrupted and run again writes the same file."""
        digest = hashlib.sha256("\n".join(f"{n} {h}" for n, _, h in held).encode()).hexdigest()[:24]
        name = f"{COMPACTED_PREFIX}{digest}.parquet"
        placed, offset = {}, 0
        for batch_name, table, sha in held:
            placed[batch_name] = Held(name, offset, table.num_rows, sha)
            offset += table.num_rows
        table = pa.concat_tables([t for _, t, _ in held]) if held else schema.empty_table()
        self.put_bytes(f"{directory}/{name}", self.parquet_bytes(table, ds))
        return name, placed

    def held_tables(self, directory: str, manifest: Manifest, output: str,
                    schema: pa.Schema) -> list[tuple[str, pa.Table, str]]:
        """The batch files a compacted file holds, as (name, rows, sha256) in its row order."""
        table = pq.read_table(f"{directory}/{output}", filesystem=self.fs, schema=schema)
        return [(n, table.slice(h.offset, h.rows), h.sha256) for n, h in manifest.held_by(output)]

    def release(self, directory: str, name: str, ds: Dataset) -> None:
        """Take one batch file's rows out of the compacted file that holds them: it is read on its
        own again (when it is on disk) or is gone. Its compacted file is rewritten without it."""
        with self.partition_lock(directory):
            manifest = self.manifest(directory)
            if manifest is None or name not in manifest.inputs:
                return
            output = manifest.inputs[name].output
            schema = self.zone_schema(directory, ds)
            rest = [h for h in self.held_tables(directory, manifest, output, schema) if h[0] != name]
            after = manifest.without([output])
            if rest:
                new_output, placed = self.write_compacted(directory, rest, ds, schema)
                after.outputs[new_output] = sum(t.num_rows for _, t, _ in rest)
                after.inputs.update(placed)
            self.publish(directory, after)
            if output not in after.outputs:
                self.delete_quietly(f"{directory}/{output}")

    def zone_schema(self, directory: str, ds: Dataset) -> pa.Schema:
        """The Arrow schema of the files of a partition directory (by its zone)."""
        zone = directory[len(self.root) + 1:].split("/", 1)[0]
        return ds.quarantine_schema if zone == "quarantine" else ds.arrow_schema

    def partition(self, directory: str) -> Partition:
        """One partition directory as it is now."""
        infos = self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        files = {i.path.rsplit("/", 1)[1]: i for i in infos if i.type == pafs.FileType.File and "/.tmp-" not in i.path}
        return Partition(directory, files, self.manifest(directory) if MANIFEST in files else None)

    def delete_quietly(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    # -- reading -----------------------------------------------------------------
    def read(self, zone: str, dataset_name: str, *, filter: pc.Expression | None = None,
             columns: list[str] | None = None) -> pa.Table:
        """All rows of one dataset in a Parquet zone (curated or quarantine), one scan of its
        files (in parallel, only the row groups the filter can match). `columns` may name
        `__filename`: the file each row was read from."""
        return self._scan(zone, dataset_name, filter, columns)[0]

    def files_matching(self, zone: str, dataset_name: str, filter: pc.Expression) -> list[str]:
        """The files `list_files` lists that hold rows matching `filter`, found by one scan of the
        zone instead of reading each: a compacted file with a match stands for every batch file
        it holds (each may then be read to find which). The files are mapped back through the
        same listing the scan read, so a compaction in between cannot hide one."""
        found, parts = self._scan(zone, dataset_name, filter, ["__filename"])
        hits = set(found.column("__filename").to_pylist())
        paths = []
        for part in parts:
            held = part.manifest.inputs if part.manifest else {}
            paths.extend(part.path(n) for n in part.logical if part.path(held[n].output if n in held else n) in hits)
        return sorted(paths)

    def _scan(self, zone: str, dataset_name: str, filter: pc.Expression | None,
              columns: list[str] | None) -> tuple[pa.Table, list[Partition]]:
        """One dataset scan of the zone's readable files, and the listing it read them from."""
        if zone not in PARQUET_ZONES:
            raise ValueError(f"zone must be curated or quarantine, not {zone!r}")
        ds = dataset(dataset_name)
        schema = ds.arrow_schema if zone == "curated" else ds.quarantine_schema
        for attempt in range(_READ_ATTEMPTS):
            parts = self.partitions(zone, dataset_name)
            files = [p.path(n) for p in parts for n in p.readable if n.endswith(".parquet")]
            if not files:
                return _empty(schema, columns), parts
            try:
                return pads.dataset(files, schema=schema, filesystem=self.fs, format="parquet").to_table(
                    filter=filter, columns=columns), parts
            except FileNotFoundError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def list_files(self, zone: str, dataset_name: str | None = None) -> list[str]:
        """Every file of a zone (of one dataset), each batch's file listed once, on its own or held
        in a compacted file (`read_file` reads either)."""
        return sorted(p.path(n) for p in self.partitions(zone, dataset_name) for n in p.logical)

    def partitions(self, zone: str, dataset_name: str | None = None) -> list[Partition]:
        """The partition directories of a zone (of one dataset) as they are on disk, with their manifests."""
        base = self._path(zone) if dataset_name is None or zone == "raw" else self._path(zone, f"dataset={dataset_name}")
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        by_dir: dict[str, dict[str, pafs.FileInfo]] = {}
        for info in infos:
            if info.type != pafs.FileType.File or "/.tmp-" in info.path:
                continue
            if zone == "raw" and dataset_name is not None and f"/dataset={dataset_name}/" not in info.path:
                continue
            directory, name = info.path.rsplit("/", 1)
            by_dir.setdefault(directory, {})[name] = info
        parts = []
        for directory, files in sorted(by_dir.items()):
            manifest = self.manifest(directory) if MANIFEST in files and zone in PARQUET_ZONES else None
            parts.append(Partition(directory, files, manifest))
        return parts

    def ping(self) -> bool:
        try:
            if self.object_store:  # no directories: the bucket must answer
                bucket = self.root.split("/", 1)[0]
                return self.fs.get_file_info(bucket).type == pafs.FileType.Directory
            self.fs.create_dir(self.root, recursive=True)
            return self.fs.get_file_info(self.root).type == pafs.FileType.Directory
        except OSError:
            return False


def partition_day(path: str) -> dt.date | None:
    """The `date=YYYY-MM-DD` partition a lake file sits in."""
    match = re.search(r"/date=(\d{4}-\d{2}-\d{2})/", path)
    return dt.date.fromisoformat(match.group(1)) if match else None


def _split_by_source_and_day(table: pa.Table, time_column: str) -> Iterator[tuple[str, dt.date, pa.Table]]:
    if table.num_rows == 0:
        return
    days = pc.cast(table.column(time_column), pa.date32())
    sources = table.column("source")
    unique_sources, unique_days = pc.unique(sources).to_pylist(), pc.unique(days).to_pylist()
    if len(unique_sources) == 1 and len(unique_days) == 1:  # the usual batch: no copy at all
        yield unique_sources[0], unique_days[0], table
        return
    # Otherwise one or two days of one source almost always: a few filters beat a sort.
    for source in unique_sources:
        source_mask = pc.equal(sources, source)
        for day in pc.unique(pc.filter(days, source_mask)).to_pylist():
            mask = pc.and_(source_mask, pc.equal(days, pa.scalar(day, pa.date32())))
            yield source, day, table.filter(mask)
