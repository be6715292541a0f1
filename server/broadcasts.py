"""Broadcasts: a bulletin's approved recording (or a programme's media) sent to areas and
nodes, now, at a time or as a series (a recurrence rule: its slots reach the nodes in their
desired states, never as play commands); the second person's confirmation of an emergency,
and cancelling. This module alone assigns a broadcast's status; the dispatcher calls
mark_dispatched and mark_not_sent."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from device_agent.protocol import PRIORITY_NAMES, CommandType, PriorityName
from schedules.lunar import LunarError
from schedules.recurrence import RecurrenceError, RecurrenceErrorCode
from schedules.slots import Clash, ConflictReport, check_recurrence, is_occurrence, slot_id

from . import auth, deliveries, schedule
from .areas import live_area
from .bodies import BroadcastCreate, BroadcastEdit, OccurrenceChange, TetDays
from .bulletins import current_approval, visible_bulletin
from .config import Settings
from .errors import ApiError, ErrorCode, bad_request
from .i18n import Word
from .models import (Broadcast, Bulletin, BulletinApproval, Node, OccurrenceOverride,
                     Programme, User, area_ancestors, area_subtree_ids, targets_zone, to_ms,
                     utcnow)
from .outbox import queue_command
from .programmes import revision_problem, visible_programme
from .times import due_time


class BroadcastStatus(StrEnum):
    """Where a broadcast stands. The dispatcher moves a scheduled one to dispatched (its
    commands in the outbox), held (cannot be sent: the reason says why) or skipped (too late);
    an emergency that needs a second person waits in awaiting_confirmation."""
    SCHEDULED = "scheduled"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    DISPATCHED = "dispatched"
    HELD = "held"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# live and emergency preempt everything below them
CONFIRM_PRIORITY = PRIORITY_NAMES[PriorityName.LIVE]


def needs_confirmation(db: Session, areas: list[int], nodes: list[str]) -> bool:
    """Whether any target lies in an area whose nearest setting asks for a second person."""
    starts = list(areas) + [n.cluster_id for n in db.scalars(
        select(Node).where(Node.id.in_(nodes or [""])))]
    for area_id in starts:
        for area in area_ancestors(db, area_id):
            if area.emergency_confirm is not None:
                if area.emergency_confirm:
                    return True
                break
    return False


def create_broadcast(db: Session, s: Settings, user: User, body: BroadcastCreate) -> Broadcast:
    areas, nodes = body.targets.areas, body.targets.nodes
    priority, volume, repeat, start_at = body.priority, body.volume, body.repeat, body.start_at
    content = _content(db, user, body)
    check_targets(db, user, areas, nodes)
    what = _airs(db, content)
    if not target_node_ids(db, areas, nodes):
        raise bad_request("err.no_nodes", ErrorCode.NO_NODES)
    status = initial_status(db, user, priority, areas, nodes)
    now = utcnow()
    series = body.recurrence is not None
    tz = targets_zone(db, areas, nodes, s.timezone) if series else None
    if body.recurrence is not None and start_at is not None:  # the model requires start_at
        check_series(body.recurrence, start_at, tz or s.timezone)
    start_at = start_at if series or start_at is None or start_at > now else None
    # (a one-off's time already past means now; a series' is its anchor)
    bc = Broadcast(**what, priority=priority, start_at=start_at,
                   # a series is never dispatched as a command: due_at only records its anchor
                   due_at=start_at if series else due_time(start_at, now, s.schedule_lead_s),
                   recurrence=body.recurrence, tz=tz,
                   exdates=sorted({to_ms(x) for x in body.exdates or ()}) if series else None,
                   skip_holidays=holiday_skips(body.skip_holidays, body.tet_days)
                   if series else None,
                   target_areas=sorted(set(areas)), target_nodes=sorted(set(nodes)),
                   volume=volume, repeat=repeat, status=status, created_by=user.id,
                   created_at=now)
    db.add(bc)
    db.flush()
    report = check_conflicts(db, s, bc, now, bool(body.override))
    if series and status == BroadcastStatus.SCHEDULED:
        mark_desired_dirty(db, bc)
    elif report.preempts or report.overridden:
        mark_desired_dirty(db, bc)  # a one-off over a series' slot: it leaves the desired state
    return bc


def holiday_skips(chosen: Sequence[str] | None, tet: TetDays | None,
                  stored_tet: dict[str, int] | None = None) -> dict[str, Any] | None:
    """The lunar holidays a series skips as stored (Broadcast.skip_holidays); None: none."""
    if not chosen:
        return None
    tet_days = {"before": tet.before, "after": tet.after} if tet is not None else stored_tet
    return {"holidays": [str(h) for h in chosen], "tet_days": tet_days}


def check_targets(db: Session, user: User, areas: list[int], nodes: list[str]) -> None:
    """404 for an unknown area or node, 409 for an area merged into another (it reaches no
    node: its successor does), 403 for one outside the user's scope."""
    for area_id in areas:
        live_area(db, area_id)
        auth.check_area(db, user, area_id)
    for node_id in nodes:
        node = db.get(Node, node_id)
        if node is None:
            raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
        auth.check_area(db, user, node.cluster_id)


