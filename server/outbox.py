"""The outbox of commands to nodes, from queueing to the broker: the web queues commands here
unsigned (it holds no key), the dispatcher's pass signs them, publishes them in priority order
and gives up on what cannot go out (expired, unsignable, refused by the broker). Every step is
a function over a session; the dispatcher only decides when to call them."""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from enum import StrEnum
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from device_agent import protocol
from device_agent.protocol import (AckStatus, CommandType, ProtocolError, RejectReason,
                                   command_topic, envelope_json, sign_envelope)

from . import deliveries
from .config import Settings
from .deliveries import UnsentReason, ack_moves
from .errors import bad_request
from .models import Command, Delivery, Node, User, from_ms, to_ms, utcnow
from .transport import Transport

log = logging.getLogger(__name__)
PUBLISH_ATTEMPTS = 3  # a row the connected broker refuses this often is failed, not retried
SIGN_BATCH = 500      # rows signed or published in one pass
COMMIT_EVERY = 100    # rows in flight at once, then marked in one transaction
PUBLISH_TIMEOUT_S = 10.0  # the broker's PUBACK; later, QoS 1 still delivers (server.transport)
IDS_PER_QUERY = 500   # node ids in one IN (...)


class CommandStatus(StrEnum):
    """A node command's last ack (PROTOCOL.md), or why the outbox gave up on it."""
    RECEIVED = "received"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"          # the node's ack, or: the outbox could not send it
    REJECTED = "rejected"
    PREEMPTED = "preempted"
    STOPPED = "stopped"
    SKIPPED = "skipped"
    EXPIRED = "expired"        # the outbox: it expired before it went out


# --- enqueue ------------------------------------------------------------------------------------

def queue_command(db: Session, settings: Settings, user: User | None, type_: str, target: str,
                  body: dict[str, Any], *, ttl_ms: int, broadcast_id: int | None = None,
                  node_id: str | None = None, retain: bool = False,
                  priority: int = 0) -> Command:
    """Put a command in the outbox; the dispatcher signs and publishes it.

    Nothing reaches the outbox that cannot be signed: the body is checked against the protocol
    here (a 400 naming the problem), so one bad row can never hold up the others."""
    problem = protocol.body_problem(type_, body)
    if problem:
        raise bad_request("err.invalid_field", field="body", detail=problem)
    topic = command_topic(settings.topic_prefix, type_, target)
    cmd = Command(id=str(uuid.uuid4()), type=type_, target=target, topic=topic, body=body,
                  retain=retain, broadcast_id=broadcast_id, node_id=node_id, ttl_ms=ttl_ms,
                  priority=priority, created_by=user.id if user else None, created_at=utcnow())
    db.add(cmd)
    return cmd


def queue_clear_desired(db: Session, settings: Settings, user: User, node_id: str) -> Command:
    """Clear a node's retained desired state: an empty retained message, unsigned (it carries
    no command), published like any other row."""
    target = f"node:{node_id}"
    cmd = Command(id=str(uuid.uuid4()), type=CommandType.DESIRED, target=target,
                  topic=command_topic(settings.topic_prefix, CommandType.DESIRED, target),
                  body={}, payload="", retain=True, node_id=node_id, ttl_ms=0,
                  created_by=user.id)
    db.add(cmd)
    return cmd


def add_signed(db: Session, prefix: str, signer: tuple[str, Ed25519PrivateKey], type_: str,
               target: str, body: dict[str, Any], now: int, ttl_ms: int, *,
               broadcast_id: int | None = None, node_id: str | None = None,
               retain: bool = False, priority: int = 0,
               created_at: dt.datetime | None = None) -> Command:
    """A command signed now by ``signer`` (kid, key), written to the outbox ready to publish."""
    kid, key = signer
    env = sign_envelope(key, kid, type_, target, body, now, ttl_ms)
    when = {"created_at": created_at} if created_at is not None else {}  # else: the default
    cmd = Command(id=env["id"], type=type_, target=target,
                  topic=command_topic(prefix, type_, target), body=body,
                  payload=envelope_json(env), signed_at=from_ms(now), ttl_ms=ttl_ms,
                  exp_ms=env["exp"], retain=retain, broadcast_id=broadcast_id,
                  node_id=node_id, priority=priority, **when)
    db.add(cmd)
    return cmd


