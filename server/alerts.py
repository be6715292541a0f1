"""Alerts the server raises about its nodes: found by the dispatcher on a job (every
``alert_eval_s``), shown and handled through the API, sent by webhook and e-mail
(server/notify.py).

An alert (models.Alert) is about one node and one kind; it is ``open`` -> ``acknowledged`` ->
``resolved``, with who and when for each step. It is resolved automatically when its condition
is no longer found (or, for a missed slot, when the node's late reports turn every slot it
counted aired), or by hand. Kinds whose condition has no end the server can see (an amplifier
fault) are resolved by hand only.

Without noise:
- a node is offline only after ``alert_offline_after_s`` without it (its Last Will said
  offline, or, while marked online, nothing heard from it): a link that flaps for less raises
  nothing;
- an alert repeats (is notified again) only when its severity or detail class changes, not on
  every pass; what it counts (alarms, missed slots, failed downloads) goes up silently;
- a node in its maintenance window (``maintenance_until``) raises nothing new, while its
  alerts still resolve when their conditions clear;
- an alert resolved by hand while its condition still holds stays resolved until a pass sees
  the condition gone (or, for kinds that count episodes, a new episode starts);
- nodes provisioned but never connected raise nothing: they are listed apart
  (``GET /api/v1/nodes?status=never_connected``);
- while the dispatcher has no broker connection, whether nodes are offline is not judged.

The pure part, ``find`` (facts -> conditions) and ``reconcile`` (conditions + alerts -> changes),
is tested directly with an injected clock; ``collect`` reads the facts from the database and
``evaluate`` does all of it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from device_agent.protocol import AlarmCode, EventType, NodeReason, PlayResult
from device_agent.telemetry import DISK_LOW_MB, OVERHEAT_C, REGISTERED

from . import audit, reports, schedule
from .config import Settings
from .errors import ApiError, ErrorCode
from .i18n import Word, t, word
from .models import (Alert, Area, Event, Node, PlayLog, User, area_ancestors, area_zone,
                     to_ms)


class Kind(StrEnum):
    NODE_OFFLINE = "node_offline"
    AMP_FAULT = "amp_fault"
    DISK_LOW = "disk_low"
    OVERHEAT = "overheat"
    CLOCK_OFF = "clock_off"
    UNDER_VOLTAGE = "under_voltage"
    MODEM_UNREGISTERED = "modem_unregistered"
    PLAYER_FAILING = "player_failing"
    SLOT_MISSED = "slot_missed"
    MEDIA_FAILING = "media_failing"


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertStep(StrEnum):
    """What a person does to an alert (POST /alerts/{id}/{step})."""
    ACK = "ack"
    RESOLVE = "resolve"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Clears(StrEnum):
    ABSENT = "absent"  # resolved automatically when a pass no longer finds the condition
    ITEMS = "items"    # when every item it counted is judged no longer missed
    HAND = "hand"      # by hand only: the server sees no end to it


ACTIVE = (State.OPEN, State.ACKNOWLEDGED)
CLEARS = {Kind.AMP_FAULT: Clears.HAND, Kind.SLOT_MISSED: Clears.ITEMS}
SEVERITY = {Kind.AMP_FAULT: Severity.CRITICAL, Kind.PLAYER_FAILING: Severity.CRITICAL}
# a node's own alarm codes (docs/protocol.md section 6) and the server's clock_off, by kind
ALARM_CODES: dict[Kind, tuple[str, ...]] = {
    Kind.AMP_FAULT: (AlarmCode.AMP_FAULT,), Kind.DISK_LOW: (AlarmCode.DISK_LOW,),
    Kind.OVERHEAT: (AlarmCode.OVERHEAT,),
    Kind.CLOCK_OFF: (Kind.CLOCK_OFF, AlarmCode.CLOCK_UNSYNCED, AlarmCode.CLOCK_JUMP),
    Kind.UNDER_VOLTAGE: (AlarmCode.UNDER_VOLTAGE,),
    Kind.MODEM_UNREGISTERED: (AlarmCode.MODEM_UNREGISTERED,),
    Kind.PLAYER_FAILING: (AlarmCode.PLAYER_FAILING,)}
# kinds read from the node's latest telemetry: stale while the node is offline
TELEMETRY_KINDS = (Kind.DISK_LOW, Kind.OVERHEAT, Kind.CLOCK_OFF, Kind.UNDER_VOLTAGE,
                   Kind.MODEM_UNREGISTERED)
# what a node says when it cannot have a media file (played/ack reasons, device_agent.media)
MEDIA_REASONS = frozenset({NodeReason.MEDIA_UNAVAILABLE, NodeReason.MEDIA_MISMATCH})
# a missed slot worth an alert: not one a person or a rule decided (cancelled, quiet hours,
# preempted, stopped)
MISSED_REASONS = frozenset({reports.MissReason.OFFLINE, reports.MissReason.NO_REPORT,
                            reports.MissReason.MEDIA_MISSING, reports.MissReason.FAILED,
                            reports.MissReason.LATE, reports.MissReason.CLOCK_UNSYNCED})
MAX_EPISODES = 200  # what an alert remembers having counted (the newest)
_SelectT = TypeVar("_SelectT", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class Policy:
    """The settings the evaluation follows (server.config: alert_*)."""

    offline_after: dt.timedelta = dt.timedelta(minutes=5)
    offline_critical_after: dt.timedelta | None = dt.timedelta(hours=1)
    clock_offset_ms: int = 100
    alarm_lookback: dt.timedelta = dt.timedelta(hours=24)
    missed_lookback: dt.timedelta = dt.timedelta(hours=6)
    media_failures: int = 3
    media_window: dt.timedelta = dt.timedelta(hours=24)
    # how long a node marked online may say nothing before it counts as offline: never less
    # than three of its telemetry periods (None: offline_after)
    silent_after: dt.timedelta | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Policy:
        offline_after = dt.timedelta(seconds=s.alert_offline_after_s)
        return cls(offline_after,
                   dt.timedelta(seconds=s.alert_offline_critical_after_s)
                   if s.alert_offline_critical_after_s else None,
                   s.node_max_clock_offset_ms, dt.timedelta(hours=s.alert_alarm_lookback_h),
                   dt.timedelta(hours=s.alert_missed_lookback_h), s.alert_media_failures,
                   dt.timedelta(hours=s.alert_media_window_h),
                   max(offline_after, dt.timedelta(seconds=3 * s.node_telemetry_s)))


@dataclass(frozen=True)
class Alarm:
    """A node's alarm event (or the server's clock_off): its event id, time (node clock, ms)
    and code."""

    event_id: str
    ts_ms: int
    code: str
    detail: str | None = None


@dataclass(frozen=True)
class MediaFailure:
    """A play that failed because the node could not have its media: ``key`` names the item
    (so its ack, played event and alarm count once)."""

    key: str
    ts_ms: int
    reason: str


@dataclass(frozen=True)
class Missed:
    key: str
    reason: str
    scheduled_at: dt.datetime
    broadcast_id: int


@dataclass(frozen=True)
class NodeFacts:
    """What the server knows of a node for one pass (datetimes naive UTC)."""

    node_id: str
    area_id: int
    online: bool = False
    last_seen: dt.datetime | None = None
    telemetry: Mapping[str, Any] | None = None
    maintenance_until: dt.datetime | None = None
    revoked: bool = False
    alarms: tuple[Alarm, ...] = ()              # within the lookback, oldest first
    media_failures: tuple[MediaFailure, ...] = ()
    last_completed_ms: int | None = None        # the newest completed play's start
    missed: tuple[Missed, ...] = ()             # airplay report lines worth an alert
    judged_ok: frozenset[str] = frozenset()     # items judged aired, partial or pending

    @property
    def never_connected(self) -> bool:
        return self.last_seen is None


@dataclass(frozen=True)
class Condition:
    """Something wrong found on a pass."""

    node_id: str
    area_id: int
    kind: Kind
    severity: Severity
    detail_class: str
    detail: dict[str, Any]
    since: dt.datetime
    episodes: tuple[str, ...] = ()


@dataclass
class Findings:
    conditions: dict[tuple[str, str], Condition] = field(default_factory=dict)
    unknown: set[tuple[str, str]] = field(default_factory=set)  # neither raised nor cleared
    quiet: set[str] = field(default_factory=set)      # nodes in maintenance: nothing new
    gone: set[str] = field(default_factory=set)       # revoked nodes: every alert resolves
    judged_ok: dict[str, frozenset[str]] = field(default_factory=dict)


def _iso(value: dt.datetime) -> str:
    return schedule.iso(schedule.aware(value))


def _detail(key: str, **params: Any) -> dict[str, Any]:
    return {"key": key, "params": params}


# --- finding conditions (pure) ------------------------------------------------------------------

def _offline(f: NodeFacts, now: dt.datetime, p: Policy,
             watch_since: dt.datetime | None) -> Condition | None:
    """Offline: its Last Will said so ``offline_after`` ago or more; or, still marked online,
    nothing heard from it for as long (``silent_after``: at least three telemetry periods),
    counted from when this dispatcher's broker connection began, so its own outage is not the
    nodes'."""
    assert f.last_seen is not None
    if f.online:
        heard = max(f.last_seen, watch_since) if watch_since else f.last_seen
        if now - heard < (p.silent_after or p.offline_after):
            return None
        key = "alertd.node_silent"
    else:
        if now - f.last_seen < p.offline_after:
            return None
        key = "alertd.node_offline"
    critical = p.offline_critical_after is not None \
        and now - f.last_seen >= p.offline_critical_after
    return Condition(f.node_id, f.area_id, Kind.NODE_OFFLINE,
                     Severity.CRITICAL if critical else Severity.WARNING, "offline",
                     _detail(key, since=_iso(f.last_seen)), f.last_seen)


