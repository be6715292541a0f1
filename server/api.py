"""REST API /api/v1 (JSON): thin routes over the domain modules (areas, nodes, bulletins,
broadcasts)."""
from __future__ import annotations

import csv
import datetime as dt
import io
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import select
from werkzeug.exceptions import MethodNotAllowed, NotFound

from device_agent.protocol import CommandType, EventType
from schedules.ical import slots_to_ics

from . import (alerts, audit, auth, bulletins, programmes, releases, report_summary, reports,
               retention, schedule, users)
from . import bodies as B
from . import queries as Q
from . import areas as area_service
from . import broadcasts as broadcast_service
from . import nodes as node_service
from .context import sessions as app_sessions
from .context import settings as app_settings
from .context import speech
from .errors import ApiError, ErrorCode, bad_request, error_body, not_found, wants_json
from .i18n import t
from .models import (AgentRelease, Alert, Area, Broadcast, Command, Event,
                     LexiconEntry, Node, PlayLog, area_subtree_ids, area_zone, from_ms,
                     node_groups, to_ms, utcnow)
from .openapi import document
from .request_globals import g
from .serializers import area_json, broadcast_json, command_json, node_json
from .times import iso

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from schedules.slots import Slot

    from .models import User

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise bad_request("err.not_json", ErrorCode.NOT_JSON)
    return data


def read(model: type[B.M], data: dict[str, Any] | None = None) -> B.M:
    """The request's JSON body (or ``data``) as ``model``; a 400 naming its first problem."""
    return B.parse(model, body() if data is None else data, tz=app_settings().tz)


def created(payload: dict[str, Any], status: int = 201) -> tuple[Response, int]:
    g.db.commit()
    return jsonify(payload), status


@bp.app_errorhandler(MethodNotAllowed)
def method_not_allowed(err: MethodNotAllowed) -> ResponseReturnValue:
    """An id too large for the database is not found whatever the method: the router answers
    405 only because another method's route matched the path before its converter refused."""
    try:
        adapter = current_app.url_map.bind_to_environ(request.environ)
        adapter.match(method=sorted(err.valid_methods or ["GET"])[0])
    except NotFound:
        if not wants_json():
            return NotFound()
        return error_body(ErrorCode.NOT_FOUND, t("err.route"))
    except Exception:  # any other routing answer: keep the 405
        pass
    if not wants_json():
        return err
    return error_body(ErrorCode.METHOD_NOT_ALLOWED, t("err.method"))


@bp.get("/openapi.json")
def openapi() -> Response:
    settings = app_settings()
    return jsonify(document(settings.tts_engines, settings.password_min_length))


@bp.post("/auth/token")
def token() -> Response:
    login = read(B.TokenRequest)
    user = auth.login_attempt(g.db, login.username, login.password, via="api")
    if user is None:
        raise ApiError(ErrorCode.BAD_CREDENTIALS, "err.bad_credentials")
    tok = auth.issue_token(g.db, user, app_settings().token_ttl_h)
    g.db.commit()
    return jsonify({"token": tok, "user": {"username": user.username, "role": user.role,
                                           "area_id": user.area_id}})


@bp.post("/auth/logout")
@auth.login_required
def logout() -> tuple[str, int]:
    """Revoke the bearer token of this request (or end the cookie's browser session)."""
    if g.get("api_token") is not None:
        g.db.delete(g.api_token)
    else:
        auth.end_web_session(g.db)
    g.db.commit()
    return "", 204


# --- users -------------------------------------------------------------------------------------

@bp.get("/users")
def list_users() -> Response:
    user = auth.require("user.write")
    return jsonify({"users": [users.user_json(u) for u in users.visible_users(g.db, user)]})


@bp.post("/users")
def create_user() -> tuple[Response, int]:
    user = auth.require("user.write")
    new = users.save_user(g.db, user, None, read(B.UserCreate),
                          password_min=app_settings().password_min_length)
    return created(users.user_json(new))


@bp.get("/users/<int:user_id>")
def get_user(user_id: int) -> Response:
    user = auth.require("user.write")
    return jsonify(users.user_json(users.get_user(g.db, user, user_id)))


@bp.patch("/users/<int:user_id>")
def update_user(user_id: int) -> Response:
    actor = auth.require("user.write")
    user = users.save_user(g.db, actor, users.get_user(g.db, actor, user_id), read(B.UserWrite),
                           password_min=app_settings().password_min_length)
    g.db.commit()
    return jsonify(users.user_json(user))


# --- areas -------------------------------------------------------------------------------------

@bp.get("/areas")
@auth.login_required
def list_areas() -> Response:
    allowed = auth.user_area_ids(g.db, auth.caller())
    areas = g.db.scalars(select(Area).order_by(Area.id))
    tz = app_settings().timezone
    return jsonify({"areas": [area_json(g.db, a, tz) for a in areas
                              if allowed is None or a.id in allowed]})


