"""The dispatcher's looks for what is not out yet (twice a second: commands to sign, to publish,
the outbox's health) read an index of the few rows they want, not every command ever kept: a
desired state per node per change stays for good, so a scan grows with the province's history.
SQLite without statistics chose a plain index on failed_at, NULL on nearly every row, for
``failed_at IS NULL``: the whole table (revision 0022 indexes it only where it is set). The
look for what to send again (once a second) likewise starts from the deliveries still at sent
and the commands not acked (revision 0024), not from every online node's deliveries or every
desired state."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from server import outbox


class _Connected:
    """A broker connection that is up (publish_pending looks only then); nothing is sent."""
    connected = True


def _plans(s, look) -> list[tuple[str, str]]:
    """(statement, SQLite's query plan) of each SELECT of commands that ``look(db)`` runs."""
    engine = s.app.extensions["db_engine"]
    seen: list[tuple[str, tuple]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "FROM commands" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with s.app.extensions["db_sessions"]() as db:
            look(db)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        return [(statement, " | ".join(row[3] for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, parameters))) for statement, parameters in seen]


@pytest.mark.sqlite  # the query plan is SQLite's
def test_the_outbox_finds_unsent_commands_without_reading_every_command_kept(make_app):
    now = int(time.time() * 1000)

    def look(db):
        outbox.sign_pending(db, lambda _db: pytest.fail("nothing to sign"), now)
        outbox.publish_pending(db, _Connected(), 1 << 20, lambda: now)  # type: ignore[arg-type]
        outbox.health(db)

    plans = _plans(make_app(), look)
    assert len(plans) >= 3, plans
    for statement, plan in plans:
        assert "SCAN commands" not in plan and "ix_commands_failed_at" not in plan, \
            (statement, plan)


@pytest.mark.sqlite  # the query plan is SQLite's
def test_the_look_for_commands_to_send_again_reads_what_is_unacked_not_the_history(make_app):
    now = int(time.time() * 1000)
    plans = _plans(make_app(), lambda db: outbox.resend_unreceived(
        db, _Connected(), lambda: now, 30_000))  # type: ignore[arg-type]
    joined = " || ".join(plan for _, plan in plans)
    assert "USING INDEX ix_deliveries_sent" in joined, plans  # a broadcast's unacked nodes
    assert "USING INDEX ix_commands_unacked" in joined, plans  # node commands unacked
    for statement, plan in plans:
        # never from every online node (all its deliveries, all its desired states) nor from
        # every command of no broadcast (each desired state ever sent)
        assert "ix_nodes_online" not in plan and "ix_commands_broadcast_id" not in plan \
            and "SCAN commands" not in plan, (statement, plan)
