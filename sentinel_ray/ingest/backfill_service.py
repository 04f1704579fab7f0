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
import queue
import threading
import time
import traceback
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
# A client polls at least every POLL_WAIT_S while it waits; one silent this long is gone
# (killed outright, its machine lost): its backfill is cancelled after the block in hand.
CLIENT_LEASE_S = 60.0
OUTCOME_KEEP_S = 3600.0  # a finished backfill's outcome stays this long for its client to collect
_clock = time.monotonic  # the service's clock (tests move it)


class BackfillCancelled(RuntimeError):
    """The client of a backfill stopped waiting for it."""


class UnknownBackfill(LookupError):
    """The service has no backfill under that ticket: it was restarted, or the outcome expired."""


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
    polled_at: float
    progress: list[Progress] = field(default_factory=list)
    started: bool = False
    cancelled: str | None = None  # why, once cancelled
    done: bool = False
    finished_at: float = 0.0
    summary: BackfillSummary | None = None
    error: BaseException | None = None


class BackfillService:
    """The actor (`service_actor`): `submit` a range, `poll` its progress, `cancel` it.

    One worker thread takes the submitted backfills in order (a FIFO queue); the actor's
    other threads answer polls and cancels meanwhile."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._queue: queue.Queue[_Run] = queue.Queue()
        self._changed = threading.Condition()
        threading.Thread(target=self._work, name="backfill-service", daemon=True).start()

    def submit(self, ticket: str, settings: Settings, source_name: str, start: dt.date, end: dt.date,
               force: bool = False) -> None:
        """Queue a backfill under the client's `ticket` (for `poll` and `cancel`); submitting
        the same ticket again changes nothing (a retried call)."""
        with self._changed:
            self._expire()
            if ticket in self._runs:
                return
            run = _Run(settings, source_name, start, end, force, polled_at=_clock())
            self._runs[ticket] = run
        self._queue.put(run)

    def poll(self, ticket: str, seen: int) -> RunState:
        """The reports after the first `seen`, waiting up to POLL_WAIT_S for one (or the end).
        A finished backfill answers with its outcome on every poll until it expires."""
        with self._changed:
            run = self._runs.get(ticket)
            if run is None:
                raise UnknownBackfill(f"the backfill service has no backfill {ticket} (it was restarted, or the "
                                  f"outcome expired); the days it finished stay finished: run the range again")
            run.polled_at = _clock()
            self._changed.wait_for(lambda: run.done or len(run.progress) > seen, timeout=POLL_WAIT_S)
            run.polled_at = _clock()
            return RunState(run.progress[seen:], not run.started and not run.done, run.done, run.summary, run.error)

    def cancel(self, ticket: str, why: str = "cancelled: its client stopped waiting") -> None:
        """Stop the backfill after the block in hand; one still queued ends at once."""
        with self._changed:
            run = self._runs.get(ticket)
            if run is not None and not run.done:
                run.cancelled = why
                if not run.started:
                    self._finish(run, None, BackfillCancelled("cancelled before it started"))

    def cancel_all(self) -> None:
        """Cancel every backfill (the platform stops)."""
        with self._changed:
            tickets = list(self._runs)
        for ticket in tickets:
            self.cancel(ticket, "cancelled: the platform stopped")

    def running(self) -> int:
        """Backfills submitted and not finished."""
        with self._changed:
            return sum(not run.done for run in self._runs.values())

    def _work(self) -> None:
        while True:
            run = self._queue.get()
            with self._changed:
                if run.done:  # cancelled while it waited
                    continue
                run.started = True
                self._changed.notify_all()
            summary, error = None, None
            try:
                summary = run_backfill(run.settings, run.source_name, run.start, run.end, force=run.force,
                                       progress=lambda p, run=run: self._report(run, p))
            except BaseException as e:  # noqa: BLE001 - the client gets it, the service goes on
                error = _sendable(e)
            finally:
                with self._changed:
                    self._finish(run, summary, error if summary is None else None)

    def _finish(self, run: _Run, summary: BackfillSummary | None, error: BaseException | None) -> None:
        # under self._changed
        if summary is None and error is None:
            error = RuntimeError("the backfill ended without an outcome")
        run.done, run.finished_at, run.summary, run.error = True, _clock(), summary, error
        self._changed.notify_all()

    def _report(self, run: _Run, progress: Progress) -> None:
        with self._changed:
            if run.cancelled is None and _clock() - run.polled_at > CLIENT_LEASE_S:
                run.cancelled = f"cancelled: its client stopped polling for {CLIENT_LEASE_S:.0f} s"
            if run.cancelled is not None:  # raising here stops run_backfill after this block, recorded failed
                raise BackfillCancelled(run.cancelled)
            run.progress.append(progress)
            self._changed.notify_all()

    def _expire(self) -> None:
        # under self._changed: outcomes kept an hour (a client killed outright never collects its own)
        now = _clock()
        for ticket in [t for t, r in self._runs.items() if r.done and now - r.finished_at > OUTCOME_KEEP_S]:
            del self._runs[ticket]


def _sendable(error: BaseException) -> BaseException:
    """What the client raises: a copy of the error (same type, no traceback: the service does
    not keep the failed run's frames alive) with the service's traceback as a note, or a
    RuntimeError with its text when it does not pickle."""
    where = "".join(traceback.format_exception(error)).rstrip()
    try:
        copy = pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any pickling failure: send what it said
        try:
            copy = RuntimeError(f"{type(error).__name__}: {error}")
        except Exception:  # noqa: BLE001 - not even its text
            copy = RuntimeError(type(error).__name__)
    copy.__traceback__ = None
    copy.add_note(f"in the backfill service:\n{where}")
    return copy


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


def stop_service(wait_s: float = CANCEL_WAIT_S) -> None:
    """Cancel its backfills, wait up to `wait_s` for the running one to stop after its block
    in hand (so its run is recorded failed, its finished days kept), then kill the service
    (it is detached, so Ray would otherwise keep it)."""
    import ray

    handle = service_actor(create=False)
    if handle is None:
        return
    try:
        ray.get(handle.cancel_all.remote(), timeout=wait_s)
        deadline = time.monotonic() + wait_s
        while ray.get(handle.running.remote(), timeout=wait_s) and time.monotonic() < deadline:
            time.sleep(0.2)
    except Exception:  # noqa: BLE001, S110 - a service that does not answer is killed all the same
        pass
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + 10.0  # its name is freed a moment later: a new one must not get the old
    while service_actor(create=False) is not None and time.monotonic() < deadline:
        time.sleep(0.1)


def backfill_through(service: Any, settings: Settings, source_name: str, start: dt.date, end: dt.date, *,
                     force: bool = False, progress: Callable[[Progress], None] | None = None,
                     waiting: Callable[[], None] | None = None) -> BackfillSummary:
    """`run_backfill` run by the service: the same arguments, progress and outcome (its
    summary, or its error raised here). `waiting` is called once if it queues behind another.
    Leaving early (KeyboardInterrupt, `progress` raising) cancels it in the service."""
    import ray

    ticket = uuid.uuid4().hex  # the client's: a stop during the submit still knows what to cancel
    seen, said_waiting = 0, False
    try:
        ray.get(service.submit.remote(ticket, settings, source_name, start, end, force))
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
