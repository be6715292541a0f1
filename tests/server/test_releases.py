"""Agent releases and staged rollouts on the server (server/releases.py), in-process: an admin
uploads a wheel (only an admin), it is served by its sha256; a rollout sends signed ``update``
commands stage by stage, each node's progress follows its acks (fed through the bridge as a
node's events would be), and the next stage starts when the current one is healthy. The stage
logic is also tested alone. The node side over a real broker: tests/e2e/test_agent_update.py."""
from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile

import pytest

from device_agent.protocol import load_public_key, public_key_b64, verify_envelope
from schedules.dispatcher import Dispatcher
from server.bridge import Bridge
from server.keys import load_signing_key
from server.models import now_ms
from server.releases import Progress, next_step, split_stages
from tests.transports import NoTransport, Recorder


def wheel(version: str, dist_version: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("device_agent/__init__.py", f'__version__ = "{version}"\n')
        zf.writestr(f"loaphuong_agent-{dist_version or version}.dist-info/METADATA",
                    f"Name: loaphuong-agent\nVersion: {version}\n")
    return buf.getvalue()


def upload(s, data: bytes, token="default", **form):
    return s.call("POST", "/api/v1/releases", token=token, data=form,
                  files={"file": ("loaphuong_agent.whl", data)})


# --- the stage logic alone -----------------------------------------------------------------------

def test_stages_take_the_first_nodes_in_id_order_then_every_node_left():
    nodes = ["n-c", "n-a", "n-d", "n-b", "n-e"]
    assert split_stages(nodes, [2]) == [["n-a", "n-b"], ["n-c", "n-d", "n-e"]]
    assert split_stages(nodes, [1, 1]) == [["n-a"], ["n-b"], ["n-c", "n-d", "n-e"]]
    assert split_stages(nodes, []) == [sorted(nodes)]
    assert split_stages(nodes, [10]) == [sorted(nodes)]           # no empty last stage
    assert split_stages(["n-a"], [1, 3]) == [["n-a"]]


def test_next_stage_starts_only_when_every_node_of_the_stage_is_healthy():
    healthy, updating = Progress.HEALTHY, Progress.DOWNLOADING
    assert next_step(0, 2, [healthy, healthy], auto=True) == "advance"
    assert next_step(0, 2, [healthy, updating], auto=True) == "wait"
    assert next_step(0, 2, [healthy, Progress.ROLLED_BACK], auto=True) == "wait"
    assert next_step(0, 2, [healthy, healthy], auto=False) == "wait"   # the admin advances
    assert next_step(1, 2, [healthy], auto=False) == "complete"
    assert next_step(1, 2, [Progress.FAILED], auto=True) == "wait"


# --- releases ------------------------------------------------------------------------------------

def test_only_an_admin_uploads_a_release_and_it_is_served_by_its_sha256(app_only, wards):
    s = app_only
    data = wheel("9.1.0")
    assert upload(s, data, token=wards["technician"]).status_code == 403
    assert upload(s, data, token=wards["approver"]).status_code == 403
    r = upload(s, data, notes="Sửa lỗi phát lại")
    assert r.status_code == 201, r.text
    release = r.json()
    assert release["version"] == "9.1.0" and release["bytes"] == len(data)
    assert release["sha256"] == hashlib.sha256(data).hexdigest()
    assert release["url"] == f"{s.url}/agent-releases/{release['sha256']}.whl"
    got = s.call("GET", f"/agent-releases/{release['sha256']}.whl", token=None)
    assert got.status_code == 200 and got.content == data
    assert s.call("GET", f"/agent-releases/{'0' * 64}.whl", token=None).status_code == 404
    # the same version twice is a conflict; a technician may list them
    assert upload(s, wheel("9.1.0")).status_code == 409
    listed = s.ok("GET", "/api/v1/releases", token=wards["technician"])
    assert [x["version"] for x in listed["releases"]] == ["9.1.0"]


@pytest.mark.parametrize("data, why", [
    (b"not a zip", "not a wheel"),
    (wheel("9.2.0", dist_version="9.1.9"), "dist-info"),
    (wheel("9 2"), "__version__"),
])
def test_a_file_that_is_not_an_agent_wheel_is_refused_in_vietnamese(app_only, data, why):
    r = upload(app_only, data)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "not_agent_wheel" and why in error["message"]
    assert "loaphuong-agent" in error["message"] and "Tệp" in error["message"]


# --- rollouts ------------------------------------------------------------------------------------

def _three_nodes(s, wards) -> list[str]:
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": wards["mine_cluster"]["id"],
                                        "name": "Loa 2", "id": "lc-loa-2"})
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": wards["mine_cluster"]["id"],
                                        "name": "Loa 3", "id": "lc-loa-3"})
    nodes = s.ok("GET", "/api/v1/nodes", params={"area": wards["mine"]["id"]})["nodes"]
    return sorted(n["id"] for n in nodes)


