"""The database: areas, nodes, users, bulletins, media, broadcasts and their per-node deliveries,
the outbox of commands, events, telemetry and play logs (SQLAlchemy 2; SQLite or PostgreSQL).

All datetimes are naive UTC; protocol timestamps stay integer milliseconds as on the wire.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer,
                        String, Table, Text, UniqueConstraint, and_, create_engine, event, select)
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import (DeclarativeBase, Mapped, Session, mapped_column, relationship,
                            sessionmaker)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from .config import LANGUAGES


MAX_DB_INT = 2**63 - 1  # the largest number a database integer column holds (BigInteger)
# the largest id: the id columns are INTEGER, 32 bits on PostgreSQL (SQLite takes 64)
MAX_DB_ID = 2**31 - 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def to_ms(value: dt.datetime) -> int:
    return int(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Area(Base):
    """A node of the area tree: province > ward/commune > cluster, or any older/deeper shape."""
    __tablename__ = "areas"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    group: Mapped[str] = mapped_column("mqtt_group", String(63), unique=True)
    # speech defaults for bulletins of this area and below (None: inherit from the parent)
    tts_engine: Mapped[str | None] = mapped_column(String(20))
    tts_voice: Mapped[str | None] = mapped_column(String(20))
    chime: Mapped[str | None] = mapped_column(String(10))  # none, intro, outro, both
    # an emergency broadcast here waits for a second person's confirmation (None: inherit)
    emergency_confirm: Mapped[bool | None] = mapped_column(Boolean)
    # quiet hours of the nodes here and below: [{"from": "HH:MM", "to": "HH:MM"}] in the
    # area's zone ([]: none; None: inherit from the parent)
    quiet_hours: Mapped[list[Any] | None] = mapped_column(JSON)
    # the IANA time zone of the area and below (series expanded, quiet hours judged, times
    # shown in it); None: the parent's, and at the root the configured zone
    tz: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # merged into another area of its kind (server.areas.merge_areas): what it held moved there;
    # the row stays so its past (broadcasts, alerts, audit entries, reports) keeps its name
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    merged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    parent: Mapped[Area | None] = relationship(remote_side="Area.id", foreign_keys=[parent_id])


class LexiconEntry(Base):
    """A ward's own reading of a term (place name, local abbreviation) for its bulletins."""
    __tablename__ = "lexicon_entries"
    __table_args__ = (UniqueConstraint("area_id", "term"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    term: Mapped[str] = mapped_column(String(100))
    spoken: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Node(Base):
    """A speaker node: a Pi agent with its own broker account, in one cluster."""
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    mqtt_password_hash: Mapped[str] = mapped_column(String(255))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    desired_version: Mapped[int] = mapped_column(Integer, default=0)
    desired_applied_version: Mapped[int | None] = mapped_column(Integer)
    desired_exp_ms: Mapped[int | None] = mapped_column(BigInteger)
    desired_dirty: Mapped[bool] = mapped_column(Boolean, default=True)
    # sha256 of the last desired state built, but for its version (and the key that signed
    # it): a rebuild that comes out the same is not sent again as a new version
    desired_digest: Mapped[str | None] = mapped_column(String(64))
    volume: Mapped[int] = mapped_column(Integer, default=80)
    # messages from the node the bridge refused (too large, malformed, unknown command ...)
    rejected_messages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_rejected_reason: Mapped[str | None] = mapped_column(String(40))
    last_rejected_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # set by POST /nodes/{id}/revoke: no broker account, no ACL, no desired state, no broadcasts
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # a technician's maintenance window (PATCH /nodes/{id}): until then it raises no alert
    maintenance_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cluster: Mapped[Area] = relationship()


class playing_item(FunctionElement[str]):
    """What a node last said it plays (its last telemetry's ``playing.item_id``), or NULL, as
    one SQL expression with its path written out, not bound: the database then matches it to
    the index on it (ix_nodes_online_playing_item), so the dashboard finds the few nodes that play
    without reading every node's report (a path as a bound parameter never matches an index)."""
    type = String()
    name = "playing_item"
    inherit_cache = True


@compiles(playing_item)
def _playing_item_sqlite(element: playing_item, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_extract({compiler.process(element.clauses, **kw)}, '$.playing.item_id')"


@compiles(playing_item, "postgresql")
def _playing_item_postgresql(element: playing_item, compiler: SQLCompiler, **kw: Any) -> str:
    return f"(({compiler.process(element.clauses, **kw)} -> 'playing') ->> 'item_id')"


# the dashboard's table (offline first, by cluster, by id: LIMIT reads the index's first rows,
# and its counts of every and of the online nodes read the index alone) and what the online
# nodes play (a range on it: ``> ''``; SQLite reads no index for ``IS NOT NULL`` here)
Index("ix_nodes_online_cluster_id_id", Node.online, Node.cluster_id, Node.id)
Index("ix_nodes_online_playing_item", Node.online, playing_item(Node.last_telemetry))


class ProvisioningToken(Base):
    """A one-time token that fetches a node's provisioning answer (GET
    /api/v1/nodes/{id}/provisioning, as hardware/install-pi.sh does): only its sha256 is
    stored, and a node has at most one (a new token replaces the old)."""
    __tablename__ = "provisioning_tokens"
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))  # admin, approver, staff, technician, operator
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))  # None: every area
    language: Mapped[str] = mapped_column(String(5), default=LANGUAGES[0])
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="login")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class WebSession(Base):
    """A logged-in browser. The cookie holds a random id, only its hash is stored here; deleting
    the row (logout, password change) ends the session even for a copied cookie."""
    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class Media(Base):
    """An immutable audio file, stored and served by its sha256."""
    __tablename__ = "media"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    ext: Mapped[str] = mapped_column(String(8))
    bytes: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Bulletin(Base):
    __tablename__ = "bulletins"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(40))
    spoken_text: Mapped[str | None] = mapped_column(Text)   # the normalised text spoken
    spoken_text_edited: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(10), default="text")  # text or upload
    voice: Mapped[str | None] = mapped_column(String(40))
    engine_requested: Mapped[str | None] = mapped_column(String(20))
    engine: Mapped[str | None] = mapped_column(String(20))  # which engine spoke
    engine_note: Mapped[str | None] = mapped_column(Text)   # why a fallback spoke
    lufs: Mapped[float | None] = mapped_column(Float)
    true_peak: Mapped[float | None] = mapped_column(Float)
    media_sha256: Mapped[str | None] = mapped_column(ForeignKey("media.sha256"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    # a server.bulletins.BulletinStatus, set there alone
    status: Mapped[str] = mapped_column(String(20), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)  # +1 on every change of content
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    review_comment: Mapped[str | None] = mapped_column(Text)
    media: Mapped[Media | None] = relationship()
    history: Mapped[list[BulletinEvent]] = relationship(order_by="BulletinEvent.id")
    approvals: Mapped[list[BulletinApproval]] = relationship(order_by="BulletinApproval.id")


class BulletinEvent(Base):
    """Who did what to a bulletin, and when: its lifecycle, step by step."""
    __tablename__ = "bulletin_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))  # created, edited, submit, approve, ...
    status: Mapped[str] = mapped_column(String(20))  # the status after the step
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    comment: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int | None] = mapped_column(Integer)
    media_sha256: Mapped[str | None] = mapped_column(String(64))  # the audio at this step
    user: Mapped[User] = relationship()


class BulletinApproval(Base):
    """An approver's yes to one revision of a bulletin: exactly this audio and title may air.

    Rows are never changed but to revoke them (the bulletin archived); a broadcast names the
    approval it airs, so editing the bulletin afterwards cannot change what it plays."""
    __tablename__ = "bulletin_approvals"
    id: Mapped[int] = mapped_column(primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("bulletins.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    media_sha256: Mapped[str] = mapped_column(ForeignKey("media.sha256"))
    title: Mapped[str] = mapped_column(String(300))
    approved_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    approved_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(100))


class Programme(Base):
    """A programme (chương trình): approved bulletins played back to back as one slot, rendered
    into one media file. Every edit makes a new ProgrammeRevision with its own media."""
    __tablename__ = "programmes"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revisions: Mapped[list[ProgrammeRevision]] = relationship(
        order_by="ProgrammeRevision.revision")

    @property
    def current(self) -> ProgrammeRevision:
        """The newest revision (a programme is made with its first)."""
        return self.revisions[-1]


class ProgrammeRevision(Base):
    """One revision of a programme: its items (each bulletin's approval, in order) and the media
    they were rendered into. Never changed; a broadcast names the revision it airs."""
    __tablename__ = "programme_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    # [{"bulletin_id": ..., "approval_id": ..., "sha256": ...}, ...] in playing order
    items: Mapped[list[Any]] = mapped_column(JSON)
    media_sha256: Mapped[str] = mapped_column(ForeignKey("media.sha256"))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    media: Mapped[Media] = relationship()


class Broadcast(Base):
    """An approved bulletin, or a programme, sent to areas and/or nodes, now or at a time."""
    __tablename__ = "broadcasts"
    id: Mapped[int] = mapped_column(primary_key=True)
    # exactly one of bulletin_id and programme_id
    bulletin_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"), index=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"), index=True)
    # what airs: the approved revision (or the programme's revision), fixed when the broadcast
    # is made; a series of a programme follows the programme's edits for its future slots
    approval_id: Mapped[int | None] = mapped_column(ForeignKey("bulletin_approvals.id"))
    programme_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("programme_revisions.id"))
    media_sha256: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer)
    start_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: now; a series' anchor
    # a series: an RRULE or a lunar rule (schedules.slots), anchored at start_at, its hours in
    # the zone of its targets (zone_area); None: a one-off. exdates: the skipped occurrences,
    # epoch ms.
    recurrence: Mapped[str | None] = mapped_column(String(500))
    exdates: Mapped[list[Any] | None] = mapped_column(JSON)
    # a series' zone, fixed when it is created or edited (server.schedule.zone): an area's zone
    # changed later moves no slot of it, so its slot ids and its past stay; None: a one-off, or
    # a series from before revision 0007 (its targets' zone as it is now)
    tz: Mapped[str | None] = mapped_column(String(64))
    # a series' lunar holidays skipped: {"holidays": [names of schedules.lunar.LunarHoliday],
    # "tet_days": {"before": n, "after": m} or null (the default span)}; None: none skipped
    skip_holidays: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)  # when to dispatch
    target_areas: Mapped[list[Any]] = mapped_column(JSON, default=list)
    target_nodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    volume: Mapped[int | None] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    # a server.broadcasts.BroadcastStatus, set there alone (PostgreSQL checks the length:
    # awaiting_confirmation is 21)
    status: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(String(100))  # why held or skipped
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    confirmed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # an edited series is split at the edit: the old one ends (its occurrences from ends_at on
    # are gone), the new one names it in previous_id and plans from begins_at on
    ends_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    begins_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    previous_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    bulletin: Mapped[Bulletin | None] = relationship()
    approval: Mapped[BulletinApproval | None] = relationship()
    programme: Mapped[Programme | None] = relationship()
    programme_revision: Mapped[ProgrammeRevision | None] = relationship()
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="broadcast",
                                                         order_by="Delivery.node_id")


