"""JSON Schemas (draft 2020-12) of every protocol v1 message.

They are the single source: the agent and the server validate with them, and docs/protocol.md
prints them (``python -m device_agent.schemas`` writes the docs' schema section).
Receivers ignore unknown fields, so objects allow additional properties.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from jsonschema import Draft202012Validator


# --- the protocol's words: declared once, the schemas below list them --------------------------

class CommandType(StrEnum):
    """What a signed envelope asks of a node (its ``type``): each has its body's schema."""
    PLAY = "play"
    STOP = "stop"
    SET_VOLUME = "set_volume"
    AMP = "amp"
    TEST = "test"
    REBOOT = "reboot"
    KEYS = "keys"
    UPDATE = "update"
    DESIRED = "desired"        # the node's whole schedule, on its own retained topic


class TopicKind(StrEnum):
    """The last part of a node's topic ``{prefix}/nodes/{node}/{kind}``."""
    DESIRED = "desired"        # server -> node, retained
    CMD = "cmd"                # server -> node
    STATE = "state"            # node -> server, retained (the Last Will sets it offline)
    TELEMETRY = "telemetry"    # node -> server
    EVENTS = "events"          # node -> server


class EventType(StrEnum):
    """What a node reports on its events topic (an event's ``type``)."""
    ACK = "ack"
    PLAYED = "played"
    DESIRED_APPLIED = "desired_applied"
    MEDIA_READY = "media_ready"
    ALARM = "alarm"


class AckStatus(StrEnum):
    """How far a node got with a command (an ``ack`` event's ``status``)."""
    RECEIVED = "received"
    REJECTED = "rejected"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    SKIPPED = "skipped"


class PlayResult(StrEnum):
    """How one play of an item ended (a ``played`` event's ``result``)."""
    COMPLETED = "completed"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    FAILED = "failed"
    SKIPPED = "skipped"


class RejectReason(StrEnum):
    """Why a node refused an envelope (a ``rejected`` ack's ``reason``)."""
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KID = "unknown_kid"
    EXPIRED = "expired"
    FUTURE = "future"
    WRONG_TARGET = "wrong_target"
    REPLAYED = "replayed"


class NodeReason(StrEnum):
    """Why this project's agent did not do, or did not finish, what it was asked (an ack's or
    a ``played`` event's ``reason``, docs/protocol.md; a rejection's is a RejectReason). The
    schema admits any reason: another maker's node may give its own, which the server counts
    as a failure."""
    # not started: skipped
    EXPIRED = "expired"                      # the command's exp passed before it could start
    LATE = "late"                            # a slot too far past its time (LATE_SLOT_MS)
    QUIET_HOURS = "quiet_hours"
    # failed
    MEDIA_UNAVAILABLE = "media_unavailable"  # its audio could not be downloaded
    MEDIA_MISMATCH = "media_mismatch"        # what was downloaded is not the audio named
    PLAYER_ERROR = "player_error"
    INTERRUPTED = "interrupted"              # the agent restarted while it played
    SHUTDOWN = "shutdown"                    # the agent stopped while it played
    UNSUPPORTED_TYPE = "unsupported_type"
    AMP_FAULT = "amp_fault"
    REBOOT_FAILED = "reboot_failed"
    BAD_KEY = "bad_key"
    LAST_KEY = "last_key"                    # revoking would leave no trusted key
    # an agent update's
    ROLLED_BACK = "rolled_back"
    NO_LAUNCHER = "no_launcher"
    BUSY = "busy"
    DOWNLOAD_FAILED = "download_failed"
    SHA256_MISMATCH = "sha256_mismatch"
    INSTALL_FAILED = "install_failed"


class AlarmCode(StrEnum):
    """What this project's agent raises an alarm about (an ``alarm`` event's ``code``,
    docs/protocol.md section 6). The schema admits any code: another maker's node may raise
    its own, which the server shows as it is."""
    UNDER_VOLTAGE = "under_voltage"
    OVERHEAT = "overheat"
    DISK_LOW = "disk_low"
    MODEM_UNREGISTERED = "modem_unregistered"
    CLOCK_UNSYNCED = "clock_unsynced"
    CLOCK_JUMP = "clock_jump"
    AMP_FAULT = "amp_fault"
    PLAYER_FAILING = "player_failing"
    REJECTED_COMMAND = "rejected_command"
    MEDIA_MISMATCH = "media_mismatch"


class HornTest(StrEnum):
    """What a ``test`` command asks of a node's horn (its body's ``kind``)."""
    TONE = "tone"          # play the test tone
    ACOUSTIC = "acoustic"  # play tones and record them: its last ack says what was heard


