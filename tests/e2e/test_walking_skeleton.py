"""The whole path: a text bulletin, approved and broadcast now to a ward, is played by the real
agent processes of that ward's nodes and reported back; other wards hear nothing."""
import hashlib

import pytest
from tests.system import played_events, sink_files


@pytest.fixture
def two_wards(system):
    province = system.area("Thành phố Hải Phòng", "HP", "province")
    ward = system.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = system.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    other = system.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    other_cluster = system.area("Cụm chợ Cát Bi", "HP-NQ-1", "cluster", other["id"])
    nodes = [system.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                       "name": f"Loa {i}"}) for i in (1, 2, 3)]
    outsider = system.ok("POST", "/api/v1/nodes", json={"cluster_id": other_cluster["id"],
                                                         "name": "Loa chợ"})
    sinks = {n["id"]: system.start_agent(n)[1] for n in nodes + [outsider]}
    system.wait(lambda: all(n["online"] for n in system.ok("GET", "/api/v1/nodes")["nodes"]),
                what="all four agents online")
    return {"ward": ward, "other": other, "nodes": [n["id"] for n in nodes],
            "outsider": outsider["id"], "sinks": sinks}


def test_bulletin_broadcast_to_a_ward_is_played_by_its_three_nodes_and_reported(system, two_wards):
    text = "Ủy ban nhân dân phường Lê Chân thông báo: ngày mai tạm ngưng cung cấp điện."
    b = system.approved_bulletin("Thông báo cắt điện", text)
    assert b["status"] == "approved" and b["sha256"]
    bc = system.ok("POST", "/api/v1/broadcasts",
                   json={"bulletin_id": b["id"], "targets": {"areas": [two_wards["ward"]["id"]]},
                         "priority": "normal"})
    # a node sends its `played` event, then its `finished` ack: wait for both
    report = system.wait(
        lambda: (r := system.ok("GET", f"/api/v1/broadcasts/{bc['id']}"))["summary"]["played"] == 3
        and all(n["status"] == "finished" for n in r["nodes"]) and r, what="3/3 played")
    assert report["summary"] == {"total": 3, "sent": 3, "acked": 3, "played": 3, "failed": 0}
    assert sorted(n["node_id"] for n in report["nodes"]) == sorted(two_wards["nodes"])
    assert {n["status"] for n in report["nodes"]} == {"finished"}

    audio = system.call("GET", b["audio_url"], token=None).content
    assert hashlib.sha256(audio).hexdigest() == b["sha256"]
    for node_id in two_wards["nodes"]:
        sink = two_wards["sinks"][node_id]
        files = sink_files(sink, b["sha256"])
        assert len(files) == 1, f"{node_id} played {files}"
        assert hashlib.sha256(files[0].read_bytes()).hexdigest() == b["sha256"]

    logs = system.ok("GET", f"/api/v1/playlogs?area={two_wards['ward']['id']}")["playlogs"]
    assert sorted(p["node_id"] for p in logs if p["result"] == "completed") == \
        sorted(two_wards["nodes"])
    csv = system.call("GET", "/api/v1/playlogs", headers={"Accept": "text/csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.count(b["sha256"]) == 3

    # The outsider was alive all along: a later broadcast to its ward reaches it, and it is the
    # only thing it ever played.
    b2 = system.approved_bulletin("Thông báo phường Ngô Quyền", "Phường Ngô Quyền thông báo.")
    bc2 = system.ok("POST", "/api/v1/broadcasts",
                    json={"bulletin_id": b2["id"],
                          "targets": {"areas": [two_wards["other"]["id"]]}})
    system.wait(lambda: system.ok("GET", f"/api/v1/broadcasts/{bc2['id']}")["summary"]
                ["played"] == 1, what="the other ward's broadcast")
    outsider_sink = two_wards["sinks"][two_wards["outsider"]]
    assert [p["sha256"] for p in played_events(outsider_sink)] == [b2["sha256"]]
    assert not sink_files(outsider_sink, b["sha256"])


def test_node_command_reaches_the_agent_and_its_ack_is_recorded(system, two_wards):
    node_id = two_wards["nodes"][0]
    cmd = system.ok("POST", f"/api/v1/nodes/{node_id}/commands",
                    json={"type": "set_volume", "body": {"volume": 35}})
    done = system.wait(lambda: (c := system.ok("GET", f"/api/v1/commands/{cmd['id']}"))["status"]
                       == "finished" and c, what="set_volume finished")
    assert done["published_at"]
    system.wait(lambda: (system.ok("GET", f"/api/v1/nodes/{node_id}")["telemetry"] or {})
                .get("volume") == 35, timeout=15, what="telemetry shows the new volume")


def test_healthz_reports_database_and_broker(system):
    system.dispatcher.heartbeat()
    r = system.call("GET", "/healthz", token=None)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["broker"]["ok"] and r.json()["checks"]["database"]["ok"]
