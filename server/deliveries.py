"""A broadcast's delivery to one node: its states, their order, and every move between them.

This module alone assigns ``Delivery.status`` (and ``played_result``): the dispatcher, the
outbox, cancelling and the MQTT bridge call the transitions below, and the broadcast report
reads the states through ``summary``.
"""
from __future__ import annotations

import datetime as dt
from enum import StrEnum
from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from .models import Delivery, utcnow


class DeliveryStatus(StrEnum):
    PENDING = "pending"        # planned: its command is in the outbox, not yet published
    SENT = "sent"              # the broker has the command
    RECEIVED = "received"      # from here on: what the node acknowledged (PROTOCOL.md's acks)
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"          # also: never sent (held broadcast, command not sendable)
    REJECTED = "rejected"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    SKIPPED = "skipped"        # also: the broadcast was too late to send
    CANCELLED = "cancelled"    # the broadcast was cancelled before it was dispatched


# The order of the states that may still move: a delivery never moves back down this list.
ORDER = (DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.RECEIVED,
         DeliveryStatus.STARTED)
RANK: dict[str, int] = {status: n for n, status in enumerate(ORDER)}
# Final states: once there, a delivery never changes again (but for cancelling, below).
TERMINAL = frozenset({DeliveryStatus.FINISHED, DeliveryStatus.FAILED, DeliveryStatus.REJECTED,
                      DeliveryStatus.PREEMPTED, DeliveryStatus.STOPPED, DeliveryStatus.SKIPPED,
                      DeliveryStatus.CANCELLED})
# The states the broadcast report counts as failed.
FAILED = frozenset({DeliveryStatus.FAILED, DeliveryStatus.REJECTED, DeliveryStatus.SKIPPED,
                    DeliveryStatus.CANCELLED})
# A `played` event's results: completed is proof of play; these count as failed.
PLAYED_COMPLETED = "completed"
PLAYED_FAILED = ("failed", "skipped")


def planned(broadcast_id: int, node_id: str, command_id: str) -> Delivery:
    """A node's delivery of a dispatched broadcast: its command waits in the outbox."""
    return Delivery(broadcast_id=broadcast_id, node_id=node_id, command_id=command_id,
                    status=DeliveryStatus.PENDING)


def plan_all(db: Session, broadcast_id: int, commands: dict[str, str]) -> None:
    """``planned`` for many nodes at once (node id -> command id), in one statement: a ward's
    thousand deliveries are written before its one command goes out, so this is on the way
    to every speaker."""
    if commands:
        now = utcnow()
        table = cast(Table, Delivery.__table__)  # Core: no ORM bookkeeping per row
        db.execute(insert(table), [
            {"broadcast_id": broadcast_id, "node_id": node_id, "command_id": cmd_id,
             "status": DeliveryStatus.PENDING, "updated_at": now}
            for node_id, cmd_id in sorted(commands.items())])


def not_sent(broadcast_id: int, node_id: str, skipped: bool, reason: str | None) -> Delivery:
    """A node's delivery of a broadcast that is not sent at all (too late: skipped; held:
    failed), so the report names every node it would have reached, with the reason."""
    return Delivery(broadcast_id=broadcast_id, node_id=node_id, reason=reason,
                    status=DeliveryStatus.SKIPPED if skipped else DeliveryStatus.FAILED)


def command_published(db: Session, command_id: str) -> None:
    """The broker has the command: its pending deliveries are sent (one statement; an ack
    that came first has moved its delivery on already and is left as it is)."""
    db.execute(update(Delivery).where(Delivery.command_id == command_id,
                                      Delivery.status == DeliveryStatus.PENDING)
               .values(status=DeliveryStatus.SENT, updated_at=utcnow())
               .execution_options(synchronize_session="fetch"))


def command_failed(db: Session, command_id: str, reason: str) -> None:
    """The outbox gave up on the command: its deliveries still pending failed, with why."""
    for d in db.scalars(select(Delivery).where(Delivery.command_id == command_id)):
        if d.status == DeliveryStatus.PENDING:
            d.status, d.reason, d.updated_at = DeliveryStatus.FAILED, reason, utcnow()


def cancel(deliveries: Iterable[Delivery], now: dt.datetime) -> None:
    """A broadcast cancelled before it was dispatched: every delivery it has is cancelled."""
    for d in deliveries:
        d.status, d.updated_at = DeliveryStatus.CANCELLED, now


def ack_moves(current: str | None, status: str) -> bool:
    """Whether a node's ack ``status`` moves what stands at ``current`` (None: nothing heard
    yet) forward: never backward, and never from a final state. Node commands' acks follow the
    same order (server.outbox)."""
    if current is None:
        return True
    if current not in RANK:
        return False
    return status in TERMINAL or RANK.get(status, 0) > RANK[current]


def advance(d: Delivery, status: str, reason: str | None) -> bool:
    """A node's ack moves its delivery forward; a status never moves backward, a terminal one
    never changes. Returns whether it moved."""
    if not ack_moves(d.status, status):
        return False
    d.status, d.reason, d.updated_at = DeliveryStatus(status), reason, utcnow()
    return True


def played(d: Delivery, result: str, reason: str | None) -> None:
    """A node's `played` event: the result stands once it is completed (proof of play)."""
    if d.played_result == PLAYED_COMPLETED:
        return
    d.played_result = result
    if result != PLAYED_COMPLETED and d.reason is None:
        d.reason = reason
    d.updated_at = utcnow()


def summary(deliveries: Iterable[Delivery]) -> dict:
    """How many deliveries were sent, acknowledged, played and failed (the broadcast report)."""
    counts = {"total": 0, "sent": 0, "acked": 0, "played": 0, "failed": 0}
    for d in deliveries:
        counts["total"] += 1
        counts["sent"] += d.status != DeliveryStatus.PENDING
        counts["acked"] += d.status not in (DeliveryStatus.PENDING, DeliveryStatus.SENT)
        counts["played"] += d.played_result == PLAYED_COMPLETED
        counts["failed"] += d.status in FAILED or d.played_result in PLAYED_FAILED
    return counts
