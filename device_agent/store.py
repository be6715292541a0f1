"""The agent's memory on disk (one SQLite file in state_dir): accepted envelope ids until their
``exp`` (replay protection), the event outbox, commands not finished yet, slots already played
or reported, and small JSON values (desired state, trusted keys, volume, groups).

Everything survives a restart or a power cut; WAL keeps writes cheap on an SD card.

A full disk (or a failing card) must not lose what the node played: an event or a slot marked
done that cannot be written is kept in memory (read back with the rest, so it is still sent
and a slot is still not played twice) and written by ``retry_unstored`` once the disk takes it.
Only those survive no restart while the disk stays full.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, exp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
                                   payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (key TEXT PRIMARY KEY, envelope TEXT NOT NULL,
                                    received_at INTEGER NOT NULL, seq INTEGER NOT NULL,
                                    started INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS slot_done (slot_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
OUTBOX_ADD = "INSERT OR IGNORE INTO outbox (id, payload) VALUES (?, ?)"
SLOT_DONE = "INSERT OR REPLACE INTO slot_done (slot_id, at) VALUES (?, ?)"


class StateStore:
    """Thread-safe access to the agent's SQLite file; every call is its own transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._unstored_events: dict[str, str] = {}   # event id -> payload, oldest first
        self._unstored_slots: dict[str, int] = {}    # slot id -> when it was done

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- replay memory ----------------------------------------------------------------------
    def seen(self, msg_id: str) -> bool:
        return bool(self._exec("SELECT 1 FROM seen WHERE id = ?", (msg_id,)))

    def remember(self, msg_id: str, exp: int) -> None:
        self._exec("INSERT OR REPLACE INTO seen (id, exp) VALUES (?, ?)", (msg_id, exp))

    def forget_expired(self, now_ms: int) -> None:
        self._exec("DELETE FROM seen WHERE exp < ?", (now_ms,))

    def _write_or_keep(self, sql: str, args: tuple[Any, ...], keep: dict[Any, Any]) -> bool:
        """Run a write; when the disk refuses it, keep ``args`` (key, value) in ``keep`` and
        return False."""
        try:
            self._exec(sql, args)
            return True
        except sqlite3.OperationalError as err:  # SQLITE_FULL, SQLITE_IOERR: the disk
            if not keep:
                log.error("cannot write the state file (%s): keeping what the node did in "
                          "memory until the disk takes it", err)
            keep[args[0]] = args[1]
            return False

    @property
    def unstored(self) -> int:
        """How many events and done slots wait in memory for the disk."""
        return len(self._unstored_events) + len(self._unstored_slots)

    def retry_unstored(self) -> bool:
        """Write what waits in memory, oldest first; True when nothing waits any more."""
        if not self.unstored:
            return True
        try:
            for key, value in list(self._unstored_events.items()):
                self._exec(OUTBOX_ADD, (key, value))
                self._unstored_events.pop(key, None)
            for key, at in list(self._unstored_slots.items()):
                self._exec(SLOT_DONE, (key, at))
                self._unstored_slots.pop(key, None)
        except sqlite3.OperationalError:
            return False
        log.info("the state file takes writes again")
        return True

    # --- outbox -----------------------------------------------------------------------------
    def outbox_add(self, event_id: str, payload: str) -> None:
        if self._unstored_events or not self._write_or_keep(OUTBOX_ADD, (event_id, payload),
                                                            self._unstored_events):
            self._unstored_events[event_id] = payload  # after those waiting: order kept

    def outbox_remove(self, event_id: str) -> None:
        self._unstored_events.pop(event_id, None)
        self._exec("DELETE FROM outbox WHERE id = ?", (event_id,))

    def outbox(self) -> list[tuple[str, str]]:
        rows = [(r[0], r[1]) for r in self._exec("SELECT id, payload FROM outbox ORDER BY seq")]
        return rows + list(self._unstored_events.items())

    def outbox_size(self) -> int:
        count: int = self._exec("SELECT COUNT(*) FROM outbox")[0][0]
        return count + len(self._unstored_events)

    # --- commands accepted but not finished ---------------------------------------------------
    def pending_put(self, key: str, envelope: str, received_at: int, seq: int) -> None:
        self._exec("INSERT OR REPLACE INTO pending (key, envelope, received_at, seq, started) "
                   "VALUES (?, ?, ?, ?, 0)", (key, envelope, received_at, seq))

    def pending_started(self, key: str) -> None:
        self._exec("UPDATE pending SET started = 1 WHERE key = ?", (key,))

    def pending_remove(self, key: str) -> None:
        self._exec("DELETE FROM pending WHERE key = ?", (key,))

    def pending(self) -> list[tuple[str, str, int, int, bool]]:
        rows = self._exec("SELECT key, envelope, received_at, seq, started FROM pending "
                          "ORDER BY seq")
        return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    # --- desired slots already played or reported ---------------------------------------------
    def slot_done(self, slot_id: str, at: int) -> None:
        self._write_or_keep(SLOT_DONE, (slot_id, at), self._unstored_slots)

    def slots_done(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT slot_id FROM slot_done")} | \
            set(self._unstored_slots)

    def forget_slots_before(self, at: int) -> None:
        self._exec("DELETE FROM slot_done WHERE at < ?", (at,))

    # --- small JSON values ----------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        rows = self._exec("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def put(self, key: str, value: Any) -> None:
        self._exec("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                   (key, json.dumps(value, ensure_ascii=False)))
