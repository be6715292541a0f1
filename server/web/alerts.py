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

from typing import TYPE_CHECKING, Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from .. import alerts as alert_service
from .. import auth as access
from .. import bodies as B
from .. import queries
from ..context import settings
from ..errors import ApiError, not_found
from ..i18n import current_language, t
from ..models import Alert, Area, area_subtree_ids, utcnow
from ..request_globals import g
from . import bp, page, read_form, user_areas

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

PAGE = 50  # alerts a page
TABS = queries.ALERT_STATES
OPEN = alert_service.State.OPEN.value  # the tab shown when none is asked for


def visible_alert(alert_id: int) -> Alert:
    """The alert, when it is in the user's areas (404 otherwise, as the API answers)."""
    alert: Alert | None = g.db.get(Alert, alert_id)
    if alert is None or not alert_service.visible(g.db, alert,
                                                  access.user_area_ids(g.db, access.caller())):
        raise not_found("alert")
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
    asked = queries.read(queries.AlertPageQuery, request.args)
    state, kind = asked.state or OPEN, asked.kind
    allowed = access.user_area_ids(g.db, access.caller())
    areas = user_areas()
    area_id, scope = asked.area, allowed
    if area_id is None or all(a.id != area_id for a in areas):  # not the user's: all of theirs
        area_id = None
    else:
        below = area_subtree_ids(g.db, [area_id])
        scope = below if allowed is None else below & allowed
    kinds = list(queries.ALERT_KINDS)
    counts = alert_service.kind_counts(g.db, scope, [state])
    total = counts.get(kind, 0) if kind else sum(counts.values())
    pages = max(1, -(-total // PAGE))
    number = min(pages, asked.page)
    rows = alert_service.listing(g.db, scope, [state], kind, limit=PAGE,
                                 offset=(number - 1) * PAGE)
    first = (number - 1) * PAGE
    return render_template("alerts.html", rows=alert_rows(rows), state=state, tabs=TABS,
                           areas=areas, area_id=area_id, kind=kind, kinds=kinds,
                           counts=counts, total=total, page_no=number, pages=pages,
                           first=first + 1 if rows else 0, last=first + len(rows),
                           page_args={"state": state, "area": area_id, "kind": kind})


@bp.post(f"/alerts/<int:alert_id>/<any({', '.join(alert_service.AlertStep)}):action>")
@page("alert.write")
def alert_step(alert_id: int, action: str) -> Response:
    came = queries.read(queries.AlertPageQuery, request.form)  # the list it was sent from
    back: dict[str, Any] = {"state": came.state or OPEN, "area": came.area, "kind": came.kind,
                            "page": came.page if came.page > 1 else None}
    try:
        alert = visible_alert(alert_id)
        step = read_form(B.AlertAction, {"comment": request.form.get("comment", "")})
        alert_service.take_step(g.db, alert, alert_service.AlertStep(action), access.caller(),
                                step.comment or None, utcnow())
        g.db.commit()
        flash(t(f"alerts.done_{action}", id=alert.id))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.alerts", **back))
