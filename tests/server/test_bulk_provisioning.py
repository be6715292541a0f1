"""Provisioning many nodes at once: a JSON list (POST /api/v1/nodes/bulk) and a CSV import
(POST /api/v1/nodes/import), all rows or none, every bad row named; and the broker's files
grow by the new nodes' lines instead of being written again whole."""
import tomllib
from pathlib import Path

import pytest


@pytest.fixture
def province(app_only):
    s = app_only
    p = s.area("Tỉnh Quảng Ninh", "QN", "province")
    ward = s.area("Phường Hồng Gai", "QN-HG", "ward", p["id"])
    return {"ward": ward, "c1": s.area("Cụm chợ Hạ Long", "QN-HG-1", "cluster", ward["id"]),
            "c2": s.area("Cụm Bến Đoan", "QN-HG-2", "cluster", ward["id"])}


def _node_ids(s) -> set[str]:
    return {n["id"] for n in s.ok("GET", "/api/v1/nodes")["nodes"]}


def _passwd(s) -> str:
    path = Path(s.settings.mosquitto_dir) / "passwd"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_a_json_list_of_nodes_is_provisioned_with_each_nodes_config(app_only, province):
    s = app_only
    rows = [{"cluster_id": province["c1"]["id"], "name": "Loa chợ Hạ Long", "lat": 20.95,
             "lon": 107.08},
            {"cluster_id": province["c2"]["id"], "name": "Loa Bến Đoan"},
            {"cluster_id": province["c2"]["id"], "name": "Loa trường", "id": "qn-truong-1"}]
    r = s.call("POST", "/api/v1/nodes/bulk", json=rows)
    assert r.status_code == 201, r.text
    answers = r.json()["nodes"]
    assert [a["name"] for a in answers] == [row["name"] for row in rows]
    assert answers[2]["id"] == "qn-truong-1"
    assert len({a["mqtt"]["password"] for a in answers}) == 3
    for a, row in zip(answers, rows, strict=True):
        config = tomllib.loads(a["config"])
        assert config["node_id"] == a["id"] and config["mqtt"]["password"] == a["mqtt"]["password"]
        assert a["cluster_id"] == row["cluster_id"]
        assert a["groups"][0] == ("qn-hg-1" if row["cluster_id"] == province["c1"]["id"]
                                  else "qn-hg-2")
    assert {a["id"] for a in answers} <= _node_ids(s)
    passwd = _passwd(s)
    assert all(f"\n{a['id']}:$7$" in "\n" + passwd for a in answers)


def test_a_bulk_list_with_bad_rows_saves_nothing_and_names_every_bad_row(app_only, province):
    s = app_only
    before, passwd = _node_ids(s), _passwd(s)
    c1 = province["c1"]["id"]
    rows = [{"cluster_id": c1, "name": "Loa 1"},
            {"cluster_id": c1, "name": "Loa 2", "lat": 123.0},
            {"cluster_id": 999999, "name": "Loa 3"},
            {"cluster_id": province["ward"]["id"], "name": "Loa 4"},
            {"cluster_id": c1, "name": ""}]
    r = s.call("POST", "/api/v1/nodes/bulk", json=rows)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_rows" and "4" in err["message"]
    assert [(e["row"], e["field"], e["code"]) for e in err["rows"]] == [
        (2, "lat", "invalid"), (3, "cluster_id", "unknown_area"),
        (4, "cluster_id", "not_cluster"), (5, "name", "missing_field")]
    assert all(e["message"] for e in err["rows"])
    assert _node_ids(s) == before and _passwd(s) == passwd


def test_the_same_node_id_twice_in_one_list_is_refused_at_its_second_row(app_only, province):
    s = app_only
    c1 = province["c1"]["id"]
    r = s.call("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": c1, "name": "A", "id": "qn-a"}, {"cluster_id": c1, "name": "B",
                                                       "id": "qn-a"}])
    assert r.status_code == 409, r.text
    assert [(e["row"], e["field"], e["code"]) for e in r.json()["error"]["rows"]] == [
        (2, "id", "duplicate")]
    assert "qn-a" not in _node_ids(s)


