"""The fleet pages: every node of the user's areas with filters and search (filtered and paged by
the database), a map of the nodes from their coordinates, and a node's own page (telemetry as
charts drawn on the server as SVG, its desired state, recent plays, alerts) with its remote
actions, whose result the page shows when the node's ack arrives (htmx polls the command)."""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import jsonify, make_response, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select

from device_agent.protocol import EMERGENCY, CommandType
from device_agent.schemas import BytesSince, HornTest, HornVerdict, NetType
from device_agent.telemetry import NET_FIELDS

from .. import auth as access
from .. import bodies as B
from .. import nodes as node_service
from .. import queries
from ..context import settings
from ..errors import ApiError, ErrorCode, bad_request, not_found
from ..nodes import NodeListStatus
from ..outbox import CommandStatus
from ..models import (Alert, Area, Command, Node, PlayLog, Telemetry, area_subtree_ids, from_ms,
                      utcnow)
from ..request_globals import g
from ..retention import FIELDS, payload_number
from ..websec import CSP
from . import bp, nodes_in_scope, page, user_areas
from .dashboard import alarm_condition, conditional

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

PAGE_SIZE = 50
HISTORY = dt.timedelta(hours=24)   # the node page's charts
CHART_POINTS = 120                 # at most this many points a chart (bucket averages)
DESIRED_WINDOW = dt.timedelta(hours=24)
RECENT = 20                        # plays and alerts on the node page
POLL_S = 2                         # a command's result, polled until final
FACTS_POLL_S = 10                  # the node's state on its page (a 304 while unchanged)
# an ack status after which nothing more comes (docs/protocol.md, events: ack)
FINAL = {CommandStatus.FINISHED, CommandStatus.FAILED, CommandStatus.REJECTED,
         CommandStatus.PREEMPTED, CommandStatus.STOPPED, CommandStatus.SKIPPED}
# the node page's actions, each with the command body it sends (its form's fields in, the API's
# body out): ``command_from_form`` looks them up here
CommandMaker = Callable[[Mapping[str, str]], dict[str, Any]]


def _horn_test(kind: HornTest) -> CommandMaker:
    return lambda _: {"type": CommandType.TEST, "body": {"kind": kind}}


ACTION_COMMANDS: dict[str, CommandMaker] = {
    "set_volume": lambda form: {"type": CommandType.SET_VOLUME, "body": {
        "volume": B.form_int("volume", form.get("volume") or "")}},
    "amp_on": lambda _: {"type": CommandType.AMP, "body": {"on": True}},
    "amp_off": lambda _: {"type": CommandType.AMP, "body": {"on": False}},
    **{kind: _horn_test(kind) for kind in HornTest},
    "stop": lambda _: {"type": CommandType.STOP, "body": {"max_priority": EMERGENCY}},
    "reboot": lambda _: {"type": CommandType.REBOOT, "body": {}},
}
ACTIONS = tuple(ACTION_COMMANDS)
# its row of buttons (a horn test's named after its kind); the volume has a form of its own and
# the reboot a button that asks first
BUTTONS = ("amp_on", "amp_off", *HornTest, "stop")


@dataclass(frozen=True)
class Chart:
    """One telemetry series as an SVG polyline: ``key`` (its catalogue label), the unit, the
    last value and the min/max shown on the axis."""
    key: str
    unit: str
    points: str
    low: float | None
    high: float | None
    last: float | None
    width: int = 300
    height: int = 80


CHART_W, CHART_H = Chart.width, Chart.height


# label key, unit, the number's name in server/retention.py FIELDS (its path in a report)
SERIES = (
    ("fleet.chart_volume", "%", "volume"),
    ("fleet.chart_temp", "°C", "cpu_temp_c"),
    ("fleet.chart_signal", "dBm", "signal_dbm"),
    ("fleet.chart_disk", "MB", "disk_free_mb"),
    ("fleet.chart_clock", "ms", "clock_offset_ms"),
)


def visible_node(node_id: str) -> Node:
    """The node if the user may see it (the API's rule: a 404 otherwise, also for a node of
    another area)."""
    node: Node | None = g.db.get(Node, node_id)
    allowed = access.user_area_ids(g.db, access.caller())
    if node is None or (allowed is not None and node.cluster_id not in allowed):
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
    return node