@bp.post("/areas")
def create_area() -> tuple[Response, int]:
    user = auth.require("area.write")
    area = area_service.create_area(g.db, user, read(B.AreaCreate))
    return created(area_json(g.db, area, app_settings().timezone))


@bp.get("/areas/<int:area_id>")
@auth.login_required
def get_area(area_id: int) -> Response:
    area = g.db.get(Area, area_id)
    if area is None:
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    return jsonify(area_json(g.db, area, app_settings().timezone))


def _schedule(area_id: int
              ) -> tuple[Area, str, dt.datetime, list[tuple[Slot, Broadcast]]]:
    """The area (404 when the caller may not see it), its zone, now, and its slots in
    ?from=&to= (a time without offset in the area's zone; from defaults to now, to to a week
    after from; a longer span is cut to MAX_LISTING)."""
    area = g.db.get(Area, area_id)
    allowed = auth.user_area_ids(g.db, auth.caller())
    if area is None or (allowed is not None and area.id not in allowed):
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    tz = area_zone(g.db, area.id, app_settings().timezone)
    now = utcnow().replace(tzinfo=dt.UTC)
    q = Q.read(Q.ScheduleQuery, request.args, zone=ZoneInfo(tz))
    start = q.start.replace(tzinfo=dt.UTC) if q.start else now
    end = q.end.replace(tzinfo=dt.UTC) if q.end else start + dt.timedelta(days=7)
    start, end = schedule.listing_window(start, end)
    return area, tz, now, schedule.area_slots(g.db, app_settings().timezone, area.id, start, end)


@bp.get("/areas/<int:area_id>/schedule")
@auth.login_required
def area_schedule(area_id: int) -> Response:
    area, tz, _now, slots = _schedule(area_id)
    return jsonify({"area_id": area.id, "tz": tz,
                    "slots": [schedule.slot_json(slot, bc, tz=tz) for slot, bc in slots]})


@bp.get("/areas/<int:area_id>/schedule.ics")
@auth.login_required
def area_schedule_ics(area_id: int) -> Response:
    area, tz, now, slots = _schedule(area_id)
    titles = {bc.id: schedule.title(bc) for _s, bc in slots}
    text = slots_to_ics([slot for slot, _bc in slots], now=now, calendar_name=area.name,
                        title=lambda slot: titles[slot.broadcast_id], tz=tz)
    return Response(text, mimetype="text/calendar",
                    headers={"Content-Disposition":
                             f"attachment; filename=schedule-{area.id}.ics"})


# --- nodes -------------------------------------------------------------------------------------

def _alarms(node_ids: list[str], limit: int = 5) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in node_ids}
    if not node_ids:
        return out
    rows = g.db.scalars(select(Event)
                        .where(Event.type == EventType.ALARM, Event.node_id.in_(node_ids))
                        .order_by(Event.id.desc()).limit(limit * len(node_ids)))
    for e in rows:
        if len(out[e.node_id]) < limit:
            out[e.node_id].append({"code": e.payload.get("code"), "detail": e.payload.get("detail"),
                                   "reason": e.payload.get("reason"), "ts": e.ts_ms})
    return out


@bp.post("/nodes")
def provision_node() -> tuple[Response, int]:
    user = auth.require("node.write")
    answer, accounts = node_service.provision_node(g.db, app_settings(), user,
                                                   read(B.NodeCreate))
    g.db.commit()
    node_service.add_broker_accounts(app_settings(), app_sessions(), accounts)
    return jsonify(answer), 201


def _provision_rows(user: User, rows: list[tuple[int, B.NodeCreate | node_service.RowError]],
                    fields: dict[str, str] | None = None,
                    status: int | None = None) -> tuple[Response, int]:
    """Every row provisioned, or none and every bad row named (its number and field); the
    status of a refusal is ``status``, else the first bad row's own."""
    answers, accounts, errors = node_service.provision_nodes(g.db, app_settings(), user, rows)
    if errors:
        g.db.rollback()
        raise ApiError(ErrorCode.INVALID_ROWS, "err.invalid_rows", count=len(errors),
                       total=len(rows), http_status=status or errors[0].error.status).with_extra(
            rows=[e.json(fields) for e in errors])
    g.db.commit()
    node_service.add_broker_accounts(app_settings(), app_sessions(), accounts)
    return jsonify({"nodes": answers}), 201


