"""A broadcast's delivery to one node: its states, their order, and every move between them.

This module alone assigns ``Delivery.status`` (and ``played_result``): the dispatcher, the
outbox, cancelling and the MQTT bridge call the transitions below, and the broadcast report
reads the states through ``summary``. Likewise for a series' occurrences on each node
(``SlotDelivery.status``, ``SlotState``): the dispatcher records what desired states carry,
the bridge what nodes report, and ``slot_state`` is what staff see.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import (DateTime, Select, Table, bindparam, delete, exists, insert, literal,
                        select, update)
from sqlalchemy.orm import Session

from device_agent.protocol import AckStatus, PlayResult

from .models import Delivery, SlotDelivery, utcnow


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


class HoldReason(StrEnum):
    """Why the dispatcher sent nothing of a broadcast (``Broadcast.reason``, and the reason of
    each delivery it would have had): held, it cannot be sent; skipped, too late."""
    APPROVAL_MISSING = "approval_missing"  # no approval of exactly its media (or revision)
    APPROVAL_REVOKED = "approval_revoked"  # its bulletin (a programme's item) was archived
    MEDIA_MISSING = "media_missing"        # the approved audio file is gone
    LATE = "late"                          # skipped: a timed one, too far past its start
    EXPIRED = "expired"                    # skipped: an immediate one, past the command ttl
    DISPATCH_FAILED = "dispatch_failed"    # held: dispatching it raised (logged)


class UnsentReason(StrEnum):
    """Why the outbox gave up on a command (``Command.reason``, and its pending deliveries')."""
    EXPIRED_UNSENT = "expired_unsent"      # its ttl passed before it was signed or published
    UNSENDABLE = "unsendable"              # it could not be signed, or the broker refused it


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
# A `played` event's results that count as failed (completed is proof of play).
PLAYED_FAILED = (PlayResult.FAILED, PlayResult.SKIPPED)


def planned(broadcast_id: int, node_id: str, command_id: str) -> Delivery:
    """A node's delivery of a dispatched broadcast: its command waits in the outbox."""
    return Delivery(broadcast_id=broadcast_id, node_id=node_id, command_id=command_id,
                    status=DeliveryStatus.PENDING)


def plan_all(db: Session, broadcast_id: int, commands: dict[str, str]) -> None:
    """``planned`` for many nodes at once (node id -> command id), in one statement (nodes
    named one by one; a group's nodes go through ``plan_selected``)."""
    if commands:
        now = utcnow()
        table = cast(Table, Delivery.__table__)  # Core: no ORM bookkeeping per row
        db.execute(insert(table), [
            {"broadcast_id": broadcast_id, "node_id": node_id, "command_id": cmd_id,
             "status": DeliveryStatus.PENDING, "updated_at": now}
            for node_id, cmd_id in sorted(commands.items())])


def plan_selected(db: Session, broadcast_id: int, command_id: str,
                  node_ids: Select[str]) -> None:
    """``planned`` for every node ``node_ids`` selects that has no delivery of the broadcast
    yet, with the one command that reaches them all (a group's), written by the database
    itself in one INSERT ... SELECT. A province's 10,000 deliveries are written before its
    command goes out, so this is on the way to every speaker: as rows sent from Python (the
    driver's parameters for each) it took 0.1-0.3 s of an emergency's first second."""
    table = cast(Table, Delivery.__table__)
    picked = node_ids.subquery()
    rows = select(literal(broadcast_id), picked.c[0], literal(command_id),
                  literal(DeliveryStatus.PENDING.value), literal(utcnow(), DateTime)).where(
        ~exists().where(table.c.broadcast_id == broadcast_id,
                        table.c.node_id == picked.c[0])).order_by(picked.c[0])
    db.execute(insert(table).from_select(
        ["broadcast_id", "node_id", "command_id", "status", "updated_at"], rows))


def not_sent(broadcast_id: int, node_id: str, skipped: bool, reason: HoldReason) -> Delivery:
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
               # the outbox's session holds commands, not deliveries: "fetch" read back a
               # province's 10,000 ids to match them (110-330 ms against 45, inside the write
               # transaction the bridge waits for, while the emergency's acks arrive)
               .execution_options(synchronize_session=False))


def command_failed(db: Session, command_id: str, reason: UnsentReason) -> None:
    """The outbox gave up on the command: its deliveries still pending failed, with why."""
    for d in db.scalars(select(Delivery).where(Delivery.command_id == command_id)):
        if d.status == DeliveryStatus.PENDING:
            d.status, d.reason, d.updated_at = DeliveryStatus.FAILED, reason, utcnow()