def filtered_nodes(allowed: set[int] | None) -> dict[str, Any]:
    """The node list's filters from the query string, the page of nodes they select and the
    count of all of them, each counted and cut by the database."""
    asked = queries.read(queries.NodePageQuery, request.args)
    area, status, alarm, text = asked.area, asked.status, asked.alarm, asked.q
    number = asked.page
    q = nodes_in_scope(select(Node), allowed)
    if area is not None:
        q = q.where(Node.cluster_id.in_(area_subtree_ids(g.db, [area])))
    if status is not None:
        q = q.where(node_service.status_condition(status))
    if alarm:
        q = q.where(alarm_condition())
    if text:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        q = q.where(or_(func.lower(Node.name).like(like, escape="\\"),
                        func.lower(Node.id).like(like, escape="\\")))
    total = g.db.scalar(select(func.count()).select_from(q.subquery())) or 0
    pages = max(1, math.ceil(total / PAGE_SIZE))
    number = min(number, pages)
    nodes = list(g.db.scalars(q.order_by(Node.online, Node.cluster_id, Node.id)
                              .offset((number - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    in_alarm = set(g.db.scalars(select(Node.id).where(
        Node.id.in_([n.id for n in nodes]), alarm_condition()))) if nodes else set()
    args = {"area": area, "status": status, "alarm": "1" if alarm else None, "q": text or None}
    return {"nodes": nodes, "total": total, "page": number, "pages": pages,
            "in_alarm": in_alarm, "filters": args,
            "page_args": {k: v for k, v in args.items() if v is not None}}


def _areas() -> list[Area]:
    """The filter's areas: the user's, in use, by name."""
    return user_areas(by_name=True)


def node_state(node: Node) -> NodeListStatus:
    """One word for a node's state, as the list's status filter names them."""
    if node.maintenance_until is not None and node.maintenance_until > utcnow():
        return NodeListStatus.MAINTENANCE
    if node.online:
        return NodeListStatus.ONLINE
    return NodeListStatus.NEVER_CONNECTED if node.last_seen is None else NodeListStatus.OFFLINE


@bp.get("/nodes")
@page()
def fleet() -> str:
    allowed = access.user_area_ids(g.db, access.caller())
    data = filtered_nodes(allowed)
    areas = _areas()
    return render_template("fleet.html", areas=areas, clusters={a.id: a for a in areas},
                           statuses=node_service.NODE_STATUSES, state_of=node_state, **data)


# --- the map ---------------------------------------------------------------------------------

@bp.get("/nodes/map")
@page()
def fleet_map() -> Response:
    tiles = settings().map_tile_url
    resp = make_response(render_template("fleet_map.html", tiles=tiles))
    origin = urlsplit(tiles)
    if origin.scheme in ("http", "https") and origin.netloc:  # the tile server's images only
        resp.headers["Content-Security-Policy"] = CSP.replace(
            "img-src 'self' data:", f"img-src 'self' data: {origin.scheme}://{origin.netloc}")
    return resp


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The convex hull of ``points`` (monotone chain), counter-clockwise; fewer than three
    distinct points are returned as they are."""
    pts = sorted(set(points))
    if len(pts) < 3:
        return pts

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]
              ) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    upper: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


@bp.get("/nodes/map.json")
@page()
def fleet_map_data() -> Response:
    """The map's data: each placed node (id, name, state, position, its page) and each area's
    outline, the convex hull of its placed nodes (a cluster's own, a ward's over the clusters
    below it)."""
    allowed = access.user_area_ids(g.db, access.caller())
    nodes = list(g.db.scalars(nodes_in_scope(select(Node).where(
        Node.lat.is_not(None), Node.lon.is_not(None), Node.revoked_at.is_(None)), allowed)))
    areas = {a.id: a for a in g.db.scalars(select(Area))}
    by_area: dict[int, list[tuple[float, float]]] = {}
    for n in nodes:
        if n.lat is None or n.lon is None:  # none is: the query leaves them out
            continue
        area_id: int | None = n.cluster_id
        while area_id is not None and area_id in areas:
            if allowed is None or area_id in allowed:
                by_area.setdefault(area_id, []).append((float(n.lat), float(n.lon)))
            area_id = areas[area_id].parent_id
    return jsonify({
        "nodes": [{"id": n.id, "name": n.name, "lat": n.lat, "lon": n.lon,
                   "state": node_state(n), "url": url_for("web.node_page", node_id=n.id)}
                  for n in nodes],
        "areas": [{"id": a, "name": areas[a].name, "kind": areas[a].kind,
                   "outline": [list(p) for p in _hull(pts)]}
                  for a, pts in sorted(by_area.items())]})


# --- a node's page -----------------------------------------------------------------------------

def charts(node: Node) -> list[Chart]:
    """The node's telemetry of the last HISTORY as one chart per series: the reports averaged
    into at most CHART_POINTS time buckets, so a day at 30 s is 120 points, not 2,880. The
    database averages them (the numbers read out of each report's JSON in a subquery, as
    server/retention.py does): reading the day's 2,880 reports into Python took most of the
    page's time (docs/benchmarks.md, Web pages at 1,000 nodes)."""
    end_ms = int(utcnow().replace(tzinfo=dt.UTC).timestamp() * 1000)
    start_ms = end_ms - int(HISTORY.total_seconds() * 1000)
    bucket_ms = max(1, (end_ms - start_ms) // CHART_POINTS)
    numbers = (select(((Telemetry.ts_ms - start_ms) // bucket_ms).label("bucket"),
                      *(payload_number(FIELDS[name]).label(name) for _k, _u, name in SERIES))
               .where(Telemetry.node_id == node.id, Telemetry.ts_ms >= start_ms)
               .offset(0).subquery())
    rows = g.db.execute(select(numbers.c.bucket, *(
        func.avg(numbers.c[name]).label(name) for _k, _u, name in SERIES))
        .group_by(numbers.c.bucket).order_by(numbers.c.bucket)).all()
    out = []
    for key, unit, name in SERIES:
        values = [(int(row.bucket), float(getattr(row, name))) for row in rows
                  if getattr(row, name) is not None]
        if not values:
            out.append(Chart(key, unit, "", None, None, None))
            continue
        low = min(v for _, v in values)
        high = max(v for _, v in values)
        span = high - low

        def y(v: float, low: float = low, span: float = span) -> float:
            # a flat series runs through the middle rather than along the bottom edge
            return CHART_H / 2 if not span else CHART_H - 4 - (v - low) / span * (CHART_H - 8)

        pts = " ".join(f"{b * CHART_W / CHART_POINTS:.1f},{y(v):.1f}" for b, v in values)
        out.append(Chart(key, unit, pts, low, high, values[-1][1]))
    return out


def desired_slots(node: Node) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The node's desired state (GET /nodes/{id}/desired) and its slots of the next day."""
    state = node_service.desired_state(g.db, node)
    now_ms = int(utcnow().replace(tzinfo=dt.UTC).timestamp() * 1000)
    until_ms = now_ms + int(DESIRED_WINDOW.total_seconds() * 1000)
    slots = []
    for slot in (state["body"] or {}).get("schedule") or []:
        start = slot.get("start_at") or 0
        duration = ((slot.get("item") or {}).get("media") or {}).get("duration_ms") or 0
        if start + duration >= now_ms and start <= until_ms:
            slots.append({"start": from_ms(start), "end": from_ms(start + duration),
                          "title": (slot.get("item") or {}).get("title") or slot["item"]["id"],
                          "priority": slot.get("priority"), "slot_id": slot.get("slot_id")})
    return state, sorted(slots, key=lambda s: s["start"])


def _node_data(node: Node) -> dict[str, Any]:
    state, slots = desired_slots(node)
    plays = list(g.db.scalars(select(PlayLog).where(PlayLog.node_id == node.id)
                              .order_by(PlayLog.id.desc()).limit(RECENT)))
    alerts = list(g.db.scalars(select(Alert).where(Alert.node_id == node.id)
                               .order_by(Alert.opened_at.desc()).limit(RECENT)))
    return {**_facts(node), "net": network(node), "facts_poll_s": FACTS_POLL_S,
            "charts": charts(node),
            "desired": state, "slots": slots, "plays": plays, "alerts": alerts,
            "from_ms": from_ms, "buttons": BUTTONS}


def network(node: Node) -> dict[str, Any]:
    """The link and modem of the node's last report, every field present (None: not read,
    or a word of the protocol's vocabularies the page has no text for), and ``reported``:
    whether it said anything about its network at all."""
    net = (node.last_telemetry or {}).get("net")
    net = net if isinstance(net, dict) else {}
    out = {"reported": bool(net), **{k: net.get(k) for k in NET_FIELDS}}
    for name, words in (("type", NetType), ("bytes_since", BytesSince)):
        if out[name] not in tuple(words):
            out[name] = None
    return out


def _facts(node: Node) -> dict[str, Any]:
    return {"node": node, "tel": node.last_telemetry or {}, "state": node_state(node),
            "cluster": g.db.get(Area, node.cluster_id)}


@bp.get("/partials/nodes/<node_id>/facts")
@page()
def node_facts_partial(node_id: str) -> Response:
    """The node's state, last report, volume and amplifier, polled by its page."""
    return conditional(render_template("_node_facts.html", **_facts(visible_node(node_id))))


@bp.get("/nodes/<node_id>")
@page()
def node_page(node_id: str) -> str:
    node = visible_node(node_id)
    extra: dict[str, Any] = {"command": None}
    cmd = g.db.get(Command, request.args.get("command") or "")
    if cmd is not None and cmd.node_id == node.id and cmd.type != CommandType.DESIRED:
        extra = {"command": cmd, **command_data(cmd)}  # after a form sent without htmx
    return render_template("node.html", **_node_data(node), **extra)


def command_from_form(form: Mapping[str, str]) -> B.CommandCreate:
    """The action button pressed (``action``) and its field as the API's command body."""
    make = ACTION_COMMANDS.get(form.get("action") or "")
    if make is None:
        raise bad_request("err.invalid_field", field="action", detail=" | ".join(ACTIONS))
    return B.parse(B.CommandCreate, make(form))


@bp.post("/nodes/<node_id>/commands")
@page("node.command")
def node_action(node_id: str) -> str | Response:
    node = visible_node(node_id)
    cmd = node_service.node_command(g.db, settings(), access.caller(), node.id,
                                    command_from_form(request.form))
    g.db.commit()
    if request.headers.get("HX-Request"):
        return render_template("_command.html", **command_data(cmd))
    return redirect(url_for("web.node_page", node_id=node.id, command=cmd.id))


def command_action(cmd: Command) -> str:
    """The action (ACTIONS) that sent ``cmd``, as its button names it: ``command_from_form``
    read back."""
    if cmd.type == CommandType.TEST:
        return HornTest(cmd.body["kind"])
    if cmd.type == CommandType.AMP:
        return "amp_on" if cmd.body.get("on") else "amp_off"
    return cmd.type


def command_data(cmd: Command) -> dict[str, Any]:
    """A command's progress for the page: ``final`` once its ack says it ended (a reboot's
    ``received`` too: the node goes down), it failed to send, or it expired unanswered."""
    now_ms = int(utcnow().replace(tzinfo=dt.UTC).timestamp() * 1000)
    expired = cmd.exp_ms is not None and now_ms > cmd.exp_ms and cmd.status not in FINAL
    final = (cmd.status in FINAL or cmd.failed_at is not None or expired
             or cmd.type == CommandType.REBOOT and cmd.status == CommandStatus.RECEIVED)
    return {"cmd": cmd, "action": command_action(cmd), "final": final, "expired": expired,
            "poll_s": POLL_S, "result": cmd.result or {}, "verdicts": tuple(HornVerdict)}


@bp.get("/partials/commands/<command_id>")
@page()
def command_partial(command_id: str) -> str:
    cmd = g.db.get(Command, command_id)
    if cmd is None or cmd.type == CommandType.DESIRED or cmd.node_id is None:
        raise not_found("command")
    visible_node(cmd.node_id)  # 404 unless the user may see that node
    return render_template("_command.html", **command_data(cmd))
