"""The server's Ed25519 signing keys and their lifecycle.

The private halves live in one 0600 JSON file beside the database (``signing_key_file``,
``{"keys": {kid: private key}}``; the older one-key form ``{"kid", "private_key"}`` still reads).
The public halves and each key's state live in ``server_keys``:

    next     made by ``rotate``, sent to every node (a ``keys`` command signed by the active key)
             and handed out at provisioning, but nothing is signed with it yet
    active   the one key the dispatcher signs with (it re-reads this on every signing)
    retired  the key before; nodes still trust it until it is revoked
    revoked  nodes were told to drop it (a ``keys`` command signed by the active key); its
             private half is deleted from the key file

``rotate`` -> wait until the nodes acked -> ``activate KID`` -> ``revoke OLD``.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from device_agent.protocol import (CommandType, EventType, load_private_key, private_key_b64,
                                   public_key_b64)

from . import audit, outbox
from .files import write_atomic
from .models import Command, Event, Node, ServerKey, now_ms, utcnow

if TYPE_CHECKING:
    from .config import Settings



class KeyState(StrEnum):
    """A server key's lifecycle (see the module's docstring)."""
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    REVOKED = "revoked"


TRUSTED = (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED)   # the states nodes trust
KEYS_TTL_MS = 7 * 24 * 3600 * 1000        # a node offline up to a week still gets the change
                                          # (persistent session, QoS 1)


class KeyLifecycleError(Exception):
    """An operator's key step that cannot be done; the message says why."""


# --- the key file -------------------------------------------------------------------------------

def read_key_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """kid -> base64 private key; a clear error when the file is missing or damaged."""
    try:
        data = json.loads(Path(path).read_text())
        keys = dict(data["keys"]) if "keys" in data else {data["kid"]: data["private_key"]}
        for priv in keys.values():
            load_private_key(priv)
        return keys
    except FileNotFoundError:
        raise RuntimeError(f"no signing key at {path}: run the init step first") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise RuntimeError(f"signing key file {path} is damaged: {err}") from None


def _write_key_file(path: Path, keys: dict[str, str]) -> None:
    """Replace the key file at once (a temporary 0600 file renamed over it)."""
    write_atomic(path, json.dumps({"keys": keys}), 0o600)


class _FileLock:
    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")

    def __enter__(self) -> None:
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        self.f.close()


def create_signing_key(path: str | os.PathLike[str], kid: str) -> None:
    """Write a new key file unless one exists (never overwrites: nodes trust the old key)."""
    p = Path(path)
    if p.exists():
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    with _FileLock(p):
        if not p.exists():
            _write_key_file(p, {kid: private_key_b64(Ed25519PrivateKey.generate())})


def load_signing_key(path: str | os.PathLike[str], kid: str | None = None
                     ) -> tuple[str, Ed25519PrivateKey]:
    """(kid, key) from the key file: the named key, or the only one."""
    keys = read_key_file(path)
    if kid is None:
        if len(keys) != 1:
            raise RuntimeError(f"{path} holds several keys: the database says which is active")
        kid = next(iter(keys))
    if kid not in keys:
        raise RuntimeError(f"signing key {kid} is not in {path}")
    return kid, load_private_key(keys[kid])


def register_public_key(db: Session, path: str | os.PathLike[str]) -> str | None:
    """Put the key file's keys in ``server_keys`` (the first one active); the active kid."""
    for kid, priv in read_key_file(path).items():
        if db.get(ServerKey, kid) is None:
            first = db.scalar(select(ServerKey.kid).where(
                ServerKey.state == KeyState.ACTIVE)) is None
            db.add(ServerKey(kid=kid, public_key=public_key_b64(load_private_key(priv)),
                             state=KeyState.ACTIVE if first else KeyState.NEXT,
                             activated_at=utcnow() if first else None))
            db.flush()
    return db.scalar(select(ServerKey.kid).where(ServerKey.state == KeyState.ACTIVE))


# --- the signer ---------------------------------------------------------------------------------

