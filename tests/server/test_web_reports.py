"""The reports page and its downloads without a browser, on a small known data set: two wards,
a daily series in each, what their nodes reported airing and the telemetry they sent. The page
counts planned, aired and missed per area and per node, hours aired by category and area and
each node's uptime; the CSV and the PDF carry the same numbers (the PDF's text, with its
Vietnamese diacritics, read back with pypdf); a ward user sees their ward only; a wrong period or
area is refused in the user's language."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid

import pytest
from pypdf import PdfReader

from schedules.slots import slot_id
from server.bridge import Bridge
from server.models import Broadcast, Node, TelemetryHourly
from server.retention import HOUR_MS
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser
from tests.transports import NoTransport

PASSWORD = "mat-khau-123"
TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
TODAY = dt.datetime.now(TZ).date()
FIRST, LAST = TODAY - dt.timedelta(days=4), TODAY - dt.timedelta(days=2)  # 3 whole past days
SIX = dt.datetime.combine(FIRST, dt.time(6), TZ)
PERIOD = f"from={FIRST.isoformat()}&to={LAST.isoformat()}"


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def _back_date(s, model, key, days=10):
    with s.app.extensions["db_sessions"]() as db:
        db.get(model, key).created_at -= dt.timedelta(days=days)
        db.commit()


def _bulletin(s, category: str) -> dict:
    b = s.ok("POST", "/api/v1/bulletins", json={
        "title": "Thông báo tiêm chủng", "text": "Ủy ban nhân dân phường thông báo.",
        "category": category})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
    return s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve")


def _daily(s, bulletin: dict, ward_id: int) -> dict:
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": bulletin["id"], "targets": {"areas": [ward_id]},
        "recurrence": "FREQ=DAILY", "start_at": SIX.isoformat()})
    _back_date(s, Broadcast, bc["id"])
    return bc


def _played(s, node_id: str, bulletin: dict, bc: dict, day: int, result="completed",
            reason=None, minutes=45) -> None:
    """A `played` event for the series' slot of day ``day``: a completed play lasts
    ``minutes`` (a long programme, so the hours it adds read plainly)."""
    at = SIX + dt.timedelta(days=day)
    ran = result == "completed"
    bridge = Bridge(s.app.extensions["db_sessions"], NoTransport(), s.settings.topic_prefix,
                    tz=s.settings.timezone)
    bridge.handle(f"{s.settings.topic_prefix}/nodes/{node_id}/events", json.dumps({
        "v": 1, "id": str(uuid.uuid4()), "ts": ms(at), "type": "played", "item_id": "bc-x",
        "sha256": bulletin["sha256"], "scheduled_at": ms(at),
        "started_at": ms(at) if ran else None,
        "ended_at": ms(at) + minutes * 60_000 if ran else None,
        "result": result, "reason": reason, "slot_id": slot_id(bc["id"], at)}).encode())


def _heard(s, node_id: str, hours: int, per_hour: int) -> None:
    """Telemetry as the dispatcher rolls it up: ``per_hour`` reports in each of the period's
    first ``hours`` hours."""
    start = ms(dt.datetime.combine(FIRST, dt.time(), TZ))
    with s.app.extensions["db_sessions"]() as db:
        db.add_all(TelemetryHourly(node_id=node_id, hour_ms=start + n * HOUR_MS, count=per_hour)
                   for n in range(hours))
        db.commit()


@pytest.fixture
def data(app_only, wards):
    """Mine: 3 slots, day 0 aired, day 1 skipped (quiet hours), day 2 unreported, heard half
    the period. Other: 3 slots, all aired, heard all the period."""
    s = app_only
    nodes = {}
    for key in ("mine", "other"):
        cluster = wards[f"{key}_cluster"]["id"]
        node_id = s.ok("GET", f"/api/v1/nodes?area={cluster}")["nodes"][0]["id"]
        _back_date(s, Node, node_id)
        nodes[key] = node_id
    per_hour = 3600 // s.settings.node_telemetry_s
    health, other = _bulletin(s, "health"), _bulletin(s, "traffic")
    bc_mine, bc_other = _daily(s, health, wards["mine"]["id"]), \
        _daily(s, other, wards["other"]["id"])
    _played(s, nodes["mine"], health, bc_mine, 0)
    _played(s, nodes["mine"], health, bc_mine, 1, result="skipped", reason="quiet_hours")
    for day in range(3):
        _played(s, nodes["other"], other, bc_other, day)
    _heard(s, nodes["mine"], 36, per_hour)
    _heard(s, nodes["other"], 72, per_hour * 2)  # more than expected still counts as 100 %
    return {**wards, "nodes": nodes, "health": health, "traffic": other}


def _row(page: str, row_id: str) -> str:
    at = page.index(f'id="{row_id}"')
    return page[page.rindex("<tr", 0, at):page.index("</tr>", at)]


def _hours(table: str, category: str, area: str) -> str:
    at = table.index(f'<td data-label="Lĩnh vực">{category}</td><td data-label="Địa bàn">{area}')
    cell = table.index('data-label="Số giờ phát">', at) + len('data-label="Số giờ phát">')
    return table[cell:table.index("<", cell)]


def test_the_report_counts_planned_aired_and_missed_per_area_and_node_with_hours_and_uptime(
        app_only, data):
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    r = admin.get(f"/reports?{PERIOD}")
    assert r.status_code == 200
    page = r.text
    mine = _row(page, f"area-{data['mine_cluster']['id']}")
    assert 'data-planned="3" data-aired="1" data-missed="2"' in mine and "Cụm 1" in mine
    assert "33.3 %" in mine
    other = _row(page, f"area-{data['other_cluster']['id']}")
    assert 'data-planned="3" data-aired="3" data-missed="0"' in other and "100.0 %" in other
    node = _row(page, f"node-{data['nodes']['mine']}")
    assert 'data-planned="3" data-aired="1" data-missed="2"' in node and "50.0 %" in node
    assert "100.0 %" in _row(page, f"node-{data['nodes']['other']}")
    hours = page[page.index('class="grid cards reports-hours"'):]
    assert _hours(hours, "Y tế, an toàn thực phẩm", "Cụm 1") == "0.75"  # one play of 45 min
    assert _hours(hours, "Giao thông", "Cụm 2") == "2.25"
    assert "6 tháng đầu năm" in page  # the six-monthly periods are one click away


def test_the_csv_carries_the_same_numbers(app_only, data):
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    r = admin.get(f"/reports/download.csv?{PERIOD}")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in r.headers["Content-Disposition"]
    text = r.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:5] == ["Mục", "Địa bàn", "Thiết bị", "Lĩnh vực", "Kế hoạch"]
    by_area = {row[1]: row[4:9] for row in rows if row[0] == "Địa bàn"}
    assert by_area == {"Cụm 1": ["3", "1", "0", "2", "0"], "Cụm 2": ["3", "3", "0", "0", "0"]}
    node = next(row for row in rows if row[0] == "Thiết bị" and data["nodes"]["mine"] in row[2])
    assert node[-1] == "50.0"
    hours = {(row[3], row[1]): row[9] for row in rows if row[0] == "Giờ phát"}
    assert hours[("Y tế, an toàn thực phẩm", "Cụm 1")] == "0.75"
    assert rows[-1][0] == "Tổng cộng" and rows[-1][4:10] == ["6", "4", "0", "2", "0", "3.00"]


def test_the_pdf_is_a_pdf_with_the_table_and_vietnamese_text(app_only, data):
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    r = admin.get(f"/reports/download.pdf?{PERIOD}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-")
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
    for words in ("Báo cáo phát thanh", "Kế hoạch và thực hiện theo địa bàn",
                  "Y tế, an toàn thực phẩm", "Giao thông", "Cụm 1", "Số giờ phát theo lĩnh vực"):
        assert words in text, words
    assert "50.0 %" in text and "33.3 %" in text and "Y tế, an toàn thực phẩm Cụm 1 0.75" in text
    admin.get("/lang/en")
    english = admin.get(f"/reports/download.pdf?{PERIOD}").content
    assert "Planned against aired by area" in PdfReader(io.BytesIO(english)).pages[0]\
        .extract_text()


def test_a_ward_user_sees_only_their_ward(app_only, data):
    tech = PageUser(app_only, "kythuat-lc", PASSWORD)
    page = tech.get(f"/reports?{PERIOD}").text
    assert f'id="area-{data["mine_cluster"]["id"]}"' in page
    assert f'id="area-{data["other_cluster"]["id"]}"' not in page
    assert data["nodes"]["other"] not in page and "Cụm 2" not in page
    assert "Cụm 2" not in tech.get(f"/reports/download.csv?{PERIOD}").content.decode()
    other = tech.get(f"/reports?{PERIOD}&area={data['other']['id']}")
    assert other.status_code == 404 and f"Không có địa bàn mã số {data['other']['id']}" in \
        other.text
    assert tech.get(f"/reports/download.pdf?{PERIOD}&area={data['other']['id']}")\
        .status_code == 404


@pytest.mark.parametrize(("query", "message"), [
    ("from=2026-13-01&to=2026-12-31", "“Từ ngày” không phải một ngày hợp lệ: 2026-13-01"),
    ("from=2026-06-01&to=2026-01-01", "Ngày bắt đầu phải trước hoặc bằng ngày kết thúc."),
    ("from=2024-01-01&to=2026-01-01", "Kỳ báo cáo dài nhất 366 ngày."),
    ("from=2026-01-01&to=2026-01-31&area=abc", "Không có địa bàn mã số abc."),
])
def test_a_wrong_period_or_area_is_refused_in_the_users_language(app_only, wards, query,
                                                                   message):
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    r = admin.get(f"/reports?{query}")
    assert r.status_code in (400, 404, 422) and message in r.text
    assert 'name="from"' in r.text  # the form stays, to correct the period
    assert admin.get(f"/reports/download.csv?{query}").status_code == r.status_code
    admin.get("/lang/en")
    assert "at most 366 days" in admin.get("/reports?from=2024-01-01&to=2026-01-01").text


def test_a_six_month_period_is_covered_whole(app_only, wards):
    """A half year (181 days) is longer than the API's 92-day window: every day is counted."""
    s = app_only
    node_id = s.ok("GET", f"/api/v1/nodes?area={wards['mine_cluster']['id']}")["nodes"][0]["id"]
    _back_date(s, Node, node_id, days=200)
    began = LAST - dt.timedelta(days=150)
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": _bulletin(s, "health")["id"], "targets": {"areas": [wards["mine"]["id"]]},
        "recurrence": "FREQ=DAILY", "start_at": dt.datetime.combine(began, dt.time(6), TZ)
        .isoformat()})
    _back_date(s, Broadcast, bc["id"], days=200)
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    first = LAST - dt.timedelta(days=180)
    page = admin.get(f"/reports?from={first.isoformat()}&to={LAST.isoformat()}").text
    mine = _row(page, f"area-{wards['mine_cluster']['id']}")
    assert 'data-planned="151" data-aired="0" data-missed="151"' in mine  # one a day, unheard


