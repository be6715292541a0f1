"""Rate limits counted in the database, so that every web process behind one address counts
the same attempts: with each process counting on its own (``memory://``), N processes behind a
round-robin proxy gave a password guesser N times the allowed attempts.

Flask-Limiter and its ``limits`` library keep doing the limiting (the moving-window strategy,
the 429s, the ``X-RateLimit-*`` headers); ``limits`` has storages for Redis, Memcached, MongoDB
and Valkey but none for SQL, so this is one more of its storages (registered by its scheme,
``loa-db://``) over the project's own database: one row per counted attempt in
``rate_limit_hits``, deleted once past its window. Only the moving window is supported.

Taking an entry is exact on both engines: PostgreSQL holds a transaction-level advisory lock
on the key while it counts and inserts; SQLite inserts first, which takes the database's one
write lock until the commit, then counts (its own row included) and takes the row back when
that is over the limit.
"""
from __future__ import annotations

import time
import zlib
from typing import Any

from limits.storage import MovingWindowSupport, Storage
from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .models import LimitHit, rows_changed

SCHEME = "loa-db"


class DatabaseStorage(Storage, MovingWindowSupport):
    """A ``limits`` storage in the project's database (``storage_options={"engine": ...}``)."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: Any) -> None:
        engine = options.get("engine")
        if not isinstance(engine, Engine):
            raise ValueError(f"{SCHEME}:// needs storage_options={{'engine': <Engine>}}")
        self.engine = engine
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    # --- the moving window -------------------------------------------------------------------

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Count ``amount`` attempts under ``key`` unless that makes more than ``limit`` in
        the last ``expiry`` seconds (then nothing is counted and the answer is False)."""
        if amount > limit:
            return False
        now = time.time()
        with Session(self.engine) as db:
            if self.engine.dialect.name == "postgresql":
                db.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                           {"k": zlib.crc32(key.encode("utf-8"))})
            # the first statement writes: on SQLite the write lock is ours from here
            db.execute(delete(LimitHit).where(LimitHit.expires_at < now))
            db.add_all(LimitHit(key=key, at=now, expires_at=now + expiry)
                       for _ in range(amount))
            db.flush()
            if self._count(db, key, now - expiry) > limit:
                db.rollback()
                return False
            db.commit()
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(when the oldest attempt in the window was, how many there are)."""
        now = time.time()
        with Session(self.engine) as db:
            oldest, count = db.execute(select(func.min(LimitHit.at), func.count()).where(
                LimitHit.key == key, LimitHit.at >= now - expiry)).one()
        return (oldest if oldest is not None else now), int(count)

    @staticmethod
    def _count(db: Session, key: str, since: float) -> int:
        return db.scalar(select(func.count()).select_from(LimitHit).where(
            LimitHit.key == key, LimitHit.at >= since)) or 0

    # --- the rest of a storage ---------------------------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        raise NotImplementedError(f"{SCHEME}:// counts moving windows only")

    def get(self, key: str) -> int:
        raise NotImplementedError(f"{SCHEME}:// counts moving windows only")

    def get_expiry(self, key: str) -> float:
        with Session(self.engine) as db:
            last = db.scalar(select(func.max(LimitHit.expires_at)).where(LimitHit.key == key))
        return last if last is not None else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with Session(self.engine) as db, db.begin():
            return rows_changed(db.execute(delete(LimitHit)))

    def clear(self, key: str) -> None:
        with Session(self.engine) as db, db.begin():
            db.execute(delete(LimitHit).where(LimitHit.key == key))