def cancel(deliveries: Iterable[Delivery], now: dt.datetime) -> None:
    """A broadcast cancelled before it was dispatched: every delivery it has is cancelled."""
    for d in deliveries:
        d.status, d.updated_at = DeliveryStatus.CANCELLED, now


@dataclass(slots=True)
class DeliveryRow:
    """A delivery as a batch of node messages reads and moves it: the row's values, not an ORM
    object. A province's acks arrive together, and the ORM's bookkeeping of 10,000 loaded
    and changed objects was a third of the bridge's time (docs/benchmarks.md). The moves
    below take either; ``write_rows`` stores the rows that moved."""

    id: int
    node_id: str
    command_id: str | None
    status: str
    reason: str | None
    played_result: str | None
    updated_at: dt.datetime | None
    read: tuple[str | None, ...] = ()  # (status, reason, played_result) as read

    def moved(self) -> bool:
        return (self.status, self.reason, self.played_result) != self.read


def read_rows(db: Session, broadcast_id: int, node_ids: Iterable[str]) -> dict[str, DeliveryRow]:
    """The broadcast's deliveries to these nodes (a batch's: a few hundred), by node."""
    table = cast(Table, Delivery.__table__)
    c = table.c
    rows = {}
    for row in db.execute(select(c.id, c.node_id, c.command_id, c.status, c.reason,
                                 c.played_result, c.updated_at).where(
            c.broadcast_id == broadcast_id, c.node_id.in_(list(node_ids)))):
        rows[row.node_id] = DeliveryRow(*row, read=(row.status, row.reason, row.played_result))
    return rows


def write_rows(db: Session, rows: Iterable[DeliveryRow]) -> None:
    """Store the rows that moved, in one statement."""
    table = cast(Table, Delivery.__table__)
    moved = [{"row_id": r.id, "new_status": r.status, "new_reason": r.reason,
              "new_played": r.played_result, "new_at": r.updated_at} for r in rows if r.moved()]
    if moved:
        db.execute(update(table).where(table.c.id == bindparam("row_id")).values(
            status=bindparam("new_status"), reason=bindparam("new_reason"),
            played_result=bindparam("new_played"), updated_at=bindparam("new_at")), moved)


def ack_moves(current: str | None, status: str) -> bool:
    """Whether a node's ack ``status`` moves what stands at ``current`` (None: nothing heard
    yet) forward: never backward, and never from a final state. Node commands' acks follow the
    same order (server.outbox)."""
    if current is None:
        return True
    if current not in RANK:
        return False
    return status in TERMINAL or RANK.get(status, 0) > RANK[current]


def advance(d: Delivery | DeliveryRow, status: AckStatus, reason: str | None) -> bool:
    """A node's ack moves its delivery forward; a status never moves backward, a terminal one
    never changes. Returns whether it moved."""
    if not ack_moves(d.status, status):
        return False
    d.status, d.reason, d.updated_at = DeliveryStatus(status), reason, utcnow()
    return True


def played(d: Delivery | DeliveryRow, result: PlayResult, reason: str | None) -> None:
    """A node's `played` event: the result stands once it is completed (proof of play)."""
    if d.played_result == PlayResult.COMPLETED:
        return
    d.played_result = result
    if result != PlayResult.COMPLETED and d.reason is None:
        d.reason = reason
    d.updated_at = utcnow()


def summary(deliveries: Iterable[Delivery]) -> dict[str, int]:
    """How many deliveries were sent, acknowledged, played and failed (the broadcast report)."""
    counts = {"total": 0, "sent": 0, "acked": 0, "played": 0, "failed": 0}
    for d in deliveries:
        counts["total"] += 1
        counts["sent"] += d.status != DeliveryStatus.PENDING
        counts["acked"] += d.status not in (DeliveryStatus.PENDING, DeliveryStatus.SENT)
        counts["played"] += d.played_result == PlayResult.COMPLETED
        counts["failed"] += d.status in FAILED or d.played_result in PLAYED_FAILED
    return counts


# --- a series' occurrences (slots) on each node ---------------------------------------------------

class SlotState(StrEnum):
    """How far one node got with one occurrence of a series (a row of ``SlotDelivery``)."""
    SCHEDULED = "scheduled"    # planned for the node; no desired state it applied carries it yet
    DELIVERED = "delivered"    # the node applied a desired version that carries it, its media too
    READY = "ready"            # and the node said that media is verified in its cache
    # from here on: outcomes, as the node's `played` event (or the report, for missed) says
    PLAYED = "played"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    FAILED = "failed"
    SKIPPED = "skipped"        # quiet hours, late
    CANCELLED = "cancelled"
    MISSED = "missed"          # no report after its end and the grace (never stored: on read)


