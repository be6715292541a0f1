"""The audit log: every change people make, every login, approval and broadcast, in one
append-only, tamper-evident table (a hash chain).

Each entry's ``hash`` is sha256 over a canonical JSON of its fields and the previous entry's
hash; ids are consecutive from 1. A single-row chain head (``audit_head``) holds the last id and
hash and is updated in the same transaction as every append. ``verify`` then finds an edited row
(its hash no longer fits), a deleted row (a gap, and the next row's ``prev_hash`` no longer fits)
and deleted last rows (the head points past the end).

What it cannot find: someone with write access to the database who rewrites every hash after
their change and the head too. Against that, write the head hash down (``audit-verify`` prints
it) or send it off-site now and then; ``audit-verify --anchor ID:HASH`` then proves the log still
holds that exact prefix.

Row changes are recorded by a session event (``install`` hooks every sessionmaker the project
makes), not by each call site. Secrets are never recorded: for a password, token or MQTT
password hash only the field's name is.

Concurrency: every append first takes the chain head's lock (PostgreSQL: SELECT … FOR UPDATE;
SQLite: a write to the head row, which takes the database's one write lock) and only then reads
the head, inside the writing transaction, so two writers append one after the other and the
chain never forks. The explicit consecutive ids are a second guard: a fork would be a duplicate
primary key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import weakref
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast
from collections.abc import Iterable

from sqlalchemy import Table, bindparam, event, func, inspect, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.base import PASSIVE_NO_INITIALIZE

from .models import AuditEntry, AuditHead, User, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import UOWTransaction

GENESIS = "0" * 64
HEAD_ID = 1

# tables whose changes are recorded; per table the columns whose changes are not worth an entry
AUDITED: dict[str, frozenset[str]] = {
    "users": frozenset(), "areas": frozenset(), "bulletins": frozenset(),
    "bulletin_events": frozenset(), "broadcasts": frozenset(), "lexicon_entries": frozenset(),
    "server_keys": frozenset(), "api_tokens": frozenset(), "commands": frozenset(),
    "bulletin_approvals": frozenset(), "occurrence_overrides": frozenset(),
    "programmes": frozenset(), "programme_revisions": frozenset(),
    # what nodes report and the dispatcher counts is not a person's change
    "nodes": frozenset({"online", "last_seen", "last_state", "last_telemetry", "desired_version",
                        "desired_applied_version", "desired_exp_ms", "desired_dirty",
                        "desired_digest",
                        "rejected_messages", "last_rejected_reason", "last_rejected_at"}),
}
SECRETS = frozenset({"password_hash", "token_hash", "mqtt_password_hash"})


class Action(StrEnum):
    """What an entry ``record`` writes says happened (a row change's is "<table>.<op>")."""
    AREA_MERGE = "area.merge"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    KEYS_ROTATE = "keys.rotate"
    KEYS_RESEND = "keys.resend"
    KEYS_ACTIVATE = "keys.activate"
    KEYS_REVOKE = "keys.revoke"
    NODE_PROVISIONING_TOKEN = "node.provisioning_token"
    NODE_PROVISIONING_FETCHED = "node.provisioning_fetched"
    ALERTS_ACK = "alerts.ack"
    ALERTS_RESOLVE = "alerts.resolve"


class Target(StrEnum):
    """The kind of thing an entry ``record`` writes is about (a row change's: its table)."""
    AREA = "area"
    USER = "user"
    NODE = "node"
    SERVER_KEY = "server_key"
    ALERT = "alert"


# an entry to append: (actor id, actor, action, target type, target id, detail)
_EntryRow = tuple[int | None, str, str, str | None, str | None, dict[str, Any]]


class AuditBroken(Exception):
    """The chain does not hold; ``row`` is the first entry that does not fit (None: the head)."""

    def __init__(self, row: int | None, message: str):
        super().__init__(message)
        self.row = row


# --- hashing ------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """A JSON-native copy of a column value (datetimes as ISO text)."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(row: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of an entry's fields and its prev_hash."""
    fields = {k: row[k] for k in ("id", "actor_id", "actor", "action", "target_type",
                                  "target_id", "detail", "prev_hash")}
    fields["at"] = row["at"].isoformat()
    return hashlib.sha256(canonical(fields).encode("utf-8")).hexdigest()


# --- appending ----------------------------------------------------------------------------------

# Every write request appends, so its statements are built once (a profile of the fast test
# tier: appending was a sixth of the API requests' time, half of it building these statements
# and their cache keys again), and a flush's entries go in one executemany
_HEAD = cast(Table, AuditHead.__table__)  # declarative: always a Table
_ENTRIES = cast(Table, AuditEntry.__table__)
_TAKE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(last_id=_HEAD.c.last_id)
_READ_HEAD = select(_HEAD.c.last_id, _HEAD.c.last_hash).where(_HEAD.c.id == HEAD_ID) \
    .with_for_update()
_MOVE_HEAD = update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(
    last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"))
_INSERT_ENTRY = insert(_ENTRIES)


def _lock_head(db: Session) -> tuple[int, str]:
    """Take the chain head's lock and read it; (last id, last hash)."""
    conn = db.connection()
    if conn.dialect.name == "sqlite":
        conn.execute(_TAKE_HEAD)
    head = conn.execute(_READ_HEAD).first()
    if head is not None:
        return head.last_id, head.last_hash
    # the head row is gone: continue after the last entry, and say so in the log itself
    last = conn.execute(select(_ENTRIES.c.id, _ENTRIES.c.hash)
                        .order_by(_ENTRIES.c.id.desc()).limit(1)).first()
    last_id, last_hash = (last.id, last.hash) if last else (0, GENESIS)
    conn.execute(insert(_HEAD).values(id=HEAD_ID, last_id=last_id, last_hash=last_hash))
    if last is not None:
        last_id, last_hash = _append_rows(db, last_id, last_hash, [(
            None, "system", "audit.head_restored", "audit_head", str(HEAD_ID),
            {"last_id": last_id})])
    return last_id, last_hash


def _append_rows(db: Session, last_id: int, last_hash: str,
                 rows: Iterable[_EntryRow]) -> tuple[int, str]:
    conn = db.connection()
    at = utcnow()
    entries = []
    for actor_id, actor, action, target_type, target_id, detail in rows:
        row = {"id": last_id + 1, "at": at, "actor_id": actor_id, "actor": actor,
               "action": action, "target_type": target_type, "target_id": target_id,
               "detail": json.loads(canonical(_plain(detail))), "prev_hash": last_hash}
        row["hash"] = entry_hash(row)
        entries.append(row)
        last_id, last_hash = row["id"], row["hash"]
    conn.execute(_INSERT_ENTRY, entries)
    conn.execute(_MOVE_HEAD, {"new_last_id": last_id, "new_last_hash": last_hash})
    return last_id, last_hash


def _append(db: Session, rows: list[_EntryRow]) -> None:
    if rows:
        last_id, last_hash = _lock_head(db)
        _append_rows(db, last_id, last_hash, rows)


def _actor(db: Session, actor: Any = None) -> tuple[int | None, str]:
    """(user id, name) of who acts: the given user or name, else the request's user, else the
    session's own (``info["audit_actor"]``: a User, or a name such as "dispatcher")."""
    if isinstance(actor, User):
        return actor.id, actor.username
    if isinstance(actor, str):
        return None, actor
    try:
        from flask import g, has_request_context
        user = g.get("user") if has_request_context() else None
    except ImportError:  # pragma: no cover - flask is a server dependency
        user = None
    if user is not None:
        return user.id, user.username
    own = db.info.get("audit_actor", "system")
    return (own.id, own.username) if isinstance(own, User) else (None, own)


def record(db: Session, action: Action, target: tuple[Target, Any] | None = None,
           detail: dict[str, Any] | None = None, actor: Any = None) -> None:
    """Append an entry for something that is not a row change (a login, a key rotation).
    It is written in ``db``'s transaction: the caller commits."""
    actor_id, name = _actor(db, actor)
    target_type, target_id = target if target else (None, None)
    _append(db, [(actor_id, name, action, target_type,
                  None if target_id is None else str(target_id), detail or {})])


# --- recording row changes ------------------------------------------------------------------------

def _columns(obj: Any) -> list[tuple[str, Any]]:
    return [(attr.key, attr) for attr in inspect(obj).mapper.column_attrs]


def _changed_values(obj: Any, ignored: frozenset[str], secret: list[str]
                    ) -> dict[str, list[Any]]:
    """An updated row's changed columns as key -> [old, new]; changed secrets go to ``secret``."""
    state = inspect(obj)
    changed = {}
    modified = state.committed_state  # only an attribute set since the load has a history
    for key, _attr in _columns(obj):
        if key not in modified or key in ignored:
            continue
        # what state.attrs[key].history answers, without building every attribute's state
        hist = state.get_history(key, PASSIVE_NO_INITIALIZE)
        if not hist.has_changes():
            continue
        if key in SECRETS:
            secret.append(key)
            continue
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if old != new:
            changed[key] = [old, new]
    return changed


def _row_values(obj: Any, ignored: frozenset[str], secret: list[str]) -> dict[str, Any]:
    """An inserted or deleted row's columns; its secret columns' names go to ``secret``."""
    state = inspect(obj)
    values = {}
    for key, _attr in _columns(obj):
        if key in SECRETS:
            secret.append(key)
        elif key not in ignored:
            values[key] = state.dict.get(key)  # no lazy load (a deleted row is gone)
    return values


def _change(obj: Any, kind: str) -> tuple[str, str, dict[str, Any]] | None:
    table = obj.__table__.name
    if table not in AUDITED:
        return None
    if table == "commands" and (obj.created_by is None or kind == "update"):
        return None  # the dispatcher's own commands, and signing/publishing/acks
    ignored = AUDITED[table]
    pk = ",".join(str(v) for v in inspect(obj).mapper.primary_key_from_instance(obj))
    secret: list[str] = []
    detail: dict[str, Any]
    if kind == "update":
        changed = _changed_values(obj, ignored, secret)
        if not changed and not secret:
            return None
        detail = {"changed": changed}
    else:
        detail = {"new" if kind == "insert" else "old": _row_values(obj, ignored, secret)}
    if secret:
        detail["secret_fields"] = sorted(secret)
    return f"{table}.{kind}", pk, detail


def _after_flush(db: Session, _context: UOWTransaction) -> None:
    rows: list[_EntryRow] = []
    actor_id, actor = _actor(db)
    for kind, objs in (("insert", db.new), ("update", db.dirty), ("delete", db.deleted)):
        for obj in list(objs):
            found = _change(obj, kind)
            if found:
                action, pk, detail = found
                rows.append((actor_id, actor, action, obj.__table__.name, pk, detail))
    _append(db, rows)


# the session makers install hooked, as long as they live: not asked of event.contains, which
# keys its answer by the maker's id() and keeps the key after the maker is gone, so a new maker
# at a freed one's address looked hooked and its sessions' changes went unrecorded
_installed: weakref.WeakSet[sessionmaker[Session]] = weakref.WeakSet()


def install(maker: sessionmaker[Session]) -> None:
    """Record row changes of every session ``maker`` makes (once however often it is called)."""
    if maker not in _installed:
        event.listen(maker, "after_flush", _after_flush)
        _installed.add(maker)


# --- verifying ------------------------------------------------------------------------------------

def verify(db: Session, anchors: Iterable[tuple[int, str]] = ()) -> tuple[int, int, str]:
    """Check the whole chain; (entries, head id, head hash), or AuditBroken naming the first
    entry that does not fit. ``anchors``: (id, hash) pairs written down earlier."""
    table = AuditEntry.__table__
    expected_id, prev = 1, GENESIS
    count = 0
    hashes: dict[int, str] = {}
    wanted = dict(anchors)
    for mapping in db.connection().execute(select(table).order_by(table.c.id)).mappings():
        row = dict(mapping)
        if row["id"] != expected_id:
            raise AuditBroken(row["id"], f"row {row['id']}: expected row {expected_id} before it "
                                         f"(rows {expected_id}..{row['id'] - 1} were deleted)")
        if row["prev_hash"] != prev:
            raise AuditBroken(row["id"], f"row {row['id']}: prev_hash does not match row "
                                         f"{row['id'] - 1} (a row before it was altered)")
        if entry_hash(row) != row["hash"]:
            raise AuditBroken(row["id"], f"row {row['id']}: its content does not match its hash "
                                         "(the row was edited)")
        if row["id"] in wanted:
            hashes[row["id"]] = row["hash"]
        prev, expected_id, count = row["hash"], expected_id + 1, count + 1
    last_id = expected_id - 1
    head = db.get(AuditHead, HEAD_ID)
    if head is None:
        if count:
            raise AuditBroken(None, "the chain head is missing")
    elif head.last_id != last_id or head.last_hash != prev:
        first_missing = last_id + 1 if head.last_id > last_id else head.last_id
        raise AuditBroken(first_missing, f"row {first_missing}: the chain head says the log ends "
                                         f"at row {head.last_id}, but it ends at row {last_id} "
                                         "(the last rows were deleted or the head altered)")
    for aid, ahash in wanted.items():
        if hashes.get(aid) != ahash:
            raise AuditBroken(aid, f"row {aid}: does not match the anchor written down earlier")
    return count, last_id, prev


def entries(db: Session, *, actor: str | None = None, action: str | None = None,
            target_type: str | None = None, start: dt.datetime | None = None,
            end: dt.datetime | None = None, before: int | None = None,
            limit: int = 100) -> list[AuditEntry]:
    """Entries newest first, at most ``limit``: by ``actor`` (a username or "system"),
    ``action`` (itself or its kind: "users" matches users.*), ``target_type``, in [start, end)
    (naive UTC) and, to page back, with ids below ``before``. The API and the audit page read
    the log through this."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if start is not None:
        q = q.where(AuditEntry.at >= start)
    if end is not None:
        q = q.where(AuditEntry.at < end)
    if actor:
        q = q.where(AuditEntry.actor == actor)
    if action:
        q = q.where((AuditEntry.action == action) | AuditEntry.action.startswith(action + "."))
    if target_type:
        q = q.where(AuditEntry.target_type == target_type)
    if before is not None:
        q = q.where(AuditEntry.id < before)
    return list(db.scalars(q))


def values(db: Session, name: str) -> list[str]:
    """The different values of the indexed column ``name`` (actor, action, target_type) in
    order: a loose index scan (each step the next value up, one index seek), so a log of a
    million entries costs a few index seeks per value, not a scan of the log."""
    col = getattr(AuditEntry, name)
    seen = select(func.min(col).label("v")).cte("seen", recursive=True)
    step = select(select(func.min(col)).where(col > seen.c.v).scalar_subquery())
    seen = seen.union_all(step.where(seen.c.v.is_not(None)))
    return [v for v in db.scalars(select(seen.c.v).where(seen.c.v.is_not(None))) if v]


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": e.at.replace(tzinfo=dt.UTC).isoformat()
            .replace("+00:00", "Z"), "actor_id": e.actor_id, "actor": e.actor,
            "action": e.action, "target": {"type": e.target_type, "id": e.target_id},
            "detail": e.detail, "hash": e.hash}
