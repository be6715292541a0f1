"""What the API and the pages do, in one place: areas, node provisioning, bulletins and their
approval, broadcasts and their reports, immediate node commands. Each function validates its
input fully before it writes anything, and leaves committing to the caller."""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import secrets
import unicodedata
import uuid
from typing import Any, Mapping

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from device_agent import protocol
from device_agent.protocol import PRIORITY_NAMES, command_topic, priority_value, valid_name

from . import auth
from .config import Settings
from .errors import ApiError, bad_request, not_found
from .models import (MAX_DB_INT, Area, Broadcast, Bulletin, BulletinApproval, Command, Delivery,
                     Node, ServerKey, User, area_ancestors, area_subtree_ids, node_groups, utcnow)
from .mosquitto import SERVER_ACCOUNT_PREFIX, MosquittoFiles, password_hash

AREA_KINDS = ("province", "city", "district", "ward", "commune", "town", "cluster", "zone")
NODE_COMMANDS = ("set_volume", "amp", "test", "stop", "reboot")
DELIVERY_RANK = {"pending": 0, "sent": 1, "received": 2, "started": 3}
MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
TERMINAL = ("finished", "failed", "rejected", "preempted", "stopped", "skipped", "cancelled")


def settings() -> Settings:
    return current_app.config["SETTINGS"]


# --- field checks -----------------------------------------------------------------------------

def need(data: Mapping[str, Any], name: str, kind: type | tuple = str, *, max_len: int = 0):
    """A required field of the given type (strings stripped and non-empty)."""
    if name not in data or data[name] is None or (isinstance(data[name], str)
                                                  and not data[name].strip()):
        raise bad_request("err.missing_field", "missing_field", field=name)
    return check(data, name, kind, max_len=max_len)


def check(data: Mapping[str, Any], name: str, kind: type | tuple = str, *, max_len: int = 0):
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise bad_request("err.invalid_field", field=name, detail="bool")
    if kind is int:
        value = whole(value)
    if kind is float and isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:
            raise bad_request("err.invalid_field", field=name,
                              detail="number out of range") from None
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise bad_request("err.invalid_field", field=name, detail=f"expected {expected}")
    if isinstance(value, int) and not -MAX_DB_INT <= value <= MAX_DB_INT:
        raise bad_request("err.invalid_field", field=name, detail="number out of range")
    if isinstance(value, str):
        value = value.strip()
        if max_len and len(value) > max_len:
            raise bad_request("err.invalid_field", field=name, detail=f"longer than {max_len}")
    return value


def whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (as JSON Schema reads it): give it as an int, recursively;
    any other value is returned as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole(v) for v in value]
    if isinstance(value, dict):
        return {k: whole(v) for k, v in value.items()}
    return value


def slug(text: str) -> str:
    """ASCII lowercase slug for MQTT names (Vietnamese letters lose their marks, đ -> d)."""
    text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60]


# --- areas --------------------------------------------------------------------------------------

def area_json(a: Area) -> dict:
    return {"id": a.id, "parent_id": a.parent_id, "kind": a.kind, "name": a.name, "code": a.code,
            "group": a.group, "tts_engine": a.tts_engine, "tts_voice": a.tts_voice,
            "chime": a.chime, "emergency_confirm": a.emergency_confirm}


