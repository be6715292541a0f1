"""When the amplifier is powered, and what its fault input raises (the agent's worker calls it).

- On ``lead_ms`` before something plays: a waiting item due within ``lead_ms`` switches the
  relay on. An item that was known before it was due (a desired-state slot, a command with a
  future ``start_at``) still starts at its time, so the relay goes on ``lead_ms`` ahead of it;
  an item that is due at once (an immediate command) waits until the relay has been on for
  ``lead_ms``.
- Off after ``idle_off_s`` with nothing playing, and nothing due within ``idle_off_s``
  (so a relay is not clicked off and on again between two bulletins close together).
- The ``amp`` command: ``on`` switches on now (the idle rule then applies); ``off`` switches off
  and holds the amplifier off, playback too, until an ``amp`` ``on`` (maintenance on the
  speaker line). The hold is what the agent stores (``amp_on``) and restores at start.
- A failed switch raises ``amp_fault`` once, then is retried every ``RETRY_MS`` without a new
  alarm until a switch works again; playback does not wait for a relay that does not obey.
- The fault input (protect/thermal): ``amp_fault`` once when it asserts, again only after it
  was released and asserts anew; ``fault`` is its state for telemetry.

An amplifier without a relay (``has_relay`` False) is only switched by ``amp`` commands.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .amp import AmpError, Amplifier
from .rules import QueueItem, start_skip_reason

log = logging.getLogger(__name__)

RETRY_MS = 30_000

Alarm = Callable[[str], None]


class AmpControl:
    """The relay's power around playback. Not thread-safe: the agent's worker owns it, except
    ``fault`` (set from the fault watcher's thread) and ``alarm`` (which must be thread-safe)."""

    def __init__(self, amplifier: Amplifier, *, lead_ms: int, idle_off_s: float, alarm: Alarm,
                 clock: Callable[[], int]):
        self.amplifier = amplifier
        self.clock = clock          # ms: when a switch is done (the lead counts from there)
        self.lead_ms = lead_ms
        self.idle_off_ms = int(idle_off_s * 1000)
        self.alarm = alarm
        self.held_off = False
        self.fault: bool | None = None
        self._auto = amplifier.has_relay
        self._on_since: int | None = None      # when this controller switched it on
        self._idle_since: int | None = None
        self._first_seen: dict[str, int] = {}
        self._failed_at: int | None = None
        self._wake: int | None = None

    # --- start, command --------------------------------------------------------------------------
    def restore(self, stored_on: bool | None, now: int) -> None:
        """Apply the last ``amp`` command's state (None: never commanded) and start watching
        the fault input. A relay starts off; a held-off amplifier stays off."""
        self.amplifier.watch_fault(self._on_fault)
        if stored_on is None:
            return
        self.held_off = not stored_on
        if self._auto and stored_on:
            return  # automatic: off until something is due
        self.switch(stored_on, now)

    def command(self, on: bool) -> None:
        """An ``amp`` command; AmpError when the relay does not obey (the caller reports it)."""
        self.held_off = not on
        self.amplifier.switch(on)
        self._switched(on)
        # the idle time counts from when the relay went on, not from when the command was read
        self._idle_since = self._on_since if on else None

    def switch(self, on: bool, now: int) -> bool:
        """Switch, raising ``amp_fault`` once for a relay that does not obey; True when it did."""
        try:
            self.amplifier.switch(on)
        except AmpError as err:
            if self._failed_at is None:
                self.alarm(f"switching the amplifier {'on' if on else 'off'}: {err}")
            self._failed_at = now
            return False
        self._switched(on)
        return True

    def _switched(self, on: bool) -> None:
        self._failed_at = None
        self._on_since = self.clock() if on else None
        log.info("amplifier %s", "on" if on else "off")

    # --- around playback -------------------------------------------------------------------------
    def update(self, now: int, playing: QueueItem | None, waiting: Iterable[QueueItem],
               quiet: bool) -> None:
        """Switch the relay for what plays now and what is due soon (the worker, each tick)."""
        due = [i for i in waiting
               if start_skip_reason(i, max(now, i.ready_at), quiet) is None]
        self._first_seen = {i.key: self._first_seen.get(i.key, now) for i in due}
        self._wake = None
        if not self._auto or self.held_off:
            return
        retry = self._failed_at is None or now - self._failed_at >= RETRY_MS
        next_at = min((i.ready_at for i in due), default=None)
        on = self.amplifier.state() is True
        if playing is not None or (next_at is not None and next_at - self.lead_ms <= now):
            self._idle_since = None
            if not on and retry:
                self.switch(True, now)
            if self._on_since is not None and now < self._on_since + self.lead_ms:
                self._wake = self._on_since + self.lead_ms
            return
        if next_at is not None:
            self._wake = next_at - self.lead_ms
        if not on:
            return
        if self._idle_since is None:
            self._idle_since = now
        off_at = self._idle_since + self.idle_off_ms
        if now >= off_at and (next_at is None or next_at - now > self.idle_off_ms):
            if retry and self.switch(False, now):
                self._idle_since = None
        elif now < off_at:
            self._wake = min(off_at, self._wake or off_at)

    def may_start(self, item: QueueItem, now: int) -> bool:
        """Whether ``item`` may start now as far as the amplifier goes."""
        if not self._auto or self.held_off or self._failed_at is not None or not self.lead_ms:
            return True
        if item.key not in self._first_seen:
            return True   # it will not play (quiet hours, late, expired): rules.plan skips it
        if self._on_since is None:
            return self.amplifier.state() is True  # on, but not switched by us: warm
        if now >= self._on_since + self.lead_ms:
            return True
        return self._first_seen.get(item.key, now) < item.ready_at   # known ahead: on time

    def gate(self, ready: Callable[[QueueItem], bool], now: int) -> Callable[[QueueItem], bool]:
        """``ready`` narrowed by :meth:`may_start`, for rules.plan."""
        return lambda item: ready(item) and self.may_start(item, now)

    def wake_at(self, other: int | None) -> int | None:
        """The earlier of ``other`` and when this controller next needs a tick."""
        times = [t for t in (other, self._wake) if t is not None]
        return min(times, default=None)

    # --- the fault input -------------------------------------------------------------------------
    def _on_fault(self, asserted: bool) -> None:
        """From the fault watcher's thread: at its first reading and at each change."""
        was, self.fault = self.fault, asserted
        if asserted and not was:
            log.error("amplifier fault input asserted")
            self.alarm(self.amplifier.fault_detail())
        elif was and not asserted:
            log.warning("amplifier fault input released")