class KeyRing:
    """The active signing key, as the database says now; the key file is re-read when it
    changes. ``default`` serves a database that names no active key (a bare test setup)."""

    def __init__(self, path: str | os.PathLike[str],
                 default: tuple[str, Ed25519PrivateKey] | None = None):
        self.path = Path(path)
        self.default = default
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, Ed25519PrivateKey] = {}

    def _load(self) -> None:
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._keys = {k: load_private_key(v) for k, v in read_key_file(self.path).items()}
            self._stamp = stamp

    def active(self, db: Session) -> tuple[str, Ed25519PrivateKey]:
        kid = db.scalar(select(ServerKey.kid).where(ServerKey.state == KeyState.ACTIVE))
        if kid is None:
            if self.default is None:
                raise RuntimeError("no active signing key in the database")
            return self.default
        if self.default is not None and kid == self.default[0]:
            return self.default
        self._load()
        if kid not in self._keys:
            raise RuntimeError(f"the active signing key {kid} is not in {self.path}")
        return kid, self._keys[kid]


def active_signing_key(sessions: sessionmaker[Session], path: str | os.PathLike[str]
                       ) -> tuple[str, Ed25519PrivateKey]:
    with sessions() as db:
        return KeyRing(path).active(db)


# --- the lifecycle ------------------------------------------------------------------------------

def _key(db: Session, kid: str) -> ServerKey:
    row = db.get(ServerKey, kid)
    if row is None:
        raise KeyLifecycleError(f"no key {kid}")
    return row


def _keys_command(db: Session, settings: Settings, body: dict[str, Any],
                  node_id: str | None = None) -> Command:
    """A ``keys`` command to every node (or one), signed now by the active key, into the
    outbox."""
    target = f"node:{node_id}" if node_id else "group:all"
    signer = KeyRing(settings.signing_key_file).active(db)
    return outbox.add_signed(db, settings.topic_prefix, signer, CommandType.KEYS, target, body,
                             now_ms(), KEYS_TTL_MS, node_id=node_id)


def rotate(db: Session, settings: Settings) -> tuple[ServerKey, Command]:
    """A new key in state ``next``, and the command that makes every node trust it."""
    if db.scalar(select(ServerKey.kid).where(ServerKey.state == KeyState.NEXT)):
        raise KeyLifecycleError("a rotation is under way: activate or revoke the next key first")
    new = Ed25519PrivateKey.generate()
    kid = f"srv-{utcnow():%Y%m%d}-{secrets.token_hex(3)}"
    path = Path(settings.signing_key_file)
    with _FileLock(path):  # the private half first: a key in the database is always usable
        keys = read_key_file(path)
        keys[kid] = private_key_b64(new)
        _write_key_file(path, keys)
    row = ServerKey(kid=kid, public_key=public_key_b64(new), state=KeyState.NEXT, active=True)
    db.add(row)
    cmd = _keys_command(db, settings, {"keys": [{"kid": kid, "public_key": row.public_key}],
                                       "revoke": []})
    audit.record(db, audit.Action.KEYS_ROTATE,
                 (audit.Target.SERVER_KEY, kid), {"command_id": cmd.id})
    return row, cmd


def readiness(db: Session, kid: str) -> tuple[int, int, list[str]]:
    """(nodes that trust ``kid``, all nodes, the ids of those that do not yet).

    A node trusts it once it acked ``finished`` to a keys command adding it, or when it was
    provisioned after the key was made (its config lists it)."""
    row = _key(db, kid)
    cmd_ids = {c.id for c in db.scalars(select(Command).where(Command.type == CommandType.KEYS))
               if any(k.get("kid") == kid for k in (c.body or {}).get("keys", []))}
    acked = {e.node_id for e in db.scalars(select(Event).where(
                 Event.type == EventType.ACK, Event.received_at >= row.created_at))
             if e.payload.get("cmd_id") in cmd_ids
             and e.payload.get("status") == outbox.CommandStatus.FINISHED}
    nodes = db.scalars(select(Node).order_by(Node.id)).all()
    missing = [n.id for n in nodes if n.id not in acked and n.created_at < row.created_at]
    return len(nodes) - len(missing), len(nodes), missing


