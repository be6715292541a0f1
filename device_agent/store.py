"""The agent's memory on disk (one SQLite file in state_dir): accepted envelope ids until their
``exp`` (replay protection), the event outbox, commands not finished yet, slots already played
or reported, and small JSON values (desired state, trusted keys, volume, groups).

Everything survives a restart or a power cut; WAL keeps writes cheap on an SD card.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

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

    # --- outbox -----------------------------------------------------------------------------
    def outbox_add(self, event_id: str, payload: str) -> None:
        self._exec("INSERT OR IGNORE INTO outbox (id, payload) VALUES (?, ?)", (event_id, payload))

    def outbox_remove(self, event_id: str) -> None:
        self._exec("DELETE FROM outbox WHERE id = ?", (event_id,))

    def outbox(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._exec("SELECT id, payload FROM outbox ORDER BY seq")]

    def outbox_size(self) -> int:
        count: int = self._exec("SELECT COUNT(*) FROM outbox")[0][0]
        return count

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
        self._exec("INSERT OR REPLACE INTO slot_done (slot_id, at) VALUES (?, ?)", (slot_id, at))

    def slots_done(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT slot_id FROM slot_done")}

    def forget_slots_before(self, at: int) -> None:
        self._exec("DELETE FROM slot_done WHERE at < ?", (at,))

    # --- small JSON values ----------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        rows = self._exec("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def put(self, key: str, value: Any) -> None:
        self._exec("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                   (key, json.dumps(value, ensure_ascii=False)))
