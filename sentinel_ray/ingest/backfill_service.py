"""The platform's backfill service: one long-lived actor that runs every backfill on it.

A backfill run as a job of its own starts its Ray workers: new processes that import Ray
Data and the pipeline before the first block (~1.5 s of CPU each here), beside a driver that
imports Ray Data too. On a month of replay that start-up is a third of the run: 60-70k rows/s
as a job against 93-96k for the same month run again by a driver whose workers were already
up (bench/backfill_e2e.py). The service is that second driver for the whole platform: `up`
starts it and runs its start backfill through it; `sentinel-ray backfill` and `ray job
submit` backfills on a running platform hand their range to it and print its progress
(`backfill_through`). Its job's idle workers stay up between backfills, imports done.

It runs `run_backfill` itself, so a backfill through it is the same code, rows, files and
runs-table records as one in the client's own process.

- One backfill at a time, in the order they arrive: a second waits (its client says so);
  on a small machine two at once would only share the cores.
- A client that stops (Ctrl-C, a progress callback that raises) cancels its backfill: it
  stops after the block in hand and is recorded failed; the days it finished stay finished,
  so running it again resumes.
- If the service dies, the client's wait ends with the error; Ray restarts the service,
  empty. The days finished stay finished here too.
"""
from __future__ import annotations

import datetime as dt
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel_ray.config import Settings
from sentinel_ray.ingest.backfill import BackfillSummary, Progress, run_backfill
from sentinel_ray.runtime import RAY_NAMESPACE, on_the_head_node

SERVICE_NAME = "sentinel-backfill"
POLL_WAIT_S = 1.0  # a poll answers at once when there is news, else after this long
CANCEL_WAIT_S = 30.0  # how long a stopping client waits for its backfill to stop
UNCOLLECTED_KEEP_S = 3600.0  # the outcome of a backfill whose client went away is dropped after this


class BackfillCancelled(RuntimeError):
    """The client of a backfill stopped waiting for it."""


@dataclass
class RunState:
    """What a poll returns: the progress reports since the client's last, and the outcome once done."""

    progress: list[Progress]
    waiting: bool  # queued behind another backfill
    done: bool
    summary: BackfillSummary | None = None
    error: BaseException | None = None


@dataclass
class _Run:
    settings: Settings
    source_name: str
    start: dt.date
    end: dt.date
    force: bool
    progress: list[Progress] = field(default_factory=list)
    started: bool = False
    cancelled: bool = False
    done: bool = False
    finished_at: float = 0.0  # time.monotonic() when done
    summary: BackfillSummary | None = None
    error: BaseException | None = None


class BackfillService:
    """The actor (`service_actor`): `submit` a range, `poll` its progress, `cancel` it."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._changed = threading.Condition()
        self._one_at_a_time = threading.Lock()

    def submit(self, settings: Settings, source_name: str, start: dt.date, end: dt.date, force: bool = False) -> str:
        """Queue a backfill; returns its ticket for `poll` and `cancel`."""
        ticket = uuid.uuid4().hex
        run = _Run(settings, source_name, start, end, force)
        with self._changed:
            # outcomes no client came back for (a client killed outright) are not kept for ever
            now = time.monotonic()
            for old in [t for t, r in self._runs.items() if r.done and now - r.finished_at > UNCOLLECTED_KEEP_S]:
                del self._runs[old]
            self._runs[ticket] = run
        threading.Thread(target=self._run, args=(run,), name=f"backfill-{ticket[:8]}", daemon=True).start()
        return ticket

    def poll(self, ticket: str, seen: int) -> RunState:
        """The reports after the first `seen`, waiting up to POLL_WAIT_S for one (or the end)."""
        with self._changed:
            run = self._runs.get(ticket)
            if run is None:
                raise LookupError(f"no backfill {ticket} in the backfill service (it was restarted, or the "
                                  f"outcome was already collected); days it finished stay finished: run it again")
            self._changed.wait_for(lambda: run.done or len(run.progress) > seen, timeout=POLL_WAIT_S)
            state = RunState(run.progress[seen:], not run.started, run.done, run.summary, run.error)
            if run.done:
                del self._runs[ticket]  # collected
            return state

    def cancel(self, ticket: str) -> None:
        """Stop the backfill after the block in hand (before it starts, if it waits)."""
        with self._changed:
            run = self._runs.get(ticket)
            if run is not None:
                run.cancelled = True
                self._changed.notify_all()

    def running(self) -> int:
        """Backfills submitted and not yet collected."""
        with self._changed:
            return sum(not run.done for run in self._runs.values())

    def _run(self, run: _Run) -> None:
        with self._one_at_a_time:
            with self._changed:
                run.started = not run.cancelled
                self._changed.notify_all()
            summary, error = None, None
            if not run.started:
                error = BackfillCancelled("cancelled before it started")
            else:
                try:
                    summary = run_backfill(run.settings, run.source_name, run.start, run.end, force=run.force,
                                           progress=lambda p: self._report(run, p))
                except BaseException as e:  # noqa: BLE001 - the client gets it, the service goes on
                    error = _sendable(e)
            with self._changed:
                run.done, run.finished_at, run.summary, run.error = True, time.monotonic(), summary, error
                self._changed.notify_all()

    def _report(self, run: _Run, progress: Progress) -> None:
        with self._changed:
            if run.cancelled:  # raising here stops run_backfill after this block, recorded failed
                raise BackfillCancelled("cancelled: its client stopped waiting")
            run.progress.append(progress)
            self._changed.notify_all()


def _sendable(error: BaseException) -> BaseException:
    """The error itself when it pickles (the client raises the same type), else its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure: send what it said
        return RuntimeError(f"{type(error).__name__}: {error}")


