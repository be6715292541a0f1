"""The airplay report (proof of play): for every node and every planned slot or command in a
period, what was planned against what the node said it aired.

Built from what nodes reported (`played` events as PlayLog rows, and their acks as they stand on
the deliveries), never from what the server believes it sent: a planned item nobody reported on
is `missed` with reason `no_report` once its end and a grace period (settings.airplay_grace_s)
have passed, `pending` before.

``airplay`` is the pure part (rows in, report out, tested directly); ``planned_items`` and
``play_rows`` read those rows from the database; ``build`` does both. Series slots come from
server.schedule.slots (occurrence overrides, cancelled occurrences, exdates applied there).
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from device_agent.protocol import NodeReason, PlayResult
from schedules.slots import Slot

from . import schedule
from .broadcasts import BroadcastStatus
# the report's judgements, declared beside the slot states they become (server/deliveries.py)
from .deliveries import AirStatus as AirStatus
from .deliveries import MissReason as MissReason
from .deliveries import DeliveryStatus, SlotState, slot_counts, slot_state
from .models import Area, Broadcast, Delivery, Media, Node, PlayLog, SlotDelivery


# A node's (or the server's) own reason, as the report names it; anything else is `failed`.
REASONS: dict[str, MissReason] = {
    NodeReason.QUIET_HOURS: MissReason.QUIET_HOURS, NodeReason.LATE: MissReason.LATE,
    NodeReason.EXPIRED: MissReason.LATE,  # its time (the command's exp) passed before it started
    MissReason.CLOCK_UNSYNCED: MissReason.CLOCK_UNSYNCED,
    NodeReason.MEDIA_UNAVAILABLE: MissReason.MEDIA_MISSING,
    MissReason.MEDIA_MISSING: MissReason.MEDIA_MISSING,
    MissReason.PREEMPTED: MissReason.PREEMPTED, MissReason.STOPPED: MissReason.STOPPED,
    MissReason.CANCELLED: MissReason.CANCELLED,
    NodeReason.MEDIA_MISMATCH: MissReason.FAILED, NodeReason.SHA256_MISMATCH: MissReason.FAILED,
}
# Results and ack statuses that say on their own why nothing (more) aired.
# (a play's result or an ack's status, the same words; cancelled: the server's, its delivery)
RESULTS: dict[str, MissReason] = {
    PlayResult.PREEMPTED: MissReason.PREEMPTED, PlayResult.STOPPED: MissReason.STOPPED,
    DeliveryStatus.CANCELLED: MissReason.CANCELLED}
# A node's acks that end a command without a play.
ACK_FINAL = frozenset({DeliveryStatus.REJECTED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED,
                       DeliveryStatus.PREEMPTED, DeliveryStatus.STOPPED,
                       DeliveryStatus.CANCELLED})
# Acks that say the node holds the command (so being offline does not explain a miss).
ACK_HELD = frozenset({DeliveryStatus.RECEIVED, DeliveryStatus.STARTED, DeliveryStatus.FINISHED})
# A completed play this much shorter than its media (or 5 % of it, if more) is partial.
SHORT_TOLERANCE_MS = 1000


class PlannedItem(NamedTuple):
    """One thing a node should have aired: a series slot (slot_id) or its part of a one-off
    broadcast (cmd_id, None when the command was never made: held, skipped, cancelled). A
    named tuple, as Line: a series on 10,000 nodes makes tens of thousands of each a page, and
    a frozen dataclass costs several times a tuple to make (docs/benchmarks.md)."""

    node_id: str
    area_id: int                  # the node's cluster
    broadcast_id: int
    scheduled_at: dt.datetime     # aware UTC
    end_at: dt.datetime           # scheduled_at + the media's length x repeat
    media_ms: int = 0             # one repetition; 0: unknown
    repeat: int = 1
    slot_id: str | None = None
    cmd_id: str | None = None
    server_reason: str | None = None   # the server's own: the delivery held/skipped/cancelled


@dataclass(frozen=True)
class Play:
    """A `played` event as stored (one per repetition)."""

    node_id: str
    result: str
    cmd_id: str | None = None
    slot_id: str | None = None
    started_at_ms: int | None = None
    ended_at_ms: int | None = None
    reason: str | None = None
    media_ms: int | None = None   # the length of the media it says it played; None: unknown


@dataclass(frozen=True)
class Ack:
    """Where a node's acks left its command (a delivery's status and reason)."""

    node_id: str
    cmd_id: str
    status: str
    reason: str | None = None


@dataclass(frozen=True)
class Presence:
    """What the server knows of a node's connection: now, and when it was last heard from."""

    online: bool
    last_seen: dt.datetime | None  # aware UTC