class HornVerdict(StrEnum):
    """What a horn test found (its ``finished`` ack's ``result``)."""
    OK = "ok"
    FAIL = "fail"


class NetType(StrEnum):
    """The kind of link a node's traffic leaves by (telemetry's ``net.type``)."""
    ETHERNET = "ethernet"
    WIFI = "wifi"
    CELLULAR = "4g"


class BytesSince(StrEnum):
    """Since when a node's byte counters count (telemetry's ``net.bytes_since``)."""
    CONNECTED = "connected"  # the modem's ongoing connection (ModemManager's bearer)
    BOOT = "boot"            # the interface appeared (the kernel's counters)


def _enum(words: type[StrEnum], *, or_null: bool = False) -> dict[str, list[str | None]]:
    """A JSON Schema admitting exactly the values of ``words``, in their declared order (and
    null too, ``or_null``)."""
    values: list[str | None] = [word.value for word in words]
    return {"enum": values + [None] if or_null else values}


def _of_type(event: EventType) -> dict[str, Any]:
    """The ``if`` of EVENT's rule for one event type."""
    return {"properties": {"type": {"const": event.value}}}


NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$"}
MS = {"type": "integer", "minimum": 0}
PRIORITY = {"type": "integer", "minimum": 0, "maximum": 9}
VOLUME = {"type": "integer", "minimum": 0, "maximum": 100}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}

MEDIA = {
    "type": "object",
    "required": ["sha256", "url", "bytes", "duration_ms"],
    "properties": {"sha256": SHA256, "url": {"type": "string", "minLength": 1},
                   "bytes": {"type": "integer", "minimum": 1}, "duration_ms": MS},
}
ITEM = {
    "type": "object",
    "required": ["id", "media"],
    "properties": {"id": {"type": "string", "minLength": 1}, "title": {"type": "string"},
                   "media": MEDIA},
}

ENVELOPE = {
    "$id": "envelope",
    "title": "Signed envelope (every server -> node message)",
    "type": "object",
    "required": ["v", "id", "type", "to", "ts", "exp", "kid", "body"],
    "properties": {
        "v": {"const": 1},
        "id": {"type": "string", "minLength": 1, "maxLength": 128},
        "type": {"type": "string", "minLength": 1},
        "to": {"type": "string", "pattern": "^(node|group):[a-z0-9][a-z0-9-]{1,62}$"},
        "ts": MS, "exp": MS,
        "kid": {"type": "string", "minLength": 1},
        "body": {"type": "object"},
        "sig": {"type": "string", "description": "standard base64 Ed25519 signature"},
    },
}

PLAY = {
    "$id": "play", "title": "body of type play", "type": "object",
    "required": ["item", "priority"],
    "properties": {"item": ITEM, "priority": PRIORITY,
                   "start_at": {"oneOf": [MS, {"type": "null"}]},
                   "volume": {"oneOf": [VOLUME, {"type": "null"}]},
                   "repeat": {"type": "integer", "minimum": 1, "maximum": 100}},
}
STOP = {
    "$id": "stop", "title": "body of type stop", "type": "object",
    "properties": {"item_id": {"oneOf": [{"type": "string", "minLength": 1}, {"type": "null"}]},
                   "max_priority": PRIORITY},
    "anyOf": [{"required": ["item_id"], "properties": {"item_id": {"type": "string"}}},
              {"required": ["max_priority"]}],
}
SET_VOLUME = {"$id": "set_volume", "title": "body of type set_volume", "type": "object",
              "required": ["volume"], "properties": {"volume": VOLUME}}
AMP = {"$id": "amp", "title": "body of type amp", "type": "object", "required": ["on"],
       "properties": {"on": {"type": "boolean"}}}
TEST = {"$id": "test", "title": "body of type test", "type": "object", "required": ["kind"],
        "properties": {"kind": _enum(HornTest)}}