class OccurrenceOverride(Base):
    """One occurrence of a series changed without breaking the series: cancelled, moved to
    another start, or airing another approved bulletin. Keyed by the occurrence's original start
    (so its slot keeps its id); a later change to the same occurrence replaces the row."""
    __tablename__ = "occurrence_overrides"
    __table_args__ = (UniqueConstraint("broadcast_id", "original_start"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    original_start: Mapped[dt.datetime] = mapped_column(DateTime)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    start_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: not moved
    # another bulletin for this occurrence: its approval (and media) fixed when it was made
    bulletin_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"))
    approval_id: Mapped[int | None] = mapped_column(ForeignKey("bulletin_approvals.id"))
    media_sha256: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Delivery(Base):
    """One node's part of a broadcast: what the server sent and what the node reported."""
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("broadcast_id", "node_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id"))  # unique's prefix
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    command_id: Mapped[str | None] = mapped_column(ForeignKey("commands.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # assigned by server.deliveries alone
    reason: Mapped[str | None] = mapped_column(String(100))
    played_result: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    broadcast: Mapped[Broadcast] = relationship(back_populates="deliveries")


class SlotDelivery(Base):
    """One node's part of one occurrence (slot) of a series, as its desired states carried it:
    the version that first carried it with its media, and how far the node got with it."""
    __tablename__ = "slot_deliveries"
    __table_args__ = (UniqueConstraint("slot_id", "node_id"),)  # also: a slot's, by slot id
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    slot_id: Mapped[str] = mapped_column(String(128))
    start_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)  # the desired version that first carried it
    status: Mapped[str] = mapped_column(String(20))  # assigned by server.deliveries alone
    reason: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Command(Base):
    """The outbox: every signed envelope is written here first, then published and marked."""
    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the envelope id
    type: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(String(80))                 # node:x or group:y
    topic: Mapped[str] = mapped_column(String(255))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload: Mapped[str | None] = mapped_column(Text)              # the signed envelope
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    retain: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # the outbox sends higher first
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    ttl_ms: Mapped[int] = mapped_column(BigInteger)
    exp_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # given up (indexed below)
    last_error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(20))      # for node commands: last ack
    reason: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# Commands are kept (every desired state of every node, the signed evidence of what was sent),
# and the dispatcher looks twice a second for the few not yet out: neither published nor given
# up. With a plain index on failed_at, whose NULL is nearly every row, SQLite (no statistics)
# chose it for that look and read every command ever sent, a cost growing with the province's
# history; indexed only where it is set (what failed lately), the look reads the published_at
# index's few NULLs. A broadcast's deliveries still at sent are what the dispatcher may send
# again: a province's broadcast has 10,000 deliveries of one command (revision 0022).
_FAILED = Command.failed_at.is_not(None)
Index("ix_commands_failed", Command.failed_at, sqlite_where=_FAILED, postgresql_where=_FAILED)
_UNACKED = Delivery.status == "sent"  # server.deliveries.DeliveryStatus.SENT
Index("ix_deliveries_sent", Delivery.command_id, sqlite_where=_UNACKED,
      postgresql_where=_UNACKED)
# Commands no node has acked and that are not retained (node commands and a broadcast's
# commands; not the desired states), by expiry: what the dispatcher may send again is among
# the unexpired few (server.outbox.resend_unreceived, revision 0024).
_NOT_ACKED = and_(Command.status.is_(None), Command.retain.is_(False))
Index("ix_commands_unacked", Command.exp_ms, sqlite_where=_NOT_ACKED,
      postgresql_where=_NOT_ACKED)


class AgentRelease(Base):
    """An agent release an admin uploaded: the ``loaphuong-agent`` wheel, stored by its sha256
    in the media store and served at /agent-releases/{sha256}.whl (server/releases.py)."""
    __tablename__ = "agent_releases"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    notes: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Rollout(Base):
    """A release offered to nodes in stages: ``stages`` are the sizes of the first stages (the
    last stage is every node left); the next starts when an admin advances it, or by itself when
    ``auto_advance`` and every node of the stage is healthy on the new version."""
    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("agent_releases.id"), index=True)
    target_areas: Mapped[list[Any]] = mapped_column(JSON, default=list)
    target_nodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    stages: Mapped[list[Any]] = mapped_column(JSON, default=list)
    stage: Mapped[int] = mapped_column(Integer, default=0)  # the newest stage started (0-based)
    auto_advance: Mapped[bool] = mapped_column(Boolean, default=True)
    # a server.releases.RolloutStatus, set there alone
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    release: Mapped[AgentRelease] = relationship()
    nodes: Mapped[list[RolloutNode]] = relationship(order_by="RolloutNode.id")


