"""A lease in the database lets exactly one of several processes act (two dispatchers: the one
holding the ``dispatcher`` lease publishes, builds desired states, runs the scheduled jobs; the
other waits to take over).

One row per lease name (``leases``): its holder (host:pid:uuid) and when it expires. Taking
and renewing it are the same single conditional UPDATE in a short transaction of its own
(``WHERE expires_at < now OR holder = me``), so on SQLite and PostgreSQL alike at most one
contender's statement matches; the very first contender inserts the row.

Fencing is by time: a holder counts its lease from when it *began* the renewal that succeeded,
on its own monotonic clock, and stops acting ``margin`` before the lease could expire, whether
or not its renewals still get through (a database that is slow or gone, a process that stalls).
So it has stopped before any other contender's clock can see the lease expired; contenders on
other machines need clocks within ``margin`` of each other (NTP). ``acting()`` is what the
holder's work asks before each step.

A busy holder keeps its lease (a province's first pass on a starved machine lost it a dozen
times): the renewal has a connection of its own (``lease_sessions``: never waiting for the
process's pool) with a busy timeout of about one renewal period, tries again at once when an
attempt failed on the database, and the process's other transactions give way to it
(``give_way``): on SQLite one writer holds the file at a time, and its busy handler polls, so
a renewal waiting behind back-to-back write transactions (each begun the instant the last
committed) almost never got in before the fence.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Connection, event, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from .errors import first_line, unavailable
from .models import Lease, from_ms, make_engine, make_sessionmaker, now_ms, rows_changed

log = logging.getLogger(__name__)


def holder_id() -> str:
    """This process as a lease holder: host:pid:uuid (a restarted process is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def lease_sessions(url: str, busy_timeout_s: float) -> sessionmaker[Session]:
    """Sessions for the renewal alone: one connection of its own (never waiting behind the
    process's other work for a pooled one) that waits at most ``busy_timeout_s`` for SQLite's
    write lock, so an attempt that cannot get through fails soon and the next begins fresh."""
    return make_sessionmaker(make_engine(url, busy_timeout_s, pool_size=1), actor="dispatcher")


def try_acquire(db: Session, name: str, holder: str, now: int, ttl_ms: int) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until ``now + ttl_ms`` (ms): True when
    it is ours now. One conditional UPDATE, committed at once; the row is inserted when the
    lease was never taken (a contender inserting it at the same time wins, we do not)."""
    values = {"holder": holder, "expires_at": from_ms(now + ttl_ms), "renewed_at": from_ms(now)}
    taken = db.execute(update(Lease).where(
        Lease.name == name, or_(Lease.expires_at < from_ms(now), Lease.holder == holder))
        .values(**values).execution_options(synchronize_session=False))
    if rows_changed(taken) == 1:
        db.commit()
        return True
    if db.get(Lease, name) is not None:
        db.rollback()
        return False
    db.add(Lease(name=name, **values))
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        return False
    return True


def release(db: Session, name: str, holder: str, now: int) -> bool:
    """Give the lease up at once (a clean stop), so a standby need not wait for it to expire."""
    done = db.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=from_ms(now - 1)).execution_options(synchronize_session=False))
    db.commit()
    return rows_changed(done) == 1


class LeaseKeeper:
    """Keeps trying to take the lease and, once it holds it, to renew it every ``renew_s``;
    ``on_acquired()`` runs when it starts holding, ``on_lost()`` when it stops (its renewal
    failed until ``ttl_s - margin_s`` after the last success). ``step()`` and ``check()`` are
    one renewal and one fence check, for tests with injected clocks; ``start()`` runs them on
    threads of their own (a renewal stuck in the database never delays the fence)."""

    def __init__(self, sessions: sessionmaker[Session], name: str, ttl_s: float,
                 renew_s: float, *, holder: str | None = None, margin_s: float | None = None,
                 clock: Callable[[], int] = now_ms,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_acquired: Callable[[], None] = lambda: None,
                 on_lost: Callable[[], None] = lambda: None):
        self.margin_s = renew_s if margin_s is None else margin_s
        if not 0 < self.margin_s < ttl_s or renew_s <= 0:
            raise ValueError("need 0 < margin_s < ttl_s and renew_s > 0")
        self.sessions, self.name, self.ttl_s, self.renew_s = sessions, name, ttl_s, renew_s
        self.holder = holder or holder_id()
        self.clock, self.monotonic = clock, monotonic
        self.on_acquired, self.on_lost = on_acquired, on_lost
        self._holding = False
        self._until = 0.0  # monotonic: acting stops here unless renewed
        self._lock = threading.RLock()  # one transition (and its callback) at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Event()  # no renewal under way (``give_way`` waits for it)
        self._idle.set()
        self._failed = False  # the last attempt failed on the database: try again soon

    def give_way(self, sessions: sessionmaker[Session]) -> None:
        """Make every transaction of ``sessions`` (the process's other work) wait to begin
        while a renewal is under way, at most one renewal period: a transaction already begun
        finishes, and the renewal is the next writer. A renewal is a few milliseconds."""
        @event.listens_for(sessions, "after_begin")
        def _after_renewal(_session: Session, _transaction: SessionTransaction,
                           _connection: Connection) -> None:
            if not self._idle.is_set() and threading.current_thread() not in self._threads:
                self._idle.wait(self.renew_s)

    def acting(self) -> bool:
        """Whether this process may act now (never blocks: the work asks before each step)."""
        return self._holding and self.monotonic() < self._until

    def step(self) -> bool:
        """Try once to take or renew the lease; then the fence check. Whether we act."""
        began = self.monotonic()
        self._idle.clear()
        try:
            with self.sessions() as db:
                ok = try_acquire(db, self.name, self.holder, self.clock(),
                                 int(self.ttl_s * 1000))
            if self._failed:
                log.warning("lease %s: the database answers again", self.name)
            self._failed = False
        except Exception as err:
            if not self._failed:  # once while it lasts, not every attempt
                if unavailable(err):
                    log.error("lease %s: could not renew, the database is unavailable: %s",
                              self.name, first_line(err))
                else:
                    log.exception("lease %s: could not renew", self.name)
            ok, self._failed = False, True
        finally:
            self._idle.set()
        until = began + self.ttl_s - self.margin_s
        with self._lock:
            if ok and self.monotonic() < until:
                self._until = until
                if not self._holding:
                    self._holding = True
                    log.warning("lease %s acquired by %s: acting until it is lost", self.name,
                                self.holder)
                    try:
                        self.on_acquired()
                    except Exception:  # could not start acting: stop, try at the next renewal
                        log.exception("lease %s: could not start acting", self.name)
                        self._until = 0.0
        self.check()
        return self.acting()

    def check(self) -> None:
        """The fence: stop acting once the deadline of the last renewal has passed."""
        with self._lock:
            if self._holding and self.monotonic() >= self._until:
                self._holding = False
                log.warning("lease %s lost by %s: not renewed in time, no longer acting",
                            self.name, self.holder)
                self._stop_acting()

    def _stop_acting(self) -> None:
        try:
            self.on_lost()
        except Exception:
            log.exception("lease %s: stopping to act failed", self.name)

    # --- threads -----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._threads = [threading.Thread(target=self._renew_loop, name=f"lease-{self.name}",
                                          daemon=True),
                         threading.Thread(target=self._fence_loop,
                                          name=f"lease-{self.name}-fence", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            # an attempt the database failed is tried again soon while we hold: the next
            # success counts from when it began, so a late one is worth less
            soon = self._failed and self._holding
            self._stop.wait(min(self.renew_s, 0.2) if soon else self.renew_s)

    def _fence_loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            left = self._until - self.monotonic() if self._holding else self.renew_s
            self._stop.wait(min(max(left, 0.01), 0.5))

    def stop(self) -> None:
        """Stop acting and give the lease up, so a standby takes over at once."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.ttl_s)
        self._threads = []
        with self._lock:
            if self._holding:
                self._holding = False
                log.warning("lease %s released by %s", self.name, self.holder)
                self._stop_acting()
        try:
            with self.sessions() as db:
                release(db, self.name, self.holder, self.clock())
        except Exception:
            log.exception("lease %s: could not release (it expires by itself)", self.name)
