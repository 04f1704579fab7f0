"""The platform's backfill service: backfills run by one long-lived actor for any driver.

First its bookkeeping in this process (queue, cancel, outcome), with run_backfill replaced
by a stand-in the test steps through; then the real thing through the actor on Ray: the
same rows as the source produced, a client that stops leaving its finished days for the
next run, errors raised in the client as themselves, and the CLI handing its range to it.
"""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import ray

from sentinel_ray.config import Settings
from sentinel_ray.ingest import backfill_service
from sentinel_ray.ingest.backfill import BackfillError, BackfillSummary, Progress, finished_days
from sentinel_ray.ingest.backfill_service import BackfillCancelled, BackfillService, backfill_through
from sentinel_ray.records import SourceError
from sentinel_ray.sources.replay import ReplaySource
from sentinel_ray.storage.warehouse import connect_warehouse

START, END = dt.date(2026, 11, 5), dt.date(2026, 11, 10)  # Thursday .. Tuesday


class SteppedBackfills:
    """Stands in for run_backfill: each call reports `days` progress steps, one per `step()`."""

    def __init__(self, days: int = 3) -> None:
        self.days = days
        self.calls: list[tuple[str, dt.date]] = []
        self._steps = threading.Semaphore(0)

    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self._steps.release()

    def __call__(self, settings, source_name, start, end, *, force, progress):
        self.calls.append((source_name, start))
        if source_name == "broken":
            raise BackfillError("no such range")
        for done in range(1, self.days + 1):
            assert self._steps.acquire(timeout=10), "the test never stepped this backfill"
            progress(Progress(done, self.days, done * 100, float(done)))
        return BackfillSummary("run-" + source_name, source_name, start, end, self.days, 1.0)


@pytest.fixture
def stepped(monkeypatch) -> SteppedBackfills:
    fake = SteppedBackfills()
    monkeypatch.setattr(backfill_service, "run_backfill", fake)
    monkeypatch.setattr(backfill_service, "POLL_WAIT_S", 0.05)
    return fake


def _until_done(service: BackfillService, ticket: str):
    reports = []
    for _ in range(400):
        state = service.poll(ticket, len(reports))
        reports.extend(state.progress)
        if state.done:
            return state, reports
    raise AssertionError("the backfill never finished")


def _until_reported(service: BackfillService, ticket: str, days: int) -> None:
    for _ in range(400):  # each poll waits up to POLL_WAIT_S; a busy box may need several
        if any(p.days_done >= days for p in service.poll(ticket, 0).progress):
            return
    raise AssertionError(f"the backfill never reported {days} days")


def _submit(service: BackfillService, source: str) -> str:
    ticket = f"ticket-{source}"
    service.submit(ticket, Settings(), source, START, END)
    return ticket


def test_a_poll_hands_over_each_report_once_then_the_outcome_until_it_expires(stepped: SteppedBackfills,
                                                                              monkeypatch) -> None:
    service = BackfillService()
    ticket = _submit(service, "replay")
    service.submit(ticket, Settings(), "replay", START, END)  # a retried submit: still one backfill
    stepped.step(3)
    state, reports = _until_done(service, ticket)
    assert [p.days_done for p in reports] == [1, 2, 3]
    assert state.error is None and state.summary.run_id == "run-replay"
    assert service.poll(ticket, 3).summary.run_id == "run-replay"  # a lost answer: ask again
    assert len(stepped.calls) == 1
    later = backfill_service._clock() + backfill_service.OUTCOME_KEEP_S + 1
    monkeypatch.setattr(backfill_service, "_clock", lambda: later)
    following = _submit(service, "next")  # expiry runs on a submit
    with pytest.raises(backfill_service.UnknownBackfill, match="run the range again"):
        service.poll(ticket, 0)
    stepped.step(3)  # nothing left running into the next test
    _until_done(service, following)


