"""Areas: the ward's tree (province down to cluster and zone), each with its MQTT group; adding,
moving and merging areas.

A node listens to the MQTT groups of its cluster and every area above it (models.node_groups),
so moving or merging areas changes the groups of the nodes below: the broker's ACL must be
rewritten (nodes.sync_broker_accounts, by the caller once it has committed) and the nodes get a
new desired state (it carries their groups; the agent re-subscribes when it applies it)."""
from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import QueryableAttribute, Session

from device_agent.protocol import valid_name

from . import audit, auth
from .bodies import AreaCreate, AreaUpdate
from .config import Settings
from .errors import ApiError, ErrorCode
from .i18n import Word
from .models import (Alert, Area, Broadcast, Bulletin, LexiconEntry, Node, Programme, User,
                     area_subtree_ids, area_zone, utcnow)

_T = TypeVar("_T")

# The protocol's every-node group, and the prefix of the names the server makes up itself.
RESERVED_GROUPS = frozenset({"all"})
FALLBACK_GROUP_PREFIX = "area-"


def slug(text: str) -> str:
    """ASCII lowercase slug for MQTT names (Vietnamese letters lose their marks, đ -> d)."""
    text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60]


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_zone(name: str | None) -> None:
    """A 422 unknown_time_zone naming ``name`` unless the zone database knows it (None or "":
    no zone of its own, nothing to check)."""
    if name and name not in _known_zones():
        raise ApiError(ErrorCode.UNKNOWN_TIME_ZONE,
                       "err.unknown_time_zone", zone=name, field="tz")


def create_area(db: Session, user: User, body: AreaCreate) -> Area:
    name, code, kind, parent_id = body.name, body.code, body.kind, body.parent_id
    check_zone(body.tz)
    if parent_id is not None:
        live_area(db, parent_id)
        auth.check_area(db, user, parent_id)
    elif user.area_id is not None:
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    if db.scalar(select(Area).where(Area.code == code)):
        raise ApiError(ErrorCode.DUPLICATE, "err.duplicate", what=Word("thing", "area_code"))
    wanted = slug(code)
    group = wanted if group_name_free(db, wanted) else None  # None: filled from the id below
    area = Area(parent_id=parent_id, kind=kind, name=name, code=code, tz=body.tz or None,
                group=group or f"{FALLBACK_GROUP_PREFIX}pending-{uuid.uuid4().hex}")
    db.add(area)
    db.flush()
    if group is None:
        group, n = f"{FALLBACK_GROUP_PREFIX}{area.id}", 1
        while db.scalar(select(Area).where(Area.group == group, Area.id != area.id)):
            n += 1  # only an area made before these names were reserved can hold it
            group = f"{FALLBACK_GROUP_PREFIX}{area.id}-{n}"
        area.group = group
    return area


def group_name_free(db: Session, group: str) -> bool:
    """Whether an area may take ``group`` as its MQTT group: a valid name, not reserved by the
    protocol or the fallback scheme, and no other area's group (names are compared as slugs,
    so case and spelling of the code cannot make two areas share a group)."""
    return (valid_name(group) and group not in RESERVED_GROUPS
            and not group.startswith(FALLBACK_GROUP_PREFIX)
            and db.scalar(select(Area.id).where(func.lower(Area.group) == group)) is None)


def live_area(db: Session, area_id: int) -> Area:
    """The area, unless there is none (404) or it was merged into another (409)."""
    area = db.get(Area, area_id)
    if area is None:
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    if area.merged_into_id is not None:
        raise ApiError(ErrorCode.AREA_MERGED, "err.area_merged", name=area.name,
                       into=area.merged_into_id)
    return area


def _same_zone(db: Session, default_tz: str, area: Area, zone_after: str) -> None:
    """A 422 when the area and what is below it would change time zone: their series would
    move to other hours (set the zones alike first)."""
    before = area_zone(db, area.id, default_tz)
    if before != zone_after:
        raise ApiError(ErrorCode.ZONE_DIFFERS, "err.area_zone_differs", name=area.name,
                       zone=before, other=zone_after)