def _reading(kind: Kind, tele: Mapping[str, Any], p: Policy
             ) -> tuple[bool | None, dict[str, Any], str]:
    """What the telemetry says of a kind: (holds: None when unknown, detail, detail class)."""
    if kind == Kind.DISK_LOW:
        disk = tele.get("disk_free_mb")
        return (None if disk is None else disk < DISK_LOW_MB,
                _detail("alertd.disk_low", mb=disk), kind.value)
    if kind == Kind.OVERHEAT:
        temp = tele.get("cpu_temp_c")
        return (None if temp is None else temp >= OVERHEAT_C,
                _detail("alertd.overheat", c=temp), kind.value)
    if kind == Kind.CLOCK_OFF:
        offset = tele.get("clock_offset_ms")
        return (None if offset is None else abs(offset) > p.clock_offset_ms,
                _detail("alertd.clock_off", ms=offset, limit=p.clock_offset_ms), "offset")
    if kind == Kind.UNDER_VOLTAGE:
        under = (tele.get("power") or {}).get("under_voltage")
        return under, _detail("alertd.under_voltage"), kind.value
    registration = (tele.get("net") or {}).get("registration")
    return (None if registration is None else registration not in REGISTERED,
            _detail("alertd.modem_unregistered", state=registration), kind.value)


