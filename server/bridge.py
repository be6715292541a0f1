"""The MQTT bridge: records what nodes report (state, telemetry, events) in the database.

Events are stored once per (node, event id), so a node may resend after a reconnect; acks and
`played` events move the per-node delivery of a broadcast forward, never backward.

Nothing a node sends is trusted beyond what the broker vouches for (which node sent it):
every payload is size-checked before it is parsed, only the fields the protocol names are
kept, numbers and strings are bounded so the database takes them, and an ack or `played`
counts only for a command (or schedule slot) that was addressed to that node. What the bridge
cannot accept it counts on the node (`rejected_messages`, with the last reason) and logs,
at most once a minute per node and reason, so one bad node cannot flood the log.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NoReturn, cast
from collections import deque
from collections.abc import Callable, Iterator

import jsonschema_rs
from sqlalchemy import Table, TextClause, case, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer, sessionmaker

from device_agent import schemas
from device_agent.protocol import (AckStatus, AlarmCode, CommandType, EventType, NodeReason,
                                   PlayResult, Topic, TopicKind, parse_topic)
from schedules.recurrence import DEFAULT_TZ

from . import deliveries, programmes, schedule
from .alerts import Kind as AlertKind
from .errors import storable, unavailable
from .models import (Broadcast, Command, Delivery, Event, Node, PlayLog, SlotDelivery,
                     Telemetry, ancestor_ids, node_groups, now_ms, utcnow)
from .outbox import command_acked
from .transport import Transport

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

MAX_MS = 253402300799999        # 9999-12-31T23:59:59.999Z: the last instant a date can show
MAX_JSON_INT = 2**53            # beyond this a browser's JSON reader loses digits
MAX_COUNT = 2**31 - 1           # what the Integer counter column holds everywhere
MAX_ID = 128                    # ids (event, command, item, slot): longer is refused
# Free text is cut to these lengths (with "…"), never refused: it only informs a person.
TEXT_LIMITS = {"reason": 100, "detail": 1000, "code": 64, "result": 20, "agent_version": 64,
               "operator": 64}
ID_FIELDS = ("id", "cmd_id", "item_id", "slot_id")
MS_FIELDS = ("ts", "scheduled_at", "started_at", "ended_at", "since")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# PROTOCOL.md names `result` and `detail` on the `finished` ack of a test command.
ACK_EXTRA = {"result": {"type": ["string", "null"]}, "detail": {"type": ["string", "null"]}}
LOG_EVERY_S = 60.0
INGEST_BATCH = 500         # node messages written in one transaction
# How long the worker waits for more after a message that came alone, so a trickle (a
# province's telemetry: 330 a second at 10,000 nodes) is written a few dozen a transaction,
# not one: alone, each cost a session, its look-ups and a commit, 1-2 ms of a loaded core
# (py-spy: 40% of the bridge's time at 3,000 nodes) against a tenth of that in a batch.
INGEST_LINGER_S = 0.05
INGEST_QUEUE = 100_000     # messages waiting for the worker before the network thread waits
TOPICS_KEPT = 1 << 15      # parsed topics a bridge keeps (a node has three it publishes to)
SLOT_LOOKBACK = dt.timedelta(hours=1)  # a slot begun longer ago is no more delivered or ready
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0  # while the database is unavailable: waits between tries
# how long ago a batch looks for a media_ready recorded before the desired_applied it follows
MEDIA_READY_LOOKBACK = dt.timedelta(days=1)


@dataclass(frozen=True)
class BridgeLimits:
    """The largest payload, in bytes, taken from a node per topic kind (checked before parsing),
    and the clock offset past which a node gets a ``clock_off`` alarm."""

    state_bytes: int = 4096
    telemetry_bytes: int = 16384
    event_bytes: int = 16384
    clock_offset_ms: int = 100

    def __post_init__(self) -> None:
        for name in ("state_bytes", "telemetry_bytes", "event_bytes"):
            if getattr(self, name) < 256:
                raise ValueError(f"{name}: at least 256 bytes")
        if self.clock_offset_ms < 1:
            raise ValueError("clock_offset_ms: at least 1 ms")

    @classmethod
    def from_settings(cls, settings: Settings) -> BridgeLimits:
        return cls(settings.node_max_state_bytes, settings.node_max_telemetry_bytes,
                   settings.node_max_event_bytes, settings.node_max_clock_offset_ms)

    def for_kind(self, kind: TopicKind) -> int:
        return {TopicKind.STATE: self.state_bytes, TopicKind.TELEMETRY: self.telemetry_bytes,
                TopicKind.EVENTS: self.event_bytes}[kind]


class DatabaseUnavailable(Exception):
    """The database could not take a write (locked past the busy timeout, gone, refusing
    connections): the messages were not stored and must not be confirmed to the broker.
    ``written``: how many of the messages at hand were stored before it happened."""

    def __init__(self, cause: BaseException, written: int = 0):
        super().__init__(str(cause).splitlines()[0][:300] if str(cause) else repr(cause))
        self.cause = cause
        self.written = written


class RefusedReason(StrEnum):
    """Why the bridge did not accept a node's message (counted on the node: its API answer's
    ``rejected.last_reason``, docs/protocol.md section 8)."""
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    MALFORMED = "malformed"                # not JSON, or not what its schema says
    OUT_OF_RANGE = "out_of_range"          # a number past what the database stores
    UNKNOWN_COMMAND = "unknown_command"    # an ack or a play of a command never sent to it
    SHA256_MISMATCH = "sha256_mismatch"    # a play of other audio than its command's
    UNKNOWN_VERSION = "unknown_version"    # a desired state's version never sent
    INTERNAL_ERROR = "internal_error"      # the server failed on it (logged)


class Refused(Exception):
    """A message from a node the bridge does not accept; ``reason`` is counted on the node."""

    def __init__(self, reason: RefusedReason, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --- the pure part: from bytes to the fields the protocol names ---------------------------------

def _reject_constant(text: str) -> NoReturn:
    raise Refused(RefusedReason.MALFORMED, f"{text} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(RefusedReason.OUT_OF_RANGE, f"number {text[:40]} is too large")
    return value


def decode(payload: bytes) -> Any:
    """UTF-8 JSON without NaN, Infinity or overflowing floats; Refused otherwise."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(RefusedReason.NOT_UTF8, "the payload is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise Refused(RefusedReason.MALFORMED, "JSON nested too deeply") from None
    except ValueError as err:
        raise Refused(RefusedReason.MALFORMED, f"not JSON: {err}") from None


