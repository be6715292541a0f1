"""The administration pages without a browser: the area tree (add, rename, move, merge two wards
after a review that changes nothing) with its node counts, and provisioning nodes from the web
(one from a form, many from CSV), whose config with the node's password is shown once; a
technician provisions but never touches the area tree."""
from __future__ import annotations

import html
import re
from pathlib import Path

from sqlalchemy import select

from server.cli import main as cli
from server.models import Area, Node
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser, csrf_from, found

PASSWORD = "mat-khau-123"


def _db(s):
    return s.app.extensions["db_sessions"]()


def _operator(s, ward_id: int | None = None) -> PageUser:
    args = ["--instance", str(s.instance), "user", "vanhanh", "--role", "operator",
            "--password", PASSWORD]
    assert cli(args + (["--area-id", str(ward_id)] if ward_id else [])) == 0
    return PageUser(s, "vanhanh", PASSWORD)


def _tree(page: str) -> dict[int, int]:
    """The area tree's rows: area id -> its node count."""
    return {int(a): int(n) for a, n in re.findall(
        r'<tr id="area-(\d+)" data-kind="[a-z]+" data-nodes="(\d+)"', page)}


def _flash(page: str) -> list[str]:
    return re.findall(r'<p class="flash" role="status">([^<]*)</p>', page)


def test_the_tree_shows_each_area_with_the_nodes_below_it(app_only, wards):
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    page = admin.get("/areas").text
    tree = _tree(page)
    assert tree[wards["mine"]["id"]] == 1 and tree[wards["mine_cluster"]["id"]] == 1
    province = s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")["parent_id"]
    assert tree[province] == 2
    assert "Phường Lê Chân" in page and "Cụm 1" in page


def test_an_operator_adds_renames_and_moves_areas_on_the_pages(app_only, wards):
    s = app_only
    operator = _operator(s, wards["mine"]["id"])
    r = operator.post("/areas", data={"parent_id": wards["mine"]["id"], "name": "Cụm chợ",
                                      "code": "HP-LC-CHO", "kind": "cluster"})
    assert r.status_code == 302
    with _db(s) as db:
        new = db.scalar(select(Area).where(Area.code == "HP-LC-CHO"))
        assert new.parent_id == wards["mine"]["id"]
    page = operator.get("/areas").text
    assert "Đã thêm địa bàn Cụm chợ." in _flash(page) and new.id in _tree(page)
    # rename and move the first cluster under the new one (any depth)
    r = operator.post(f"/areas/{wards['mine_cluster']['id']}",
                      data={"name": "Cụm 1 (chợ)", "parent_id": new.id})
    assert r.status_code == 302
    area = s.ok("GET", f"/api/v1/areas/{wards['mine_cluster']['id']}")
    assert (area["name"], area["parent_id"]) == ("Cụm 1 (chợ)", new.id)
    assert _tree(operator.get("/areas").text)[new.id] == 1  # its node came along
    # the node now listens to the new cluster's group too, and the broker's ACL says so
    node_id = s.ok("GET", f"/api/v1/nodes?area={new.id}")["nodes"][0]["id"]
    acl = (Path(s.settings.mosquitto_dir) / "acl").read_text(encoding="utf-8")
    assert f"groups/{new.group}/cmd" in acl.split(f"user {node_id}\n")[1].split("\n\n")[0]
    # a move under its own area is refused with the reason, and nothing moves
    r = operator.post(f"/areas/{new.id}", data={"name": "Cụm chợ",
                                                "parent_id": wards["mine_cluster"]["id"]})
    page = operator.get(f"/areas/{new.id}").text
    assert any("nằm trong chính Cụm chợ" in m for m in _flash(page))
    assert s.ok("GET", f"/api/v1/areas/{new.id}")["parent_id"] == wards["mine"]["id"]
    # outside its ward an operator sees no area page
    assert operator.get(f"/areas/{wards['other']['id']}").status_code == 403


def test_two_wards_are_merged_from_the_page_after_a_review_that_changes_nothing(app_only,
                                                                                wards):
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    mine, other = wards["mine"], wards["other"]
    page = admin.get(f"/areas/{other['id']}").text
    assert f'<option value="{mine["id"]}">' in page  # a ward is offered wards to merge into
    assert f'<option value="{wards["mine_cluster"]["id"]}">' not in \
        page.split('id="merge-into"')[1]
    review = admin.get(f"/areas/{other['id']}/merge?into={mine['id']}")
    assert review.status_code == 200
    assert "Gộp Phường Ngô Quyền vào Phường Lê Chân" in review.text
    assert "1 thiết bị chuyển sang" in review.text
    assert s.ok("GET", f"/api/v1/areas/{other['id']}")["merged_into_id"] is None  # a review
    r = admin.post(f"/areas/{other['id']}/merge", data={"into": mine["id"]})
    assert r.status_code == 302
    page = admin.get("/areas").text
    assert _tree(page)[mine["id"]] == 2 and other["id"] not in _tree(page)
    assert any(m.startswith("Đã gộp Phường Ngô Quyền vào Phường Lê Chân") for m in _flash(page))
    assert 'id="merged-' in page  # listed apart as merged
    with _db(s) as db:
        assert db.get(Area, wards["other_cluster"]["id"]).parent_id == mine["id"]


