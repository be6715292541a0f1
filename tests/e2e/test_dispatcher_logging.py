"""The worker's log stays quiet at idle: a line per scheduler tick filled 63 MiB a day."""
from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.background import BackgroundScheduler

from schedules.__main__ import configure_logging, not_an_overlapping_run


@pytest.fixture
def worker_logging():
    """The worker's logging set-up, undone after the test (it sets process-wide levels)."""
    loggers = [logging.getLogger(), logging.getLogger("apscheduler")]
    levels = [lg.level for lg in loggers]
    configure_logging()
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)
    logging.getLogger("apscheduler.scheduler").removeFilter(not_an_overlapping_run)


def test_an_idle_dispatcher_writes_no_log_line_per_tick(system, worker_logging, caplog):
    ticks: list[dt.datetime] = []
    job = system.dispatcher.scheduler.get_job("tick")
    caplog.clear()  # the system started with its subscriptions confirmed (and logged)
    # twenty ticks of an idle dispatcher (0.2 s apart): nothing to send, nothing to say

    def twenty_ticks() -> bool:
        ticks.append(job.next_run_time)
        return len(set(ticks)) > 20

    system.wait(twenty_ticks, timeout=30, what="twenty dispatcher ticks")
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert noisy == [], [f"{r.name}: {r.getMessage()}" for r in noisy]


def test_a_tick_due_while_the_last_still_runs_is_skipped_without_a_log_line(worker_logging,
                                                                           caplog):
    """A tick slower than the interval (a busy machine): the next is skipped, as the worker's
    jobs run one at a time, and the log says nothing of it at each tick."""
    release, skipped = threading.Event(), threading.Event()
    scheduler = BackgroundScheduler()
    scheduler.add_listener(lambda _event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
    scheduler.add_job(lambda: release.wait(10), "interval", seconds=0.05, id="tick",
                      max_instances=1, coalesce=True)
    caplog.clear()
    scheduler.start()
    try:  # the scheduler logs a skip before it reports it
        assert skipped.wait(10), "no tick fell due while the last still ran"
    finally:
        release.set()
        scheduler.shutdown()
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert noisy == [], [f"{r.name}: {r.getMessage()}" for r in noisy]
