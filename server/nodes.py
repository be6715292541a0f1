"""Speaker nodes: provisioning (broker account and the agent's config file), keeping the
broker's accounts in step with the registry, revoking, and immediate commands to one node."""
from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import io
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from device_agent.config import AmpKind, PlayerKind
from device_agent.protocol import CommandType, valid_name

from . import audit, auth
from .areas import live_area, slug
from .bodies import AreaKind, CommandCreate, NodeCreate, parse
from .config import Settings
from .errors import ApiError, ErrorCode, bad_request
from .i18n import Word
from .keys import KeyState
from .models import (Area, Command, Node, ProvisioningToken, ServerKey, User, area_ancestors,
                     area_zone, node_groups, rows_changed, utcnow)
from .times import iso
from .mosquitto import SERVER_ACCOUNT_PREFIX, MosquittoFiles, bridge_accounts, password_hash
from .outbox import queue_clear_desired, queue_command

log = logging.getLogger(__name__)
AGENT_CA_FILE = "/etc/loaphuong/ca.pem"  # where hardware/install-pi.sh puts mqtt.ca_pem
AGENT_STATE_DIR = "/var/lib/loaphuong/agent"  # the node's writable folder (install-pi.sh)


@contextmanager
def _broker_files(s: Settings) -> Iterator[MosquittoFiles]:
    """The broker's files, held under a file lock: two web processes (or a web process and
    ``sync-broker``) never interleave their reads and writes."""
    files = MosquittoFiles(Path(s.mosquitto_dir), s.topic_prefix)
    os.makedirs(s.mosquitto_dir, exist_ok=True)
    with open(os.path.join(s.mosquitto_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield files


def _write_all(s: Settings, sessions: sessionmaker[Session], files: MosquittoFiles) -> bool:
    with sessions() as db:
        accounts = {s.mqtt_username: password_hash(s.mqtt_password)}
        for user in bridge_accounts(s.mqtt_username, s.bridge_workers):
            accounts[user] = password_hash(s.mqtt_password)  # the server's own password
        nodes = {}
        by_cluster: dict[int, list[str]] = {}  # a ward's nodes share their groups
        for node in db.scalars(select(Node).where(Node.revoked_at.is_(None))):
            accounts[node.id] = node.mqtt_password_hash
            if node.cluster_id not in by_cluster:
                by_cluster[node.cluster_id] = node_groups(db, node)
            nodes[node.id] = by_cluster[node.cluster_id]
    return files.apply(accounts, s.mqtt_username, nodes, s.bridge_workers)


def sync_broker_accounts(s: Settings, sessions: sessionmaker[Session]) -> bool:
    """Rewrite Mosquitto's password file and ACL from the committed registry, then SIGHUP it:
    at start (``sync-broker``) and after a revocation. Its cost grows with the fleet.

    Call it after committing. A file lock makes read-and-write one step, so two web processes
    provisioning at once cannot write a file that misses the other's node."""
    if not s.mosquitto_dir:
        return False
    with _broker_files(s) as files:
        return _write_all(s, sessions, files)


def registry_digest(sessions: sessionmaker[Session]) -> str:
    """A digest of all the broker's files are made of: every live node's id, password hash
    and cluster, and the area tree's groups. Reading it costs one pass over the nodes, far
    less than writing the files and the broker re-reading them."""
    digest = hashlib.sha256()
    with sessions() as db:
        for row in db.execute(select(Node.id, Node.mqtt_password_hash, Node.cluster_id)
                              .where(Node.revoked_at.is_(None)).order_by(Node.id)):
            digest.update(repr(tuple(row)).encode())
        digest.update(b"|")
        for area in db.execute(select(Area.id, Area.parent_id, Area.group).order_by(Area.id)):
            digest.update(repr(tuple(area)).encode())
    return digest.hexdigest()


def follow_broker_accounts(s: Settings, sessions: sessionmaker[Session], every_s: float,
                           stop: threading.Event) -> None:
    """``sync-broker --every``, on the broker's machine: rewrite the files and reload the broker
    whenever the registry changed, for web processes on other machines (``mosquitto_dir = ""``
    there) that cannot write the files or signal the broker themselves. Until ``stop``."""
    last = ""
    while True:
        try:
            now = registry_digest(sessions)
            if now != last:
                reloaded = sync_broker_accounts(s, sessions)
                log.info("broker accounts %s", "reloaded" if reloaded else
                         "written (no broker running)")
                last = now
        except Exception:  # the database may be gone a moment: try again next time
            log.exception("broker accounts not synced")
        if stop.wait(every_s):
            return


def add_broker_accounts(s: Settings, sessions: sessionmaker[Session],
                        accounts: list[BrokerAccount]) -> bool:
    """Give the broker newly provisioned nodes: their password lines and ACL blocks are
    appended to the files (what is there stays as it is), then one SIGHUP. Call it after
    committing. Its cost is that of the new nodes, whatever the fleet's size; when the files
    were never written (no ``sync-broker`` yet) it writes them whole from the registry."""
    if not s.mosquitto_dir or not accounts:
        return False
    with _broker_files(s) as files:
        if not files.complete():
            return _write_all(s, sessions, files)
        files.append({a.node_id: a.password_hash for a in accounts},
                     {a.node_id: a.groups for a in accounts})
        return files.reload()


def node_tls(s: Settings) -> bool:
    """Whether provisioned nodes connect over TLS (the broker has a TLS listener for them)."""
    return bool(s.mqtt_tls_port) or s.mqtt_tls


def agent_config(s: Settings, node: Node, password: str, groups: list[str],
                 keys: list[dict[str, str]], tz: str) -> str:
    """The agent's config file (TOML) for a newly provisioned node; ``tz``: its cluster's zone
    (its desired states carry the zone too, and that one wins)."""
    config = {
        "node_id": node.id, "topic_prefix": s.topic_prefix, "groups": list(groups),
        "state_dir": AGENT_STATE_DIR, "telemetry_s": s.node_telemetry_s, "tz": tz,
        "mqtt": {"host": s.node_mqtt_host, "port": s.node_mqtt_port, "username": node.id,
                 "password": password, "tls": node_tls(s),
                 # the CA certificate of the provisioning answer's mqtt.ca_pem, saved on the node
                 "ca_file": AGENT_CA_FILE if node_tls(s) and s.ca_file else ""},
        "player": {"kind": PlayerKind.AUTO, "sink_dir": "", "realtime": True},
        "amp": {"kind": AmpKind.NONE, "gpio_pin": 17},
        "system": {"reboot_command": "systemctl reboot"},
    }
    if keys:
        config["server_keys"] = [{"kid": k["kid"], "public_key": k["public_key"]} for k in keys]
    name = " ".join(node.name.splitlines())  # a comment is one line
    return f"# LoaPhuong speaker node agent: {name}\n" + tomli_w.dumps(config)


@dataclass(frozen=True)
class BrokerAccount:
    """What the broker must learn about a newly provisioned node."""

    node_id: str
    password_hash: str
    groups: list[str]


# what every node of a batch shares: the caller's areas, the server keys, the CA certificate
_Shared = tuple[set[int] | None, list[dict[str, str]], str | None]


@dataclass
class Provisioner:
    """Provisions nodes in one session; what every node of a batch shares (the caller's areas,
    the server keys, the CA, a cluster's groups and zone) is read once. The caller commits,
    then calls add_broker_accounts with ``accounts`` so the broker accepts the nodes."""

    db: Session
    s: Settings
    user: User | None  # None: no person (a one-time token's fetch), allowed no area
    accounts: list[BrokerAccount] = field(default_factory=list)
    _clusters: dict[int, tuple[Area, list[str], str]] = field(default_factory=dict)
    _shared: _Shared | None = None

    def _common(self) -> _Shared:
        if self._shared is None:
            keys = [{"kid": k.kid, "public_key": k.public_key} for k in self.db.scalars(
                select(ServerKey).where(ServerKey.state != KeyState.REVOKED)
                .order_by(ServerKey.created_at))]
            ca_pem = None
            if node_tls(self.s) and self.s.ca_file:
                with open(self.s.ca_file, encoding="ascii") as f:
                    ca_pem = f.read()
            allowed = auth.user_area_ids(self.db, self.user) if self.user is not None else set()
            self._shared = (allowed, keys, ca_pem)
        return self._shared

    def _cluster(self, cluster_id: int) -> tuple[Area, list[str], str]:
        if cluster_id not in self._clusters:
            cluster = live_area(self.db, cluster_id)  # not one merged into another
            if cluster.kind != AreaKind.CLUSTER:
                raise bad_request("err.not_cluster", ErrorCode.NOT_CLUSTER, id=cluster_id)
            groups = [a.group for a in area_ancestors(self.db, cluster_id)]
            self._clusters[cluster_id] = (cluster, groups,
                                          area_zone(self.db, cluster_id, self.s.timezone))
        return self._clusters[cluster_id]

    def _new_id(self, cluster: Area, name: str) -> str:
        base = slug(f"{cluster.group}-{name}")[:56] or cluster.group
        if base.startswith(SERVER_ACCOUNT_PREFIX):
            base = "n-" + base[:54]
        node_id, n = base, 1
        while self.db.get(Node, node_id) is not None or not valid_name(node_id):
            n += 1
            node_id = f"{base}-{n}"
        return node_id

    def provision(self, body: NodeCreate) -> dict[str, Any]:
        """Register one node in a cluster with broker credentials; the provisioning answer."""
        s = self.s
        cluster, groups, tz = self._cluster(body.cluster_id)
        allowed, keys, ca_pem = self._common()
        if allowed is not None and cluster.id not in allowed:
            raise ApiError(ErrorCode.FORBIDDEN_AREA, "err.forbidden_area", area=cluster.id)
        node_id = body.id
        if node_id is None:
            node_id = self._new_id(cluster, body.name)
        elif node_id == s.mqtt_username or self.db.get(Node, node_id) is not None:
            raise ApiError(ErrorCode.DUPLICATE, "err.duplicate", what=Word("thing", "node_id"))
        password = secrets.token_urlsafe(24)
        node = Node(id=node_id, cluster_id=cluster.id, name=body.name, lat=body.lat,
                    lon=body.lon, mqtt_password_hash=password_hash(password), desired_dirty=True)
        self.db.add(node)
        self.db.flush()
        self.accounts.append(BrokerAccount(node.id, node.mqtt_password_hash, groups))
        return self._answer(node, password)

    def reprovision(self, node: Node) -> dict[str, Any]:
        """A new broker password for an existing node (the old one stops working once the
        caller has committed and synced the broker) and its provisioning answer."""
        password = secrets.token_urlsafe(24)
        node.mqtt_password_hash = password_hash(password)
        return self._answer(node, password)

    def _answer(self, node: Node, password: str) -> dict[str, Any]:
        """The provisioning answer: the node's broker account, trust and agent config."""
        s = self.s
        _cluster, groups, tz = self._cluster(node.cluster_id)
        _allowed, keys, ca_pem = self._common()
        mqtt = {"host": s.node_mqtt_host, "port": s.node_mqtt_port, "username": node.id,
                "password": password, "tls": node_tls(s)}
        if ca_pem is not None:
            mqtt["ca_pem"] = ca_pem
        return {"id": node.id, "name": node.name, "cluster_id": node.cluster_id, "mqtt": mqtt,
                "topic_prefix": s.topic_prefix, "groups": list(groups), "server_keys": keys,
                "config": agent_config(s, node, password, groups, keys, tz)}


def provision_node(db: Session, s: Settings, user: User, body: NodeCreate
                   ) -> tuple[dict[str, Any], list[BrokerAccount]]:
    """Register a node in a cluster with broker credentials: the provisioning answer and what
    the caller gives add_broker_accounts once it has committed."""
    p = Provisioner(db, s, user)
    return p.provision(body), p.accounts


PROVISIONING_PATH = "/api/v1/nodes/{id}/provisioning"  # what install-pi.sh fetches
PROVISIONING_ACTOR = "provisioning-token"  # the audit log's name for a token's bearer


def _live_node(db: Session, node_id: str) -> Node:
    node = db.get(Node, node_id)
    if node is None:
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
    if node.revoked_at is not None:
        raise ApiError(ErrorCode.NODE_REVOKED, "err.node_revoked", id=node_id)
    return node


def issue_provisioning_token(db: Session, s: Settings, user: User, node: Node
                             ) -> dict[str, Any]:
    """A one-time token that fetches ``node``'s provisioning answer once (hardware/install-pi.sh
    --provision URL --token TOKEN): random, only its sha256 stored, valid for
    provision_token_ttl_s; it replaces the node's earlier token. The caller commits."""
    node = _live_node(db, node.id)
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(seconds=s.provision_token_ttl_s)
    db.execute(delete(ProvisioningToken).where(ProvisioningToken.node_id == node.id))
    db.add(ProvisioningToken(node_id=node.id, token_hash=auth.token_hash(token),
                             created_by=user.id, expires_at=expires))
    audit.record(db, audit.Action.NODE_PROVISIONING_TOKEN, (audit.Target.NODE, node.id),
                 {"expires_at": iso(expires)}, actor=user)
    return {"token": token, "expires_at": iso(expires),
            "url": s.public_url.rstrip("/") + PROVISIONING_PATH.format(id=node.id)}


def fetch_provisioning(db: Session, s: Settings, node_id: str, token: str | None,
                       ip: str | None = None) -> dict[str, Any]:
    """The provisioning answer for the bearer of ``node_id``'s one-time token: the token is
    consumed and the node's broker password rotated (an answer handed out earlier no longer
    connects). A used, expired, unknown or another node's token is a 401 and changes nothing;
    a revoked node is a 410. The caller commits, then calls sync_broker_accounts."""
    invalid = ApiError(ErrorCode.INVALID_PROVISIONING_TOKEN, "err.invalid_provisioning_token")
    if not token:
        raise invalid
    row = db.scalar(select(ProvisioningToken).where(
        ProvisioningToken.token_hash == auth.token_hash(token)))
    if row is None or row.node_id != node_id or row.expires_at <= utcnow():
        raise invalid
    node = _live_node(db, node_id)
    # consumed by a conditional delete: of two fetches at once, exactly one deletes the row
    gone = db.execute(delete(ProvisioningToken).where(
        ProvisioningToken.node_id == node_id,
        ProvisioningToken.token_hash == row.token_hash))
    if rows_changed(gone) != 1:
        raise invalid
    db.info["audit_actor"] = PROVISIONING_ACTOR  # who rotates the password: the token's bearer
    audit.record(db, audit.Action.NODE_PROVISIONING_FETCHED,
                 (audit.Target.NODE, node.id), {"ip": ip})
    return Provisioner(db, s, None).reprovision(node)


@dataclass(frozen=True)
class RowError:
    """Why one row of a bulk provisioning or import was refused."""

    row: int  # 1-based, in the order the rows were given
    field: str
    error: ApiError

    def json(self, fields: dict[str, str] | None = None) -> dict[str, Any]:
        return {"row": self.row, "field": (fields or {}).get(self.field, self.field),
                "code": self.error.code, "message": self.error.message()}


# The field an error without one is about, by its code.
_ERROR_FIELD = {ErrorCode.UNKNOWN_AREA: "cluster_id", ErrorCode.NOT_CLUSTER: "cluster_id",
                ErrorCode.AREA_MERGED: "cluster_id", ErrorCode.FORBIDDEN_AREA: "cluster_id",
                ErrorCode.DUPLICATE: "id"}


def row_error(row: int, err: ApiError) -> RowError:
    field = err.params.get("field") or _ERROR_FIELD.get(err.code, "-")
    return RowError(row, str(field), err)


def provision_nodes(db: Session, s: Settings, user: User,
                    rows: list[tuple[int, NodeCreate | RowError]]
                    ) -> tuple[list[dict[str, Any]], list[BrokerAccount], list[RowError]]:
    """Provision every row (its number, the node or the RowError it already is, e.g. from
    parsing) or none: the answers and broker accounts when no row failed, else every failed
    row. The caller commits only when there are no errors (and rolls back otherwise)."""
    p = Provisioner(db, s, user)
    answers: list[dict[str, Any]] = []
    errors: list[RowError] = []
    for i, row in rows:
        if isinstance(row, RowError):
            errors.append(row)
            continue
        try:
            answers.append(p.provision(row))
        except ApiError as err:
            errors.append(row_error(i, err))
    return answers, p.accounts, errors


def revoke_node(db: Session, s: Settings, user: User, node_id: str) -> Node:
    """Take a node out of service for good (a stolen or retired Pi): the caller commits, then
    calls sync_broker_accounts, which drops its account and ACL; Mosquitto's reload then
    disconnects its live session. Its retained desired state is cleared through the outbox
    (an empty retained message, unsigned: it carries no command). Revoking twice is a no-op."""
    node = db.get(Node, node_id)
    if node is None:
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
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
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
    auth.check_area(db, user, node.cluster_id)
    type_ = command.type
    body: dict[str, Any] = command.body or {}
    return queue_command(db, s, user, type_, f"node:{node.id}", body,
                         node_id=node.id, ttl_ms=s.command_ttl_s * 1000,
                         priority=body.get("max_priority", 0) if type_ == CommandType.STOP else 0)


class NodeListStatus(StrEnum):
    """?status= of the node list (the API's and the fleet page's)."""
    ONLINE = "online"
    OFFLINE = "offline"                  # heard from once, not connected now
    NEVER_CONNECTED = "never_connected"  # provisioned, never heard from (raise no offline alert)
    MAINTENANCE = "maintenance"          # in their maintenance window now


NODE_STATUSES = tuple(s.value for s in NodeListStatus)
# each status's SQL condition (a function: maintenance depends on the time it is asked)
_STATUS_CONDITIONS: dict[str, Callable[[], ColumnElement[bool]]] = {
    NodeListStatus.ONLINE: lambda: Node.online.is_(True),
    NodeListStatus.OFFLINE: lambda: Node.online.is_not(True) & Node.last_seen.is_not(None),
    NodeListStatus.NEVER_CONNECTED: lambda: Node.last_seen.is_(None) & Node.revoked_at.is_(None),
    NodeListStatus.MAINTENANCE: lambda: Node.maintenance_until > utcnow()}


def status_condition(status: str) -> ColumnElement[bool]:
    """The SQL condition of one of NODE_STATUSES."""
    return _STATUS_CONDITIONS[status]()


def desired_state(db: Session, node: Node) -> dict[str, Any]:
    """What ``node`` should hold now: the body of its newest signed desired state, and the
    version it reported applying."""
    recent = db.scalars(select(Command).where(
        Command.type == CommandType.DESIRED, Command.node_id == node.id,
        Command.signed_at.is_not(None))
        .order_by(Command.created_at.desc()).limit(20)).all()
    # the newest is the highest version (several may share their creation time)
    newest = max(recent, key=lambda c: (c.created_at, (c.body or {}).get("version") or 0),
                 default=None)
    body = newest.body if newest is not None and newest.body else None
    return {"node_id": node.id, "version": (body or {}).get("version"),
            "desired_applied": node.desired_applied_version,
            "sent_at": iso(newest.published_at) if newest is not None else None,
            "body": body}


def count_online(db: Session) -> tuple[int, int]:
    total = db.scalar(select(func.count()).select_from(Node)) or 0
    online = db.scalar(select(func.count()).select_from(Node).where(Node.online.is_(True))) or 0
    return online, total


# The CSV import's columns: the file's name of each NodeCreate field (errors use the file's).
CSV_FIELDS = {"name": "name", "cluster_id": "cluster", "lat": "latitude", "lon": "longitude",
              "id": "id"}
CSV_REQUIRED = ("name", "cluster", "latitude", "longitude")


def _csv_row(db: Session, line: int, rec: dict[str, str], codes: dict[str, int | None]
             ) -> NodeCreate | RowError:
    """One CSV record as a NodeCreate (cluster by id or code, coordinates as numbers; an empty
    coordinate is none), or the RowError naming its first bad field."""
    data: dict[str, Any] = {"name": (rec.get("name") or "").strip()}
    cluster = (rec.get("cluster") or "").strip()
    if cluster.isascii() and cluster.isdecimal():
        data["cluster_id"] = int(cluster)
    elif cluster:
        if cluster not in codes:
            codes[cluster] = db.scalar(select(Area.id).where(Area.code == cluster))
        if codes[cluster] is None:
            return RowError(line, "cluster_id", ApiError(
                ErrorCode.UNKNOWN_AREA, "err.unknown_area_code", code=cluster))
        data["cluster_id"] = codes[cluster]
    for key, column in (("lat", "latitude"), ("lon", "longitude")):
        raw = (rec.get(column) or "").strip()
        if not raw:
            continue
        try:
            data[key] = float(raw.replace(",", "."))  # 21,0285 as a Vietnamese sheet writes it
        except ValueError:
            return RowError(line, key, bad_request("err.invalid_field", field=column,
                                                   detail="a number"))
    if (rec.get("id") or "").strip():
        data["id"] = rec["id"].strip()
    try:
        return parse(NodeCreate, data)
    except ApiError as err:
        return row_error(line, err)


def read_node_csv(db: Session, raw: bytes, most: int
                  ) -> list[tuple[int, NodeCreate | RowError]]:
    """The rows of a CSV import (UTF-8, a byte order mark allowed; a header row naming the
    columns name, cluster, latitude, longitude and optionally id, in any order), each a
    NodeCreate or the RowError of its line (the header is line 1). A file that cannot be read
    as such is an ApiError (422) for the whole file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ApiError(ErrorCode.INVALID_CSV, "err.csv_encoding", at=err.start) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise ApiError(ErrorCode.INVALID_CSV,
                           "err.csv_columns", missing=", ".join(missing))
        rows: list[tuple[int, NodeCreate | RowError]] = []
        codes: dict[str, int | None] = {}
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue  # a blank line (a sheet's trailing ones)
            if len(rows) >= most:
                raise bad_request("err.too_many_rows", ErrorCode.TOO_MANY, most=most)
            record = dict(zip(header, fields, strict=False))
            rows.append((reader.line_num, _csv_row(db, reader.line_num, record, codes)))
    except csv.Error as err:
        raise ApiError(ErrorCode.INVALID_CSV, "err.csv_syntax", line=reader.line_num,
                       detail=str(err)) from None
    if not rows:
        raise ApiError(ErrorCode.INVALID_CSV, "err.csv_empty")
    return rows