class RolloutNode(Base):
    """One node of a rollout: its stage and the ``update`` command sent to it (its acks are
    the node's progress)."""
    __tablename__ = "rollout_nodes"
    __table_args__ = (UniqueConstraint("rollout_id", "node_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    stage: Mapped[int] = mapped_column(Integer)
    command_id: Mapped[str | None] = mapped_column(ForeignKey("commands.id"))
    command: Mapped[Command | None] = relationship()


class Event(Base):
    """Every event a node sent, stored once per (node, event id)."""
    __tablename__ = "events"
    # (type, received_at): the bridge's look at a batch's nodes' recent media_ready, which by
    # type alone read every media_ready ever stored (events are kept for good)
    __table_args__ = (UniqueConstraint("node_id", "event_id"),
                      Index("ix_events_type_received", "type", "received_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    # no index of their own (revision 0023): node_id is the unique's prefix, type the
    # (type, received_at) index's, and the bridge's batch peek looks up (node, event) pairs
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(30))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Telemetry(Base):
    """A node's telemetry at full resolution, kept ``telemetry_raw_days`` (server/retention.py)."""
    __tablename__ = "telemetry"
    __table_args__ = (Index("ix_telemetry_node_ts", "node_id", "ts_ms"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))  # ix_telemetry_node_ts's prefix
    ts_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class TelemetryHourly(Base):
    """One node's telemetry over one completed hour (its ``ts`` in [hour_ms, hour_ms + 1 h)):
    how many reports, and min/avg/max of each number server/retention.py names (None: no
    report of the hour carried it). Written by the dispatcher, kept ``telemetry_hourly_days``."""
    __tablename__ = "telemetry_hourly"
    __table_args__ = (UniqueConstraint("node_id", "hour_ms"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    hour_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(Integer)
    cpu_temp_c_min: Mapped[float | None] = mapped_column(Float)
    cpu_temp_c_avg: Mapped[float | None] = mapped_column(Float)
    cpu_temp_c_max: Mapped[float | None] = mapped_column(Float)
    volume_min: Mapped[float | None] = mapped_column(Float)
    volume_avg: Mapped[float | None] = mapped_column(Float)
    volume_max: Mapped[float | None] = mapped_column(Float)
    signal_dbm_min: Mapped[float | None] = mapped_column(Float)
    signal_dbm_avg: Mapped[float | None] = mapped_column(Float)
    signal_dbm_max: Mapped[float | None] = mapped_column(Float)
    disk_free_mb_min: Mapped[float | None] = mapped_column(Float)
    disk_free_mb_avg: Mapped[float | None] = mapped_column(Float)
    disk_free_mb_max: Mapped[float | None] = mapped_column(Float)
    clock_offset_ms_min: Mapped[float | None] = mapped_column(Float)
    clock_offset_ms_avg: Mapped[float | None] = mapped_column(Float)
    clock_offset_ms_max: Mapped[float | None] = mapped_column(Float)
    mem_used_pct_min: Mapped[float | None] = mapped_column(Float)
    mem_used_pct_avg: Mapped[float | None] = mapped_column(Float)
    mem_used_pct_max: Mapped[float | None] = mapped_column(Float)
    load1_min: Mapped[float | None] = mapped_column(Float)
    load1_avg: Mapped[float | None] = mapped_column(Float)
    load1_max: Mapped[float | None] = mapped_column(Float)
    # the share of the hour's reports that said amp_on true (of those that said either)
    amp_on_share: Mapped[float | None] = mapped_column(Float)


class PlayLog(Base):
    """Proof of play: one row per `played` event (the as-run log)."""
    __tablename__ = "playlogs"
    __table_args__ = (Index("ix_playlogs_slot_id_cmd_id", "slot_id", "cmd_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"), index=True)
    bulletin_id: Mapped[int | None] = mapped_column(ForeignKey("bulletins.id"))
    item_id: Mapped[str] = mapped_column(String(128))
    # indexed, and (slot_id, cmd_id): the airplay report finds the plays of what it planned by
    # these (revision 0015)
    cmd_id: Mapped[str | None] = mapped_column(String(64), index=True)
    slot_id: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str | None] = mapped_column(String(64))
    scheduled_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_at_ms: Mapped[int | None] = mapped_column(BigInteger, index=True)
    ended_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(100))


class Alert(Base):
    """Something wrong with a node that the server found (server/alerts.py): open ->
    acknowledged -> resolved, by hand or automatically when its condition clears. One alert per
    (node, kind) is active at a time; it repeats (``revision`` +1, notified again) only when its
    severity or detail class changes."""
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    severity: Mapped[str] = mapped_column(String(10))      # warning, critical
    state: Mapped[str] = mapped_column(String(15), index=True)  # open, acknowledged, resolved
    detail_class: Mapped[str] = mapped_column(String(100))  # a change of it is a repeat
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)  # the catalogue's parameters
    # what the alert has counted (alarm event ids, missed slots, failed downloads), newest last
    episodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime)  # when the condition began
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime)   # the last pass that found it
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    acknowledged_comment: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: the server
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolved_comment: Mapped[str | None] = mapped_column(Text)
    # resolved by hand while the condition held: no new alert until a pass sees it gone
    cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    revision: Mapped[int] = mapped_column(Integer, default=1)        # +1 on what is notified
    notified_revision: Mapped[int] = mapped_column(Integer, default=0)


