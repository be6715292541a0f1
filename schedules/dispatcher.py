"""The dispatcher: the only process that runs APScheduler. It turns due broadcasts into signed
envelopes written to the outbox, keeps every node's retained desired state fresh, has the
outbox (server.outbox) sign and publish what waits, and reports its broker connection for
/healthz.

Every step is a method that does one pass and returns, so tests can drive it directly; the
scheduler only calls them on intervals.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from device_agent.protocol import LATE_SLOT_MS, CommandType
from schedules import background
from schedules.slots import Slot
from server import (broadcasts, bulletins, deliveries, notify, outbox, programmes,
                    releases, retention, schedule, wake)
from server.reports import chunks
from server.broadcasts import BroadcastStatus, item_id
from server.config import Settings
from server.deliveries import HoldReason
from server.errors import first_line, unavailable
from server.keys import KeyRing
from server.models import (Area, Broadcast, BulletinApproval, Command, Media, Node,
                           OccurrenceOverride, ProgrammeRevision, WorkerStatus,
                           area_ancestors, area_subtree_ids, area_zone, from_ms, node_groups,
                           now_ms, to_ms, utcnow)
from server.transport import Transport

log = logging.getLogger(__name__)

DESIRED_BATCH = 250  # nodes whose new desired states are written in one transaction
# The alert and retention passes wait while node messages burst in (``Dispatcher.busy``), at
# most this long (and half their interval), checking this often
PASS_YIELD_S = 20.0
BURST_POLL_S = 0.1


def covering_areas(db: Session, area_ids: list[int]) -> list[int]:
    """Drop every area that lies inside another chosen one, so no node is commanded twice."""
    chosen = set(area_ids)
    keep = []
    for area_id in sorted(chosen):
        ancestors = {a.id for a in area_ancestors(db, area_id)[1:]}
        if not ancestors & chosen:
            keep.append(area_id)
    return keep


def _interrupted(slot: Slot, one_offs: Iterable[Slot]) -> bool:
    """Whether a one-off of equal or higher priority covers part of a series' slot."""
    return any(o.priority >= slot.priority and o.overlaps(slot) for o in one_offs)