# The order of the states that may still move: a slot never moves back down this list.
SLOT_ORDER = (SlotState.SCHEDULED, SlotState.DELIVERED, SlotState.READY)
SLOT_RANK: dict[str, int] = {state: n for n, state in enumerate(SLOT_ORDER)}
SLOT_OUTCOMES = frozenset(SlotState) - frozenset(SLOT_ORDER)
# A `played` event's result as the slot's outcome.
PLAYED_STATE = {PlayResult.COMPLETED: SlotState.PLAYED, PlayResult.PREEMPTED: SlotState.PREEMPTED,
                PlayResult.STOPPED: SlotState.STOPPED, PlayResult.FAILED: SlotState.FAILED,
                PlayResult.SKIPPED: SlotState.SKIPPED}


# What the airplay report (server/reports.py) judges of a planned item against what its node
# reported; declared here, beside the slot states they become (``slot_state``).
class AirStatus(StrEnum):
    AIRED = "aired"          # played to its end, every repetition
    PARTIAL = "partial"      # played, but cut (preempted, stopped) or shorter than its media
    MISSED = "missed"        # not played: the reason says why
    PENDING = "pending"      # not reported yet, and its end (plus the grace) not yet past


class MissReason(StrEnum):
    OFFLINE = "offline"
    MEDIA_MISSING = "media_missing"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    FAILED = "failed"
    QUIET_HOURS = "quiet_hours"
    LATE = "late"
    CLOCK_UNSYNCED = "clock_unsynced"
    NO_REPORT = "no_report"


# The airplay report's reason for an item it judged as an outcome.
REPORT_REASON_STATE: dict[str, SlotState] = {
    MissReason.PREEMPTED: SlotState.PREEMPTED, MissReason.STOPPED: SlotState.STOPPED,
    MissReason.CANCELLED: SlotState.CANCELLED, MissReason.QUIET_HOURS: SlotState.SKIPPED,
    MissReason.LATE: SlotState.SKIPPED, MissReason.NO_REPORT: SlotState.MISSED,
    MissReason.OFFLINE: SlotState.MISSED}


@dataclass(frozen=True)
class Carried:
    """A slot as one node's new desired state carries it."""

    slot_id: str
    broadcast_id: int
    start_at: dt.datetime   # naive UTC, as stored
    sha256: str


def slot_moves(current: str, new: SlotState) -> bool:
    """Whether a slot at ``current`` may move to ``new``: forward only, never from an
    outcome."""
    if current not in SLOT_RANK:
        return False
    return new in SLOT_OUTCOMES or SLOT_RANK[new] > SLOT_RANK[current]


@dataclass(slots=True)
class SlotRow:
    """A node's delivery of a slot as a batch of node messages reads and moves it: the row's
    values, not an ORM object (as DeliveryRow, and for the same reason: a province's nodes
    apply a desired state, fetch its media and play its slot together, and the ORM's loading
    and flushing of 10,000 objects was about a third of each of those bursts). The slot moves
    below take either; ``write_slot_rows`` stores the rows that moved."""

    id: int
    node_id: str
    slot_id: str
    sha256: str
    version: int
    status: str
    reason: str | None
    updated_at: dt.datetime | None
    read: tuple[str | None, ...] = ()  # (status, reason) as read

    def moved(self) -> bool:
        return (self.status, self.reason) != self.read


def read_slot_rows(db: Session, known: dict[int, SlotRow], *where: Any) -> list[SlotRow]:
    """The slot deliveries that match ``where``. A row read before in the batch (``known``,
    by id; filled here) is handed out as it stands now, moves included, as the ORM hands out
    the objects it holds: one row, one object, however it is found."""
    table = cast(Table, SlotDelivery.__table__)
    c = table.c
    rows = []
    for found in db.execute(select(c.id, c.node_id, c.slot_id, c.sha256, c.version, c.status,
                                   c.reason, c.updated_at).where(*where)):
        row = known.get(found.id)
        if row is None:
            row = known[found.id] = SlotRow(*found, read=(found.status, found.reason))
        rows.append(row)
    return rows


def write_slot_rows(db: Session, rows: Iterable[SlotRow]) -> None:
    """Store the slot rows that moved, in one statement."""
    table = cast(Table, SlotDelivery.__table__)
    moved = [{"row_id": r.id, "new_status": r.status, "new_reason": r.reason,
              "new_at": r.updated_at} for r in rows if r.moved()]
    if moved:
        db.execute(update(table).where(table.c.id == bindparam("row_id")).values(
            status=bindparam("new_status"), reason=bindparam("new_reason"),
            updated_at=bindparam("new_at")), moved)