def _from_alarm(alarm: Alarm) -> tuple[dict[str, Any], str]:
    if alarm.code == AlarmCode.CLOCK_UNSYNCED:
        return _detail("alertd.clock_unsynced"), "unsynced"
    if alarm.code == AlarmCode.CLOCK_JUMP:
        return _detail("alertd.clock_jump", node_says=alarm.detail or "-"), "jump"
    return _detail("alertd.alarm", code=alarm.code, node_says=alarm.detail or "-"), alarm.code


def _alarm_condition(f: NodeFacts, kind: Kind, now: dt.datetime, p: Policy
                     ) -> Condition | None:
    """A kind the node raises an alarm for: the newest evidence wins, the latest telemetry's
    reading or an alarm sent after it (an alarm stands while no reading says otherwise)."""
    codes = ALARM_CODES[kind]
    alarm = next((a for a in reversed(f.alarms) if a.code in codes), None)
    holds: bool | None = None
    detail: dict[str, Any] = {}
    klass = kind.value
    tele = f.telemetry or {}
    if kind in TELEMETRY_KINDS and tele:
        holds, detail, klass = _reading(kind, tele, p)
    tele_ts = tele.get("ts")
    if alarm is not None and (holds is None or tele_ts is None or alarm.ts_ms > tele_ts):
        holds = True
        detail, klass = _from_alarm(alarm)
    if kind == Kind.PLAYER_FAILING and alarm is not None and f.last_completed_ms is not None \
            and f.last_completed_ms >= alarm.ts_ms:
        holds = False  # a play completed since: the player works again
    if not holds:
        return None
    since = dt.datetime.fromtimestamp(alarm.ts_ms / 1000, dt.UTC).replace(tzinfo=None) \
        if alarm is not None else now
    return Condition(f.node_id, f.area_id, kind, SEVERITY.get(kind, Severity.WARNING), klass,
                     detail, min(since, now),
                     (f"alarm:{alarm.event_id}",) if alarm is not None else ())


