"""The agent under systemd's watchdog (device_agent/watchdog.py, the unit's ``Type=notify`` and
``WatchdogSec``): it tells the supervisor it is ready, pings while its worker turns, stops
pinging when the worker hangs, and does nothing without a notify socket. Real AF_UNIX datagram
sockets stand in for systemd's."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from device_agent import agent as agent_module
from device_agent.watchdog import Notifier, watchdog_interval_s

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 15.0


@pytest.fixture
def notify_socket(tmp_path):
    """systemd's side: a datagram socket; yields (its path, a receive function)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))

    def receive(timeout: float = WAIT_S) -> list[str]:
        sock.settimeout(timeout)
        return sock.recv(4096).decode().split("\n")

    yield str(path), receive
    sock.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ready_reaches_the_notify_socket_with_a_status(notify_socket):
    path, receive = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("node hp-01-a")
    assert receive() == ["READY=1", "STATUS=node hp-01-a"]
    assert notifier.stopping()
    assert receive() == ["STOPPING=1"]
    notifier.close()


def test_abstract_notify_socket_is_reached():
    name = f"loa-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        sock.settimeout(WAIT_S)
        assert sock.recv(4096) == b"READY=1"
        notifier.close()
    finally:
        sock.close()


def test_watchdog_pings_every_half_interval_only_while_healthy(notify_socket):
    path, receive = notify_socket
    clock = Clock()
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, clock=clock)
    assert notifier.interval_s == 5.0
    assert notifier.ping_if_due(True)
    assert receive() == ["WATCHDOG=1"]
    clock.now += 4.9
    assert not notifier.ping_if_due(True)          # not due yet
    clock.now += 0.2
    assert not notifier.ping_if_due(False)         # due, but the agent hangs: no ping
    assert notifier.ping_if_due(True)
    assert receive() == ["WATCHDOG=1"]
    notifier.close()


def test_without_a_notify_socket_nothing_is_sent_and_nothing_fails():
    notifier = Notifier({"WATCHDOG_USEC": "10000000"})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.ping_if_due(True) and not notifier.stopping()
    notifier.close()


def test_a_vanished_notify_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready()
    assert "sd_notify" in caplog.text
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only():
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, pid=42) == 30
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, pid=43) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None


def test_a_hung_worker_is_not_alive(make_node, monkeypatch):
    h = make_node()
    assert h.agent is not None and h.agent.alive()
    monkeypatch.setattr(agent_module, "WORKER_STALE_S", 0.3)
    release = threading.Event()
    h.agent._inbox_handlers["hang"] = lambda _: release.wait(WAIT_S)
    h.agent._inbox.put(("hang", None))
    try:
        deadline = time.monotonic() + WAIT_S
        while h.agent.alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # alive() is a reading: poll it within the bound
        assert not h.agent.alive()
    finally:
        release.set()
    deadline = time.monotonic() + WAIT_S
    while not h.agent.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert h.agent.alive()


@pytest.mark.e2e  # the agent as a process of its own (README, Tests)
def test_the_agent_process_says_ready_then_pings_the_watchdog(notify_socket, tmp_path):
    """`loa-agent` as systemd runs it: READY=1 once started (connected or not: a node without
    its network still plays its schedule), then WATCHDOG=1, then STOPPING=1 on SIGTERM."""
    path, receive = notify_socket
    config = tmp_path / "agent.toml"
    config.write_text('node_id = "hp-01-a"\nstate_dir = "state"\n'
                      '[mqtt]\nhost = "127.0.0.1"\nport = 9\npassword = "p"\n'
                      '[player]\nkind = "file"\nsink_dir = "sink"\n'
                      '[[server_keys]]\nkid = "k"\n'
                      'public_key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="\n')
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="600000", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "device_agent", "--config", str(config),
                             "--log-level", "WARNING"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert receive() == ["READY=1", "STATUS=node hp-01-a"]
        assert receive() == ["WATCHDOG=1"]
        assert receive() == ["WATCHDOG=1"]   # again, half the 0.6 s interval later or so
        proc.send_signal(signal.SIGTERM)
        assert receive() == ["STOPPING=1"]
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()
