"""Times as the API reads and writes them: ISO 8601 or epoch ms in, ISO 8601 UTC out, and when
the dispatcher sends a broadcast."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .bodies import read_time
from .errors import bad_request


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z") \
        if value else None


def parse_time(value: Any, field: str, tz: dt.tzinfo) -> dt.datetime | None:
    """A query's time: ISO 8601 (a time without zone is in ``tz``, the configured zone) or epoch
    ms -> naive UTC, as a request body's (server.bodies.ApiTime)."""
    if value is None:
        return None
    try:
        return read_time(value, tz)
    except ValueError as err:
        raise bad_request("err.invalid_field", field=field, detail=str(err)) from None


def due_time(start_at: dt.datetime | None, now: dt.datetime, lead_s: int) -> dt.datetime:
    """When the dispatcher sends a broadcast: now, or ``lead_s`` (schedule_lead_s) before its
    start."""
    if start_at is None:
        return now
    return max(now, start_at - dt.timedelta(seconds=lead_s))