@pytest.mark.parametrize("body", [{"cluster_id": 1, "name": "Loa"}, [], "x"])
def test_a_bulk_body_that_is_not_a_list_of_nodes_is_refused(app_only, body):
    r = app_only.call("POST", "/api/v1/nodes/bulk", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_json"


def test_more_rows_than_allowed_are_refused_before_anything_is_done(make_app):
    s = make_app(bulk_max_nodes=2)
    r = s.call("POST", "/api/v1/nodes/bulk", json=[{"cluster_id": 1, "name": "Loa"}] * 3)
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many"
    assert "2" in r.json()["error"]["message"]


CSV = ("\ufeffname,cluster,latitude,longitude\r\n"
       "Loa chợ Hạ Long,QN-HG-1,20.9512,107.0801\r\n"
       "\"Loa nhà văn hoá, tổ 5\",{c2},\"20,9433\",\"107,0722\"\r\n"
       "Loa Bến Đoan,QN-HG-2,,\r\n"
       "\r\n")


def test_a_csv_with_vietnamese_names_is_imported_with_clusters_by_code_or_id(app_only,
                                                                             province):
    s = app_only
    text = CSV.format(c2=province["c2"]["id"])
    r = s.call("POST", "/api/v1/nodes/import", data=text.encode("utf-8"),
               headers={"Content-Type": "text/csv; charset=utf-8"})
    assert r.status_code == 201, r.text
    answers = r.json()["nodes"]
    assert [a["name"] for a in answers] == ["Loa chợ Hạ Long", "Loa nhà văn hoá, tổ 5",
                                            "Loa Bến Đoan"]
    assert [a["cluster_id"] for a in answers] == [province["c1"]["id"], province["c2"]["id"],
                                                  province["c2"]["id"]]
    nodes = {n["id"]: n for n in s.ok("GET", "/api/v1/nodes")["nodes"]}
    assert nodes[answers[1]["id"]]["lat"] == pytest.approx(20.9433)
    assert nodes[answers[1]["id"]]["lon"] == pytest.approx(107.0722)
    assert nodes[answers[2]["id"]]["lat"] is None
    assert "Loa chợ Hạ Long" in answers[0]["config"]


def test_a_csv_with_bad_rows_saves_nothing_and_names_each_line_and_column(app_only, province):
    s = app_only
    before, passwd = _node_ids(s), _passwd(s)
    text = ("name,cluster,latitude,longitude\n"
            "Loa tốt,QN-HG-1,20.95,107.08\n"
            "Loa sai vĩ độ,QN-HG-1,bắc,107.08\n"
            "Loa không cụm,QN-XX-9,20.95,107.08\n"
            "Loa xa,QN-HG-1,20.95,190\n"
            ",QN-HG-1,20.95,107.08\n")
    r = s.call("POST", "/api/v1/nodes/import", data=text.encode("utf-8"),
               headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_rows"
    assert [(e["row"], e["field"], e["code"]) for e in err["rows"]] == [
        (3, "latitude", "invalid"), (4, "cluster", "unknown_area"),
        (5, "longitude", "invalid"), (6, "name", "missing_field")]
    assert "QN-XX-9" in err["rows"][1]["message"]
    assert _node_ids(s) == before and _passwd(s) == passwd


@pytest.mark.parametrize("data,what", [
    (b"name,cluster,latitude\nLoa,QN-HG-1,20\n", "longitude"),
    ("name,cluster,latitude,longitude\nLoa Đông Hà,QN-HG-1,20,107\n".encode("cp1258"), "UTF-8"),
    (b"name,cluster,latitude,longitude\n", "không có dòng dữ liệu"),
])
def test_a_csv_file_that_cannot_be_read_is_refused_with_the_reason(app_only, province, data,
                                                                   what):
    r = app_only.call("POST", "/api/v1/nodes/import", data=data,
                      headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_csv" and what in r.json()["error"]["message"]


def test_an_import_that_is_not_csv_is_refused(app_only, province):
    r = app_only.call("POST", "/api/v1/nodes/import", json={"name": "Loa"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "not_csv"


def test_a_technician_cannot_import_into_another_wards_cluster(app_only, wards):
    s = app_only
    text = (f"name,cluster,latitude,longitude\nLoa mới,{wards['mine_cluster']['id']},,\n"
            f"Loa lạ,{wards['other_cluster']['id']},,\n")
    r = s.call("POST", "/api/v1/nodes/import", token=wards["technician"], data=text.encode(),
               headers={"Content-Type": "text/csv"})
    assert r.status_code == 422, r.text
    assert [(e["row"], e["field"], e["code"]) for e in r.json()["error"]["rows"]] == [
        (3, "cluster", "forbidden_area")]


def test_provisioning_adds_lines_to_the_broker_files_and_keeps_the_rest(app_only, province):
    """The files are not written again whole for every node (that grew with the fleet):
    what was there stays, byte for byte, and the new node's lines follow; revoking a node
    writes them again without it."""
    s = app_only
    c1 = province["c1"]["id"]
    first = s.ok("POST", "/api/v1/nodes", json={"cluster_id": c1, "name": "Loa 1"})
    d = Path(s.settings.mosquitto_dir)
    passwd, acl = (d / "passwd").read_text(), (d / "acl").read_text()
    inode = (d / "passwd").stat().st_ino
    more = s.ok("POST", "/api/v1/nodes/bulk", json=[{"cluster_id": c1, "name": "Loa 2"},
                                                    {"cluster_id": c1, "name": "Loa 3"}])
    one = s.ok("POST", "/api/v1/nodes", json={"cluster_id": c1, "name": "Loa 4"})
    new_passwd, new_acl = (d / "passwd").read_text(), (d / "acl").read_text()
    assert (d / "passwd").stat().st_ino == inode
    assert new_passwd.startswith(passwd) and new_acl.startswith(acl)
    for a in [*more["nodes"], one]:
        assert f"\n{a['id']}:$7$" in new_passwd
        assert f"\nuser {a['id']}\n" in new_acl
        block = new_acl.split(f"user {a['id']}\n", 1)[1].split("\n\n", 1)[0]
        assert "topic read loa/v1/groups/qn-hg-1/cmd" in block.splitlines()
    s.ok("POST", f"/api/v1/nodes/{first['id']}/revoke")
    assert f"{first['id']}:" not in (d / "passwd").read_text()
    assert f"user {first['id']}\n" not in (d / "acl").read_text()
    assert f"\n{one['id']}:$7$" in (d / "passwd").read_text()
