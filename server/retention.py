"""Telemetry retention: hourly aggregates of what nodes report, and pruning.

Raw telemetry is kept ``telemetry_raw_days`` (7) at full resolution; each completed hour of it
is folded, per node, into one ``telemetry_hourly`` row (the number of reports, min/avg/max of
the numbers in FIELDS, the share of reports with the amplifier on), kept
``telemetry_hourly_days`` (365). The dispatcher runs ``rollup`` then ``prune`` every
``telemetry_retention_s``. Play logs and events are evidence: nothing here touches them, and
a setting that would prune them is refused at start (server/config.py).

Portable SQL only (SQLAlchemy core, SQLite and PostgreSQL): an hour is aggregated with one
INSERT ... SELECT ... GROUP BY in its own transaction after deleting that hour's rows, so
running an hour again gives the same rows; deletes go by batches of ids, one transaction each,
so a large backlog never holds the database's write lock for long.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from typing import cast as typed

from sqlalchemy import (BigInteger, ColumnElement, Float, Select, Table, case, cast, delete, func,
                        insert, literal, select, true)
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .models import Telemetry, TelemetryHourly, rows_changed

log = logging.getLogger(__name__)

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
# the numbers aggregated: name -> their path in the telemetry payload (docs/protocol.md §8)
FIELDS: dict[str, tuple[str, ...]] = {
    "cpu_temp_c": ("cpu_temp_c",), "volume": ("volume",), "signal_dbm": ("net", "signal_dbm"),
    "disk_free_mb": ("disk_free_mb",), "clock_offset_ms": ("clock_offset_ms",),
    "mem_used_pct": ("mem_used_pct",), "load1": ("load1",)}
class Resolution(StrEnum):
    """How a node's telemetry is read (``?resolution=``)."""
    RAW = "raw"        # every report
    HOUR = "hour"      # the hourly aggregates
    AUTO = "auto"      # raw within the raw retention, hourly beyond it (asked only)


RESOLUTIONS = tuple(r.value for r in Resolution)
# the tables themselves: deletes and inserts in bulk go through core (no ORM RETURNING of ids)
RAW = typed(Table, Telemetry.__table__)
HOURLY = typed(Table, TelemetryHourly.__table__)


def hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS


def payload_number(path: tuple[str, ...]) -> ColumnElement[float]:
    """The number at ``path`` in a raw report's payload, as SQL (NULL where absent)."""
    value = Telemetry.payload[path[0]] if len(path) == 1 else Telemetry.payload[path]
    number: ColumnElement[float] = value.as_float()
    return number


def _hour_query(hour_ms: int) -> tuple[list[str], Select[*tuple[Any, ...]]]:
    """Every node's aggregates over the hour starting at ``hour_ms``, as the hourly table's
    columns. Each number is read out of the JSON once, in a subquery (its OFFSET 0 keeps
    PostgreSQL from folding it into the outer query, which would parse each row's JSON once
    per aggregate), and aggregated outside."""
    amp = Telemetry.payload["amp_on"].as_boolean()
    values = (select(Telemetry.node_id, *(payload_number(path).label(name)
                                         for name, path in FIELDS.items()),
                     case((amp == true(), 1.0), (amp.is_not(None), 0.0)).label("amp_on"))
              .where(Telemetry.ts_ms >= hour_ms, Telemetry.ts_ms < hour_ms + HOUR_MS)
              .offset(0).subquery())
    cols: dict[str, ColumnElement[Any]] = {"node_id": values.c.node_id,
                  "hour_ms": literal(hour_ms, BigInteger), "count": func.count()}
    for name in FIELDS:
        value = values.c[name]
        cols[f"{name}_min"] = cast(func.min(value), Float)
        cols[f"{name}_avg"] = cast(func.avg(value), Float)
        cols[f"{name}_max"] = cast(func.max(value), Float)
    cols["amp_on_share"] = cast(func.avg(values.c.amp_on), Float)
    return list(cols), select(*(c.label(n) for n, c in cols.items())).group_by(
        values.c.node_id)


def aggregate_hour(db: Session, hour_ms: int) -> int:
    """Write every node's row of the hour starting at ``hour_ms`` (replacing what was there);
    the caller commits. Returns how many nodes reported in it."""
    db.execute(delete(HOURLY).where(HOURLY.c.hour_ms == hour_ms))
    names, query = _hour_query(hour_ms)
    db.execute(insert(HOURLY).from_select(names, query))
    # counted, not the INSERT's rowcount: PostgreSQL's dialect may add a RETURNING to it
    return db.scalar(select(func.count()).select_from(HOURLY).where(
        HOURLY.c.hour_ms == hour_ms)) or 0


def frontier(db: Session) -> int | None:
    """The first hour not aggregated yet: after the newest hourly row, else the hour of the
    oldest raw row; None when there is no telemetry at all."""
    newest = db.scalar(select(func.max(TelemetryHourly.hour_ms)))
    if newest is not None:
        return int(newest) + HOUR_MS
    oldest = db.scalar(select(func.min(Telemetry.ts_ms)))
    return None if oldest is None else hour_of(int(oldest))


