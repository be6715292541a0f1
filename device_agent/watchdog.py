"""systemd's notification protocol (sd_notify) without a library: one datagram per message to the
AF_UNIX socket named by ``$NOTIFY_SOCKET``.

The unit (hardware/systemd/loa-agent.service) is ``Type=notify`` with ``WatchdogSec``: the agent
says ``READY=1`` once it runs, then ``WATCHDOG=1`` at least every half of ``$WATCHDOG_USEC``
while its worker still turns (``Agent.alive``); an agent that hangs stops sending and systemd
restarts it. Without ``$NOTIFY_SOCKET`` (started by hand, in a test, in a chroot) it does
nothing.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def watchdog_interval_s(env: Mapping[str, str] | None = None,
                        pid: int | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half the unit's ``WatchdogSec``), or None when the
    watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return usec / 2_000_000


def _address(name: str) -> str | bytes:
    # "@name" is a socket in the abstract namespace (systemd's own notation)
    return b"\0" + name[1:].encode() if name.startswith("@") else name


class Notifier:
    """Sends sd_notify messages; every call is a no-op without a notify socket, and a send that
    fails is logged, never raised (the agent must outlive its supervisor's socket)."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        env = os.environ if env is None else env
        self.socket_name = env.get("NOTIFY_SOCKET", "")
        self.interval_s = watchdog_interval_s(env)
        self._clock = clock
        self._last_ping: float | None = None
        self._sock: socket.socket | None = None
        if self.socket_name:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=…"``) as one message; True when sent."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), _address(self.socket_name))
        except OSError as err:
            log.warning("sd_notify to %s failed: %s", self.socket_name, err)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def ping_if_due(self, healthy: bool) -> bool:
        """``WATCHDOG=1`` when half the watchdog interval has passed since the last one and the
        agent is ``healthy``; called from the main loop."""
        if self.interval_s is None or not healthy:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self.interval_s:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_ping = now
        return sent

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