@bp.post("/nodes/bulk")
def provision_nodes() -> tuple[Response, int]:
    """A JSON list of nodes (each as POST /nodes takes it), all provisioned or none."""
    user = auth.require("node.write")
    data = request.get_json(silent=True)
    if not isinstance(data, list) or not data:
        raise bad_request("err.not_json_list", ErrorCode.NOT_JSON)
    most = app_settings().bulk_max_nodes  # B.NodeList documents the default
    if len(data) > most:
        raise bad_request("err.too_many_rows", ErrorCode.TOO_MANY, most=most)
    tz = app_settings().tz
    rows: list[tuple[int, B.NodeCreate | node_service.RowError]] = []
    for i, item in enumerate(data, start=1):
        try:
            rows.append((i, B.parse(B.NodeCreate, item, tz=tz)))
        except ApiError as err:
            rows.append((i, node_service.row_error(i, err)))
    return _provision_rows(user, rows)


@bp.post("/nodes/import")
def import_nodes() -> tuple[Response, int]:
    """A CSV file (UTF-8; columns name, cluster, latitude, longitude, optionally id), all
    provisioned or none; a bad row is named by its line in the file."""
    user = auth.require("node.write")
    if request.mimetype != "text/csv":
        raise ApiError(ErrorCode.NOT_CSV, "err.not_csv")
    rows = node_service.read_node_csv(g.db, request.get_data(), app_settings().bulk_max_nodes)
    return _provision_rows(user, rows, node_service.CSV_FIELDS, 422)


@bp.get("/nodes")
@auth.login_required
def list_nodes() -> Response:
    """A page of nodes in id order: ``?limit=`` of them (server.queries.NodeQuery: 100 unless
    asked; a province's 10,000 nodes at once took tens of seconds) after the node ``?after=``
    (the previous page's ``next``), filtered and paged by the database."""
    asked = Q.read(Q.NodeQuery, request.args)
    allowed = auth.user_area_ids(g.db, auth.caller())
    q = select(Node).order_by(Node.id)
    if asked.after is not None:
        q = q.where(Node.id > asked.after)
    if allowed is not None:
        q = q.where(Node.cluster_id.in_(allowed))
    if asked.area is not None:
        q = q.where(Node.cluster_id.in_(area_subtree_ids(g.db, [asked.area])))
    if asked.status is not None:
        q = q.where(node_service.status_condition(asked.status))
    limit = asked.limit
    nodes = list(g.db.scalars(q.limit(limit + 1)))
    more = len(nodes) > limit
    nodes = nodes[:limit]
    alarms = _alarms([n.id for n in nodes])
    groups: dict[int, list[str]] = {}  # a cluster's nodes share their groups
    for n in nodes:
        if n.cluster_id not in groups:
            groups[n.cluster_id] = node_groups(g.db, n)
    return jsonify({"nodes": [node_json(g.db, n, alarms[n.id], groups[n.cluster_id])
                              for n in nodes],
                    "next": nodes[-1].id if more else None})


def _node(node_id: str) -> Node:
    node: Node | None = g.db.get(Node, node_id)
    allowed = auth.user_area_ids(g.db, auth.caller())
    if node is None or (allowed is not None and node.cluster_id not in allowed):
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
    return node


@bp.get("/nodes/<node_id>")
@auth.login_required
def get_node(node_id: str) -> Response:
    node = _node(node_id)
    return jsonify(node_json(g.db, node, _alarms([node.id], 20)[node.id]))


@bp.patch("/nodes/<node_id>")
def update_node(node_id: str) -> Response:
    """A technician sets (or ends, with null) the node's maintenance window."""
    auth.require("node.write")
    node = _node(node_id)
    change = read(B.NodeUpdate)
    until = change.maintenance_until
    if until is not None and until > utcnow() + dt.timedelta(days=B.MAX_MAINTENANCE_DAYS):
        raise bad_request("err.invalid_field", field="maintenance_until",
                          detail=f"at most {B.MAX_MAINTENANCE_DAYS} days ahead")
    if change.given("maintenance_until"):
        node.maintenance_until = until
    g.db.commit()
    return jsonify(node_json(g.db, node, _alarms([node.id], 20)[node.id]))


@bp.get("/nodes/<node_id>/desired")
@auth.login_required
def node_desired(node_id: str) -> Response:
    """What the node should hold now: the body of its newest desired state, and the version it
    reported applying."""
    return jsonify(node_service.desired_state(g.db, _node(node_id)))