def test_a_node_never_heard_from_is_up_0_percent_and_without_any_telemetry_unknown(
        app_only, wards):
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    node_id = s.ok("GET", f"/api/v1/nodes?area={wards['mine_cluster']['id']}")["nodes"][0]["id"]
    other_id = s.ok("GET", f"/api/v1/nodes?area={wards['other_cluster']['id']}")["nodes"][0][
        "id"]
    for n in (node_id, other_id):
        _back_date(s, Node, n)
    assert "—" in _row(admin.get(f"/reports?{PERIOD}").text, f"node-{node_id}")
    _heard(s, other_id, 72, 3600 // s.settings.node_telemetry_s)
    page = admin.get(f"/reports?{PERIOD}").text
    assert "0.0 %" in _row(page, f"node-{node_id}")
    assert "100.0 %" in _row(page, f"node-{other_id}")


def test_the_api_gives_the_same_summary_as_json_and_csv(app_only, data):
    s = app_only
    got = s.ok("GET", f"/api/v1/reports/summary?{PERIOD}")
    assert got["from"] == FIRST.isoformat() and got["to"] == LAST.isoformat()
    areas = {a["area_name"]: (a["planned"], a["aired"], a["missed"]) for a in got["areas"]}
    assert areas == {"Cụm 1": (3, 1, 2), "Cụm 2": (3, 3, 0)}
    nodes = {n["node_id"]: n["uptime"] for n in got["nodes"]}
    assert nodes == {data["nodes"]["mine"]: 0.5, data["nodes"]["other"]: 1.0}
    assert {(h["category"], h["area_name"], h["hours"]) for h in got["hours"]} == {
        ("health", "Cụm 1", 0.75), ("traffic", "Cụm 2", 2.25)}
    assert got["total"]["planned"] == 6
    mine = s.ok("GET", f"/api/v1/reports/summary?{PERIOD}", token=data["technician"])
    assert [a["area_name"] for a in mine["areas"]] == ["Cụm 1"]
    r = s.call("GET", f"/api/v1/reports/summary?{PERIOD}", headers={"Accept": "text/csv"})
    assert r.status_code == 200 and "Cụm 2" in r.content.decode("utf-8-sig")
    bad = s.call("GET", "/api/v1/reports/summary?from=2026-06-01&to=2026-01-01")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_period"


def test_without_the_font_the_pdf_is_refused_with_what_to_install(app_only, wards,
                                                                   monkeypatch, tmp_path):
    from server import report_summary
    monkeypatch.setattr(report_summary, "FONT_DIR", str(tmp_path))
    admin = PageUser(app_only, "admin", ADMIN_PASSWORD)
    r = admin.get(f"/reports/download.pdf?{PERIOD}")
    assert r.status_code == 503 and "fonts-dejavu-core" in r.text
