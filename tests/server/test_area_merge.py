"""Merging two wards into one (server.areas.merge_areas, POST /api/v1/areas/{id}/merge): what the
merged ward held moves to the kept ward (clusters, nodes, schedules, users, lexicon), the nodes
get the kept ward's schedules and groups, its past still counts in the airplay report, and a
merge that cannot be done is refused with nothing changed."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from schedules.slots import slot_id
from server.cli import main as cli
from server.models import Area, AuditEntry, Broadcast, LexiconEntry, Node, User
from tests.server.airplay_helpers import back_date, played, report, window
from tests.server.helpers import PASSWORD, TZ, desired_pass


def _db(s):
    return s.app.extensions["db_sessions"]()


def _slots_of(s, node_id: str) -> set[int]:
    """The broadcasts whose slots the node's newest desired state holds."""
    body = s.ok("GET", f"/api/v1/nodes/{node_id}/desired")["body"] or {}
    return {int(e["slot_id"].split("-")[0][1:]) for e in body.get("schedule", [])}


@pytest.fixture
def two(make_app):
    """A province with two wards, a cluster and a node in each, a daily series and a timed
    one-off for the second ward (B), B's editor, and a lexicon entry in each ward."""
    s = make_app(airplay_grace_s=60)
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    a = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    a1 = s.area("Cụm Lê Chân 1", "HP-LC-1", "cluster", a["id"])
    b = s.area("Phường Ngô Quyền", "HP-NQ", "ward", province["id"])
    b1 = s.area("Cụm Ngô Quyền 1", "HP-NQ-1", "cluster", b["id"])
    node_a = s.ok("POST", "/api/v1/nodes", json={"cluster_id": a1["id"], "name": "Loa A"})
    node_b = s.ok("POST", "/api/v1/nodes", json={"cluster_id": b1["id"], "name": "Loa B"})
    for node in (node_a, node_b):
        back_date(s, Node, node["id"])
    bulletin = s.approved_bulletin()
    six = dt.datetime.combine(dt.datetime.now(TZ).date() - dt.timedelta(days=3), dt.time(6), TZ)
    series = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin["id"], "targets": {"areas": [b["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": six.isoformat()})
    back_date(s, Broadcast, series["id"])
    later = (dt.datetime.now(TZ) + dt.timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                                 microsecond=0)
    one_off = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin["id"], "targets": {"areas": [b["id"]]},
        "start_at": later.isoformat()})
    assert cli(["--instance", str(s.instance), "user", "bientap-nq", "--role", "staff",
                "--password", PASSWORD, "--area-id", str(b["id"])]) == 0
    for ward, spoken in ((a, "ủy ban nhân dân Lê Chân"), (b, "ủy ban nhân dân Ngô Quyền")):
        s.ok("POST", f"/api/v1/areas/{ward['id']}/lexicon", json={"term": "UBND",
                                                                   "spoken": spoken})
    s.ok("POST", f"/api/v1/areas/{b['id']}/lexicon", json={"term": "NQ", "spoken": "Ngô Quyền"})
    return {"s": s, "province": province, "a": a, "a1": a1, "b": b, "b1": b1,
            "node_a": node_a, "node_b": node_b, "bulletin": bulletin, "series": series,
            "one_off": one_off, "six": six}


def merge(s, gone: dict, keep: dict, query: str = "", **kw):
    return s.call("POST", f"/api/v1/areas/{gone['id']}/merge{query}", json={"into": keep["id"]},
                  **kw)