def _media_failing(f: NodeFacts, now: dt.datetime, p: Policy) -> Condition | None:
    """Downloads that keep failing: ``media_failures`` items or more failed for want of their
    media within the window, and no play completed after the last of them."""
    lo = to_ms(now - p.media_window)
    failed = {m.key: m for m in f.media_failures if m.ts_ms >= lo}
    if len(failed) < p.media_failures:
        return None
    newest = max(m.ts_ms for m in failed.values())
    if f.last_completed_ms is not None and f.last_completed_ms > newest:
        return None
    reasons = sorted({m.reason for m in failed.values()})
    first = min(m.ts_ms for m in failed.values())
    return Condition(f.node_id, f.area_id, Kind.MEDIA_FAILING, Severity.WARNING,
                     ",".join(reasons),
                     _detail("alertd.media_failing", count=len(failed),
                             reasons=", ".join(reasons)),
                     dt.datetime.fromtimestamp(first / 1000, dt.UTC).replace(tzinfo=None),
                     tuple(sorted(failed)))


def _slot_missed(f: NodeFacts) -> Condition | None:
    if not f.missed:
        return None
    last = max(f.missed, key=lambda m: m.scheduled_at)
    reasons = sorted({m.reason for m in f.missed})
    return Condition(f.node_id, f.area_id, Kind.SLOT_MISSED, Severity.WARNING,
                     ",".join(reasons),
                     _detail("alertd.slot_missed", count=len(f.missed),
                             at=_iso(last.scheduled_at), broadcast=last.broadcast_id,
                             reason=last.reason),
                     min(m.scheduled_at for m in f.missed),
                     tuple(sorted(m.key for m in f.missed)))


def node_conditions(f: NodeFacts, now: dt.datetime, p: Policy, broker_ok: bool = True,
                    watch_since: dt.datetime | None = None
                    ) -> tuple[list[Condition], set[Kind]]:
    """The conditions found on one node, and the kinds that cannot be judged now."""
    if f.never_connected or f.revoked:
        return [], set()
    unknown: set[Kind] = set()
    found: list[Condition | None] = []
    if broker_ok:
        found.append(_offline(f, now, p, watch_since))
    else:
        unknown.add(Kind.NODE_OFFLINE)
    for kind in ALARM_CODES:
        if kind in TELEMETRY_KINDS and not f.online:
            unknown.add(kind)  # its last readings are stale
        else:
            found.append(_alarm_condition(f, kind, now, p))
    found.append(_media_failing(f, now, p))
    if f.online:
        found.append(_slot_missed(f))
    else:
        unknown.add(Kind.SLOT_MISSED)  # its late reports may still come
    return [c for c in found if c is not None], unknown


def find(facts: Iterable[NodeFacts], now: dt.datetime, policy: Policy, *,
         broker_ok: bool = True, watch_since: dt.datetime | None = None) -> Findings:
    """Every node's conditions for this pass (now: naive UTC)."""
    out = Findings()
    for f in facts:
        if f.revoked:
            out.gone.add(f.node_id)
            continue
        if f.maintenance_until is not None and f.maintenance_until > now:
            out.quiet.add(f.node_id)
        conditions, unknown = node_conditions(f, now, policy, broker_ok, watch_since)
        for c in conditions:
            out.conditions[(c.node_id, c.kind.value)] = c
        out.unknown |= {(f.node_id, k.value) for k in unknown}
        out.judged_ok[f.node_id] = f.judged_ok
    return out