def _move(row: SlotDelivery | SlotRow, new: SlotState, reason: str | None = None) -> bool:
    if not slot_moves(row.status, new):
        return False
    row.status, row.reason, row.updated_at = new, reason, utcnow()
    return True


def slots_sent(db: Session, versions: dict[str, int], carried: dict[str, list[Carried]],
               window_from: dt.datetime) -> None:
    """The dispatcher built new desired states (node id -> its new version) carrying these
    slots (node id -> slots). A slot new to a node is scheduled with that version; one sent
    before with the same media keeps its version and state; one whose media changed starts
    over with this version (the node must fetch the other media). A slot from ``window_from``
    (naive UTC) on that a node's new state no longer carries is forgotten unless it has an
    outcome: the node drops it too, and sending it again later starts it over.
    A few statements for a whole ward: the rows are read once, the new ones inserted at once."""
    if not versions:
        return
    table = cast(Table, SlotDelivery.__table__)
    existing: dict[tuple[str, str], tuple[int, str, str]] = {}
    ids = sorted(versions)
    for n in range(0, len(ids), 500):
        for row_id, node_id, slot_id, sha, status in db.execute(
                select(table.c.id, table.c.node_id, table.c.slot_id, table.c.sha256,
                       table.c.status).where(table.c.node_id.in_(ids[n:n + 500]),
                                             table.c.start_at >= window_from)):
            existing[(node_id, slot_id)] = (row_id, sha, status)
    now = utcnow()
    new, changed, keep = [], [], set()
    for node_id, slots in carried.items():
        for slot in slots:
            key = (node_id, slot.slot_id)
            keep.add(key)
            found = existing.get(key)
            if found is None:
                new.append({"node_id": node_id, "broadcast_id": slot.broadcast_id,
                            "slot_id": slot.slot_id, "start_at": slot.start_at,
                            "sha256": slot.sha256, "version": versions[node_id],
                            "status": SlotState.SCHEDULED, "reason": None, "updated_at": now})
            elif found[1] != slot.sha256 and found[2] in SLOT_RANK:
                changed.append({"row_id": found[0], "new_sha": slot.sha256,
                                "new_version": versions[node_id]})
    gone = [row_id for key, (row_id, _sha, status) in existing.items()
            if key not in keep and status in SLOT_RANK]
    if new:
        db.execute(insert(table), new)
    if changed:
        db.execute(update(table).where(table.c.id == bindparam("row_id")).values(
            sha256=bindparam("new_sha"), version=bindparam("new_version"),
            status=SlotState.SCHEDULED, reason=None, updated_at=now), changed)
    for n in range(0, len(gone), 500):
        db.execute(delete(table).where(table.c.id.in_(gone[n:n + 500])))


def slots_applied(rows: Iterable[SlotDelivery | SlotRow], version: int) -> None:
    """The node applied desired ``version``: its slots first sent in it or before are
    delivered."""
    for row in rows:
        if row.version <= version:
            _move(row, SlotState.DELIVERED)


def slot_media_ready(rows: Iterable[SlotDelivery | SlotRow], sha256: str) -> None:
    """The node verified ``sha256`` in its cache: its delivered slots airing it are ready (a
    slot not delivered yet waits for the word that comes after it is)."""
    for row in rows:
        if row.sha256 == sha256 and row.status == SlotState.DELIVERED:
            _move(row, SlotState.READY)


def slot_played(row: SlotDelivery | SlotRow, result: PlayResult, reason: str | None) -> None:
    """The node's `played` event for the slot: its outcome (the first one stands)."""
    _move(row, PLAYED_STATE[result], reason)


def slot_state(stored: str | None, air_status: str, air_reason: str | None
               ) -> tuple[SlotState, str | None]:
    """A node's state of a slot as staff see it: the airplay report's judgement once it has
    one (so the two never disagree: missed with no report after the end and the grace, the
    outcome of what the node reported), else what is stored (none yet: scheduled).
    ``air_status``, ``air_reason``: AirStatus and MissReason values."""
    if air_status == AirStatus.PENDING:
        if stored in SLOT_RANK:
            return SlotState(stored), None
        return SlotState.SCHEDULED, None
    if air_status == AirStatus.AIRED or (air_status == AirStatus.PARTIAL and air_reason is None):
        return SlotState.PLAYED, None
    return REPORT_REASON_STATE.get(air_reason or "", SlotState.FAILED), air_reason


def slot_counts(states: Iterable[str]) -> dict[str, int]:
    """How many nodes stand at each state (every state named, zeros too)."""
    counts = dict.fromkeys((s.value for s in SlotState), 0)
    for state in states:
        counts[state] += 1
    return counts