def test_a_merge_moves_clusters_nodes_schedules_users_and_lexicon_to_the_kept_ward(two):
    s, a, b = two["s"], two["a"], two["b"]
    r = merge(s, b, a)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["area"]["merged_into_id"] == a["id"] and got["area"]["merged_at"]
    assert got["moved"]["areas"] == [two["b1"]["id"]]
    assert got["moved"]["nodes"] == [two["node_b"]["id"]]
    assert got["moved"]["broadcasts"] == [two["one_off"]["id"]]
    (old, new), = got["moved"]["series_split"]
    assert old == two["series"]["id"]
    assert s.ok("GET", f"/api/v1/areas/{two['b1']['id']}")["parent_id"] == a["id"]
    # the node listens to the kept ward's group now
    node_b = s.ok("GET", f"/api/v1/nodes/{two['node_b']['id']}")
    assert node_b["groups"] == [two["b1"]["group"], a["group"], two["province"]["group"]]
    # the one-off still to come and the series' future are the kept ward's
    assert s.ok("GET", f"/api/v1/broadcasts/{two['one_off']['id']}")["targets"]["areas"] == \
        [a["id"]]
    assert s.ok("GET", f"/api/v1/broadcasts/{new}")["targets"]["areas"] == [a["id"]]
    with _db(s) as db:
        user = db.scalar(select(User).where(User.username == "bientap-nq"))
        assert user.area_id == a["id"]
        terms = {(e.area_id, e.term): e.spoken for e in db.scalars(select(LexiconEntry))}
        # the kept ward's own reading of a term wins; a term only the merged ward had moves
        assert terms == {(a["id"], "UBND"): "ủy ban nhân dân Lê Chân",
                         (a["id"], "NQ"): "Ngô Quyền"}
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "area.merge")).one()
        assert entry.target_id == str(b["id"]) and entry.detail["into"] == a["id"]
        assert entry.detail["lexicon_dropped"] == ["UBND"]
    # B's editor now works in the kept ward: the area tree shows the merged ward as merged
    editor = s.login("bientap-nq", PASSWORD)
    seen = {x["id"]: x for x in s.ok("GET", "/api/v1/areas", token=editor)["areas"]}
    assert a["id"] in seen and two["b1"]["id"] in seen


def test_after_a_merge_the_kept_wards_nodes_get_the_merged_schedules_and_the_broker_its_groups(
        two):
    s, a, b = two["s"], two["a"], two["b"]
    desired_pass(s)
    assert two["series"]["id"] in _slots_of(s, two["node_b"]["id"])
    assert two["series"]["id"] not in _slots_of(s, two["node_a"]["id"])
    new = merge(s, b, a).json()["moved"]["series_split"][0][1]
    desired_pass(s)
    for node in (two["node_a"], two["node_b"]):
        assert _slots_of(s, node["id"]) == {new}, node["id"]
    acl = (Path(s.settings.mosquitto_dir) / "acl").read_text(encoding="utf-8")
    block = acl.split(f"user {two['node_b']['id']}\n")[1].split("\n\n")[0]
    assert f"/groups/{a['group']}/cmd" in block and f"/groups/{b['group']}/" not in block


def test_the_merged_wards_past_plays_still_count_in_the_airplay_report(two):
    s, a, b, six = two["s"], two["a"], two["b"], two["six"]
    node_b, bulletin, series = two["node_b"], two["bulletin"], two["series"]
    days = [six + dt.timedelta(days=n) for n in range(2)]
    for day in days:
        played(s, node_b["id"], bulletin["sha256"], day, bulletin["duration_ms"],
               slot_id=slot_id(series["id"], day))
    period = window(six - dt.timedelta(hours=1), six + dt.timedelta(days=1, hours=1))
    before = report(s, period)
    merge(s, b, a)
    after = report(s, period)
    assert after["items"] == before["items"]
    assert [(i["node_id"], i["status"]) for i in after["items"]] == \
        [(node_b["id"], "aired")] * 2
    # and the kept ward's report holds them, under the cluster they aired in
    ward = report(s, period + f"&area={a['id']}")
    assert ward["totals"] == [{"area_id": two["b1"]["id"], "area_name": "Cụm Ngô Quyền 1",
                               "planned": 2, "aired": 2, "partial": 0, "missed": 0,
                               "pending": 0}]
    # the node of the kept ward was not planned the merged ward's past
    assert all(i["node_id"] != two["node_a"]["id"] for i in after["items"])


def _snapshot(s) -> dict:
    with _db(s) as db:
        return {"areas": sorted((x.id, x.parent_id, x.merged_into_id)
                                for x in db.scalars(select(Area))),
                "nodes": sorted((n.id, n.cluster_id) for n in db.scalars(select(Node))),
                "broadcasts": sorted((bc.id, tuple(bc.target_areas), bc.ends_at)
                                     for bc in db.scalars(select(Broadcast))),
                "users": sorted((u.id, u.area_id) for u in db.scalars(select(User)))}