def approved(b: Bulletin) -> BulletinApproval:
    """The bulletin's current approval (what airs), or 409 not_approved."""
    approval = current_approval(b)
    if approval is None:
        raise ApiError(ErrorCode.NOT_APPROVED, "err.bulletin_not_approved", id=b.id,
                       status=Word("status", b.status))
    return approval


def initial_status(db: Session, user: User, priority: int, areas: list[int],
                   nodes: list[str]) -> BroadcastStatus:
    """Scheduled, or awaiting a second person's confirmation for a live or emergency priority
    where an area asks for one; 403 for such a priority without the permission otherwise."""
    if priority >= CONFIRM_PRIORITY:
        if needs_confirmation(db, areas, nodes):
            # nothing airs until a second person confirms
            return BroadcastStatus.AWAITING_CONFIRMATION
        if not auth.can(user, "broadcast.emergency"):
            raise ApiError(ErrorCode.EMERGENCY_FORBIDDEN, "err.emergency_forbidden")
    return BroadcastStatus.SCHEDULED


def _content(db: Session, user: User, body: BroadcastCreate) -> Bulletin | Programme:
    """What the body names to air, when the user may see it (404 otherwise)."""
    if body.bulletin_id is not None:
        return visible_bulletin(db, user, body.bulletin_id)
    assert body.programme_id is not None  # the body holds exactly one of them
    return visible_programme(db, user, body.programme_id)


def _airs(db: Session, content: Bulletin | Programme) -> dict[str, Any]:
    """The broadcast's columns fixing what airs: the bulletin's approval, or the programme's
    current revision; 409 not_approved when it may not air as it stands."""
    if isinstance(content, Programme):
        rev = content.current
        reason, ok = revision_problem(db, content.id, rev.id, rev.media_sha256)
        if ok is None:
            assert reason is not None  # no revision comes with why
            raise ApiError(ErrorCode.NOT_APPROVED, "err.programme_not_approved", id=content.id,
                           reason=Word("bcreason", reason))
        return {"programme_id": content.id, "programme_revision_id": rev.id,
                "media_sha256": rev.media_sha256}
    approval = current_approval(content)
    if approval is None:
        raise ApiError(ErrorCode.NOT_APPROVED, "err.bulletin_not_approved", id=content.id,
                       status=Word("status", content.status))
    return {"bulletin_id": content.id, "approval_id": approval.id,
            "media_sha256": approval.media_sha256}


def check_conflicts(db: Session, s: Settings, bc: Broadcast, now: dt.datetime,
                    override: bool, only: set[str] | None = None) -> ConflictReport:
    """409 schedule_conflict, with the clashing slots, when the new broadcast's slots (or only
    those named) overlap another's on the same node and neither a higher priority nor
    ``override`` allows it; otherwise how the overlaps resolved."""
    report = schedule.conflicts(db, s.timezone, bc, now=schedule.aware(now), override=override,
                                only=only)
    refuse_clashes(report)
    return report


def refuse_clashes(report: ConflictReport, message: str = "err.schedule_conflict") -> None:
    """409 schedule_conflict naming the clashing slots, when the report has any."""
    if not report.ok:
        raise ApiError(ErrorCode.SCHEDULE_CONFLICT, message,
                       count=len(report.clashes)).with_extra(
            clashes=schedule.clashes_json(report))


def _clash_key(c: Clash) -> tuple[str, frozenset[str]]:
    # two changed series clashing with each other: one clash, whichever side names it
    return c.node_id, frozenset((c.new.slot_id, c.existing.slot_id))