class ServerKey(Base):
    """A public key nodes trust; the private half lives only with the dispatcher.

    Lifecycle (server/keys.py): next (handed to nodes, not signing) -> active (the one key the
    dispatcher signs with) -> retired (still trusted, not signing) -> revoked (nodes told to drop
    it). ``active`` means trusted: every state but revoked."""
    __tablename__ = "server_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(10), index=True)  # a server.keys.KeyState
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class WorkerStatus(Base):
    """The dispatcher's heartbeat: /healthz reads the broker connection from it."""
    __tablename__ = "worker_status"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime)
    mqtt_connected: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[Any | None] = mapped_column(JSON)


class Lease(Base):
    """Who may act (server/lease.py): one row per lease name, held by ``holder``
    (host:pid:uuid) until ``expires_at`` unless renewed."""
    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    renewed_at: Mapped[dt.datetime] = mapped_column(DateTime)


class LimitHit(Base):
    """One counted attempt of a rate limit (server/ratelimit.py: failed logins, wrong
    provisioning tokens), kept until ``expires_at``: every web process counts the same rows."""
    __tablename__ = "rate_limit_hits"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    at: Mapped[float] = mapped_column(Float)  # seconds since the epoch
    expires_at: Mapped[float] = mapped_column(Float, index=True)

    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key", "at"),)