def test_backfills_run_one_at_a_time_in_the_order_they_came(stepped: SteppedBackfills) -> None:
    service = BackfillService()
    first = _submit(service, "first")
    stepped.step()
    _until_reported(service, first, 1)  # started
    queued = [_submit(service, name) for name in ("second", "third", "fourth")]
    state = service.poll(queued[0], 0)
    assert state.waiting and not state.done and service.running() == 4
    stepped.step(2 + 3 * 3)
    assert _until_done(service, first)[0].summary.source == "first"
    for ticket, name in zip(queued, ("second", "third", "fourth")):
        assert _until_done(service, ticket)[0].summary.source == name
    assert [name for name, _ in stepped.calls] == ["first", "second", "third", "fourth"] and service.running() == 0


def test_a_cancelled_backfill_stops_after_the_block_in_hand(stepped: SteppedBackfills) -> None:
    service = BackfillService()
    ticket = _submit(service, "replay")
    stepped.step()
    _until_reported(service, ticket, 1)
    service.cancel(ticket)
    stepped.step()  # the block in hand ends; its report is where it stops
    state, reports = _until_done(service, ticket)
    assert isinstance(state.error, BackfillCancelled) and state.summary is None
    assert [p.days_done for p in reports] == [1]


def test_a_backfill_cancelled_while_it_waits_ends_at_once_and_never_starts(stepped: SteppedBackfills) -> None:
    service = BackfillService()
    first = _submit(service, "first")
    stepped.step()
    _until_reported(service, first, 1)
    waiting = _submit(service, "waiting")
    service.cancel(waiting)
    state = service.poll(waiting, 0)  # done now, while the first still runs
    assert state.done and isinstance(state.error, BackfillCancelled) and "before it started" in str(state.error)
    stepped.step(2)
    _until_done(service, first)
    assert [name for name, _ in stepped.calls] == ["first"]


def test_a_backfill_whose_client_stopped_polling_is_cancelled(stepped: SteppedBackfills, monkeypatch) -> None:
    """A client killed outright (SIGKILL, its machine lost) cancels nothing itself."""
    service = BackfillService()
    ticket = _submit(service, "replay")
    stepped.step()
    _until_reported(service, ticket, 1)
    later = backfill_service._clock() + backfill_service.CLIENT_LEASE_S + 1
    monkeypatch.setattr(backfill_service, "_clock", lambda: later)
    stepped.step()  # its next report finds the client silent for too long
    for _ in range(400):
        with service._changed:
            run = service._runs[ticket]
            if run.done:
                break
        time.sleep(0.01)
    assert isinstance(run.error, BackfillCancelled) and "stopped polling" in str(run.error)


def test_an_error_is_the_outcome_and_the_service_goes_on(stepped: SteppedBackfills) -> None:
    service = BackfillService()
    state, _ = _until_done(service, _submit(service, "broken"))
    assert isinstance(state.error, BackfillError) and "no such range" in str(state.error)
    assert state.error.__traceback__ is None and "in the backfill service" in state.error.__notes__[0]
    ticket = _submit(service, "replay")
    stepped.step(3)
    assert _until_done(service, ticket)[0].summary is not None


def test_an_error_that_does_not_pickle_is_sent_as_its_text() -> None:
    class Local(Exception):  # a class defined in a function does not pickle
        pass

    sent = backfill_service._sendable(Local("the disk is full"))
    assert type(sent) is RuntimeError and str(sent) == "Local: the disk is full"
    kept = backfill_service._sendable(BackfillError("end is before start"))
    assert type(kept) is BackfillError and str(kept) == "end is before start"


# ---- the actor, on Ray --------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(ray_session: None, embedded_redis: str):
    handle = backfill_service.service_actor(create=True)
    yield handle
    backfill_service.stop_service()


class Interrupted(Exception):
    pass