# --- sign -------------------------------------------------------------------------------------

def sign_pending(db: Session, signer: Callable[[Session], tuple[str, Ed25519PrivateKey]],
                 now: int) -> int:
    """Sign the commands the web queued. A command is valid for its ttl from when it was
    queued, not from when the dispatcher got to it: one queued while the dispatcher was down
    expires unsent instead of going out stale. A row that cannot be signed is marked failed
    with the reason; it never holds up the rest. ``signer(db)`` gives the active (kid, key)."""
    done = 0
    # (unsigned is unpublished too: said, so the published_at index finds the few)
    rows = db.scalars(select(Command).where(Command.payload.is_(None),
                                            Command.published_at.is_(None),
                                            Command.failed_at.is_(None))
                      .order_by(Command.priority.desc(), Command.created_at)
                      .limit(SIGN_BATCH)).all()
    if not rows:
        return 0
    kid, key = signer(db)
    for cmd in rows:
        queued = to_ms(cmd.created_at) if cmd.created_at else now
        ttl = queued + cmd.ttl_ms - now
        if ttl <= 0:
            give_up(db, cmd, CommandStatus.EXPIRED, "expired before it could be signed")
            continue
        problem = protocol.body_problem(cmd.type, cmd.body)
        try:
            if problem:
                raise ProtocolError(RejectReason.MALFORMED, problem)
            env = sign_envelope(key, kid, cmd.type, cmd.target, cmd.body, now,
                                ttl, msg_id=cmd.id)
            payload = envelope_json(env)
        except Exception as err:  # any row we cannot sign is failed, not retried forever
            give_up(db, cmd, CommandStatus.FAILED, f"cannot be signed: {err}")
            continue
        cmd.payload, cmd.exp_ms, cmd.signed_at = payload, env["exp"], from_ms(now)
        done += 1
    return done


# --- expire and fail ------------------------------------------------------------------------------

def give_up(db: Session, cmd: Command, status: CommandStatus, error: str) -> None:
    """Give up on an outbox row (expired, or failed): it is kept, with why, and its
    deliveries say so."""
    cmd.failed_at, cmd.status, cmd.last_error = utcnow(), status, error[:500]
    reason = UnsentReason.EXPIRED_UNSENT if status == CommandStatus.EXPIRED \
        else UnsentReason.UNSENDABLE
    cmd.reason = reason
    deliveries.command_failed(db, cmd.id, reason)
    log.error("outbox: command %s (%s to %s) %s: %s", cmd.id, cmd.type, cmd.target, status,
              error)


# --- publish ----------------------------------------------------------------------------------

def publish_pending(db: Session, transport: Transport, max_packet_bytes: int,
                    clock: Callable[[], int], limit: int = SIGN_BATCH) -> int:
    """Publish signed, unpublished commands, highest priority first, COMMIT_EVERY in flight at
    once; each is marked once the broker has it, and committed with its group (a thousand
    desired states are not a thousand round trips and transactions; a crash in between
    re-sends at most a group, which QoS 1 allows and nodes drop by id). A row the broker will
    not take is failed after a few tries and the others go on; when the connection is gone,
    the pass stops and starts again on reconnect."""
    if not transport.connected:
        return 0
    sent = 0
    rows = db.scalars(select(Command).where(Command.payload.is_not(None),
                                            Command.published_at.is_(None),
                                            Command.failed_at.is_(None))
                      .order_by(Command.priority.desc(), Command.created_at, Command.id)
                      .limit(limit)).all()
    in_flight: list[tuple[Command, Callable[[float], bool]]] = []
    for cmd in rows:
        assert cmd.payload is not None  # selected as signed
        if cmd.exp_ms is not None and cmd.exp_ms < clock():
            give_up(db, cmd, CommandStatus.EXPIRED, "expired unsent")
            db.commit()
            continue
        # the broker drops the connection of a client that sends more than its
        # max_packet_size: such a row would cut us off on every try
        packet = len(cmd.payload.encode("utf-8")) + len(cmd.topic.encode("utf-8")) + 16
        if packet > max_packet_bytes:
            give_up(db, cmd, CommandStatus.FAILED, "larger than the broker's message limit")
            db.commit()
            continue
        cmd.attempts += 1
        in_flight.append((cmd, transport.send(cmd.topic, cmd.payload, qos=1,
                                              retain=cmd.retain)))
        if len(in_flight) >= COMMIT_EVERY:
            done, gone = _settle(db, transport, in_flight)
            sent, in_flight = sent + done, []
            if gone:
                return sent  # the broker is gone: everything waits for the reconnect
    done, _gone = _settle(db, transport, in_flight)
    return sent + done