class Fleet:
    """The dispatcher (signing into a recording transport) and the bridge (fed the nodes'
    events) of the in-process server."""

    def __init__(self, s):
        self.s = s
        sessions = s.app.extensions["db_sessions"]
        kid, key = load_signing_key(s.settings.signing_key_file)
        self.key = load_public_key(public_key_b64(key))
        self.kid = kid
        self.transport = Recorder()
        self.dispatcher = Dispatcher(s.settings, sessions, self.transport, key, kid)
        self.bridge = Bridge(sessions, NoTransport(), s.settings.topic_prefix,
                             tz=s.settings.timezone)

    def updates(self) -> dict[str, dict]:
        """The update envelopes published so far, by node, verified as a node would."""
        out = {}
        for topic, payload in self.transport.sent:
            env = json.loads(payload)
            if env.get("type") != "update":
                continue
            node = env["to"].split(":", 1)[1]
            out[node] = verify_envelope(payload, topic, prefix=self.s.settings.topic_prefix,
                                        node_id=node, groups=[], keys={self.kid: self.key},
                                        now_ms=now_ms())
        return out

    def ack(self, node: str, cmd_id: str, status: str, reason=None, detail=None) -> None:
        event = {"v": 1, "id": uuid.uuid4().hex, "type": "ack", "ts": now_ms(),
                 "cmd_id": cmd_id, "status": status, "reason": reason, "detail": detail}
        self.bridge.handle(f"{self.s.settings.topic_prefix}/nodes/{node}/events",
                           json.dumps(event).encode())

    def state(self, node: str, version: str) -> None:
        self.bridge.handle(f"{self.s.settings.topic_prefix}/nodes/{node}/state", json.dumps(
            {"v": 1, "online": True, "ts": now_ms(), "agent_version": version}).encode())


def test_rollout_goes_stage_by_stage_and_shows_each_nodes_progress_and_version(app_only,
                                                                              wards):
    s = app_only
    nodes = _three_nodes(s, wards)
    release = upload(s, wheel("9.3.0")).json()
    body = {"release_id": release["id"], "targets": {"areas": [wards["mine"]["id"]]},
            "stages": [1]}
    assert s.call("POST", "/api/v1/rollouts", token=wards["technician"],
                  json=body).status_code == 403
    rollout = s.ok("POST", "/api/v1/rollouts", json=body)
    assert rollout["stage_count"] == 2 and rollout["status"] == "running"
    by_node = {n["node_id"]: n for n in rollout["nodes"]}
    assert set(by_node) == set(nodes)
    assert [by_node[n]["stage"] for n in nodes] == [1, 2, 2]
    assert {n["progress"] for n in rollout["nodes"]} == {"pending"}

    fleet = Fleet(s)
    fleet.dispatcher.tick()
    sent = fleet.updates()
    assert list(sent) == [nodes[0]]                       # the first stage only
    env = sent[nodes[0]]
    assert env["body"] == {"version": "9.3.0", "media": {
        "sha256": release["sha256"], "url": release["url"], "bytes": release["bytes"]}}
    assert env["exp"] - env["ts"] >= 7 * 24 * 3600 * 1000 - 60_000   # a node away gets it

    def progress():
        got = s.ok("GET", f"/api/v1/rollouts/{rollout['id']}")
        return got, {n["node_id"]: n["progress"] for n in got["nodes"]}

    assert progress()[1][nodes[0]] == "sent"
    fleet.ack(nodes[0], env["id"], "received")
    assert progress()[1][nodes[0]] == "downloading"
    fleet.ack(nodes[0], env["id"], "started", detail="9.3.0")
    assert progress()[1][nodes[0]] == "installed"
    fleet.dispatcher.tick()
    assert list(fleet.updates()) == [nodes[0]]            # not healthy yet: stage 2 waits
    fleet.ack(nodes[0], env["id"], "finished", detail="9.3.0")
    fleet.state(nodes[0], "9.3.0")
    got, states = progress()
    assert states[nodes[0]] == "healthy"
    assert {n["node_id"]: n["running_version"] for n in got["nodes"]}[nodes[0]] == "9.3.0"

    fleet.dispatcher.tick()                               # the stage is healthy: the next one
    sent = fleet.updates()
    assert sorted(sent) == nodes
    got, states = progress()
    assert got["stage"] == 2 and states[nodes[1]] == "sent"
    fleet.ack(nodes[1], sent[nodes[1]]["id"], "failed", "rolled_back", "crashed on start")
    fleet.ack(nodes[2], sent[nodes[2]]["id"], "failed", "sha256_mismatch")
    got, states = progress()
    assert states[nodes[1]] == "rolled_back" and states[nodes[2]] == "failed"
    assert got["progress"] == {"pending": 0, "sent": 0, "downloading": 0, "installed": 0,
                               "healthy": 1, "rolled_back": 1, "failed": 1}
    fleet.dispatcher.tick()
    assert progress()[0]["status"] == "running"           # failures wait for an admin
    assert s.ok("POST", f"/api/v1/rollouts/{rollout['id']}/cancel")["status"] == "cancelled"
    assert s.call("POST", f"/api/v1/rollouts/{rollout['id']}/advance").status_code == 409


