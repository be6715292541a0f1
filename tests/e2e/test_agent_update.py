"""Agent updates over the air with real agent processes on a real Mosquitto: the node runs
through ``loa-agent-launcher`` as systemd runs it, and the releases are wheels of the agent's own
distribution (agent/pyproject.toml) built from this checkout with a bumped ``__version__``,
served over HTTP like bulletin media. A good release is installed and reported; a wheel whose
sha256 is not the signed one, or an envelope signed by an unknown key, changes nothing; a
release that crashes on start, or runs but never confirms itself healthy, is rolled back and
reported; a node offline during the rollout
updates when it returns; and the whole path from the server: an admin uploads the wheel and
rolls it out in two stages, the dispatcher sends the signed commands, and the API shows each
node healthy on the new version.

The wheels are built once per module (on one xdist worker: ``--dist loadgroup``)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_wheelhouse import default_dest
from device_agent import __version__
from device_agent.config import local_copy
from device_agent.update import Releases
from tests.agent_harness import MediaServer, NodeHarness, Signer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.xdist_group("agent-update")
GOOD, BROKEN, SILENT = "99.0.1", "99.0.2", "99.0.3"
UPDATE_WAIT_S = 30.0
NEVER_CONFIRMS = ("    def connected(self) -> None:\n",
                  "    def connected(self) -> None:  # this release never confirms itself\n"
                  "        return\n\n    def _connected(self) -> None:\n")


def agent_source(base: Path, version: str) -> Path:
    """A copy of agent/ and device_agent/ at ``version``: a broken release dies on start (its
    ``python -m device_agent`` raises), a silent one runs but never confirms itself healthy."""
    src = base / f"src-{version}"
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    for part in ("agent", "device_agent"):
        shutil.copytree(ROOT / part, src / part, ignore=ignore)
    init = src / "device_agent" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', f'"{version}"'))
    if version == BROKEN:
        main = src / "device_agent" / "__main__.py"
        main.write_text('raise RuntimeError("this release is broken")\n' + main.read_text())
    if version == SILENT:
        update = src / "device_agent" / "update.py"
        text = update.read_text()
        assert NEVER_CONFIRMS[0] in text
        update.write_text(text.replace(*NEVER_CONFIRMS))
    return src / "agent"


def build_wheels(base: Path, versions: tuple[str, ...]) -> None:
    """The agent's wheels into ``base/dist``, offline from the wheelhouse: one pip run per
    version (pip builds one version of a project at a time), side by side."""
    wheelhouse = default_dest()
    if not any(wheelhouse.glob("*.whl")):
        pytest.fail(f"no wheelhouse at {wheelhouse}: run `make test-deps`")
    builds = [subprocess.Popen([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                "--no-index", "--find-links", str(wheelhouse), "--wheel-dir",
                                str(base / "dist"), str(agent_source(base, v))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for v in versions]
    for build in builds:
        _, err = build.communicate(timeout=300)
        assert build.returncode == 0, err.decode()[-3000:]


@dataclass
class ServedReleases:
    """The wheels in ``dist``, served at ``url``."""
    dist: Path
    url: str

    def wheel(self, version: str) -> Path:
        (wheel,) = self.dist.glob(f"loaphuong_agent-{version}-*.whl")
        return wheel

    def __call__(self, version: str) -> dict:
        """The signed body's ``media`` object for ``version``."""
        wheel = self.wheel(version)
        data = wheel.read_bytes()
        return {"sha256": hashlib.sha256(data).hexdigest(), "url": f"{self.url}/{wheel.name}",
                "bytes": len(data)}


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """The good, the broken and the silent release, served over HTTP: ``media(version)`` is
    the signed body's ``media`` object."""
    base = tmp_path_factory.mktemp("releases")
    build_wheels(base, (GOOD, BROKEN, SILENT))
    server = MediaServer(base / "dist")
    yield ServedReleases(base / "dist", server.base)
    server.close()


