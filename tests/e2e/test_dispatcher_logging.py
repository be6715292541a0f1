"""The worker's log stays quiet at idle: a line per scheduler tick filled 63 MiB a day."""
from __future__ import annotations

import logging

import pytest

from schedules.__main__ import configure_logging


@pytest.fixture
def worker_logging():
    """The worker's logging set-up, undone after the test (it sets process-wide levels)."""
    loggers = [logging.getLogger(), logging.getLogger("apscheduler")]
    levels = [lg.level for lg in loggers]
    configure_logging()
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def test_an_idle_dispatcher_writes_no_log_line_per_tick(system, worker_logging, caplog):
    ticks = []
    job = system.dispatcher.scheduler.get_job("tick")
    caplog.clear()  # the system started with its subscriptions confirmed (and logged)
    # twenty ticks of an idle dispatcher (0.2 s apart): nothing to send, nothing to say
    system.wait(lambda: ticks.append(job.next_run_time) or len(set(ticks)) > 20,
                timeout=30, what="twenty dispatcher ticks")
    noisy = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert noisy == [], [f"{r.name}: {r.getMessage()}" for r in noisy]