def _settle(db: Session, transport: Transport,
            in_flight: list[tuple[Command, Callable[[float], bool]]]) -> tuple[int, bool]:
    """Wait for the broker's word on the commands in flight (they were sent in priority
    order), mark them and commit: (how many it has, whether the connection is gone)."""
    sent, gone = 0, False
    for cmd, confirm in in_flight:
        if not confirm(PUBLISH_TIMEOUT_S):
            cmd.last_error = "no acknowledgement from the broker"
            if not transport.connected:
                gone = True  # it waits for the reconnect, like every row behind it
            elif cmd.attempts >= PUBLISH_ATTEMPTS:
                give_up(db, cmd, CommandStatus.FAILED, f"not accepted by the broker after "
                                                       f"{cmd.attempts} attempts")
            continue
        cmd.published_at = utcnow()
        if cmd.broadcast_id is not None:
            deliveries.command_published(db, cmd.id)
        sent += 1
    db.commit()
    return sent, gone


def resend_unreceived(db: Session, transport: Transport, clock: Callable[[], int],
                      after_ms: int, limit: int = SIGN_BATCH) -> int:
    """Publish again, unchanged, each unexpired command that the broker took more than
    ``after_ms`` ago but that a node it is for has not acknowledged at all although that node
    connected again after it went out (its state message is newer).

    The broker's PUBACK only says the broker has it: a broker that dies before its next
    autosave loses what it held for a node that was away, and that node would never hear of
    the command. The same envelope (same id) goes out again, so a node that did get it drops
    the copy (PROTOCOL.md: an id seen again is dropped, with a ``replayed`` alarm); nothing
    plays twice. A node that stayed connected and is only slow to ack is left alone. A node's
    retained desired state that it has not applied goes again the same way (retained)."""
    if not transport.connected or after_ms <= 0:
        return 0
    now = clock()
    cutoff = from_ms(now - after_ms)
    waiting = (Command.payload.is_not(None), Command.published_at < cutoff,
               Command.failed_at.is_(None), Command.retain.is_(False), Command.exp_ms > now)
    # what is read for each candidate is small: the rows of a province's unacked emergency
    # (10,000 deliveries of one command) once a second as ORM objects, their nodes' last
    # telemetry and the desired states' schedules with them, took most of a core
    light = (Command.id, Command.priority, Command.created_at, Command.published_at,
             Command.type, Command.body["version"].as_string(), Node.desired_version,
             Node.last_state, Command.broadcast_id)
    # Each look starts from the few rows it is about, as deliveries and commands are kept for
    # good (a province's lived-in database: every node's deliveries of every broadcast, a
    # desired state per node per change): the deliveries still at sent and the commands not
    # acked, not retained and not expired, each through its partial index (revision 0024).
    # SQLite (no statistics) otherwise started from every online node and read all it ever
    # had, or from every command of no broadcast (each desired state): 40-280 ms a second at
    # 10,000 nodes, growing with the history. So the index's terms are written as it has them
    # (the status as a literal: a bound value matches no partial index) and no other term may
    # lead the plan: online as IS NOT false, a broadcast's node command left out below.
    at_sent = literal(deliveries.DeliveryStatus.SENT.value, literal_execute=True)
    online = Node.online.is_not(False)
    of_broadcasts = select(*light).join(Delivery, Delivery.command_id == Command.id).join(
        Node, Node.id == Delivery.node_id).where(*waiting, Delivery.status == at_sent, online)
    of_nodes = select(*light).join(Node, Node.id == Command.node_id).where(
        *waiting, Command.status.is_(None), online)
    looks = [(of_broadcasts, False), (of_nodes, True)]
    # a node's retained desired state (lost the same way), while it has not applied it: only
    # the one it should hold now, the version the node row names; the nodes first (a look at
    # the fleet, however long its history), then their desired states
    unapplied = list(db.scalars(select(Node.id).where(
        online, Node.revoked_at.is_(None),
        func.coalesce(Node.desired_applied_version, 0) < Node.desired_version)))
    for start in range(0, len(unapplied), IDS_PER_QUERY):
        looks.append((select(*light).join(Node, Node.id == Command.node_id).where(
            Command.node_id.in_(unapplied[start:start + IDS_PER_QUERY]),
            Command.payload.is_not(None), Command.published_at < cutoff,
            Command.failed_at.is_(None), Command.exp_ms > now,
            Command.type == CommandType.DESIRED), False))
    due: dict[str, tuple[int, dt.datetime, str]] = {}
    for query, own in looks:
        for cmd_id, priority, created, published, type_, version, node_version, last_state, \
                broadcast_id in db.execute(query.limit(limit * 20)):
            if own and broadcast_id is not None:
                continue  # a broadcast's command to one node: its delivery says (above)
            if type_ == CommandType.DESIRED and str(version) != str(node_version):
                continue  # superseded: the node ignores an older version anyway
            connected_at = (last_state or {}).get("ts")
            assert published is not None  # selected as published
            if isinstance(connected_at, int) and connected_at > to_ms(published):
                due[cmd_id] = (-priority, created, cmd_id)
    chosen = sorted(due, key=due.__getitem__)[:limit]
    by_id = {c.id: c for c in db.scalars(select(Command).where(Command.id.in_(chosen)))}
    sent = 0
    for cmd in (by_id[cmd_id] for cmd_id in chosen if cmd_id in by_id):
        assert cmd.payload is not None  # selected as signed
        cmd.attempts += 1
        if not transport.publish(cmd.topic, cmd.payload, qos=1, retain=cmd.retain):
            cmd.last_error = "no acknowledgement from the broker (re-send)"
            db.commit()
            if not transport.connected:
                break
            continue
        cmd.published_at = from_ms(clock())
        db.commit()
        log.info("outbox: command %s (%s to %s) re-sent: a node it is for came back without "
                 "acking it", cmd.id, cmd.type, cmd.target)
        sent += 1
    return sent


def health(db: Session) -> dict[str, float]:
    """How the outbox stands: unsent rows, the age of the oldest, rows failed lately."""
    now = utcnow()
    waiting = select(Command).where(Command.published_at.is_(None),
                                    Command.failed_at.is_(None))
    oldest = db.scalar(select(func.min(Command.created_at)).where(
        Command.published_at.is_(None), Command.failed_at.is_(None)))
    pending = db.scalar(select(func.count()).select_from(waiting.subquery())) or 0
    failed = db.scalar(select(func.count()).select_from(Command).where(
        Command.failed_at >= now - dt.timedelta(hours=1))) or 0
    age = (now - oldest).total_seconds() if oldest else 0.0
    return {"pending": pending, "oldest_age_s": round(age, 1), "failed_last_hour": failed}


# --- what nodes report ------------------------------------------------------------------------

def command_acked(cmd: Command, status: AckStatus, reason: str | None,
                  event: dict[str, Any]) -> None:
    """A node's ack of a command addressed to it alone: its status moves forward only."""
    if ack_moves(cmd.status, status):
        cmd.status, cmd.reason = CommandStatus(status), reason
        if "result" in event or "detail" in event:
            cmd.result = {"result": event.get("result"), "detail": event.get("detail")}
