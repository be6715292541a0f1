"""Times as the API writes them (ISO 8601 UTC; it reads them through server.bodies and
server.queries), and when the dispatcher sends a broadcast."""
from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z") \
        if value else None


def due_time(start_at: dt.datetime | None, now: dt.datetime, lead_s: int) -> dt.datetime:
    """When the dispatcher sends a broadcast: now, or ``lead_s`` (schedule_lead_s) before its
    start."""
    if start_at is None:
        return now
    return max(now, start_at - dt.timedelta(seconds=lead_s))