REBOOT = {"$id": "reboot", "title": "body of type reboot", "type": "object"}
KEYS = {
    "$id": "keys", "title": "body of type keys", "type": "object",
    "properties": {
        "keys": {"type": "array", "items": {
            "type": "object", "required": ["kid", "public_key"],
            "properties": {"kid": {"type": "string", "minLength": 1},
                           "public_key": {"type": "string", "minLength": 44, "maxLength": 44}}}},
        "revoke": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
}
UPDATE = {
    "$id": "update", "title": "body of type update (an agent release to install)",
    "type": "object", "required": ["version", "media"],
    "properties": {
        "version": {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$"},
        "media": {"type": "object", "required": ["sha256", "url", "bytes"],
                  "properties": {"sha256": SHA256, "url": {"type": "string", "minLength": 1},
                                 "bytes": {"type": "integer", "minimum": 1}}},
    },
}
DESIRED = {
    "$id": "desired", "title": "body of type desired (retained on the desired topic)",
    "type": "object", "required": ["version"],
    "properties": {
        "version": {"type": "integer", "minimum": 1},
        "tz": {"type": "string", "minLength": 1},
        "volume": VOLUME,
        "quiet_hours": {"type": "array", "items": {
            "type": "object", "required": ["from", "to"],
            "properties": {"from": HHMM, "to": HHMM}}},
        "groups": {"type": "array", "items": NAME},
        "schedule": {"type": "array", "items": {
            "type": "object", "required": ["slot_id", "start_at", "priority", "item"],
            "properties": {"slot_id": {"type": "string", "minLength": 1}, "start_at": MS,
                           "priority": PRIORITY, "item": ITEM,
                           "volume": {"oneOf": [VOLUME, {"type": "null"}]}}}},
        "prefetch": {"type": "array", "items": MEDIA},
    },
}
BODIES: dict[str, dict[str, Any]] = {
    CommandType.PLAY: PLAY, CommandType.STOP: STOP, CommandType.SET_VOLUME: SET_VOLUME,
    CommandType.AMP: AMP, CommandType.TEST: TEST, CommandType.REBOOT: REBOOT,
    CommandType.KEYS: KEYS, CommandType.UPDATE: UPDATE, CommandType.DESIRED: DESIRED}

_EVENT_BASE = {"v": {"const": 1}, "id": {"type": "string", "minLength": 1, "maxLength": 128},
               "ts": MS}
EVENT: dict[str, Any] = {
    "$id": "event", "title": "Event (node -> server, on the events topic)", "type": "object",
    "required": ["v", "id", "type", "ts"],
    "properties": dict(_EVENT_BASE, type=_enum(EventType)),
    "allOf": [
        {"if": _of_type(EventType.ACK),
         "then": {"required": ["cmd_id", "status"], "properties": {
             "cmd_id": {"type": "string"},
             "status": _enum(AckStatus),
             "reason": {"type": ["string", "null"]}}}},
        {"if": _of_type(EventType.PLAYED),
         "then": {"required": ["item_id", "result"], "properties": {
             "item_id": {"type": "string"}, "slot_id": {"type": ["string", "null"]},
             "cmd_id": {"type": ["string", "null"]}, "sha256": {"type": ["string", "null"]},
             "scheduled_at": {"type": ["integer", "null"]},
             "started_at": {"type": ["integer", "null"]},
             "ended_at": {"type": ["integer", "null"]},
             "result": _enum(PlayResult),
             "reason": {"type": ["string", "null"]}}}},
        {"if": _of_type(EventType.DESIRED_APPLIED),
         "then": {"required": ["version"], "properties": {"version": {"type": "integer"}}}},
        {"if": _of_type(EventType.MEDIA_READY),
         "then": {"required": ["sha256"], "properties": {"sha256": SHA256}}},
        {"if": _of_type(EventType.ALARM),
         "then": {"required": ["code"], "properties": {
             "code": {"type": "string", "minLength": 1}, "detail": {"type": ["string", "null"]},
             "cmd_id": {"type": ["string", "null"]}, "reason": {"type": ["string", "null"]}}}},
    ],
}
NUM_OR_NULL = {"type": ["number", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}
BOOL_OR_NULL = {"type": ["boolean", "null"]}
TEXT_OR_NULL = {"type": ["string", "null"]}
COUNTER_OR_NULL = {"oneOf": [{"type": "null"}, {"type": "integer", "minimum": 0}]}
TELEMETRY: dict[str, Any] = {
    "$id": "telemetry", "title": "Telemetry (node -> server, every telemetry_s seconds)",
    "type": "object", "required": ["v", "ts"],
    "properties": {
        "v": {"const": 1}, "ts": MS, "uptime_s": NUM_OR_NULL,
        "agent_version": {"type": ["string", "null"]}, "cpu_temp_c": NUM_OR_NULL,
        "load1": NUM_OR_NULL, "mem_used_pct": NUM_OR_NULL, "disk_free_mb": NUM_OR_NULL,
        "volume": INT_OR_NULL, "amp_on": {"type": ["boolean", "null"]},
        "amp_fault": {"type": ["boolean", "null"]},  # optional: only with a fault input
        "playing": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
            "item_id": {"type": "string"}, "priority": PRIORITY, "since": MS}}]},
        # each field below is optional: absent or null means the node could not read it
        "net": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
            "type": _enum(NetType, or_null=True), "signal_dbm": NUM_OR_NULL,
            "operator": TEXT_OR_NULL, "modem_state": TEXT_OR_NULL, "access_tech": TEXT_OR_NULL,
            "registration": TEXT_OR_NULL,
            "signal_pct": {"oneOf": [{"type": "null"},
                                     {"type": "integer", "minimum": 0, "maximum": 100}]},
            "rsrp_dbm": NUM_OR_NULL, "rsrq_db": NUM_OR_NULL, "sinr_db": NUM_OR_NULL,
            "rx_bytes": COUNTER_OR_NULL, "tx_bytes": COUNTER_OR_NULL,
            "bytes_since": _enum(BytesSince, or_null=True),
            "iface": TEXT_OR_NULL, "carrier": BOOL_OR_NULL,
            "link_mbps": {"oneOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}]},
            "ssid": TEXT_OR_NULL, "wifi_signal_dbm": NUM_OR_NULL}}]},
        "power": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
            name: BOOL_OR_NULL for name in (
                "under_voltage", "freq_capped", "throttled", "soft_temp_limit",
                "under_voltage_since_boot", "freq_capped_since_boot", "throttled_since_boot",
                "soft_temp_limit_since_boot")}}]},
        "clock_offset_ms": INT_OR_NULL, "desired_version": INT_OR_NULL,
        "cache_bytes": INT_OR_NULL,
    },
}
STATE: dict[str, Any] = {
    "$id": "state", "title": "State (node -> server, retained; the Last Will sets online false)",
    "type": "object", "required": ["v", "online"],
    "properties": {"v": {"const": 1}, "online": {"type": "boolean"},
                   "ts": {"oneOf": [{"type": "null"}, MS]},
                   "agent_version": {"type": ["string", "null"]}},
}

