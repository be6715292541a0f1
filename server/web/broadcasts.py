"""A broadcast's page: what it airs and its per-node progress (for a series, each occurrence's
state on each node), refreshed live. An occurrence reaching more than MAX_LISTED nodes names only
those whose state needs a look (not planned or played), at most MAX_LISTED; its counts by state
cover every node (each node judged as the API's slot listing judges it, without a line each:
server.reports.series_occurrences). The live part answers 304 Not Modified while nothing it shows
changed."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from flask import render_template

from .. import reports
from ..broadcasts import broadcast_visible
from ..context import settings
from ..deliveries import SlotState
from ..errors import not_found
from ..models import Broadcast, utcnow
from ..auth import caller
from ..request_globals import g
from ..serializers import broadcast_json
from . import bp, page

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

# nodes named per occurrence of a series: every one of a ward's hundred nodes named at each of
# its occurrences was half a megabyte a render at 1,000 nodes (docs/benchmarks.md)
MAX_LISTED = 50
ROUTINE = {SlotState.SCHEDULED, SlotState.DELIVERED, SlotState.READY, SlotState.PLAYED}


def _broadcast_data(broadcast_id: int) -> dict[str, Any]:
    bc: Broadcast | None = g.db.get(Broadcast, broadcast_id)
    if bc is None or not broadcast_visible(g.db, caller(), bc):
        raise not_found("broadcast")
    report = broadcast_json(g.db, bc, settings().timezone)
    slots = None
    if bc.recurrence is not None:  # a series: each occurrence's state on each node
        now = utcnow().replace(tzinfo=dt.UTC)
        start, end = reports.slot_window(now)
        occurrences = reports.series_occurrences(
            g.db, settings().timezone, bc, start=start, end=end, now=now,
            grace=dt.timedelta(seconds=settings().airplay_grace_s), listed=MAX_LISTED,
            routine=ROUTINE)
        for o in occurrences:  # shown in the configured zone (local_time)
            o["start"] = dt.datetime.fromisoformat(o["start_at"]).replace(tzinfo=None)
        slots = {"occurrences": occurrences}
    return {"bc": bc, "report": report, "bulletin": bc.bulletin, "slots": slots,
            "slot_states": list(SlotState)}


@bp.get("/broadcasts/<int:broadcast_id>")
@page()
def broadcast(broadcast_id: int) -> str:
    return render_template("broadcast.html", **_broadcast_data(broadcast_id))


@bp.get("/partials/broadcasts/<int:broadcast_id>")
@page()
def broadcast_partial(broadcast_id: int) -> Response:
    from .dashboard import conditional  # here: the dashboard imports this module's neighbours
    return conditional(render_template("_broadcast.html", **_broadcast_data(broadcast_id)))
