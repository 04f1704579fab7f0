"""`sentinel-ray`: run the platform on one machine, backfill history, look at the data."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
from typing import Any, Sequence

from sentinel_ray.config import ConfigError, Settings, load_settings
from sentinel_ray.market import IST, as_utc, format_ist, ist_date
from sentinel_ray.runtime import join_platform

log = logging.getLogger("sentinel_ray")


def _ist_clock(value: dt.datetime | str | None) -> str:
    """A stored UTC time (aware, naive-means-UTC, or ISO text) as IST to the second: '2026-11-05 10:42:07 IST'."""
    if value in (None, ""):
        return "-"
    try:
        moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return str(value)
    return f"{as_utc(moment).astimezone(IST):%Y-%m-%d %H:%M:%S} IST"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _yesterday_utc() -> dt.date:
    from sentinel_ray.records import utc_now  # records imports pyarrow: not for `--help`

    return utc_now().date() - dt.timedelta(days=1)


def add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="replay", help="source to backfill from (default: replay)")
    parser.add_argument("--start", type=_date, help="first UTC day, YYYY-MM-DD (default: end - 2 days)")
    parser.add_argument("--end", type=_date, help="last UTC day, inclusive (default: yesterday)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object too")
    parser.add_argument("--force", action="store_true",
                        help="redo days an earlier backfill of this source finished (default: skip them)")
    parser.add_argument("--in-driver", action="store_true",
                        help="run in this process even on a running platform (default: its backfill service "
                             "runs it, with warm workers)")


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.ingest.backfill import run_backfill
    from sentinel_ray.ingest.backfill_service import service_actor

    end = args.end or _yesterday_utc()
    start = args.start or end - dt.timedelta(days=2)
    settings = join_platform(settings, needs_ray=True)
    service = None if args.in_driver else service_actor(create=False)  # there is one where `up` runs
    print(f"backfill: source={args.source} {start}..{end} -> lake {settings.resolved_lake_uri}, "
          f"warehouse {settings.resolved_warehouse_dsn}"
          + (", run by the platform's backfill service" if service is not None else ""), flush=True)
    progress = lambda p: print(p.render(), flush=True)
    if service is not None:
        summary = _backfill_through_service(service, settings, args, start, end, progress)
        if summary is None:
            return 130
    else:
        summary = run_backfill(settings, args.source, start, end, force=args.force, progress=progress)
    print(summary.render(), flush=True)
    if args.json:
        print(json.dumps(summary.as_dict()), flush=True)
    return 0


def _backfill_through_service(service: Any, settings: Settings, args: argparse.Namespace, start: dt.date,
                              end: dt.date, progress: Any) -> Any:
    """The backfill run by the platform's service; None when this client was stopped."""
    import ray

    from sentinel_ray.ingest.backfill_service import UnknownBackfill, backfill_through

    # `ray job stop` and `kill` send SIGTERM: stop as on Ctrl-C, which cancels the service's
    # backfill after its block in hand (else it would run on without this client)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return backfill_through(service, settings, args.source, start, end, force=args.force, progress=progress,
                                waiting=lambda: print("  waiting for the backfill before it to finish", flush=True))
    except KeyboardInterrupt:
        print("backfill stopped: the service stops it after the block in hand; the days it finished are "
              "kept (run the same range again to do the rest)", file=sys.stderr, flush=True)
        return None
    except (UnknownBackfill, ray.exceptions.RayActorError) as e:
        raise RuntimeError(f"the platform's backfill service stopped during the backfill ({type(e).__name__}); "
                           f"the days it finished are kept: run the same range again") from e
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="the source whose kept payloads to read again (e.g. replay, x)")
    parser.add_argument("--dataset", required=True, help="prices, posts or filings")
    parser.add_argument("--start", type=_date, required=True, help="first raw-zone date, YYYY-MM-DD")
    parser.add_argument("--end", type=_date, required=True, help="last raw-zone date, inclusive")
    parser.add_argument("--no-signals", action="store_true",
                        help="leave features, risk and alerts as they were (default: compute those of the "
                             "sessions the replayed rows fall in again)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object too")


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.ingest.replay import ReplayError, read_payloads_on_ray, replay_raw, report_json

    settings = join_platform(settings, needs_ray=True)
    try:
        report = replay_raw(settings, source=args.source, dataset=args.dataset, start=args.start, end=args.end,
                            read=lambda _lake, ids: read_payloads_on_ray(settings, ids), progress=_say,
                            signals=not args.no_signals)
    except ReplayError as e:
        _warn(f"replay: {e}")
        return 2
    print(report.render(), flush=True)
    if args.json:
        print(report_json(report), flush=True)
    return 0


