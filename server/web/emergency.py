"""The emergency panel (permission broadcast.emergency): an approved bulletin (or a text typed
there, rendered and approved in the same step) sent at once, at emergency priority, to the
areas ticked in the area tree, after a confirmation step that says what airs where; where a
ward asks for a second person (its ``emergency_confirm`` setting) the broadcast waits until
another approver confirms it on their own device (the "waiting for confirmation" list here and
on the dashboard), and nothing airs before. Each broadcast's panel shows its per-node progress
live and cancels it everywhere. The same domain functions and checks as the API:
server.broadcasts create_broadcast, confirm_broadcast, cancel_broadcast; server.bulletins for
the typed text."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from device_agent.protocol import EMERGENCY

from .. import auth as access
from .. import bodies as B
from .. import bulletins as bulletin_service
from ..broadcasts import (BroadcastStatus, broadcast_visible, cancel_broadcast,
                          confirm_broadcast, create_broadcast, target_node_ids)
from ..context import settings, speech
from ..errors import ApiError, ErrorCode, not_found
from ..i18n import t
from ..models import Area, Broadcast
from ..request_globals import g
from . import area_tree, bp, page, read_form
from .broadcasts import _broadcast_data

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

RECENT = 10


def _areas(form: MultiDict[str, str]) -> list[int]:
    """The ticked areas, read as a broadcast's targets are (none: no_targets) before a typed
    text is made into a bulletin for the first of them."""
    areas = [int(x) for x in form.getlist("areas") if x.isdecimal()]
    return B.parse(B.Targets, {"areas": areas}).areas


def _live_bulletin(form: MultiDict[str, str], areas: list[int]) -> int:
    """A text typed in the panel, rendered, submitted and approved in one step by the user
    (who may approve: the same steps as the bulletin page's "broadcast now"), of the first
    ticked area, category emergency: its bulletin id."""
    user = access.caller()
    if not access.can(user, "bulletin.approve"):
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    req = read_form(B.BulletinCreate, {"title": form.get("title", ""),
                                       "text": form.get("text", ""),
                                       "category": B.Category.EMERGENCY,
                                       "area_id": str(areas[0])})
    b = bulletin_service.create_text_bulletin(g.db, speech(), user, req)
    bulletin_service.transition(g.db, user, b, bulletin_service.BulletinStep.SUBMIT)
    bulletin_service.transition(g.db, user, b, bulletin_service.BulletinStep.APPROVE)
    return b.id


def _request_body(form: MultiDict[str, str]) -> B.BroadcastCreate:
    """The form as the API's broadcast body: the bulletin (chosen, or the typed text made into
    an approved one), the ticked areas, emergency priority, now."""
    areas = _areas(form)
    if form.get("source") == bulletin_service.BulletinSource.TEXT:
        bulletin: int | str = _live_bulletin(form, areas)
    else:
        chosen = form.get("bulletin_id") or ""
        bulletin = int(chosen) if chosen.isdecimal() else chosen
    return B.parse(B.BroadcastCreate, {
        "bulletin_id": bulletin, "targets": {"areas": areas}, "priority": EMERGENCY},
        tz=settings().tz)


def awaiting_confirmation() -> list[Broadcast]:
    """The emergency broadcasts in the user's areas waiting for a second person (none for a
    user who may not confirm): the panel's and the dashboard's list."""
    user = access.caller()
    if not access.can(user, "broadcast.emergency"):
        return []
    return [bc for bc in g.db.scalars(
        select(Broadcast).where(Broadcast.status == BroadcastStatus.AWAITING_CONFIRMATION)
        .order_by(Broadcast.id)) if broadcast_visible(g.db, user, bc)]


def _panel_lists() -> dict[str, list[Broadcast]]:
    user = access.caller()
    recent = [bc for bc in g.db.scalars(
        select(Broadcast).where(Broadcast.priority >= EMERGENCY)
        .order_by(Broadcast.id.desc()).limit(50)) if broadcast_visible(g.db, user, bc)]
    return {"awaiting": awaiting_confirmation(), "recent": recent[:RECENT]}


def _form_page(error: str | None = None, chosen: dict[str, Any] | None = None,
               status: int = 200) -> tuple[str, int]:
    approved = bulletin_service.visible_bulletins(
        g.db, access.caller(), status=bulletin_service.BulletinStatus.APPROVED, limit=100)
    return render_template("emergency.html", bulletins=approved, tree=area_tree(),
                           error=error, chosen=chosen or {}, **_panel_lists()), status


@bp.get("/emergency")
@page("broadcast.emergency")
def emergency() -> tuple[str, int]:
    return _form_page()


@bp.post("/emergency")
@page("broadcast.emergency")
def emergency_send() -> str | Response | tuple[str, int]:
    """``action=review``: the confirmation step (what would air where, whether a second person
    must confirm), checked by creating the broadcast and rolling it back; ``action=send``: it
    is created and its panel opens."""
    form = request.form
    chosen = {"bulletin_id": form.get("bulletin_id", ""), "source": form.get("source", ""),
              "title": form.get("title", ""), "text": form.get("text", ""),
              "areas": {x for x in form.getlist("areas")}}
    try:
        body = _request_body(form)
        bc = create_broadcast(g.db, settings(), access.caller(), body)
        if form.get("action") != "send":
            bulletin = bc.bulletin
            assert bulletin is not None  # the body names a bulletin
            typed = form.get("source") == bulletin_service.BulletinSource.TEXT
            review = {"title": bulletin.title, "text": bulletin.text if typed else None,
                      "media": None if typed else bulletin.media,
                      "nodes": len(target_node_ids(g.db, bc.target_areas, bc.target_nodes)),
                      "areas": [g.db.get(Area, a) for a in bc.target_areas],
                      "second_person": bc.status == BroadcastStatus.AWAITING_CONFIRMATION}
            g.db.rollback()  # the review keeps nothing: no broadcast, no typed bulletin
            return render_template("emergency_review.html", review=review, chosen=chosen,
                                   bulletin_id=body.bulletin_id, areas=body.targets.areas)
        g.db.commit()
    except ApiError as err:
        g.db.rollback()
        return _form_page(err.message(), chosen, err.status)
    flash(t("emergency.awaiting_flash" if bc.status == BroadcastStatus.AWAITING_CONFIRMATION
            else "emergency.sent_flash", id=bc.id))
    return redirect(url_for("web.emergency_panel", broadcast_id=bc.id))


def _emergency(broadcast_id: int) -> Broadcast:
    bc: Broadcast | None = g.db.get(Broadcast, broadcast_id)
    if bc is None or bc.priority < EMERGENCY or not broadcast_visible(g.db, access.caller(), bc):
        raise not_found("broadcast")
    return bc


@bp.get("/emergency/<int:broadcast_id>")
@page()
def emergency_panel(broadcast_id: int) -> str:
    bc = _emergency(broadcast_id)
    return render_template("emergency_panel.html", **_broadcast_data(bc.id),
                           awaiting=bc.status == BroadcastStatus.AWAITING_CONFIRMATION,
                           own=bc.created_by == access.caller().id,
                           can_cancel=bc.status not in (BroadcastStatus.CANCELLED,
                                                        BroadcastStatus.SKIPPED))


@bp.post("/emergency/<int:broadcast_id>/<any(confirm, cancel):action>")
@page("broadcast.emergency")
def emergency_step(broadcast_id: int, action: str) -> Response:
    """The second person's confirmation, or cancelling everywhere (the API's functions)."""
    try:
        bc = _emergency(broadcast_id)
        if action == "confirm":
            confirm_broadcast(g.db, settings(), access.caller(), bc)
        else:
            cancel_broadcast(g.db, settings(), access.caller(), bc)
        g.db.commit()
        flash(t({"confirm": "emergency.confirmed", "cancel": "emergency.cancelled"}[action],
                id=bc.id))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.emergency_panel", broadcast_id=broadcast_id))
