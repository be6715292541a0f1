"""Every write is checked against the caller's role and area: a ward's staff act on their ward
only, and see nothing of another ward's broadcasts.
The two wards and their users are the ``wards`` fixture (tests/server/conftest.py)."""


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
    assert theirs["id"] not in [x["id"] for x in
                                s.ok("GET", "/api/v1/broadcasts", token=tok)["broadcasts"]]
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