class AppSecret(Base):
    """A secret every web process must share (``web_session_key``: what signs the session
    cookie when the config names none), made once by whichever process starts first."""
    __tablename__ = "app_secrets"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class AuditEntry(Base):
    """One entry of the append-only, hash-chained audit log (server/audit.py)."""
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)  # no FK: the log outlives users
    actor: Mapped[str] = mapped_column(String(80), index=True)  # username, "system", "dispatcher"
    action: Mapped[str] = mapped_column(String(60), index=True)
    target_type: Mapped[str | None] = mapped_column(String(40), index=True)  # the page's filter
    target_id: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The audit chain's head: one row with the last entry's id and hash, updated with it."""
    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


@event.listens_for(AuditHead.__table__, "after_create")
def _audit_head_row(table: Table, connection: Connection, **_kw: Any) -> None:
    connection.execute(table.insert().values(id=1, last_id=0, last_hash="0" * 64))


SQLITE_CACHE_KIB = 16 * 1024        # a connection's page cache
SQLITE_CHECKPOINT_PAGES = 10_000    # WAL pages (4 KiB) before it is copied into the database


def make_engine(url: str, busy_timeout_s: float = 30.0, pool_size: int | None = None) -> Engine:
    """An engine; SQLite gets WAL and a busy timeout so web and dispatcher share the file.
    ``pool_size``: at most this many connections (none beyond it); the default pool's when
    None."""
    pool = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s,
                                                  "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            # a province's bursts (10,000 acks, then their events) write into tables of
            # millions of rows: a page cache of 16 MiB a connection instead of 2, and the WAL
            # copied back every 40 MB instead of every 4 (a page written again meanwhile is
            # copied once; each copy ends in an fsync): 500 events a transaction 61 -> 15 ms
            # with revision 0023 (docs/benchmarks.md, bench/bridge_ingest.py)
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            cur.close()
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, **pool)


def make_sessionmaker(engine: Engine, actor: str = "system") -> sessionmaker[Session]:
    """Sessions whose changes to what people edit are written to the audit log; ``actor``
    names who acts outside a web request (e.g. "dispatcher")."""
    from . import audit
    maker = sessionmaker(engine, expire_on_commit=False, info={"audit_actor": actor})
    audit.install(maker)
    return maker


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed: run through a Session its result is a
    cursor's, though ``Session.execute`` is typed to answer a plain Result."""
    return cast("CursorResult[Any]", result).rowcount