def move_area(db: Session, default_tz: str, user: User, area: Area,
              parent_id: int | None) -> bool:
    """Put ``area`` (with everything below it) under ``parent_id`` (None: at the top, for users
    of every area only). Refused: under itself or one of its own areas (a cycle), under a
    merged area, a change of time zone, outside the user's areas. True when it moved; the
    caller commits, then calls nodes.sync_broker_accounts (the nodes' groups changed)."""
    if area.merged_into_id is not None:
        live_area(db, area.id)
    auth.check_area(db, user, area.id)
    if parent_id == area.parent_id:
        return False
    if parent_id is None:
        if user.area_id is not None:
            raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
        zone_after = area.tz or default_tz
    else:
        parent = live_area(db, parent_id)
        auth.check_area(db, user, parent.id)
        if parent.id in area_subtree_ids(db, [area.id]):
            raise ApiError(ErrorCode.AREA_CYCLE, "err.area_cycle", name=area.name,
                           target=parent.name)
        zone_after = area.tz or area_zone(db, parent.id, default_tz)
    _same_zone(db, default_tz, area, zone_after)
    area.parent_id = parent_id
    db.flush()
    _mark_dirty(db, area.id)
    return True


def update_area(db: Session, s: Settings, user: User, area_id: int, body: AreaUpdate
                ) -> tuple[Area, bool]:
    """PATCH /areas/{id}: rename, speech and ward settings (bulletins.update_area_speech), and
    a move (``parent_id``, move_area). The area and whether it moved; the caller commits, then
    syncs the broker when it moved."""
    from .bulletins import update_area_speech  # bulletins imports this module
    live_area(db, area_id)  # a merged area changes no more
    area = update_area_speech(db, s, user, area_id, body)
    moved = body.given("parent_id") and move_area(db, s.timezone, user, area, body.parent_id)
    return area, moved


def _mark_dirty(db: Session, area_id: int) -> None:
    subtree = area_subtree_ids(db, [area_id])
    db.execute(update(Node).where(Node.cluster_id.in_(subtree)).values(desired_dirty=True))


@dataclass
class Merge:
    """What a merge moved: ids of each kind of row (the audit entry's detail and the API's
    answer)."""
    areas: list[int] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    broadcasts: list[int] = field(default_factory=list)   # retargeted to the kept area
    series_split: list[list[int]] = field(default_factory=list)  # [old, new] per series
    users: list[int] = field(default_factory=list)
    programmes: list[int] = field(default_factory=list)
    bulletins: list[int] = field(default_factory=list)
    lexicon: list[int] = field(default_factory=list)
    lexicon_dropped: list[str] = field(default_factory=list)  # the kept area has its own
    alerts: list[int] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _ids(db: Session, column: QueryableAttribute[_T], where: ColumnElement[bool]) -> list[_T]:
    return list(db.scalars(select(column).where(where).order_by(column)))


def _move_broadcasts(db: Session, keep: Area, gone: Area, children: list[int],
                     own_nodes: list[str], now: dt.datetime, done: Merge) -> None:
    """What is scheduled for ``gone`` goes to ``keep``: a broadcast not sent yet is retargeted,
    a series on air split at ``now`` (its future to ``keep``). What reached ``gone`` before
    (sent, ended, cancelled, a split series' past) names its former child areas and nodes
    too: the report of its past reaches the nodes it reached then."""
    from .broadcasts import BroadcastStatus, continue_series  # broadcasts imports bulletins

    def retarget(areas: list[int]) -> list[int]:
        return list(dict.fromkeys(keep.id if a == gone.id else a for a in areas))

    def remember(bc: Broadcast) -> None:
        bc.target_areas = list(dict.fromkeys([*bc.target_areas, *children]))
        bc.target_nodes = list(dict.fromkeys([*(bc.target_nodes or []), *own_nodes]))

    waiting = (BroadcastStatus.SCHEDULED, BroadcastStatus.AWAITING_CONFIRMATION)
    for bc in db.scalars(select(Broadcast).order_by(Broadcast.id)):
        if gone.id not in (bc.target_areas or []):
            continue
        on_air = bc.status == BroadcastStatus.SCHEDULED and (bc.ends_at is None
                                                             or bc.ends_at > now)
        if bc.status == BroadcastStatus.AWAITING_CONFIRMATION or (
                bc.recurrence is None and bc.status in waiting and not bc.deliveries):
            bc.target_areas = retarget(bc.target_areas)
            done.broadcasts.append(bc.id)
        elif bc.recurrence is not None and on_air:
            new = continue_series(db, bc, now, target_areas=retarget(bc.target_areas))
            remember(bc)
            done.series_split.append([bc.id, new.id])
        else:
            remember(bc)


