"""The dispatcher's heavy passes (alerts, telemetry retention) run in a child process at the
lowest CPU priority once its duties are started (schedules/background.py): the same alerts as
in-process, the child kept for the next pass, started again when it died, and gone when the
dispatcher is killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from schedules.background import NICE, Background, PassFailed
from tests.server.helpers import Clock, bridge_of, make_dispatcher, node_ids, state

ROOT = Path(__file__).resolve().parents[2]
# real processes (the pass child, dispatcher processes) and their start-up, up to 5 s a test:
# end-to-end, as a test that needs the dispatcher's process is (README, Tests), so the fast
# tier (-m "not e2e") leaves them to make test
pytestmark = pytest.mark.e2e


def _gone(pid: int, within_s: float) -> bool:
    """Whether process ``pid`` has ended (or is a zombie waiting for its parent) within
    ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _offline_nodes(s, wards, clock):
    bridge = bridge_of(s)
    nodes = [node_ids(s, wards["mine"]["id"])[0], node_ids(s, wards["other"]["id"])[0]]
    for node_id in nodes:
        state(bridge, node_id, True, clock)
        state(bridge, node_id, False, clock)
    return nodes


def test_the_alert_pass_runs_in_a_child_at_the_lowest_priority_and_raises_the_same_alerts(
        app_only, wards):
    s = app_only
    clock = Clock()
    nodes = _offline_nodes(s, wards, clock)
    dispatcher = make_dispatcher(s, clock)
    dispatcher.background = Background(s.settings)
    try:
        assert dispatcher.evaluate_alerts() == 0  # within the hold-off
        child = dispatcher.background.pid
        assert child is not None and child != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, child) == NICE
        clock.forward(minutes=6)
        assert dispatcher.evaluate_alerts() == 2
        alerts = s.ok("GET", "/api/v1/alerts")["alerts"]
        assert sorted(a["node_id"] for a in alerts) == sorted(nodes)
        assert {a["kind"] for a in alerts} == {"node_offline"}
        clock.forward(minutes=1)
        assert dispatcher.evaluate_alerts() == 0  # found again: the same alerts
        assert dispatcher.background.pid == child  # one child for every pass
    finally:
        dispatcher.background.stop()
    assert _gone(child, 10)


def test_a_child_ignores_ctrl_c_is_started_again_when_it_ended_and_says_why_a_pass_failed(
        app_only, wards):
    s = app_only
    clock = Clock()
    _offline_nodes(s, wards, clock)
    background = Background(s.settings)
    try:
        background.run("retention", clock())
        first = background.pid
        assert first is not None
        os.kill(first, signal.SIGINT)  # Ctrl-C: the dispatcher, not the child, ends it
        assert background.run("alerts", clock(), True, None) == 0
        assert background.pid == first
        os.kill(first, signal.SIGTERM)  # systemd's stop: at once (the child this test started)
        assert _gone(first, 10)
        assert background.run("retention", clock()) is not None
        second = background.pid
        assert second not in (None, first)
        os.kill(second, signal.SIGKILL)
        assert _gone(second, 10)
        clock.forward(minutes=6)
        assert background.run("alerts", clock(), True, None) == 2
        assert background.pid not in (None, first, second)
        with pytest.raises(PassFailed, match="TypeError"):
            background.run("retention", "not a time")
        assert background.run("alerts", clock(), True, None) == 0  # and it goes on
    finally:
        background.stop()


def _dispatcher(s, tmp_path, then: str = "") -> list[str]:
    """The command of a stand-in dispatcher: it runs one alert pass in its child, prints the
    child's pid, then does ``then``."""
    script = tmp_path / "dispatcher.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path
        from schedules.background import Background
        from server.config import load_settings
        if __name__ == "__main__":
            background = Background(load_settings(Path({s.settings.instance_path!r})))
            background.run("alerts", {Clock()()}, True, None)
            print(background.pid, flush=True)
            {then}
    """))
    return [sys.executable, str(script)]


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_a_dispatcher_that_exits_without_stopping_its_child_still_exits(app_only, wards,
                                                                         tmp_path):
    """At the interpreter's exit multiprocessing ends its children and waits for them: the
    child must go (it ignores Ctrl-C, not SIGTERM)."""
    proc = subprocess.run(_dispatcher(app_only, tmp_path), cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert _gone(int(proc.stdout), 10)
    assert "Traceback" not in proc.stderr


def test_the_child_ends_when_the_dispatcher_is_killed(app_only, wards, tmp_path):
    """kill -9 of the dispatcher leaves no pass process behind: it reads the end of its pipe."""
    proc = subprocess.Popen(_dispatcher(app_only, tmp_path, "time.sleep(120)"), cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    try:
        child = int(proc.stdout.readline())
        assert not _gone(child, 0.5)
        proc.kill()
        proc.wait(10)
        assert _gone(child, 10), "the pass process outlived its dispatcher"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
