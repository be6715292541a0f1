"""The dispatcher: the only process that runs APScheduler. It turns due broadcasts into signed
envelopes written to the outbox, signs queued commands, publishes the outbox in order, keeps
every node's retained desired state fresh, and reports its broker connection for /healthz.

Every step is a method that does one pass and returns, so tests can drive it directly; the
scheduler only calls them on intervals.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from device_agent.protocol import command_topic, envelope_json, sign_envelope
from server.config import Settings
from server.keys import KeyRing
from server.models import (Area, Broadcast, Command, Delivery, Media, Node, WorkerStatus,
                           area_ancestors, area_subtree_ids, from_ms, node_groups, now_ms,
                           to_ms, utcnow)
from server.transport import Transport

log = logging.getLogger(__name__)


def covering_areas(db: Session, area_ids: list[int]) -> list[int]:
    """Drop every area that lies inside another chosen one, so no node is commanded twice."""
    chosen = set(area_ids)
    keep = []
    for area_id in sorted(chosen):
        ancestors = {a.id for a in area_ancestors(db, area_id)[1:]}
        if not ancestors & chosen:
            keep.append(area_id)
    return keep


class Dispatcher:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], transport: Transport,
                 key: Ed25519PrivateKey, kid: str, clock: Callable[[], int] = now_ms):
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.keyring = KeyRing(settings.signing_key_file, default=(kid, key))  # signs with the
        # key the database names active, re-read on every signing (a rotation needs no restart)
        self.clock = clock
        self.scheduler: BackgroundScheduler | None = None
        self._lock = threading.Lock()

    # --- one pass of each duty ---------------------------------------------------------------

    def tick(self) -> None:
        """Everything due now, in order: broadcasts -> desired states -> signing -> publishing."""
        with self._lock:
            self.dispatch_due()
            self.refresh_desired()
            self.sign_pending()
            self.publish_outbox()

    def dispatch_due(self) -> int:
        """Turn every broadcast whose time has come into deliveries and play commands."""
        done = 0
        with self.sessions() as db:
            due = db.scalars(select(Broadcast).where(Broadcast.status == "scheduled",
                                                     Broadcast.due_at <= utcnow())
                             .order_by(Broadcast.due_at, Broadcast.id)).all()
            for bc in due:
                try:
                    self._dispatch(db, bc)
                    db.commit()
                    done += 1
                except Exception:
                    db.rollback()
                    log.exception("broadcast %s could not be dispatched", bc.id)
        return done

    def _play_body(self, db: Session, bc: Broadcast) -> dict:
        media = db.get(Media, bc.bulletin.media_sha256)
        url = f"{self.settings.public_url.rstrip('/')}/media/{media.sha256}.{media.ext}"
        return {"item": {"id": f"bc-{bc.id}", "title": bc.bulletin.title,
                         "media": {"sha256": media.sha256, "url": url, "bytes": media.bytes,
                                   "duration_ms": media.duration_ms}},
                "priority": bc.priority,
                "start_at": to_ms(bc.start_at) if bc.start_at else None,
                "volume": bc.volume, "repeat": bc.repeat}

    def _dispatch(self, db: Session, bc: Broadcast) -> None:
        now = self.clock()
        body = self._play_body(db, bc)
        ttl = self.settings.command_ttl_s * 1000
        if bc.start_at is not None:
            ttl += max(0, to_ms(bc.start_at) - now)
        covered: dict[str, str] = {}
        for area_id in covering_areas(db, bc.target_areas):
            area = db.get(Area, area_id)
            cmd = self._command(db, "play", f"group:{area.group}", body, ttl, bc.id, None, now)
            subtree = area_subtree_ids(db, [area_id])
            for node_id in db.scalars(select(Node.id).where(Node.cluster_id.in_(subtree))):
                covered.setdefault(node_id, cmd.id)
        for node_id in bc.target_nodes:
            if node_id not in covered and db.get(Node, node_id) is not None:
                cmd = self._command(db, "play", f"node:{node_id}", body, ttl, bc.id, node_id, now)
                covered[node_id] = cmd.id
        for node_id, cmd_id in sorted(covered.items()):
            db.add(Delivery(broadcast_id=bc.id, node_id=node_id, command_id=cmd_id,
                            status="pending"))
        bc.status, bc.dispatched_at = "dispatched", from_ms(now)

    def _command(self, db: Session, type_: str, target: str, body: dict, ttl_ms: int,
                 broadcast_id: int | None, node_id: str | None, now: int,
                 retain: bool = False) -> Command:
        """A signed command, written to the outbox."""
        topic = command_topic(self.settings.topic_prefix, type_, target)
        kid, key = self.keyring.active(db)
        env = sign_envelope(key, kid, type_, target, body, now, ttl_ms)
        cmd = Command(id=env["id"], type=type_, target=target, topic=topic, body=body,
                      payload=envelope_json(env), signed_at=from_ms(now), ttl_ms=ttl_ms,
                      exp_ms=env["exp"], retain=retain, broadcast_id=broadcast_id,
                      node_id=node_id)
        db.add(cmd)
        db.flush()
        return cmd

    def refresh_desired(self) -> int:
        """A new retained desired state for nodes that changed or whose window runs short."""
        now = self.clock()
        window = self.settings.desired_window_h * 3600 * 1000
        done = 0
        with self.sessions() as db:
            nodes = db.scalars(select(Node).where(
                Node.desired_dirty.is_(True) | (Node.desired_exp_ms < now + window // 2))).all()
            for node in nodes:
                node.desired_version += 1
                body = {"version": node.desired_version, "tz": self.settings.timezone,
                        "volume": node.volume, "quiet_hours": [],
                        "groups": node_groups(db, node), "schedule": [], "prefetch": []}
                self._command(db, "desired", f"node:{node.id}", body, window, None, node.id,
                              now, retain=True)
                node.desired_dirty, node.desired_exp_ms = False, now + window
                done += 1
            db.commit()
        return done

    def sign_pending(self) -> int:
        """Sign the commands the web queued (it holds no key): ts is the signing time."""
        now = self.clock()
        with self.sessions() as db:
            rows = db.scalars(select(Command).where(Command.payload.is_(None))
                              .order_by(Command.created_at).limit(500)).all()
            kid, key = self.keyring.active(db) if rows else (None, None)
            for cmd in rows:
                env = sign_envelope(key, kid, cmd.type, cmd.target, cmd.body, now,
                                    cmd.ttl_ms, msg_id=cmd.id)
                cmd.payload, cmd.exp_ms, cmd.signed_at = envelope_json(env), env["exp"], from_ms(now)
            db.commit()
            return len(rows)

    def publish_outbox(self, limit: int = 500) -> int:
        """Publish signed, unpublished commands in order; each is marked once the broker has it."""
        if not self.transport.connected:
            return 0
        sent = 0
        with self.sessions() as db:
            rows = db.scalars(select(Command).where(Command.payload.is_not(None),
                                                    Command.published_at.is_(None))
                              .order_by(Command.created_at, Command.id).limit(limit)).all()
            for cmd in rows:
                if cmd.exp_ms is not None and cmd.exp_ms < self.clock():
                    cmd.published_at, cmd.last_error, cmd.status = utcnow(), "expired unsent", \
                        "expired"
                    for d in db.scalars(select(Delivery).where(Delivery.command_id == cmd.id)):
                        if d.status == "pending":
                            d.status, d.reason, d.updated_at = "failed", "expired_unsent", utcnow()
                    db.commit()
                    continue
                cmd.attempts += 1
                ok = self.transport.publish(cmd.topic, cmd.payload, qos=1, retain=cmd.retain)
                if not ok:
                    cmd.last_error = "no acknowledgement from the broker"
                    db.commit()
                    break  # keep the order: try again on the next pass
                cmd.published_at = utcnow()
                for d in db.scalars(select(Delivery).where(Delivery.command_id == cmd.id,
                                                           Delivery.status == "pending")):
                    d.status, d.updated_at = "sent", utcnow()
                db.commit()
                sent += 1
        return sent

    def heartbeat(self) -> None:
        with self.sessions() as db:
            row = db.get(WorkerStatus, "dispatcher")
            if row is None:
                row = WorkerStatus(name="dispatcher", heartbeat_at=utcnow(), mqtt_connected=False)
                db.add(row)
            row.heartbeat_at, row.mqtt_connected = utcnow(), self.transport.connected
            db.commit()

    # --- the scheduler -----------------------------------------------------------------------

    def start(self, interval_s: float = 0.5) -> None:
        self.scheduler = BackgroundScheduler(timezone=self.settings.timezone)
        self.scheduler.add_job(self.tick, "interval", seconds=interval_s, id="tick",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self.heartbeat, "interval", seconds=5, id="heartbeat",
                               max_instances=1, coalesce=True)
        self.scheduler.start()
        self.heartbeat()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
