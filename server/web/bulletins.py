"""Bulletins: the list (filtered by status, category and words), each bulletin's page (text,
reading, audio, history), the approval queue, and the form that writes one (text with a preview
of its reading, or an uploaded recording) and may approve and broadcast it at once; an approved
bulletin's page broadcasts it now to an area. Reviews go through the API's own step
(server.bulletins.transition): an approval names the audio the approver heard and is refused
when the bulletin changed since."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from device_agent.protocol import PriorityName

from .. import auth as access
from .. import bodies as B
from .. import bulletins as bulletin_service
from .. import queries
from ..broadcasts import broadcast_visible, create_broadcast
from ..context import settings, speech
from ..errors import ApiError, ErrorCode
from ..i18n import t
from ..models import Broadcast
from ..request_globals import g
from . import bp, local_path, page, read_form, user_areas

if TYPE_CHECKING:
    from werkzeug.wrappers import Response


@bp.get("/bulletins")
@page()
def bulletins() -> str:
    """The bulletins the user may see, filtered by status, category and words of the title or
    text (a GET form, so a filtered list is a link to share)."""
    user = access.caller()
    asked = queries.read(queries.BulletinPageQuery, request.args)
    rows = bulletin_service.visible_bulletins(g.db, user, asked.status, limit=100,
                                              category=asked.category, search=asked.q)
    broadcasts = [bc for bc in g.db.scalars(select(Broadcast).order_by(Broadcast.id.desc())
                                            .limit(50))
                  if broadcast_visible(g.db, user, bc)]
    return render_template("bulletins.html", bulletins=rows, broadcasts=broadcasts,
                           can_approve=access.can(user, "bulletin.approve"),
                           filters=asked, statuses=queries.BULLETIN_STATUSES,
                           categories=B.CATEGORIES)


@bp.get("/bulletins/<int:bulletin_id>")
@page()
def bulletin(bulletin_id: int) -> str:
    """One bulletin: its text, the reading that is spoken, its audio and its history (who did
    what, when); an approver reviews it here too."""
    user = access.caller()
    b = bulletin_service.get_bulletin(g.db, user, bulletin_id)
    may_broadcast = b.status == bulletin_service.BulletinStatus.APPROVED \
        and access.can(user, "broadcast.write")
    return render_template("bulletin.html", b=b,
                           can_approve=access.can(user, "bulletin.approve"),
                           areas=user_areas(clusters=False) if may_broadcast else [])


@bp.post("/bulletins/<int:bulletin_id>/broadcast")
@page("broadcast.write")
def broadcast_bulletin(bulletin_id: int) -> Response:
    """Broadcast an approved bulletin now to one area (the API's POST /broadcasts: its checks
    of the bulletin, the area and the role), then follow it on its page."""
    user = access.caller()
    b = bulletin_service.get_bulletin(g.db, user, bulletin_id)
    area = request.form.get("area_id", "")
    areas = [int(area)] if area.isdecimal() else []  # none chosen: the body's no_targets
    bc = create_broadcast(g.db, settings(), user, B.parse(B.BroadcastCreate, {
        "bulletin_id": b.id, "targets": {"areas": areas}, "priority": PriorityName.NORMAL}))
    g.db.commit()
    flash(t("bulletin.created"))
    return redirect(url_for("web.broadcast", broadcast_id=bc.id))


@bp.get("/bulletins/queue")
@page("bulletin.approve")
def approval_queue() -> str:
    """The bulletins waiting for approval, oldest first (the first sent is the first heard), each
    with its reading and its audio, to approve or reject with a comment, from a phone."""
    rows = bulletin_service.visible_bulletins(
        g.db, access.caller(), bulletin_service.BulletinStatus.PENDING, limit=100)
    return render_template("bulletin_queue.html", bulletins=rows[::-1])


@bp.route("/bulletins/new", methods=["GET", "POST"])
@page("bulletin.write")
def new_bulletin() -> Response | tuple[str, int]:
    user = access.caller()
    areas = user_areas(clusters=False)
    can_approve = access.can(user, "bulletin.approve") and access.can(user, "broadcast.write")
    error, form = None, {}
    if request.method == "POST":
        form = request.form.to_dict()
        try:
            upload = request.files.get("file")
            if form.get("source") == bulletin_service.BulletinSource.UPLOAD:
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
            bulletin_service.transition(g.db, user, b, bulletin_service.BulletinStep.SUBMIT)
            if form.get("action") == "broadcast_now":
                if not can_approve:
                    raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
                bulletin_service.transition(g.db, user, b, bulletin_service.BulletinStep.APPROVE)
                bc = create_broadcast(g.db, settings(), user, B.parse(B.BroadcastCreate, {
                    "bulletin_id": b.id,  # no area: the body's no_targets
                    "targets": {"areas": [area_id] if area_id is not None else []},
                    "priority": form.get("priority", PriorityName.NORMAL)}))
                g.db.commit()
                flash(t("bulletin.created"))
                return redirect(url_for("web.broadcast", broadcast_id=bc.id))
            g.db.commit()
            flash(t("bulletin.submitted"))
            return redirect(url_for("web.bulletins"))
        except ApiError as err:
            g.db.rollback()
            error = err.message()
    return render_template("bulletin_form.html", areas=areas, categories=B.CATEGORIES,
                           voices=B.VOICES, can_approve=can_approve, error=error,
                           form=form), 400 if error else 200


def _edited_spoken_text(form: Mapping[str, str], area_id: int | None) -> str | None:
    """The spoken form the author corrected in the preview; None when it was left as made."""
    spoken = (form.get("spoken_text") or "").strip()
    if not spoken or not (form.get("text") or "").strip():
        return None
    made = bulletin_service.normalized_text(g.db, form["text"], area_id)
    return None if spoken == made else spoken


@bp.post("/partials/preview")
@page()
def preview_partial() -> str:
    form = request.form.to_dict()
    try:
        req = read_form(B.PreviewCreate, form)
        req.spoken_text = _edited_spoken_text(form, req.area_id)
        answer = bulletin_service.preview(g.db, speech(), access.caller(), req)
        g.db.commit()
        return render_template("_preview.html", preview=answer, error=None)
    except ApiError as err:
        g.db.rollback()
        return render_template("_preview.html", preview=None, error=err.message())


@bp.post("/bulletins/<int:bulletin_id>/review")
@page()
def review_bulletin(bulletin_id: int) -> Response:
    action = request.form.get("action")
    try:
        user = access.caller()
        if action not in bulletin_service.REVIEW or not access.can(user, "bulletin.approve"):
            raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
        b = bulletin_service.get_bulletin(g.db, user, bulletin_id, manage=True)
        step = read_form(B.BulletinAction, request.form.to_dict())
        bulletin_service.transition(g.db, user, b, bulletin_service.BulletinStep(action),
                                    step.comment, seen_sha256=step.sha256)
        g.db.commit()
        flash(t({"approve": "bulletin.approved", "reject": "bulletin.rejected"}[action]))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(local_path(request.form.get("next")) or url_for("web.bulletins"))