def rollup(sessions: sessionmaker[Session], now_ms: int, grace_ms: int) -> int:
    """Aggregate every completed hour (ended at least ``grace_ms`` before now) not aggregated
    yet, one transaction per hour, jumping over hours without telemetry. Returns the hours
    written."""
    done = 0
    limit = hour_of(now_ms - grace_ms)  # hours starting before this one are complete
    with sessions() as db:
        hour = frontier(db)
        while hour is not None and hour < limit:
            aggregate_hour(db, hour)
            db.commit()
            done += 1
            following = db.scalar(select(func.min(Telemetry.ts_ms)).where(
                Telemetry.ts_ms >= hour + HOUR_MS))
            hour = None if following is None else hour_of(int(following))
    return done


def _delete_batches(sessions: sessionmaker[Session], table: Table, older: ColumnElement[bool],
                    batch: int) -> int:
    """Delete the rows of ``table`` matching ``older``, at most ``batch`` per transaction."""
    total = 0
    while True:
        with sessions() as db:
            ids = select(table.c.id).where(older).limit(batch).scalar_subquery()
            gone = rows_changed(db.execute(delete(table).where(table.c.id.in_(ids))))
            db.commit()
        total += gone
        if gone < batch:
            return total


@dataclass
class Pruned:
    raw: int = 0
    hourly: int = 0


def prune(sessions: sessionmaker[Session], settings: Settings, now_ms: int) -> Pruned:
    """Delete raw telemetry older than ``telemetry_raw_days`` (never a row whose hour is not
    aggregated yet) and hourly rows older than ``telemetry_hourly_days``, in batches of
    ``telemetry_prune_batch``. Play logs and events are never touched."""
    batch = settings.telemetry_prune_batch
    raw_cut = now_ms - settings.telemetry_raw_days * DAY_MS
    with sessions() as db:
        first_open = frontier(db)
    out = Pruned()
    if first_open is not None:
        cut = min(raw_cut, first_open)
        out.raw = _delete_batches(sessions, RAW, RAW.c.ts_ms < cut, batch)
    hourly_cut = now_ms - settings.telemetry_hourly_days * DAY_MS
    out.hourly = _delete_batches(sessions, HOURLY, HOURLY.c.hour_ms < hourly_cut, batch)
    return out


def run(sessions: sessionmaker[Session], settings: Settings, clock: Callable[[], int]
        ) -> Pruned:
    """The dispatcher's pass: aggregate the completed hours, then prune."""
    now = clock()
    hours = rollup(sessions, now, settings.telemetry_rollup_grace_s * 1000)
    pruned = prune(sessions, settings, now)
    if hours or pruned.raw or pruned.hourly:
        log.info("telemetry: %d hours aggregated, %d raw and %d hourly rows pruned", hours,
                 pruned.raw, pruned.hourly)
    return pruned


# --- reading it back (GET /api/v1/nodes/{id}/telemetry) -----------------------------------------

def _raw_value(payload: dict[str, Any], path: tuple[str, ...]) -> float | int | None:
    value: object = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def raw_points(db: Session, node_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    rows = db.execute(select(Telemetry.ts_ms, Telemetry.payload).where(
        Telemetry.node_id == node_id, Telemetry.ts_ms >= start_ms, Telemetry.ts_ms < end_ms)
        .order_by(Telemetry.ts_ms, Telemetry.id)).all()
    points = []
    for ts, payload in rows:
        point: dict[str, Any] = {"ts": ts}
        for name, path in FIELDS.items():
            point[name] = _raw_value(payload, path)
        amp = payload.get("amp_on")
        point["amp_on"] = amp if isinstance(amp, bool) else None
        points.append(point)
    return points


def hourly_points(db: Session, node_id: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    rows = db.scalars(select(TelemetryHourly).where(
        TelemetryHourly.node_id == node_id, TelemetryHourly.hour_ms >= hour_of(start_ms),
        TelemetryHourly.hour_ms < end_ms).order_by(TelemetryHourly.hour_ms)).all()
    points = []
    for row in rows:
        point: dict[str, Any] = {"ts": row.hour_ms, "count": row.count}
        for name in FIELDS:
            point[name] = {stat: getattr(row, f"{name}_{stat}") for stat in ("min", "avg", "max")}
        point["amp_on_share"] = row.amp_on_share
        points.append(point)
    return points


def choose(resolution: str, start_ms: int, now_ms: int, raw_days: int) -> Resolution:
    """``auto``: raw while the period lies within the raw retention, hourly beyond it."""
    if resolution != Resolution.AUTO:
        return Resolution(resolution)
    return Resolution.RAW if start_ms >= now_ms - raw_days * DAY_MS else Resolution.HOUR