def init_db(engine: Engine) -> None:
    """Bring the schema to the newest migration: create an empty database, upgrade an older one
    (server/migrations; safe when the web server and the dispatcher start at once)."""
    from .migrations import upgrade_to_head
    upgrade_to_head(engine)


def area_subtree_ids(session: Session, root_ids: list[int]) -> set[int]:
    """The ids of the given areas and every area below them."""
    rows = session.execute(select(Area.id, Area.parent_id)).all()
    children: dict[int | None, list[int]] = {}
    for aid, pid in rows:
        children.setdefault(pid, []).append(aid)
    seen: set[int] = set()
    stack = list(root_ids)
    while stack:
        aid = stack.pop()
        if aid in seen:
            continue
        seen.add(aid)
        stack.extend(children.get(aid, []))
    return seen


def area_ancestors(session: Session, area_id: int) -> list[Area]:
    """The area and its ancestors, nearest first."""
    chain = []
    area = session.get(Area, area_id)
    while area is not None and area not in chain:
        chain.append(area)
        area = session.get(Area, area.parent_id) if area.parent_id else None
    return chain


def ancestor_ids(session: Session, area_ids: Iterable[int]) -> dict[int, list[int]]:
    """For each of ``area_ids``: it and the ids of the areas above it, nearest first; for many
    areas at once, a query per level of the tree (area_ancestors loads each area of each chain
    as an object, and a session keeps those only while they are referenced: a batch of a
    province's nodes asked for the same ward and province again for every cluster)."""
    wanted = set(area_ids)
    parents: dict[int, int | None] = {}
    todo = set(wanted)
    while todo:
        rows = session.execute(select(Area.id, Area.parent_id)
                               .where(Area.id.in_(sorted(todo)))).all()
        for area_id, parent_id in rows:
            parents[area_id] = parent_id
        todo = {p for _, p in rows if p is not None and p not in parents}
    chains = {}
    for area_id in wanted:
        chain: list[int] = []
        at: int | None = area_id
        while at is not None and at in parents and at not in chain:
            chain.append(at)
            at = parents[at]
        chains[area_id] = chain
    return chains