def check_changed_series(db: Session, s: Settings, series: list[Broadcast],
                         change: Callable[[], None], override: bool, message: str) -> None:
    """``change`` made to series already stored (a longer media, say), checked as creating them
    is, for their slots from now on: 409 schedule_conflict naming the clashes the change makes,
    unless ``override`` (a higher priority preempts, as ever). Overlaps they had before it (let
    through then) are not asked about again. ``change`` is applied and flushed either way; on a
    409 the caller's transaction is never committed, so nothing of it stays."""
    now = schedule.aware(utcnow())
    live = [bc for bc in series if bc.ends_at is None or schedule.aware(bc.ends_at) > now]

    def clashes() -> list[Clash]:
        return [c for bc in live for c in schedule.conflicts(
            db, s.timezone, bc, now=now, override=False, future_only=True).clashes]
    before = {_clash_key(c) for c in clashes()}
    change()
    db.flush()
    if override:
        return
    made: dict[tuple[str, frozenset[str]], Clash] = {}
    for c in clashes():
        if _clash_key(c) not in before:
            made.setdefault(_clash_key(c), c)
    refuse_clashes(ConflictReport(clashes=tuple(made.values())), message)


# --- one occurrence, and a series edited from now on ---------------------------------------------

EDITABLE = (BroadcastStatus.SCHEDULED, BroadcastStatus.AWAITING_CONFIRMATION)


def _editable_series(db: Session, user: User, bc: Broadcast) -> None:
    """409 unless ``bc`` is a series still planning (not cancelled, not ended by an edit); 403
    unless the user may act on all its targets, and on its priority (live, emergency)."""
    if bc.recurrence is None:
        raise ApiError(ErrorCode.NOT_A_SERIES, "err.not_a_series")
    if bc.status not in EDITABLE or bc.ends_at is not None:
        raise ApiError(ErrorCode.CANNOT_EDIT, "err.cannot_edit",
                       status=Word("bcstate", "ended" if bc.ends_at is not None else bc.status))
    check_broadcast_targets(db, user, bc)
    if bc.priority >= CONFIRM_PRIORITY and not auth.can(user, "broadcast.emergency"):
        raise ApiError(ErrorCode.EMERGENCY_FORBIDDEN, "err.emergency_forbidden")


def change_occurrence(db: Session, s: Settings, user: User, bc: Broadcast,
                      body: OccurrenceChange) -> OccurrenceOverride | None:
    """Cancel, move or give another approved bulletin to one occurrence of a series (named by
    its original start, so its slot keeps its id); a change that changes nothing gives the
    occurrence back to its series (None). Its nodes get a new desired state at once."""
    _editable_series(db, user, bc)
    original = schedule.aware(body.original_start)
    if body.start_at is not None and not (
            schedule.EARLIEST <= schedule.aware(body.start_at) <= schedule.LATEST):
        raise ApiError(ErrorCode.INVALID, "err.invalid_field", http_status=422, field="start_at",
                       detail=f"{schedule.EARLIEST.year}-{schedule.LATEST.year}")
    if not schedule.EARLIEST <= original <= schedule.LATEST \
            or not schedule.in_bounds(bc, original) or not is_occurrence(
            schedule.spec(db, bc, s.timezone, original), original):
        raise ApiError(ErrorCode.NOT_AN_OCCURRENCE, "err.not_an_occurrence",
                       at=schedule.iso(original))
    approval = None
    if body.bulletin_id is not None:
        approval = approved(visible_bulletin(db, user, body.bulletin_id))
    row = schedule.override_row(db, bc, original)
    if not body.cancelled and body.start_at is None and approval is None:
        if row is not None:
            db.delete(row)
        row = None
    else:
        if row is None:
            row = OccurrenceOverride(broadcast_id=bc.id, original_start=body.original_start)
            db.add(row)
        row.cancelled = bool(body.cancelled)
        row.start_at = body.start_at
        row.bulletin_id = approval.bulletin_id if approval else None
        row.approval_id = approval.id if approval else None
        row.media_sha256 = approval.media_sha256 if approval else None
        row.created_by, row.created_at = user.id, utcnow()
    db.flush()
    if row is None or not row.cancelled:
        check_conflicts(db, s, bc, utcnow(), bool(body.override),
                        only={slot_id(bc.id, original)})
    if bc.status == BroadcastStatus.SCHEDULED:
        mark_desired_dirty(db, bc)
    return row