def cmd_lineage(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.ingest.lineage import LineageError, RowNotFound, trace
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings = join_platform(settings)
    try:
        found = trace(args.dataset, args.key, warehouse=connect_warehouse(settings),
                      lake=Lake(settings.resolved_lake_uri))
    except (LineageError, RowNotFound) as e:
        _warn(f"lineage: {e}")
        return 2
    if args.json:
        print(json.dumps(found, default=str), flush=True)
        return 0
    row, raw, run = found["row"], found["raw"], found["run"]
    print(f"{found['dataset']} {' '.join(str(v) for v in found['key'].values())}", flush=True)
    print(f"  stored   by run {row.get('run_id')} at {_ist_clock(row.get('ingested_at'))}")
    if raw is None:
        print("  payload  none recorded (stored before rows named their payload)")
    elif raw.get("missing"):
        print(f"  payload  {raw['raw_id']} (record {raw['raw_pos']}): no longer in the lake")
    else:
        print(f"  payload  {raw['raw_id']} (record {raw['raw_pos']}), {raw['bytes']:,} bytes, "
              f"received {_ist_clock(raw['received_at'])}")
        print(f"  request  {raw['request'] or '-'}")
        print(f"  record   {json.dumps(raw['record'], default=str) if raw['record'] is not None else '-'}")
    if run is not None:
        params = run.get("params") or {}
        print(f"  run      {run['pipeline']} {run['status']}, rules {params.get('rules_version', '-')}, "
              f"{_ist_clock(run.get('started_at'))} .. {_ist_clock(run.get('ended_at'))}, params {json.dumps(params)}")
    for q in found["quarantine"] or []:
        print(f"  rejected {q['reject_reason']} by run {q['run_id']} at {_ist_clock(q.get('ingested_at'))} "
              f"(payload {q.get('raw_id') or '-'})")
    if not found["quarantine"]:
        print("  rejected never")
    return 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.lifecycle import Platform, banner  # imports Ray and the whole platform: only `up` pays for it
    from sentinel_ray.sources.replay.live import default_live_start

    days = settings.backfill_days if args.days is None else args.days
    ingest = settings.ingest_on_up and not args.no_ingest
    end = _yesterday_utc()
    if ingest and "replay" in settings.sources_enabled:
        # the history ends where the live replay starts: the day fixed here, for both (the
        # poller starts after the backfill, maybe past the next open)
        live = settings.replay_live_start or default_live_start()
        settings = settings.model_copy(update={"replay_live_start": live})
        end = min(end, live - dt.timedelta(days=1))
    backfill = (end - dt.timedelta(days=days - 1), end) if days > 0 else None
    with Platform(settings, dashboard=not args.no_dashboard, backfill=backfill,
                  ingest=ingest, say=_say, warn=_warn) as platform:
        up = platform.start()
        _say("\nSentinel Ray is up.")
        for line in banner(up, api_token_set=settings.api_token is not None):
            _say(line)
        _say("Press Ctrl-C to stop.")
        if not args.exit_after_start:
            platform.wait()
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.serve.queries import Interval, price_bars
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings = join_platform(settings)
    # --end names the last day shown: the window ends at the next midnight (UTC)
    end = dt.datetime.combine((args.end or _yesterday_utc()) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    start = dt.datetime.combine(args.start, dt.time(), dt.timezone.utc) if args.start else end - dt.timedelta(days=1)
    interval = Interval(args.interval)
    rows = price_bars(connect_warehouse(settings), args.ticker.upper(), start, end, interval)
    for row in rows:
        # stored and served in UTC, shown as the market reads it; a daily bar is its IST trading day
        when = f"{ist_date(as_utc(row['ts']))} IST      " if interval is Interval.DAY else format_ist(row["ts"])
        print(f"{when}  O {row['open']:>10.2f}  H {row['high']:>10.2f}  "
              f"L {row['low']:>10.2f}  C {row['close']:>10.2f}  V {row['volume']:>12,}")
    print(f"{len(rows)} bars (times in IST)", file=sys.stderr)
    return 0


def cmd_sources(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from sentinel_ray.sources.check import check_source, list_sources

    if args.action == "list":
        print(f"{'source':<10} {'datasets':<16} {'credentials (env)':<52} status")
        for s in list_sources(settings):
            needs = ", ".join(s.needs) or "none"
            status = "ready" if s.configured else s.problem
            print(f"{s.name:<10} {','.join(s.datasets):<16} {needs:<52} {status}")
        return 0
    names = args.names or [s.name for s in list_sources(settings)]
    failures = 0
    for name in names:
        result = asyncio.run(check_source(name, settings))
        failures += not result.ok
        print(f"{name:<10} {'OK ' if result.ok else 'FAIL'} {result.summary}", flush=True)
    return 1 if failures else 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Ingestion state from the running platform's supervisor (or, without Ray, from Redis),
    after a line for each part that is down: Redis (and its supervisor), Ray, ingestion."""
    import redis

    from sentinel_ray.ingest.supervisor import ingestion_status, reported_status
    from sentinel_ray.storage.redis import redis_ok, supervisor_status

    down: list[str] = []
    notes: list[str] = []
    status = None
    ray_address = None
    try:
        settings = join_platform(settings, needs_ray=True, start_ray=False)
        import ray

        ray_address = ray.get_runtime_context().gcs_address
    except Exception as e:  # noqa: BLE001 - any failure to join is "Ray is down", said in one line
        down.append(f"Ray: no running cluster reachable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                    f"set RAY_ADDRESS to the address `sentinel-ray up` printed")
    url = settings.resolved_redis_url
    redis_up = redis_ok(url)
    watcher = supervisor_status(settings.embedded_redis_dir) if settings.redis_is_embedded else None
    if not redis_up:
        if watcher is not None and watcher["alive"]:
            down.append(f"Redis: embedded Redis at {url} does not answer; its supervisor (pid {watcher['pid']}) "
                        f"is restarting it (last: {watcher.get('last_event') or '-'})")
        elif settings.redis_is_embedded:
            down.append(f"Redis: embedded Redis not running at {url} \u2014 is `sentinel-ray up` running?")
        else:
            down.append(f"Redis: {url} (SENTINEL_REDIS_URL) does not answer")
    elif settings.redis_is_embedded:
        if watcher is None or not watcher["alive"]:
            down.append(f"Redis supervisor: none running for the embedded Redis at {url} (nobody restarts it "
                        f"if it dies) \u2014 is `sentinel-ray up` running?")
        elif watcher.get("restarts"):
            notes.append(f"embedded Redis restarted {watcher['restarts']} time(s); last: {watcher.get('last_event')}")
    if ray_address is not None and redis_up:
        try:
            status = ingestion_status()
        except Exception as e:  # noqa: BLE001 - report, never a traceback
            down.append(f"ingestion supervisor: did not answer ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[-1][:200] if str(e).strip() else '-'})")
        else:
            if status is None:
                down.append(f"ingestion supervisor: not running on the Ray cluster at {ray_address}")
    if status is None and redis_up:
        try:
            status = reported_status(settings)
            notes.append("(ingestion as the workers last reported it to Redis)")
        except (redis.RedisError, OSError) as e:
            down.append(f"Redis: {url} stopped answering ({type(e).__name__}: {e})")
    for line in down:
        print(f"DOWN  {line}", file=sys.stderr)
    for line in notes:
        print(line, file=sys.stderr)
    if status is None:
        print("sentinel-ray status: no running platform found", file=sys.stderr)
        return 1
    status = {**status, "down": down}
    if args.json:
        print(json.dumps(status, default=str, indent=2))
        return 1 if down else 0
    supervisor = status.get("supervisor") or {}
    print(f"supervisor  restarts {supervisor.get('restarts', 0)}")
    print("pollers")
    for name, p in sorted(status["pollers"].items()):
        print(f"  {name:<10} {p.get('actor', '-'):<8} {p.get('state', '?'):<9} polls {p.get('polls', 0):>6}  "
              f"records {p.get('records', 0):>9,}  errors {p.get('errors', 0):>4}  "
              f"restarts {p.get('restarts', 0)}  last poll {_ist_clock(p.get('last_poll_at'))}  "
              f"last error: {p.get('last_error') or '-'}")
    print("consumers")
    for name, c in sorted(status["consumers"].items()):
        print(f"  {name:<10} {c.get('actor', '-'):<8} batches {c.get('batches', 0):>6}  rows {c.get('rows_in', 0):>9,}"
              f"  quarantined {c.get('rows_quarantined', 0):>6,}  freshness p50/p99 {c.get('freshness_p50_s')}/"
              f"{c.get('freshness_p99_s')} s  errors {c.get('errors', 0)}  restarts {c.get('restarts', 0)}  "
              f"dead letters {c.get('dead_letters', 0)}  last batch {_ist_clock(c.get('last_batch_at'))}  "
              f"last error: {c.get('last_error') or '-'}")
    print("streams")
    for name, lag in sorted(status["streams"].items()):
        age = lag.get("oldest_pending_age_s")
        print(f"  {name:<10} length {lag['length']:>6}  pending {lag['pending']:>6}  "
              f"oldest pending {'-' if age is None else f'{age:.1f}s'}  consumers {lag['consumers']}")
    print("dead letters")
    for name, dl in sorted((status.get("dead_letters") or {}).items()):
        last = (f"last: {dl.get('last_error_type')} ({dl.get('last_error_kind')}) at {_ist_clock(dl.get('last_at'))}: "
                f"{(dl.get('last_error') or '')[:120]}") if dl.get("last_error") else "last: -"
        print(f"  {name:<10} waiting {dl.get('waiting', 0)} ({dl.get('rows_waiting', 0):,} rows)  "
              f"total {dl.get('entries_total', 0)} in {dl.get('batches_total', 0)} batches  "
              f"replayed {dl.get('replayed_total', 0)}  {last}")
    return 1 if down else 0


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    """List or replay the batches consumers set aside after errors a retry cannot fix (Redis only)."""
    from sentinel_ray.ingest.supervisor import dead_letters, replay_dead_letters

    if args.action == "list":
        rows = dead_letters(settings, args.dataset, count=args.limit)
        if args.json:
            print(json.dumps(rows, default=str, indent=2))
            return 0
        if not rows:
            print(f"no dead letters for {args.dataset}")
        for r in rows:
            print(f"{r.get('id')}  from {r.get('original_id')}  source {r.get('source', '-')}  rows {r.get('rows', '-')}  "
                  f"{r.get('error_type')} ({r.get('error_kind')}) by {r.get('consumer')} "
                  f"at {_ist_clock(r.get('failed_at'))}: "
                  f"{(r.get('error') or '')[:200]}")
        return 0
    replayed = replay_dead_letters(settings, args.dataset, args.id or None)
    print(f"replayed {len(replayed)} dead letter(s) of {args.dataset} into its stream; the running consumers store "
          f"them (fix the cause first, or they come back)")
    return 0


def cmd_quality(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.quality.report import quality_report, to_html, to_json
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings = join_platform(settings)
    warehouse = connect_warehouse(settings)
    warehouse.ensure_schema()
    report = quality_report(warehouse, settings, window=dt.timedelta(hours=args.hours))
    if args.write:
        lake = Lake(settings.resolved_lake_uri)
        stamp = report["generated_at"]
        for ext, body in (("json", to_json(report)), ("html", to_html(report))):
            path = lake.write_report("quality", f"quality-{stamp:%Y%m%dT%H%M%S}.{ext}", body.encode(),
                                     day=stamp.date())
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(to_json(report))
        return 0
    print(f"data quality, last {args.hours} h (as of {format_ist(report['generated_at'])})")
    for name, d in report["datasets"].items():
        validity = "-" if d["validity"] is None else f"{d['validity']:.2%}"
        print(f"\n{name:<8} {d['status']:<10} rows {d['rows_in']:>10,}  valid {validity:>8}  "
              f"quarantined {d['rows_quarantined']:,}  warned {d['rows_warned']:,}")
        for s in d["sources"]:
            v = "-" if s["validity"] is None else f"{s['validity']:.2%}"
            print(f"  {s['source']:<12} {s['status']:<10} rows {s['rows_in']:>10,}  valid {v:>8}  "
                  f"last seen {format_ist(s['last_seen'])}")
            for a in s["alerts"]:
                print(f"    ALERT {a['severity']}: {a['message']}")
        if d["rejected"]:
            print("  rejected: " + ", ".join(f"{k}={v:,}" for k, v in sorted(d["rejected"].items())))
        if d["warned"]:
            print("  warned:   " + ", ".join(f"{k}={v:,}" for k, v in sorted(d["warned"].items())))
    a = report["agreement"]
    print(f"\nNSE vs Yahoo daily close: {a['agreeing']} of {a['pairs']} pairs within {a['tolerance']:.2%}")
    print("\npipelines")
    for p in report["pipelines"]:
        rate = "-" if p["success_rate"] is None else f"{p['success_rate']:.0%}"
        print(f"  {p['pipeline']:<18} {p['status']:<10} runs {p['runs']:>6}  success {rate:>5}  "
              f"rows {p['rows_in']:>10,}  last error: {p['last_error'] or '-'}")
    return 0


def cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.pipeline.quarantine_replay import replay_quarantine
    from sentinel_ray.quality.quarantine import list_quarantined
    from sentinel_ray.storage.lake import Lake
    from sentinel_ray.storage.warehouse import connect_warehouse

    settings = join_platform(settings)
    if args.action == "list":
        rows = list_quarantined(Lake(settings.resolved_lake_uri), args.dataset, rule=args.rule,
                                start=args.start, end=args.end, limit=args.limit)
        for row in rows:
            what = {k: v for k, v in row.items() if k not in ("reject_reason", "batch_date", "run_id", "ingested_at")
                    and v is not None}
            print(f"{row['batch_date']}  {row['reject_reason']:<20} {json.dumps(what, default=str)[:160]}")
        print(f"{len(rows)} rows", file=sys.stderr)
        return 0
    from sentinel_ray.quality.rules import rules_for

    from sentinel_ray.ingest.serving import serving_for
    from sentinel_ray.monitoring.lineage_events import LineageEmitter

    warehouse = connect_warehouse(settings)
    serving = serving_for(settings, warehouse)

    def stored(valid: Any, key: str) -> None:  # the roll-ups, the cache and its version follow
        if args.dataset == "prices":
            serving.on_prices(valid, batch_key=key)
        serving.on_stored()
    emitter = LineageEmitter(settings, warehouse)
    try:
        summary = replay_quarantine(Lake(settings.resolved_lake_uri), warehouse, args.dataset,
                                    rule=args.rule, start=args.start, end=args.end, rules=rules_for(settings),
                                    on_stored=stored, lineage=emitter)
    finally:
        emitter.close()
    print(f"quarantine replay {summary.run_id}: {summary.examined:,} rows in {summary.files} files re-validated; "
          f"{summary.requalified:,} moved to curated and the warehouse, {summary.still_quarantined:,} stay "
          f"({', '.join(f'{k}={v}' for k, v in sorted(summary.reasons.items())) or 'none'})")
    return 0


def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    """Rewrite closed days' stream batch files of the curated lake as a few large files."""
    from sentinel_ray.storage.compaction import compact, lock_redis_url
    from sentinel_ray.storage.lake import Lake

    lake = Lake(settings.resolved_lake_uri)
    redis_url = lock_redis_url(settings, lake)
    if not lake.local and redis_url is None:
        print(f"the platform is not running (no embedded Redis at {settings.resolved_redis_url}), so nothing "
              f"holds the lake's compaction lock: run one `sentinel-ray compact` at a time", file=sys.stderr)
    # a named day is closed by the one who names it; otherwise a day is closed once quiet
    summary = compact(lake, target_bytes=settings.lake_compact_target_bytes,
                      quiet_s=0.0 if args.date else settings.lake_compact_quiet_s, dataset=args.dataset,
                      day=args.date, redis_url=redis_url)
    print(summary.render())
    if args.json:
        print(json.dumps(summary.as_dict()))
    return 0


def _reason_texts(reasons: str) -> list[str]:
    try:
        return [r["text"] for r in json.loads(reasons or "[]")]
    except (ValueError, TypeError, KeyError):
        return []


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    """List, show, acknowledge or close risk alerts (the warehouse's alerts and alert_events)."""
    from sentinel_ray.detect.run import AlertNotFound, apply_transition
    from sentinel_ray.records import utc_now
    from sentinel_ray.serve.queries import alert_with_events, alerts_list
    from sentinel_ray.storage.warehouse import connect_warehouse

    if args.action != "list" and not args.alert_id:
        raise ValueError(f"alerts {args.action} needs an alert id (see `sentinel-ray alerts list`)")
    if args.action == "close" and not args.disposition:
        raise ValueError("alerts close needs --disposition true_positive|false_positive|unsure")
    settings = join_platform(settings)
    warehouse = connect_warehouse(settings)
    warehouse.ensure_schema()
    if args.action == "list":
        end = (dt.datetime.combine(args.end + dt.timedelta(days=1), dt.time(), dt.timezone.utc) if args.end
               else utc_now())
        start = (dt.datetime.combine(args.start, dt.time(), dt.timezone.utc) if args.start
                 else end - dt.timedelta(days=30))
        rows = alerts_list(warehouse, args.state, args.ticker.upper() if args.ticker else None, start, end, args.limit)
        if args.json:
            print(json.dumps(rows, default=str, indent=2))
            return 0
        for r in rows:
            top = (_reason_texts(r["reasons"]) or ["-"])[0]
            print(f"{r['alert_id']:<30} {r['state']:<12} {r['disposition'] or '-':<14} peak {r['peak_score']:5.1f} "
                  f"at {format_ist(r['peak_ts'])}  opened {format_ist(r['opened_at'])}  "
                  f"last bar {format_ist(r['last_bar_ts'])}  {top}")
        print(f"{len(rows)} alerts", file=sys.stderr)
        return 0
    if args.action in ("ack", "close"):
        actor = args.actor or os.environ.get("USER") or "cli"
        try:
            apply_transition(warehouse, args.alert_id, "acknowledged" if args.action == "ack" else "closed",
                             args.disposition, actor, args.note)
        except AlertNotFound:
            raise ValueError(f"no alert {args.alert_id!r} (see `sentinel-ray alerts list`)") from None
    alert = alert_with_events(warehouse, args.alert_id)
    if alert is None:
        raise ValueError(f"no alert {args.alert_id!r} (see `sentinel-ray alerts list`)")
    if args.json:
        print(json.dumps(alert, default=str, indent=2))
        return 0
    print(f"{alert['alert_id']}  {alert['ticker']} ({alert['exchange']})  {alert['state']}"
          f"{' / ' + alert['disposition'] if alert['disposition'] else ''}  detected by {alert['detected_by']}")
    print(f"  opened    {format_ist(alert['opened_at'])}   last bar {format_ist(alert['last_bar_ts'])}")
    print(f"  peak      {alert['peak_score']:.1f} at {format_ist(alert['peak_ts'])}")
    for text in _reason_texts(alert["reasons"]):
        print(f"    - {text}")
    print(f"  evidence  bars {format_ist(alert['evidence_start'])} .. {format_ist(alert['evidence_end'])}, "
          f"{len(alert['post_ids'])} posts{': ' + ', '.join(alert['post_ids'][:10]) if alert['post_ids'] else ''}"
          f"{' ...' if len(alert['post_ids']) > 10 else ''}")
    print("  events")
    for e in alert["events"]:
        change = f"{e['from_state'] or '-'} -> {e['to_state']}"
        print(f"    {format_ist(e['at'])}  {e['actor']:<10} {e['action']:<12} {change:<24} "
              f"{e['disposition'] or '':<14} {e['note'] or ''}")
    return 0


def cmd_reference(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray import reference_build
    from sentinel_ray.config import ReferenceSettings

    if args.action == "show":
        info = reference_build.describe()
    else:
        ref = ReferenceSettings.of(settings)
        if args.timeout is not None:
            ref = ref.model_copy(update={"timeout_s": args.timeout})
        info = reference_build.refresh(settings.resolved_data_dir, ref, nse_url=args.nse_url, bse_url=args.bse_url,
                                       with_bse=not args.no_bse, from_files=args.from_files, as_of=args.as_of)
    print(json.dumps(info, indent=1, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinel-ray", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Ray, storage, a replay backfill and the HTTP API on this machine")
    up.add_argument("--days", type=int, help="days of replay history to load first (default: backfill_days)")
    up.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    up.add_argument("--no-ingest", action="store_true", help="no continuous ingestion (backfill and API only)")
    up.add_argument("--exit-after-start", action="store_true", help=argparse.SUPPRESS)  # smoke tests
    up.set_defaults(func=cmd_up)

    backfill = sub.add_parser("backfill", help="load history for a date range through the pipeline")
    add_backfill_arguments(backfill)
    backfill.set_defaults(func=cmd_backfill)

    quality = sub.add_parser("quality", help="data-quality report: status per dataset and source, rules, alerts")
    quality.add_argument("--hours", type=int, default=24, help="window (default 24)")
    quality.add_argument("--json", action="store_true", help="print the report as JSON")
    quality.add_argument("--write", action="store_true", help="also write JSON and HTML to the lake's reports/")
    quality.set_defaults(func=cmd_quality)

    quarantine = sub.add_parser("quarantine", help="list quarantined rows, or re-run them after a rule change")
    quarantine.add_argument("action", choices=["list", "replay"])
    quarantine.add_argument("--dataset", required=True, choices=["prices", "posts", "filings"])
    quarantine.add_argument("--rule", help="only rows rejected for this reason")
    quarantine.add_argument("--start", type=_date, help="first batch day")
    quarantine.add_argument("--end", type=_date, help="last batch day")
    quarantine.add_argument("--limit", type=int, default=100, help="list: most rows shown")
    quarantine.set_defaults(func=cmd_quarantine)

    replay = sub.add_parser("replay", help="read kept raw payloads again through today's parsing and rules, and "
                                           "replace what they produced (exactly once; a report of rows changed)")
    add_replay_arguments(replay)
    replay.set_defaults(func=cmd_replay)

    lineage = sub.add_parser("lineage", help="where a stored row came from: its raw payload, run and quarantine history")
    lineage.add_argument("dataset", help="prices, posts or filings")
    lineage.add_argument("key", nargs="+", help="the row's natural key in order (prices: ticker exchange interval "
                                                "source ts; posts: platform post_id; filings: exchange filing_id)")
    lineage.add_argument("--json", action="store_true")
    lineage.set_defaults(func=cmd_lineage)

    compact = sub.add_parser("compact", help="rewrite closed days' stream files of the curated lake as a few "
                                             "large ones; prints files per day before and after")
    compact.add_argument("--dataset", choices=["prices", "posts", "filings", "features_1m", "features_1d"],
                         help="only this dataset (default: all)")
    compact.add_argument("--date", type=_date, help="only this UTC day, compacted even if written to recently")
    compact.add_argument("--json", action="store_true", help="print the summary as one JSON object too")
    compact.set_defaults(func=cmd_compact)

    status = sub.add_parser("status", help="state of pollers, consumers and streams of the running platform")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    dead = sub.add_parser("deadletters", help="list or replay stream batches set aside after errors a retry cannot fix")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("dataset", choices=["prices", "posts", "filings"])
    dead.add_argument("--id", action="append", help="replay only these dead-letter ids (repeatable)")
    dead.add_argument("--limit", type=int, default=100, help="list at most this many")
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(func=cmd_deadletters)

    sources = sub.add_parser("sources", help="list the data sources, or check them (config + one live fetch)")
    sources.add_argument("action", choices=["list", "check"])
    sources.add_argument("names", nargs="*", help="sources to check (default: all)")
    sources.set_defaults(func=cmd_sources)

    query = sub.add_parser("query", help="print price bars of a ticker from the warehouse")
    query.add_argument("ticker")
    query.add_argument("--start", type=_date)
    query.add_argument("--end", type=_date, help="last UTC day, inclusive")
    query.add_argument("--interval", choices=["1m", "1h", "1d"], default="1h")
    query.set_defaults(func=cmd_query)

    alerts = sub.add_parser("alerts", help="list, show, acknowledge or close risk alerts (times in IST)")
    alerts.add_argument("action", choices=["list", "show", "ack", "close"])
    alerts.add_argument("alert_id", nargs="?", help="show/ack/close: the alert's id (from `alerts list`)")
    alerts.add_argument("--state", choices=["open", "acknowledged", "closed"], help="list: only this state")
    alerts.add_argument("--ticker", help="list: only this ticker")
    alerts.add_argument("--start", type=_date, help="list: episodes running on or after this UTC day (default: 30 days)")
    alerts.add_argument("--end", type=_date, help="list: episodes opened up to this UTC day, inclusive")
    alerts.add_argument("--limit", type=int, default=100, help="list: most alerts shown")
    alerts.add_argument("--disposition", choices=["true_positive", "false_positive", "unsure"],
                        help="close (required) or ack: the verdict")
    alerts.add_argument("--note", help="ack/close: a note for the audit log")
    alerts.add_argument("--actor", help="ack/close: who you are (default: $USER)")
    alerts.add_argument("--json", action="store_true")
    alerts.set_defaults(func=cmd_alerts)

    from sentinel_ray.reference_build import BSE_SCRIP_LIST_PATH, NSE_EQUITY_LIST_PATH

    ref = sub.add_parser("reference", help="show the symbol table in use, or rebuild it from the exchanges' lists")
    ref.add_argument("action", choices=["show", "refresh"])
    ref.add_argument("--from-files", nargs="+", metavar="CSV",
                     help="refresh from local copies: NSE_CSV [BSE_CSV] instead of the live lists")
    ref.add_argument("--nse-url", help=f"NSE EQUITY_L.csv (default: setting nse_archives_url + {NSE_EQUITY_LIST_PATH})")
    ref.add_argument("--bse-url", help="BSE scrip list, ListofScripData JSON (default: setting bse_base_url + "
                                       f"{BSE_SCRIP_LIST_PATH})")
    ref.add_argument("--no-bse", action="store_true", help="NSE list only (no BSE scrip codes)")
    ref.add_argument("--as-of", type=_date, help="date the lists describe (default: today, or the files' dates)")
    ref.add_argument("--timeout", type=float, help="seconds per download (default: setting reference_timeout_s)")
    ref.set_defaults(func=cmd_reference)

    evaluate = sub.add_parser("evaluate", help="measure detection on replay ground truth: precision, recall, F1, "
                                               "lead time, false alerts per 1,000 quiet ticker-days, by kind")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="replay seeds (default: 1 2 3)")
    evaluate.add_argument("--days", type=int, default=60, help="calendar days per seed (default: 60)")
    evaluate.add_argument("--start", type=_date, default=dt.date(2026, 3, 2), help="first day (default: 2026-03-02)")
    evaluate.add_argument("--json", action="store_true", help="only the JSON line")
    evaluate.set_defaults(func=cmd_evaluate)

    migrate = sub.add_parser("migrate", help="apply the warehouse's pending schema migrations (every start does too)")
    migrate.add_argument("--dry-run", action="store_true", help="only list applied and pending versions")
    migrate.set_defaults(func=cmd_migrate)
    return parser


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.detect.evaluate import render
    from sentinel_ray.detect.pipeline import evaluate_replay, summary

    if args.days < 1:
        raise ValueError("--days must be at least 1")
    report, timing = evaluate_replay(args.seeds, args.start, args.days)
    if not args.json:
        print(f"replay seeds {' '.join(map(str, args.seeds))}, {args.days} days from {args.start}")
        print(render(report))
    print(json.dumps(summary(report, timing)))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from sentinel_ray.storage.warehouse import connect_warehouse

    warehouse = connect_warehouse(join_platform(settings))
    status = warehouse.schema_status() if args.dry_run else warehouse.migrate()
    adopted = (f" (its tables predate migrations: {'the baseline adopts them' if args.dry_run else 'adopted'})"
               if status.unversioned else "")
    print(f"warehouse {status.database}: schema version {status.version} of {status.latest}{adopted}")
    for a in status.applied:
        twice = f", applied {a.times} times" if a.times > 1 else ""
        print(f"applied  {a.version}  {format_ist(a.applied_at)}  by {a.applied_by} in {a.duration_ms} ms{twice}  "
              f"{a.description}")
    for m in status.pending:
        print(f"pending  {m.version}  {m.description}")
        for statement in m.statements:
            print("    " + statement.replace("{db}", f"`{status.database}`").replace("\n", "\n    ") + ";")
    if status.applied_now:
        print(f"applied now: {', '.join(map(str, status.applied_now))}")
    elif not status.pending:
        print("up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Local clusters from ray.init (Ray >= 2.59) require the token they write to
    # ~/.ray/auth_token, and a driver joining one sends it only in token mode. Ray reads
    # this when it is imported, so it is set here, before anything imports ray.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"sentinel-ray: configuration error: {e}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except (ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"sentinel-ray {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