# --- reconciling alerts with what was found (pure over Alert objects) ---------------------------

def _open(c: Condition, now: dt.datetime) -> Alert:
    return Alert(kind=c.kind.value, node_id=c.node_id, area_id=c.area_id,
                 severity=c.severity.value, state=State.OPEN.value, detail_class=c.detail_class,
                 detail=c.detail, episodes=list(c.episodes)[-MAX_EPISODES:],
                 count=max(1, len(c.episodes)), first_seen=c.since, last_seen=now,
                 opened_at=now, cleared=False, revision=1, notified_revision=0)


def _update(alert: Alert, c: Condition, now: dt.datetime, notify: bool) -> None:
    """Found again: counted and seen; a repeat (notified) only when severity or class change."""
    known = set(alert.episodes or ())
    fresh = [e for e in c.episodes if e not in known]
    if fresh:
        alert.count = (alert.count or 0) + len(fresh)
        alert.episodes = [*(alert.episodes or ()), *fresh][-MAX_EPISODES:]
    alert.last_seen = now
    alert.detail = c.detail
    if (c.severity.value, c.detail_class) != (alert.severity, alert.detail_class):
        alert.severity, alert.detail_class = c.severity.value, c.detail_class
        if notify:
            alert.revision = (alert.revision or 1) + 1


def resolve(alert: Alert, now: dt.datetime, by: User | None = None,
            comment: str | None = None) -> None:
    """Resolved, by ``by`` (None: the server, the condition gone)."""
    alert.state = State.RESOLVED.value
    alert.resolved_at, alert.resolved_by = now, by.id if by is not None else None
    alert.resolved_comment = comment
    alert.cleared = by is None
    alert.revision = (alert.revision or 1) + 1


def acknowledge(alert: Alert, now: dt.datetime, by: User, comment: str | None = None) -> None:
    alert.state = State.ACKNOWLEDGED.value
    alert.acknowledged_at, alert.acknowledged_by = now, by.id
    alert.acknowledged_comment = comment


def reconcile(current: Mapping[tuple[str, str], Alert], found: Findings,
              now: dt.datetime) -> list[Alert]:
    """Bring the alerts in line with a pass's findings. ``current``: the newest alert of each
    (node, kind). Alerts found again are updated in place, those whose condition cleared are
    resolved; the answer is the new alerts to store."""
    new = []
    for key in sorted(set(current) | set(found.conditions)):
        made = _reconcile_one(key, current.get(key), found, now)
        if made is not None:
            new.append(made)
    return new


def _reconcile_one(key: tuple[str, str], alert: Alert | None, found: Findings,
                   now: dt.datetime) -> Alert | None:
    node_id, kind = key
    cond = found.conditions.get(key)
    if node_id in found.gone:
        if alert is not None and alert.state in ACTIVE:
            resolve(alert, now)
        return None
    if key in found.unknown:
        return None
    quiet = node_id in found.quiet
    if cond is not None:
        if alert is None or alert.state == State.RESOLVED and (
                alert.cleared or set(cond.episodes) - set(alert.episodes or ())):
            return None if quiet else _open(cond, now)
        if alert.state == State.RESOLVED:
            return None  # resolved by hand while it still holds: not raised again yet
        _update(alert, cond, now, notify=not quiet)
    elif alert is not None:
        if alert.state == State.RESOLVED:
            alert.cleared = True
            return None
        if CLEARS.get(Kind(kind), Clears.ABSENT) == Clears.ABSENT:
            resolve(alert, now)
            return None
    if alert is not None and alert.state in ACTIVE and CLEARS.get(Kind(kind)) == Clears.ITEMS \
            and set(alert.episodes or ()) <= found.judged_ok.get(node_id, frozenset()):
        resolve(alert, now)  # the node's late reports turned every missed slot aired
    return None


# --- the facts, from the database ---------------------------------------------------------------