@bp.get("/nodes/<node_id>/telemetry")
@auth.login_required
def node_telemetry(node_id: str) -> Response:
    """The node's telemetry in [from, to) (to defaults to now, from to a day before it):
    ``resolution=raw`` every report, ``hour`` the hourly aggregates, ``auto`` (the default) raw
    while from lies within the raw retention, hourly beyond it (server/retention.py). A span
    longer than the chosen resolution keeps is cut to it (from moves later)."""
    node = _node(node_id)
    s = app_settings()
    tz = area_zone(g.db, node.cluster_id, s.timezone)
    asked = Q.read(Q.TelemetryQuery, request.args, zone=ZoneInfo(tz))
    resolution = asked.resolution or retention.Resolution.AUTO
    now = utcnow()
    end = asked.end or now
    start = asked.start or end - dt.timedelta(days=1)
    start_ms, end_ms = to_ms(start), to_ms(end)
    chosen = retention.choose(resolution, start_ms, to_ms(now), s.telemetry_raw_days)
    raw = chosen == retention.Resolution.RAW
    days = s.telemetry_raw_days if raw else s.telemetry_hourly_days
    start_ms = max(0, start_ms, end_ms - days * retention.DAY_MS)
    end_ms = max(start_ms, end_ms)  # to before from: an empty period
    read_points = retention.raw_points if raw else retention.hourly_points
    return jsonify({"node_id": node.id, "resolution": chosen, "from": iso(from_ms(start_ms)),
                    "to": iso(from_ms(end_ms)), "fields": list(retention.FIELDS),
                    "points": read_points(g.db, node.id, start_ms, end_ms)})


@bp.post("/nodes/<node_id>/revoke")
def revoke_node(node_id: str) -> Response:
    user = auth.require("node.write")
    node = node_service.revoke_node(g.db, app_settings(), user, node_id)
    g.db.commit()
    node_service.sync_broker_accounts(app_settings(), app_sessions())  # drops its lines
    return jsonify({"id": node.id, "revoked_at": iso(node.revoked_at)})


@bp.post("/nodes/<node_id>/provisioning-token")
def node_provisioning_token(node_id: str) -> tuple[Response, int]:
    """A one-time token (technician, admin of the node's area) that fetches the node's
    provisioning answer once: hardware/install-pi.sh --provision URL --token TOKEN."""
    user = auth.require("node.write")
    answer = node_service.issue_provisioning_token(g.db, app_settings(), user, _node(node_id))
    g.db.commit()
    resp = jsonify(answer)
    resp.headers["Cache-Control"] = "no-store"  # the token is shown once
    return resp, 201


@bp.get("/nodes/<node_id>/provisioning")
def node_provisioning(node_id: str) -> Response:
    """The provisioning answer for the bearer of the node's one-time token (no user login):
    the token is consumed, the node's broker password rotated and the broker synced."""
    answer = node_service.fetch_provisioning(g.db, app_settings(), node_id, auth.bearer_token(),
                                             ip=request.remote_addr)
    g.db.commit()
    node_service.sync_broker_accounts(app_settings(), app_sessions())  # its new password
    resp = jsonify(answer)
    resp.headers["Cache-Control"] = "no-store"  # it holds the node's password
    return resp


@bp.post("/nodes/<node_id>/commands")
def node_command(node_id: str) -> tuple[Response, int]:
    user = auth.require("node.command")
    cmd = node_service.node_command(g.db, app_settings(), user, node_id, read(B.CommandCreate))
    return created(command_json(cmd), 202)


@bp.get("/commands/<command_id>")
@auth.login_required
def get_command(command_id: str) -> Response:
    cmd = g.db.get(Command, command_id)
    if cmd is None or cmd.type == CommandType.DESIRED or cmd.node_id is None:
        raise not_found("command")
    _node(cmd.node_id)  # 404 unless the caller may see that node
    return jsonify(command_json(cmd))


# --- agent releases and rollouts (updates over the air) ---------------------------------------

@bp.post("/releases")
def upload_release() -> tuple[Response, int]:
    user = auth.require("release.write")
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if upload is None:
        raise bad_request("err.missing_field", ErrorCode.MISSING_FIELD, field="file")
    form = read(B.ReleaseUpload, B.from_form(B.ReleaseUpload, request.form))
    release = releases.store_release(g.db, app_settings(), user, upload.read(), form.notes)
    return created(releases.release_json(app_settings(), release))


@bp.get("/releases")
def list_releases() -> Response:
    auth.require("rollout.read")
    rows = g.db.scalars(select(AgentRelease).order_by(AgentRelease.id.desc()))
    return jsonify({"releases": [releases.release_json(app_settings(), r) for r in rows]})


@bp.get("/releases/<int:release_id>")
def get_release(release_id: int) -> Response:
    auth.require("rollout.read")
    return jsonify(releases.release_json(app_settings(),
                                         releases.get_release(g.db, release_id)))


@bp.post("/rollouts")
def create_rollout() -> tuple[Response, int]:
    user = auth.require("release.write")
    rollout = releases.create_rollout(g.db, app_settings(), user, read(B.RolloutCreate))
    return created(releases.rollout_json(g.db, app_settings(), user, rollout))


@bp.get("/rollouts")
def list_rollouts() -> Response:
    user = auth.require("rollout.read")
    return jsonify({"rollouts": [releases.rollout_json(g.db, app_settings(), user, r)
                                 for r in releases.visible_rollouts(g.db)]})