@pytest.mark.ray
def test_the_service_stores_what_the_source_produced_and_a_client_that_stops_leaves_its_days(
        service, isolated_settings: Settings) -> None:
    settings = isolated_settings
    all_days = {START + dt.timedelta(days=i) for i in range((END - START).days + 1)}
    seen: list[Progress] = []

    def stop_after_two_days(p: Progress) -> None:
        seen.append(p)
        if p.days_done >= 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        backfill_through(service, settings, "replay", START, END, progress=stop_after_two_days)
    warehouse = connect_warehouse(settings)
    done = finished_days(warehouse, "replay", START, END)
    assert 2 <= len(done) < len(all_days)
    runs = warehouse.query_rows("SELECT status, error FROM {db}.pipeline_runs FINAL WHERE pipeline = 'backfill'")
    assert [r["status"] for r in runs] == ["failed"] and "cancelled" in runs[0]["error"]

    resumed = backfill_through(service, settings, "replay", START, END, progress=seen.append)
    assert (resumed.skipped, resumed.days) == (len(done), len(all_days) - len(done))
    expected = ReplaySource.from_settings(settings).expected_counts(START, END)
    for name in ("prices", "posts", "filings"):  # exact rows: nothing lost, nothing doubled
        rows = warehouse.query_rows(f"SELECT count() AS n FROM {{db}}.{name} FINAL")[0]["n"]
        assert rows == expected[name]["valid"], name
    assert seen[-1].days_done == seen[-1].days_total == len(all_days) - len(done)
    assert ray.get(service.running.remote()) == 0


@pytest.mark.ray
def test_errors_reach_the_client_as_themselves(service, isolated_settings: Settings) -> None:
    with pytest.raises(SourceError, match="unknown source 'nope'"):
        backfill_through(service, isolated_settings, "nope", START, END)
    with pytest.raises(BackfillError, match="before start"):
        backfill_through(service, isolated_settings, "replay", END, START)


@pytest.mark.ray
def test_the_cli_hands_its_range_to_the_platforms_service(service, isolated_settings: Settings, monkeypatch,
                                                          capsys) -> None:
    from sentinel_ray.cli import main

    for name, value in (("DATA_DIR", str(isolated_settings.data_dir)), ("LAKE_URI", isolated_settings.lake_uri),
                        ("WAREHOUSE_DATABASE", isolated_settings.warehouse_database)):
        monkeypatch.setenv(f"SENTINEL_{name}", value)
    assert main(["backfill", "--start", str(START), "--end", str(START)]) == 0
    out = capsys.readouterr().out
    assert "run by the platform's backfill service" in out and "1/1 days" in out and "backfill backfill-" in out
    assert main(["backfill", "--start", str(START), "--end", str(START), "--in-driver"]) == 0
    out = capsys.readouterr().out
    assert "backfill service" not in out and "1 already done, skipped" in out



@pytest.mark.ray
def test_a_stopped_cli_backfill_is_stopped_in_the_service_too(service, isolated_settings: Settings) -> None:
    """`ray job stop` or `kill` (SIGTERM) of the client stops the backfill it handed over,
    after the block in hand, instead of leaving it running with no one waiting."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
           "SENTINEL_DATA_DIR": str(isolated_settings.data_dir), "SENTINEL_LAKE_URI": isolated_settings.lake_uri,
           "SENTINEL_WAREHOUSE_DATABASE": isolated_settings.warehouse_database}
    end = START + dt.timedelta(days=20)
    client = subprocess.Popen([sys.executable, "-m", "sentinel_ray.cli", "backfill", "--start", str(START),
                               "--end", str(end)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in client.stdout:  # until its first progress report
        lines.append(line)
        if " days " in line and "rows/s" in line:
            break
    client.send_signal(signal.SIGTERM)
    rest, _ = client.communicate(timeout=120)
    output = "".join(lines) + rest
    assert client.returncode == 130, output
    assert "run by the platform's backfill service" in output and "backfill stopped" in output
    warehouse = connect_warehouse(isolated_settings)
    runs = warehouse.query_rows("SELECT status, error FROM {db}.pipeline_runs FINAL WHERE pipeline = 'backfill'")
    assert [r["status"] for r in runs] == ["failed"] and "cancelled" in runs[0]["error"], runs
    assert 0 < len(finished_days(warehouse, "replay", START, end)) < 21
    assert ray.get(service.running.remote()) == 0