def test_rollout_without_auto_advance_waits_for_the_admin_and_completes(app_only, wards):
    s = app_only
    nodes = _three_nodes(s, wards)
    release = upload(s, wheel("9.4.0")).json()
    rollout = s.ok("POST", "/api/v1/rollouts", json={
        "release_id": release["id"], "targets": {"nodes": nodes[:2]}, "stages": [1],
        "auto_advance": False})
    fleet = Fleet(s)
    fleet.dispatcher.tick()
    first = fleet.updates()[nodes[0]]
    fleet.ack(nodes[0], first["id"], "finished", detail="9.4.0")
    fleet.dispatcher.tick()
    assert list(fleet.updates()) == [nodes[0]]
    # a technician of the area follows it, but may not advance it
    assert s.call("GET", f"/api/v1/rollouts/{rollout['id']}",
                  token=wards["technician"]).status_code == 200
    assert s.call("POST", f"/api/v1/rollouts/{rollout['id']}/advance",
                  token=wards["technician"]).status_code == 403
    assert s.ok("POST", f"/api/v1/rollouts/{rollout['id']}/advance")["stage"] == 2
    fleet.dispatcher.tick()
    second = fleet.updates()[nodes[1]]
    fleet.ack(nodes[1], second["id"], "finished", detail="9.4.0")
    fleet.dispatcher.tick()
    done = s.ok("GET", f"/api/v1/rollouts/{rollout['id']}")
    assert done["status"] == "completed" and done["finished_at"]


def test_technician_sees_only_the_nodes_of_its_area_in_a_rollout(app_only, wards):
    s = app_only
    release = upload(s, wheel("9.5.0")).json()
    rollout = s.ok("POST", "/api/v1/rollouts", json={
        "release_id": release["id"],
        "targets": {"areas": [wards["mine"]["id"], wards["other"]["id"]]}})
    assert len(rollout["nodes"]) == 2
    seen = s.ok("GET", f"/api/v1/rollouts/{rollout['id']}", token=wards["technician"])
    mine = s.ok("GET", "/api/v1/nodes", params={"area": wards["mine"]["id"]})["nodes"]
    assert [n["node_id"] for n in seen["nodes"]] == [n["id"] for n in mine]
    assert s.call("GET", "/api/v1/rollouts", token=wards["approver"]).status_code == 403


def test_rollout_to_targets_without_nodes_or_an_unknown_release_is_refused(app_only, wards):
    s = app_only
    release = upload(s, wheel("9.6.0")).json()
    empty = s.area("Cụm trống", "HP-LC-9", "cluster", wards["mine"]["id"])
    r = s.call("POST", "/api/v1/rollouts", json={"release_id": release["id"],
                                                 "targets": {"areas": [empty["id"]]}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_nodes"
    r = s.call("POST", "/api/v1/rollouts", json={"release_id": 999999,
                                                 "targets": {"areas": [wards["mine"]["id"]]}})
    assert r.status_code == 404
    r = s.call("POST", "/api/v1/rollouts", json={"release_id": release["id"],
                                                 "targets": {"areas": [wards["mine"]["id"]]},
                                                 "stages": [0]})
    assert r.status_code == 400 and "stages" in r.json()["error"]["message"]