def service_actor(*, create: bool) -> Any | None:
    """The platform's backfill service (created on the head node when `create`), or None
    when there is none and `create` is False. Ray must be initialised."""
    import ray

    if not create:
        try:
            return ray.get_actor(SERVICE_NAME, namespace=RAY_NAMESPACE)
        except ValueError:
            return None
    # num_cpus=0: it waits on the workers most of the time, and its own CPU (the signals)
    # must not hold back a map task's slot; threads: the running backfill, polls, cancels
    return ray.remote(num_cpus=0, max_concurrency=16, max_restarts=-1)(BackfillService).options(
        name=SERVICE_NAME, namespace=RAY_NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=on_the_head_node()).remote()


def stop_service() -> None:
    """Kill the service (it is detached, so Ray would otherwise keep it); a running backfill
    stops where it is, its finished days kept."""
    import ray

    handle = service_actor(create=False)
    if handle is not None:
        ray.kill(handle, no_restart=True)


def backfill_through(service: Any, settings: Settings, source_name: str, start: dt.date, end: dt.date, *,
                     force: bool = False, progress: Callable[[Progress], None] | None = None,
                     waiting: Callable[[], None] | None = None) -> BackfillSummary:
    """`run_backfill` run by the service: the same arguments, progress and outcome (its
    summary, or its error raised here). `waiting` is called once if it queues behind another.
    Leaving early (KeyboardInterrupt, `progress` raising) cancels it in the service."""
    import ray

    ticket = ray.get(service.submit.remote(settings, source_name, start, end, force))
    seen, said_waiting = 0, False
    try:
        while True:
            state: RunState = ray.get(service.poll.remote(ticket, seen))
            if state.waiting and not said_waiting and waiting is not None:
                waiting()
                said_waiting = True
            for report in state.progress:
                seen += 1
                if progress is not None:
                    progress(report)
            if state.done:
                break
    except BaseException:
        _cancel(service, ticket)
        raise
    if state.error is not None:
        raise state.error
    assert state.summary is not None
    return state.summary


def _cancel(service: Any, ticket: str) -> None:
    """Cancel and wait (bounded) until the backfill has stopped, so a client that returns
    leaves nothing running (its run recorded failed, its finished days kept)."""
    import ray

    try:
        ray.get(service.cancel.remote(ticket), timeout=CANCEL_WAIT_S)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while time.monotonic() < deadline:
            if ray.get(service.poll.remote(ticket, 1 << 30), timeout=CANCEL_WAIT_S).done:
                return
    except Exception:  # noqa: BLE001 - leaving anyway: the service stops it at its next block
        return
