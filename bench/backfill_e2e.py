"""The backfill a user runs, end to end, against each of its parts timed alone on the same rows.

    flock /tmp/sentinel-ray.lock .venv/bin/python bench/backfill_e2e.py [--months 1] [--scale-months 6]

The range is the --months full calendar months before the current one (or from --start): it
must end before today, because the replay's rows of today and later are rejected as future
timestamps (quarantined), so the warehouse and the signals would see none of them and the
figure would measure the quarantine path (a run over future months did, in earlier reports).

(e2e)  `run_backfill` of the replay source over --months months: the code path and settings
       `sentinel-ray backfill` uses (lake raw + curated + quarantine, warehouse, quality
       metrics, pipeline_runs, backfill_days, the final merge), into a fresh database and
       lake each time, Ray already started (its start is not the backfill's), three times:
       first   `up`'s start backfill: this process starts the platform's backfill service
               (ingest/backfill_service.py) and runs the range through it, the first Ray Data
               job of a new cluster: the service's workers start, and Ray Data's per-cluster
               actors (stats, autoscaling coordinator: ~2.3 s of CPU here)
       job     `sentinel-ray backfill` on the running platform: a new driver process joins the
               cluster and hands the range to the service, whose workers are up. The headline
               e2e_rows_s.
       in-driver  the baseline, in the same run and before the job: the same new driver
               process running `run_backfill` itself (`--in-driver`; every backfill before the
               service): a new job, new worker processes, their imports included.
       scale   then, as the job: the --scale-months months ending with the same month (default
               6, 0 = skip), into a fresh database: rows/s against the job's (the issue's
               "within 20%"), and peak RSS (flat memory).
       Peak RSS of the driver, the service, the map workers and the warehouse owner are sampled
       while each runs, and each job's CPU seconds by process role.
(parts) then in this one process, on the same days and rows, each part alone:
       source generation, raw-zone write, `process_batch`, curated Parquet write, the
       warehouse insert (through the owner actor, in blocks of days as the backfill sends them)
       and the signals (features, risk and alerts of each block: `SignalUpdater.on_prices`,
       their warehouse and lake writes included).

Prints rows/s of the whole and of each part, each part's share of the summed part time,
CPU seconds the job's processes spent by role (driver, service, workers, warehouse, ray: every
Ray process on the machine, so run it with no other cluster up)
against what the cores had in its time (cpu_busy: near 1, only less CPU per row makes it
faster), and ends with one JSON line: e2e_rows_s (the job), e2e_s, rows, days, cores,
peak_rss_mb, cpu_s, cpu_busy; in_driver_rows_s, in_driver_s, in_driver_cpu_s; the first run's
first_rows_s, first_s and first_peak_rss_mb; parts (rows/s each) with part_share; scale_months,
scale_rows, scale_s, scale_rows_s, scale_ratio (scale_rows_s / e2e_rows_s), scale_peak_rss_mb,
scale_cpu_s.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import psutil

import pyarrow as pa

from sentinel_ray.config import Settings
from sentinel_ray.detect.signals import SignalUpdater
from sentinel_ray.ingest.backfill import MAX_DAYS_PER_BLOCK, date_range, run_backfill
from sentinel_ray.ingest.backfill_service import backfill_through, service_actor, stop_service
from sentinel_ray.pipeline.store import InsertBuffer
from sentinel_ray.pipeline.transform import process_batch
from sentinel_ray.quality.rules import rules_for
from sentinel_ray.records import utc_now
from sentinel_ray.schemas import DATA_DATASETS, PRICES
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.lake import Lake
from sentinel_ray.storage.warehouse import connect_warehouse

PARTS = ("generate", "raw_write", "process_batch", "curated_write", "warehouse_insert", "signals")


class ProcessSampler:
    """Samples the RSS and CPU time of this machine's processes by role while it runs:
    peak RSS of the driver, the map workers and the warehouse owner, and the CPU seconds
    each role spent (the last sample of a process that exits counts)."""

    def __init__(self, interval_s: float = 0.1, driver_pid: int | None = None) -> None:
        self.peaks: dict[str, float] = {}
        self.driver_pid = driver_pid or os.getpid()
        self._cpu_at_start: dict[int, float] = {}
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def __enter__(self) -> Self:
        for proc in psutil.process_iter(["pid", "cpu_times"]):
            try:
                self._cpu_at_start[proc.info["pid"]] = sum(proc.info["cpu_times"][:2])
            except (psutil.Error, TypeError):
                continue
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds per role since the start: workers (Ray's task workers: the service's
        or the job's), service (the backfill service), warehouse (the owner actor), ray
        (raylet, GCS, dashboard agent, Ray Data's actors); the driver is not here (it reports
        its own, for the backfill alone)."""
        out: dict[str, float] = {}
        for pid, (role, cpu) in self._cpu_last.items():
            if role != "driver":
                out[role] = out.get(role, 0.0) + cpu - self._cpu_at_start.get(pid, 0.0)
        return out

    def _role(self, pid: int, cmd: str) -> str | None:
        if pid == self.driver_pid:
            return "driver"
        if "WarehouseOwner" in cmd:
            return "warehouse"
        if "BackfillService" in cmd:
            return "service"
        if cmd.startswith("ray::") and not cmd.startswith(("ray::_", "ray::Dashboard")):
            return "workers"  # ray::IDLE, ray::warm_up, ray::MapBatches(store_days)
        if cmd.startswith("ray::") or "site-packages/ray/" in cmd:
            return "ray"
        return None

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "cmdline", "memory_info", "cpu_times"]):
                try:
                    cmd = " ".join(proc.info["cmdline"] or [])
                    rss = proc.info["memory_info"].rss / 2**20
                    cpu = sum(proc.info["cpu_times"][:2])
                except (psutil.Error, TypeError):
                    continue
                role = self._role(proc.info["pid"], cmd)
                if role is None:
                    continue
                self._cpu_last[proc.info["pid"]] = (role, cpu)
                peak_role = "map_worker" if "MapBatches" in cmd else role
                if peak_role in ("driver", "service", "map_worker", "warehouse"):
                    self.peaks[peak_role] = max(self.peaks.get(peak_role, 0.0), rss)
            self._stop.wait(interval_s)


