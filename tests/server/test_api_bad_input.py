"""Bad input gets a clear 4xx JSON error naming what was wrong, and nothing is written."""
import pytest
from sqlalchemy import func, select

from server.models import Base


def _row_counts(system) -> dict:
    with system.app.extensions["db_sessions"]() as db:
        return {t.name: db.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables
                # a failed login is audited, and counted against the login limits
                if t.name not in ("api_tokens", "audit_log", "audit_head", "rate_limit_hits")}


def _ward_with_cluster(system):
    province = system.area("Hải Phòng", "HP", "province")
    ward = system.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = system.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
    return ward, cluster


def _assert_error(r, status, code, mentions=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    if mentions:
        assert mentions in err["message"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("path,payload,field", [
    ("/api/v1/areas", {"code": "X", "kind": "ward"}, "name"),
    ("/api/v1/areas", {"name": "X", "kind": "ward"}, "code"),
    ("/api/v1/nodes", {"name": "Loa"}, "cluster_id"),
    ("/api/v1/bulletins", {"title": "T", "category": "other"}, "text"),
    ("/api/v1/bulletins", {"text": "Nội dung", "category": "other"}, "title"),
    ("/api/v1/broadcasts", {"targets": {"areas": [1]}}, "bulletin_id"),
])
def test_missing_field_is_named_and_nothing_is_written(app_only, path, payload, field):
    _ward_with_cluster(app_only)
    before = _row_counts(app_only)
    r = app_only.call("POST", path, json=payload)
    _assert_error(r, 400, "missing_field", mentions=field)
    assert _row_counts(app_only) == before


def test_body_that_is_not_json_is_refused(app_only):
    r = app_only.call("POST", "/api/v1/areas", data="name=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    _assert_error(r, 400, "not_json")


def test_unknown_area_is_refused_for_nodes_areas_and_broadcasts(app_only):
    _ward_with_cluster(app_only)
    b = app_only.approved_bulletin()
    before = _row_counts(app_only)
    _assert_error(app_only.call("POST", "/api/v1/nodes", json={"cluster_id": 999, "name": "Loa"}),
                  404, "unknown_area", mentions="999")
    _assert_error(app_only.call("POST", "/api/v1/areas",
                                json={"name": "X", "code": "X1", "kind": "ward", "parent_id": 999}),
                  404, "unknown_area")
    _assert_error(app_only.call("POST", "/api/v1/broadcasts",
                                json={"bulletin_id": b["id"], "targets": {"areas": [999]}}),
                  404, "unknown_area")
    assert _row_counts(app_only) == before


def test_node_must_be_provisioned_into_a_cluster(app_only):
    ward, _ = _ward_with_cluster(app_only)
    r = app_only.call("POST", "/api/v1/nodes", json={"cluster_id": ward["id"], "name": "Loa"})
    _assert_error(r, 400, "not_cluster")


def test_broadcasting_an_unapproved_bulletin_is_refused(app_only):
    ward, cluster = _ward_with_cluster(app_only)
    app_only.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa chợ"})
    b = app_only.ok("POST", "/api/v1/bulletins",
                    json={"title": "Chưa duyệt", "text": "Bản tin chưa duyệt.",
                          "category": "other"})
    for step in (None, "submit"):
        if step:
            app_only.ok("POST", f"/api/v1/bulletins/{b['id']}/{step}")
        before = _row_counts(app_only)
        r = app_only.call("POST", "/api/v1/broadcasts",
                          json={"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]}})
        _assert_error(r, 409, "not_approved", mentions=str(b["id"]))
        assert _row_counts(app_only) == before


def test_bad_or_missing_token_is_refused_and_nothing_is_written(app_only):
    _, cluster = _ward_with_cluster(app_only)
    before = _row_counts(app_only)
    for token in (None, "not-a-real-token"):
        r = app_only.call("POST", "/api/v1/nodes", token=token,
                          json={"cluster_id": cluster["id"], "name": "Loa"})
        _assert_error(r, 401, "unauthorized")
        _assert_error(app_only.call("GET", "/api/v1/nodes", token=token), 401, "unauthorized")
    r = app_only.http.post(f"{app_only.url}/api/v1/auth/token",
                           json={"username": "admin", "password": "wrong"})
    _assert_error(r, 401, "bad_credentials")
    assert _row_counts(app_only) == before


def test_error_messages_are_vietnamese_by_default_and_english_on_request(app_only):
    r = app_only.call("GET", "/api/v1/nodes", token=None)
    assert "đăng nhập" in r.json()["error"]["message"]
    r = app_only.call("GET", "/api/v1/nodes", token=None, headers={"Accept-Language": "en"})
    assert "login" in r.json()["error"]["message"]


def test_invalid_values_are_refused_with_the_field_named(app_only):
    ward, cluster = _ward_with_cluster(app_only)
    b = app_only.approved_bulletin()
    cases = [
        ("/api/v1/broadcasts", {"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
                                "priority": "urgent"}, "priority"),
        ("/api/v1/broadcasts", {"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
                                "volume": 150}, "volume"),
        ("/api/v1/broadcasts", {"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]},
                                "start_at": "ngày mai"}, "start_at"),
        ("/api/v1/broadcasts", {"bulletin_id": b["id"], "targets": {}}, None),
        ("/api/v1/bulletins", {"title": "T", "text": "x", "category": "sport"}, "category"),
        ("/api/v1/nodes", {"cluster_id": cluster["id"], "name": "L", "id": "Bad Id!"}, "id"),
        ("/api/v1/nodes", {"cluster_id": "one", "name": "L"}, "cluster_id"),
        ("/api/v1/areas", {"name": "X", "code": "Y", "kind": "galaxy"}, "kind"),
    ]
    before = _row_counts(app_only)
    for path, payload, field in cases:
        r = app_only.call("POST", path, json=payload)
        assert r.status_code == 400, (payload, r.text)
        if field:
            assert field in r.json()["error"]["message"], r.text
    assert _row_counts(app_only) == before


def test_duplicate_area_code_is_a_conflict(app_only):
    _ward_with_cluster(app_only)
    r = app_only.call("POST", "/api/v1/areas",
                      json={"name": "Khác", "code": "HP", "kind": "province"})
    _assert_error(r, 409, "duplicate")


def test_unknown_route_is_json_404(app_only):
    _assert_error(app_only.call("GET", "/api/v1/nothing-here"), 404, "not_found")


def test_healthz_says_the_broker_is_not_reported_without_a_dispatcher(app_only):
    r = app_only.call("GET", "/healthz", token=None)
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["broker"]["detail"]


def test_numbers_too_large_for_the_database_are_refused_not_crashed(app_only):
    """Found by fuzzing the OpenAPI document: SQLite cannot hold these and used to raise."""
    huge = 2**70
    assert app_only.call("GET", f"/api/v1/areas/{huge}").status_code == 404
    assert app_only.call("POST", f"/api/v1/bulletins/{huge}/submit").status_code == 404
    _assert_error(app_only.call("POST", "/api/v1/nodes", json={"cluster_id": huge, "name": "L"}),
                  400, "invalid", mentions="cluster_id")
    _assert_error(app_only.call("GET", f"/api/v1/playlogs?area={huge}"), 400, "invalid")
    r = app_only.call("GET", "/api/v1/playlogs?limit=-99999999999999999999")
    assert r.status_code == 200 and r.json()["playlogs"] == []


@pytest.mark.parametrize("path,payload,field", [
    ("/api/v1/bulletins", {"title": "Thông báo\u0000", "text": "Nội dung", "category": "other"},
     "title"),
    ("/api/v1/areas", {"name": "Phường \ud800", "code": "X", "kind": "ward"}, "name"),
    ("/api/v1/broadcasts", {"bulletin_id": 1, "targets": {"nodes": ["loa\u0000"]}},
     "targets.nodes"),
])
def test_text_no_database_can_store_is_refused_naming_its_field(app_only, path, payload, field):
    # PostgreSQL refuses NUL in text and no database takes a lone surrogate: a 422, not a 500
    before = _row_counts(app_only)
    r = app_only.call("POST", path, json=payload)
    _assert_error(r, 422, "invalid_text", mentions=field)
    assert "NUL" in r.json()["error"]["message"]
    assert _row_counts(app_only) == before


@pytest.mark.parametrize("path", ["/api/v1/playlogs?node=%00", "/api/v1/nodes?q=loa%00",
                                  "/api/v1/reports/airplay?node=a%00b"])
def test_a_query_holding_nul_is_refused_naming_the_parameter(app_only, path):
    r = app_only.call("GET", path)
    _assert_error(r, 422, "invalid_text", mentions=path.split("?")[1].split("=")[0])
