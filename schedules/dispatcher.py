"""The dispatcher: the only process that runs APScheduler. It turns due broadcasts into signed
envelopes written to the outbox, signs queued commands, publishes the outbox in order, keeps
every node's retained desired state fresh, and reports its broker connection for /healthz.

Every step is a method that does one pass and returns, so tests can drive it directly; the
scheduler only calls them on intervals.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from device_agent.protocol import (LATE_SLOT_MS, ProtocolError, body_problem, command_topic,
                                   envelope_json, sign_envelope)
from server import deliveries
from server.broadcasts import BroadcastStatus
from server.config import Settings
from server.keys import KeyRing
from server.models import (Area, Broadcast, BulletinApproval, Command, Media, Node,
                           WorkerStatus,
                           area_ancestors, area_subtree_ids, from_ms, node_groups, now_ms,
                           to_ms, utcnow)
from server.transport import Transport

log = logging.getLogger(__name__)
PUBLISH_ATTEMPTS = 3  # a row the connected broker refuses this often is failed, not retried


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
        self._outbox_alarm = False

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
            due = db.scalars(select(Broadcast).where(Broadcast.status == BroadcastStatus.SCHEDULED,
                                                     Broadcast.due_at <= utcnow())
                             .order_by(Broadcast.priority.desc(), Broadcast.due_at, Broadcast.id)
                             ).all()
            for bc in due:
                try:
                    self._dispatch(db, bc)
                    db.commit()
                    done += 1
                except Exception as err:
                    db.rollback()
                    log.exception("broadcast %s could not be dispatched", bc.id)
                    self._give_up(db, bc, "dispatch_failed", str(err))
        return done

    def _give_up(self, db: Session, bc: Broadcast, reason: str, detail: str = "") -> None:
        """A broadcast that cannot be sent is held with a reason, so it never blocks the rest."""
        try:
            bc = db.get(Broadcast, bc.id)
            bc.status, bc.reason = BroadcastStatus.HELD, reason
            db.commit()
        except Exception:
            db.rollback()
            log.exception("broadcast %s could not be marked held (%s)", bc.id, detail)

    def _play_body(self, db: Session, bc: Broadcast, approval: BulletinApproval,
                   media: Media) -> dict:
        url = f"{self.settings.public_url.rstrip('/')}/media/{media.sha256}.{media.ext}"
        return {"item": {"id": f"bc-{bc.id}", "title": approval.title,
                         "media": {"sha256": media.sha256, "url": url, "bytes": media.bytes,
                                   "duration_ms": media.duration_ms}},
                "priority": bc.priority,
                "start_at": to_ms(bc.start_at) if bc.start_at else None,
                "volume": bc.volume, "repeat": bc.repeat}

    def _why_not(self, db: Session, bc: Broadcast, now: int
                 ) -> tuple[BroadcastStatus, str | None, BulletinApproval | None, Media | None]:
        """(status, reason, approval, media): what may be sent, or why nothing is."""
        approval = db.get(BulletinApproval, bc.approval_id) if bc.approval_id else None
        if approval is None or approval.bulletin_id != bc.bulletin_id \
                or approval.media_sha256 != bc.media_sha256:
            return BroadcastStatus.HELD, "approval_missing", None, None
        if approval.revoked_at is not None:
            return BroadcastStatus.HELD, "approval_revoked", None, None
        media = db.get(Media, approval.media_sha256)
        if media is None:
            return BroadcastStatus.HELD, "media_missing", None, None
        if bc.start_at is not None:
            if now - to_ms(bc.start_at) > LATE_SLOT_MS:
                return BroadcastStatus.SKIPPED, "late", None, None
        elif now - to_ms(bc.confirmed_at or bc.created_at) > self.settings.command_ttl_s * 1000:
            return BroadcastStatus.SKIPPED, "expired", None, None
        return BroadcastStatus.DISPATCHED, None, approval, media

    def _dispatch(self, db: Session, bc: Broadcast) -> None:
        now = self.clock()
        status, reason, approval, media = self._why_not(db, bc, now)
        targets, by_area = self._targets(db, bc)
        if status != BroadcastStatus.DISPATCHED:
            # nothing is sent; every node it would have reached is reported with the reason
            for node_id in sorted(targets):
                db.add(deliveries.not_sent(bc.id, node_id, status == BroadcastStatus.SKIPPED,
                                           reason))
            bc.status, bc.reason = status, reason
            log.warning("broadcast %s %s: %s", bc.id, status, reason)
            return
        body = self._play_body(db, bc, approval, media)
        if bc.start_at is not None:
            # a timed slot may start at most LATE_SLOT_MS late (PROTOCOL's late rule): the
            # command expires then, so no node plays it later, however long it waited
            ttl = max(1000, to_ms(bc.start_at) + LATE_SLOT_MS - now)
        else:
            ttl = self.settings.command_ttl_s * 1000
        covered: dict[str, str] = {}
        for area_id in covering_areas(db, bc.target_areas):
            area = db.get(Area, area_id)
            cmd = self._command(db, "play", f"group:{area.group}", body, ttl, bc.id, None, now,
                                priority=bc.priority)
            for node_id in by_area[area_id]:
                covered.setdefault(node_id, cmd.id)
        for node_id in bc.target_nodes:
            if node_id not in covered and node_id in targets:
                cmd = self._command(db, "play", f"node:{node_id}", body, ttl, bc.id, node_id, now,
                                    priority=bc.priority)
                covered[node_id] = cmd.id
        for node_id, cmd_id in sorted(covered.items()):
            db.add(deliveries.planned(bc.id, node_id, cmd_id))
        bc.status, bc.dispatched_at = BroadcastStatus.DISPATCHED, from_ms(now)

    def _targets(self, db: Session, bc: Broadcast) -> tuple[set[str], dict[int, list[str]]]:
        """Every node the broadcast reaches, and the nodes of each covering area."""
        by_area: dict[int, list[str]] = {}
        for area_id in covering_areas(db, bc.target_areas):
            subtree = area_subtree_ids(db, [area_id])
            by_area[area_id] = list(db.scalars(select(Node.id).where(
                Node.cluster_id.in_(subtree), Node.revoked_at.is_(None))))
        nodes = {n for ids in by_area.values() for n in ids}
        for node_id in bc.target_nodes:
            node = db.get(Node, node_id)
            if node is not None and node.revoked_at is None:
                nodes.add(node_id)
        return nodes, by_area

    def _command(self, db: Session, type_: str, target: str, body: dict, ttl_ms: int,
                 broadcast_id: int | None, node_id: str | None, now: int,
                 retain: bool = False, priority: int = 0) -> Command:
        """A signed command, written to the outbox."""
        topic = command_topic(self.settings.topic_prefix, type_, target)
        kid, key = self.keyring.active(db)
        env = sign_envelope(key, kid, type_, target, body, now, ttl_ms)
        cmd = Command(id=env["id"], type=type_, target=target, topic=topic, body=body,
                      payload=envelope_json(env), signed_at=from_ms(now), ttl_ms=ttl_ms,
                      exp_ms=env["exp"], retain=retain, broadcast_id=broadcast_id,
                      node_id=node_id, priority=priority, created_at=from_ms(now))
        db.add(cmd)
        db.flush()
        return cmd

    def refresh_desired(self) -> int:
        """A new retained desired state for nodes that changed or whose window runs short."""
        now = self.clock()
        window = self.settings.desired_window_h * 3600 * 1000
        done = 0
        with self.sessions() as db:
            nodes = db.scalars(select(Node).where(Node.revoked_at.is_(None)).where(
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
        """Sign the commands the web queued (it holds no key). A command is valid for its ttl
        from when it was queued, not from when the dispatcher got to it: one queued while the
        dispatcher was down expires unsent instead of going out stale. A row that cannot be
        signed is marked failed with the reason; it never holds up the rest."""
        now = self.clock()
        done = 0
        with self.sessions() as db:
            rows = db.scalars(select(Command).where(Command.payload.is_(None),
                                                    Command.failed_at.is_(None))
                              .order_by(Command.priority.desc(), Command.created_at)
                              .limit(500)).all()
            kid, key = self.keyring.active(db) if rows else (None, None)
            for cmd in rows:
                queued = to_ms(cmd.created_at) if cmd.created_at else now
                ttl = queued + cmd.ttl_ms - now
                if ttl <= 0:
                    self._fail(db, cmd, "expired", "expired before it could be signed")
                    continue
                problem = body_problem(cmd.type, cmd.body)
                try:
                    if problem:
                        raise ProtocolError("malformed", problem)
                    env = sign_envelope(key, kid, cmd.type, cmd.target, cmd.body, now,
                                        ttl, msg_id=cmd.id)
                    payload = envelope_json(env)
                except Exception as err:  # any row we cannot sign is failed, not retried forever
                    self._fail(db, cmd, "failed", f"cannot be signed: {err}")
                    continue
                cmd.payload, cmd.exp_ms, cmd.signed_at = payload, env["exp"], from_ms(now)
                done += 1
            db.commit()
        return done

    def _fail(self, db: Session, cmd: Command, status: str, error: str) -> None:
        """Give up on an outbox row: it is kept, with why, and its deliveries say so."""
        cmd.failed_at, cmd.status, cmd.last_error = utcnow(), status, error[:500]
        cmd.reason = "expired_unsent" if status == "expired" else "unsendable"
        deliveries.command_failed(db, cmd.id, cmd.reason)
        log.error("outbox: command %s (%s to %s) %s: %s", cmd.id, cmd.type, cmd.target, status,
                  error)

    def publish_outbox(self, limit: int = 500) -> int:
        """Publish signed, unpublished commands, highest priority first; each is marked once the
        broker has it. A row the broker will not take is failed after a few tries and the others
        go on; when the connection is gone, the pass stops and starts again on reconnect."""
        if not self.transport.connected:
            return 0
        sent = 0
        with self.sessions() as db:
            rows = db.scalars(select(Command).where(Command.payload.is_not(None),
                                                    Command.published_at.is_(None),
                                                    Command.failed_at.is_(None))
                              .order_by(Command.priority.desc(), Command.created_at, Command.id)
                              .limit(limit)).all()
            for cmd in rows:
                if cmd.exp_ms is not None and cmd.exp_ms < self.clock():
                    self._fail(db, cmd, "expired", "expired unsent")
                    db.commit()
                    continue
                # the broker drops the connection of a client that sends more than its
                # max_packet_size: such a row would cut us off on every try
                packet = len(cmd.payload.encode("utf-8")) + len(cmd.topic.encode("utf-8")) + 16
                if packet > self.settings.mqtt_max_packet_bytes:
                    self._fail(db, cmd, "failed", "larger than the broker's message limit")
                    db.commit()
                    continue
                cmd.attempts += 1
                ok = self.transport.publish(cmd.topic, cmd.payload, qos=1, retain=cmd.retain)
                if not ok:
                    cmd.last_error = "no acknowledgement from the broker"
                    if not self.transport.connected:
                        db.commit()
                        break  # the broker is gone: everything waits for the reconnect
                    if cmd.attempts >= PUBLISH_ATTEMPTS:
                        self._fail(db, cmd, "failed", f"not accepted by the broker after "
                                                      f"{cmd.attempts} attempts")
                    db.commit()
                    continue
                cmd.published_at = utcnow()
                deliveries.command_published(db, cmd.id)
                db.commit()
                sent += 1
        return sent

    def outbox_health(self, db: Session) -> dict:
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

    def heartbeat(self) -> None:
        with self.sessions() as db:
            row = db.get(WorkerStatus, "dispatcher")
            if row is None:
                row = WorkerStatus(name="dispatcher", heartbeat_at=utcnow(), mqtt_connected=False)
                db.add(row)
            row.heartbeat_at, row.mqtt_connected = utcnow(), self.transport.connected
            outbox = self.outbox_health(db)
            stuck = outbox["oldest_age_s"] > self.settings.outbox_stale_s
            if stuck and not self._outbox_alarm:
                log.error("ALARM outbox stuck: %s commands unsent, the oldest %.0f s old",
                          outbox["pending"], outbox["oldest_age_s"])
            elif self._outbox_alarm and not stuck:
                log.warning("outbox flows again")
            self._outbox_alarm = stuck
            row.detail = {"outbox": outbox}
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