def edit_series(db: Session, s: Settings, user: User, bc: Broadcast,
                body: BroadcastEdit) -> Broadcast:
    """A series changed from now on: it ends now (its past slots stay as they were) and a new
    series, naming it in previous_id, plans from now with the edit; its changed occurrences
    still to come go with it. Checked as a new broadcast is (scope, priority, rule, conflicts)."""
    _editable_series(db, user, bc)
    areas = body.targets.areas if body.targets else bc.target_areas
    nodes = body.targets.nodes if body.targets else bc.target_nodes
    check_targets(db, user, areas, nodes)
    if not target_node_ids(db, areas, nodes):
        raise bad_request("err.no_nodes", ErrorCode.NO_NODES)
    priority = body.priority if body.priority is not None else bc.priority
    status = initial_status(db, user, priority, areas, nodes)
    rule = body.recurrence or bc.recurrence
    assert bc.start_at is not None and rule is not None  # a series has both
    tz = targets_zone(db, areas, nodes, s.timezone)  # an area's zone changed since: the new one
    check_series(rule, bc.start_at, tz)
    exdates = (sorted({to_ms(x) for x in body.exdates}) if body.given("exdates")
               and body.exdates is not None else bc.exdates)
    skips = bc.skip_holidays
    if body.given("skip_holidays") or body.given("tet_days"):
        old = bc.skip_holidays or {}
        chosen = body.skip_holidays if body.given("skip_holidays") else old.get("holidays")
        tet = body.tet_days if body.given("tet_days") else None
        skips = holiday_skips(chosen, tet, None if body.given("tet_days") else old.get("tet_days"))
    now = utcnow()
    new = continue_series(
        db, bc, now, priority=priority, recurrence=rule, tz=tz, exdates=exdates,
        skip_holidays=skips, target_areas=sorted(set(areas)), target_nodes=sorted(set(nodes)),
        volume=body.volume if body.given("volume") else bc.volume, status=status,
        created_by=user.id, confirmed_by=None, confirmed_at=None)
    db.flush()
    check_conflicts(db, s, new, now, bool(body.override))
    if status == BroadcastStatus.SCHEDULED:
        mark_desired_dirty(db, new)
    return new


def continue_series(db: Session, bc: Broadcast, now: dt.datetime, **changes: Any) -> Broadcast:
    """Split the series ``bc`` at ``now``: it ends then (its past slots, their ids and their
    plays stay as they were) and a new series naming it in previous_id plans from then with
    ``changes`` (Broadcast columns); its changed occurrences still to come go with it."""
    fields = {"bulletin_id": bc.bulletin_id, "approval_id": bc.approval_id,
              "media_sha256": bc.media_sha256, "priority": bc.priority,
              "start_at": bc.start_at, "due_at": bc.due_at, "recurrence": bc.recurrence,
              "tz": bc.tz, "exdates": bc.exdates, "skip_holidays": bc.skip_holidays,
              "target_areas": bc.target_areas, "target_nodes": bc.target_nodes,
              "volume": bc.volume, "repeat": bc.repeat, "status": bc.status,
              "created_by": bc.created_by, "confirmed_by": bc.confirmed_by,
              "confirmed_at": bc.confirmed_at, "programme_id": bc.programme_id,
              "programme_revision_id": bc.programme_revision_id}
    new = Broadcast(**{**fields, **changes}, created_at=now, begins_at=now, previous_id=bc.id)
    mark_desired_dirty(db, bc)  # before it ends: the nodes it reached lose its slots
    bc.ends_at = now
    db.add(new)
    db.flush()
    for row in schedule.override_rows(db, bc):
        if row.original_start >= now:
            db.add(OccurrenceOverride(
                broadcast_id=new.id, original_start=row.original_start, cancelled=row.cancelled,
                start_at=row.start_at, bulletin_id=row.bulletin_id, approval_id=row.approval_id,
                media_sha256=row.media_sha256, created_by=row.created_by,
                created_at=row.created_at))
    return new


def check_series(rule: str, start_at: dt.datetime, tz: str) -> None:
    """A 422 naming what is wrong with a series' rule anchored at ``start_at`` (naive UTC) in
    ``tz``, the zone of its targets."""
    try:
        check_recurrence(rule, schedule.aware(start_at), tz=tz)
    except RecurrenceError as err:
        raise recurrence_error(err.code, err.part) from None
    except LunarError:
        raise recurrence_error(RecurrenceErrorCode.INVALID_VALUE, None) from None


def recurrence_error(code: RecurrenceErrorCode, part: str | None) -> ApiError:
    # 422, not 400: the body is as the document describes it, the rule's meaning is refused
    # (the API answers 400 only for what its schema already refuses)
    return ApiError(ErrorCode.INVALID_RECURRENCE, f"err.recurrence.{code}",
                    part=part or "recurrence").with_extra(problem=str(code), part=part)


def mark_desired_dirty(db: Session, bc: Broadcast) -> None:
    """The nodes a series reaches get a new desired state on the dispatcher's next pass."""
    if bc.target_areas or bc.target_nodes:
        db.execute(update(Node).where(_targets(db, bc.target_areas, bc.target_nodes))
                   .values(desired_dirty=True))


