"""The outbox of commands to nodes: the web queues them here; the dispatcher signs and
publishes them."""
from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy.orm import Session

from device_agent import protocol
from device_agent.protocol import command_topic

from .context import settings
from .deliveries import ack_moves
from .errors import bad_request
from .models import Command, User, utcnow


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


def command_acked(cmd: Command, status: str, reason: str | None, event: dict) -> None:
    """A node's ack of a command addressed to it alone: its status moves forward only."""
    if ack_moves(cmd.status, status):
        cmd.status, cmd.reason = CommandStatus(status), reason
        if "result" in event or "detail" in event:
            cmd.result = {"result": event.get("result"), "detail": event.get("detail")}
