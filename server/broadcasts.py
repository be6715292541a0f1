"""Broadcasts: a bulletin's approved recording (or a programme's media) sent to areas and
nodes, now, at a time or as a series (a recurrence rule: its slots reach the nodes in their
desired states, never as play commands); the second person's confirmation of an emergency,
and cancelling. This module alone assigns a broadcast's status; the dispatcher calls
mark_dispatched and mark_not_sent."""
from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from device_agent.protocol import PRIORITY_NAMES
from schedules.lunar import LunarError
from schedules.recurrence import RecurrenceError, RecurrenceErrorCode
from schedules.slots import check_recurrence

from . import auth, deliveries, schedule
from .bodies import BroadcastCreate
from .bulletins import current_approval, visible_bulletin
from .config import Settings
from .errors import ApiError, bad_request
from .models import (Area, Broadcast, Bulletin, Node, Programme, User, area_ancestors,
                     area_subtree_ids, to_ms, utcnow)
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


CONFIRM_PRIORITY = PRIORITY_NAMES["live"]  # live and emergency preempt everything below them


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
    for area_id in areas:
        if db.get(Area, area_id) is None:
            raise ApiError(404, "unknown_area", "err.unknown_area", id=area_id)
        auth.check_area(db, user, area_id)
    for node_id in nodes:
        node = db.get(Node, node_id)
        if node is None:
            raise ApiError(404, "unknown_node", "err.unknown_node", id=node_id)
        auth.check_area(db, user, node.cluster_id)
    what = _airs(db, content)
    if not target_node_ids(db, areas, nodes):
        raise bad_request("err.no_nodes", "no_nodes")
    status = BroadcastStatus.SCHEDULED
    if priority >= CONFIRM_PRIORITY:
        if needs_confirmation(db, areas, nodes):
            # nothing airs until a second person confirms
            status = BroadcastStatus.AWAITING_CONFIRMATION
        elif not auth.can(user, "broadcast.emergency"):
            raise ApiError(403, "emergency_forbidden", "err.emergency_forbidden")
    now = utcnow()
    series = body.recurrence is not None
    if body.recurrence is not None and start_at is not None:  # the model requires start_at
        check_series(body.recurrence, start_at, s.timezone)
    start_at = start_at if series or start_at is None or start_at > now else None
    # (a one-off's time already past means now; a series' is its anchor)
    bc = Broadcast(**what, priority=priority, start_at=start_at,
                   # a series is never dispatched as a command: due_at only records its anchor
                   due_at=start_at if series else due_time(start_at, now, s.schedule_lead_s),
                   recurrence=body.recurrence,
                   exdates=sorted({to_ms(x) for x in body.exdates or ()}) if series else None,
                   target_areas=sorted(set(areas)), target_nodes=sorted(set(nodes)),
                   volume=volume, repeat=repeat, status=status, created_by=user.id,
                   created_at=now)
    db.add(bc)
    db.flush()
    check_conflicts(db, s, bc, now, bool(body.override))
    if series and status == BroadcastStatus.SCHEDULED:
        mark_desired_dirty(db, bc)
    return bc


def _content(db: Session, user: User, body: BroadcastCreate) -> Bulletin | Programme:
    """What the body names to air, when the user may see it (404 otherwise)."""
    if body.bulletin_id is not None:
        return visible_bulletin(db, user, body.bulletin_id)
    assert body.programme_id is not None  # the body holds exactly one of them
    return visible_programme(db, user, body.programme_id)


def _airs(db: Session, content: Bulletin | Programme) -> dict:
    """The broadcast's columns fixing what airs: the bulletin's approval, or the programme's
    current revision; 409 not_approved when it may not air as it stands."""
    if isinstance(content, Programme):
        rev = content.current
        reason, ok = revision_problem(db, content.id, rev.id, rev.media_sha256)
        if ok is None:
            raise ApiError(409, "not_approved", "err.programme_not_approved", id=content.id,
                           reason=reason)
        return {"programme_id": content.id, "programme_revision_id": rev.id,
                "media_sha256": rev.media_sha256}
    approval = current_approval(content)
    if approval is None:
        raise ApiError(409, "not_approved", "err.bulletin_not_approved", id=content.id,
                       status=content.status)
    return {"bulletin_id": content.id, "approval_id": approval.id,
            "media_sha256": approval.media_sha256}