def _object_schema(schema: dict[str, Any], value: Any) -> dict[str, Any] | None:
    """The object branch of ``schema`` that applies to ``value`` (a dict), if any."""
    if not isinstance(value, dict):
        return None
    if "properties" in schema and schema.get("type") in ("object", None):
        return schema
    branch: dict[str, Any]
    for branch in schema.get("oneOf", ()):
        if branch.get("type") == "object":
            return branch
    return None


def known_fields(value: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """Only the fields ``properties`` names, nested objects likewise (PROTOCOL.md: a receiver
    ignores fields it does not know, so they are not stored either)."""
    out: dict[str, Any] = {}
    for key, sub in properties.items():
        if key in value:
            item = value[key]
            inner = _object_schema(sub, item)
            out[key] = known_fields(item, inner["properties"]) if inner else item
    return out


def _type_rule(schema: dict[str, Any], type_: Any) -> dict[str, Any]:
    """What the schema adds for a message of ``type_`` (an event's ``then``); {} for none."""
    for rule in schema.get("allOf", ()):
        if rule["if"]["properties"]["type"].get("const") == type_:
            then: dict[str, Any] = rule["then"]
            return then
    return {}


def event_properties(type_: Any) -> dict[str, Any]:
    """The fields an event of ``type_`` may carry: the common ones and its type's own."""
    props = dict(schemas.EVENT["properties"])
    props.update(_type_rule(schemas.EVENT, type_).get("properties", {}))
    if type_ == EventType.ACK:
        props.update(ACK_EXTRA)
    return props


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _bound_int(value: int, key: str) -> int:
    if key in MS_FIELDS and not 0 <= value <= MAX_MS:
        raise Refused(RefusedReason.OUT_OF_RANGE, f"{key} {value} is not a time in ms")
    if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
        raise Refused(RefusedReason.OUT_OF_RANGE, f"{key or 'a number'} is out of range")
    return value


def _bound_float(value: float, key: str) -> float:
    if not math.isfinite(value) or abs(value) > MAX_JSON_INT:
        raise Refused(RefusedReason.OUT_OF_RANGE, f"{key or 'a number'} is out of range")
    return value


def _bound_str(value: str, key: str) -> str:
    if not storable(value):
        raise Refused(RefusedReason.MALFORMED, f"{key or 'a string'} holds NUL or a lone surrogate")
    if key in ID_FIELDS and len(value) > MAX_ID:
        raise Refused(RefusedReason.MALFORMED, f"{key} is longer than {MAX_ID}")
    if key == "sha256" and not SHA256_RE.match(value):
        raise Refused(RefusedReason.MALFORMED, "sha256 is not 64 lowercase hex digits")
    return _truncate(value, TEXT_LIMITS.get(key, 200))


def _bound(value: Any, key: str = "", depth: int = 0) -> Any:
    """Check numbers and strings so every database takes them; long free text is cut."""
    if depth > 4:
        raise Refused(RefusedReason.MALFORMED, "nested too deeply")
    kind = type(value)  # what json.loads makes: exactly these types (bool is not an int here)
    if kind is str:
        return _bound_str(value, key)
    if kind is int:
        return _bound_int(value, key)
    if kind is bool or value is None:
        return value
    if kind is float:
        return _bound_float(value, key)
    if kind is dict:
        return {k: _bound(v, k, depth + 1) for k, v in value.items()}
    if kind is list:  # no field of a node message is a list: the schema refuses it
        return value
    raise Refused(RefusedReason.MALFORMED, f"unexpected value for {key}")


def _required(schema: dict[str, Any], type_: Any) -> set[str]:
    """The fields a message must carry: the schema's, and for an event its type's own."""
    return set(schema.get("required", ())) | set(_type_rule(schema, type_).get("required", ()))


def _fields(kind: str, type_: Any) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """(schema, fields it names, fields required) of a node message of topic ``kind`` and
    ``type`` field ``type_``."""
    if kind == TopicKind.EVENTS:
        schema, props = schemas.EVENT, event_properties(type_)
    else:
        schema = schemas.STATE if kind == TopicKind.STATE else schemas.TELEMETRY
        props = schema["properties"]
    return schema, props, _required(schema, type_)


# the same for every message of a kind and type: worked out once (read, never changed); a
# few dozen kept, as a node may name any type
_known_fields = functools.lru_cache(maxsize=64)(_fields)


def _null_is_absent(data: dict[str, Any], required: set[str]) -> dict[str, Any]:
    """An optional field sent as null means what its absence means (PROTOCOL.md, edge cases):
    a node written from the protocol alone may send either, and neither may cost its message."""
    return {k: v for k, v in data.items() if v is not None or k in required}


def read_message(kind: str, payload: bytes) -> dict[str, Any]:
    """A node's state, telemetry or event reduced to the fields the protocol names, checked
    against its schema and bounded; Refused (with the reason counted) otherwise."""
    data = decode(payload)
    if not isinstance(data, dict):
        raise Refused(RefusedReason.MALFORMED, "not a JSON object")
    type_ = data.get("type")
    hashable = type_ is None or isinstance(type_, str)
    schema, props, required = (_known_fields if hashable else _fields)(kind, type_)
    data = _null_is_absent(known_fields(data, props), required)
    if not fast_validator(schema).is_valid(data):
        # the sentence says what is wrong as the agent's own check would (jsonschema's)
        raise Refused(RefusedReason.MALFORMED,
                      schemas.first_error(schema, data) or "does not fit its schema")
    bounded: dict[str, Any] = _bound(data)
    return bounded


# the same schemas (draft 2020-12) compiled by jsonschema-rs: whether a message fits takes
# about 1.5 us instead of jsonschema's 50 us, a fifth of the bridge's CPU in a province's
# burst of acks (docs/benchmarks.md); jsonschema still words what a refused one breaks
_FAST: dict[int, Any] = {}


def fast_validator(schema: dict[str, Any]) -> Any:
    validator = _FAST.get(id(schema))
    if validator is None:
        validator = _FAST[id(schema)] = jsonschema_rs.validator_for(schema)
    return validator


# --- rate-limited log ---------------------------------------------------------------------------

class _QuietLog:
    """At most one line per key every ``every_s``; the next line says how many were held back."""

    def __init__(self, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[Any, ...], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: tuple[Any, ...], msg: str, *args: Any, exc_info: bool = False
                ) -> bool:
        now = self.clock()
        with self._lock:
            last, held = self._last.get(key, (None, 0))
            if last is not None and now - last < self.every_s:
                self._last[key] = (last, held + 1)
                return False
            if len(self._last) > 10000:  # a key per node and reason: bounded anyway
                self._last.clear()
            self._last[key] = (now, 0)
        suffix = f" ({held} more like it held back)" if held else ""
        log.warning(msg + suffix, *args, exc_info=exc_info)
        return True


PAIRS_PER_QUERY = 256


def _pairs_query(pairs: list[tuple[str, str]]) -> tuple[TextClause, dict[str, str]]:
    """Which of these (node, event id) pairs are stored: each pair a probe of the unique
    (node_id, event_id) index (events have no index on event_id alone, see revision 0023;
    ``(a, b) IN (VALUES ...)`` is a scan on SQLite). At most PAIRS_PER_QUERY (SQLite refuses
    an expression deeper than 1,000), padded to a power of two, so a handful of statements is
    compiled and cached, not one per batch size."""
    size = 1 << (len(pairs) - 1).bit_length()
    padded = pairs + [pairs[-1]] * (size - len(pairs))
    params = {f"{k}{i}": v for i, (n, e) in enumerate(padded) for k, v in (("n", n), ("e", e))}
    return _pairs_sql(size), params


@functools.lru_cache(maxsize=16)
def _pairs_sql(size: int) -> TextClause:
    where = " OR ".join(f"(node_id = :n{i} AND event_id = :e{i})" for i in range(size))
    return text(f"SELECT node_id, event_id FROM events WHERE {where}")


def _waiting(status: str) -> tuple[Any, ...]:
    """Slot deliveries at ``status`` of slots not begun long ago (SLOT_LOOKBACK)."""
    return (SlotDelivery.status == status, SlotDelivery.start_at >= utcnow() - SLOT_LOOKBACK)


# --- the bridge's queue ---------------------------------------------------------------------------

Item = tuple[str, bytes, Callable[[], None] | None]  # topic, payload, confirm once written
Reading = dict[str, Any] | Refused | None  # a message read and checked (Bridge._read)


# How the bridge locks the rows of the nodes whose messages it records, until its commit (on
# PostgreSQL; SQLite's lock is the whole database's): FOR NO KEY UPDATE, as an UPDATE that
# leaves the key alone does. Another worker's batch of the same node waits, as it must; but
# what only refers to a node (a delivery or command the dispatcher makes for it, another
# worker's event row: their foreign keys take FOR KEY SHARE) does not wait for the batch,
# which FOR UPDATE made it do.
NODE_LOCK: dict[str, Any] = {"key_share": True}


def turn_file(database: str) -> str:
    """The file beside an SQLite database on whose lock its bridge workers take turns."""
    return f"{database}-bridge.lock"


# what ``urgent`` looks for: the words as JSON writes them
_RECEIVED, _ACK = (json.dumps(word).encode() for word in (AckStatus.RECEIVED, EventType.ACK))


def urgent(topic: str, payload: bytes) -> bool:
    """Whether a node message goes to the front of the bridge's queue: a ``received`` ack, a
    node saying it has a command (an emergency's 10,000 are what its operator watches; the
    same nodes' ``started`` acks, played events and telemetry follow within seconds and wait
    their turn). Only among what the broker has sent (server.mosquitto.MAX_INFLIGHT, a couple
    of batches): what it still holds comes in its order. A look at the bytes, not a parse: a
    message taken for one by mistake is only written sooner, every handler takes a node's
    messages in any order (Bridge)."""
    return topic.endswith("/events") and _RECEIVED in payload and _ACK in payload


class Intake:
    """What the network thread hands the bridge's worker, ``urgent`` messages first and each
    kind in arrival order; ``put`` waits while ``size`` messages wait. The worker takes a
    batch at a time (one lock for many messages, not one for each)."""

    def __init__(self, size: int):
        self.size = size
        self._first: deque[Item | None] = deque()
        self._rest: deque[Item | None] = deque()
        self._changed = threading.Condition()

    def qsize(self) -> int:
        with self._changed:
            return len(self._first) + len(self._rest)

    def put(self, item: Item | None, first: bool = False) -> None:
        """Queue ``item`` (None: the worker stops once what was queued before is written)."""
        with self._changed:
            while len(self._first) + len(self._rest) >= self.size:
                self._changed.wait()
            (self._first if first else self._rest).append(item)
            self._changed.notify_all()

    def take(self, limit: int, linger_s: float) -> tuple[list[Item], bool]:
        """(up to ``limit`` messages, whether the worker is to stop after them): waits for the
        first, then up to ``linger_s`` more for the batch to fill."""
        batch: list[Item] = []
        until: float | None = None
        with self._changed:
            while True:
                while len(batch) < limit and (self._first or self._rest):
                    item = (self._first or self._rest).popleft()
                    if item is None:
                        self._changed.notify_all()
                        return batch, True
                    batch.append(item)
                self._changed.notify_all()  # room for the network thread again
                if len(batch) >= limit:
                    return batch, False
                if batch and until is None:
                    until = time.monotonic() + linger_s
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return batch, False
                self._changed.wait(left)


# --- the bridge ---------------------------------------------------------------------------------

# what a shared subscription splits over the workers
SHARED_KINDS = (TopicKind.TELEMETRY, TopicKind.EVENTS)


class Bridge:
    """Records what nodes publish. Several may run at once (one in the dispatcher, others in
    ``python -m schedules --bridge-only N``): with ``shared_group`` set, the busy topics
    (SHARED_KINDS) are MQTT shared subscriptions ``$share/<group>/...``, so the broker hands
    each message to one of them; ``kinds`` are the topics this one takes (a bridge-only
    worker leaves ``state``, retained and few, to the dispatcher's plain subscription: a new
    shared subscription is not sent retained messages). A node's messages may then be
    recorded by different workers in any order: every handler is safe against that (a state
    or telemetry older than the one recorded changes no current value, statuses never move
    backward, an event is stored once), and a node's row is locked while its messages are
    recorded (SELECT ... FOR NO KEY UPDATE on PostgreSQL, NODE_LOCK; SQLite writes one
    transaction at a time)."""

    def __init__(self, sessions: sessionmaker[Session], transport: Transport, prefix: str,
                 keep_telemetry: bool = True, limits: BridgeLimits | None = None,
                 tz: str = DEFAULT_TZ, shared_group: str = "",
                 kinds: tuple[str, ...] = (TopicKind.STATE, *SHARED_KINDS)):
        self.sessions = sessions
        self.shared_group = shared_group
        self.kinds = kinds
        self.tz = tz  # the configured zone (settings.timezone): series are expanded in their
        # areas' zones, this one where no area sets one (server.schedule.zone)
        self.transport = transport
        self.prefix = prefix
        self.keep_telemetry = keep_telemetry
        self.limits = limits or BridgeLimits()
        self.quiet = _QuietLog()
        # a batch reads a message's topic three times, and a province's topics are few (three
        # a node): each parsed once
        self.where: Callable[[str], Topic | None] = functools.lru_cache(maxsize=TOPICS_KEPT)(
            functools.partial(parse_topic, prefix))
        self.received = 0  # messages handed to the worker (each recorded, or refused, once)
        self._queue = Intake(INGEST_QUEUE)
        self._turn_fd: int | None = None
        self._turn_held = False
        self._worker: threading.Thread | None = None
        self._halt = threading.Event()  # stop() while the database is unavailable: give up
        # what a node publishes, by topic kind; what it reports, by event type. A handler
        # returns a Refused when the message is stored for the record but not accepted.
        self.topics: dict[str, Callable[[Session, Node, dict[str, Any]], Refused | None]] = {
            TopicKind.STATE: self._state, TopicKind.TELEMETRY: self._telemetry,
            TopicKind.EVENTS: self._event}
        self.events: dict[str, Callable[[Session, Node, dict[str, Any]], Refused | None]] = {
            EventType.ACK: self._ack, EventType.PLAYED: self._played,
            EventType.DESIRED_APPLIED: self._desired_applied,
            EventType.MEDIA_READY: self._media_ready}

    def start(self) -> None:
        """Subscribe to what nodes publish. Messages are queued on the transport's network
        thread and written by the bridge's own worker, many per transaction, so ingest never
        holds up the network thread that confirms the dispatcher's publishes."""
        if self._worker is None:
            self._halt.clear()
            self._worker = threading.Thread(target=self._drain, name="bridge-ingest",
                                            daemon=True)
            self._worker.start()
        for kind in self.kinds:  # confirmed to the broker once written (transport acks)
            plain = f"{self.prefix}/nodes/+/{kind}"
            topic = self.subscription(kind)
            if topic != plain:  # the session's subscription from before the group was set
                self.transport.unsubscribe(plain)
            self.transport.subscribe(topic, self.enqueue, acks=True)

    def subscription(self, kind: str) -> str:
        """What this bridge subscribes to for a topic kind: shared or plain."""
        plain = f"{self.prefix}/nodes/+/{kind}"
        if self.shared_group and kind in SHARED_KINDS:
            return f"$share/{self.shared_group}/{plain}"
        return plain

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the worker. While the database is unavailable what
        is held is given up unconfirmed: the broker delivers it again to the session's next
        connection (this process's or the next lease holder's)."""
        if self._worker is not None:
            self._halt.set()
            self._queue.put(None)
            self._worker.join(timeout)
            self._worker = None
        if self._turn_fd is not None and not self._turn_held:
            os.close(self._turn_fd)
            self._turn_fd = None

    def behind(self) -> bool:
        """Whether more than a batch waits to be written: node messages arrive faster than
        the bridge writes them (an emergency's receipts, a slot's played events)."""
        return self._queue.qsize() > INGEST_BATCH

    def enqueue(self, topic: str, payload: bytes, done: Callable[[], None] | None = None) -> None:
        """Hand one message to the worker (blocks only when INGEST_QUEUE messages wait; a
        ``received`` ack goes before what waits, see ``urgent``); ``done`` is called once it
        is written, so the broker forgets it only then."""
        data = bytes(payload or b"")
        self._queue.put((topic, data, done), first=urgent(topic, data))
        self.received += 1

    def _drain(self) -> None:
        while True:
            batch, stop = self._queue.take(INGEST_BATCH, INGEST_LINGER_S)
            if batch and not self._store(batch) or stop:
                return

    def _store(self, batch: list[Item]) -> bool:
        """Write the batch and confirm each message once written (or counted as refused), so
        the broker forgets it only then. While the database is unavailable the rest is held,
        unconfirmed, and tried again (waits doubling up to RETRY_MAX_S) with an ALARM line
        saying so; False when stop() gave up on it meanwhile."""
        held_since, wait = None, RETRY_FIRST_S
        while batch:
            try:
                self.handle_batch([(topic, payload) for topic, payload, _ in batch])
                written, problem = len(batch), None
            except DatabaseUnavailable as err:
                written, problem = err.written, err
            for _, _, done in batch[:written]:
                if done is not None:
                    done()
            batch = batch[written:]
            if problem is None:
                break
            if held_since is None:
                held_since = time.monotonic()
                log.error("ALARM database unavailable, node messages held: %d waiting, not "
                          "confirmed to the broker (it keeps them); trying again until the "
                          "database takes them: %s", len(batch) + self._queue.qsize(), problem)
            if self._halt.wait(wait):
                log.warning("bridge stopped with %d node messages held: the broker delivers "
                            "them again at the next connection", len(batch))
                return False
            wait = min(wait * 2, RETRY_MAX_S)
        if held_since is not None:
            log.warning("database available again: node messages held for %.0f s are stored",
                        time.monotonic() - held_since)
        return True

    def handle_batch(self, messages: list[tuple[str, bytes]]) -> None:
        """Record many messages in one transaction; when any of them fails in a way that needs
        a rollback, the batch is undone and every message recorded on its own instead.
        DatabaseUnavailable when the database cannot take them (with how many were stored)."""
        if len(messages) > 1:
            try:
                # the pure part first, outside the write lock: other bridge workers write
                # meanwhile (on SQLite one at a time)
                readings = [self._read(topic, payload) for topic, payload in messages]
                with self._turn(), self.sessions() as db:
                    self._write_lock(db)
                    # what the batch looks up again and again is read once (see _delivery_of)
                    wheres = [w for w in (self.where(topic) for topic, _ in messages) if w]
                    names = {where.name for where in wheres}
                    db.info["batch"] = {"deliveries": {}, "events": set(), "commands": {},
                                        "slots": {}, "slot": {},  # read when first needed
                                        "slot_rows": {},  # every slot row read, by id
                                        "series": {}, "areas": {}, "broadcasts": {},
                                        "ready": None, "ready_new": {}, "seen": set(),
                                        "rows": {},  # table -> rows to insert (_insert)
                                        # held (db.get finds them) and locked: another
                                        # worker's batch of the same node waits for this one
                                        # (NODE_LOCK: not what else refers to the node)
                                        "nodes": db.scalars(select(Node).where(
                                            Node.id.in_(names)).order_by(Node.id)
                                            .options(*_unread(wheres))
                                            .with_for_update(**NODE_LOCK)).all(),
                                        "node_ids": sorted(names),
                                        "telemetry": self._stored_telemetry(
                                            db, messages, readings),
                                        "stored": self._stored_events(db, messages, readings)}
                    with db.no_autoflush:  # one flush at the commit, not one per query
                        for (topic, _), reading in zip(messages, readings, strict=True):
                            self._record(db, topic, reading)
                    batch = db.info["batch"]
                    for table, rows in batch["rows"].items():
                        db.execute(table.insert(), rows)  # one statement, many rows
                    for moved in batch["deliveries"].values():
                        deliveries.write_rows(db, moved.values())
                    deliveries.write_slot_rows(db, batch["slot_rows"].values())
                    if batch["seen"]:  # the nodes heard from (events), one statement
                        nodes = cast(Table, Node.__table__)
                        db.execute(update(nodes).where(nodes.c.id.in_(batch["seen"]))
                                   .values(last_seen=utcnow()))
                    db.commit()
                return
            except Exception as err:
                if unavailable(err):
                    raise DatabaseUnavailable(err) from err
                log.debug("batch of %d rolled back; one by one", len(messages), exc_info=True)
        for written, (topic, payload) in enumerate(messages):
            try:
                self.handle(topic, payload)
            except DatabaseUnavailable as err:
                raise DatabaseUnavailable(err.cause, written) from err.cause

    def _stored_events(self, db: Session, messages: list[tuple[str, bytes]],
                       readings: list[Reading]) -> set[tuple[str, str]]:
        """(node, event id) of the batch's events stored already, in one query."""
        pairs = set()
        for (topic, _), reading in zip(messages, readings, strict=True):
            if topic.endswith("/events") and isinstance(reading, dict):
                where = self.where(topic)
                event_id = reading.get("id")
                if where is not None and isinstance(event_id, str):
                    pairs.add((where.name, event_id))
        ordered = sorted(pairs)
        return {(n, e) for start in range(0, len(ordered), PAIRS_PER_QUERY)
                for n, e in db.execute(*_pairs_query(ordered[start:start + PAIRS_PER_QUERY]))}

    def _write_lock(self, db: Session) -> None:
        """With other bridge workers, on SQLite: take the write lock before the transaction
        reads (BEGIN IMMEDIATE), so what it decides from a node's row (newer than the last?)
        is not undone by another worker's commit in between. SQLite's driver otherwise begins
        the transaction only at the first write, after the reads. PostgreSQL locks the node's
        rows instead (NODE_LOCK); one bridge alone needs neither.

        The workers first take turns on a file lock beside the database (``_turn`` ends
        this one's): a worker waiting for it goes on the moment the other's batch is written.
        Waiting for SQLite's lock instead is its busy handler's sleeps (1 ms, then longer, up
        to 100 ms a try), so two workers wrote no faster than one."""
        if self.shared_group and db.get_bind().dialect.name == "sqlite":
            if self._turn_fd is None:
                self._turn_fd = os.open(turn_file(db.get_bind().engine.url.database or ""),
                                        os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
            self._turn_held = True
            db.connection().exec_driver_sql("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Around a session: the turn _write_lock takes in it is given to the other bridge
        workers once the session has ended (its commit or rollback)."""
        try:
            yield
        finally:
            if self._turn_held and self._turn_fd is not None:
                fcntl.flock(self._turn_fd, fcntl.LOCK_UN)
                self._turn_held = False

    def _stored_telemetry(self, db: Session, messages: list[tuple[str, bytes]],
                          readings: list[Reading]) -> set[tuple[str, int]]:
        """(node, ts) of the batch's telemetry stored already, in one query: a message the
        broker delivers again (its worker was killed between commit and confirmation) is
        recorded once."""
        keys = set()
        for (topic, _), reading in zip(messages, readings, strict=True):
            if topic.endswith("/telemetry") and isinstance(reading, dict):
                where = self.where(topic)
                ts = reading.get("ts")
                if where is not None and isinstance(ts, int) and 0 <= ts <= MAX_MS:
                    keys.add((where.name, ts))
        if not keys:
            return set()
        # by time alone (its own index: a few rows each, a time in ms), the nodes picked here:
        # with the nodes in the query too, SQLite probes every node with every time (500 x 500
        # a batch, about 0.4 s at half a million rows)
        return {(n, ts) for n, ts in db.execute(select(Telemetry.node_id, Telemetry.ts_ms).where(
            Telemetry.ts_ms.in_({ts for _, ts in keys}))) if (n, ts) in keys}

    def handle(self, topic: str, payload: bytes) -> None:
        """Record one message from a node. Raises only DatabaseUnavailable (nothing stored):
        whatever arrives leaves the database consistent, and what is refused is counted on
        the node and logged."""
        try:
            self._handle(topic, bytes(payload or b""))
        except DatabaseUnavailable:
            raise
        except Exception as err:  # the last line of defence: a callback must not die
            if unavailable(err):
                raise DatabaseUnavailable(err) from err
            self.quiet.warning(("bridge", topic[:200]), "message on %s could not be handled",
                               topic[:200], exc_info=True)

    def _handle(self, topic: str, payload: bytes) -> None:
        with self._turn(), self.sessions() as db:
            try:
                reading = self._read(topic, payload)
                self._write_lock(db)
                self._record(db, topic, reading)
                db.commit()
            except IntegrityError:
                db.rollback()  # the same event twice, stored once already by a racing write
            except Exception as err:
                db.rollback()
                if unavailable(err):  # not the message's fault: held, not counted
                    raise DatabaseUnavailable(err) from err
                where = self.where(topic)
                if where is not None and where.scope == "node":
                    self._count(db, where.name, where.kind,
                                Refused(RefusedReason.INTERNAL_ERROR, str(err)[:200]),
                                exc_info=True)
                    db.commit()

    def _taken(self, topic: str) -> Topic | None:
        """Where a message comes from, when it is a node's message this bridge records."""
        where = self.where(topic)
        if where is None or where.scope != "node" or where.kind not in self.topics:
            return None
        return where

    def _read(self, topic: str, payload: bytes) -> Reading:
        """The pure part of recording a message, no database: its checked fields, why it is
        refused (counted on its node when it is recorded), or None when there is nothing to
        record (not a node message this bridge takes, a cleared retained state)."""
        where = self._taken(topic)
        if where is None:
            return None
        try:
            if len(payload) > self.limits.for_kind(where.kind):
                raise Refused(RefusedReason.TOO_LARGE, f"{len(payload)} bytes, limit "
                              f"{self.limits.for_kind(where.kind)}")
            if where.kind == TopicKind.STATE and not payload:
                return None  # a cleared retained message
            return read_message(where.kind, payload)
        except Refused as err:
            return err

    def _record(self, db: Session, topic: str, reading: Reading) -> None:
        """One message, as ``_read`` made it, into ``db``'s transaction (not committed). A
        Refused is counted on the node, before the message wrote anything. Other errors
        propagate."""
        where = self._taken(topic)
        if where is None:
            return
        handler = self.topics[where.kind]
        # locked until the commit (PostgreSQL): another worker's message of the node waits
        node = db.get(Node, where.name,
                      with_for_update=NODE_LOCK if "batch" not in db.info else None)
        if node is None or not _accepts(node):
            self.quiet.warning(("unknown", where.name), "message from unknown or revoked "
                               "node %s ignored", where.name)
            return
        node_id = node.id
        if reading is None:
            return
        if isinstance(reading, Refused):
            self._count(db, node_id, where.kind, reading)
            return
        refused = handler(db, node, reading)
        if refused is not None:  # stored for the record, but not accepted as proof
            self._count(db, node_id, where.kind, refused)

    def _insert(self, db: Session, model: Any, **values: Any) -> None:
        """A new row of ``model`` (an event, play log or telemetry sample, never read back as
        an object). In a batch it is written with the batch's other rows of its table in one
        statement before the commit: the ORM would insert them one at a time (on SQLite, to
        learn each row's id, which nothing here needs). Unflushed either way, a query of the
        batch does not see it; the batch's memos (events, telemetry) stand in."""
        batch = db.info.get("batch")
        if batch is None:
            db.add(model(**values))
        else:
            batch["rows"].setdefault(model.__table__, []).append(values)

    def _count(self, db: Session, node_id: str, kind: str, err: Refused,
               exc_info: bool = False) -> None:
        """One more refused message on the node, with why and when; logged, but quietly."""
        node = db.get(Node, node_id)
        if node is None:
            return
        node.rejected_messages = case((Node.rejected_messages >= MAX_COUNT, MAX_COUNT),
                                      else_=Node.rejected_messages + 1)
        node.last_rejected_reason = err.reason
        node.last_rejected_at = utcnow()
        db.flush()  # a second refusal in the same batch counts on top of this one
        self.quiet.warning((node_id, err.reason), "refused %s from %s: %s", kind, node_id,
                           _truncate(str(err), 300), exc_info=exc_info)

    # --- the three topics -----------------------------------------------------------------------

    def _state(self, db: Session, node: Node, state: dict[str, Any]) -> None:
        """The node's online state, in the order the broker delivers them: states are few and
        retained, so only the dispatcher takes them, on a plain subscription (never shared).
        The Last Will carries no time: it is stamped with the server's, so telemetry sent
        before the node dropped, recorded after the Will by another worker, does not bring
        the node back online (see _telemetry)."""
        if state.get("ts") is None and not state["online"]:
            state = {**state, "ts": now_ms()}
        node.online = bool(state["online"])
        node.last_state = state
        node.last_seen = utcnow()

    def _clock_off(self, telemetry: dict[str, Any] | None) -> int | None:
        """The clock offset of a telemetry message when it is past the limit, else None."""
        offset = (telemetry or {}).get("clock_offset_ms")
        if isinstance(offset, int) and abs(offset) > self.limits.clock_offset_ms:
            return offset
        return None

    def _raise_clock_off(self, db: Session, node: Node, ts: int, detail: str) -> None:
        """The server's own ``clock_off`` alarm on the node, listed with the node's alarms: a
        node that starts broadcasts on its own clock plays out of step with its neighbours."""
        event_id = f"server:{AlertKind.CLOCK_OFF}:{ts}"
        if db.scalar(select(Event.id).where(Event.node_id == node.id,
                                            Event.event_id == event_id)):
            return
        self._insert(db, Event, node_id=node.id, event_id=event_id, type=EventType.ALARM,
                     ts_ms=ts, payload={"type": EventType.ALARM, "id": event_id, "ts": ts,
                                        "code": AlertKind.CLOCK_OFF, "detail": detail})

    def _telemetry(self, db: Session, node: Node, data: dict[str, Any]) -> None:
        """A row per message (once: one delivered again is not stored twice); the node's last
        values only from telemetry newer than them, and online only when newer than its last
        state (an offline Will recorded first stands)."""
        batch = db.info.get("batch")
        key = (node.id, data["ts"])
        if batch is not None:
            if key in batch["telemetry"]:
                return
            batch["telemetry"].add(key)
        elif self.keep_telemetry and db.scalar(select(Telemetry.id).where(
                Telemetry.node_id == node.id, Telemetry.ts_ms == data["ts"]).limit(1)):
            return
        if self.keep_telemetry:
            self._insert(db, Telemetry, node_id=node.id, ts_ms=data["ts"], payload=data)
        if _older(data["ts"], node.last_telemetry, or_same=True):
            return
        offset = self._clock_off(data)
        if offset is not None and self._clock_off(node.last_telemetry) is None:
            self._raise_clock_off(db, node, data["ts"], f"clock {offset} ms off NTP time "
                                  f"(limit {self.limits.clock_offset_ms} ms)")
        node.last_telemetry = data
        node.last_seen = utcnow()
        # strictly newer: a node stopping sends its offline state last, and telemetry read in
        # the same millisecond as that state is from before it
        if not _older(data["ts"], node.last_state, or_same=True):
            node.online = True

    def _event(self, db: Session, node: Node, event: dict[str, Any]) -> Refused | None:
        batch = db.info.get("batch")
        if batch is not None:
            if (node.id, event["id"]) in batch["events"]:
                return None  # the same event twice in one batch
            batch["events"].add((node.id, event["id"]))
            exists = (node.id, event["id"]) in batch["stored"]
        else:
            exists = db.scalar(select(Event.id).where(Event.node_id == node.id,
                                                      Event.event_id == event["id"])) is not None
        if exists:
            return None
        self._insert(db, Event, node_id=node.id, event_id=event["id"], type=event["type"],
                     ts_ms=event["ts"], payload=event)
        if batch is not None:
            batch["seen"].add(node.id)  # the batch's nodes in one statement at its end
        else:
            node.last_seen = utcnow()
        if event["type"] == EventType.ALARM and event.get("code") == AlarmCode.CLOCK_UNSYNCED:
            self._raise_clock_off(db, node, event["ts"], "the node says its clock is not "
                                  "synchronised")
        handler = self.events.get(event["type"])
        return handler(db, node, event) if handler is not None else None

    def _desired_applied(self, db: Session, node: Node, event: dict[str, Any]) -> Refused | None:
        if event["version"] < 0 or event["version"] > (node.desired_version or 0):
            return Refused(RefusedReason.UNKNOWN_VERSION,
                           f"version {event['version']} was never sent")
        node.desired_applied_version = max(event["version"], node.desired_applied_version or 0)
        rows = self._slot_rows(db, node.id, deliveries.SlotState.SCHEDULED)
        deliveries.slots_applied(rows, node.desired_applied_version)
        delivered = [r for r in rows if r.status == deliveries.SlotState.DELIVERED]
        if delivered:  # its media_ready, sent after it, may have been recorded first
            for sha in self._ready_since(db, node.id, event["ts"]) & {r.sha256 for r in delivered}:
                deliveries.slot_media_ready(delivered, sha)
        return None

    def _ready_since(self, db: Session, node_id: str, ts: int) -> set[str]:
        """The media the node said it holds (media_ready) at or after ``ts`` on its clock:
        stored already, or earlier in this batch. In a batch, those of every node in it
        (received within MEDIA_READY_LOOKBACK) are read at the first need."""
        batch = db.info.get("batch")
        if batch is None:
            return {p.get("sha256") for p in db.scalars(select(Event.payload).where(
                Event.node_id == node_id, Event.ts_ms >= ts, Event.type == EventType.MEDIA_READY))}
        if batch["ready"] is None:  # (a query is built only when it is read: building one
            # for each of a batch's events was a fifth of a desired_applied's cost)
            stored: dict[str, list[tuple[int, str]]] = {}
            for n, at, p in db.execute(select(Event.node_id, Event.ts_ms, Event.payload).where(
                    Event.node_id.in_([n.id for n in batch["nodes"]]),
                    Event.type == EventType.MEDIA_READY,
                    Event.received_at >= utcnow() - MEDIA_READY_LOOKBACK)):
                stored.setdefault(n, []).append((at, p.get("sha256")))
            batch["ready"] = stored
        return {sha for at, sha in batch["ready"].get(node_id, []) + batch["ready_new"].get(
            node_id, []) if at >= ts}

    def _media_ready(self, db: Session, node: Node, event: dict[str, Any]) -> Refused | None:
        batch = db.info.get("batch")
        if batch is not None:  # not flushed yet: what a later desired_applied looks at
            batch["ready_new"].setdefault(node.id, []).append((event["ts"], event["sha256"]))
        # those delivered earlier in this transaction too (in a batch: not written yet)
        rows: list[SlotDelivery | deliveries.SlotRow] = [
            *self._slot_rows(db, node.id, deliveries.SlotState.DELIVERED)]
        if batch is not None:
            rows += self._slot_rows(db, node.id, deliveries.SlotState.SCHEDULED)
        deliveries.slot_media_ready(rows, event["sha256"])
        return None

    def _slot_rows(self, db: Session, node_id: str, status: str
                   ) -> list[SlotDelivery] | list[deliveries.SlotRow]:
        """The node's slot deliveries that stood at ``status`` (scheduled: what a
        desired_applied moves; delivered: what a media_ready moves) when the transaction
        began, of slots not begun long ago. In a batch, those of every node in it are read at
        the first event that needs them, as plain rows the batch writes back at its end
        (deliveries.write_slot_rows): a ward's nodes apply a new desired state together."""
        batch = db.info.get("batch")
        if batch is None:
            return list(db.scalars(select(SlotDelivery).where(
                SlotDelivery.node_id == node_id, *_waiting(status))))
        by_node: dict[str, list[deliveries.SlotRow]] | None = batch["slots"].get(status)
        if by_node is None:  # the query is built only when it is read (see _ready_since)
            by_node = {}
            batch["slots"][status] = by_node
            names = [n.id for n in batch["nodes"]]
            for row in deliveries.read_slot_rows(db, batch["slot_rows"],
                                                 SlotDelivery.node_id.in_(names),
                                                 *_waiting(status)):
                by_node.setdefault(row.node_id, []).append(row)
        return by_node.get(node_id, [])

    def _slot_row(self, db: Session, node_id: str, slot_id: str
                  ) -> SlotDelivery | deliveries.SlotRow | None:
        """The node's delivery of the slot; in a batch read with every batch node's, as plain
        rows (see _slot_rows: one row is one object however it is found)."""
        batch = db.info.get("batch")
        if batch is None:
            return db.scalar(select(SlotDelivery).where(SlotDelivery.slot_id == slot_id,
                                                        SlotDelivery.node_id == node_id))
        by_node: dict[str, deliveries.SlotRow] | None = batch["slot"].get(slot_id)
        if by_node is None:
            by_node = batch["slot"][slot_id] = {row.node_id: row for row in (
                deliveries.read_slot_rows(db, batch["slot_rows"],
                                          SlotDelivery.slot_id == slot_id,
                                          SlotDelivery.node_id.in_(batch["node_ids"])))}
        return by_node.get(node_id)

    def _addressed(self, db: Session, cmd_id: str | None, node: Node) -> Command | None:
        """The command ``cmd_id`` when it was addressed to ``node``: through a delivery of its
        broadcast to the node, its own topic, or a group the node belongs to."""
        if not cmd_id:
            return None
        # in a batch: not looked up per ack
        commands: dict[str, Command | None] = self._batch_cache(db, "commands")
        if cmd_id not in commands:
            commands[cmd_id] = db.get(Command, cmd_id)
        cmd = commands[cmd_id]
        if cmd is None:
            return None
        if cmd.target == f"node:{node.id}":
            return cmd
        if cmd.broadcast_id is not None:
            delivery = self._delivery_of(db, cmd.broadcast_id, node.id)
            if delivery is not None and delivery.command_id == cmd.id:
                return cmd
        scope, _, name = cmd.target.partition(":")
        if scope == "group" and (name == "all" or name in node_groups(db, node)):
            return cmd
        return None

    def _delivery(self, db: Session, cmd: Command, node: Node
                  ) -> Delivery | deliveries.DeliveryRow | None:
        if cmd.broadcast_id is None:
            return None
        return self._delivery_of(db, cmd.broadcast_id, node.id)

    def _delivery_of(self, db: Session, broadcast_id: int, node_id: str
                     ) -> Delivery | deliveries.DeliveryRow | None:
        """The node's delivery of the broadcast. In a batch, read with every delivery of the
        broadcast to the batch's nodes at the first ack for it, as plain rows that the batch
        writes back at its end (deliveries.write_rows)."""
        batch = db.info.get("batch")
        if batch is None:
            return db.scalar(select(Delivery).where(Delivery.broadcast_id == broadcast_id,
                                                    Delivery.node_id == node_id))
        rows: dict[str, deliveries.DeliveryRow] | None = batch["deliveries"].get(broadcast_id)
        if rows is None:
            rows = batch["deliveries"][broadcast_id] = deliveries.read_rows(
                db, broadcast_id, batch["node_ids"])
        return rows.get(node_id)

    def _ack(self, db: Session, node: Node, event: dict[str, Any]) -> Refused | None:
        cmd = self._addressed(db, event["cmd_id"], node)
        if cmd is None:
            return Refused(RefusedReason.UNKNOWN_COMMAND,
                           f"ack for {event['cmd_id']!r}, never sent to it")
        status, reason = AckStatus(event["status"]), event.get("reason")
        delivery = self._delivery(db, cmd, node)
        if delivery is not None:
            deliveries.advance(delivery, status, reason)
        elif cmd.node_id == node.id:
            command_acked(cmd, status, reason, event)
        return None

    def _batch_cache(self, db: Session, name: str) -> dict[Any, Any]:
        """The batch's memo ``name`` (a dict that lives as long as the batch's transaction);
        outside a batch a fresh one, so nothing is remembered."""
        batch = db.info.get("batch")
        return batch[name] if batch is not None else {}

    def _broadcast(self, db: Session, broadcast_id: int) -> Broadcast | None:
        """The broadcast; in a batch read once (the played events of one broadcast or slot
        arrive together, from every node of a province)."""
        cache: dict[int, Broadcast | None] = self._batch_cache(db, "broadcasts")
        if broadcast_id not in cache:
            cache[broadcast_id] = db.get(Broadcast, broadcast_id)
        return cache[broadcast_id]

    def _slot_series(self, db: Session, slot_id: str) -> tuple[Broadcast | None, str | None]:
        """The series whose occurrence ``slot_id`` is (None when it is none) and the media that
        occurrence airs; in a batch worked out once per slot, not once per node."""
        cache: dict[str, tuple[Broadcast | None, str | None]] = self._batch_cache(db, "series")
        if slot_id not in cache:
            broadcast_id = schedule.slot_broadcast_id(slot_id)
            bc = self._broadcast(db, broadcast_id) if broadcast_id is not None else None
            if bc is None or bc.recurrence is None or \
                    not schedule.is_slot_of(db, bc, slot_id, self.tz):
                cache[slot_id] = (None, None)
            else:
                cache[slot_id] = (bc, schedule.slot_media(db, bc, slot_id))
        return cache[slot_id]

    def _slot_broadcast(self, db: Session, node: Node, slot_id: str) -> Broadcast | None:
        """The series whose occurrence ``slot_id`` is, when that series targets ``node`` (one
        of its areas holds the node's cluster, or it names the node); None otherwise."""
        bc = self._slot_series(db, slot_id)[0]
        if bc is None:
            return None
        # a cluster's nodes share their areas
        cache: dict[int, set[int]] = self._batch_cache(db, "areas")
        if node.cluster_id not in cache:  # in a batch: every batch node's cluster at once
            batch = db.info.get("batch")
            clusters = {n.cluster_id for n in batch["nodes"]} if batch is not None else set()
            cache.update({area_id: set(chain) for area_id, chain in ancestor_ids(
                db, clusters | {node.cluster_id}).items()})
        if node.id not in (bc.target_nodes or ()) and \
                not cache[node.cluster_id] & set(bc.target_areas or ()):
            return None
        return bc

    def _played(self, db: Session, node: Node, event: dict[str, Any]) -> Refused | None:
        cmd_id, slot_id = event.get("cmd_id"), event.get("slot_id")
        cmd = self._addressed(db, cmd_id, node) if cmd_id else None
        series = None
        if cmd is not None:
            item = (cmd.body or {}).get("item") if cmd.type == CommandType.PLAY else None
            expected = ((item or {}).get("media") or {}).get("sha256")
        else:
            series = self._slot_broadcast(db, node, slot_id) if slot_id and not cmd_id else None
            if series is None:
                return Refused(RefusedReason.UNKNOWN_COMMAND,
                               f"played for {cmd_id or slot_id!r}, never sent to it")
            # the occurrence may air another bulletin's media
            expected = self._slot_series(db, slot_id or "")[1]
        result, reason, refused = PlayResult(event["result"]), event.get("reason"), None
        sha = event.get("sha256")
        if series is not None and series.programme_id is not None and sha is not None \
                and sha in programmes.series_shas(db, series):
            expected = sha  # a programme's older revision, held from before its last edit
        if expected and (sha is not None and sha != expected
                         or sha is None and result == PlayResult.COMPLETED):
            # not proof that this broadcast played: what played was other audio (or unnamed)
            result, reason = PlayResult.FAILED, NodeReason.SHA256_MISMATCH
            refused = Refused(RefusedReason.SHA256_MISMATCH, f"played {sha} for {expected}")
        broadcast_id = cmd.broadcast_id if cmd is not None else series.id if series else None
        bulletin_id = None
        if broadcast_id is not None:
            bc = self._broadcast(db, broadcast_id)
            bulletin_id = bc.bulletin_id if bc else None
        self._insert(db, PlayLog, node_id=node.id, broadcast_id=broadcast_id,
                     bulletin_id=bulletin_id, item_id=event["item_id"], cmd_id=cmd_id,
                     slot_id=slot_id, sha256=sha, scheduled_at_ms=event.get("scheduled_at"),
                     started_at_ms=event.get("started_at") or event["ts"],
                     ended_at_ms=event.get("ended_at"), result=result, reason=reason)
        delivery = self._delivery(db, cmd, node) if cmd is not None else None
        if delivery is not None:
            deliveries.played(delivery, result, reason)
        slot_row = self._slot_row(db, node.id, slot_id) if series and slot_id else None
        if slot_row is not None:
            deliveries.slot_played(slot_row, result, reason)
        return refused


def _unread(wheres: list[Topic]) -> tuple[Any, ...]:
    """What a batch leaves unread of its nodes' rows: their last state and telemetry (JSON
    decoded for every node loaded) when it holds neither, so only events. Only the state and
    telemetry handlers look at them (a lived-in fleet's nodes carry both: reading them made
    an emergency's acks cost a third more, docs/benchmarks.md); anything else that asks
    still gets them, read then."""
    if any(where.kind in (TopicKind.STATE, TopicKind.TELEMETRY) for where in wheres):
        return ()
    return (defer(Node.last_state), defer(Node.last_telemetry))


def _older(ts: int, last: dict[str, Any] | None, or_same: bool = False) -> bool:
    """Whether a message of time ``ts`` is older than the recorded one ``last`` (a node's last
    state or telemetry, which may carry no time): then it changes no current value."""
    last_ts = (last or {}).get("ts")
    if not isinstance(last_ts, int):
        return False
    return ts < last_ts or (or_same and ts == last_ts)


def _accepts(node: Node) -> bool:
    """False for a node whose access was withdrawn (when the registry records that)."""
    return getattr(node, "revoked_at", None) is None and getattr(node, "active", True) is not False