ALL = {"envelope": ENVELOPE, **{f"body.{k}": v for k, v in BODIES.items()}, "event": EVENT,
       "telemetry": TELEMETRY, "state": STATE}
# Compiled once per schema (and, for a schema with a rule per message type, once per type): a
# validator is built from its schema only here, never per message.
_VALIDATORS: dict[int, tuple[Draft202012Validator, dict[str, Draft202012Validator]]] = {}


def _type_rules(schema: Mapping[str, Any]) -> dict[str, Any]:
    """For a schema whose ``allOf`` is only rules "if type is X then ..." (EVENT): X -> its
    ``then``; {} for any other schema."""
    rules = schema.get("allOf")
    if not isinstance(rules, list):
        return {}
    out = {}
    for rule in rules:
        const = rule.get("if", {}).get("properties", {}).get("type", {}).get("const") \
            if set(rule) == {"if", "then"} and set(rule["if"]) == {"properties"} else None
        if not isinstance(const, str) or set(rule["if"]["properties"]) != {"type"} or \
                set(rule["if"]["properties"]["type"]) != {"const"}:
            return {}
        out[const] = rule["then"]
    return out


def _compile(schema: Mapping[str, Any]
             ) -> tuple[Draft202012Validator, dict[str, Draft202012Validator]]:
    """The schema's validator, and for each message type it has a rule for (EVENT's ack,
    played, ...) a validator of the same schema with that type's ``then`` in place of the
    rules: for a message of that type it finds the same errors in the same order (the other
    types' ``if`` fails, so their ``then`` never applies) without testing every ``if``."""
    by_type = {type_: Draft202012Validator({
        key: ([then] if key == "allOf" else value) for key, value in schema.items()})
        for type_, then in _type_rules(schema).items()}
    return Draft202012Validator(schema), by_type


def first_error(schema: Mapping[str, Any], instance: Any) -> str | None:
    """The first way ``instance`` breaks ``schema``, as a short sentence; None when it fits."""
    compiled = _VALIDATORS.get(id(schema))
    if compiled is None:
        compiled = _VALIDATORS[id(schema)] = _compile(schema)
    validator, by_type = compiled
    if by_type and isinstance(instance, dict):
        type_ = instance.get("type")
        if isinstance(type_, str):
            validator = by_type.get(type_, validator)
    error = next(iter(validator.iter_errors(instance)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


def markdown() -> str:
    """The schema section of docs/protocol.md."""
    out = []
    for name, schema in ALL.items():
        out.append(f"### `{name}`\n\n```json\n{json.dumps(schema, indent=2)}\n```\n")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
