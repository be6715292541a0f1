"""The launcher's decisions (start the current release, or roll the pending update back) and the
release store's install checks, without processes; the whole update over a broker is in
tests/e2e/test_agent_update.py."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from device_agent.launcher import BOOT, RELEASE_ENV, child_env, decide, overdue
from device_agent.update import InstallError, Pending, Releases, Updater

ROOT = Path(__file__).resolve().parents[2]

NOW = 1_800_000_000_000


def pending(version="2.0", previous="1.0", since=NOW, attempts=0) -> Pending:
    return Pending(version=version, previous=previous, cmd_id="c1", envelope={},
                   topic="loa/v1/nodes/hp-01-a/cmd", since_ms=since, attempts=attempts)


def test_without_a_pending_update_the_launcher_starts_the_current_release():
    assert not decide("1.0", None, NOW, max_starts=3, confirm_s=60).rollback
    assert not decide(None, None, NOW, max_starts=3, confirm_s=60).rollback


def test_a_new_version_gets_its_starts_within_the_confirmation_window():
    p = pending(attempts=2, since=NOW - 59_000)
    assert not decide("2.0", p, NOW, max_starts=3, confirm_s=60).rollback


def test_a_new_version_that_crashed_max_starts_times_is_rolled_back():
    d = decide("2.0", pending(attempts=3), NOW, max_starts=3, confirm_s=60)
    assert d.rollback and "3 starts" in d.reason


def test_a_new_version_not_confirmed_in_time_is_rolled_back_even_when_it_runs():
    late = pending(since=NOW - 60_000, attempts=1)
    assert decide("2.0", late, NOW, max_starts=3, confirm_s=60).rollback
    assert overdue(late, NOW, 60) and not overdue(pending(since=NOW - 1000), NOW, 60)
    assert not overdue(None, NOW, 60)


def test_a_switch_that_never_completed_is_rolled_back():
    d = decide("1.0", pending(), NOW, max_starts=3, confirm_s=60)
    assert d.rollback and "did not complete" in d.reason


def pending_of(r: Releases) -> Pending:
    found = r.pending()
    assert found is not None, "no release is pending"
    return found


def test_rollback_restores_the_previous_version_and_leaves_the_outcome_to_report(tmp_path):
    r = Releases(tmp_path)
    for v in ("1.0", "2.0"):
        r.path(v).mkdir()
    r.set_current("2.0")
    r.write_pending(pending())
    r.rollback(pending_of(r), "crashed")
    assert r.current() == "1.0" and r.pending() is None
    assert r.failed() == {"2.0"}
    assert r.outcome() == {"cmd_id": "c1", "version": "2.0", "reason": "rolled_back",
                           "detail": "crashed"}
    # back to the installed package when there was no earlier release
    r.write_pending(pending(version="3.0", previous=None))
    r.rollback(pending_of(r), "crashed")
    assert r.current() is None


def test_the_agent_started_by_the_launcher_imports_the_current_release_first(tmp_path):
    """Even from a working directory holding another device_agent (a checkout)."""
    r = Releases(tmp_path / "state")
    pkg = r.path("2.0") / "device_agent"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "2.0"\n')
    (pkg / "__main__.py").write_text(
        "import device_agent, os, sys\n"
        "def main():\n"
        "    print(device_agent.__version__, os.environ.get('LOA_AGENT_LAUNCHER'), sys.argv[1:])\n"
        "    return 0\n")
    env = child_env(r, "2.0")
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", BOOT, "--config", "x.toml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["2.0", str(r.root), "['--config',", "'x.toml']"]
    assert RELEASE_ENV not in child_env(r, None)


def test_the_agent_under_the_launcher_pings_systemds_watchdog_itself(tmp_path, monkeypatch):
    """systemd's WATCHDOG_PID names the launcher; passed on, the agent (its child) would never
    ping, and systemd would kill a healthy node every WatchdogSec."""
    from device_agent.watchdog import watchdog_interval_s
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # the launcher's, as systemd sets it
    env = child_env(Releases(tmp_path / "releases"), None)
    assert "WATCHDOG_PID" not in env
    assert watchdog_interval_s(env, pid=4242) == 30.0


def wheel(path, files: dict[str, str]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_install_unpacks_an_agent_wheel_of_the_signed_version(tmp_path):
    r = Releases(tmp_path / "state")
    w = wheel(tmp_path / "a.whl", {"device_agent/__init__.py": '__version__ = "2.0"\n',
                                   "device_agent/agent.py": "X = 1\n"})
    where = r.install(w, "2.0")
    assert (where / "device_agent" / "agent.py").read_text() == "X = 1\n"


@pytest.mark.parametrize("files, problem", [
    ({"device_agent/__init__.py": '__version__ = "1.9"\n'}, "version 1.9, not 2.0"),
    ({"other/__init__.py": ""}, "no device_agent"),
    ({"device_agent/__init__.py": '__version__ = "2.0"\n', "../escape.py": ""}, "unsafe path"),
])
def test_install_refuses_a_wheel_that_is_not_the_agent_at_that_version(tmp_path, files,
                                                                       problem):
    r = Releases(tmp_path / "state")
    with pytest.raises(InstallError, match=problem):
        r.install(wheel(tmp_path / "a.whl", files), "2.0")
    assert not r.path("2.0").exists()
    assert not (tmp_path / "state" / "escape.py").exists()


def test_install_refuses_a_file_that_is_not_a_wheel(tmp_path):
    bad = tmp_path / "a.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InstallError, match="BadZipFile"):
        Releases(tmp_path / "state").install(bad, "2.0")


def test_an_installed_update_waits_until_nothing_plays_then_switches_once(tmp_path):
    playing, acks, restarts = [True], [], []
    u = Updater(tmp_path, running="1.0", node_id="hp-01-a", prefix="loa/v1",
                ack=lambda *a, **kw: acks.append((a, kw)), post=lambda result: None, keys=dict,
                request_restart=lambda: restarts.append(True), clock_ms=lambda: NOW,
                idle=lambda: not playing[0])
    u.releases.path("2.0").mkdir()
    env = {"id": "c1", "type": "update", "to": "node:hp-01-a", "ts": NOW, "exp": NOW + 1,
           "body": {"version": "2.0", "media": {"sha256": "0" * 64, "url": "http://x/a.whl",
                                                "bytes": 1}}}
    u.installed((env, "loa/v1/nodes/hp-01-a/cmd", None))
    assert acks == [(("c1", "started"), {"detail": "2.0"})]
    u.switch_when_idle()
    assert not restarts and u.releases.current() is None and u.releases.pending() is None
    playing[0] = False                      # the bulletin ended
    u.switch_when_idle()
    assert restarts == [True] and u.releases.current() == "2.0"
    assert u.releases.pending() == Pending(version="2.0", previous=None, cmd_id="c1",
                                           envelope=env, topic="loa/v1/nodes/hp-01-a/cmd",
                                           since_ms=NOW)
    u.switch_when_idle()
    assert restarts == [True]               # once
