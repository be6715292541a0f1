"""Web pages (Jinja + htmx, Vietnamese by default): login, node dashboard, bulletin form that can
approve and broadcast at once, and a broadcast's per-node status. Thin over the domain modules."""
from __future__ import annotations

import datetime as dt
import functools
from urllib.parse import urlsplit

from flask import (Blueprint, abort, flash, g, redirect, render_template, request, session,
                   url_for)
from sqlalchemy import select

from . import auth, reports
from . import bodies as B
from . import bulletins as bulletin_service
from .broadcasts import broadcast_visible, create_broadcast
from .context import settings, speech
from .errors import ApiError
from .i18n import CATEGORIES, LANGUAGES, local_time, t
from .deliveries import SlotState
from .models import Area, Broadcast, Node, utcnow
from .serializers import broadcast_json

bp = Blueprint("web", __name__)


def read_form(model: type[B.M], form: dict) -> B.M:
    """A page's form as ``model`` reads it: an empty field is one not given, numbers as numbers
    (server.bodies.from_form)."""
    return B.parse(model, B.from_form(model, form, blank_is_absent=True), tz=settings().tz)


@bp.app_context_processor
def _globals():
    # csrf_token() comes from Flask-WTF (server/websec.py)
    return {"t": t, "local_time": local_time, "user": auth.current_user() if g.get("db") else None,
            "languages": LANGUAGES}


def local_path(target: str | None) -> str | None:
    """``target`` as a path on this site ("/x?y"), or None when it leads anywhere else: another
    host, a scheme-relative "//host", a backslash or a control character browsers read as one."""
    if not target or any(c == "\\" or ord(c) < 33 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc) and (parts.scheme not in ("http", "https")
                                           or parts.netloc != request.host):
        return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page_login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if auth.current_user() is None:
            return redirect(url_for("web.login", next=request.path))
        return view(*args, **kwargs)
    return wrapper


