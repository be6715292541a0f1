"""Query strings, declared once (server/queries.py): what the document says of a parameter is
what the route does with it, and the pages read their filters as the API reads its own."""
from __future__ import annotations

import re

import pytest

from server.openapi import OPENAPI
from tests.server.helpers import node_ids
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

PASSWORD = "mat-khau-123"


def _refusable(schema: dict) -> str | None:
    """A value the parameter's schema does not admit, where it admits less than any text."""
    if "maxLength" in schema and schema.get("type") == "string":
        return "a" * (schema["maxLength"] + 1)
    if schema.get("type") == "integer" or "enum" in schema or "pattern" in schema:
        return "khong-hop-le"
    if "anyOf" in schema:  # a time or a day, or empty
        return "khong-hop-le" if any("format" in b or "pattern" in b
                                     for b in schema["anyOf"]) else None
    return None


def _query_parameters() -> list[tuple[str, str, str, str]]:
    """(path, parameter, a value it refuses, its schema) for every GET's query parameter."""
    out = []
    for path, ops in OPENAPI["paths"].items():
        for param in ops.get("get", {}).get("parameters", []):
            bad = _refusable(param["schema"]) if param["in"] == "query" else None
            if bad is not None:
                out.append((path, param["name"], bad, str(param["schema"])))
    return out


PARAMETERS = _query_parameters()


def test_the_document_declares_the_parameters_of_every_listing():
    """The listings that take a period, a filter or a limit each say which (a guard on the
    table above: a route whose parameters went missing from the document would pass below)."""
    named = {(path, name) for path, name, _bad, _schema in PARAMETERS}
    for path, names in (("/api/v1/nodes", {"area", "limit", "status"}),
                        ("/api/v1/alerts", {"state", "area", "kind", "limit"}),
                        ("/api/v1/playlogs", {"area", "from", "to", "limit"}),
                        ("/api/v1/reports/airplay", {"area", "from", "to"}),
                        ("/api/v1/reports/summary", {"area", "from", "to"}),
                        ("/api/v1/audit", {"from", "to", "limit"}),
                        ("/api/v1/nodes/{node_id}/telemetry", {"from", "to", "resolution"}),
                        ("/api/v1/areas/{area_id}/schedule", {"from", "to"}),
                        ("/api/v1/broadcasts/{broadcast_id}/slots", {"from", "to"})):
        assert {(path, n) for n in names} <= named, path


@pytest.mark.parametrize(("path", "name", "bad", "schema"), PARAMETERS,
                         ids=[f"{p} {n}" for p, n, _b, _s in PARAMETERS])
def test_a_value_the_document_does_not_admit_is_refused_naming_its_parameter(
        app_only, wards, path, name, bad, schema):
    s = app_only
    node = node_ids(s, wards["mine"]["id"])[0]
    filled = path.replace("{area_id}", str(wards["mine"]["id"])).replace("{node_id}", node)
    if "{broadcast_id}" in filled:
        b = s.approved_bulletin("Thông báo", "Lịch cắt điện.")
        bc = s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"areas": [wards["mine"]["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": "2030-01-01T07:00:00+07:00"})
        filled = filled.replace("{broadcast_id}", str(bc["id"]))
    assert "{" not in filled, filled
    r = s.call("GET", filled, params={name: bad})
    error = r.json()["error"]
    if name == "node":  # the route looks the node up: text that is no node id names none
        assert r.status_code == 404 and error["code"] == "unknown_node", error
    elif path == "/api/v1/reports/summary":  # the report's own answers, as its page shows them
        assert (r.status_code, error["code"]) == (
            (404, "unknown_area") if name == "area" else (400, "bad_date")), error
        assert bad in error["message"]
    else:
        assert r.status_code == 400 and error["code"] == "invalid", error
        assert name in error["message"], error


def test_a_limit_is_held_to_its_range_not_refused(app_only, wards):
    s = app_only
    everything = s.ok("GET", "/api/v1/nodes")["nodes"]
    assert len(everything) == 2
    assert len(s.ok("GET", "/api/v1/nodes?limit=0")["nodes"]) == 1
    assert len(s.ok("GET", "/api/v1/nodes?limit=-5")["nodes"]) == 1
    assert s.ok("GET", "/api/v1/nodes?limit=100000")["nodes"] == everything


def test_an_empty_filter_is_no_filter(app_only, wards):
    s = app_only
    everything = s.ok("GET", "/api/v1/nodes")["nodes"]
    assert s.ok("GET", "/api/v1/nodes?status=&after=")["nodes"] == everything
    assert s.ok("GET", "/api/v1/alerts?state=&kind=&node=") == s.ok("GET", "/api/v1/alerts")


def test_the_node_list_page_refuses_the_status_the_api_refuses(app_only, wards):
    s = app_only
    api = s.call("GET", "/api/v1/nodes?status=broken")
    assert api.status_code == 400
    options = re.findall(r"online|offline|never_connected|maintenance", api.json()["error"][
        "message"])
    assert len(set(options)) == 4
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    page = tech.get("/nodes?status=broken")
    assert page.status_code == 400 and "never_connected" in page.text
    shown = tech.get("/nodes?status=never_connected&area=&page=")
    assert shown.status_code == 200


# a page and a value of one of its filters that the page never offers (a mistyped or stale link)
PAGE_REFUSALS = [
    ("/nodes?page=2x", "page"), ("/alerts?state=closed", "state"), ("/alerts?kind=fire", "kind"),
    ("/alerts?area=x", "area"), ("/alerts?page=-1", "page"),
    ("/bulletins?status=published", "status"), ("/bulletins?category=weather", "category"),
    ("/schedule?week=tuesday", "week"), ("/schedule?area=x", "area"),
    ("/reports?page=x", "page"), ("/admin/audit?from=2026-13-01", "from"),
    ("/admin/audit?before=x", "before"), ("/admin/wards?area=x", "area"),
]


def test_a_page_refuses_a_filter_value_it_never_offers_naming_the_filter(app_only, wards):
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    for path, name in PAGE_REFUSALS:
        page = admin.get(path)
        assert (page.status_code, f"Trường {name} không hợp lệ" in page.text) == (400, True), path


def test_a_pages_empty_filter_fields_are_no_filter(app_only, wards):
    s = app_only
    s.ok("POST", "/api/v1/bulletins", json={"title": "Lịch tiêm chủng", "text": "Tiêm chủng.",
                                            "category": "health"})
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    listed = admin.get("/bulletins?status=&category=&q=")
    assert listed.status_code == 200 and "Lịch tiêm chủng" in listed.text
    assert "Lịch tiêm chủng" not in admin.get("/bulletins?status=approved").text
    def audit_rows(query: str) -> int:
        return admin.get(f"/admin/audit?{query}").text.count("<tr")
    assert audit_rows("actor=&action=&target=&from=&to=&before=") == audit_rows("") \
        > audit_rows("actor=nobody")
    for path in ("/alerts?state=&area=&kind=&page=", "/schedule?area=&week=", "/reports?page=",
                 "/admin/wards?area="):
        assert admin.get(path).status_code == 200, path


def test_the_bulletin_list_refuses_a_status_that_does_not_exist_as_its_page_does(app_only, wards):
    s = app_only
    api = s.call("GET", "/api/v1/bulletins?status=published")
    assert api.status_code == 400 and "pending" in api.json()["error"]["message"]
    assert s.ok("GET", "/api/v1/bulletins?status=pending") == {"bulletins": []}
