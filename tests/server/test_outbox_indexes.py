"""The dispatcher's looks for what is not out yet (twice a second: commands to sign, to publish,
the outbox's health) read an index of the few rows they want, not every command ever kept: a
desired state per node per change stays for good, so a scan grows with the province's history.
SQLite without statistics chose a plain index on failed_at, NULL on nearly every row, for
``failed_at IS NULL``: the whole table (revision 0022 indexes it only where it is set)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from server import outbox


class _Connected:
    """A broker connection that is up (publish_pending looks only then); nothing is sent."""
    connected = True


@pytest.mark.sqlite  # the query plan is SQLite's
def test_the_outbox_finds_unsent_commands_without_reading_every_command_kept(make_app):
    s = make_app()
    engine = s.app.extensions["db_engine"]
    seen: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM commands" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with s.app.extensions["db_sessions"]() as db:
            now = int(time.time() * 1000)
            outbox.sign_pending(db, lambda _db: pytest.fail("nothing to sign"), now)
            outbox.publish_pending(db, _Connected(), 1 << 20, lambda: now)  # type: ignore[arg-type]
            outbox.health(db)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) >= 3, seen
    with engine.connect() as conn:
        for statement, parameters in seen:
            plan = " | ".join(row[3] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters))
            assert "SCAN commands" not in plan and "ix_commands_failed_at" not in plan, \
                (statement, plan)
