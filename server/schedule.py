"""The schedule as stored: each broadcast's slots (schedules.slots over the database's rows), the
nodes a broadcast reaches when a window is built, and the conflict check a new broadcast passes.
The API, the dispatcher's desired states and the bridge's proof of play all read slots here."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules.lunar import FIRST_YEAR, LAST_YEAR, LunarHoliday, TetSpan, holiday_skip_days
from schedules.slots import (BroadcastSpec, ConflictReport, Content, ContentKind, Override, Slot,
                             broadcast_slots, find_conflicts, is_occurrence)

from . import broadcasts
from .models import Area, Broadcast, Media, Node, OccurrenceOverride, targets_zone

# A new broadcast is checked against the others over this much of the future.
CONFLICT_HORIZON = dt.timedelta(days=30)
# The longest span one schedule listing expands.
MAX_LISTING = dt.timedelta(days=92)
# A slot whose media is unknown still takes this long in conflicts and listings.
MIN_SLOT = dt.timedelta(seconds=1)
# How many clashing slots a 409 names.
MAX_CLASHES = 50


def aware(naive_utc: dt.datetime) -> dt.datetime:
    """A stored (naive UTC) time as the schedule domain takes it."""
    return naive_utc.replace(tzinfo=dt.UTC)


def naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def from_ms_aware(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def is_series(bc: Broadcast) -> bool:
    return bc.recurrence is not None


def duration(db: Session, bc: Broadcast, media_sha256: str | None = None) -> dt.timedelta:
    """How long one slot of the broadcast plays: its approved media (or ``media_sha256``, an
    occurrence's other bulletin), once per repeat."""
    sha = media_sha256 or bc.media_sha256
    media = db.get(Media, sha) if sha else None
    played = dt.timedelta(milliseconds=(media.duration_ms if media else 0) * (bc.repeat or 1))
    return max(played, MIN_SLOT)


def override_rows(db: Session, bc: Broadcast) -> list[OccurrenceOverride]:
    """The broadcast's changed occurrences as stored (none for a one-off)."""
    if bc.recurrence is None:
        return []
    return list(db.scalars(select(OccurrenceOverride).where(
        OccurrenceOverride.broadcast_id == bc.id).order_by(OccurrenceOverride.original_start)))


def overrides(db: Session, bc: Broadcast) -> list[Override]:
    """The stored changes as schedules.slots applies them when it builds slots."""
    out = []
    for row in override_rows(db, bc):
        other = row.bulletin_id
        out.append(Override(
            original_start=aware(row.original_start), cancelled=row.cancelled,
            start_at=aware(row.start_at) if row.start_at else None,
            duration=duration(db, bc, row.media_sha256) if other is not None else None,
            content=Content(ContentKind.BULLETIN, other) if other is not None else None))
    return out


def override_row(db: Session, bc: Broadcast, original_start: dt.datetime
                 ) -> OccurrenceOverride | None:
    """The stored change of the occurrence at ``original_start`` (aware), or None."""
    return db.scalar(select(OccurrenceOverride).where(
        OccurrenceOverride.broadcast_id == bc.id,
        OccurrenceOverride.original_start == naive(original_start)))


def in_bounds(bc: Broadcast, original_start: dt.datetime) -> bool:
    """Whether an occurrence (aware) lies within the part of the series this broadcast plans:
    an edited series ended at ``ends_at``, its successor plans from ``begins_at``."""
    if bc.ends_at is not None and original_start >= aware(bc.ends_at):
        return False
    return bc.begins_at is None or original_start >= aware(bc.begins_at)
def content(bc: Broadcast) -> Content:
    if bc.programme_id is not None:
        return Content(ContentKind.PROGRAMME, bc.programme_id)
    assert bc.bulletin_id is not None  # a broadcast airs a bulletin or a programme
    return Content(ContentKind.BULLETIN, bc.bulletin_id)


def title(bc: Broadcast) -> str:
    """What a broadcast airs, as its approval (or the programme's revision) names it."""
    if bc.programme_revision is not None:
        return bc.programme_revision.title
    if bc.approval is not None:
        return bc.approval.title
    return bc.bulletin.title if bc.bulletin else ""


def tet_span(tet_days: dict[str, int] | None) -> TetSpan:
    """The days around mùng 1 Tết as stored ({"before": n, "after": m}; None: the default)."""
    if not tet_days:
        return TetSpan()
    return TetSpan(days_before=tet_days["before"], last_day=tet_days["after"] + 1)


def skip_days(bc: Broadcast, window_from: dt.datetime, window_to: dt.datetime
              ) -> frozenset[dt.date]:
    """The local days of the series' skipped lunar holidays over the years the window (aware)
    spans, a year either side for the zone's offset and a span around Tết crossing a year."""
    stored = bc.skip_holidays or {}
    chosen = stored.get("holidays") or []
    if not chosen:
        return frozenset()
    first = max(window_from.year - 1, FIRST_YEAR)
    last = min(window_to.year + 1, LAST_YEAR)
    if first > last:
        return frozenset()
    return holiday_skip_days(first, last, [LunarHoliday(h) for h in chosen],
                             tet=tet_span(stored.get("tet_days")))


def zone(db: Session, bc: Broadcast, default_tz: str) -> str:
    """The IANA time zone the broadcast is expanded in: the one fixed on it when it was created
    or edited (Broadcast.tz), which was that of its first target area (or, with single nodes
    only, of its first node's cluster), inherited down the area tree, the configured
    ``default_tz`` when no area up the tree set one. A series stored without one (before
    revision 0007) takes its targets' zone as it is now."""
    return bc.tz or targets_zone(db, bc.target_areas, bc.target_nodes, default_tz)


def spec(db: Session, bc: Broadcast, default_tz: str, window_from: dt.datetime | None = None,
         window_to: dt.datetime | None = None) -> BroadcastSpec:
    """The series as schedules.slots expands it, in its zone (``zone``); its skipped holidays
    are those of the years [window_from, window_to] spans (aware; absent: the anchor's)."""
    start = bc.start_at or bc.due_at or bc.created_at
    window_from = window_from or aware(start)
    return BroadcastSpec(
        broadcast_id=bc.id, start_at=aware(start), duration=duration(db, bc),
        priority=bc.priority, content=content(bc),
        recurrence=bc.recurrence, exdates=tuple(from_ms_aware(ms) for ms in bc.exdates or ()),
        tz=zone(db, bc, default_tz), skip_days=skip_days(bc, window_from, window_to or window_from))


# Windows are expanded this much at a time: a rule may play once a minute, and one expansion
# stops at schedules.recurrence.MAX_OCCURRENCES.
CHUNK = dt.timedelta(days=3)


def slots(db: Session, bc: Broadcast, default_tz: str, window_from: dt.datetime,
          window_to: dt.datetime) -> list[Slot]:
    """The broadcast's slots that share time with [window_from, window_to) (aware times), in
    its zone (``zone``; ``default_tz``: the configured zone)."""
    plan = spec(db, bc, default_tz, window_from, window_to)
    changes = overrides(db, bc)
    found: dict[str, Slot] = {}
    start = window_from
    while start < window_to:
        end = min(start + CHUNK, window_to)
        for slot in broadcast_slots(plan, start, end, changes):
            found.setdefault(slot.slot_id, slot)  # one spanning two chunks comes twice
        start = end
    return sorted(s for s in found.values() if in_bounds(bc, s.original_start))


def slot_broadcast_id(slot_id: str) -> int | None:
    """The broadcast a slot id names ("b42-20260101T230000Z" -> 42), or None."""
    head, sep, stamp = slot_id.partition("-")
    if not sep or not head.startswith("b") or not head[1:].isdecimal() or len(head) > 20:
        return None
    return int(head[1:])


def slot_start(slot_id: str) -> dt.datetime | None:
    """The original start a slot id names, aware UTC, or None."""
    _head, _sep, stamp = slot_id.partition("-")
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def is_slot_of(db: Session, bc: Broadcast, slot_id: str, default_tz: str) -> bool:
    """Whether ``slot_id`` is one of the broadcast's occurrences (exdates applied)."""
    start = slot_start(slot_id)
    return (start is not None and slot_broadcast_id(slot_id) == bc.id
            and in_bounds(bc, start) and is_occurrence(spec(db, bc, default_tz, start), start))


def slot_media(db: Session, bc: Broadcast, slot_id: str) -> str | None:
    """The media the occurrence ``slot_id`` of the series airs: another bulletin's when it was
    given one, else the series' own."""
    start = slot_start(slot_id)
    row = override_row(db, bc, start) if start is not None else None
    return row.media_sha256 if row is not None and row.media_sha256 else bc.media_sha256


def planned(db: Session) -> list[Broadcast]:
    """The broadcasts that still plan slots: every series not cancelled, and the timed one-offs
    not yet done with."""
    live = (broadcasts.BroadcastStatus.SCHEDULED, broadcasts.BroadcastStatus.AWAITING_CONFIRMATION,
            broadcasts.BroadcastStatus.DISPATCHED)
    return list(db.scalars(select(Broadcast).where(
        Broadcast.status.in_(live),
        Broadcast.recurrence.is_not(None) | Broadcast.start_at.is_not(None))
        .order_by(Broadcast.id)))


def series_on_air(db: Session) -> list[Broadcast]:
    """The series whose slots go into desired states: scheduled (a cancelled one leaves no
    slot anywhere; one awaiting confirmation airs nothing yet)."""
    return list(db.scalars(select(Broadcast).where(
        Broadcast.status == broadcasts.BroadcastStatus.SCHEDULED,
        Broadcast.recurrence.is_not(None)).order_by(Broadcast.id)))


class Reach:
    """Which nodes a broadcast's targets reach, read once for a whole pass: areas at any depth
    through the area tree as it is now, plus single nodes; revoked nodes never, unless
    ``with_revoked`` (the airplay report: what they were planned before their revocation).
    ``nodes=False``: the area tree alone (``subtree``), no node read."""

    def __init__(self, db: Session, *, with_revoked: bool = False, nodes: bool = True):
        self.children: dict[int | None, list[int]] = {}
        for area_id, parent_id in db.execute(select(Area.id, Area.parent_id)):
            self.children.setdefault(parent_id, []).append(area_id)
        self.by_cluster: dict[int, set[str]] = {}
        self.live: set[str] = set()
        if not nodes:
            return
        query = select(Node.id, Node.cluster_id)
        if not with_revoked:
            query = query.where(Node.revoked_at.is_(None))
        for node_id, cluster_id in db.execute(query):
            self.by_cluster.setdefault(cluster_id, set()).add(node_id)
            self.live.add(node_id)

    def subtree(self, roots: Iterable[int]) -> set[int]:
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            area_id = stack.pop()
            if area_id not in seen:
                seen.add(area_id)
                stack.extend(self.children.get(area_id, ()))
        return seen

    def nodes(self, bc: Broadcast) -> set[str]:
        found = {n for n in bc.target_nodes or () if n in self.live}
        for area_id in self.subtree(bc.target_areas or ()):
            found |= self.by_cluster.get(area_id, set())
        return found


def conflicts(db: Session, default_tz: str, bc: Broadcast, *, now: dt.datetime,
              override: bool, only: set[str] | None = None,
              future_only: bool = False) -> ConflictReport:
    """How the new broadcast ``bc`` (flushed, so it has an id) meets the others' slots on the
    same nodes over the next CONFLICT_HORIZON. One-offs never clashed with one-offs and still do
    not: a clash needs a series on at least one side. ``only``: check these slots of ``bc``
    alone (one changed occurrence); ``future_only``: its slots that start from ``now`` on (one
    already playing keeps what it plays). The series an edit split ``bc`` from is not
    another."""
    others = [o for o in planned(db)
              if o.id not in (bc.id, bc.previous_id) and (is_series(bc) or is_series(o))]
    if not others:
        return ConflictReport()
    reach = Reach(db)
    targets = reach.nodes(bc)
    window_to = now + CONFLICT_HORIZON
    new = [s for s in slots(db, bc, default_tz, now, window_to)
           if (only is None or s.slot_id in only) and (not future_only or s.start_at >= now)]
    if not new or not targets:
        return ConflictReport()
    # the others' slots on each node, in the others' order; nodes that the same others reach
    # share one list (find_conflicts works each distinct list out once: a province's nodes
    # under the same series are one)
    reaching: dict[str, list[int]] = {}
    theirs: list[list[Slot]] = []
    for other in others:
        shared = reach.nodes(other) & targets
        if not shared:
            continue
        for node_id in shared:
            reaching.setdefault(node_id, []).append(len(theirs))
        theirs.append(slots(db, other, default_tz, now, window_to))
    lists: dict[tuple[int, ...], list[Slot]] = {}
    existing: dict[str, list[Slot]] = {}
    for node_id, which in reaching.items():
        key = tuple(which)
        if key not in lists:
            lists[key] = [s for i in key for s in theirs[i]]
        existing[node_id] = lists[key]
    return find_conflicts(existing, {n: new for n in sorted(targets)}, now=now,
                          override=override)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def slot_json(slot: Slot, bc: Broadcast | None = None, *, tz: str | None = None) -> dict[str, Any]:
    """A slot (UTC times); with ``tz`` its start and end also as local times with their offset
    in that zone (local_start_at, local_end_at)."""
    out: dict[str, Any] = {"slot_id": slot.slot_id, "broadcast_id": slot.broadcast_id,
                           "start_at": iso(slot.start_at), "end_at": iso(slot.end_at),
                           "priority": slot.priority}
    if tz is not None:
        out |= {"local_start_at": slot.start_at.astimezone(ZoneInfo(tz)).isoformat(),
                "local_end_at": slot.end_at.astimezone(ZoneInfo(tz)).isoformat()}
    if bc is not None:
        out |= {"bulletin_id": bc.bulletin_id, "programme_id": bc.programme_id,
                "targets": {"areas": bc.target_areas, "nodes": bc.target_nodes}}
    return out


def clashes_json(report: ConflictReport) -> list[dict[str, Any]]:
    return [{"node_id": c.node_id, "slot": slot_json(c.new), "existing": slot_json(c.existing)}
            for c in report.clashes[:MAX_CLASHES]]


# A listing's window is held to the years the lunar calendar covers (and every clock can hold).
EARLIEST = dt.datetime(FIRST_YEAR + 1, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(LAST_YEAR - 1, 12, 1, tzinfo=dt.UTC)


def listing_window(window_from: dt.datetime, window_to: dt.datetime
                   ) -> tuple[dt.datetime, dt.datetime]:
    """A requested window (aware) held to at most MAX_LISTING long and to the years covered;
    an empty window (to before from) stays empty."""
    start = min(max(window_from, EARLIEST), LATEST)
    return start, max(start, min(window_to, start + MAX_LISTING, LATEST))


def area_slots(db: Session, default_tz: str, area_id: int, window_from: dt.datetime,
               window_to: dt.datetime) -> list[tuple[Slot, Broadcast]]:
    """The slots in [window_from, window_to) of every planned broadcast that reaches the area or
    below: one of its nodes, the area itself or an area above it, or one inside it. Of the
    nodes, only the broadcasts' single targets are read (which of them are below), never the
    whole fleet: the dashboard asks this on every poll."""
    if window_to <= window_from:
        return []
    reach = Reach(db, nodes=False)
    below = reach.subtree([area_id])
    plans = planned(db)
    single = {n for bc in plans for n in bc.target_nodes or ()}
    nodes_below = set(db.scalars(select(Node.id).where(
        Node.id.in_(single), Node.cluster_id.in_(below), Node.revoked_at.is_(None)))) \
        if single else set()
    out: list[tuple[Slot, Broadcast]] = []
    for bc in plans:
        above_or_below = reach.subtree(bc.target_areas or ())
        if not (area_id in above_or_below or below & set(bc.target_areas or ())
                or nodes_below & set(bc.target_nodes or ())):
            continue
        out += [(s, bc) for s in slots(db, bc, default_tz, window_from, window_to)]
    return sorted(out, key=lambda pair: pair[0])