def resend(db: Session, settings: Settings, kid: str) -> list[str]:
    """Send the key again, to each node that does not trust it yet (say it was never online
    when the key was announced); the ids of those nodes."""
    row = _key(db, kid)
    if row.state == KeyState.REVOKED:
        raise KeyLifecycleError(f"{kid} is revoked")
    _, _, missing = readiness(db, kid)
    for node_id in missing:
        _keys_command(db, settings, {"keys": [{"kid": kid, "public_key": row.public_key}],
                                     "revoke": []}, node_id)
    audit.record(db, audit.Action.KEYS_RESEND,
                 (audit.Target.SERVER_KEY, kid), {"nodes": missing[:100]})
    return missing


def activate(db: Session, settings: Settings, kid: str, force: bool = False) -> tuple[int, int]:
    """Sign with ``kid`` from now on (the active key becomes retired); (ready, total nodes).
    Refused while some node has not acked the key, unless ``force``."""
    row = _key(db, kid)
    if row.state not in (KeyState.NEXT, KeyState.RETIRED):
        raise KeyLifecycleError(f"key {kid} is {row.state}: only a next or retired key can "
                                "become active")
    if kid not in read_key_file(settings.signing_key_file):
        raise KeyLifecycleError(f"the private half of {kid} is not in the key file")
    ready, total, missing = readiness(db, kid)
    if missing and not force:
        raise KeyLifecycleError(
            f"{ready} of {total} nodes trust {kid}; not yet: {', '.join(missing[:20])}"
            f"{' …' if len(missing) > 20 else ''}. Wait, or --force (those nodes will reject "
            "everything signed by it)")
    now = utcnow()
    for old in db.scalars(select(ServerKey).where(ServerKey.state == KeyState.ACTIVE)):
        old.state, old.retired_at = KeyState.RETIRED, now
    db.flush()
    row.state, row.active, row.activated_at = KeyState.ACTIVE, True, now
    for node in db.scalars(select(Node)):
        node.desired_dirty = True  # re-sign every retained desired state with the new key
    audit.record(db, audit.Action.KEYS_ACTIVATE, (audit.Target.SERVER_KEY, kid),
                 {"ready": ready, "total": total, "missing": missing[:100]})
    return ready, total


def revoke(db: Session, settings: Settings, kid: str) -> Command:
    """Tell every node to drop ``kid`` (signed by the active key); the active key cannot be."""
    row = _key(db, kid)
    if row.state == KeyState.ACTIVE:
        raise KeyLifecycleError(f"{kid} is the active key: activate another one first")
    if row.state == KeyState.REVOKED:
        raise KeyLifecycleError(f"{kid} is already revoked")
    cmd = _keys_command(db, settings, {"keys": [], "revoke": [kid]})
    row.state, row.active, row.revoked_at = KeyState.REVOKED, False, utcnow()
    audit.record(db, audit.Action.KEYS_REVOKE,
                 (audit.Target.SERVER_KEY, kid), {"command_id": cmd.id})
    return cmd


def forget_private_key(settings: Settings, kid: str) -> None:
    """Delete a revoked key's private half from the key file (after the revocation committed)."""
    path = Path(settings.signing_key_file)
    with _FileLock(path):
        keys = read_key_file(path)
        if kid in keys and len(keys) > 1:
            del keys[kid]
            _write_key_file(path, keys)


def key_list(db: Session) -> list[dict[str, str]]:
    def t(value: dt.datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M}" if value else "-"
    out = []
    for k in db.scalars(select(ServerKey).order_by(ServerKey.created_at)):
        ready, total, _ = readiness(db, k.kid) if k.state == KeyState.NEXT else (None, None, None)
        out.append({"kid": k.kid, "state": k.state, "created": t(k.created_at),
                    "activated": t(k.activated_at), "retired": t(k.retired_at),
                    "revoked": t(k.revoked_at),
                    "nodes": f"{ready}/{total}" if ready is not None else ""})
    return out
