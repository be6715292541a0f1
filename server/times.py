"""Times as the API reads and writes them: ISO 8601 or epoch ms in, ISO 8601 UTC out, and when
the dispatcher sends a broadcast."""
from __future__ import annotations

import datetime as dt
from typing import Any

from .errors import bad_request
from .validate import whole

MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z


def iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z") \
        if value else None


def parse_time(value: Any, field: str, tz: dt.tzinfo) -> dt.datetime | None:
    """ISO 8601 (a time without zone is in ``tz``, the configured zone) or epoch ms -> naive
    UTC."""
    if value is None:
        return None
    value = whole(value)
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_EPOCH_MS:
                raise ValueError("epoch ms out of range")
            return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc).replace(tzinfo=None)
        if not isinstance(value, str):
            raise bad_request("err.invalid_field", field=field, detail="ISO 8601 or epoch ms")
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        # not a time, or one out of the range a clock or a database column holds
        raise bad_request("err.invalid_field", field=field, detail="ISO 8601") from None


def due_time(start_at: dt.datetime | None, now: dt.datetime, lead_s: int) -> dt.datetime:
    """When the dispatcher sends a broadcast: now, or ``lead_s`` (schedule_lead_s) before its
    start."""
    if start_at is None:
        return now
    return max(now, start_at - dt.timedelta(seconds=lead_s))