@pytest.mark.parametrize("case,code", [
    ("into_its_own_cluster", "area_cycle"),
    ("into_itself", "area_cycle"),
    ("cluster_into_a_ward", "merge_kind"),
    ("ward_into_the_province", "merge_kind"),
])
def test_a_merge_that_cannot_be_is_refused_clearly_and_changes_nothing(two, case, code):
    s = two["s"]
    gone, keep = {"into_its_own_cluster": (two["b"], two["b1"]),
                  "into_itself": (two["b"], two["b"]),
                  "cluster_into_a_ward": (two["b1"], two["a"]),
                  "ward_into_the_province": (two["b"], two["province"])}[case]
    before = _snapshot(s)
    r = merge(s, gone, keep)
    assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    assert gone["name"] in r.json()["error"]["message"]  # Vietnamese, naming the area
    assert _snapshot(s) == before
    english = merge(s, gone, keep, "?lang=en")
    assert english.json()["error"]["message"].startswith(("Cannot put", "Only two areas"))


def test_a_merged_ward_takes_no_second_merge_and_no_new_area(two):
    s, a, b = two["s"], two["a"], two["b"]
    assert merge(s, b, a).status_code == 200
    again = merge(s, b, a)
    assert again.status_code == 409 and again.json()["error"]["code"] == "area_merged"
    for method, path, body in (
            ("POST", "/api/v1/areas", {"name": "Cụm mới", "code": "NQ-9", "kind": "cluster",
                                       "parent_id": b["id"]}),
            ("POST", "/api/v1/broadcasts", {"bulletin_id": two["bulletin"]["id"],
                                            "targets": {"areas": [b["id"]]}}),
            ("POST", "/api/v1/users", {"username": "moi", "password": PASSWORD * 2,
                                       "role": "staff", "area_id": b["id"]}),
            ("PATCH", f"/api/v1/areas/{b['id']}", {"name": "Phường mới"})):
        r = s.call(method, path, json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "area_merged", (path, r.text)
        assert "đã được gộp vào địa bàn khác" in r.json()["error"]["message"]


def test_two_clusters_merge_with_their_nodes_and_the_merged_one_takes_no_new_node(two):
    s, a1, b1 = two["s"], two["a1"], two["b1"]
    s.ok("PATCH", f"/api/v1/areas/{b1['id']}", json={"parent_id": two["a"]["id"]})
    got = merge(s, b1, a1).json()
    assert got["moved"]["nodes"] == [two["node_b"]["id"]]
    assert s.ok("GET", f"/api/v1/nodes/{two['node_b']['id']}")["cluster_id"] == a1["id"]
    r = s.call("POST", "/api/v1/nodes", json={"cluster_id": b1["id"], "name": "Loa mới"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "area_merged"


def test_a_ward_operator_merges_only_within_their_own_area(two):
    s, a, b = two["s"], two["a"], two["b"]
    assert cli(["--instance", str(s.instance), "user", "vanhanh-lc", "--role", "operator",
                "--password", PASSWORD, "--area-id", str(a["id"])]) == 0
    operator = s.login("vanhanh-lc", PASSWORD)
    before = _snapshot(s)
    r = merge(s, b, a, token=operator)
    assert r.status_code == 403, r.text
    staff = s.login("bientap-nq", PASSWORD)
    assert merge(s, b, a, token=staff).status_code == 403
    assert _snapshot(s) == before


def test_an_area_moves_under_another_parent_but_never_under_itself(two):
    s, a, b1 = two["s"], two["a"], two["b1"]
    moved = s.ok("PATCH", f"/api/v1/areas/{b1['id']}", json={"parent_id": a["id"],
                                                              "name": "Cụm 2 Lê Chân"})
    assert moved["parent_id"] == a["id"] and moved["name"] == "Cụm 2 Lê Chân"
    assert s.ok("GET", f"/api/v1/nodes/{two['node_b']['id']}")["groups"][1] == a["group"]
    r = s.call("PATCH", f"/api/v1/areas/{a['id']}", json={"parent_id": b1["id"]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "area_cycle"
    assert s.ok("GET", f"/api/v1/areas/{a['id']}")["parent_id"] == two["province"]["id"]
