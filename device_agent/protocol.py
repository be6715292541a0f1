"""The server <-> speaker node wire protocol, version 1: topics, signed envelopes, events.

This module is the single implementation both sides import (the agent must stand alone, so it
lives here and depends only on the standard library, ``cryptography`` and ``jsonschema``).
Everything in it is a pure function; docs/protocol.md is generated from the schemas below.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import schemas
# the protocol's words, declared in schemas.py beside the schemas that list them
from .schemas import AckStatus as AckStatus
from .schemas import AlarmCode as AlarmCode
from .schemas import CommandType as CommandType
from .schemas import HornTest as HornTest
from .schemas import EventType as EventType
from .schemas import HornVerdict as HornVerdict
from .schemas import NodeReason as NodeReason
from .schemas import PlayResult as PlayResult
from .schemas import RejectReason as RejectReason
from .schemas import TopicKind as TopicKind

VERSION = 1
DEFAULT_PREFIX = "loa/v1"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
FUTURE_TOLERANCE_MS = 5 * 60 * 1000
LATE_SLOT_MS = 60 * 1000


class PriorityName(StrEnum):
    """A named priority level (PRIORITY_NAMES): what the API takes besides 0-9, and what the
    pages call a level."""
    NORMAL = "normal"
    PRIORITY = "priority"
    LIVE = "live"
    EMERGENCY = "emergency"


PRIORITY_NAMES: dict[str, int] = {PriorityName.NORMAL: 3, PriorityName.PRIORITY: 5,
                                  PriorityName.LIVE: 7, PriorityName.EMERGENCY: 9}
EMERGENCY = PRIORITY_NAMES[PriorityName.EMERGENCY]


class ProtocolError(ValueError):
    """An envelope that a node must reject, and why."""

    def __init__(self, reason: RejectReason, detail: str = "", cmd_id: str | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.cmd_id = cmd_id


# --- topics ---------------------------------------------------------------------------------

_TOPIC_KINDS = frozenset(TopicKind)


def valid_name(name: str) -> bool:
    """True when ``name`` may stand for ``{node}`` or ``{group}`` in a topic."""
    return isinstance(name, str) and bool(NAME_RE.match(name))


def node_topic(prefix: str, node: str, kind: str) -> str:
    """``{prefix}/nodes/{node}/{kind}``; kind is a TopicKind."""
    if kind not in _TOPIC_KINDS:
        raise ValueError(f"unknown node topic kind {kind!r}")
    if not valid_name(node):
        raise ValueError(f"invalid node id {node!r}")
    return f"{prefix}/nodes/{node}/{kind}"


def group_topic(prefix: str, group: str) -> str:
    """``{prefix}/groups/{group}/cmd``."""
    if not valid_name(group):
        raise ValueError(f"invalid group name {group!r}")
    return f"{prefix}/groups/{group}/cmd"


def command_topic(prefix: str, type_: str, target: str) -> str:
    """Where an envelope of ``type_`` for ``target`` (``node:x`` or ``group:y``) is published:
    a group's cmd topic, a node's desired topic for ``desired``, else the node's cmd topic."""
    scope, _, name = target.partition(":")
    if scope == "group":
        return group_topic(prefix, name)
    if scope == "node":
        return node_topic(prefix, name, TopicKind.DESIRED if type_ == CommandType.DESIRED
                          else TopicKind.CMD)
    raise ValueError(f"target must be node:NAME or group:NAME, not {target!r}")


@dataclass(frozen=True)
class Topic:
    scope: str  # "node" or "group"
    name: str
    kind: TopicKind


def parse_topic(prefix: str, topic: str) -> Topic | None:
    """Split a topic under ``prefix``; None when it is not one of the protocol's topics."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) != 3 or not valid_name(parts[1]):
        return None
    scope, name, kind = parts
    if scope == "nodes" and kind in _TOPIC_KINDS:
        return Topic("node", name, TopicKind(kind))
    if scope == "groups" and kind == TopicKind.CMD:
        return Topic("group", name, TopicKind.CMD)
    return None


# --- keys -----------------------------------------------------------------------------------

def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw 32-byte Ed25519 public key in standard base64."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(b64: str) -> Ed25519PublicKey:
    """Parse a base64 raw public key; ValueError when it is not 32 bytes of base64."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, TypeError) as err:
        raise ValueError(f"public key is not base64: {err}") from None
    if len(raw) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def load_private_key(b64: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(b64, validate=True))