def month_end(start: dt.date, months: int) -> dt.date:
    y, m = divmod(start.month - 1 + months, 12)
    return dt.date(start.year + y, m + 1, 1) - dt.timedelta(days=1)


def months_before(day: dt.date, months: int) -> dt.date:
    """The first day of the month `months` months before `day`'s."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    return dt.date(y, m + 1, 1)


def time_parts(settings: Settings, days: list[dt.date], scratch: Path) -> tuple[dict[str, float], int]:
    """Each part alone, in this process, over the same days: seconds per part, rows."""
    source = ReplaySource.from_settings(settings)
    rules = rules_for(settings)
    lake = Lake(str(scratch / "parts-lake"))
    warehouse = connect_warehouse(settings.model_copy(update={"warehouse_database": settings.warehouse_database + "_parts"}))
    warehouse.ensure_schema()
    seconds = dict.fromkeys(PARTS, 0.0)
    rows = 0
    now = utc_now()
    buffer, held = InsertBuffer(warehouse), 0
    signals = SignalUpdater(warehouse, lake, detected_by="backfill")
    block_bars: list[pa.Table] = []

    def clock(part: str, began: float) -> float:
        t = time.perf_counter()
        seconds[part] += t - began
        return t

    for day in days:
        t = time.perf_counter()
        fetched = source.generate_day(day, run_id="bench", ingested_at=now)
        t = clock("generate", t)
        key = f"replay-{day.isoformat()}"
        for seq, payload in enumerate(fetched.raw):
            lake.write_raw(payload, day=day, batch_key=key, seq=seq)
        t = clock("raw_write", t)
        for name, table in fetched.records.items():
            rows += table.num_rows
            ds = DATA_DATASETS[name]
            t = time.perf_counter()
            result = process_batch(table, ds, now=now, run_id="bench", ingested_at=now, rules=rules)
            t = clock("process_batch", t)
            lake.write_curated(ds, result.valid, batch_key=key)
            t = clock("curated_write", t)
            buffer.insert(name, result.valid)
            if name == PRICES.name:
                block_bars.append(result.valid)
        held += 1
        if held == MAX_DAYS_PER_BLOCK or day == days[-1]:
            t = time.perf_counter()
            buffer.flush()
            t = clock("warehouse_insert", t)
            signals.on_prices(pa.concat_tables(block_bars), batch_key=None)  # features, risk, alerts
            clock("signals", t)
            held, block_bars = 0, []
    warehouse.command("DROP DATABASE IF EXISTS {db}")
    return seconds, rows


def run_job(settings: Settings, start: dt.date, end: dt.date, in_driver: bool) -> dict[str, Any]:
    """--job: a driver that joined the cluster at RAY_ADDRESS backfills, through the
    platform's service (as `sentinel-ray backfill` there) or itself (`--in-driver`)."""
    from sentinel_ray.runtime import join_ray

    join_ray()
    progress = lambda p: print(p.render(), flush=True)
    began, cpu = time.perf_counter(), time.process_time()
    if in_driver:
        summary = run_backfill(settings, "replay", start, end, progress=progress)
    else:
        summary = backfill_through(service_actor(create=False), settings, "replay", start, end, progress=progress)
    return {"seconds": time.perf_counter() - began, "rows": summary.total_in, "cpu_s": time.process_time() - cpu}


