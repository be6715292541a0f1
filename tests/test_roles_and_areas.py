"""Every write is checked against the caller's role and area: a ward's staff act on their ward
only, and see nothing of another ward's broadcasts."""
import pytest

from server.cli import main as cli


@pytest.fixture
def wards(app_only):
    s = app_only
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    mine = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    mine_cluster = s.area("Cụm 1", "HP-LC-1", "cluster", mine["id"])
    other = s.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    other_cluster = s.area("Cụm 2", "HP-NQ-1", "cluster", other["id"])
    for cluster in (mine_cluster, other_cluster):
        s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})
    for name, role in (("canbo-lc", "approver"), ("kythuat-lc", "technician")):
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    "mat-khau-123", "--area-id", str(mine["id"])]) == 0
    return {"mine": mine, "other": other, "mine_cluster": mine_cluster,
            "other_cluster": other_cluster,
            "approver": s.login("canbo-lc", "mat-khau-123"),
            "technician": s.login("kythuat-lc", "mat-khau-123")}


def _approved(s, token, area_id):
    b = s.ok("POST", "/api/v1/bulletins", token=token,
             json={"title": "T", "text": "Thông báo.", "category": "other", "area_id": area_id})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit", token=token)
    return s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve", token=token)


def test_ward_approver_broadcasts_to_own_ward_but_not_another(app_only, wards):
    s, tok = app_only, wards["approver"]
    b = _approved(s, tok, wards["mine"]["id"])
    ok = s.call("POST", "/api/v1/broadcasts", token=tok,
                json={"bulletin_id": b["id"], "targets": {"areas": [wards["mine"]["id"]]}})
    assert ok.status_code == 201
    r = s.call("POST", "/api/v1/broadcasts", token=tok,
               json={"bulletin_id": b["id"], "targets": {"areas": [wards["other"]["id"]]}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_area"
    r = s.call("POST", "/api/v1/bulletins", token=tok, json={
        "title": "T", "text": "x", "category": "other", "area_id": wards["other"]["id"]})
    assert r.status_code == 403


def test_other_wards_broadcasts_are_invisible_to_a_ward_user(app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    theirs = s.ok("POST", "/api/v1/broadcasts",
                  json={"bulletin_id": b["id"], "targets": {"areas": [wards["other"]["id"]]}})
    tok = wards["approver"]
    assert s.call("GET", f"/api/v1/broadcasts/{theirs['id']}", token=tok).status_code == 404
    assert s.call("POST", f"/api/v1/broadcasts/{theirs['id']}/cancel", token=tok).status_code == 404
    assert theirs["id"] not in [x["id"] for x in s.ok("GET", "/api/v1/broadcasts", token=tok)["broadcasts"]]
    assert s.ok("GET", f"/api/v1/broadcasts/{theirs['id']}")["status"] != "cancelled"


def test_technician_provisions_in_own_ward_only_and_cannot_write_bulletins(app_only, wards):
    s, tok = app_only, wards["technician"]
    assert s.call("POST", "/api/v1/nodes", token=tok, json={
        "cluster_id": wards["mine_cluster"]["id"], "name": "Loa mới"}).status_code == 201
    assert s.call("POST", "/api/v1/nodes", token=tok, json={
        "cluster_id": wards["other_cluster"]["id"], "name": "Loa lạ"}).status_code == 403
    assert s.call("POST", "/api/v1/bulletins", token=tok, json={
        "title": "T", "text": "x", "category": "other"}).status_code == 403
    nodes = s.ok("GET", "/api/v1/nodes", token=tok)["nodes"]
    assert {n["cluster_id"] for n in nodes} == {wards["mine_cluster"]["id"]}