@bp.get("/rollouts/<int:rollout_id>")
def get_rollout(rollout_id: int) -> Response:
    user = auth.require("rollout.read")
    return jsonify(releases.rollout_json(g.db, app_settings(), user,
                                         releases.get_rollout(g.db, rollout_id)))


@bp.post("/rollouts/<int:rollout_id>/advance")
def advance_rollout(rollout_id: int) -> Response:
    user = auth.require("release.write")
    rollout = releases.advance(g.db, app_settings(), user,
                               releases.get_rollout(g.db, rollout_id))
    g.db.commit()
    return jsonify(releases.rollout_json(g.db, app_settings(), user, rollout))


@bp.post("/rollouts/<int:rollout_id>/cancel")
def cancel_rollout(rollout_id: int) -> Response:
    user = auth.require("release.write")
    rollout = releases.cancel(g.db, releases.get_rollout(g.db, rollout_id))
    g.db.commit()
    return jsonify(releases.rollout_json(g.db, app_settings(), user, rollout))
# --- alerts ------------------------------------------------------------------------------------



def _alert_list_json(rows: list[Alert]) -> list[dict[str, Any]]:
    from .i18n import current_language
    names = alerts.usernames(g.db, rows)
    zones: dict[int | None, str] = {}  # times in the text: the alert's area's zone
    out = []
    for a in rows:
        if a.area_id not in zones:
            zones[a.area_id] = alerts.zone(g.db, a, app_settings().timezone)
        out.append(alerts.alert_json(a, names, current_language(), zones[a.area_id]))
    return out


@bp.get("/alerts")
@auth.login_required
def list_alerts() -> Response:
    """Alerts in the caller's areas, newest first; ?state= (one or more, comma-separated),
    ?area=, ?node=, ?kind=, ?limit=."""
    asked = Q.read(Q.AlertQuery, request.args)
    areas = auth.area_scope(g.db, auth.caller(), asked.area)  # the caller's, narrowed by ?area=
    if asked.node is not None:
        _node(asked.node)  # 404 for a node the caller cannot see, as the airplay report
    return jsonify({"alerts": _alert_list_json(alerts.listing(
        g.db, areas, list(asked.state), asked.kind, asked.node, asked.limit))})


def _alert(alert_id: int) -> Alert:
    alert: Alert | None = g.db.get(Alert, alert_id)
    if alert is None or not alerts.visible(g.db, alert, auth.user_area_ids(g.db, auth.caller())):
        raise not_found("alert")
    return alert


@bp.get("/alerts/<int:alert_id>")
@auth.login_required
def get_alert(alert_id: int) -> Response:
    return jsonify(_alert_list_json([_alert(alert_id)])[0])


def _alert_action(alert_id: int, action: alerts.AlertStep) -> Response:
    user = auth.require("alert.write")
    alert = _alert(alert_id)
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict):
        raise bad_request("err.not_json", ErrorCode.NOT_JSON)
    step = read(B.AlertAction, data)
    alerts.take_step(g.db, alert, action, user, step.comment or None, utcnow())
    g.db.commit()
    return jsonify(_alert_list_json([alert])[0])


@bp.post("/alerts/<int:alert_id>/ack")
def ack_alert(alert_id: int) -> Response:
    return _alert_action(alert_id, alerts.AlertStep.ACK)


@bp.post("/alerts/<int:alert_id>/resolve")
def resolve_alert(alert_id: int) -> Response:
    return _alert_action(alert_id, alerts.AlertStep.RESOLVE)


# --- bulletins ---------------------------------------------------------------------------------

@bp.post("/bulletins")
def create_bulletin() -> tuple[Response, int]:
    user = auth.require("bulletin.write")
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise bad_request("err.missing_field", ErrorCode.MISSING_FIELD, field="file")
        form = read(B.BulletinUpload, B.from_form(B.BulletinUpload, request.form))
        b = bulletins.create_upload_bulletin(g.db, speech(), user, form, upload.read())
    else:
        b = bulletins.create_text_bulletin(g.db, speech(), user, read(B.BulletinCreate))
    return created(bulletins.bulletin_json(b))


@bp.get("/bulletins")
@auth.login_required
def list_bulletins() -> Response:
    rows = bulletins.visible_bulletins(g.db, auth.caller(),
                                       Q.read(Q.BulletinQuery, request.args).status)
    return jsonify({"bulletins": [bulletins.bulletin_json(b) for b in rows]})


@bp.get("/bulletins/<int:bulletin_id>")
@auth.login_required
def get_bulletin(bulletin_id: int) -> Response:
    b = bulletins.get_bulletin(g.db, auth.caller(), bulletin_id)
    return jsonify(bulletins.bulletin_json(b))


