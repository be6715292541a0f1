"""GET /api/v1/nodes at a province's size: a page at a time, in id order, filtered and paged by
the database, so one call costs the same few statements whether the fleet holds 6 nodes or 60
(10,000 nodes in one answer took tens of seconds: one area query per node for its groups)."""
from __future__ import annotations

import pytest

from tests.server.helpers import Statements


@pytest.fixture
def fleet(app_only):
    s = app_only
    province = s.area("Tỉnh Quảng Ninh", "QN", "province")
    wards = [s.area(f"Phường {w}", f"QN-{w}", "ward", province["id"]) for w in range(2)]
    clusters = [s.area(f"Cụm {w}.{c}", f"QN-{w}-{c}", "cluster", ward["id"])
                for w, ward in enumerate(wards) for c in range(2)]
    return {"s": s, "wards": wards, "clusters": clusters}


def _provision(fleet, n: int) -> None:
    clusters = fleet["clusters"]
    r = fleet["s"].call("POST", "/api/v1/nodes/bulk", json=[
        {"cluster_id": clusters[i % len(clusters)]["id"], "name": f"Loa {i}"} for i in range(n)])
    assert r.status_code == 201, r.text


def _page(s, query: str = "") -> tuple[dict, list[str]]:
    with Statements(s.app.extensions["db_engine"]) as st:
        answer = s.ok("GET", f"/api/v1/nodes{query}")
    return answer, st.seen


def test_a_page_of_nodes_costs_the_same_statements_at_6_nodes_as_at_60(fleet):
    s = fleet["s"]
    _provision(fleet, 6)
    small, small_sql = _page(s)
    _provision(fleet, 54)
    big, big_sql = _page(s, "?limit=60")
    assert len(small["nodes"]) == 6 and len(big["nodes"]) == 60
    assert len(big_sql) == len(small_sql)
    # the groups a node answers with come from its cluster's areas, read once per cluster
    assert {tuple(n["groups"]) for n in big["nodes"]} == {
        tuple(n["groups"]) for n in small["nodes"]}
    assert all(len(n["groups"]) == 3 for n in big["nodes"])  # cluster, ward, province


def test_pages_walk_every_node_once_in_id_order_and_the_database_does_the_limit(fleet):
    s = fleet["s"]
    _provision(fleet, 23)
    seen, after, pages = [], "", 0
    while True:
        answer, sql = _page(s, f"?limit=10&after={after}")
        pages += 1
        assert len(answer["nodes"]) <= 10
        assert any("FROM nodes" in q and "LIMIT" in q for q in sql)
        seen += [n["id"] for n in answer["nodes"]]
        if answer["next"] is None:
            break
        after = answer["next"]
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 23


def test_the_first_page_holds_a_hundred_and_says_where_the_next_begins(fleet):
    s = fleet["s"]
    _provision(fleet, 101)
    first = s.ok("GET", "/api/v1/nodes")
    assert len(first["nodes"]) == 100 and first["next"] == first["nodes"][-1]["id"]
    rest = s.ok("GET", f"/api/v1/nodes?after={first['next']}")
    assert len(rest["nodes"]) == 1 and rest["next"] is None


def test_a_filtered_page_holds_only_the_areas_nodes_filtered_before_the_limit(fleet):
    s = fleet["s"]
    _provision(fleet, 40)
    ward = fleet["wards"][1]
    mine = {c["id"] for c in fleet["clusters"][2:]}
    answer, sql = _page(s, f"?area={ward['id']}&status=never_connected&limit=15")
    assert len(answer["nodes"]) == 15 and {n["cluster_id"] for n in answer["nodes"]} <= mine
    rest = s.ok("GET", f"/api/v1/nodes?area={ward['id']}&status=never_connected&limit=15"
                f"&after={answer['next']}")
    assert len(rest["nodes"]) == 5 and rest["next"] is None
    assert s.ok("GET", f"/api/v1/nodes?area={ward['id']}&status=online")["nodes"] == []


@pytest.mark.parametrize("query, field", [("limit=abc", "limit"), ("limit=1.5", "limit"),
                                          ("after=" + "x" * 200, "after")])
def test_a_bad_page_query_is_a_clear_400(fleet, query, field):
    r = fleet["s"].call("GET", f"/api/v1/nodes?{query}")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid" and field in err["message"]