def _alarms(db: Session, since_ms: int) -> dict[str, list[Alarm]]:
    out: dict[str, list[Alarm]] = {}
    for e in db.scalars(select(Event).where(Event.type == EventType.ALARM, Event.ts_ms >= since_ms)
                        .order_by(Event.ts_ms, Event.id)):
        code = (e.payload or {}).get("code")
        if isinstance(code, str):
            out.setdefault(e.node_id, []).append(Alarm(e.event_id, e.ts_ms, code,
                                                       (e.payload or {}).get("detail")))
    return out


def _media_failures(db: Session, since_ms: int, alarms: dict[str, list[Alarm]]
                    ) -> dict[str, list[MediaFailure]]:
    out: dict[str, list[MediaFailure]] = {}
    for p in db.scalars(select(PlayLog).where(PlayLog.result == PlayResult.FAILED,
                                              PlayLog.reason.in_(MEDIA_REASONS),
                                              PlayLog.started_at_ms >= since_ms)):
        key = f"cmd:{p.cmd_id}" if p.cmd_id else f"slot:{p.slot_id or p.item_id}"
        out.setdefault(p.node_id, []).append(MediaFailure(key, p.started_at_ms or 0,
                                                          p.reason or NodeReason.MEDIA_UNAVAILABLE))
    for node_id, found in alarms.items():
        for a in found:
            if a.code == AlarmCode.MEDIA_MISMATCH and a.ts_ms >= since_ms:
                out.setdefault(node_id, []).append(MediaFailure(
                    f"alarm:{a.event_id}", a.ts_ms, NodeReason.MEDIA_MISMATCH))
    return out


def _report_lines(db: Session, tz: str, nodes: Mapping[str, reports.ReportNode], now: dt.datetime,
                  p: Policy, grace: dt.timedelta) -> tuple[dict[str, list[Missed]],
                                                            dict[str, set[str]]]:
    """From the airplay report of the lookback: each node's missed items worth an alert, and
    the items judged otherwise (aired, partial, pending, or missed for a decided reason)."""
    end = schedule.aware(now)
    start = end - p.missed_lookback
    items = reports.planned_items(db, tz, nodes, start, end)
    plays, acks = reports.reported_rows(db, items)
    presence = {n.id: reports.Presence(bool(n.online), schedule.aware(n.last_seen)
                                       if n.last_seen else None) for n in nodes.values()}
    report = reports.airplay(items, plays, acks, now=end, grace=grace, presence=presence)
    missed: dict[str, list[Missed]] = {}
    ok: dict[str, set[str]] = {}
    for line in report.lines:
        i = line.item
        key = f"slot:{i.slot_id}" if i.slot_id else f"cmd:{i.cmd_id or i.broadcast_id}"
        if line.status == reports.AirStatus.MISSED and line.reason in MISSED_REASONS:
            missed.setdefault(i.node_id, []).append(Missed(
                key, line.reason.value, schedule.naive(i.scheduled_at), i.broadcast_id))
        else:
            ok.setdefault(i.node_id, set()).add(key)
    return missed, ok


ALERT_COLUMNS = (*reports.REPORT_COLUMNS, Node.last_telemetry, Node.maintenance_until)


def collect(db: Session, now: dt.datetime, p: Policy, tz: str,
            grace: dt.timedelta) -> list[NodeFacts]:
    """Every node's facts for a pass at ``now`` (naive UTC)."""
    # the columns the facts need, not the nodes' objects: a province's 10,000 loaded every
    # alert_eval_s took seconds of the dispatcher's one interpreter, from the bridge's ingest
    nodes = {n.id: n for n in db.execute(select(*ALERT_COLUMNS).order_by(Node.id))}
    alarms = _alarms(db, to_ms(now - p.alarm_lookback))
    media = _media_failures(db, to_ms(now - p.media_window), alarms)
    since = to_ms(now - max(p.alarm_lookback, p.media_window))
    completed = dict(db.execute(select(PlayLog.node_id, func.max(PlayLog.started_at_ms)).where(
        PlayLog.result == PlayResult.COMPLETED, PlayLog.started_at_ms >= since)
        .group_by(PlayLog.node_id)).all())
    live = {k: n for k, n in nodes.items() if n.revoked_at is None and n.last_seen is not None}
    missed, ok = _report_lines(db, tz, live, now, p, grace)
    return [NodeFacts(
        node_id=n.id, area_id=n.cluster_id, online=bool(n.online), last_seen=n.last_seen,
        telemetry=n.last_telemetry, maintenance_until=n.maintenance_until,
        revoked=n.revoked_at is not None, alarms=tuple(alarms.get(n.id, ())),
        media_failures=tuple(media.get(n.id, ())), last_completed_ms=completed.get(n.id),
        missed=tuple(missed.get(n.id, ())), judged_ok=frozenset(ok.get(n.id, ())))
        for n in nodes.values()]


