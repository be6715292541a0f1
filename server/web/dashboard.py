"""The home page: what plays now and where, the next slots of today, the fleet in one line, the
open alerts and the nodes (offline first, at most MAX_NODES), all within the user's areas. Its
live part is a small partial that the page polls; it answers 304 Not Modified (ETag) while
nothing it shows has changed, so the live update costs a few hundred bytes on a slow link."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import make_response, render_template, request
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import load_only

from device_agent.protocol import PRIORITY_NAMES, EventType, priority_name

from .. import auth as access
from .. import schedule
from ..context import settings
from .. import alerts as alert_service
from ..broadcasts import item_broadcast_id
from ..models import Alert, Area, Broadcast, Event, Node, playing_item, utcnow
from ..request_globals import g
from . import bp, nodes_in_scope, page
from .alerts import alert_rows
from .emergency import awaiting_confirmation

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, ColumnExpressionArgument, Row, ScalarSelect
    from werkzeug.wrappers import Response

    from schedules.slots import Slot

    from ..models import User

ALARM_WINDOW = dt.timedelta(hours=24)  # a node alarm (or a message refused) counts this long
MAX_SLOTS = 8
MAX_ALERTS = 10  # the dashboard's; every alert is the alerts page's
MAX_NODES = 50  # the dashboard's table; every node is the fleet page's
# what the table shows of a node (_nodes.html): not its last state, keys or desired state
TABLE_COLUMNS = (Node.id, Node.name, Node.cluster_id, Node.online, Node.last_seen,
                 Node.last_telemetry)
MAX_PLAYING_NAMES = 20  # the names shown under one item playing now; the rest are counted
# the page's live part: a 304 is about 500 bytes of headers (most of them the security
# headers), so six a minute cost about 3 KB down while nothing changes
POLL_S = 10

def _alarm_since() -> dt.datetime:
    return utcnow() - ALARM_WINDOW


def alarm_condition() -> ColumnElement[bool]:
    """A node in alarm: an alarm event, or a message the server refused, within ALARM_WINDOW."""
    since = _alarm_since()
    alarmed = select(Event.node_id).where(Event.type == EventType.ALARM, Event.received_at >= since)
    return or_(Node.id.in_(alarmed), Node.last_rejected_at >= since)


def fleet_and_nodes(allowed: set[int] | None) -> tuple[dict[str, int], list[Node]]:
    """Online, offline and in-alarm node counts in the user's areas, counted by the database,
    and the first MAX_NODES of those nodes, offline first: one statement, so the line and the
    table agree. The counts are subqueries the database answers once from indexes (every and
    the online nodes from ix_nodes_online_cluster_id_id alone, the alarms from the alarm
    events and ix_nodes_last_rejected_at) and the rows the first of that index: window
    aggregates over every row cost 50-75 ms at 10,000 nodes (docs/benchmarks.md)."""
    def count(*where: ColumnExpressionArgument[bool]) -> ScalarSelect[int]:
        return nodes_in_scope(select(func.count()).select_from(Node).where(*where), allowed) \
            .correlate(None).scalar_subquery()
    rows = g.db.execute(nodes_in_scope(select(
        Node, count(), count(Node.online), count(alarm_condition()))
        .options(load_only(*TABLE_COLUMNS))
        .order_by(Node.online, Node.cluster_id, Node.id).limit(MAX_NODES), allowed)).all()
    total, online, alarm = rows[0][1:] if rows else (0, 0, 0)
    return ({"total": total, "online": online, "offline": total - online, "alarm": alarm},
            [row[0] for row in rows])


@dataclass
class Playing:
    """One item playing now, on how many nodes, and the first MAX_PLAYING_NAMES of them (their
    id and name, in id order)."""
    title: str
    priority: str
    broadcast_id: int | None
    count: int = 0
    nodes: list[Row[Any]] = field(default_factory=list)


def playing_now(allowed: set[int] | None) -> list[Playing]:
    """What the online nodes last said they play (their telemetry's ``playing``), by item. The
    database finds the online nodes that play through the index on what they play (not
    every node's report; ``> ''`` is a range on it, which ``IS NOT NULL`` is not to SQLite),
    counts them by item and answers the first MAX_PLAYING_NAMES of each: a daily programme
    plays on the whole fleet at once, and 10,000 names are not read."""
    item_col = playing_item(Node.last_telemetry)
    priority_col = Node.last_telemetry[("playing", "priority")].as_float()
    playing = nodes_in_scope(select(
        Node.id, Node.name, item_col.label("item"), priority_col.label("priority"),
        func.row_number().over(partition_by=item_col, order_by=Node.id).label("rank"),
        func.count().over(partition_by=item_col).label("count"))
        .where(Node.online, item_col > ""), allowed).subquery()
    rows = g.db.execute(select(playing).where(playing.c.rank <= MAX_PLAYING_NAMES)
                        .order_by(playing.c.id)).all()
    out: dict[str, Playing] = {}
    for row in rows:
        item = str(row.item)
        if item not in out:  # its first node by id: the priority that node reports
            bc_id = item_broadcast_id(item)
            bc = g.db.get(Broadcast, bc_id) if bc_id is not None else None
            out[item] = Playing(schedule.title(bc) if bc else item,
                                priority_name(int(row.priority or 0)),
                                bc.id if bc else None,
                                row._mapping["count"])  # row.count: the tuple's method
        out[item].nodes.append(row)
    return sorted(out.values(), key=lambda p: -PRIORITY_NAMES[p.priority])


def _local_day_end(now: dt.datetime, tz: str) -> dt.datetime:
    local = now.astimezone(ZoneInfo(tz))
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(),
                                   tzinfo=local.tzinfo)
    return midnight.astimezone(dt.UTC)


def next_slots_today(user: User) -> list[dict[str, str]]:
    """The slots still to come today (the configured zone) in the user's area and below; every
    area's for a user of every area."""
    tz = settings().timezone
    now = utcnow().replace(tzinfo=dt.UTC)
    end = _local_day_end(now, tz)
    roots = [user.area_id] if user.area_id is not None else \
        list(g.db.scalars(select(Area.id).where(Area.parent_id.is_(None))))
    seen: dict[str, tuple[Slot, Broadcast]] = {}
    for area_id in roots:
        for slot, bc in schedule.area_slots(g.db, tz, area_id, now, end):
            seen.setdefault(slot.slot_id, (slot, bc))
    shown = sorted(seen.values(), key=lambda pair: pair[0])[:MAX_SLOTS]
    names = _area_names({a for _slot, bc in shown for a in bc.target_areas or ()})
    zone = ZoneInfo(tz)
    return [{"start": slot.start_at.astimezone(zone).strftime("%H:%M"),
             "end": slot.end_at.astimezone(zone).strftime("%H:%M"),
             "title": schedule.title(bc), "priority": priority_name(slot.priority),
             "where": ", ".join([names.get(a, str(a)) for a in bc.target_areas or ()]
                                + list(bc.target_nodes or ()))}
            for slot, bc in shown]


def _area_names(ids: set[int]) -> dict[int, str]:
    """The names of these areas (those the page shows, not every area of a province)."""
    if not ids:
        return {}
    return {area_id: name for area_id, name in
            g.db.execute(select(Area.id, Area.name).where(Area.id.in_(ids)))}


def open_alerts(allowed: set[int] | None) -> tuple[int, list[dict[str, Any]]]:
    """How many alerts in the user's areas are not resolved yet (open or acknowledged), and the
    newest MAX_ALERTS of them, critical first, as the alerts page shows them."""
    q = select(Alert, func.count().over()).where(Alert.state.in_(alert_service.ACTIVE))
    if allowed is not None:
        q = q.where(Alert.area_id.in_(allowed))
    rows = g.db.execute(q.order_by(case((Alert.severity == alert_service.Severity.CRITICAL, 0),
                                        else_=1), Alert.id.desc()).limit(MAX_ALERTS)).all()
    return (rows[0][1] if rows else 0), alert_rows([row[0] for row in rows])


def dashboard_data() -> dict[str, Any]:
    allowed = access.user_area_ids(g.db, access.caller())
    counts, nodes = fleet_and_nodes(allowed)
    clusters = {a.id: a for a in g.db.scalars(
        select(Area).where(Area.id.in_({n.cluster_id for n in nodes})))} if nodes else {}
    return {"nodes": nodes, "clusters": clusters, "fleet": counts,
            "more_nodes": counts["total"] - len(nodes),
            "playing": playing_now(allowed), "slots": next_slots_today(access.caller()),
            "open_alerts": open_alerts(allowed), "awaiting": awaiting_confirmation(),
            "poll_s": POLL_S}


def conditional(html: str) -> Response:
    """``html`` with its ETag; 304 Not Modified when the browser already holds it. The browser
    keeps it but asks again each time (no-cache), per user (Vary: Cookie)."""
    resp = make_response(html)
    resp.headers["Cache-Control"] = "no-cache, private"
    resp.vary.add("Cookie")
    resp.add_etag()
    return resp.make_conditional(request)


@bp.get("/")
@page()
def dashboard() -> str:
    return render_template("dashboard.html", **dashboard_data())


@bp.get("/partials/dashboard")
@page()
def dashboard_partial() -> Response:
    return conditional(render_template("_dashboard.html", **dashboard_data()))


@bp.get("/partials/nodes")
@page()
def nodes_partial() -> Response:
    data = dashboard_data()
    return conditional(render_template("_fleet.html", **data)
                       + render_template("_nodes.html", **data))
