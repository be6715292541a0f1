"""A broadcast's page: what it airs and its per-node progress, refreshed live."""
from __future__ import annotations

from flask import g, render_template

from ..broadcasts import broadcast_visible
from ..context import settings
from ..errors import not_found
from ..models import Broadcast
from ..serializers import broadcast_json
from . import bp, page


def _broadcast_data(broadcast_id: int) -> dict:
    bc = g.db.get(Broadcast, broadcast_id)
    if bc is None or not broadcast_visible(g.db, g.user, bc):
        raise not_found("thing.broadcast")
    report = broadcast_json(g.db, bc, settings().timezone)
    return {"bc": bc, "report": report, "bulletin": bc.bulletin}


@bp.get("/broadcasts/<int:broadcast_id>")
@page()
def broadcast(broadcast_id: int):
    return render_template("broadcast.html", **_broadcast_data(broadcast_id))


@bp.get("/partials/broadcasts/<int:broadcast_id>")
@page()
def broadcast_partial(broadcast_id: int):
    return render_template("_broadcast.html", **_broadcast_data(broadcast_id))