def newest_alerts(db: Session) -> dict[tuple[str, str], Alert]:
    """The newest alert of each (node, kind): the one a pass reconciles."""
    newest = select(func.max(Alert.id)).group_by(Alert.node_id, Alert.kind)
    return {(a.node_id or "", a.kind): a for a in db.scalars(select(Alert).where(
        Alert.id.in_(newest)))}


def evaluate(db: Session, settings: Settings, now: dt.datetime, *, broker_ok: bool = True,
             watch_since: dt.datetime | None = None) -> list[Alert]:
    """One pass: find, reconcile, store (the caller commits). The answer: the new alerts."""
    policy = Policy.from_settings(settings)
    facts = collect(db, now, policy, settings.timezone,
                    dt.timedelta(seconds=settings.airplay_grace_s))
    found = find(facts, now, policy, broker_ok=broker_ok, watch_since=watch_since)
    new = reconcile(newest_alerts(db), found, now)
    db.add_all(new)
    db.flush()
    return new


# --- as people read it --------------------------------------------------------------------------

def _local(value: str, tz: str) -> str:
    at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at.astimezone(ZoneInfo(tz)).strftime("%H:%M %d/%m/%Y")


TIME_PARAMS = ("since", "at")
# the detail parameters that are a vocabulary's words (server.i18n.word): a node's alarm code
# (AlarmCode), a missed slot's reason (MissReason), the modem's 3GPP registration state
WORD_PARAMS = {"code": "alarmcode", "reason": "airreason", "state": "mmreg"}


def detail_text(alert: Alert, lang: str, tz: str) -> str:
    """The alert's detail in ``lang``, its times in ``tz``."""
    detail = alert.detail or {}
    params = dict(detail.get("params") or {})
    for name in TIME_PARAMS:
        if isinstance(params.get(name), str):
            params[name] = _local(params[name], tz)
    for name, kind in WORD_PARAMS.items():
        if isinstance(params.get(name), str):
            params[name] = word(kind, params[name], lang)
    if "reasons" in params:  # failed downloads': the nodes' words (NodeReason), ", "-joined
        params["reasons"] = ", ".join(word("nodereason", r, lang)
                                      for r in params["reasons"].split(", "))
    return t(detail.get("key") or f"alertd.{alert.kind}", lang, **params)


def alert_json(alert: Alert, names: Mapping[int, str], lang: str, tz: str) -> dict[str, Any]:
    """An alert as the API and the webhook give it; ``names``: usernames by id."""
    def who(user_id: int | None) -> str | None:
        return names.get(user_id) if user_id is not None else None
    return {"id": alert.id, "kind": alert.kind, "kind_text": t(f"alert.kind.{alert.kind}", lang),
            "node_id": alert.node_id, "area_id": alert.area_id, "severity": alert.severity,
            "state": alert.state, "detail_class": alert.detail_class,
            "detail": (alert.detail or {}).get("params") or {},
            "text": detail_text(alert, lang, tz), "count": alert.count,
            "first_seen": schedule.iso(schedule.aware(alert.first_seen)),
            "last_seen": schedule.iso(schedule.aware(alert.last_seen)),
            "opened_at": schedule.iso(schedule.aware(alert.opened_at)),
            "acknowledged": {"by": who(alert.acknowledged_by),
                             "at": _opt_iso(alert.acknowledged_at),
                             "comment": alert.acknowledged_comment}
            if alert.acknowledged_at else None,
            "resolved": {"by": who(alert.resolved_by), "at": _opt_iso(alert.resolved_at),
                         "automatic": alert.resolved_by is None,
                         "comment": alert.resolved_comment}
            if alert.resolved_at else None}