class Node:
    """A NodeHarness whose agent runs as ``loa-agent-launcher`` processes."""

    def __init__(self, broker, tmp_path, media_server):
        self.h = NodeHarness(broker, tmp_path, media_server)
        self.proc: subprocess.Popen | None = None

    def start(self, confirm_s: int = 20) -> None:
        mark = len(self.h.server.messages)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "device_agent.launcher", "--config", str(self.h.config_path),
             "--confirm-s", str(confirm_s), "--max-starts", "2", "--player", "file",
             "--sink-dir", str(self.h.sink), "--log-level", "WARNING"],
            cwd=self.h.dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.online_since(mark, __version__), self.why()

    def why(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            assert self.proc.stderr is not None
            return self.proc.stderr.read().decode()[-3000:]
        return "the node did not go online"

    def online_since(self, mark: int, version: str, timeout: float = UPDATE_WAIT_S):
        return self.h.wait_message(lambda t, v: t == self.h.topic("state")
                                   and v.get("online") is True
                                   and v.get("agent_version") == version, timeout, since=mark)

    def update(self, media: dict, version: str, **kw) -> dict:
        return self.h.send("update", {"version": version, "media": media},
                           ttl_ms=7 * 24 * 3600 * 1000, **kw)

    def wait_ack(self, cmd_id: str, status: str) -> dict:
        return self.h.wait_ack(cmd_id, status, timeout=UPDATE_WAIT_S)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(30) == 0, self.why()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.h.close()

    def releases(self) -> Releases:
        return Releases(self.h.state)


@pytest.fixture
def node(broker, tmp_path, media_server):
    n = Node(broker, tmp_path, media_server)
    n.start()
    yield n
    n.close()


def test_good_release_is_installed_and_the_node_reports_the_new_version(node, releases):
    mark = len(node.h.server.messages)
    env = node.update(releases(GOOD), GOOD)
    finished = node.wait_ack(env["id"], "finished")
    assert finished["detail"] == GOOD
    assert node.h.acks(env["id"]) == ["received", "started", "finished"]
    assert node.online_since(mark, GOOD), "the node never came back with the new version"
    assert node.releases().current() == GOOD and node.releases().pending() is None
    # the new version plays what it is told, and says so in its telemetry's version too
    play = node.h.play("short", item_id="after-update")
    node.h.wait_ack(play["id"], "finished")
    # sent again (the server re-sends until acked): nothing installs twice
    again = node.update(releases(GOOD), GOOD)
    assert node.wait_ack(again["id"], "finished")["detail"] == GOOD
    assert node.h.acks(again["id"]) == ["received", "finished"]
    node.stop()


def test_release_whose_sha256_is_not_the_signed_one_is_refused_and_nothing_changes(node,
                                                                                   releases):
    wrong = dict(releases(GOOD), sha256=hashlib.sha256(b"another file").hexdigest())
    env = node.update(wrong, GOOD)
    failed = node.wait_ack(env["id"], "failed")
    assert failed["reason"] == "sha256_mismatch"
    # signed by a key the node does not trust: refused before anything is downloaded
    stranger = node.update(releases(GOOD), GOOD, signer=Signer("srv-stranger"))
    assert node.wait_ack(stranger["id"], "rejected")["reason"] == "unknown_kid"
    node.h.marker()
    assert node.releases().current() is None and node.releases().pending() is None
    onlines = [v for t, v in ((t, node.h._json(p)) for t, p, _ in node.h.server.messages)
               if t == node.h.topic("state") and v and v.get("online")]
    assert [v["agent_version"] for v in onlines] == [__version__]   # never restarted
    node.stop()


def test_release_that_crashes_on_start_is_rolled_back_and_reported(node, releases):
    mark = len(node.h.server.messages)
    env = node.update(releases(BROKEN), BROKEN)
    node.wait_ack(env["id"], "started")
    failed = node.wait_ack(env["id"], "failed")
    assert failed["reason"] == "rolled_back" and BROKEN in failed["detail"]
    assert node.online_since(mark, __version__), "the previous version did not come back"
    assert node.releases().current() is None and node.releases().pending() is None
    # the same release again is refused at once, without another try
    again = node.update(releases(BROKEN), BROKEN)
    assert node.wait_ack(again["id"], "failed")["reason"] == "rolled_back"
    assert "started" not in node.h.acks(again["id"])
    node.stop()


def test_release_that_runs_but_never_confirms_itself_is_stopped_and_rolled_back(
        broker, tmp_path, media_server, releases):
    n = Node(broker, tmp_path, media_server)
    try:
        n.start(confirm_s=6)
        mark = len(n.h.server.messages)
        env = n.update(releases(SILENT), SILENT)
        n.wait_ack(env["id"], "started")
        assert n.online_since(mark, SILENT), "the silent release never came online"
        failed = n.wait_ack(env["id"], "failed")
        assert failed["reason"] == "rolled_back" and "within 6 s" in failed["detail"]
        assert n.online_since(mark, __version__) and n.releases().current() is None
        assert "finished" not in n.h.acks(env["id"])
        n.stop()
    finally:
        n.close()


def test_node_offline_during_the_rollout_updates_when_it_returns(node, releases):
    node.stop()
    env = node.update(releases(GOOD), GOOD)      # held by the broker in the node's session
    mark = len(node.h.server.messages)
    assert not node.h.events("ack", cmd_id=env["id"])
    node.start()
    assert node.wait_ack(env["id"], "finished")["detail"] == GOOD
    assert node.online_since(mark, GOOD)
    assert json.loads((node.h.state / "releases" / "current").read_text()) == GOOD
    node.stop()


def start_launcher(system, provisioned: dict) -> subprocess.Popen:
    """A provisioned node as systemd runs it: loa-agent-launcher, its state in the test's
    folder, started from the checkout (whose device_agent the release must win over)."""
    base = system.tmp / "agents" / provisioned["id"]
    base.mkdir(parents=True, exist_ok=True)
    config = base / "agent.toml"
    config.write_text(local_copy(provisioned["config"], base, provisioned["mqtt"].get("ca_pem")),
                      encoding="utf-8")
    log = open(base / "agent.log", "wb")  # noqa: SIM115 - the child keeps its own copy
    proc = subprocess.Popen(
        [sys.executable, "-m", "device_agent.launcher", "--config", str(config), "--state-dir",
         str(base / "state"), "--confirm-s", "20", "--player", "file", "--sink-dir",
         str(base / "sink")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    log.close()
    system.agents.append(proc)   # system.stop() ends it (SIGTERM)
    return proc


def test_server_rollout_updates_nodes_stage_by_stage_and_shows_their_versions(system,
                                                                              releases):
    s = system
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
    nodes = [s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": name,
                                                 "id": node_id})
             for name, node_id in (("Loa chợ", "lc-cho"), ("Loa đình", "lc-dinh"))]
    for node in nodes:
        start_launcher(s, node)

    def versions():
        listed = s.ok("GET", "/api/v1/nodes", params={"area": ward["id"]})["nodes"]
        return {n["id"]: n["agent_version"] for n in listed}

    s.wait(lambda: set(versions().values()) == {__version__}, 30, "both nodes online")
    wheel = releases.wheel(GOOD)
    r = s.call("POST", "/api/v1/releases", files={"file": (wheel.name, wheel.read_bytes())})
    assert r.status_code == 201, r.text
    rollout = s.ok("POST", "/api/v1/rollouts", json={
        "release_id": r.json()["id"], "targets": {"areas": [ward["id"]]}, "stages": [1]})
    assert [n["stage"] for n in rollout["nodes"]] == [1, 2]

    def progress():
        got = s.ok("GET", f"/api/v1/rollouts/{rollout['id']}")
        return got, {n["node_id"]: n for n in got["nodes"]}

    def healthy(node_id):
        got, by_node = progress()
        return by_node[node_id]["progress"] == "healthy" and got

    first = s.wait(lambda: healthy("lc-cho"), UPDATE_WAIT_S, "the first stage healthy")
    assert {n["node_id"]: n["progress"] for n in first["nodes"]}["lc-dinh"] in (
        "pending", "sent", "downloading", "installed")   # it started only after the first
    done = s.wait(lambda: healthy("lc-dinh") and progress()[0]["status"] == "completed" and
                  progress()[0], UPDATE_WAIT_S, "the rollout completed")
    assert done["stage"] == 2 and done["progress"]["healthy"] == 2
    s.wait(lambda: all(n["running_version"] == GOOD for n in progress()[0]["nodes"]),
           UPDATE_WAIT_S, "both nodes reporting the new version")
    assert versions() == {"lc-cho": GOOD, "lc-dinh": GOOD}