def check_conflicts(db: Session, s: Settings, bc: Broadcast, now: dt.datetime,
                    override: bool) -> None:
    """409 schedule_conflict, with the clashing slots, when the new broadcast's slots overlap
    another's on the same node and neither a higher priority nor ``override`` allows it."""
    report = schedule.conflicts(db, s.timezone, bc, now=schedule.aware(now), override=override)
    if not report.ok:
        raise ApiError(409, "schedule_conflict", "err.schedule_conflict",
                       count=len(report.clashes)).with_extra(
            clashes=schedule.clashes_json(report))


def check_series(rule: str, start_at: dt.datetime, tz: str) -> None:
    """A 422 naming what is wrong with a series' rule anchored at ``start_at`` (naive UTC)."""
    try:
        check_recurrence(rule, schedule.aware(start_at), tz=tz)
    except RecurrenceError as err:
        raise recurrence_error(err.code, err.part) from None
    except LunarError:
        raise recurrence_error(RecurrenceErrorCode.INVALID_VALUE, None) from None


def recurrence_error(code: RecurrenceErrorCode, part: str | None) -> ApiError:
    # 422, not 400: the body is as the document describes it, the rule's meaning is refused
    # (the API answers 400 only for what its schema already refuses)
    return ApiError(422, "invalid_recurrence", f"err.recurrence.{code}",
                    part=part or "recurrence").with_extra(problem=str(code), part=part)


def mark_desired_dirty(db: Session, bc: Broadcast) -> None:
    """The nodes a series reaches get a new desired state on the dispatcher's next pass."""
    ids = target_node_ids(db, bc.target_areas, bc.target_nodes)
    if ids:
        db.execute(update(Node).where(Node.id.in_(ids)).values(desired_dirty=True))


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
        raise ApiError(409, "cannot_confirm", "err.cannot_confirm", status=bc.status)
    if not auth.can(user, "broadcast.emergency"):
        raise ApiError(403, "forbidden", "err.forbidden")
    if bc.created_by == user.id:
        raise ApiError(403, "second_person", "err.second_person")
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    bc.status, bc.confirmed_by, bc.confirmed_at = BroadcastStatus.SCHEDULED, user.id, now
    if bc.recurrence is not None:
        mark_desired_dirty(db, bc)  # a series keeps its anchor; its slots go out from now on
        return
    if bc.start_at is not None and bc.start_at <= now:
        bc.start_at = None
    bc.due_at = due_time(bc.start_at, now, s.schedule_lead_s)


def target_node_ids(db: Session, areas: list[int], nodes: list[str]) -> set[str]:
    ids = set(nodes)
    if areas:
        subtree = area_subtree_ids(db, areas)
        ids |= set(db.scalars(select(Node.id).where(Node.cluster_id.in_(subtree))))
    revoked = set(db.scalars(select(Node.id).where(Node.id.in_(ids),
                                                   Node.revoked_at.is_not(None))))
    return ids - revoked


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
        raise ApiError(409, "cannot_cancel", "err.cannot_cancel", status=bc.status)
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    if bc.recurrence is not None:
        mark_desired_dirty(db, bc)  # its slots leave every desired state
    if bc.status != BroadcastStatus.DISPATCHED:
        deliveries.cancel(bc.deliveries, now)
    else:
        for node_id in sorted({d.node_id for d in bc.deliveries if d.played_result is None}):
            queue_command(db, s, user, "stop", f"node:{node_id}",
                          {"item_id": item_id(bc)}, node_id=node_id, broadcast_id=None,
                          priority=bc.priority,
                          ttl_ms=s.command_ttl_s * 1000)
    bc.status, bc.cancelled_at = BroadcastStatus.CANCELLED, now


def item_id(bc: Broadcast) -> str:
    return f"bc-{bc.id}"


def mark_dispatched(bc: Broadcast, at: dt.datetime) -> None:
    """The dispatcher wrote its commands to the outbox."""
    bc.status, bc.dispatched_at = BroadcastStatus.DISPATCHED, at


def mark_not_sent(bc: Broadcast, status: BroadcastStatus, reason: str) -> None:
    """The dispatcher sends nothing: ``held`` (it cannot be sent) or ``skipped`` (too late),
    with the reason."""
    bc.status, bc.reason = status, reason