def merge_areas(db: Session, default_tz: str, actor: User, keep_id: int, gone_id: int
                ) -> Merge:
    """Merge area ``gone_id`` into ``keep_id`` (two wards that become one) in the caller's
    transaction: everything ``gone`` holds moves to ``keep``: its child areas (clusters) with
    their nodes, its own nodes, its users, programmes, bulletins, lexicon entries (the kept
    area's own reading of a term wins) and open alerts, and what is scheduled for it: a
    broadcast not sent yet is retargeted; a series on air is split now
    (broadcasts.continue_series), its future going to ``keep`` and its past kept.

    ``gone`` is not deleted but marked merged (merged_into_id, merged_at): past broadcasts,
    alerts and audit entries that name it still resolve to it, and every broadcast that reached
    it before (sent, ended, cancelled) names its former areas and nodes as well, so the airplay
    report of its past plans and counts exactly the nodes it reached then.

    Refused with nothing changed: the same area, ``keep`` inside ``gone`` (a cycle), areas of
    different kinds or time zones, a merged area, either outside the actor's areas. Audited;
    the caller commits, then calls nodes.sync_broker_accounts (the nodes' groups changed)."""
    keep, gone = live_area(db, keep_id), live_area(db, gone_id)
    auth.check_area(db, actor, gone.id)
    auth.check_area(db, actor, keep.id)
    if keep.id in area_subtree_ids(db, [gone.id]):
        raise ApiError(ErrorCode.AREA_CYCLE,
                       "err.area_cycle", name=gone.name, target=keep.name)
    if keep.kind != gone.kind:
        raise ApiError(ErrorCode.MERGE_KIND, "err.merge_kind", name=gone.name,
                       kind=Word("area.kind", gone.kind), target=keep.name,
                       target_kind=Word("area.kind", keep.kind))
    _same_zone(db, default_tz, gone, area_zone(db, keep.id, default_tz))
    now = utcnow()
    done = Merge()
    children = _ids(db, Area.id, Area.parent_id == gone.id)
    own_nodes = _ids(db, Node.id, Node.cluster_id == gone.id)
    done.areas, done.nodes = children, own_nodes + _ids(db, Node.id, Node.cluster_id.in_(
        area_subtree_ids(db, children) if children else []))
    _move_broadcasts(db, keep, gone, children, own_nodes, now, done)
    db.execute(update(Area).where(Area.parent_id == gone.id).values(parent_id=keep.id))
    db.execute(update(Node).where(Node.cluster_id == gone.id).values(cluster_id=keep.id))
    for model, into in ((User, done.users), (Programme, done.programmes),
                        (Bulletin, done.bulletins)):
        into += _ids(db, model.id, model.area_id == gone.id)
        db.execute(update(model).where(model.area_id == gone.id).values(area_id=keep.id))
    kept_terms = set(db.scalars(select(LexiconEntry.term).where(LexiconEntry.area_id == keep.id)))
    for entry in db.scalars(select(LexiconEntry).where(LexiconEntry.area_id == gone.id)
                            .order_by(LexiconEntry.id)):
        if entry.term in kept_terms:
            done.lexicon_dropped.append(entry.term)
            db.delete(entry)
        else:
            entry.area_id = keep.id
            done.lexicon.append(entry.id)
    from .alerts import State  # here: alerts reads reports, which read areas
    open_alerts = (Alert.area_id == gone.id) & (Alert.state != State.RESOLVED)
    done.alerts = _ids(db, Alert.id, open_alerts)
    db.execute(update(Alert).where(open_alerts).values(area_id=keep.id))
    gone.merged_into_id, gone.merged_at = keep.id, now
    db.flush()
    _mark_dirty(db, keep.id)  # new groups for the nodes moved, new slots for all of them
    audit.record(db, audit.Action.AREA_MERGE, (audit.Target.AREA, gone.id),
                 {"into": keep.id, "name": gone.name, "into_name": keep.name, **done.json()},
                 actor=actor)
    return done

