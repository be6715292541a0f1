"""Alerts: the list (open, acknowledged and resolved tabs, filtered by area and kind) with each
alert's node, area, what is wrong, first and last seen and how often, who acknowledged or
resolved it and when; technicians, operators and admins acknowledge and resolve them with a
comment (the API's checks and audit entries: server.alerts.take_step), and come back to the
page, tab and filters they acted from.

A province has hundreds of open alerts: the list shows PAGE alerts a page (?page=, newest
first), with how many there are of each kind in the tab and area (one grouped count); a page
costs the same statements whatever the number of alerts
(tests/server/test_alerts_page_scale.py)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import alerts as alert_service
from .. import auth as access
from .. import bodies as B
from ..context import settings
from ..errors import ApiError, not_found
from ..i18n import current_language, t
from ..models import Alert, Area, area_subtree_ids, utcnow
from ..request_globals import g
from . import bp, page, read_form, user_areas

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

PAGE = 50  # alerts a page
TABS = tuple(s.value for s in alert_service.State)


def _int_arg(name: str, args: Mapping[str, str] | None = None) -> int | None:
    value = (request.args if args is None else args).get(name) or ""
    return int(value) if value.isdecimal() and len(value) < 10 else None


def visible_alert(alert_id: int) -> Alert:
    """The alert, when it is in the user's areas (404 otherwise, as the API answers)."""
    alert: Alert | None = g.db.get(Alert, alert_id)
    if alert is None or not alert_service.visible(g.db, alert,
                                                  access.user_area_ids(g.db, access.caller())):
        raise not_found("thing.alert")
    return alert


def alert_rows(alerts: list[Alert]) -> list[dict[str, Any]]:
    """Alerts as the page shows them: the API's texts in the user's language, and who acted."""
    names = alert_service.usernames(g.db, alerts)
    # the rows themselves, held while the zones are looked up: their walk up the area tree
    # (session.get) then finds them in the session instead of one statement per area
    areas = {a.id: a for a in g.db.scalars(select(Area))}
    lang, tz = current_language(), settings().timezone
    return [{"alert": a, "area": areas[a.area_id].name if a.area_id in areas else "",
             "kind_text": t(f"alert.kind.{a.kind}", lang),
             "text": alert_service.detail_text(a, lang, alert_service.zone(g.db, a, tz)),
             "acked_by": names.get(a.acknowledged_by or 0),
             "resolved_by": names.get(a.resolved_by or 0)} for a in alerts]


@bp.get("/alerts")
@page()
def alerts() -> str:
    state = request.args.get("state") or "open"
    if state not in TABS:
        state = "open"
    allowed = access.user_area_ids(g.db, access.caller())
    areas = user_areas()
    area_id = _int_arg("area")
    scope = allowed
    if area_id is not None and any(a.id == area_id for a in areas):
        below = area_subtree_ids(g.db, [area_id])
        scope = below if allowed is None else below & allowed
    else:
        area_id = None
    kind = request.args.get("kind") or None
    kinds = [k.value for k in alert_service.Kind]
    if kind not in kinds:
        kind = None
    counts = alert_service.kind_counts(g.db, scope, [state])
    total = counts.get(kind, 0) if kind else sum(counts.values())
    pages = max(1, -(-total // PAGE))
    number = min(pages, max(1, _int_arg("page") or 1))
    rows = alert_service.listing(g.db, scope, [state], kind, limit=PAGE,
                                 offset=(number - 1) * PAGE)
    first = (number - 1) * PAGE
    return render_template("alerts.html", rows=alert_rows(rows), state=state, tabs=TABS,
                           areas=areas, area_id=area_id, kind=kind, kinds=kinds,
                           counts=counts, total=total, page_no=number, pages=pages,
                           first=first + 1 if rows else 0, last=first + len(rows),
                           page_args={"state": state, "area": area_id, "kind": kind})


@bp.post("/alerts/<int:alert_id>/<any(ack, resolve):action>")
@page("alert.write")
def alert_step(alert_id: int, action: str) -> Response:
    form = request.form
    back: dict[str, Any] = {"state": form.get("state") if form.get("state") in TABS else "open",
                            "area": _int_arg("area", form), "page": _int_arg("page", form),
                            "kind": form.get("kind") or None}
    if back["kind"] not in {k.value for k in alert_service.Kind}:
        back["kind"] = None
    try:
        alert = visible_alert(alert_id)
        step = read_form(B.AlertAction, {"comment": request.form.get("comment", "")})
        alert_service.take_step(g.db, alert, action, access.caller(), step.comment or None,
                                utcnow())
        g.db.commit()
        flash(t(f"alerts.done_{action}", id=alert.id))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.alerts", **back))
