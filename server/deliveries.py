"""A broadcast's delivery to one node, and how its status moves forward."""
from __future__ import annotations

from .models import Delivery, utcnow

DELIVERY_RANK = {"pending": 0, "sent": 1, "received": 2, "started": 3}
TERMINAL = ("finished", "failed", "rejected", "preempted", "stopped", "skipped", "cancelled")


def advance_delivery(d: Delivery, status: str, reason: str | None) -> bool:
    """Move a delivery forward; a status never moves backward, a terminal one never changes."""
    if d.status in TERMINAL:
        return False
    if status not in TERMINAL and DELIVERY_RANK.get(status, 0) <= DELIVERY_RANK.get(d.status, 0):
        return False
    d.status, d.reason, d.updated_at = status, reason, utcnow()
    return True