def nearest_setting(session: Session, area_id: int, name: str) -> Any:
    """An area's own setting ``name`` (a column of Area where None means "as the area above"),
    else the nearest area's above it that sets one; None when no area up the tree does."""
    for area in area_ancestors(session, area_id):
        value = getattr(area, name)
        if value is not None:
            return value
    return None


def area_zone(session: Session, area_id: int, default: str) -> str:
    """The IANA time zone an area lives in: its own, else the nearest one set above it, else
    ``default`` (the configured zone)."""
    return nearest_setting(session, area_id, "tz") or default


def zone_area(session: Session, target_areas: list[int] | None,
              target_nodes: list[str] | None) -> int | None:
    """The area whose zone a broadcast lives in: its first target area (the lowest id), else
    the cluster of its first target node (the lowest id); None when it names neither."""
    for area_id in sorted(target_areas or ()):
        if session.get(Area, area_id) is not None:
            return area_id
    for node_id in sorted(target_nodes or ()):
        node = session.get(Node, node_id)
        if node is not None:
            return node.cluster_id
    return None


def targets_zone(session: Session, target_areas: list[int] | None,
                 target_nodes: list[str] | None, default: str) -> str:
    """The IANA time zone a broadcast to these targets is expanded in (zone_area's zone)."""
    area_id = zone_area(session, target_areas, target_nodes)
    return default if area_id is None else area_zone(session, area_id, default)


def node_groups(session: Session, node: Node) -> list[str]:
    """The MQTT groups of a node: its cluster's and every ancestor area's, nearest first."""
    return [a.group for a in area_ancestors(session, node.cluster_id)]