@bp.patch("/bulletins/<int:bulletin_id>")
def edit_bulletin(bulletin_id: int) -> Response:
    user = auth.require("bulletin.write")
    b = bulletins.get_bulletin(g.db, user, bulletin_id, manage=True)
    bulletins.edit_bulletin(g.db, speech(), user, b, read(B.BulletinUpdate))
    g.db.commit()
    return jsonify(bulletins.bulletin_json(b))


@bp.post("/bulletins/<int:bulletin_id>/<action>")
def bulletin_action(bulletin_id: int, action: str) -> Response:
    if action not in bulletins.TRANSITIONS:
        raise ApiError(ErrorCode.NOT_FOUND, "err.route")
    step_taken = bulletins.BulletinStep(action)
    user = auth.require("bulletin.approve" if step_taken in bulletins.REVIEW
                        else "bulletin.write")
    b = bulletins.get_bulletin(g.db, user, bulletin_id, manage=True)
    data = request.get_json(silent=True) or {}
    if not isinstance(data, dict):
        raise bad_request("err.not_json", ErrorCode.NOT_JSON)
    step = read(B.BulletinAction, data)
    bulletins.transition(g.db, user, b, step_taken, step.comment, seen_sha256=step.sha256)
    g.db.commit()
    return jsonify(bulletins.bulletin_json(b))


@bp.post("/normalize")
@auth.login_required
def normalize() -> Response:
    req = read(B.NormalizeRequest)
    if req.area_id is not None:
        bulletins.scoped_area(g.db, auth.caller(), req.area_id)
    return jsonify({"normalized": bulletins.normalized_text(g.db, req.text, req.area_id)})


@bp.post("/previews")
def preview() -> Response:
    user = auth.require("bulletin.write")
    answer = bulletins.preview(g.db, speech(), user, read(B.PreviewCreate))
    g.db.commit()
    return jsonify(answer)


# --- ward speech settings and lexicon ------------------------------------------------------------

@bp.patch("/areas/<int:area_id>")
def update_area(area_id: int) -> Response:
    user = auth.require("area.write")
    area, moved = area_service.update_area(g.db, app_settings(), user, area_id,
                                           read(B.AreaUpdate))
    g.db.commit()
    if moved:  # the nodes below have other groups now
        node_service.sync_broker_accounts(app_settings(), app_sessions())
    return jsonify(area_json(g.db, area, app_settings().timezone))


@bp.post("/areas/<int:area_id>/merge")
def merge_area(area_id: int) -> Response:
    """Merge the area into the body's ``into`` (server.areas.merge_areas)."""
    user = auth.require("area.write")
    body = read(B.AreaMerge)
    s = app_settings()
    moved = area_service.merge_areas(g.db, s.timezone, user, body.into, area_id)
    g.db.commit()
    node_service.sync_broker_accounts(s, app_sessions())
    # both are there: merge_areas checked them, and a merged area is marked, not deleted
    return jsonify({"area": area_json(g.db, g.db.get_one(Area, area_id), s.timezone),
                    "into": area_json(g.db, g.db.get_one(Area, body.into), s.timezone),
                    "moved": moved.json()})


@bp.get("/areas/<int:area_id>/lexicon")
@auth.login_required
def list_lexicon(area_id: int) -> Response:
    bulletins.scoped_area(g.db, auth.caller(), area_id)
    rows = g.db.scalars(select(LexiconEntry).where(LexiconEntry.area_id == area_id)
                        .order_by(LexiconEntry.term))
    return jsonify({"entries": [bulletins.lexicon_json(e) for e in rows],
                    "effective": bulletins.lexicon_for(g.db, area_id)})


@bp.post("/areas/<int:area_id>/lexicon")
def add_lexicon(area_id: int) -> tuple[Response, int]:
    user = auth.require("bulletin.write")
    entry = bulletins.add_lexicon_entry(g.db, user, area_id, read(B.LexiconEntryCreate))
    return created(bulletins.lexicon_json(entry))


@bp.delete("/areas/<int:area_id>/lexicon/<int:entry_id>")
def delete_lexicon(area_id: int, entry_id: int) -> tuple[str, int]:
    user = auth.require("bulletin.write")
    bulletins.scoped_area(g.db, user, area_id)
    entry = g.db.get(LexiconEntry, entry_id)
    if entry is None or entry.area_id != area_id:
        raise not_found("lexicon")
    g.db.delete(entry)
    g.db.commit()
    return "", 204


# --- programmes --------------------------------------------------------------------------------

@bp.post("/programmes")
def create_programme() -> tuple[Response, int]:
    user = auth.require("broadcast.write")
    p = programmes.create_programme(g.db, app_settings(), user, read(B.ProgrammeCreate))
    return created(programmes.programme_json(p))


@bp.get("/programmes")
@auth.login_required
def list_programmes() -> Response:
    return jsonify({"programmes": [programmes.programme_json(p)
                                   for p in programmes.visible_programmes(g.db, auth.caller())]})


