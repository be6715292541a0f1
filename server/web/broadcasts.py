"""A broadcast's page: what it airs and its per-node progress (for a series, each occurrence's
state on each node), refreshed live."""
from __future__ import annotations

import datetime as dt

from flask import g, render_template

from .. import reports
from ..broadcasts import broadcast_visible
from ..context import settings
from ..deliveries import SlotState
from ..errors import not_found
from ..models import Broadcast, utcnow
from ..serializers import broadcast_json
from . import bp, page


def _broadcast_data(broadcast_id: int) -> dict:
    bc = g.db.get(Broadcast, broadcast_id)
    if bc is None or not broadcast_visible(g.db, g.user, bc):
        raise not_found("thing.broadcast")
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
@page()
def broadcast(broadcast_id: int):
    return render_template("broadcast.html", **_broadcast_data(broadcast_id))


@bp.get("/partials/broadcasts/<int:broadcast_id>")
@page()
def broadcast_partial(broadcast_id: int):
    return render_template("_broadcast.html", **_broadcast_data(broadcast_id))
