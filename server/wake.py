"""Waking the dispatcher: the web commits a broadcast or command and the dispatcher acts on it
at once instead of at its next polling tick.

One mechanism for SQLite and PostgreSQL alike, as long as web and dispatcher run on the same
machine (they share the instance folder): the dispatcher listens on a UDP port on loopback and
writes that port to ``<instance>/dispatcher.wake``; after a commit that added or changed a
broadcast or a command, the web sends one empty datagram there. A datagram carries nothing but
"look now", so a lost one (or one from another local process) costs at most a tick: the
polling tick stays, as the fallback and for everything that falls due by the clock.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction, sessionmaker

from .files import write_atomic

log = logging.getLogger(__name__)
PORT_FILE = "dispatcher.wake"


def port_file(instance_path: str | os.PathLike[str]) -> Path:
    return Path(instance_path) / PORT_FILE


def send(instance_path: str | os.PathLike[str]) -> bool:
    """One wake-up datagram to the dispatcher of this instance; False when none listens."""
    try:
        port = int(port_file(instance_path).read_text(encoding="ascii").strip())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"", ("127.0.0.1", port))
        return True
    except (OSError, ValueError):
        return False


def install(maker: sessionmaker[Session], instance_path: str | os.PathLike[str]) -> None:
    """Wake the dispatcher after every commit of ``maker``'s sessions that queued a command,
    wrote a broadcast or marked a node's desired state for rebuilding."""
    from .models import Broadcast, Command, Node

    def wants(obj: object) -> bool:
        return isinstance(obj, (Broadcast, Command)) or \
            isinstance(obj, Node) and bool(obj.desired_dirty)

    @event.listens_for(maker, "after_flush")
    def _note(session: Session, _context: UOWTransaction) -> None:
        if not session.info.get("wake") and any(
                wants(obj) for obj in (*session.new, *session.dirty)):
            session.info["wake"] = True

    @event.listens_for(maker, "after_commit")
    def _wake(session: Session) -> None:
        if session.info.pop("wake", False):
            send(instance_path)

    @event.listens_for(maker, "after_rollback")
    def _forget(session: Session) -> None:
        session.info.pop("wake", None)


class Listener:
    """The dispatcher's side: calls ``on_wake`` (from its own thread) when a datagram comes;
    datagrams that arrive while ``on_wake`` runs lead to one more call, not one each."""

    def __init__(self, instance_path: str | os.PathLike[str], on_wake: Callable[[], None]):
        self.path = port_file(instance_path)
        self.on_wake = on_wake
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher-wake", daemon=True)

    def start(self) -> None:
        write_atomic(self.path, str(self.port), mode=0o644)  # the web reads it
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.sock.recv(64)
            except OSError:
                return
            if self._stopped.is_set():
                return
            self.sock.setblocking(False)
            try:
                while True:
                    self.sock.recv(64)  # every wake-up that queued meanwhile: one pass
            except OSError:
                pass
            self.sock.setblocking(True)
            try:
                self.on_wake()
            except Exception:
                log.exception("wake-up pass failed")

    def stop(self) -> None:
        self._stopped.set()
        try:
            if self.path.read_text(encoding="ascii").strip() == str(self.port):
                self.path.unlink()
        except (OSError, ValueError):
            pass
        with contextlib.suppress(OSError):
            self.sock.sendto(b"", ("127.0.0.1", self.port))  # unblocks recv
        self._thread.join(5)
        self.sock.close()