@bp.route("/lang/<code>")
def set_language(code: str):
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(local_path(request.referrer) or url_for("web.dashboard"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.method == "POST":
        user = auth.login_attempt(g.db, request.form.get("username", ""),
                                  request.form.get("password", ""), via="page")
        if user is not None:
            auth.start_web_session(g.db, user)
            g.db.commit()
            return redirect(local_path(request.args.get("next")) or url_for("web.dashboard"))
        error = t("err.bad_credentials")
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    auth.end_web_session(g.db)
    g.db.commit()
    return redirect(url_for("web.login"))


def _visible_nodes() -> list[Node]:
    allowed = auth.user_area_ids(g.db, g.user)
    q = select(Node).order_by(Node.cluster_id, Node.id)
    if allowed is not None:
        q = q.where(Node.cluster_id.in_(allowed))
    return list(g.db.scalars(q))


@bp.get("/")
@page_login_required
def dashboard():
    return render_template("dashboard.html", **_dashboard_data())


@bp.get("/partials/nodes")
@page_login_required
def nodes_partial():
    return render_template("_nodes.html", **_dashboard_data())


def _dashboard_data() -> dict:
    nodes = _visible_nodes()
    clusters = {a.id: a for a in g.db.scalars(select(Area))}
    return {"nodes": nodes, "clusters": clusters,
            "online": sum(1 for n in nodes if n.online), "total": len(nodes)}


@bp.get("/bulletins")
@page_login_required
def bulletins():
    rows = bulletin_service.visible_bulletins(g.db, g.user, limit=100)
    broadcasts = [bc for bc in g.db.scalars(select(Broadcast).order_by(Broadcast.id.desc())
                                            .limit(50))
                  if broadcast_visible(g.db, g.user, bc)]
    return render_template("bulletins.html", bulletins=rows, broadcasts=broadcasts,
                           can_approve=auth.can(g.user, "bulletin.approve"))


@bp.route("/bulletins/new", methods=["GET", "POST"])
@page_login_required
def new_bulletin():
    user = g.user
    allowed = auth.user_area_ids(g.db, user)
    areas = [a for a in g.db.scalars(select(Area).order_by(Area.id))
             if a.kind != "cluster" and (allowed is None or a.id in allowed)]
    can_approve = auth.can(user, "bulletin.approve") and auth.can(user, "broadcast.write")
    error, form = None, {}
    if request.method == "POST":
        form = request.form.to_dict()
        try:
            if not auth.can(user, "bulletin.write"):
                raise ApiError(403, "forbidden", "err.forbidden")
            upload = request.files.get("file")
            if form.get("source") == "upload":
                upload_req = read_form(B.BulletinUpload, {
                    k: v for k, v in form.items() if k in ("title", "category", "area_id")})
                b = bulletin_service.create_upload_bulletin(g.db, speech(), user, upload_req,
                                                            upload.read() if upload else None)
                area_id = upload_req.area_id
            else:
                req = read_form(B.BulletinCreate, form)
                req.spoken_text = _edited_spoken_text(form, req.area_id)
                b = bulletin_service.create_text_bulletin(g.db, speech(), user, req)
                area_id = req.area_id
            bulletin_service.transition(g.db, user, b, "submit")
            if form.get("action") == "broadcast_now":
                if not can_approve:
                    raise ApiError(403, "forbidden", "err.forbidden")
                bulletin_service.transition(g.db, user, b, "approve")
                if area_id is None:
                    raise ApiError(400, "no_targets", "err.no_targets")
                bc = create_broadcast(g.db, settings(), user, B.parse(B.BroadcastCreate, {
                    "bulletin_id": b.id, "targets": {"areas": [area_id]},
                    "priority": form.get("priority", "normal")}))
                g.db.commit()
                flash(t("bulletin.created"))
                return redirect(url_for("web.broadcast", broadcast_id=bc.id))
            g.db.commit()
            flash(t("bulletin.submitted"))
            return redirect(url_for("web.bulletins"))
        except ApiError as err:
            g.db.rollback()
            error = err.message()
    return render_template("bulletin_form.html", areas=areas, categories=CATEGORIES,
                           voices=B.VOICES, can_approve=can_approve, error=error,
                           form=form), 400 if error else 200


def _edited_spoken_text(form: dict, area_id: int | None) -> str | None:
    """The spoken form the author corrected in the preview; None when it was left as made."""
    spoken = (form.get("spoken_text") or "").strip()
    if not spoken or not (form.get("text") or "").strip():
        return None
    made = bulletin_service.normalized_text(g.db, form["text"], area_id)
    return None if spoken == made else spoken


@bp.post("/partials/preview")
@page_login_required
def preview_partial():
    form = request.form.to_dict()
    try:
        req = read_form(B.PreviewCreate, form)
        req.spoken_text = _edited_spoken_text(form, req.area_id)
        answer = bulletin_service.preview(g.db, speech(), g.user, req)
        g.db.commit()
        return render_template("_preview.html", preview=answer, error=None)
    except ApiError as err:
        g.db.rollback()
        return render_template("_preview.html", preview=None, error=err.message())


@bp.post("/bulletins/<int:bulletin_id>/review")
@page_login_required
def review_bulletin(bulletin_id: int):
    action = request.form.get("action")
    try:
        if action not in ("approve", "reject") or not auth.can(g.user, "bulletin.approve"):
            raise ApiError(403, "forbidden", "err.forbidden")
        b = bulletin_service.get_bulletin(g.db, g.user, bulletin_id, manage=True)
        step = read_form(B.BulletinAction, request.form.to_dict())
        bulletin_service.transition(g.db, g.user, b, action, step.comment,
                                    seen_sha256=step.sha256)
        g.db.commit()
        flash(t({"approve": "bulletin.approved", "reject": "bulletin.rejected"}[action]))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.bulletins"))


def _broadcast_data(broadcast_id: int) -> dict:
    bc = g.db.get(Broadcast, broadcast_id)
    if bc is None or not broadcast_visible(g.db, g.user, bc):
        abort(404)
    report = broadcast_json(g.db, bc, settings().timezone)
    slots = None
    if bc.recurrence is not None:  # a series: each occurrence's state on each node
        now = utcnow().replace(tzinfo=dt.UTC)
        start, end = reports.slot_window(now)
        slots = reports.series_slots_json(g.db, settings().timezone, bc, start=start, end=end,
                                          now=now,
                                          grace=dt.timedelta(seconds=settings().airplay_grace_s))
        for o in slots["occurrences"]:  # shown in the configured zone (local_time)
            o["start"] = dt.datetime.fromisoformat(o["start_at"]).replace(tzinfo=None)
    return {"bc": bc, "report": report, "bulletin": bc.bulletin, "slots": slots,
            "slot_states": list(SlotState)}


@bp.get("/broadcasts/<int:broadcast_id>")
@page_login_required
def broadcast(broadcast_id: int):
    return render_template("broadcast.html", **_broadcast_data(broadcast_id))


@bp.get("/partials/broadcasts/<int:broadcast_id>")
@page_login_required
def broadcast_partial(broadcast_id: int):
    return render_template("_broadcast.html", **_broadcast_data(broadcast_id))
