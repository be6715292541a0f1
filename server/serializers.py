"""How areas, nodes, commands and broadcasts appear in the API's JSON answers."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import deliveries
from .models import (Area, Broadcast, Command, Node, OccurrenceOverride, area_zone, from_ms,
                     node_groups, targets_zone)
from .releases import running_version
from .times import iso


def area_json(db: Session, a: Area, default_tz: str) -> dict[str, Any]:
    """An area; ``effective_tz``: its own zone, else the nearest above it, else ``default_tz``
    (the configured zone); ``merged_into_id``: the area it was merged into (null: in use)."""
    return {"id": a.id, "parent_id": a.parent_id, "kind": a.kind, "name": a.name, "code": a.code,
            "group": a.group, "tts_engine": a.tts_engine, "tts_voice": a.tts_voice,
            "chime": a.chime, "emergency_confirm": a.emergency_confirm,
            "quiet_hours": a.quiet_hours, "tz": a.tz,
            "effective_tz": area_zone(db, a.id, default_tz),
            "merged_into_id": a.merged_into_id, "merged_at": iso(a.merged_at)}


def node_json(db: Session, n: Node, alarms: list[dict[str, Any]] | None = None,
              groups: list[str] | None = None) -> dict[str, Any]:
    """A node as the API shows it; ``groups``: its groups when the caller has them already
    (a page of nodes reads each cluster's once)."""
    return {"id": n.id, "name": n.name, "cluster_id": n.cluster_id, "lat": n.lat, "lon": n.lon,
            "online": n.online, "last_seen": iso(n.last_seen), "telemetry": n.last_telemetry,
            "agent_version": running_version(n),
            "desired_version": n.desired_version,
            "desired_applied_version": n.desired_applied_version,
            "groups": node_groups(db, n) if groups is None else groups,
            "alarms": alarms or [],
            "never_connected": n.last_seen is None,
            "maintenance_until": iso(n.maintenance_until),
            "rejected": {"messages": n.rejected_messages or 0,
                         "last_reason": n.last_rejected_reason,
                         "last_at": iso(n.last_rejected_at)}}


def command_json(c: Command) -> dict[str, Any]:
    return {"id": c.id, "type": c.type, "target": c.target, "body": c.body,
            "created_at": iso(c.created_at), "published_at": iso(c.published_at),
            "status": c.status, "reason": c.reason, "result": c.result}


def broadcast_json(db: Session, bc: Broadcast, default_tz: str) -> dict[str, Any]:
    """A broadcast; ``tz``: the zone a series' rule is expanded in (its first target area's,
    or its first node's cluster's; ``default_tz``, the configured zone, when no area sets one)."""
    counts = deliveries.summary(bc.deliveries)
    nodes = []
    for d in bc.deliveries:
        nodes.append({"node_id": d.node_id, "status": d.status, "reason": d.reason,
                      "played": d.played_result, "command_id": d.command_id,
                      "updated_at": iso(d.updated_at)})
    return {"id": bc.id, "bulletin_id": bc.bulletin_id, "priority": bc.priority,
            "status": bc.status, "reason": bc.reason,
            "approval": {"id": bc.approval_id, "sha256": bc.media_sha256,
                         "revision": bc.approval.revision if bc.approval else None},
            "programme_id": bc.programme_id,
            "programme_revision": {"id": bc.programme_revision_id,
                                   "revision": bc.programme_revision.revision,
                                   "sha256": bc.programme_revision.media_sha256}
            if bc.programme_revision else None,
            "confirmed_at": iso(bc.confirmed_at), "start_at": iso(bc.start_at),
            "created_at": iso(bc.created_at),
            "dispatched_at": iso(bc.dispatched_at), "cancelled_at": iso(bc.cancelled_at),
            "targets": {"areas": bc.target_areas, "nodes": bc.target_nodes},
            "volume": bc.volume, "repeat": bc.repeat,
            "recurrence": bc.recurrence,
            "tz": bc.tz or targets_zone(db, bc.target_areas, bc.target_nodes, default_tz),
            "exdates": [iso(from_ms(ms)) for ms in bc.exdates or ()],
            "skip_holidays": (bc.skip_holidays or {}).get("holidays") or [],
            "tet_days": (bc.skip_holidays or {}).get("tet_days"),
            "begins_at": iso(bc.begins_at), "ends_at": iso(bc.ends_at),
            "previous_id": bc.previous_id,
            "next_id": db.scalar(select(Broadcast.id).where(Broadcast.previous_id == bc.id)),
            "occurrences": [occurrence_json(o) for o in db.scalars(
                select(OccurrenceOverride).where(OccurrenceOverride.broadcast_id == bc.id)
                .order_by(OccurrenceOverride.original_start))] if bc.recurrence else [],
            "summary": counts, "nodes": nodes}


def occurrence_json(o: OccurrenceOverride) -> dict[str, Any]:
    """One changed occurrence of a series."""
    return {"original_start": iso(o.original_start), "cancelled": o.cancelled,
            "start_at": iso(o.start_at), "bulletin_id": o.bulletin_id,
            "sha256": o.media_sha256}