def backfill_as_job(settings: Settings, start: dt.date, end: dt.date, address: str,
                    in_driver: bool) -> tuple[float, int, dict[str, float], dict[str, float]]:
    """The backfill by a new driver process joining this cluster (`sentinel-ray backfill` on a
    running platform): (seconds of the backfill, rows, peak RSS by role, CPU seconds by role)."""
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    args = [sys.executable, __file__, "--job", "--start", start.isoformat(), "--end", end.isoformat(),
            "--data-dir", str(settings.data_dir), "--lake", settings.lake_uri, "--database", settings.warehouse_database,
            *(["--in-driver"] if in_driver else [])]
    with ProcessSampler() as rss:
        child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        rss.driver_pid = child.pid
        lines = []
        for line in child.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if not line.startswith("{"):
                print(line, end="", flush=True)
        if child.wait() != 0:
            raise SystemExit(f"the backfill job failed (exit {child.returncode})")
    result = json.loads(lines[-1])
    return result["seconds"], result["rows"], rss.peaks, {"driver": result["cpu_s"], **rss.cpu_s()}


def print_job(label: str, what: str, seconds: float, rows: int, peaks: dict[str, float], cpu: dict[str, float],
              cores: int) -> None:
    print(f"{label}{rows / seconds:>12,.0f} rows/s  ({rows:,} rows in {seconds:.2f}s; {what})")
    print("  peak RSS (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(peaks.items())))
    # Where the time goes: the CPU every process of the job spent against what the
    # cores had. Near 100% busy, only less CPU per row makes the backfill faster.
    spent = sum(cpu.values())
    print("  CPU during it (core-s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items()))
          + f" = {spent:.2f} of {cores * seconds:.2f} ({cores} cores x {seconds:.2f}s): "
          f"{spent / (cores * seconds):.0%} busy; {rows / spent * cores:,.0f} rows/s if every core ran it all the time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat,
                        help="first day (default: the first of the month --months months ago)")
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--scale-months", type=int, default=6,
                        help="also backfill this many months ending with the same month, via the service (0: skip)")
    parser.add_argument("--data-dir", type=Path, help="default: a fresh temporary directory")
    parser.add_argument("--no-parts", action="store_true", help="time the backfill only")
    parser.add_argument("--no-first", action="store_true", help="skip the first run (then the job is the cluster's first Ray Data job and pays its actors)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-driver run")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # the child of backfill_as_job
    parser.add_argument("--in-driver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--end", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        settings = Settings(data_dir=args.data_dir, warehouse_database=args.database, lake_uri=args.lake)
        print(json.dumps(run_job(settings, args.start, args.end, args.in_driver)), flush=True)
        return

    import ray

    from sentinel_ray.runtime import RAY_NAMESPACE, warm_workers_config

    cores = os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="backfill-e2e-"))
    data_dir = args.data_dir or scratch / "data"
    tag = f"e2e_{int(time.time())}"
    today = dt.datetime.now(dt.timezone.utc).date()
    args.start = args.start or months_before(today, args.months)
    end = month_end(args.start, args.months)
    if end >= today:
        raise SystemExit(f"the range {args.start}..{end} reaches today ({today}): the replay's rows of today and later "
                         f"are rejected as future timestamps, so nothing would reach the warehouse or the signals; "
                         f"choose a range that ends before today")
    days = date_range(args.start, end)
    ray.init(address="local", num_cpus=cores, include_dashboard=False, namespace=RAY_NAMESPACE,
             logging_level="ERROR", log_to_driver=False, _system_config=warm_workers_config(cores))  # as `up`
    databases = []
    try:
        print(f"backfill {args.start}..{end} ({len(days)} days), {cores} cores")
        report: dict[str, Any] = {"days": len(days), "cores": cores}
        address = ray.get_runtime_context().gcs_address
        service = service_actor(create=True)  # as `up` starts it
        if not args.no_first:
            settings = Settings(data_dir=data_dir, warehouse_database=f"{tag}_first", lake_uri=str(scratch / "lake-first"))
            databases.append(settings)
            connect_warehouse(settings).ensure_schema()  # the owner actor up, as under `up`
            with ProcessSampler() as rss:
                began = time.perf_counter()
                summary = backfill_through(service, settings, "replay", args.start, end,
                                           progress=lambda p: print(p.render(), flush=True))
                first_s = time.perf_counter() - began
            print(f"(first) new cluster's first: {summary.total_in / first_s:>12,.0f} rows/s  "
                  f"({summary.total_in:,} rows in {first_s:.2f}s; the service's workers and Ray Data's cluster "
                  f"actors start in it, as in `up`)")
            report.update(first_rows_s=round(summary.total_in / first_s), first_s=round(first_s, 3),
                          first_peak_rss_mb={k: round(v) for k, v in sorted(rss.peaks.items())})
        runs: dict[bool, tuple[float, int, dict[str, float], dict[str, float]]] = {}
        # the baseline first: the headline runs after it, with its database's merges still
        # going in the owner (a bias against the headline, not for it)
        for in_driver in (False,) if args.no_baseline else (True, False):
            settings = Settings(data_dir=data_dir, warehouse_database=tag + ("_in_driver" if in_driver else ""),
                                lake_uri=str(scratch / ("lake-in-driver" if in_driver else "lake")))
            databases.append(settings)
            connect_warehouse(settings).ensure_schema()
            runs[in_driver] = backfill_as_job(settings, args.start, end, address, in_driver)
            label = (("(base) in-driver, a new job : ", "its own new job, new workers: every backfill before the service")
                     if in_driver else ("(e2e) a job, via the service: ",
                                        "a new driver hands it to the platform's service, as `sentinel-ray backfill` there"))
            print_job(*label, *runs[in_driver], cores)
        e2e_s, rows, peaks, cpu = runs[False]
        e2e = rows / e2e_s
        spent = sum(cpu.values())
        report.update(e2e_rows_s=round(e2e), rows=rows, e2e_s=round(e2e_s, 3),
                      peak_rss_mb={k: round(v) for k, v in sorted(peaks.items())},
                      cpu_s={k: round(v, 2) for k, v in sorted(cpu.items())}, cpu_busy=round(spent / (cores * e2e_s), 3))
        if True in runs:
            base_s, _, _, base_cpu = runs[True]
            print(f"via the service / in-driver = {base_s / e2e_s:.2f}x")
            report.update(in_driver_rows_s=round(rows / base_s), in_driver_s=round(base_s, 3),
                          in_driver_cpu_s={k: round(v, 2) for k, v in sorted(base_cpu.items())})
        if not args.no_parts:
            seconds, part_rows = time_parts(settings, days, scratch)
            assert part_rows == rows, (part_rows, rows)
            total = sum(seconds.values())
            parts = {p: rows / s for p, s in seconds.items()}
            for p in PARTS:
                print(f"  {p:<22}: {parts[p]:>12,.0f} rows/s  {seconds[p]:6.2f}s  {seconds[p] / total:5.1%} of the parts")
            print(f"  parts in sequence     : {rows / total:>12,.0f} rows/s  {total:6.2f}s "
                  f"(one process; e2e/one-process = {e2e * total / rows:.2f}x)")
            slowest = min(parts, key=parts.get)
            print(f"e2e / slowest part ({slowest}) = {e2e / parts[slowest]:.2f}x (target >= 0.3); "
                  f"e2e >= 300k rows/s: {'yes' if e2e >= 300_000 else 'no'}")
            report["parts"] = {p: round(v) for p, v in parts.items()}
            report["part_share"] = {p: round(seconds[p] / total, 3) for p in PARTS}
        if args.scale_months > 0:
            first = months_before(end, args.scale_months - 1)
            settings = Settings(data_dir=data_dir, warehouse_database=f"{tag}_scale", lake_uri=str(scratch / "lake-scale"))
            databases.append(settings)
            connect_warehouse(settings).ensure_schema()
            print(f"backfill {first}..{end} ({len(date_range(first, end))} days), as the job")
            scale_s, scale_rows, scale_peaks, scale_cpu = backfill_as_job(settings, first, end, address, False)
            print_job(f"(scale) {args.scale_months} months, via the service: ", "a new driver hands it to the service",
                      scale_s, scale_rows, scale_peaks, scale_cpu, cores)
            ratio = scale_rows / scale_s / e2e
            print(f"{args.scale_months} months / the {args.months}-month job = {ratio:.2f}x rows/s "
                  f"(target: within 20%: {'yes' if abs(ratio - 1) <= 0.2 else 'no'})")
            report.update(scale_months=args.scale_months, scale_rows=scale_rows, scale_s=round(scale_s, 3),
                          scale_rows_s=round(scale_rows / scale_s), scale_ratio=round(ratio, 3),
                          scale_peak_rss_mb={k: round(v) for k, v in sorted(scale_peaks.items())},
                          scale_cpu_s={k: round(v, 2) for k, v in sorted(scale_cpu.items())})
        for each in databases:
            connect_warehouse(each).command("DROP DATABASE IF EXISTS {db}")
        print(json.dumps(report))
    finally:
        stop_service()
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
