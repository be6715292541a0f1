"""The dispatcher's heavy passes, in a process of their own at the lowest CPU priority.

An alert pass reads every node and the airplay report of its lookback: at 10,000 nodes about
2.5 s of CPU every ``alert_eval_s``, more as the lookback holds more broadcasts; the telemetry
retention pass aggregates an hour of every node's samples. Run on the dispatcher's own
interpreter they took its turns from what may not wait: publishing an emergency and storing
its 10,000 receipts (the bridge), which missed its 3 s when a pass began with it
(docs/benchmarks.md). Here they run in one child process at ``nice`` 19, so the kernel gives
the dispatcher, the bridge workers and the broker the CPU first, and the passes what is left:
they take longer when the machine is busy, and nothing else does.

The child is started at the first pass (most of a dispatcher's life in the tests has none) and
lives as long as the dispatcher's duties: it waits for the next pass on a pipe and exits when
the pipe closes, also when the dispatcher is killed (kill -9; a pass under way is finished
first). A child that died is started again at the next pass; the pass it was running is
reported as failed, and the next one does its work.

What a pass does is a plain function (``alerts_pass``, ``retention_pass``): the dispatcher
calls it in-process when no child is running (its tests drive it so), and the child calls the
same one.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from server import alerts, retention
from server.config import Settings
from server.models import from_ms

log = logging.getLogger(__name__)

NICE = 19  # the lowest priority: the passes get the CPU nothing else wants
STOP_WAIT_S = 10.0  # how long stop() waits for a pass under way before it kills the child


def alerts_pass(sessions: sessionmaker[Session], settings: Settings, now_ms: int,
                broker_ok: bool, watch_since_ms: int | None) -> int:
    """One alert pass at ``now_ms`` (server.alerts.evaluate), committed: how many alerts are
    new. Their notifications are taken by the dispatcher (server.notify.take)."""
    with sessions() as db:
        new = alerts.evaluate(db, settings, from_ms(now_ms), broker_ok=broker_ok,
                              watch_since=from_ms(watch_since_ms)
                              if watch_since_ms is not None else None)
        db.commit()
        return len(new)


def retention_pass(sessions: sessionmaker[Session], settings: Settings,
                   now_ms: int) -> retention.Pruned:
    """Aggregate the completed hours of telemetry, then prune (server.retention) at ``now_ms``."""
    return retention.run(sessions, settings, lambda: now_ms)


PASSES: dict[str, Callable[..., Any]] = {"alerts": alerts_pass, "retention": retention_pass}


class PassFailed(RuntimeError):
    """A pass raised in the child (the message holds its traceback), or the child died."""


class Background:
    """The child process and the calls into it, one pass at a time (callers wait their
    turn)."""

    def __init__(self, settings: Settings, nice: int = NICE):
        self.settings = settings
        self.nice = nice
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first pass)."""
        return self._process.pid if self._process is not None else None

    def run(self, name: str, *args: Any) -> Any:
        """Pass ``name`` (PASSES) with ``args`` in the child, started first if it is not
        running; its answer. PassFailed when the pass raised or the child died on it."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            assert self._conn is not None
            try:
                self._conn.send((name, args))
                ok, value = self._conn.recv()
            except (EOFError, OSError) as err:
                code = self._process.exitcode if self._process is not None else None
                self._discard()
                raise PassFailed(f"the background process ended during the {name} pass "
                                 f"(exit code {code})") from err
            if not ok:
                raise PassFailed(value)
            return value

    def _start(self) -> None:
        self._discard()
        ctx = multiprocessing.get_context("spawn")  # not fork: the dispatcher has threads
        parent, child = ctx.Pipe()
        process = ctx.Process(target=serve, args=(child, self.settings, self.nice),
                              name="loa-background", daemon=True)
        process.start()
        child.close()  # the child's end lives in the child only: its exit closes the pipe
        self._process, self._conn = process, parent
        log.info("background passes run in process %s at nice %d", process.pid, self.nice)

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(STOP_WAIT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process.close()
        self._process, self._conn = None, None

    def stop(self) -> None:
        """Close the pipe: the child exits once a pass under way is done (killed after
        STOP_WAIT_S)."""
        with self._lock:
            self._discard()


def serve(conn: Connection, settings: Settings, nice: int) -> None:
    """The child: lower its priority, open the database, then run each pass asked for until
    the pipe closes. Ctrl-C in a terminal reaches every process of the dispatcher: the child
    ignores it and leaves its ending to the dispatcher (closing the pipe). SIGTERM (systemd's
    stop, multiprocessing's at the dispatcher's exit) ends it at once, quietly: a pass cut off
    is rolled back and done again by the next dispatcher's."""
    from server.heap import settle
    from server.models import make_engine, make_sessionmaker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _quit)
    logging.basicConfig(format="%(asctime)s dispatcher-background %(levelname)s %(message)s",
                        level=logging.INFO)
    try:
        os.nice(nice)
    except OSError as err:  # raising one's niceness needs no privilege; say so if it fails
        log.warning("background passes run at the dispatcher's priority: %s", err)
    engine = make_engine(settings.database_url, settings.database_busy_timeout_s)
    sessions = make_sessionmaker(engine, actor="dispatcher")
    settle()
    try:
        while True:
            try:
                name, args = conn.recv()
            except (EOFError, OSError):
                return  # the dispatcher stopped, or died
            try:
                answer: tuple[bool, Any] = (True, PASSES[name](sessions, settings, *args))
            except Exception:
                answer = (False, traceback.format_exc(limit=20))
            try:
                conn.send(answer)
            except OSError:
                return
    finally:
        engine.dispose()


def _quit(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