def check_broadcast_targets(db: Session, user: User, bc: Broadcast) -> None:
    """403 unless the user may act on every target of the broadcast."""
    for area_id in bc.target_areas:
        auth.check_area(db, user, area_id)
    for node_id in bc.target_nodes:
        node = db.get(Node, node_id)
        if node is not None:
            auth.check_area(db, user, node.cluster_id)


def confirm_broadcast(db: Session, s: Settings, user: User, bc: Broadcast) -> None:
    """The second person's yes to an emergency broadcast: only then is it sent."""
    if bc.status != BroadcastStatus.AWAITING_CONFIRMATION:
        raise ApiError(ErrorCode.CANNOT_CONFIRM, "err.cannot_confirm",
                       status=Word("bcstate", bc.status))
    if not auth.can(user, "broadcast.emergency"):
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    if bc.created_by == user.id:
        raise ApiError(ErrorCode.SECOND_PERSON, "err.second_person")
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    bc.status, bc.confirmed_by, bc.confirmed_at = BroadcastStatus.SCHEDULED, user.id, now
    if bc.recurrence is not None:
        mark_desired_dirty(db, bc)  # a series keeps its anchor; its slots go out from now on
        return
    if bc.start_at is not None and bc.start_at <= now:
        bc.start_at = None
    bc.due_at = due_time(bc.start_at, now, s.schedule_lead_s)


def _targets(db: Session, areas: list[int], nodes: list[str]) -> ColumnElement[bool]:
    """The nodes (not revoked) in ``areas``' subtrees or named in ``nodes``, as a condition:
    by their clusters, not a province's 10,000 node ids as bind parameters."""
    reached = [Node.id.in_(nodes or [""])]
    if areas:
        reached.append(Node.cluster_id.in_(area_subtree_ids(db, areas)))
    return or_(*reached) & Node.revoked_at.is_(None)


def target_node_ids(db: Session, areas: list[int], nodes: list[str]) -> set[str]:
    return set(db.scalars(select(Node.id).where(_targets(db, areas, nodes))))


def broadcast_visible(db: Session, user: User, bc: Broadcast) -> bool:
    """A user scoped to an area sees the broadcasts that reach into it."""
    allowed = auth.user_area_ids(db, user)
    if allowed is None or set(bc.target_areas) & allowed:
        return True
    clusters = set(db.scalars(select(Node.cluster_id).where(
        Node.id.in_(bc.target_nodes or [""]))))
    return bool(clusters & allowed)


def cancel_broadcast(db: Session, s: Settings, user: User, bc: Broadcast) -> None:
    """Not yet dispatched: cancelled outright. Dispatched: a stop for its item to every node."""
    if bc.status in (BroadcastStatus.CANCELLED, BroadcastStatus.SKIPPED):
        raise ApiError(ErrorCode.CANNOT_CANCEL, "err.cannot_cancel",
                       status=Word("bcstate", bc.status))
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    if bc.recurrence is not None or bc.start_at is not None:
        # a series' slots leave every desired state; a timed one-off gives back the series
        # slots it interrupted
        mark_desired_dirty(db, bc)
    if bc.status != BroadcastStatus.DISPATCHED:
        deliveries.cancel(bc.deliveries, now)
    else:
        for node_id in sorted({d.node_id for d in bc.deliveries if d.played_result is None}):
            queue_command(db, s, user, CommandType.STOP, f"node:{node_id}",
                          {"item_id": item_id(bc)}, node_id=node_id, broadcast_id=None,
                          priority=bc.priority,
                          ttl_ms=s.command_ttl_s * 1000)
    bc.status, bc.cancelled_at = BroadcastStatus.CANCELLED, now


ITEM_PREFIX = "bc-"  # a one-off broadcast's item id on the wire: "bc-<id>"


def item_id(bc: Broadcast) -> str:
    return f"{ITEM_PREFIX}{bc.id}"


def item_broadcast_id(item: str) -> int | None:
    """The broadcast a node's item id names (``item_id`` read back), or None: a slot's, or
    another maker's node's own."""
    number = item.removeprefix(ITEM_PREFIX)
    return int(number) if number != item and number.isdecimal() else None


def mark_dispatched(bc: Broadcast, at: dt.datetime) -> None:
    """The dispatcher wrote its commands to the outbox."""
    bc.status, bc.dispatched_at = BroadcastStatus.DISPATCHED, at


def mark_not_sent(bc: Broadcast, status: BroadcastStatus, reason: deliveries.HoldReason) -> None:
    """The dispatcher sends nothing: ``held`` (it cannot be sent) or ``skipped`` (too late),
    with the reason."""
    bc.status, bc.reason = status, reason
