"""Areas: the ward's tree (province down to cluster and zone), each with its MQTT group."""
from __future__ import annotations

import functools
import re
import unicodedata
import uuid
import zoneinfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from device_agent.protocol import valid_name

from . import auth
from .bodies import AreaCreate
from .errors import ApiError
from .models import Area, User

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
        raise ApiError(422, "unknown_time_zone", "err.unknown_time_zone", zone=name, field="tz")


def create_area(db: Session, user: User, body: AreaCreate) -> Area:
    name, code, kind, parent_id = body.name, body.code, body.kind, body.parent_id
    check_zone(body.tz)
    if parent_id is not None:
        if db.get(Area, parent_id) is None:
            raise ApiError(404, "unknown_area", "err.unknown_area", id=parent_id)
        auth.check_area(db, user, parent_id)
    elif user.area_id is not None:
        raise ApiError(403, "forbidden", "err.forbidden")
    if db.scalar(select(Area).where(Area.code == code)):
        raise ApiError(409, "duplicate", "err.duplicate", what="thing.area_code")
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