def test_a_merge_the_server_refuses_is_shown_with_its_reason(app_only, wards):
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    r = admin.post(f"/areas/{wards['other_cluster']['id']}/merge",
                   data={"into": wards["mine"]["id"]})
    assert r.status_code == 422
    assert "Chỉ gộp được hai địa bàn cùng cấp" in r.text
    assert s.ok("GET", f"/api/v1/areas/{wards['other_cluster']['id']}")["merged_into_id"] is None
    # the area to merge into is read as the API's merge body reads it
    gone = wards["other"]["id"]
    assert "into" in admin.post(f"/areas/{gone}/merge", data={}).text
    for into in ("abc", str(2 ** 63)):
        r = admin.get(f"/areas/{gone}/merge?into={into}")
        assert r.status_code == 400 and "into" in r.text, into
    assert s.ok("GET", f"/api/v1/areas/{gone}")["merged_into_id"] is None


def _answer_ids(page: str) -> list[str]:
    return re.findall(r'<section class="card prov-answer" id="answer-([^"]+)"', page)


def test_provisioning_shows_the_config_once_and_a_resend_shows_it_gone(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    form = tech.get("/provisioning")
    assert form.headers["Cache-Control"] == "no-store"
    once = found(r'name="once" value="([^"]+)"', form.text)
    assert f'value="{wards["other_cluster"]["id"]}"' not in form.text  # only its own clusters
    data = {"name": "Loa chợ Cột Đèn", "cluster_id": wards["mine_cluster"]["id"],
            "lat": "20,8449", "lon": "106.6881", "once": once, "csrf_token": csrf_from(form.text)}
    r = tech.post("/provisioning", with_token=False, data=data)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    (node_id,) = _answer_ids(r.text)
    assert 'password = "' in html.unescape(r.text) and f'download="{node_id}.toml"' in r.text
    with _db(s) as db:
        node = db.get(Node, node_id)
        assert (node.name, node.lat, node.lon) == ("Loa chợ Cột Đèn", 20.8449, 106.6881)
    # the broker knows the node, as after POST /api/v1/nodes
    assert f"{node_id}:" in (Path(s.settings.mosquitto_dir) / "passwd").read_text()
    # the same form sent again (a reload of the answer) provisions nothing, shows no password
    again = tech.post("/provisioning", with_token=False, data=data)
    assert again.status_code == 410 and "password" not in html.unescape(again.text)
    assert "không hiện lại" in again.text
    with _db(s) as db:
        assert len(db.scalars(select(Node).where(Node.name == "Loa chợ Cột Đèn")).all()) == 1
    # a form opened in another tab before is still good once
    other = tech.get("/provisioning").text
    newer = tech.get("/provisioning").text
    for page in (other, newer):
        mark = found(r'name="once" value="([^"]+)"', page)
        assert tech.post("/provisioning", data={**data, "name": f"Loa {mark[:4]}",
                                                "once": mark}).status_code == 200
    # and the node's page never shows it either
    assert 'password = "' not in html.unescape(tech.get(f"/nodes/{node_id}").text)


def test_a_bad_provisioning_form_says_why_and_keeps_what_was_typed(app_only, wards):
    tech = PageUser(app_only, "kythuat-lc", PASSWORD)
    form = tech.get("/provisioning").text
    once = found(r'name="once" value="([^"]+)"', form)
    r = tech.post("/provisioning", data={"name": "Loa cổng", "lat": "91",
                                         "cluster_id": wards["mine_cluster"]["id"],
                                         "once": once})
    assert r.status_code == 400 and "lat" in r.text and 'value="Loa cổng"' in r.text
    assert 'password = "' not in html.unescape(r.text)


def test_a_one_time_install_url_is_made_from_the_page(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    node_id = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    assert "Tạo đường dẫn cài đặt một lần" in tech.get(f"/nodes/{node_id}").text
    r = tech.post(f"/nodes/{node_id}/install-url")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    token = found(r"LOA_PROVISION_TOKEN=(\S+)", r.text)
    fetched = s.call("GET", f"/api/v1/nodes/{node_id}/provisioning", token=token)
    assert fetched.status_code == 200 and fetched.json()["id"] == node_id
    theirs = s.ok("GET", f"/api/v1/nodes?area={wards['other']['id']}")["nodes"][0]["id"]
    assert tech.post(f"/nodes/{theirs}/install-url").status_code == 404


def test_csv_import_from_the_page_provisions_every_row_or_names_the_bad_line(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)

    def send(text: str):
        once = found(r'name="once" value="([^"]+)"', tech.get("/provisioning").text)
        return tech.post("/provisioning/import", data={"once": once},
                         files={"file": ("loa.csv", text.encode(), "text/csv")})

    bad = send("name,cluster,latitude,longitude\nLoa A,HP-LC-1,20.1,106.1\n"
               "Loa B,HP-LC-1,abc,106.2\n")
    assert bad.status_code == 422 and "<td data-label=\"Dòng\">3</td>" in bad.text
    assert "latitude" in bad.text
    with _db(s) as db:
        assert db.scalar(select(Node).where(Node.name == "Loa A")) is None
    good = send("name,cluster,latitude,longitude\nLoa A,HP-LC-1,20.1,106.1\n"
                "Loa B,HP-LC-1,20.2,106.2\n")
    assert good.status_code == 200 and len(_answer_ids(good.text)) == 2
    assert html.unescape(good.text).count('password = "') == 2


def test_a_technician_provisions_but_sees_no_area_tree_and_cannot_merge(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    home = tech.get("/").text
    assert 'href="/provisioning"' in home and 'href="/areas"' not in home
    assert 'href="/provisioning"' in tech.get("/nodes").text
    assert tech.get("/areas").status_code == 403
    r = tech.post(f"/areas/{wards['other']['id']}/merge", data={"into": wards["mine"]["id"]})
    assert r.status_code == 403
    assert s.ok("GET", f"/api/v1/areas/{wards['other']['id']}")["merged_into_id"] is None
    approver = PageUser(s, "canbo-lc", PASSWORD)
    assert approver.get("/provisioning").status_code == 403
    assert 'href="/provisioning"' not in approver.get("/nodes").text