def _carried(entry: dict[str, Any]) -> deliveries.Carried:
    """A desired state's schedule entry as its slot's delivery records it."""
    broadcast_id = schedule.slot_broadcast_id(entry["slot_id"])
    assert broadcast_id is not None  # schedules.slots.slot_id names its broadcast
    return deliveries.Carried(entry["slot_id"], broadcast_id, from_ms(entry["start_at"]),
                              entry["item"]["media"]["sha256"])


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
        self._last_resend_ms = 0
        self._wake: wake.Listener | None = None
        self.notifier = notify.Notifier(settings)
        self._broker_since_ms: int | None = None  # since when the broker connection holds
        # whether this process may act now: with two dispatchers, whether it holds the lease
        # (server.lease); every duty asks before each step, so one that lost it stops
        self.acting: Callable[[], bool] = lambda: True
        # whether node messages come faster than the bridge writes them (the worker asks its
        # bridge's queue): the passes of alerts and retention then wait (_after_burst)
        self.busy: Callable[[], bool] = lambda: False
        self._unavailable_since: float | None = None  # monotonic: the database gone since
        # the process the alert and retention passes run in once the duties are started
        self.background: background.Background | None = None

    # --- one pass of each duty ---------------------------------------------------------------

    def tick(self, wait: bool = True) -> bool:
        """Everything due now, in order: broadcasts (signed and published at once when there
        were any) -> rollouts -> desired states -> signing -> publishing -> resending.
        ``wait=False`` (the polling tick): return at once when a pass runs already (a wake-up's),
        so the scheduler's job never waits behind it. Whether a pass ran."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            if not self.acting():
                return True
            if self.dispatch_due() and self.acting():
                # what fell due goes out before the rest of the pass: an emergency does not
                # wait for the rollouts and the desired states (25-75 ms at 10,000 nodes)
                self.sign_pending()
                self.publish_outbox()
            for step in (self.advance_rollouts, self.refresh_desired, self.sign_pending,
                         self.publish_outbox, self.resend_unreceived):
                if not self.acting():
                    return True
                step()
            return True
        finally:
            self._lock.release()

    def _guarded(self, job: Callable[[], object]) -> Callable[[], None]:
        """``job`` for the scheduler and the wake-up: while the database is unavailable one
        ALARM line when it goes and one when it is back (the duties simply run again at the
        next tick: nothing is lost, what was due is done then), not a traceback a tick."""
        def run() -> None:
            try:
                ran = job()
            except Exception as err:
                if not unavailable(err):
                    raise
                if self._unavailable_since is None:
                    self._unavailable_since = time.monotonic()
                    log.error("ALARM database unavailable: the dispatcher's duties wait for it "
                              "and run again once it is back: %s", first_line(err))
                return
            if ran is not False and self._unavailable_since is not None:
                log.warning("database available again: the dispatcher's duties run again "
                            "after %.0f s", time.monotonic() - self._unavailable_since)
                self._unavailable_since = None
        return run

    def dispatch_due(self) -> int:
        """Turn every broadcast whose time has come into deliveries and play commands."""
        done = 0
        with self.sessions() as db:
            # a series never goes out as a command: its slots travel in desired states
            due = db.scalars(select(Broadcast).where(
                Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.due_at <= utcnow(),
                Broadcast.recurrence.is_(None))
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
                    self._give_up(db, bc, HoldReason.DISPATCH_FAILED, str(err))
        return done

    def advance_rollouts(self) -> int:
        """Start the next stage of rollouts whose current stage is all healthy, complete
        those done (server.releases)."""
        with self.sessions() as db:
            moved = releases.advance_due(db, self.settings)
            db.commit()
        return moved

    def _give_up(self, db: Session, bc: Broadcast, reason: HoldReason, detail: str = ""
                 ) -> None:
        """A broadcast that cannot be sent is held with a reason, so it never blocks the rest."""
        try:
            fresh = db.get(Broadcast, bc.id)
            if fresh is None:
                raise LookupError(f"broadcast {bc.id} is gone")
            broadcasts.mark_not_sent(fresh, BroadcastStatus.HELD, reason)
            db.commit()
        except Exception:
            db.rollback()
            log.exception("broadcast %s could not be marked held (%s)", bc.id, detail)

    def _play_body(self, db: Session, bc: Broadcast,
                   approval: BulletinApproval | ProgrammeRevision, media: Media) -> dict[str, Any]:
        return {"item": {"id": item_id(bc), "title": approval.title,
                         "media": self._media_json(media)},
                "priority": bc.priority,
                "start_at": to_ms(bc.start_at) if bc.start_at else None,
                "volume": bc.volume, "repeat": bc.repeat}

    def _why_not(self, db: Session, bc: Broadcast, now: int, series: bool = False
                 ) -> tuple[BroadcastStatus, HoldReason | None,
                            BulletinApproval | ProgrammeRevision | None, Media | None]:
        """(status, reason, approval, media): what may be sent, or why nothing is (for a
        programme the approval is its revision: its title and media). A
        ``series`` is never late: its slots are each judged by the node."""
        approval: BulletinApproval | ProgrammeRevision | None
        if bc.programme_id is not None:  # a programme: its revision, every item approved
            problem, approval = programmes.revision_problem(
                db, bc.programme_id, bc.programme_revision_id, bc.media_sha256)
            if approval is None:
                return BroadcastStatus.HELD, problem, None, None
        else:
            approval = db.get(BulletinApproval, bc.approval_id) if bc.approval_id else None
            if approval is None or approval.bulletin_id != bc.bulletin_id \
                    or approval.media_sha256 != bc.media_sha256:
                return BroadcastStatus.HELD, HoldReason.APPROVAL_MISSING, None, None
            if approval.revoked_at is not None:
                return BroadcastStatus.HELD, HoldReason.APPROVAL_REVOKED, None, None
        media = db.get(Media, approval.media_sha256)
        if media is None:
            return BroadcastStatus.HELD, HoldReason.MEDIA_MISSING, None, None
        if not series:
            if bc.start_at is not None:
                if now - to_ms(bc.start_at) > LATE_SLOT_MS:
                    return BroadcastStatus.SKIPPED, HoldReason.LATE, None, None
            elif now - to_ms(bc.confirmed_at or bc.created_at) > \
                    self.settings.command_ttl_s * 1000:
                return BroadcastStatus.SKIPPED, HoldReason.EXPIRED, None, None
        return BroadcastStatus.DISPATCHED, None, approval, media

    def _dispatch(self, db: Session, bc: Broadcast) -> None:
        now = self.clock()
        status, reason, approval, media = self._why_not(db, bc, now)
        targets, by_area, reach = self._targets(db, bc)
        if reason is not None:  # not DISPATCHED: _why_not says why
            # nothing is sent; every node it would have reached is reported with the reason
            for node_id in sorted(targets):
                db.add(deliveries.not_sent(bc.id, node_id, status == BroadcastStatus.SKIPPED,
                                           reason))
            broadcasts.mark_not_sent(bc, status, reason)
            log.warning("broadcast %s %s: %s", bc.id, status, reason)
            return
        assert approval is not None and media is not None  # DISPATCHED comes with both
        body = self._play_body(db, bc, approval, media)
        if bc.start_at is not None:
            # a timed slot may start at most LATE_SLOT_MS late (PROTOCOL's late rule): the
            # command expires then, so no node plays it later, however long it waited
            ttl = max(1000, to_ms(bc.start_at) + LATE_SLOT_MS - now)
        else:
            ttl = self.settings.command_ttl_s * 1000
        covered: set[str] = set()
        for area_id in covering_areas(db, bc.target_areas):
            area = db.get_one(Area, area_id)
            cmd = self._command(db, CommandType.PLAY, f"group:{area.group}", body, ttl, bc.id,
                                None, now, priority=bc.priority)
            deliveries.plan_selected(db, bc.id, cmd.id, reach[area_id])
            covered.update(by_area[area_id])
        singles: dict[str, str] = {}
        for node_id in bc.target_nodes:
            if node_id not in covered and node_id in targets:
                cmd = self._command(db, CommandType.PLAY, f"node:{node_id}", body, ttl, bc.id,
                                    node_id, now, priority=bc.priority)
                covered.add(node_id)
                singles[node_id] = cmd.id
        deliveries.plan_all(db, bc.id, singles)
        broadcasts.mark_dispatched(bc, from_ms(now))

    def _targets(self, db: Session, bc: Broadcast
                 ) -> tuple[set[str], dict[int, list[str]], dict[int, Select[str]]]:
        """Every node the broadcast reaches, the nodes of each covering area, and the query
        that selects them (what its deliveries are planned from)."""
        by_area: dict[int, list[str]] = {}
        reach: dict[int, Select[str]] = {}
        for area_id in covering_areas(db, bc.target_areas):
            subtree = area_subtree_ids(db, [area_id])
            reach[area_id] = select(Node.id).where(Node.cluster_id.in_(subtree),
                                                   Node.revoked_at.is_(None))
            by_area[area_id] = list(db.scalars(reach[area_id]))
        nodes = {n for ids in by_area.values() for n in ids}
        for node_id in bc.target_nodes:
            node = db.get(Node, node_id)
            if node is not None and node.revoked_at is None:
                nodes.add(node_id)
        return nodes, by_area, reach

    def _command(self, db: Session, type_: str, target: str, body: dict[str, Any], ttl_ms: int,
                 broadcast_id: int | None, node_id: str | None, now: int,
                 retain: bool = False, priority: int = 0) -> Command:
        """A signed command, written to the outbox."""
        cmd = outbox.add_signed(db, self.settings.topic_prefix, self.keyring.active(db), type_,
                                target, body, now, ttl_ms, broadcast_id=broadcast_id,
                                node_id=node_id, retain=retain, priority=priority,
                                created_at=from_ms(now))
        db.flush()
        return cmd

    def _media_json(self, media: Media) -> dict[str, Any]:
        url = f"{self.settings.public_url.rstrip('/')}/media/{media.sha256}.{media.ext}"
        return {"sha256": media.sha256, "url": url, "bytes": media.bytes,
                "duration_ms": media.duration_ms}

    def _slots_by_node(self, db: Session, now: int, window: int
                       ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
        """Every node's schedule entries in [now - LATE_SLOT_MS, now + window) from the series
        on air, their targets resolved as the area tree is now; and the media by sha256. A
        series whose approval or media is gone plays nothing (one-offs are held the same way)."""
        window_from, window_to = from_ms(now - LATE_SLOT_MS), from_ms(now + window)
        reach = schedule.Reach(db)
        entries: dict[str, list[dict[str, Any]]] = {}
        media_by_sha: dict[str, dict[str, Any]] = {}
        one_offs = self._one_off_slots(db, reach, window_from, window_to)
        for bc in schedule.series_on_air(db):
            status, _reason, approval, media = self._why_not(db, bc, now, series=True)
            if status != BroadcastStatus.DISPATCHED or approval is None or media is None:
                continue
            targets = reach.nodes(bc)
            if not targets:
                continue
            items: dict[str | None, dict[str, Any]] = {}  # by the media an occurrence airs
            others = {row.media_sha256: row for row in schedule.override_rows(db, bc)
                      if row.media_sha256}
            for slot in schedule.slots(db, bc, self.settings.timezone,
                                       schedule.aware(window_from), schedule.aware(window_to)):
                if slot.start_at < schedule.aware(window_from):
                    continue  # began before the window: a node that holds it plays it already
                sha = schedule.slot_media(db, bc, slot.slot_id) if others else bc.media_sha256
                item = items.get(sha) or self._series_item(db, bc, approval, media, others.get(
                    sha or ""), media_by_sha)
                if item is None:
                    continue  # the occurrence's other bulletin lost its approval or media
                items[sha] = item
                entry = {"slot_id": slot.slot_id, "start_at": slot.start_ms,
                         "priority": slot.priority, "item": item}
                if bc.volume is not None:
                    entry["volume"] = bc.volume
                for node_id in targets:
                    if not _interrupted(slot, one_offs.get(node_id, ())):
                        entries.setdefault(node_id, []).append(entry)
        return entries, media_by_sha

    def _series_item(self, db: Session, bc: Broadcast,
                     approval: BulletinApproval | ProgrammeRevision, media: Media,
                     other: OccurrenceOverride | None, media_by_sha: dict[str, dict[str, Any]]
                     ) -> dict[str, Any] | None:
        """What a series' slot plays: its own approved media, or the approved media of the
        other bulletin one occurrence was given (None when that approval or media is gone)."""
        if other is not None:
            approval_row = db.get(BulletinApproval, other.approval_id) if other.approval_id \
                else None
            media_row = db.get(Media, other.media_sha256) if other.media_sha256 else None
            if approval_row is None or approval_row.revoked_at is not None or media_row is None:
                return None
            approval, media = approval_row, media_row
        media_json = media_by_sha.setdefault(media.sha256, self._media_json(media))
        return {"id": item_id(bc), "title": approval.title, "media": media_json}

    def _one_off_slots(self, db: Session, reach: schedule.Reach, window_from: dt.datetime,
                       window_to: dt.datetime) -> dict[str, list[Slot]]:
        """The timed one-offs (scheduled or sent) sharing time with the window, by node: a
        series slot one of them covers with an equal or higher priority is left out of that
        node's desired state (the one-off interrupts the series for that day)."""
        out: dict[str, list[Slot]] = {}
        for bc in db.scalars(select(Broadcast).where(
                Broadcast.recurrence.is_(None),
                Broadcast.status.in_((BroadcastStatus.SCHEDULED, BroadcastStatus.DISPATCHED)),
                # a slot lasts far less than a day: older one-offs are history
                Broadcast.start_at >= window_from - dt.timedelta(days=1),
                Broadcast.start_at < window_to).order_by(Broadcast.id)):
            found = schedule.slots(db, bc, self.settings.timezone, schedule.aware(window_from),
                                   schedule.aware(window_to))
            if found:
                for node_id in reach.nodes(bc):
                    out.setdefault(node_id, []).extend(found)
        return out

    def refresh_desired(self) -> int:
        """A new retained desired state for nodes that changed or whose window runs short: its
        schedule is the node's slots of every series on air, its prefetch their media.

        The nodes are claimed (their dirty flag cleared) in a commit of its own before anything
        is read for them: a change the web commits while this pass builds marks its nodes dirty
        again, so it goes out on the next pass instead of being lost under this pass's write.
        The claim also clears their expiry, so a node claimed by a process that dies (or stops
        acting) before its build commits is picked up again by the next pass, whichever
        dispatcher runs it.

        The states are written DESIRED_BATCH nodes a transaction: on SQLite one writer holds
        the database at a time, and a province's pass in one transaction (10,000 states, tens
        of seconds on a loaded machine) kept the lease's renewal and the bridge's ingest
        waiting until the lease was lost and the whole pass thrown away, again and again.
        A batch committed stays sent; the ones not yet committed are marked dirty again."""
        now = self.clock()
        window = self.settings.desired_window_h * 3600 * 1000
        with self.sessions() as db:
            ids = list(db.scalars(select(Node.id).where(Node.revoked_at.is_(None)).where(
                Node.desired_dirty.is_(True) | (Node.desired_exp_ms < now + window // 2))
                .order_by(Node.id)))
            if not ids:
                return 0
            for batch in chunks(ids, DESIRED_BATCH):  # not a province's ids in one statement
                db.execute(update(Node).where(Node.id.in_(batch)).values(desired_dirty=False,
                                                                          desired_exp_ms=0))
            db.commit()
            done, left = 0, ids
            try:
                plan = self._slots_by_node(db, now, window)
                db.rollback()  # end the read: the batches' writes come in transactions of their own
                clusters: dict[int, tuple[list[str], str, list[dict[str, str]]]] = {}
                while left:
                    done += self._build_desired(db, left[:DESIRED_BATCH], now, window, plan,
                                                clusters)
                    if not self.acting():
                        raise RuntimeError("lease lost while building desired states")
                    db.commit()
                    left = left[DESIRED_BATCH:]
            except Exception:
                db.rollback()  # nothing of these was sent: build them again on the next pass
                for batch in chunks(left, DESIRED_BATCH):
                    db.execute(update(Node).where(Node.id.in_(batch)).values(desired_dirty=True))
                db.commit()
                raise
        return done

    def _build_desired(self, db: Session, ids: list[str], now: int, window: int,
                       plan: tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]
                       | None = None,
                       clusters: dict[int, tuple[list[str], str, list[dict[str, str]]]]
                       | None = None) -> int:
        """New desired states for the nodes ``ids`` (not committed); ``plan``: every node's
        schedule entries and their media (``_slots_by_node``), read here when not given;
        ``clusters``: each cluster's groups, zone and quiet hours, as a pass has read them
        (its nodes share them; filled here).

        One statement per kind at the flush, not one per node: the loop neither flushes nor
        lets a query flush (no_autoflush), and the signing key is read once. A flush per node,
        and the active key looked up for each, were two thirds of a province's 17 s pass."""
        nodes = db.scalars(select(Node).where(Node.id.in_(ids))).all()
        slots, media = plan if plan is not None else self._slots_by_node(db, now, window)
        if clusters is None:
            clusters = {}
        carried: dict[str, list[deliveries.Carried]] = {}
        as_carried: dict[int, deliveries.Carried] = {}  # entries are shared between nodes
        signer = self.keyring.active(db)
        kid = signer[0]
        valid_until = self._desired_valid_until(db, ids)
        built = []
        with db.no_autoflush:
            for node in nodes:
                if node.cluster_id not in clusters:
                    clusters[node.cluster_id] = (
                        node_groups(db, node),
                        area_zone(db, node.cluster_id, self.settings.timezone),
                        bulletins.quiet_hours(db, node.cluster_id))
                groups, zone, quiet = clusters[node.cluster_id]
                entries = sorted(slots.get(node.id, []),
                                 key=lambda e: (e["start_at"], e["slot_id"]))
                shas = dict.fromkeys(e["item"]["media"]["sha256"] for e in entries)
                body = {"tz": zone, "volume": node.volume, "quiet_hours": quiet,
                        "groups": groups, "schedule": entries,
                        "prefetch": [media[sha] for sha in shas]}
                digest = hashlib.sha256(json.dumps([kid, body], sort_keys=True,
                                                   separators=(",", ":")).encode()).hexdigest()
                still_valid = valid_until.get(node.id, 0)
                if digest == node.desired_digest and still_valid >= now + window // 2:
                    # the same as the version the node has (or the outbox still holds): a
                    # rebuild after a claim left unfinished, or a change that moved nothing on
                    # this node
                    node.desired_exp_ms = still_valid
                    continue
                node.desired_version += 1
                node.desired_digest = digest
                outbox.add_signed(db, self.settings.topic_prefix, signer, CommandType.DESIRED,
                                  f"node:{node.id}", {"version": node.desired_version, **body},
                                  now, window, node_id=node.id, retain=True,
                                  created_at=from_ms(now))
                node.desired_exp_ms = now + window
                built.append(node)
                for e in entries:
                    if id(e) not in as_carried:
                        as_carried[id(e)] = _carried(e)
                carried[node.id] = [as_carried[id(e)] for e in entries]
        # which version first carried each slot, for its delivery state (server.deliveries)
        deliveries.slots_sent(db, {n.id: n.desired_version for n in built}, carried,
                              from_ms(now - LATE_SLOT_MS))
        return len(built)

    def _desired_valid_until(self, db: Session, ids: list[str]) -> dict[str, int]:
        """Until when (ms) each node's newest desired state in the outbox is valid."""
        rows = db.execute(select(Command.node_id, func.max(Command.exp_ms)).where(
            Command.node_id.in_(ids), Command.type == CommandType.DESIRED,
            Command.failed_at.is_(None), Command.payload.is_not(None))
            .group_by(Command.node_id)).all()
        return {node_id: exp for node_id, exp in rows if node_id is not None and exp is not None}

    def sign_pending(self) -> int:
        """Sign the commands the web queued (it holds no key): server.outbox.sign_pending."""
        with self.sessions() as db:
            done = outbox.sign_pending(db, self.keyring.active, self.clock())
            db.commit()
        return done

    def publish_outbox(self, limit: int = 500) -> int:
        """Publish what is signed and unsent: server.outbox.publish_pending, again while
        whole batches went out (a ward's thousand desired states leave in one pass)."""
        sent = 0
        for _ in range(20):
            if not self.acting():
                break
            with self.sessions() as db:
                done = outbox.publish_pending(db, self.transport,
                                              self.settings.mqtt_max_packet_bytes, self.clock,
                                              limit)
            sent += done
            if done < limit:
                break
        return sent

    def resend_unreceived(self) -> int:
        """Send again what an online node has not acked: server.outbox.resend_unreceived
        (looked for once a second at most, not on every tick)."""
        now = self.clock()
        if now - self._last_resend_ms < 1000:
            return 0
        self._last_resend_ms = now
        with self.sessions() as db:
            return outbox.resend_unreceived(db, self.transport, self.clock,
                                            self.settings.command_resend_s * 1000)

    def evaluate_alerts(self) -> int:
        """One pass of the alerts (server.alerts) at the dispatcher's clock, and their
        notifications handed to the notifier's worker (never sent from here). Whether nodes
        are offline is judged only while this process holds its broker connection, and a node
        still marked online is silent only counting from when that connection began. Once the
        duties are started the pass runs in the background process (schedules.background),
        before that here."""
        now_ms = self.clock()
        connected = self.transport is not None and self.transport.connected
        if not connected:
            self._broker_since_ms = None
        elif self._broker_since_ms is None:
            self._broker_since_ms = now_ms
        new: int = self._pass("alerts", now_ms, connected, self._broker_since_ms)
        with self.sessions() as db:
            messages = notify.take(db, self.settings)
            db.commit()
        for message in messages:
            self.notifier.submit(message)
        return new

    def _after_burst(self, interval_s: float) -> None:
        """Wait while node messages burst in, at most PASS_YIELD_S (and half the pass's
        interval, so no run is skipped). An alert pass reads every node and the airplay report
        of its lookback: about 2 s of this interpreter at 10,000 nodes, which the bridge
        shares; during an emergency that held up its 10,000 receipts. It runs a little later,
        never not at all."""
        until = time.monotonic() + min(PASS_YIELD_S, interval_s / 2)
        while self.busy() and time.monotonic() < until:
            time.sleep(BURST_POLL_S)

    def _alerts_job(self) -> None:
        if not self.acting():
            return
        self._after_burst(self.settings.alert_eval_s)
        try:
            self.evaluate_alerts()
        except Exception:
            log.exception("alert pass failed")

    def retain_telemetry(self) -> retention.Pruned:
        """Aggregate the completed hours of telemetry, then prune what is past its retention
        (server.retention), at the dispatcher's clock: in the background process once the
        duties are started (as evaluate_alerts)."""
        pruned: retention.Pruned = self._pass("retention", self.clock())
        return pruned

    def _pass(self, name: str, *args: Any) -> Any:
        """Heavy pass ``name`` (schedules.background.PASSES): in the background process once
        the duties are started, here before that."""
        if self.background is not None:
            return self.background.run(name, *args)
        return background.PASSES[name](self.sessions, self.settings, *args)

    def _retention_job(self) -> None:
        self._after_burst(self.settings.telemetry_retention_s)
        try:
            self.retain_telemetry()
        except Exception:
            log.exception("telemetry retention pass failed")

    def heartbeat(self) -> None:
        if not self.acting():
            return  # the dispatcher that acts reports the broker connection
        with self.sessions() as db:
            row = db.get(WorkerStatus, "dispatcher")
            if row is None:
                row = WorkerStatus(name="dispatcher", heartbeat_at=utcnow(), mqtt_connected=False)
                db.add(row)
            row.heartbeat_at, row.mqtt_connected = utcnow(), self.transport.connected
            health = outbox.health(db)
            stuck = health["oldest_age_s"] > self.settings.outbox_stale_s
            if stuck and not self._outbox_alarm:
                log.error("ALARM outbox stuck: %s commands unsent, the oldest %.0f s old",
                          health["pending"], health["oldest_age_s"])
            elif self._outbox_alarm and not stuck:
                log.warning("outbox flows again")
            self._outbox_alarm = stuck
            row.detail = {"outbox": health}
            db.commit()

    # --- the scheduler -----------------------------------------------------------------------

    def start(self, interval_s: float = 0.5) -> None:
        """Tick every ``interval_s``, and at once whenever the web wakes us (server.wake)."""
        self.background = background.Background(self.settings)  # started at its first pass
        self.scheduler = BackgroundScheduler(timezone=self.settings.timezone)
        self.scheduler.add_job(self._guarded(lambda: self.tick(wait=False)), "interval",
                               seconds=interval_s, id="tick", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._guarded(self.heartbeat), "interval", seconds=5,
                               id="heartbeat", max_instances=1, coalesce=True)
        self.notifier.start()
        self.scheduler.add_job(self._alerts_job, "interval", seconds=self.settings.alert_eval_s,
                               id="alerts", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._retention_job, "interval",
                               seconds=self.settings.telemetry_retention_s, id="retention",
                               max_instances=1, coalesce=True)
        self.scheduler.start()
        self._wake = wake.Listener(self.settings.instance_path, self._guarded(self.tick))
        self._wake.start()
        self.heartbeat()

    def stop(self) -> None:
        if self._wake is not None:
            self._wake.stop()
            self._wake = None
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self.background is not None:
            self.background.stop()
            self.background = None
        self.notifier.stop()
