"""Speaker nodes: provisioning (broker account and the agent's config file), keeping the
broker's accounts in step with the registry, revoking, and immediate commands to one node."""
from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

import tomli_w
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from device_agent.protocol import valid_name

from . import auth
from .areas import slug
from .bodies import CommandCreate, NodeCreate
from .config import Settings
from .errors import ApiError, bad_request
from .keys import KeyState
from .models import Area, Command, Node, ServerKey, User, node_groups, utcnow
from .mosquitto import SERVER_ACCOUNT_PREFIX, MosquittoFiles, password_hash
from .outbox import queue_clear_desired, queue_command

AGENT_CA_FILE = "/etc/loaphuong/ca.pem"  # where hardware/install-pi.sh puts mqtt.ca_pem
AGENT_STATE_DIR = "/var/lib/loaphuong/agent"  # the node's writable folder (install-pi.sh)


def sync_broker_accounts(s: Settings, sessions) -> bool:
    """Rewrite Mosquitto's password file and ACL from the committed registry, then SIGHUP it.

    Call it after committing. A file lock makes read-and-write one step, so two web processes
    provisioning at once cannot write a file that misses the other's node."""
    if not s.mosquitto_dir:
        return False
    files = MosquittoFiles(Path(s.mosquitto_dir), s.topic_prefix)
    os.makedirs(s.mosquitto_dir, exist_ok=True)
    with open(os.path.join(s.mosquitto_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with sessions() as db:
            accounts = {s.mqtt_username: password_hash(s.mqtt_password)}
            nodes = {}
            by_cluster: dict[int, list[str]] = {}  # a ward's nodes share their groups
            for node in db.scalars(select(Node).where(Node.revoked_at.is_(None))):
                accounts[node.id] = node.mqtt_password_hash
                if node.cluster_id not in by_cluster:
                    by_cluster[node.cluster_id] = node_groups(db, node)
                nodes[node.id] = by_cluster[node.cluster_id]
        return files.apply(accounts, s.mqtt_username, nodes)


def node_tls(s: Settings) -> bool:
    """Whether provisioned nodes connect over TLS (the broker has a TLS listener for them)."""
    return bool(s.mqtt_tls_port) or s.mqtt_tls


def agent_config(s: Settings, node: Node, password: str, groups: list[str],
                 keys: list[dict]) -> str:
    """The agent's config file (TOML) for a newly provisioned node."""
    config = {
        "node_id": node.id, "topic_prefix": s.topic_prefix, "groups": list(groups),
        "state_dir": AGENT_STATE_DIR, "telemetry_s": s.node_telemetry_s, "tz": s.timezone,
        "mqtt": {"host": s.node_mqtt_host, "port": s.node_mqtt_port, "username": node.id,
                 "password": password, "tls": node_tls(s),
                 # the CA certificate of the provisioning answer's mqtt.ca_pem, saved on the node
                 "ca_file": AGENT_CA_FILE if node_tls(s) and s.ca_file else ""},
        "player": {"kind": "auto", "sink_dir": "", "realtime": True},
        "amp": {"kind": "none", "gpio_pin": 17},
        "system": {"reboot_command": "systemctl reboot"},
    }
    if keys:
        config["server_keys"] = [{"kid": k["kid"], "public_key": k["public_key"]} for k in keys]
    name = " ".join(node.name.splitlines())  # a comment is one line
    return f"# LoaPhuong speaker node agent: {name}\n" + tomli_w.dumps(config)


def provision_node(db: Session, s: Settings, user: User, body: NodeCreate) -> dict:
    """Register a node in a cluster with broker credentials; returns the provisioning answer.
    The caller commits, then calls sync_broker_accounts so the broker accepts the node."""
    cluster_id, name, lat, lon, node_id = body.cluster_id, body.name, body.lat, body.lon, body.id
    cluster = db.get(Area, cluster_id)
    if cluster is None:
        raise ApiError(404, "unknown_area", "err.unknown_area", id=cluster_id)
    if cluster.kind != "cluster":
        raise bad_request("err.not_cluster", "not_cluster", id=cluster_id)
    auth.check_area(db, user, cluster_id)
    if node_id is not None:
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
    if node_id == s.mqtt_username:
        raise ApiError(409, "duplicate", "err.duplicate", what="thing.node_id")
    password = secrets.token_urlsafe(24)
    node = Node(id=node_id, cluster_id=cluster_id, name=name, lat=lat, lon=lon,
                mqtt_password_hash=password_hash(password), desired_dirty=True)
    db.add(node)
    db.flush()
    groups = node_groups(db, node)
    keys = [{"kid": k.kid, "public_key": k.public_key}
            for k in db.scalars(select(ServerKey).where(ServerKey.state != KeyState.REVOKED)
                                .order_by(ServerKey.created_at))]
    mqtt = {"host": s.node_mqtt_host, "port": s.node_mqtt_port, "username": node.id,
            "password": password, "tls": node_tls(s)}
    if node_tls(s) and s.ca_file:
        with open(s.ca_file, encoding="ascii") as f:
            mqtt["ca_pem"] = f.read()
    return {"id": node.id, "name": node.name, "cluster_id": cluster_id, "mqtt": mqtt,
            "topic_prefix": s.topic_prefix, "groups": groups, "server_keys": keys,
            "config": agent_config(s, node, password, groups, keys)}


def revoke_node(db: Session, s: Settings, user: User, node_id: str) -> Node:
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
    queue_clear_desired(db, s, user, node.id)
    return node


def node_command(db: Session, s: Settings, user: User, node_id: str,
                 command: CommandCreate) -> Command:
    """An immediate command to one node; queue_command checks its body against the protocol."""
    node = db.get(Node, node_id)
    if node is None:
        raise ApiError(404, "unknown_node", "err.unknown_node", id=node_id)
    auth.check_area(db, user, node.cluster_id)
    type_ = command.type
    body: dict = command.body or {}
    return queue_command(db, s, user, type_, f"node:{node.id}", body,
                         node_id=node.id, ttl_ms=s.command_ttl_s * 1000,
                         priority=body.get("max_priority", 0) if type_ == "stop" else 0)


def count_online(db: Session) -> tuple[int, int]:
    total = db.scalar(select(func.count()).select_from(Node)) or 0
    online = db.scalar(select(func.count()).select_from(Node).where(Node.online.is_(True))) or 0
    return online, total