class Line(NamedTuple):
    item: PlannedItem
    status: AirStatus
    reason: MissReason | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None


def _zero() -> dict[str, int]:
    return {"planned": 0, **{s.value: 0 for s in AirStatus}}


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    by_area: dict[int, dict[str, int]] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=_zero)


def reason_for(result: str, reason: str | None) -> MissReason:
    """The report's reason for a node's result or ack status and its own reason."""
    if reason in REASONS:
        return REASONS[reason]
    return RESULTS.get(result, MissReason.FAILED)


def _at(ms: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms is not None else None


def _played(p: Play) -> bool:
    """The play actually ran (a skipped or failed one reports no end)."""
    return p.started_at_ms is not None and p.ended_at_ms is not None \
        and p.ended_at_ms >= p.started_at_ms


def _short(item: PlannedItem, p: Play) -> bool:
    """Shorter than the media it played (the item's when the play names none it knows): a
    series' slot may have aired an older revision of its programme, or an occurrence's own
    bulletin."""
    media_ms = p.media_ms or item.media_ms
    if not media_ms or not _played(p):
        return False
    assert p.started_at_ms is not None and p.ended_at_ms is not None
    slack = max(SHORT_TOLERANCE_MS, media_ms // 20)
    return p.ended_at_ms - p.started_at_ms < media_ms - slack


def _offline(item: PlannedItem, ack: Ack | None, presence: Presence | None) -> bool:
    """A one-off command the node never acknowledged, while it has not been heard from since
    before the item was due: it cannot have played. A series slot is never `offline`: the node
    plays its desired schedule from its cache without a connection, and reports later."""
    if item.cmd_id is None or presence is None or presence.online:
        return False
    if ack is not None and ack.status in ACK_HELD:
        return False
    return presence.last_seen is None or presence.last_seen < item.scheduled_at


def judge(item: PlannedItem, plays: list[Play], ack: Ack | None, presence: Presence | None,
          now: dt.datetime, grace: dt.timedelta) -> Line:
    """One planned item against what its node reported."""
    if not plays:  # most of a fleet's items (pending, missed): no play to read
        return _unreported(item, ack, presence, now, grace)
    ran = [p for p in plays if _played(p)]
    started = _at(min((p.started_at_ms for p in ran if p.started_at_ms is not None),
                      default=None))
    ended = _at(max((p.ended_at_ms for p in ran if p.ended_at_ms is not None), default=None))

    def line(status: AirStatus, reason: MissReason | None = None) -> Line:
        return Line(item, status, reason, started, ended)

    completed = [p for p in ran if p.result == PlayResult.COMPLETED]
    cut = [p for p in ran if p.result != PlayResult.COMPLETED]
    ack_cut = ack is not None and ack.status in (DeliveryStatus.PREEMPTED,
                                                 DeliveryStatus.STOPPED)
    if completed or cut:
        if cut:
            return line(AirStatus.PARTIAL, reason_for(cut[-1].result, cut[-1].reason))
        if ack_cut:
            assert ack is not None
            return line(AirStatus.PARTIAL, reason_for(ack.status, ack.reason))
        if len(completed) < max(item.repeat, 1) or any(_short(item, p) for p in completed):
            return line(AirStatus.PARTIAL)
        return line(AirStatus.AIRED)
    # reported, but never ran: skipped, failed, preempted or stopped while waiting
    last = plays[-1]
    return line(AirStatus.MISSED, reason_for(last.result, last.reason))


def _unreported(item: PlannedItem, ack: Ack | None, presence: Presence | None,
                now: dt.datetime, grace: dt.timedelta) -> Line:
    """An item its node reported no play of: what the server or the node's ack says, else
    pending until its end and the grace, then missed."""
    if item.server_reason is not None:
        return Line(item, AirStatus.MISSED, reason_for(item.server_reason, item.server_reason))
    if ack is not None and ack.status in ACK_FINAL:
        return Line(item, AirStatus.MISSED, reason_for(ack.status, ack.reason))
    if now < item.end_at + grace:
        return Line(item, AirStatus.PENDING)
    if _offline(item, ack, presence):
        return Line(item, AirStatus.MISSED, MissReason.OFFLINE)
    return Line(item, AirStatus.MISSED, MissReason.NO_REPORT)


def airplay(items: Iterable[PlannedItem], plays: Iterable[Play], acks: Iterable[Ack], *,
            now: dt.datetime, grace: dt.timedelta,
            presence: dict[str, Presence] | None = None) -> Report:
    """The report: each planned item judged against the plays and acks of its node (matched by
    command id for a one-off, by slot id for a series), and the totals per area and overall."""
    by_cmd: dict[tuple[str, str], list[Play]] = {}
    by_slot: dict[tuple[str, str], list[Play]] = {}
    for p in sorted(plays, key=lambda p: (p.started_at_ms or 0)):
        if p.cmd_id:
            by_cmd.setdefault((p.node_id, p.cmd_id), []).append(p)
        elif p.slot_id:
            by_slot.setdefault((p.node_id, p.slot_id), []).append(p)
    ack_of = {(a.node_id, a.cmd_id): a for a in acks}
    report = Report()
    for item in sorted(items, key=lambda i: (i.scheduled_at, i.node_id, i.broadcast_id,
                                             i.slot_id or i.cmd_id or "")):
        if item.cmd_id is not None:
            key = (item.node_id, item.cmd_id)
            got, ack = by_cmd.get(key, []), ack_of.get(key)
        else:
            got, ack = by_slot.get((item.node_id, item.slot_id or ""), []), None
        found = judge(item, got, ack, (presence or {}).get(item.node_id), now, grace)
        report.lines.append(found)
        if item.area_id not in report.by_area:
            report.by_area[item.area_id] = _zero()
        for counts in (report.by_area[item.area_id], report.total):
            counts["planned"] += 1
            counts[found.status.value] += 1
    return report


# --- the rows, from the database ---------------------------------------------------------------

def _media_ms(db: Session, bc: Broadcast, cache: dict[str, int]) -> int:
    return _sha_ms(db, bc.media_sha256, cache)


def _sha_ms(db: Session, sha: str | None, cache: dict[str, int]) -> int:
    """The stored media's length in ms (0: unknown)."""
    if not sha:
        return 0
    if sha not in cache:
        media = db.get(Media, sha)
        cache[sha] = media.duration_ms if media else 0
    return cache[sha]


def _one_offs(db: Session, nodes: Mapping[str, NodeFacts], start: dt.datetime,
              end: dt.datetime, media: dict[str, int]) -> list[PlannedItem]:
    """Every node's delivery of a one-off broadcast due in [start, end) (whether or not the node
    was online); one cancelled before it was dispatched has no delivery and plans nothing.
    The deliveries are read by the nodes' clusters (a bind parameter per cluster, not one per
    node: 10,000 node ids were 10,000 parameters, and SQLite refuses a statement of more than
    32,766), then kept for ``nodes`` only."""
    when = func.coalesce(Broadcast.start_at, Broadcast.dispatched_at, Broadcast.due_at)
    clusters = {n.cluster_id for n in nodes.values()}
    # the deliveries' columns, not Delivery objects (a province's broadcast is 10,000 of them,
    # read again at every alerts pass), and each broadcast once
    rows = db.execute(select(Delivery.node_id, Delivery.command_id, Delivery.status,
                             Delivery.reason, Delivery.broadcast_id).join(Broadcast).where(
        Broadcast.recurrence.is_(None), when >= schedule.naive(start),
        when < schedule.naive(end), Delivery.node_id.in_(
            select(Node.id).where(Node.cluster_id.in_(clusters))))).all()
    broadcasts = {bc.id: bc for bc in db.scalars(select(Broadcast).where(
        Broadcast.id.in_({d.broadcast_id for d in rows})))}
    out = []
    timing: dict[int, tuple[dt.datetime, int, dt.datetime]] = {}  # once per broadcast, not node
    for d in rows:
        if d.node_id not in nodes:
            continue
        bc = broadcasts[d.broadcast_id]
        if bc.id not in timing:
            at = schedule.aware(bc.start_at or bc.dispatched_at or bc.due_at)
            ms = _media_ms(db, bc, media)
            timing[bc.id] = (at, ms, at + dt.timedelta(milliseconds=ms * (bc.repeat or 1)))
        at, ms, end_at = timing[bc.id]
        server = None
        if d.command_id is None or d.status == DeliveryStatus.CANCELLED:
            server = d.status if d.status == DeliveryStatus.CANCELLED else \
                (d.reason or d.status)
        out.append(PlannedItem(
            node_id=d.node_id, area_id=nodes[d.node_id].cluster_id, broadcast_id=bc.id,
            scheduled_at=at, end_at=end_at, media_ms=ms, repeat=bc.repeat or 1,
            cmd_id=d.command_id, server_reason=server))
    return out + _not_yet_sent(db, nodes, start, end, media)


def _not_yet_sent(db: Session, nodes: Mapping[str, NodeFacts], start: dt.datetime,
                  end: dt.datetime, media: dict[str, int]) -> list[PlannedItem]:
    """A timed one-off the dispatcher has not sent yet (it has no deliveries): planned for the
    nodes its targets reach now (a node revoked since its time: still), so it is pending, and
    missed if it never goes out."""
    reach = None
    out = []
    for bc in db.scalars(select(Broadcast).where(
            Broadcast.recurrence.is_(None), Broadcast.status == BroadcastStatus.SCHEDULED,
            Broadcast.start_at >= schedule.naive(start), Broadcast.start_at < schedule.naive(end),
            ~Broadcast.deliveries.any()).order_by(Broadcast.id)):
        reach = reach or schedule.Reach(db, with_revoked=True)
        assert bc.start_at is not None  # the query asks for it
        at, ms = schedule.aware(bc.start_at), _media_ms(db, bc, media)
        for node_id in sorted(reach.nodes(bc) & set(nodes)):
            if _revoked_by(nodes[node_id], at):
                continue
            out.append(PlannedItem(
                node_id=node_id, area_id=nodes[node_id].cluster_id, broadcast_id=bc.id,
                scheduled_at=at, end_at=at + dt.timedelta(milliseconds=ms * (bc.repeat or 1)),
                media_ms=ms, repeat=bc.repeat or 1))
    return out


class NodeFacts(Protocol):
    """What planning a series reads of a node: a Node, or a row of just these columns (a
    thousand Node objects cost a series' page most of its time, docs/benchmarks.md)."""
    @property
    def id(self) -> str: ...
    @property
    def cluster_id(self) -> int: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def revoked_at(self) -> dt.datetime | None: ...


def _revoked_by(node: NodeFacts, at: dt.datetime) -> bool:
    """Whether the node had been revoked by ``at`` (aware): nothing is planned for it then."""
    return node.revoked_at is not None and schedule.aware(node.revoked_at) <= at


# A series' slot as planned: the series, the slot, its media's length, and the nodes it was
# planned for (id and cluster, in id order).
PlannedSlot = tuple[Broadcast, Slot, int, list[tuple[str, int]]]


def _series_slots(db: Session, default_tz: str, nodes: Mapping[str, NodeFacts],
                  start: dt.datetime, end: dt.datetime, media: dict[str, int],
                  only: int | None = None) -> Iterable[PlannedSlot]:
    """Every slot in [start, end) of every series (``only``: of that one), with the nodes it
    reaches, from the series' creation (or confirmation) until it was cancelled, and from the
    node's own provisioning until its revocation (a revoked node was planned what its targets
    gave it before); each series expanded in its own zone (server.schedule.zone;
    ``default_tz``: the configured zone)."""
    reach = schedule.Reach(db, with_revoked=True)
    chosen = (Broadcast.id == only,) if only is not None else ()
    for bc in db.scalars(select(Broadcast).where(
            Broadcast.recurrence.is_not(None), *chosen,
            Broadcast.status.in_((BroadcastStatus.SCHEDULED, BroadcastStatus.CANCELLED)))
            .order_by(Broadcast.id)):
        targets = sorted(reach.nodes(bc) & set(nodes))
        since = max(bc.created_at, bc.confirmed_at or bc.created_at)
        if bc.status == BroadcastStatus.CANCELLED and bc.cancelled_at is None:
            continue
        until = bc.cancelled_at if bc.status == BroadcastStatus.CANCELLED else None
        lo = max(start, schedule.aware(since))
        hi = min(end, schedule.aware(until)) if until else end
        if not targets or lo >= hi:
            continue
        ms = _media_ms(db, bc, media)
        # each node's (id, cluster, provisioned, revoked) read once, not once a slot
        lives = [(node_id, node.cluster_id, schedule.aware(node.created_at),
                  schedule.aware(node.revoked_at) if node.revoked_at is not None else None)
                 for node_id in targets for node in (nodes[node_id],)]
        for slot in schedule.slots(db, bc, default_tz, lo, hi):
            at = slot.start_at
            if lo <= at < hi:
                yield bc, slot, ms, [(node_id, cluster_id) for node_id, cluster_id, born, revoked
                                     in lives if born <= at and (revoked is None or revoked > at)]


def _series(db: Session, default_tz: str, nodes: Mapping[str, NodeFacts], start: dt.datetime,
            end: dt.datetime, media: dict[str, int], only: int | None = None
            ) -> list[PlannedItem]:
    """Each node's item of every slot _series_slots plans."""
    return [PlannedItem(node_id=node_id, area_id=cluster_id, broadcast_id=bc.id,
                        scheduled_at=slot.start_at, end_at=slot.end_at, media_ms=ms,
                        repeat=bc.repeat or 1, slot_id=slot.slot_id)
            for bc, slot, ms, planned in _series_slots(db, default_tz, nodes, start, end,
                                                       media, only)
            for node_id, cluster_id in planned]


class ReportNode(NodeFacts, Protocol):
    """What a report reads of a node: its registry columns and its connection, never its last
    state and telemetry (JSON decoded per node: a quarter of a second at 1,000 nodes), nor a
    Node object (10,000 of them took a quarter of a second of the Reports page at 10,000 nodes,
    docs/benchmarks.md)."""
    @property
    def name(self) -> str: ...
    @property
    def online(self) -> bool: ...
    @property
    def last_seen(self) -> dt.datetime | None: ...


REPORT_COLUMNS = (Node.id, Node.name, Node.cluster_id, Node.created_at, Node.revoked_at,
                  Node.online, Node.last_seen)


def scoped_nodes(db: Session, areas: set[int] | None, node_id: str | None
                 ) -> dict[str, ReportNode]:
    """The nodes a report covers: within ``areas`` (None: all), only ``node_id`` if given."""
    q = select(*REPORT_COLUMNS)
    if areas is not None:
        q = q.where(Node.cluster_id.in_(areas))
    if node_id is not None:
        q = q.where(Node.id == node_id)
    return {n.id: n for n in db.execute(q)}


def planned_items(db: Session, default_tz: str, nodes: Mapping[str, NodeFacts],
                  start: dt.datetime, end: dt.datetime) -> list[PlannedItem]:
    media: dict[str, int] = {}
    return (_one_offs(db, nodes, start, end, media)
            + _series(db, default_tz, nodes, start, end, media))


def reported_rows(db: Session, items: list[PlannedItem]) -> tuple[list[Play], list[Ack]]:
    """The plays and acks of the planned items' nodes for their commands and slots."""
    cmds = {i.cmd_id for i in items if i.cmd_id}
    slots = {i.slot_id for i in items if i.slot_id}
    node_ids = {i.node_id for i in items}
    plays: list[Play] = []
    media: dict[str, int] = {}
    for chunk in chunks(sorted(cmds)):
        plays += _plays(db, node_ids, PlayLog.cmd_id.in_(chunk), media)
    for chunk in chunks(sorted(slots)):
        plays += _plays(db, node_ids, PlayLog.slot_id.in_(chunk) & PlayLog.cmd_id.is_(None),
                        media)
    acks = []
    for chunk in chunks(sorted(cmds)):  # plain rows too: a province's broadcast has 10,000
        acks += [Ack(d.node_id, d.command_id, d.status, d.reason) for d in db.execute(
            select(Delivery.node_id, Delivery.command_id, Delivery.status, Delivery.reason)
            .where(Delivery.command_id.in_(chunk)))
            if d.node_id in node_ids and d.command_id]
    return plays, acks


def chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    """``values`` a batch of at most ``size`` at a time: bind parameters a statement, far below
    SQLite's 32,766 and PostgreSQL's 65,535 whatever the fleet's size."""
    for n in range(0, len(values), size):
        yield values[n:n + size]


def _plays(db: Session, node_ids: set[str], where: ColumnElement[bool], media: dict[str, int]
           ) -> list[Play]:
    """The plays matching ``where``, read as plain rows: a year's report reads tens of
    thousands, and an ORM object each costs several times the row (bench/reports.py)."""
    return [Play(p.node_id, p.result, p.cmd_id, p.slot_id, p.started_at_ms, p.ended_at_ms,
                 p.reason, _sha_ms(db, p.sha256, media) or None)
            for p in db.execute(select(
                PlayLog.node_id, PlayLog.result, PlayLog.cmd_id, PlayLog.slot_id,
                PlayLog.started_at_ms, PlayLog.ended_at_ms, PlayLog.reason, PlayLog.sha256)
                .where(where)) if p.node_id in node_ids]


def build(db: Session, default_tz: str, *, areas: set[int] | None, node_id: str | None,
          start: dt.datetime, end: dt.datetime, now: dt.datetime,
          grace: dt.timedelta) -> Report:
    """The report over the database's rows for the nodes in scope and [start, end) (aware)."""
    nodes = scoped_nodes(db, areas, node_id)
    items = planned_items(db, default_tz, nodes, start, end)
    plays, acks = reported_rows(db, items)
    presence = {n.id: Presence(bool(n.online), schedule.aware(n.last_seen) if n.last_seen
                               else None) for n in nodes.values()}
    return airplay(items, plays, acks, now=now, grace=grace, presence=presence)


def _reached_facts(db: Session, bc: Broadcast) -> dict[str, NodeFacts]:
    """The planning facts of the (unrevoked) nodes a broadcast's targets reach now."""
    reach = schedule.Reach(db)
    reached = reach.nodes(bc)
    # read by the clusters they are in: one statement whatever the fleet's size (not one per
    # batch of node ids), a single node's series reading its own cluster's rows
    clusters = [c for c, ids in reach.by_cluster.items() if not ids.isdisjoint(reached)]
    nodes: dict[str, NodeFacts] = {n.id: n for n in db.execute(
        select(Node.id, Node.cluster_id, Node.created_at, Node.revoked_at)
        .where(Node.cluster_id.in_(clusters))) if n.id in reached}
    return nodes


def series_lines(db: Session, tz: str, bc: Broadcast, *, start: dt.datetime, end: dt.datetime,
                 now: dt.datetime, grace: dt.timedelta) -> list[Line]:
    """The report's lines for the slots of one series in [start, end) (aware), on every node
    it reaches: what server.deliveries.slot_state shows staff once the report has judged."""
    items = _series(db, tz, _reached_facts(db, bc), start, end, {}, only=bc.id)
    plays, acks = reported_rows(db, items)
    return airplay(items, plays, acks, now=now, grace=grace).lines


# --- as the API answers it ---------------------------------------------------------------------

FIELDS = ("node_id", "area_id", "broadcast_id", "slot_id", "cmd_id", "scheduled_at",
          "planned_end_at", "started_at", "ended_at", "status", "reason")


def _iso(value: dt.datetime | None) -> str | None:
    return schedule.iso(value) if value is not None else None


def line_json(line: Line) -> dict[str, Any]:
    i = line.item
    return {"node_id": i.node_id, "area_id": i.area_id, "broadcast_id": i.broadcast_id,
            "slot_id": i.slot_id, "cmd_id": i.cmd_id, "scheduled_at": _iso(i.scheduled_at),
            "planned_end_at": _iso(i.end_at), "started_at": _iso(line.started_at),
            "ended_at": _iso(line.ended_at), "status": line.status.value,
            "reason": line.reason.value if line.reason else None}


def report_json(db: Session, report: Report, start: dt.datetime, end: dt.datetime,
                now: dt.datetime, grace: dt.timedelta) -> dict[str, Any]:
    names = {area_id: name for area_id, name in db.execute(select(Area.id, Area.name).where(
        Area.id.in_(list(report.by_area) or [-1])))}
    return {"from": _iso(start), "to": _iso(end), "generated_at": _iso(now),
            "grace_s": int(grace.total_seconds()),
            "items": [line_json(line) for line in report.lines],
            "totals": [{"area_id": a, "area_name": names.get(a), **counts}
                       for a, counts in sorted(report.by_area.items())],
            "total": report.total}


def report_csv(report: Report) -> str:
    """One row per planned item, the JSON's item fields as columns; the totals are not in the
    CSV (a spreadsheet sums the status column; the JSON answer carries them)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(line_json(line) for line in report.lines)
    return out.getvalue()


# A series' occurrences are listed from a day ago to two days on unless asked, a week at most,
# and no more than MOST_OCCURRENCES of them (a series may play every minute).
SLOTS_BEFORE, SLOTS_AFTER, SLOTS_MOST = (dt.timedelta(days=1), dt.timedelta(days=2),
                                         dt.timedelta(days=7))
MOST_OCCURRENCES = 200


def slot_window(now: dt.datetime, start: dt.datetime | None = None,
                end: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The window of a series' occurrences staff asked for (aware; None: the default)."""
    start = start or now - SLOTS_BEFORE
    end = end or max(start, now) + SLOTS_AFTER
    return schedule.listing_window(start, min(end, start + SLOTS_MOST))


def _occurrences_end(db: Session, tz: str, bc: Broadcast, start: dt.datetime,
                     end: dt.datetime) -> dt.datetime:
    """``end``, or before the occurrence past MOST_OCCURRENCES in [start, end)."""
    if bc.recurrence is not None:
        found = schedule.slots(db, bc, tz, start, end)
        if len(found) > MOST_OCCURRENCES:
            return found[MOST_OCCURRENCES].start_at
    return end


def _stored_states(db: Session, bc: Broadcast, slot_ids: Iterable[str]
                   ) -> dict[tuple[str, str], str]:
    """What the dispatcher stored of each (node, slot) of the series' slots."""
    return {(r.node_id, r.slot_id): r.status for chunk in chunks(sorted(set(slot_ids)))
            for r in db.execute(select(SlotDelivery.node_id, SlotDelivery.slot_id,
                                       SlotDelivery.status).where(
                SlotDelivery.broadcast_id == bc.id, SlotDelivery.slot_id.in_(chunk)))}


def series_occurrences(db: Session, tz: str, bc: Broadcast, *, start: dt.datetime,
                       end: dt.datetime, now: dt.datetime, grace: dt.timedelta,
                       listed: int, routine: Collection[str]) -> list[dict[str, Any]]:
    """What a series' page shows of its occurrences in [start, end) (aware): per occurrence,
    as series_slots_json, its slot id, start, end, media and how many nodes stand at each
    state, and then instead of every node: every node when there are at most ``listed``,
    else the first ``listed`` whose state is not ``routine`` ("listed", and "unlisted": how
    many more). Judged as series_slots_json judges (the same states), but only the nodes that
    reported a play of a slot become a report line: a series on 10,000 nodes is tens of
    thousands of node-slots a render, most with nothing reported (docs/benchmarks.md)."""
    end = _occurrences_end(db, tz, bc, start, end)
    planned = list(_series_slots(db, tz, _reached_facts(db, bc), start, end, {}, only=bc.id))
    slot_ids = [slot.slot_id for _, slot, _, _ in planned]
    node_ids = {node_id for _, _, _, nodes in planned for node_id, _ in nodes}
    by_slot: dict[tuple[str, str], list[Play]] = {}
    for chunk in chunks(sorted(set(slot_ids))):
        for p in sorted(_plays(db, node_ids, PlayLog.slot_id.in_(chunk)
                               & PlayLog.cmd_id.is_(None), {}),
                        key=lambda p: p.started_at_ms or 0):
            by_slot.setdefault((p.node_id, p.slot_id or ""), []).append(p)
    stored = _stored_states(db, bc, slot_ids)
    out = []
    for bc_, slot, ms, nodes in planned:
        if not nodes:  # reaching no node then: not an occurrence to show
            continue
        sid = slot.slot_id
        quiet = (AirStatus.PENDING, None) if now < slot.end_at + grace \
            else (AirStatus.MISSED, MissReason.NO_REPORT.value)
        states: list[tuple[str, SlotState, str | None]] = []
        counts = dict.fromkeys((s.value for s in SlotState), 0)
        first: list[tuple[str, SlotState, str | None]] = []
        for node_id, cluster_id in nodes:
            plays = by_slot.get((node_id, sid))
            if plays:
                line = judge(PlannedItem(node_id, cluster_id, bc_.id, slot.start_at,
                                         slot.end_at, ms, bc_.repeat or 1, sid),
                             plays, None, None, now, grace)
                status, reason = line.status, line.reason.value if line.reason else None
            else:
                status, reason = quiet
            state, why = slot_state(stored.get((node_id, sid)), status, reason)
            counts[state] += 1
            if len(first) < listed:
                first.append((node_id, state, why))
            if state not in routine and len(states) < listed:
                states.append((node_id, state, why))
        shown = first if len(nodes) <= listed else states
        out.append({"slot_id": sid, "start_at": _iso(slot.start_at), "end_at": _iso(slot.end_at),
                    "sha256": schedule.slot_media(db, bc, sid), "counts": counts,
                    "listed": [{"node_id": n, "state": st.value, "reason": why}
                               for n, st, why in shown],
                    "unlisted": len(nodes) - len(shown)})
    return out


def series_slots_json(db: Session, tz: str, bc: Broadcast, *, start: dt.datetime,
                      end: dt.datetime, now: dt.datetime, grace: dt.timedelta
                      ) -> dict[str, Any]:
    """Per occurrence of the series in [start, end) (aware): its slot id, start, media and
    each node's delivery state (server.deliveries.slot_state), with how many stand at each.
    More than MOST_OCCURRENCES: the window ends before the next one (the answer's ``to``)."""
    end = _occurrences_end(db, tz, bc, start, end)
    lines = series_lines(db, tz, bc, start=start, end=end, now=now, grace=grace)
    stored = _stored_states(db, bc, (line.item.slot_id or "" for line in lines))
    occurrences: dict[str, dict[str, Any]] = {}
    for line in lines:
        item = line.item
        slot_id = item.slot_id or ""
        occurrence = occurrences.get(slot_id)
        if occurrence is None:
            occurrence = occurrences[slot_id] = {
                "slot_id": slot_id, "start_at": _iso(item.scheduled_at),
                "end_at": _iso(item.end_at), "sha256": schedule.slot_media(db, bc, slot_id),
                "nodes": []}
        state, reason = slot_state(stored.get((item.node_id, slot_id)), line.status,
                                   line.reason.value if line.reason else None)
        occurrence["nodes"].append({"node_id": item.node_id, "state": state.value,
                                    "reason": reason})
    for occurrence in occurrences.values():
        occurrence["counts"] = slot_counts(n["state"] for n in occurrence["nodes"])
    return {"broadcast_id": bc.id, "from": _iso(start), "to": _iso(end),
            "generated_at": _iso(now), "grace_s": int(grace.total_seconds()),
            "occurrences": list(occurrences.values()),
            "counts": slot_counts(n["state"] for o in occurrences.values()
                                  for n in o["nodes"])}