# --- envelopes ------------------------------------------------------------------------------

def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed: the envelope without ``sig``, as PROTOCOL.md fixes."""
    unsigned = {k: v for k, v in envelope.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _no_floats(value: Any, path: str = "") -> None:
    if isinstance(value, float):
        raise ProtocolError(RejectReason.MALFORMED, f"floating-point number at {path or '/'}")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_floats(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_floats(v, f"{path}/{i}")


MAX_BODY_BYTES = 256 * 1024  # a signed body larger than this is refused before it is queued


def body_problem(type_: str, body: Any) -> str | None:
    """Why ``body`` cannot be signed and sent as a ``type_`` command, or None when it can.

    The server asks this before it queues anything, so a row it cannot sign never reaches the
    outbox: the body fits its type's schema, holds no float anywhere, encodes as UTF-8 (no lone
    surrogates) and is not larger than MAX_BODY_BYTES."""
    if not isinstance(body, dict):
        return "the body must be an object"
    schema = schemas.BODIES.get(type_)
    if schema is not None:
        problem = schemas.first_error(schema, body)
        if problem:
            return problem
    try:
        _no_floats(body)
    except ProtocolError as err:
        return err.detail
    try:
        size = len(json.dumps(body, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as err:
        return f"cannot be encoded: {err}"
    if size > MAX_BODY_BYTES:
        return f"larger than {MAX_BODY_BYTES} bytes"
    return None


def sign_envelope(key: Ed25519PrivateKey, kid: str, type_: str, to: str, body: Mapping[str, Any],
                  now_ms: int, ttl_ms: int, msg_id: str | None = None) -> dict[str, Any]:
    """Build and sign an envelope. Raises ProtocolError if the content holds a float."""
    env: dict[str, Any] = {"v": VERSION, "id": msg_id or str(uuid.uuid4()), "type": type_, "to": to,
           "ts": int(now_ms), "exp": int(now_ms) + int(ttl_ms), "kid": kid, "body": dict(body)}
    _no_floats(env)
    env["sig"] = base64.b64encode(key.sign(canonical_bytes(env))).decode("ascii")
    return env


def envelope_json(envelope: Mapping[str, Any]) -> str:
    """Serialise an envelope for the wire (any key order verifies: the signature is canonical)."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def _reject_float(text: str) -> float:
    raise ProtocolError(RejectReason.MALFORMED, f"floating-point number {text}")


def parse_json_no_floats(raw: bytes | str) -> Any:
    """json.loads that refuses floats, NaN and Infinity (signed content holds none)."""
    try:
        return json.loads(raw, parse_float=_reject_float, parse_constant=_reject_float)
    except ProtocolError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ProtocolError(RejectReason.MALFORMED, f"not JSON: {err}") from None


def _readable_id(raw: bytes | str) -> str | None:
    """The envelope id of content that failed the strict parse, when it can still be read."""
    try:
        env = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = env.get("id") if isinstance(env, dict) else None
    return value if isinstance(value, str) and value else None


def verify_envelope(raw: bytes | str, topic: str, *, prefix: str, node_id: str,
                    groups: Iterable[str], keys: Mapping[str, Ed25519PublicKey],
                    now_ms: int) -> dict[str, Any]:
    """Check an envelope received on ``topic`` by node ``node_id``; return it when it is good.

    Raises ProtocolError with the reason a node reports. Replays are not checked here (that
    needs the node's memory); the body of a known type is checked against its schema, and an
    unknown type passes (the node answers it with ``unsupported_type``).
    """
    env, cmd_id = _parse_envelope(raw)
    _check_signature(env, keys, cmd_id)
    _check_target(env, topic, prefix=prefix, node_id=node_id, groups=groups, cmd_id=cmd_id)
    if now_ms > env["exp"]:
        raise ProtocolError(RejectReason.EXPIRED, f"expired {now_ms - env['exp']} ms ago", cmd_id)
    if env["ts"] > now_ms + FUTURE_TOLERANCE_MS:
        raise ProtocolError(RejectReason.FUTURE, f"ts is {env['ts'] - now_ms} ms ahead", cmd_id)
    body_schema = schemas.BODIES.get(env["type"])
    if body_schema is not None:
        problem = schemas.first_error(body_schema, env["body"])
        if problem:
            raise ProtocolError(RejectReason.MALFORMED, f"body: {problem}", cmd_id)
    return env