def create_area(db: Session, user: User, data: Mapping[str, Any]) -> Area:
    name = need(data, "name", max_len=200)
    code = need(data, "code", max_len=64)
    kind = need(data, "kind", max_len=32)
    if kind not in AREA_KINDS:
        raise bad_request("err.invalid_field", field="kind", detail=f"one of {', '.join(AREA_KINDS)}")
    parent_id = check(data, "parent_id", int)
    if parent_id is not None:
        if db.get(Area, parent_id) is None:
            raise ApiError(404, "unknown_area", "err.unknown_area", id=parent_id)
        auth.check_area(db, user, parent_id)
    elif user.area_id is not None:
        raise ApiError(403, "forbidden", "err.forbidden")
    if db.scalar(select(Area).where(Area.code == code)):
        raise ApiError(409, "duplicate", "err.duplicate", what="thing.area_code")
    group = slug(code)
    if not group_name_free(db, group):
        group = None  # filled from the id below
    area = Area(parent_id=parent_id, kind=kind, name=name, code=code,
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


# The protocol's every-node group, and the prefix of the names the server makes up itself.
RESERVED_GROUPS = frozenset({"all"})
FALLBACK_GROUP_PREFIX = "area-"


def group_name_free(db: Session, group: str) -> bool:
    """Whether an area may take ``group`` as its MQTT group: a valid name, not reserved by the
    protocol or the fallback scheme, and no other area's group (names are compared as slugs,
    so case and spelling of the code cannot make two areas share a group)."""
    return (valid_name(group) and group not in RESERVED_GROUPS
            and not group.startswith(FALLBACK_GROUP_PREFIX)
            and db.scalar(select(Area.id).where(func.lower(Area.group) == group)) is None)


# --- nodes --------------------------------------------------------------------------------------

def node_json(db: Session, n: Node, alarms: list | None = None) -> dict:
    return {"id": n.id, "name": n.name, "cluster_id": n.cluster_id, "lat": n.lat, "lon": n.lon,
            "online": n.online, "last_seen": iso(n.last_seen), "telemetry": n.last_telemetry,
            "desired_version": n.desired_version,
            "desired_applied_version": n.desired_applied_version,
            "groups": node_groups(db, n), "alarms": alarms or [],
            "rejected": {"messages": n.rejected_messages or 0,
                         "last_reason": n.last_rejected_reason,
                         "last_at": iso(n.last_rejected_at)}}


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z") \
        if value else None


def sync_broker_accounts(sessions) -> bool:
    """Rewrite Mosquitto's password file and ACL from the committed registry, then SIGHUP it.

    Call it after committing. A file lock makes read-and-write one step, so two web processes
    provisioning at once cannot write a file that misses the other's node."""
    s = settings()
    if not s.mosquitto_dir:
        return False
    files = MosquittoFiles(s.mosquitto_dir, s.topic_prefix)
    os.makedirs(s.mosquitto_dir, exist_ok=True)
    with open(os.path.join(s.mosquitto_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with sessions() as db:
            accounts = {s.mqtt_username: password_hash(s.mqtt_password)}
            nodes = {}
            for node in db.scalars(select(Node).where(Node.revoked_at.is_(None))):
                accounts[node.id] = node.mqtt_password_hash
                nodes[node.id] = node_groups(db, node)
        return files.apply(accounts, s.mqtt_username, nodes)


AGENT_CA_FILE = "/etc/loa-agent/ca.pem"  # where hardware/install-pi.sh puts mqtt.ca_pem


def node_tls(s: Settings) -> bool:
    """Whether provisioned nodes connect over TLS (the broker has a TLS listener for them)."""
    return bool(s.mqtt_tls_port) or s.mqtt_tls


def agent_config(node: Node, password: str, groups: list[str], keys: list[dict]) -> str:
    """The agent's config file (TOML) for a newly provisioned node."""
    s = settings()

    def q(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    lines = [
        f"# LoaPhuong speaker node agent: {node.name}",
        f"node_id = {q(node.id)}",
        f"topic_prefix = {q(s.topic_prefix)}",
        "groups = [" + ", ".join(q(g) for g in groups) + "]",
        'state_dir = "/var/lib/loa-agent"',
        f"telemetry_s = {s.node_telemetry_s}",
        f"tz = {q(s.timezone)}",
        "",
        "[mqtt]",
        f"host = {q(s.node_mqtt_host)}",
        f"port = {s.node_mqtt_port}",
        f"username = {q(node.id)}",
        f"password = {q(password)}",
        f"tls = {'true' if node_tls(s) else 'false'}",
        # the CA certificate of the provisioning answer's mqtt.ca_pem, saved on the node
        f"ca_file = {q(AGENT_CA_FILE if node_tls(s) and s.ca_file else '')}",
    ]
    for key in keys:
        lines += ["", "[[server_keys]]", f"kid = {q(key['kid'])}",
                  f"public_key = {q(key['public_key'])}"]
    lines += ["", "[player]", 'kind = "auto"', 'sink_dir = ""', "realtime = true",
              "", "[amp]", 'kind = "none"', "gpio_pin = 17",
              "", "[system]", 'reboot_command = "systemctl reboot"', ""]
    return "\n".join(lines)


def provision_node(db: Session, user: User, data: Mapping[str, Any]) -> dict:
    """Register a node in a cluster with broker credentials; returns the provisioning answer.
    The caller commits, then calls sync_broker_accounts so the broker accepts the node."""
    cluster_id = need(data, "cluster_id", int)
    name = need(data, "name", max_len=200)
    lat = check(data, "lat", float)
    lon = check(data, "lon", float)
    if lat is not None and not -90 <= lat <= 90:
        raise bad_request("err.invalid_field", field="lat", detail="-90..90")
    if lon is not None and not -180 <= lon <= 180:
        raise bad_request("err.invalid_field", field="lon", detail="-180..180")
    cluster = db.get(Area, cluster_id)
    if cluster is None:
        raise ApiError(404, "unknown_area", "err.unknown_area", id=cluster_id)
    if cluster.kind != "cluster":
        raise bad_request("err.not_cluster", "not_cluster", id=cluster_id)
    auth.check_area(db, user, cluster_id)
    node_id = check(data, "id", str, max_len=63)
    if node_id is not None:
        if not valid_name(node_id):
            raise bad_request("err.invalid_field", field="id", detail="[a-z0-9][a-z0-9-]{1,62}")
        if node_id.startswith(SERVER_ACCOUNT_PREFIX):
            raise bad_request("err.invalid_field", field="id",
                              detail=f"{SERVER_ACCOUNT_PREFIX}… is kept for the server's accounts")
        if db.get(Node, node_id):
            raise ApiError(409, "duplicate", "err.duplicate", what="thing.node_id")
    else:
        base = slug(f"{cluster.group}-{name}")[:56] or cluster.group
        if base.startswith(SERVER_ACCOUNT_PREFIX):
            base = "n-" + base[:54]
        node_id, n = base, 1
        while db.get(Node, node_id) is not None or not valid_name(node_id):
            n += 1
            node_id = f"{base}-{n}"
    if node_id == settings().mqtt_username:
        raise ApiError(409, "duplicate", "err.duplicate", what="thing.node_id")
    password = secrets.token_urlsafe(24)
    node = Node(id=node_id, cluster_id=cluster_id, name=name, lat=lat, lon=lon,
                mqtt_password_hash=password_hash(password), desired_dirty=True)
    db.add(node)
    db.flush()
    groups = node_groups(db, node)
    keys = [{"kid": k.kid, "public_key": k.public_key}
            for k in db.scalars(select(ServerKey).where(ServerKey.state != "revoked")
                                .order_by(ServerKey.created_at))]
    s = settings()
    mqtt = {"host": s.node_mqtt_host, "port": s.node_mqtt_port, "username": node.id,
            "password": password, "tls": node_tls(s)}
    if node_tls(s) and s.ca_file:
        with open(s.ca_file, encoding="ascii") as f:
            mqtt["ca_pem"] = f.read()
    return {"id": node.id, "name": node.name, "cluster_id": cluster_id, "mqtt": mqtt,
            "topic_prefix": s.topic_prefix, "groups": groups, "server_keys": keys,
            "config": agent_config(node, password, groups, keys)}


def revoke_node(db: Session, user: User, node_id: str) -> Node:
    """Take a node out of service for good (a stolen or retired Pi): the caller commits, then
    calls sync_broker_accounts, which drops its account and ACL; Mosquitto's reload then
    disconnects its live session. Its retained desired state is cleared through the outbox
    (an empty retained message, unsigned: it carries no command). Revoking twice is a no-op."""
    node = db.get(Node, node_id)
    if node is None:
        raise ApiError(404, "unknown_node", "err.unknown_node", id=node_id)
    auth.check_area(db, user, node.cluster_id)
    if node.revoked_at is not None:
        return node
    node.revoked_at, node.online, node.desired_dirty = utcnow(), False, False
    node.mqtt_password_hash = "!revoked"
    db.add(Command(id=str(uuid.uuid4()), type="desired", target=f"node:{node.id}",
                   topic=command_topic(settings().topic_prefix, "desired", f"node:{node.id}"),
                   body={}, payload="", retain=True, node_id=node.id, ttl_ms=0,
                   created_by=user.id))
    return node


def queue_command(db: Session, user: User | None, type_: str, target: str, body: dict, *,
                  ttl_ms: int, broadcast_id: int | None = None, node_id: str | None = None,
                  retain: bool = False, priority: int = 0) -> Command:
    """Put a command in the outbox; the dispatcher signs and publishes it.

    Nothing reaches the outbox that cannot be signed: the body is checked against the protocol
    here (a 400 naming the problem), so one bad row can never hold up the others."""
    problem = protocol.body_problem(type_, body)
    if problem:
        raise bad_request("err.invalid_field", field="body", detail=problem)
    topic = command_topic(settings().topic_prefix, type_, target)
    cmd = Command(id=str(uuid.uuid4()), type=type_, target=target, topic=topic, body=body,
                  retain=retain, broadcast_id=broadcast_id, node_id=node_id, ttl_ms=ttl_ms,
                  priority=priority, created_by=user.id if user else None, created_at=utcnow())
    db.add(cmd)
    return cmd


def node_command(db: Session, user: User, node_id: str, data: Mapping[str, Any]) -> Command:
    """An immediate command to one node, checked before it is queued."""
    node = db.get(Node, node_id)
    if node is None:
        raise ApiError(404, "unknown_node", "err.unknown_node", id=node_id)
    auth.check_area(db, user, node.cluster_id)
    type_ = need(data, "type")
    if type_ not in NODE_COMMANDS:
        raise bad_request("err.invalid_field", field="type", detail=", ".join(NODE_COMMANDS))
    body = whole(check(data, "body", dict) or {})
    return queue_command(db, user, type_, f"node:{node.id}", body, node_id=node.id,
                         ttl_ms=settings().command_ttl_s * 1000,
                         priority=body.get("max_priority", 0) if type_ == "stop" else 0)


def command_json(c: Command) -> dict:
    return {"id": c.id, "type": c.type, "target": c.target, "body": c.body,
            "created_at": iso(c.created_at), "published_at": iso(c.published_at),
            "status": c.status, "reason": c.reason, "result": c.result}


# --- broadcasts ---------------------------------------------------------------------------------

def parse_time(value: Any, field: str) -> dt.datetime | None:
    """ISO 8601 (a time without zone is in the configured zone) or epoch ms -> naive UTC."""
    if value is None:
        return None
    value = whole(value)
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_EPOCH_MS:
                raise ValueError("epoch ms out of range")
            return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc).replace(tzinfo=None)
        if not isinstance(value, str):
            raise bad_request("err.invalid_field", field=field, detail="ISO 8601 or epoch ms")
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=settings().tz)
        return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        # not a time, or one out of the range a clock or a database column holds
        raise bad_request("err.invalid_field", field=field, detail="ISO 8601") from None


CONFIRM_PRIORITY = PRIORITY_NAMES["live"]  # live and emergency preempt everything below them


def visible_bulletin(db: Session, user: User, bulletin_id: int, *, manage: bool = False
                     ) -> Bulletin:
    """The bulletin when the user may see it (404 otherwise). A user scoped to an area sees
    that area's bulletins and unscoped ones; ``manage`` (edit, submit, approve, archive) needs
    the bulletin's own area inside the user's: an unscoped bulletin is only for unscoped users."""
    b = db.get(Bulletin, bulletin_id)
    allowed = auth.user_area_ids(db, user)
    if b is None or (allowed is not None and b.area_id is not None
                     and b.area_id not in allowed):
        raise not_found("thing.bulletin")
    if manage and allowed is not None and b.area_id is None:
        raise ApiError(403, "forbidden_area", "err.forbidden_area", area="-")
    return b


def current_approval(b: Bulletin) -> BulletinApproval | None:
    """The approval of the bulletin's current revision, when it is approved as it stands."""
    if b.status != "approved":
        return None
    for a in reversed(b.approvals):
        if a.revoked_at is None and a.revision == b.revision \
                and a.media_sha256 == b.media_sha256:
            return a
    return None


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


def create_broadcast(db: Session, user: User, data: Mapping[str, Any]) -> Broadcast:
    bulletin_id = need(data, "bulletin_id", int)
    targets = whole(need(data, "targets", dict))
    areas = targets.get("areas") or []
    nodes = targets.get("nodes") or []
    if not isinstance(areas, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 < a <= MAX_DB_INT for a in areas):
        raise bad_request("err.invalid_field", field="targets.areas", detail="list of area ids")
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise bad_request("err.invalid_field", field="targets.nodes", detail="list of node ids")
    if not areas and not nodes:
        raise bad_request("err.no_targets", "no_targets")
    try:
        priority = priority_value(whole(data.get("priority", "normal")))
    except ValueError:
        raise bad_request("err.invalid_field", field="priority",
                          detail=", ".join(PRIORITY_NAMES) + " or 0-9") from None
    volume = check(data, "volume", int)
    if volume is not None and not 0 <= volume <= 100:
        raise bad_request("err.invalid_field", field="volume", detail="0-100")
    repeat = check(data, "repeat", int) or 1
    if not 1 <= repeat <= 20:
        raise bad_request("err.invalid_field", field="repeat", detail="1-20")
    if data.get("recurrence") is not None:
        raise bad_request("err.invalid_field", field="recurrence", detail="not supported yet")
    start_at = parse_time(data.get("start_at"), "start_at")
    b = visible_bulletin(db, user, bulletin_id)
    for area_id in areas:
        if db.get(Area, area_id) is None:
            raise ApiError(404, "unknown_area", "err.unknown_area", id=area_id)
        auth.check_area(db, user, area_id)
    for node_id in nodes:
        node = db.get(Node, node_id)
        if node is None:
            raise ApiError(404, "unknown_node", "err.unknown_node", id=node_id)
        auth.check_area(db, user, node.cluster_id)
    approval = current_approval(b)
    if approval is None:
        raise ApiError(409, "not_approved", "err.bulletin_not_approved", id=b.id, status=b.status)
    if not target_node_ids(db, areas, nodes):
        raise bad_request("err.no_nodes", "no_nodes")
    status = "scheduled"
    if priority >= CONFIRM_PRIORITY:
        if needs_confirmation(db, areas, nodes):
            status = "awaiting_confirmation"  # nothing airs until a second person confirms
        elif not auth.can(user, "broadcast.emergency"):
            raise ApiError(403, "emergency_forbidden", "err.emergency_forbidden")
    now = utcnow()
    if start_at is not None and start_at <= now:
        start_at = None  # a time already past means now
    bc = Broadcast(bulletin_id=b.id, approval_id=approval.id, media_sha256=approval.media_sha256,
                   priority=priority, start_at=start_at, due_at=due_time(start_at, now),
                   target_areas=sorted(set(areas)), target_nodes=sorted(set(nodes)),
                   volume=volume, repeat=repeat, status=status, created_by=user.id,
                   created_at=now)
    db.add(bc)
    db.flush()
    return bc


def due_time(start_at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When the dispatcher sends a broadcast: now, or schedule_lead_s before its start."""
    if start_at is None:
        return now
    return max(now, start_at - dt.timedelta(seconds=settings().schedule_lead_s))


def check_broadcast_targets(db: Session, user: User, bc: Broadcast) -> None:
    """403 unless the user may act on every target of the broadcast."""
    for area_id in bc.target_areas:
        auth.check_area(db, user, area_id)
    for node_id in bc.target_nodes:
        node = db.get(Node, node_id)
        if node is not None:
            auth.check_area(db, user, node.cluster_id)


def confirm_broadcast(db: Session, user: User, bc: Broadcast) -> None:
    """The second person's yes to an emergency broadcast: only then is it sent."""
    if bc.status != "awaiting_confirmation":
        raise ApiError(409, "cannot_confirm", "err.cannot_confirm", status=bc.status)
    if not auth.can(user, "broadcast.emergency"):
        raise ApiError(403, "forbidden", "err.forbidden")
    if bc.created_by == user.id:
        raise ApiError(403, "second_person", "err.second_person")
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    if bc.start_at is not None and bc.start_at <= now:
        bc.start_at = None
    bc.status, bc.confirmed_by, bc.confirmed_at = "scheduled", user.id, now
    bc.due_at = due_time(bc.start_at, now)


def target_node_ids(db: Session, areas: list[int], nodes: list[str]) -> set[str]:
    ids = set(nodes)
    if areas:
        subtree = area_subtree_ids(db, areas)
        ids |= set(db.scalars(select(Node.id).where(Node.cluster_id.in_(subtree))))
    revoked = set(db.scalars(select(Node.id).where(Node.id.in_(ids),
                                                   Node.revoked_at.is_not(None))))
    return ids - revoked


def broadcast_json(db: Session, bc: Broadcast) -> dict:
    counts = {"total": 0, "sent": 0, "acked": 0, "played": 0, "failed": 0}
    nodes = []
    for d in bc.deliveries:
        counts["total"] += 1
        counts["sent"] += d.status != "pending"
        counts["acked"] += d.status not in ("pending", "sent")
        counts["played"] += d.played_result == "completed"
        counts["failed"] += d.status in ("failed", "rejected", "skipped", "cancelled") or \
            d.played_result in ("failed", "skipped")
        nodes.append({"node_id": d.node_id, "status": d.status, "reason": d.reason,
                      "played": d.played_result, "command_id": d.command_id,
                      "updated_at": iso(d.updated_at)})
    return {"id": bc.id, "bulletin_id": bc.bulletin_id, "priority": bc.priority,
            "status": bc.status, "reason": bc.reason,
            "approval": {"id": bc.approval_id, "sha256": bc.media_sha256,
                         "revision": bc.approval.revision if bc.approval else None},
            "confirmed_at": iso(bc.confirmed_at), "start_at": iso(bc.start_at), "created_at": iso(bc.created_at),
            "dispatched_at": iso(bc.dispatched_at), "cancelled_at": iso(bc.cancelled_at),
            "targets": {"areas": bc.target_areas, "nodes": bc.target_nodes},
            "volume": bc.volume, "repeat": bc.repeat, "summary": counts, "nodes": nodes}


def broadcast_visible(db: Session, user: User, bc: Broadcast) -> bool:
    """A user scoped to an area sees the broadcasts that reach into it."""
    allowed = auth.user_area_ids(db, user)
    if allowed is None or set(bc.target_areas) & allowed:
        return True
    clusters = set(db.scalars(select(Node.cluster_id).where(
        Node.id.in_(bc.target_nodes or [""]))))
    return bool(clusters & allowed)


def cancel_broadcast(db: Session, user: User, bc: Broadcast) -> None:
    """Not yet dispatched: cancelled outright. Dispatched: a stop for its item to every node."""
    if bc.status in ("cancelled", "skipped"):
        raise ApiError(409, "cannot_cancel", "err.cannot_cancel", status=bc.status)
    check_broadcast_targets(db, user, bc)
    now = utcnow()
    if bc.status != "dispatched":
        for d in bc.deliveries:
            d.status, d.updated_at = "cancelled", now
    else:
        for node_id in sorted({d.node_id for d in bc.deliveries if d.played_result is None}):
            queue_command(db, user, "stop", f"node:{node_id}", {"item_id": item_id(bc)},
                          node_id=node_id, broadcast_id=None, priority=bc.priority,
                          ttl_ms=settings().command_ttl_s * 1000)
    bc.status, bc.cancelled_at = "cancelled", now


def item_id(bc: Broadcast) -> str:
    return f"bc-{bc.id}"


def advance_delivery(d: Delivery, status: str, reason: str | None) -> bool:
    """Move a delivery forward; a status never moves backward, a terminal one never changes."""
    if d.status in TERMINAL:
        return False
    if status not in TERMINAL and DELIVERY_RANK.get(status, 0) <= DELIVERY_RANK.get(d.status, 0):
        return False
    d.status, d.reason, d.updated_at = status, reason, utcnow()
    return True


def count_online(db: Session) -> tuple[int, int]:
    total = db.scalar(select(func.count()).select_from(Node)) or 0
    online = db.scalar(select(func.count()).select_from(Node).where(Node.online.is_(True))) or 0
    return online, total
