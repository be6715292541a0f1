"""Helpers of the airplay report's tests (test_airplay_api.py, and the alerts and area merges
that read the report): the report's period, rows made days ago, and a node's ``played`` event
through the bridge."""
from __future__ import annotations

import datetime as dt
import json
import uuid

from server.bridge import Bridge
from tests.server.helpers import TZ
from tests.transports import NoTransport

NOW = dt.datetime.now(TZ).replace(microsecond=0)
SIX = dt.datetime.combine(NOW.date() - dt.timedelta(days=3), dt.time(6), TZ)  # 3 days ago


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def back_date(s, model, key, days=5):
    """Test set-up: the row made ``days`` ago, so the report plans what fell after it."""
    with s.app.extensions["db_sessions"]() as db:
        row = db.get(model, key)
        row.created_at -= dt.timedelta(days=days)
        db.commit()


def report(s, query="", **kw):
    return s.ok("GET", f"/api/v1/reports/airplay{query}", **kw)


def event(s, node_id, **fields):
    bridge = Bridge(s.app.extensions["db_sessions"], NoTransport(), s.settings.topic_prefix,
                    tz=s.settings.timezone)
    bridge.handle(f"{s.settings.topic_prefix}/nodes/{node_id}/events", json.dumps({
        "v": 1, "id": str(uuid.uuid4()), "ts": ms(NOW), **fields}).encode())


def played(s, node_id, sha256, at, length_ms, result="completed", reason=None, **ids):
    event(s, node_id, type="played", item_id="bc-x", sha256=sha256, scheduled_at=ms(at),
          started_at=ms(at) if length_ms is not None else None,
          ended_at=ms(at) + length_ms if length_ms is not None else None, result=result,
          reason=reason, **ids)


def window(start, end):
    return f"?from={start.isoformat().replace('+', '%2B')}&to={end.isoformat().replace('+', '%2B')}"
