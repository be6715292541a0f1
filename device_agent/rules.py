"""The agent's functional core: the waiting line, priority and preemption, quiet hours, the
late/expired rules, stop targets and trust-key arithmetic, as pure functions (PROTOCOL.md).

No I/O and no clock here: the shell (agent.py) passes ``now_ms`` in and acts on what comes back,
so every rule is tested directly (tests/agent/test_agent_rules.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any

from .protocol import EMERGENCY, LATE_SLOT_MS, NodeReason

FULL_VOLUME = 100


class ItemKind(StrEnum):
    """What a QueueItem came from."""
    PLAY = "play"      # a play command
    SLOT = "slot"      # a slot of the desired state
    TEST = "test"      # a test command (the tone or the acoustic self-test)


@dataclass(frozen=True)
class QueueItem:
    """One thing to play: an immediate command, a desired-state slot, or a test tone.

    ``ready_at`` is when it may start (its ``start_at``, or its arrival for an immediate command);
    ``seq`` is the arrival counter that orders equal priorities; ``exp`` (commands only) is the
    envelope's expiry, after which a command that has not started is skipped ``expired``.
    """

    key: str                      # "cmd:<envelope id>" or "slot:<slot_id>"
    kind: ItemKind
    item_id: str
    priority: int
    seq: int
    ready_at: int
    scheduled_at: int | None = None
    exp: int | None = None
    cmd_id: str | None = None
    slot_id: str | None = None
    sha256: str | None = None
    volume: int | None = None
    repeat: int = 1
    media: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def is_slot(self) -> bool:
        return self.kind == ItemKind.SLOT


@dataclass(frozen=True)
class Plan:
    """What to do now: items to drop (with the reason), the item to start, whether that start
    preempts what plays, and the next time the line can change by itself (None: never)."""

    skip: tuple[tuple[QueueItem, str], ...] = ()
    start: QueueItem | None = None
    preempt: bool = False
    wake_at: int | None = None


def line_order(item: QueueItem) -> tuple[int, int, int]:
    """Sort key of the waiting line: priority (higher first), then readiness, then arrival."""
    return (-item.priority, item.ready_at, item.seq)


def command_ready_at(start_at: int | None, received_at: int) -> int:
    """An immediate command may start at ``start_at``; one whose start has passed, at once."""
    return max(start_at or 0, received_at)


def start_skip_reason(item: QueueItem, now_ms: int, quiet: bool) -> NodeReason | None:
    """Why ``item`` may not start now (``expired``, ``late``, ``quiet_hours``), or None.

    Judged when the item would start, so also after it waited behind another one.
    """
    if item.exp is not None and now_ms > item.exp:
        return NodeReason.EXPIRED
    if item.is_slot and item.scheduled_at is not None and now_ms - item.scheduled_at > LATE_SLOT_MS:
        return NodeReason.LATE
    if quiet and item.priority < EMERGENCY:
        return NodeReason.QUIET_HOURS
    return None


def plan(now_ms: int, playing: QueueItem | None, waiting: Sequence[QueueItem], *, quiet: bool,
         ready: Callable[[QueueItem], bool] = lambda item: True) -> Plan:
    """Decide the next step of the line.

    A waiting command past its ``exp`` is skipped ``expired``. Of the items that are due and
    whose media is ready, the best by :func:`line_order` starts when nothing plays, or when it
    has a strictly higher priority than what plays (equal never preempts, not even 9 over 9).
    A candidate that may not start (late, quiet hours) is skipped and the next one is tried.
    """
    skip: list[tuple[QueueItem, str]] = []
    alive: list[QueueItem] = []
    for item in waiting:
        if item.exp is not None and now_ms > item.exp:
            skip.append((item, NodeReason.EXPIRED))
        else:
            alive.append(item)
    start = None
    skipped_keys = set()
    for item in sorted(alive, key=line_order):
        if item.ready_at > now_ms or not ready(item):
            continue
        if playing is not None and item.priority <= playing.priority:
            break
        reason = start_skip_reason(item, now_ms, quiet)
        if reason:
            skip.append((item, reason))
            skipped_keys.add(item.key)
            continue
        start = item
        break
    times = [i.ready_at for i in alive if i.ready_at > now_ms and i.key not in skipped_keys]
    times += [i.exp + 1 for i in alive if i.exp is not None and i.key not in skipped_keys
              and (start is None or i.key != start.key)]
    return Plan(tuple(skip), start, start is not None and playing is not None,
                min(times, default=None))


def stop_targets(playing: QueueItem | None, waiting: Iterable[QueueItem], item_id: str | None,
                 max_priority: int | None) -> list[QueueItem]:
    """The items a ``stop`` command ends.

    With ``item_id``: that item wherever it is and whatever its priority. Without: what plays at
    ``max_priority`` or lower, and every waiting *command* at that priority or lower (future
    ``start_at`` included); waiting desired slots stay, the server removes those with a new
    desired state.
    """
    everything = ([playing] if playing is not None else []) + list(waiting)
    if item_id is not None:
        return [i for i in everything if i.item_id == item_id]
    if max_priority is None:
        return []
    out = []
    if playing is not None and playing.priority <= max_priority:
        out.append(playing)
    out += [i for i in waiting if i.priority <= max_priority and not i.is_slot]
    return out


def effective_volume(priority: int, item_volume: int | None, current: int) -> int:
    """Emergency plays at full volume; otherwise the item's own volume, else the node's."""
    if priority >= EMERGENCY:
        return FULL_VOLUME
    return current if item_volume is None else item_volume


# --- quiet hours ------------------------------------------------------------------------------

def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_quiet_hours(now_ms: int, intervals: Iterable[Mapping[str, str]], tz: tzinfo) -> bool:
    """True when local time in ``tz`` falls in one of the [from, to) intervals.

    An interval may cross midnight (22:00-05:00); from == to means no quiet hours.
    """
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    minute = local.hour * 60 + local.minute
    for interval in intervals:
        start, end = _minutes(interval["from"]), _minutes(interval["to"])
        if start == end:
            continue
        if start < end:
            if start <= minute < end:
                return True
        elif minute >= start or minute < end:
            return True
    return False


# --- trust keys -------------------------------------------------------------------------------

class KeyChangeRefused(ValueError):
    """A ``keys`` command the node refuses; ``reason`` goes into the failed ack."""

    def __init__(self, reason: NodeReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class KeyState:
    """Trust on top of the provisioning keys: keys added and kids revoked by ``keys`` commands."""

    added: Mapping[str, str] = field(default_factory=dict)
    revoked: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"added": dict(self.added), "revoked": sorted(self.revoked)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> KeyState:
        data = data or {}
        return cls(dict(data.get("added", {})), frozenset(data.get("revoked", ())))


def trusted_keys(provisioned: Mapping[str, str], state: KeyState) -> dict[str, str]:
    """kid -> base64 public key the node trusts now."""
    keys = {kid: pub for kid, pub in provisioned.items() if kid not in state.revoked}
    keys.update(state.added)
    return keys


def apply_key_change(provisioned: Mapping[str, str], state: KeyState,
                     add: Iterable[Mapping[str, str]], revoke: Iterable[str]) -> KeyState:
    """The key state after a ``keys`` command: revocations first, then additions.

    Raises KeyChangeRefused("last_key") when the revocations would leave no trusted key (the
    additions of the same command do not count: they come after).
    """
    revoke = list(revoke)
    current = trusted_keys(provisioned, state)
    remaining = {kid for kid in current if kid not in set(revoke)}
    if not remaining:
        raise KeyChangeRefused(NodeReason.LAST_KEY, "revoking would leave no trusted key")
    added = {kid: pub for kid, pub in state.added.items() if kid not in set(revoke)}
    revoked = set(state.revoked) | set(revoke)
    for key in add:
        added[key["kid"]] = key["public_key"]
        revoked.discard(key["kid"])
    return KeyState(added, frozenset(revoked))