@bp.get("/programmes/<int:programme_id>")
@auth.login_required
def get_programme(programme_id: int) -> Response:
    return jsonify(programmes.programme_json(
        programmes.visible_programme(g.db, auth.caller(), programme_id)))


@bp.patch("/programmes/<int:programme_id>")
def edit_programme(programme_id: int) -> Response:
    user = auth.require("broadcast.write")
    p = programmes.visible_programme(g.db, user, programme_id)
    programmes.edit_programme(g.db, app_settings(), user, p, read(B.ProgrammeUpdate))
    g.db.commit()
    return jsonify(programmes.programme_json(p))


# --- broadcasts --------------------------------------------------------------------------------

@bp.post("/broadcasts")
def create_broadcast() -> tuple[Response, int]:
    user = auth.require("broadcast.write")
    bc = broadcast_service.create_broadcast(g.db, app_settings(), user, read(B.BroadcastCreate))
    return created(broadcast_json(g.db, bc, app_settings().timezone))


@bp.get("/broadcasts")
@auth.login_required
def list_broadcasts() -> Response:
    rows = g.db.scalars(select(Broadcast).order_by(Broadcast.id.desc()).limit(100))
    tz = app_settings().timezone
    return jsonify({"broadcasts": [broadcast_json(g.db, b, tz) for b in rows if _visible(b)]})


def _visible(bc: Broadcast) -> bool:
    return broadcast_service.broadcast_visible(g.db, auth.caller(), bc)


def _broadcast(broadcast_id: int) -> Broadcast:
    bc: Broadcast | None = g.db.get(Broadcast, broadcast_id)
    if bc is None or not _visible(bc):
        raise not_found("broadcast")
    return bc


@bp.get("/broadcasts/<int:broadcast_id>")
@auth.login_required
def get_broadcast(broadcast_id: int) -> Response:
    return jsonify(broadcast_json(g.db, _broadcast(broadcast_id), app_settings().timezone))


@bp.get("/broadcasts/<int:broadcast_id>/slots")
@auth.login_required
def broadcast_slots(broadcast_id: int) -> Response:
    """Each occurrence of a series in [from, to) and each node's delivery state of it."""
    bc = _broadcast(broadcast_id)
    s = app_settings()
    now = utcnow().replace(tzinfo=dt.UTC)
    asked = Q.read(Q.SlotsQuery, request.args, zone=s.tz)
    start, end = reports.slot_window(now, *(when.replace(tzinfo=dt.UTC) if when else None
                                            for when in (asked.start, asked.end)))
    return jsonify(reports.series_slots_json(g.db, s.timezone, bc, start=start, end=end, now=now,
                                             grace=dt.timedelta(seconds=s.airplay_grace_s)))


@bp.patch("/broadcasts/<int:broadcast_id>")
def edit_broadcast(broadcast_id: int) -> tuple[Response, int]:
    """A series edited from now on: it ends now, and the answer is the new series (201) whose
    previous_id names it."""
    user = auth.require("broadcast.write")
    bc = _broadcast(broadcast_id)
    new = broadcast_service.edit_series(g.db, app_settings(), user, bc, read(B.BroadcastEdit))
    return created(broadcast_json(g.db, new, app_settings().timezone))


@bp.post("/broadcasts/<int:broadcast_id>/occurrences")
def change_occurrence(broadcast_id: int) -> Response:
    """One occurrence cancelled, moved or airing another bulletin; the answer is the series."""
    user = auth.require("broadcast.write")
    bc = _broadcast(broadcast_id)
    broadcast_service.change_occurrence(g.db, app_settings(), user, bc,
                                        read(B.OccurrenceChange))
    g.db.commit()
    return jsonify(broadcast_json(g.db, bc, app_settings().timezone))


@bp.post("/broadcasts/<int:broadcast_id>/confirm")
def confirm_broadcast(broadcast_id: int) -> Response:
    user = auth.require("broadcast.emergency")
    bc = _broadcast(broadcast_id)
    broadcast_service.confirm_broadcast(g.db, app_settings(), user, bc)
    g.db.commit()
    return jsonify(broadcast_json(g.db, bc, app_settings().timezone))


@bp.post("/broadcasts/<int:broadcast_id>/cancel")
def cancel_broadcast(broadcast_id: int) -> Response:
    user = auth.require("broadcast.write")
    bc = _broadcast(broadcast_id)
    broadcast_service.cancel_broadcast(g.db, app_settings(), user, bc)
    g.db.commit()
    return jsonify(broadcast_json(g.db, bc, app_settings().timezone))


# --- play logs ---------------------------------------------------------------------------------