def _opt_iso(value: dt.datetime | None) -> str | None:
    return schedule.iso(schedule.aware(value)) if value is not None else None


def usernames(db: Session, alerts: Iterable[Alert]) -> dict[int, str]:
    ids = {i for a in alerts for i in (a.acknowledged_by, a.resolved_by) if i is not None}
    if not ids:
        return {}
    return dict(db.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


def visible(db: Session, alert: Alert, allowed: set[int] | None) -> bool:
    return allowed is None or alert.area_id in allowed


def _narrowed(q: _SelectT, areas: set[int] | None, states: Iterable[str],
              kind: str | None = None, node: str | None = None) -> _SelectT:
    if areas is not None:
        q = q.where(Alert.area_id.in_(areas))
    if states := list(states):
        q = q.where(Alert.state.in_(states))
    if kind is not None:
        q = q.where(Alert.kind == kind)
    if node:
        q = q.where(Alert.node_id == node)
    return q


def listing(db: Session, areas: set[int] | None, states: Iterable[str] = (),
            kind: str | None = None, node: str | None = None, limit: int = 500,
            offset: int = 0) -> list[Alert]:
    """Alerts of ``areas`` (None: every area), newest first, narrowed by state, kind and node:
    the API's list and the alerts page (a page of them: ``offset``)."""
    q = select(Alert).order_by(Alert.id.desc()).limit(limit).offset(offset)
    return list(db.scalars(_narrowed(q, areas, states, kind, node)))


def kind_counts(db: Session, areas: set[int] | None, states: Iterable[str] = ()) -> dict[str, int]:
    """How many alerts of ``areas`` in ``states`` there are of each kind (one statement)."""
    q = select(Alert.kind, func.count()).group_by(Alert.kind)
    return {k: n for k, n in db.execute(_narrowed(q, areas, states))}


# a person's step on an alert as its audit entry's action
STEP_ACTION = {AlertStep.ACK: audit.Action.ALERTS_ACK,
               AlertStep.RESOLVE: audit.Action.ALERTS_RESOLVE}


def take_step(db: Session, alert: Alert, action: AlertStep, user: User, comment: str | None,
              now: dt.datetime) -> None:
    """``act`` and its audit entry (``alerts.ack``, ``alerts.resolve``): what the API and the
    alerts page do; the caller commits."""
    act(db, alert, action, user, comment, now)
    audit.record(db, STEP_ACTION[action], (audit.Target.ALERT, alert.id),
                 {"kind": alert.kind, "node_id": alert.node_id, "state": alert.state,
                  "comment": comment})


def act(db: Session, alert: Alert, action: AlertStep, user: User, comment: str | None,
        now: dt.datetime) -> None:
    """A person acknowledges or resolves an alert; 409 alert_state when it is past that."""
    if alert.state == State.RESOLVED or action == AlertStep.ACK \
            and alert.state == State.ACKNOWLEDGED:
        raise ApiError(ErrorCode.ALERT_STATE, "err.alert_state", id=alert.id,
                       state=Word("alert.state", alert.state))
    if action == AlertStep.ACK:
        acknowledge(alert, now, user, comment)
    else:
        resolve(alert, now, user, comment)


def area_codes(db: Session, area_id: int | None) -> list[str]:
    """The codes of the alert's area and every area above it, nearest first."""
    return [a.code for a in area_ancestors(db, area_id)] if area_id is not None else []


def zone(db: Session, alert: Alert, default: str) -> str:
    """The zone the alert's times are shown in: its area's (``default``: the configured one)."""
    return area_zone(db, alert.area_id, default) if alert.area_id is not None else default


def area_name(db: Session, area_id: int | None) -> str | None:
    area = db.get(Area, area_id) if area_id is not None else None
    return area.name if area is not None else None
