"""The alerts page and the dashboard's open alerts without a browser: a user sees the alerts of
their areas only, by state and filtered by area and kind; a technician acknowledges and resolves
one with a comment (the API's checks, in the audit log) and the page says who and when; a
viewer may read but not act; the dashboard counts the unresolved alerts and its live part
stays 304 until one opens."""
from __future__ import annotations

import datetime as dt

from server.cli import main as cli
from server.models import Alert, utcnow
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

PASSWORD = "mat-khau-123"


def _node(s, cluster_id: int) -> str:
    return s.ok("GET", f"/api/v1/nodes?area={cluster_id}")["nodes"][0]["id"]


def _alert(s, node_id: str, area_id: int, kind: str = "node_offline",
           severity: str = "warning", count: int = 1) -> int:
    """An alert as the dispatcher's pass opens it (server/alerts.py ``_open``)."""
    now = utcnow()
    params = {"since": "2026-03-01T01:30:00Z"} if kind == "node_offline" else \
        {"mb": 40} if kind == "disk_low" else {}
    with s.app.extensions["db_sessions"]() as db:
        alert = Alert(kind=kind, node_id=node_id, area_id=area_id, severity=severity,
                      state="open", detail_class=kind, episodes=[], count=count,
                      detail={"key": f"alertd.{kind}", "params": params},
                      first_seen=now - dt.timedelta(minutes=20), last_seen=now, opened_at=now)
        db.add(alert)
        db.commit()
        return alert.id


def _viewer(s, area_id: int) -> PageUser:
    assert cli(["--instance", str(s.instance), "user", "xem-lc", "--role", "viewer",
                "--password", PASSWORD, "--area-id", str(area_id)]) == 0
    return PageUser(s, "xem-lc", PASSWORD)


def test_the_alerts_page_shows_only_the_users_areas_by_state_area_and_kind(app_only, wards):
    s = app_only
    mine = _alert(s, _node(s, wards["mine_cluster"]["id"]), wards["mine_cluster"]["id"],
                  count=3)
    disk = _alert(s, _node(s, wards["mine_cluster"]["id"]), wards["mine_cluster"]["id"],
                  kind="disk_low")
    other = _alert(s, _node(s, wards["other_cluster"]["id"]), wards["other_cluster"]["id"])
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    page = tech.get("/alerts").text
    assert f'id="alert-{mine}"' in page and f'id="alert-{disk}"' in page
    assert f'id="alert-{other}"' not in page
    at = page.index(f'id="alert-{mine}"')
    row = page[at:page.index("</tr>", at)]
    assert "Thiết bị mất kết nối" in row and "Cụm 1" in row and ">3<" in row
    assert "08:30 01/03/2026" in row  # the offline detail, in the ward's zone
    only_disk = tech.get("/alerts?kind=disk_low").text
    assert f'id="alert-{disk}"' in only_disk and f'id="alert-{mine}"' not in only_disk
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    everything = admin.get("/alerts").text
    assert f'id="alert-{mine}"' in everything and f'id="alert-{other}"' in everything
    other_ward = admin.get(f"/alerts?area={wards['other']['id']}").text
    assert f'id="alert-{other}"' in other_ward and f'id="alert-{mine}"' not in other_ward
    assert f'id="alert-{mine}"' not in tech.get("/alerts?state=resolved").text
    admin.get("/lang/en")
    assert "Node offline" in admin.get("/alerts").text


def test_a_technician_acknowledges_then_resolves_an_alert_and_the_page_says_who_and_when(
        app_only, wards):
    s = app_only
    alert_id = _alert(s, _node(s, wards["mine_cluster"]["id"]), wards["mine_cluster"]["id"])
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    assert f'formaction="/alerts/{alert_id}/ack"' in tech.get("/alerts").text
    r = tech.post(f"/alerts/{alert_id}/ack", data={"comment": "Đang tới kiểm tra"})
    assert r.status_code == 302
    acked = tech.get("/alerts?state=acknowledged").text
    assert f'id="alert-{alert_id}"' in acked and "kythuat-lc tiếp nhận lúc" in acked
    assert "Đang tới kiểm tra" in acked
    assert f'id="alert-{alert_id}"' not in tech.get("/alerts").text  # no longer open
    assert s.ok("GET", f"/api/v1/alerts/{alert_id}")["acknowledged"]["by"] == "kythuat-lc"

    again = tech.post(f"/alerts/{alert_id}/ack", data={})  # past that step: the API's 409
    assert again.status_code == 302
    assert "đang ở trạng thái" in tech.get("/alerts?state=acknowledged").text

    tech.post(f"/alerts/{alert_id}/resolve", data={"comment": "Đã thay nguồn"})
    done = tech.get("/alerts?state=resolved").text
    assert "kythuat-lc xử lý xong lúc" in done and "Đã thay nguồn" in done
    assert f'formaction="/alerts/{alert_id}/ack"' not in done
    actions = [e["action"] for e in s.ok("GET", "/api/v1/audit?action=alerts")["entries"]]
    assert actions == ["alerts.resolve", "alerts.ack"]


def test_a_viewer_reads_alerts_without_buttons_and_the_server_refuses_their_step(
        app_only, wards):
    s = app_only
    alert_id = _alert(s, _node(s, wards["mine_cluster"]["id"]), wards["mine_cluster"]["id"])
    viewer = _viewer(s, wards["mine"]["id"])
    page = viewer.get("/alerts").text
    assert f'id="alert-{alert_id}"' in page and f"/alerts/{alert_id}/" not in page
    assert viewer.post(f"/alerts/{alert_id}/ack", data={}).status_code == 403
    assert s.ok("GET", f"/api/v1/alerts/{alert_id}")["state"] == "open"


def test_an_alert_of_another_ward_cannot_be_acknowledged_from_the_page(app_only, wards):
    s = app_only
    other = _alert(s, _node(s, wards["other_cluster"]["id"]), wards["other_cluster"]["id"])
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    tech.post(f"/alerts/{other}/ack", data={"comment": "x"})
    assert "Không tìm thấy cảnh báo." in tech.get("/alerts").text
    assert s.ok("GET", f"/api/v1/alerts/{other}")["state"] == "open"


def test_the_dashboard_counts_unresolved_alerts_and_its_live_part_changes_when_one_opens(
        app_only, wards):
    s = app_only
    node = _node(s, wards["mine_cluster"]["id"])
    _alert(s, node, wards["mine_cluster"]["id"], kind="disk_low")
    _alert(s, _node(s, wards["other_cluster"]["id"]), wards["other_cluster"]["id"])
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    first = tech.get("/partials/dashboard")
    assert 'data-open-alerts="1"' in first.text and "Sắp đầy bộ nhớ" in first.text
    assert 'href="/alerts"' in first.text
    etag = first.headers["ETag"]
    assert tech.get("/partials/dashboard", headers={"If-None-Match": etag}).status_code == 304
    _alert(s, node, wards["mine_cluster"]["id"], severity="critical")
    changed = tech.get("/partials/dashboard", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and 'data-open-alerts="2"' in changed.text
    part = changed.text[changed.text.index('id="h-alarms"'):]
    assert part.index("Thiết bị mất kết nối") < part.index("Sắp đầy bộ nhớ")  # critical first