def _parse_envelope(raw: bytes | str) -> tuple[dict[str, Any], str | None]:
    """The envelope that fits the envelope schema, and its id; ProtocolError ``malformed``."""
    cmd_id = None
    try:
        env = parse_json_no_floats(raw)
    except ProtocolError as err:
        raise ProtocolError(err.reason, err.detail, _readable_id(raw)) from None
    if isinstance(env, dict) and isinstance(env.get("id"), str):
        cmd_id = env["id"]
    problem = schemas.first_error(schemas.ENVELOPE, env)
    if problem:
        raise ProtocolError(RejectReason.MALFORMED, problem, cmd_id)
    envelope: dict[str, Any] = env
    return envelope, cmd_id


def _check_signature(env: Mapping[str, Any], keys: Mapping[str, Ed25519PublicKey],
                     cmd_id: str | None) -> None:
    if "sig" not in env:
        raise ProtocolError(RejectReason.BAD_SIGNATURE, "no signature", cmd_id)
    key = keys.get(env["kid"])
    if key is None:
        raise ProtocolError(RejectReason.UNKNOWN_KID, f"kid {env['kid']!r} is not trusted", cmd_id)
    try:
        sig = base64.b64decode(env["sig"], validate=True)
        key.verify(sig, canonical_bytes(env))
    except (binascii.Error, InvalidSignature, ValueError):
        raise ProtocolError(RejectReason.BAD_SIGNATURE, "signature does not verify",
                            cmd_id) from None


def _check_target(env: Mapping[str, Any], topic: str, *, prefix: str, node_id: str,
                  groups: Iterable[str], cmd_id: str | None) -> None:
    """The envelope is addressed to this node (or one of its groups) and came on the topic its
    type belongs on; ProtocolError ``wrong_target`` otherwise."""
    where = parse_topic(prefix, topic)
    if where is None:
        raise ProtocolError(RejectReason.WRONG_TARGET, f"not a command topic: {topic}", cmd_id)
    if where.scope == "node":
        fits = where.name == node_id and env["to"] == f"node:{node_id}"
    else:
        fits = env["to"] == f"group:{where.name}" and (where.name == "all"
                                                        or where.name in set(groups))
    if not fits:
        raise ProtocolError(RejectReason.WRONG_TARGET, f"to={env['to']} on {topic}", cmd_id)
    if (env["type"] == CommandType.DESIRED) != (where.kind == TopicKind.DESIRED):
        raise ProtocolError(RejectReason.WRONG_TARGET, f"type {env['type']} on {where.kind} topic",
                            cmd_id)


# --- events (node -> server) ----------------------------------------------------------------

def make_event(type_: EventType, now_ms: int, event_id: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """An event as a node sends it; ``fields`` whose value is None are left out."""
    event: dict[str, Any] = {"v": VERSION, "id": event_id or str(uuid.uuid4()), "type": type_,
                             "ts": int(now_ms)}
    event.update({k: v for k, v in fields.items() if v is not None})
    return event


def parse_event(raw: bytes | str) -> dict[str, Any]:
    """Parse and check an event from a node (floats allowed: events are not signed)."""
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # nesting too deep: malformed
        raise ProtocolError(RejectReason.MALFORMED, f"not JSON: {err}") from None
    problem = schemas.first_error(schemas.EVENT, event)
    if problem:
        raise ProtocolError(RejectReason.MALFORMED, problem)
    checked: dict[str, Any] = event
    return checked


def priority_name(priority: int) -> PriorityName:
    """The name of a numeric priority, rounded down (4 is normal, 8 live)."""
    return max((n for n in PriorityName if PRIORITY_NAMES[n] <= priority),
               key=PRIORITY_NAMES.__getitem__, default=PriorityName.NORMAL)


def priority_value(priority: int | str) -> int:
    """Map a named level or 0-9 to the integer priority; ValueError otherwise."""
    if isinstance(priority, bool):
        raise ValueError("priority must be a name or 0-9")
    if isinstance(priority, int) and 0 <= priority <= 9:
        return priority
    if isinstance(priority, str) and priority in PRIORITY_NAMES:
        return PRIORITY_NAMES[priority]
    raise ValueError(f"priority must be one of {sorted(PRIORITY_NAMES)} or 0-9, not {priority!r}")
