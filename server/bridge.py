"""The MQTT bridge: records what nodes report (state, telemetry, events) in the database.

Events are stored once per (node, event id), so a node may resend after a reconnect; acks and
`played` events move the per-node delivery of a broadcast forward, never backward.
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from device_agent import schemas
from device_agent.protocol import ProtocolError, parse_event, parse_topic

from .models import Broadcast, Command, Delivery, Event, Node, PlayLog, Telemetry, utcnow
from .services import advance_delivery
from .transport import Transport

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, sessions: sessionmaker[Session], transport: Transport, prefix: str,
                 keep_telemetry: bool = True):
        self.sessions = sessions
        self.transport = transport
        self.prefix = prefix
        self.keep_telemetry = keep_telemetry

    def start(self) -> None:
        for kind in ("state", "telemetry", "events"):
            self.transport.subscribe(f"{self.prefix}/nodes/+/{kind}", self.handle)

    def handle(self, topic: str, payload: bytes) -> None:
        where = parse_topic(self.prefix, topic)
        if where is None or where.scope != "node":
            return
        with self.sessions() as db:
            node = db.get(Node, where.name)
            if node is None:
                log.warning("message from unknown node %s ignored", where.name)
                return
            try:
                if where.kind == "state":
                    self._state(db, node, payload)
                elif where.kind == "telemetry":
                    self._telemetry(db, node, payload)
                elif where.kind == "events":
                    self._event(db, node, payload)
                db.commit()
            except ProtocolError as err:
                db.rollback()
                log.warning("bad %s from %s: %s", where.kind, node.id, err)
            except IntegrityError:
                db.rollback()  # the same event twice: stored once already

    def _json(self, payload: bytes, schema: dict) -> dict:
        try:
            data = json.loads(payload)
        except ValueError as err:
            raise ProtocolError("malformed", str(err)) from None
        problem = schemas.first_error(schema, data)
        if problem:
            raise ProtocolError("malformed", problem)
        return data

    def _state(self, db: Session, node: Node, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        state = self._json(payload, schemas.STATE)
        node.online = bool(state["online"])
        node.last_state = state
        node.last_seen = utcnow()

    def _telemetry(self, db: Session, node: Node, payload: bytes) -> None:
        data = self._json(payload, schemas.TELEMETRY)
        node.last_telemetry = data
        node.last_seen = utcnow()
        node.online = True
        if self.keep_telemetry:
            db.add(Telemetry(node_id=node.id, ts_ms=data["ts"], payload=data))

    def _event(self, db: Session, node: Node, payload: bytes) -> None:
        event = parse_event(payload)
        exists = db.scalar(select(Event.id).where(Event.node_id == node.id,
                                                  Event.event_id == event["id"]))
        if exists:
            return
        db.add(Event(node_id=node.id, event_id=event["id"], type=event["type"],
                     ts_ms=event["ts"], payload=event))
        node.last_seen = utcnow()
        kind = event["type"]
        if kind == "ack":
            self._ack(db, node, event)
        elif kind == "played":
            self._played(db, node, event)
        elif kind == "desired_applied":
            node.desired_applied_version = max(event["version"], node.desired_applied_version or 0)

    def _command(self, db: Session, cmd_id: str | None) -> Command | None:
        return db.get(Command, cmd_id) if cmd_id else None

    def _delivery(self, db: Session, cmd: Command | None, node: Node) -> Delivery | None:
        if cmd is None or cmd.broadcast_id is None:
            return None
        return db.scalar(select(Delivery).where(Delivery.broadcast_id == cmd.broadcast_id,
                                                Delivery.node_id == node.id))

    def _ack(self, db: Session, node: Node, event: dict) -> None:
        cmd = self._command(db, event.get("cmd_id"))
        if cmd is None:
            return
        status, reason = event["status"], event.get("reason")
        delivery = self._delivery(db, cmd, node)
        if delivery is not None:
            advance_delivery(delivery, status, reason)
        elif cmd.node_id == node.id:
            rank = ("received", "started")
            if cmd.status is None or cmd.status in rank and (
                    status not in rank or rank.index(status) > rank.index(cmd.status)):
                cmd.status, cmd.reason = status, reason
                if "result" in event or "detail" in event:
                    cmd.result = {"result": event.get("result"), "detail": event.get("detail")}

    def _played(self, db: Session, node: Node, event: dict) -> None:
        cmd = self._command(db, event.get("cmd_id"))
        broadcast_id = cmd.broadcast_id if cmd else None
        bulletin_id = None
        if broadcast_id is not None:
            bc = db.get(Broadcast, broadcast_id)
            bulletin_id = bc.bulletin_id if bc else None
        db.add(PlayLog(node_id=node.id, broadcast_id=broadcast_id, bulletin_id=bulletin_id,
                       item_id=event["item_id"], cmd_id=event.get("cmd_id"),
                       slot_id=event.get("slot_id"), sha256=event.get("sha256"),
                       scheduled_at_ms=event.get("scheduled_at"),
                       started_at_ms=event.get("started_at") or event["ts"],
                       ended_at_ms=event.get("ended_at"), result=event["result"],
                       reason=event.get("reason")))
        delivery = self._delivery(db, cmd, node)
        if delivery is not None and delivery.played_result != "completed":
            delivery.played_result = event["result"]
            if event["result"] != "completed" and delivery.reason is None:
                delivery.reason = event.get("reason")
            delivery.updated_at = utcnow()