PLAYLOG_FIELDS = ("node_id", "broadcast_id", "bulletin_id", "item_id", "cmd_id", "slot_id",
                  "sha256", "scheduled_at", "started_at", "ended_at", "result", "reason")


@bp.get("/playlogs")
@auth.login_required
def playlogs() -> Response:
    asked = Q.read(Q.PlayLogQuery, request.args, zone=app_settings().tz)
    q = select(PlayLog).order_by(PlayLog.started_at_ms.desc(), PlayLog.id.desc()) \
        .limit(asked.limit)
    if asked.node is not None:
        q = q.where(PlayLog.node_id == asked.node)
    allowed = auth.user_area_ids(g.db, auth.caller())
    areas = allowed
    if asked.area is not None:
        areas = area_subtree_ids(g.db, [asked.area])
        if allowed is not None:
            areas = areas & allowed
    if areas is not None:
        q = q.where(PlayLog.node_id.in_(select(Node.id).where(Node.cluster_id.in_(areas))))
    if asked.start is not None:
        q = q.where(PlayLog.started_at_ms >= to_ms(asked.start))
    if asked.end is not None:
        q = q.where(PlayLog.started_at_ms < to_ms(asked.end))
    rows = [_playlog_json(p) for p in g.db.scalars(q)]
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=PLAYLOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=playlogs.csv"})
    return jsonify({"playlogs": rows})


def _playlog_json(p: PlayLog) -> dict[str, Any]:
    def t(ms: int | None) -> str | None:
        return iso(from_ms(ms)) if ms is not None else None
    return {"node_id": p.node_id, "broadcast_id": p.broadcast_id, "bulletin_id": p.bulletin_id,
            "item_id": p.item_id, "cmd_id": p.cmd_id, "slot_id": p.slot_id, "sha256": p.sha256,
            "scheduled_at": t(p.scheduled_at_ms), "started_at": t(p.started_at_ms),
            "ended_at": t(p.ended_at_ms), "result": p.result, "reason": p.reason}


# --- airplay report ----------------------------------------------------------------------------

@bp.get("/reports/airplay")
@auth.login_required
def airplay_report() -> Response:
    """Proof of play: every planned slot or command of the nodes in scope (the caller's area,
    ?area= below it, ?node=) in [from, to) against what the nodes reported (server/reports.py).
    to defaults to now, from to a day before to; a longer span is cut to 92 days."""
    s = app_settings()

    def zone_name(area_id: int | None) -> str:
        """Where a time without an offset is read: the zone of ?area=, else the caller's."""
        home = area_id if area_id is not None else auth.caller().area_id
        return area_zone(g.db, home, s.timezone) if home is not None else s.timezone
    asked = Q.read(Q.AirplayQuery, request.args,
                   zone=lambda read: ZoneInfo(zone_name(read.get("area"))))
    areas = auth.area_scope(g.db, auth.caller(), asked.area)
    node_id = asked.node
    if node_id is not None:
        _node(node_id)
    tz = zone_name(asked.area)
    now = utcnow().replace(tzinfo=dt.UTC)
    end = asked.end.replace(tzinfo=dt.UTC) if asked.end else now
    # a day before the end, but never before the first date (a ``to`` on 1 January of year 1)
    start = asked.start.replace(tzinfo=dt.UTC) if asked.start else \
        end - min(dt.timedelta(days=1), end - dt.datetime.min.replace(tzinfo=dt.UTC))
    start, end = schedule.listing_window(start, end)
    grace = dt.timedelta(seconds=s.airplay_grace_s)
    report = reports.build(g.db, s.timezone, areas=areas, node_id=node_id, start=start,
                           end=end, now=now, grace=grace)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return Response(reports.report_csv(report), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=airplay.csv"})
    return jsonify({**reports.report_json(g.db, report, start, end, now, grace), "tz": tz})


@bp.get("/reports/summary")
@auth.login_required
def summary_report() -> Response:
    """The Reports page's report (server/report_summary.py): planned against aired per area and
    node, hours aired by category and area, node uptime, for whole days from..to (YYYY-MM-DD,
    in the area's zone; at most 366 days) within the caller's areas. Accept: text/csv gives the
    page's CSV."""
    summary, _name, area_id = report_summary.asked(g.db, app_settings(), auth.caller(),
                                                   request.args)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        return Response(report_summary.csv_text(summary), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=summary.csv"})
    return jsonify(report_summary.summary_json(summary, area_id))


# --- audit log ---------------------------------------------------------------------------------

@bp.get("/audit")
def audit_log() -> Response:
    auth.require("audit.read")  # no role but admin has it
    asked = Q.read(Q.AuditQuery, request.args, zone=app_settings().tz)
    found = audit.entries(g.db, actor=asked.actor, action=asked.action, start=asked.start,
                          end=asked.end, limit=asked.limit)
    return jsonify({"entries": [audit.entry_json(e) for e in found]})
