"""The web app's frame and dashboard without a browser: the menu shows what a role may do and
the page refuses the rest (the API's own checks), the dashboard counts the fleet of the user's
areas only, and its live part answers 304 Not Modified until something it shows changes."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from sqlalchemy import update

from server.cli import main as cli
from server import alerts
from server.models import Event, Node, to_ms, utcnow
from tests.server.helpers import noon_zone
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

PASSWORD = "mat-khau-123"


def _user(s, name: str, role: str, area_id: int | None) -> PageUser:
    args = ["--instance", str(s.instance), "user", name, "--role", role, "--password", PASSWORD]
    assert cli(args + (["--area-id", str(area_id)] if area_id else [])) == 0
    return PageUser(s, name, PASSWORD)


def _set_nodes(s, **values) -> None:
    with s.app.extensions["db_sessions"]() as db:
        db.execute(update(Node).values(**values))
        db.commit()


def _alarm(s, node_id: str) -> None:
    """A connected node's amplifier alarm, and the alert the dispatcher's pass raises of it."""
    with s.app.extensions["db_sessions"]() as db:
        now = utcnow()
        db.execute(update(Node).where(Node.id == node_id).values(online=True, last_seen=now))
        db.add(Event(node_id=node_id, event_id="a1", type="alarm", ts_ms=to_ms(now),
                     received_at=now,
                     payload={"type": "alarm", "id": "a1", "code": "amp_fault",
                              "detail": "amplifier silent"}))
        db.flush()
        alerts.evaluate(db, s.settings, now)
        db.commit()


def test_the_menu_shows_only_what_the_role_may_do_and_the_page_refuses_the_rest(app_only, wards):
    s = app_only
    viewer = _user(s, "xem-lc", "viewer", wards["mine"]["id"])
    staff = _user(s, "bientap-lc", "staff", wards["mine"]["id"])
    home = viewer.get("/").text
    assert 'href="/bulletins"' in home and 'href="/bulletins/new"' not in home
    assert viewer.get("/bulletins/new").status_code == 403
    assert 'href="/bulletins/new"' not in viewer.get("/bulletins").text
    assert 'href="/bulletins/new"' in staff.get("/").text
    assert staff.get("/bulletins/new").status_code == 200


def test_pages_say_who_is_logged_in_and_switch_language_in_one_click(app_only):
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    page = admin.get("/").text
    assert '<html lang="vi">' in page and "Tổng quan" in page and "admin" in page
    assert 'href="/lang/en"' in page and 'class="skip" href="#main"' in page
    admin.get("/lang/en")
    page = admin.get("/").text
    assert '<html lang="en">' in page and "Dashboard" in page and "Log out" in page


def test_the_dashboard_counts_only_the_nodes_of_the_users_area(app_only, wards):
    s = app_only
    _set_nodes(s, online=True)
    ward_viewer = _user(s, "xem-lc", "viewer", wards["mine"]["id"])
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    assert 'data-online="1" data-offline="0" data-alarm="0" data-total="1"' in \
        ward_viewer.get("/").text
    assert 'data-online="2" data-offline="0" data-alarm="0" data-total="2"' in \
        admin.get("/").text


def test_the_live_part_answers_not_modified_until_a_node_goes_offline(app_only, wards):
    s = app_only
    _set_nodes(s, online=True, last_seen=utcnow() - dt.timedelta(seconds=5))
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    first = admin.get("/partials/dashboard")
    assert first.status_code == 200 and 'data-online="2"' in first.text
    etag = first.headers["ETag"]
    again = admin.get("/partials/dashboard", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""

    nodes = admin.get("/partials/nodes")  # the node table alone, as before the dashboard
    assert 'data-online="2"' in nodes.text and nodes.text.count('class="online"') == 2
    assert admin.get("/partials/nodes", headers={"If-None-Match": nodes.headers["ETag"]}) \
        .status_code == 304

    _set_nodes(s, online=False)
    changed = admin.get("/partials/dashboard", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert 'data-online="0" data-offline="2"' in changed.text


def test_a_node_alarm_shows_on_the_dashboard_and_in_the_fleet_count(app_only, wards):
    s = app_only
    node_id = s.ok("GET", "/api/v1/nodes")["nodes"][0]["id"]
    _alarm(s, node_id)
    page = PageUser(s, "admin", ADMIN_PASSWORD).get("/").text
    assert 'data-alarm="1"' in page and "amp_fault" in page and "amplifier silent" in page


def test_the_dashboard_says_what_plays_where_and_what_airs_later_today(make_app):
    zone = noon_zone()
    s = make_app(timezone=zone)
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    ward = s.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = s.area("Cụm 1", "HP-LC-1", "cluster", ward["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa chợ"})
    now_on = s.approved_bulletin("Thông báo cắt điện")
    later = s.approved_bulletin("Lịch tiêm chủng")
    playing = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": now_on["id"],
                                                       "targets": {"areas": [ward["id"]]}})
    start = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": later["id"], "targets": {"areas": [ward["id"]]},
        "start_at": start.isoformat().replace("+00:00", "Z")})
    _set_nodes(s, online=True, last_telemetry={
        "volume": 80, "playing": {"item_id": f"bc-{playing['id']}", "priority": 3,
                                  "since": 0}})

    page = PageUser(s, "admin", ADMIN_PASSWORD).get("/").text
    now_part = page[page.index('id="h-now"'):page.index('id="h-next"')]
    assert "Thông báo cắt điện" in now_part and "Loa chợ" in now_part
    assert f'href="/broadcasts/{playing["id"]}"' in now_part
    next_part = page[page.index('id="h-next"'):page.index('id="h-alarms"')]
    local = start.astimezone(ZoneInfo(zone))
    assert "Lịch tiêm chủng" in next_part and local.strftime("%H:%M") in next_part
    assert "Phường Lê Chân" in next_part


def test_the_dashboard_lists_offline_nodes_first_with_when_they_were_last_seen(app_only, wards):
    s = app_only
    nodes = sorted(n["id"] for n in s.ok("GET", "/api/v1/nodes")["nodes"])
    _set_nodes(s, online=True)
    with s.app.extensions["db_sessions"]() as db:
        db.execute(update(Node).where(Node.id == nodes[-1]).values(
            online=False, last_seen=dt.datetime(2026, 3, 1, 1, 30)))
        db.commit()
    page = PageUser(s, "admin", ADMIN_PASSWORD).get("/").text
    assert page.index(f'id="node-{nodes[-1]}"') < page.index(f'id="node-{nodes[0]}"')
    assert "08:30 01/03/2026" in page  # Asia/Ho_Chi_Minh


def test_a_broadcast_of_another_ward_is_a_page_saying_not_found_in_the_users_language(
        app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    bc = s.ok("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"],
                                                  "targets": {"areas": [wards["other"]["id"]]}})
    viewer = _user(s, "xem-lc", "viewer", wards["mine"]["id"])
    r = viewer.get(f"/broadcasts/{bc['id']}")
    assert r.status_code == 404 and "text/html" in r.headers["Content-Type"]
    assert "Không tìm thấy lượt phát." in r.text and 'class="skip"' in r.text
    viewer.get("/lang/en")
    assert "broadcast not found." in viewer.get("/broadcasts/999").text
    assert PageUser(s, "admin", ADMIN_PASSWORD).get(f"/broadcasts/{bc['id']}").status_code == 200


def _input(page: str, name: str) -> str:
    """The first ``<input>`` tag of the page named ``name``."""
    [tag] = re.findall(rf'<input[^>]*\bname="{name}"[^>]*>', page)[:1]
    return tag


def test_a_forms_inputs_hold_the_limits_of_the_body_they_fill(app_only, wards):
    """A browser stops a text at the length the API takes, a volume at the protocol's range
    and a search at what the list searches: the attributes come from the request bodies' and
    queries' own declarations."""
    from device_agent.schemas import BODIES
    from server import bodies as B
    s = app_only
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    title = B.BulletinCreate.model_json_schema()["properties"]["title"]["maxLength"]
    assert f'maxlength="{title}"' in _input(admin.get("/bulletins/new").text, "title")
    username = B.UserCreate.model_json_schema()["properties"]["username"]["maxLength"]
    assert f'maxlength="{username}"' in _input(admin.get("/admin/users").text, "username")
    node = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    volume = BODIES["set_volume"]["properties"]["volume"]
    tag = _input(admin.get(f"/nodes/{node}").text, "volume")
    assert f'min="{volume["minimum"]}"' in tag and f'max="{volume["maximum"]}"' in tag
    from server.queries import SEARCH_MAX  # a list's search words: what the query reads
    for path in ("/bulletins", "/nodes"):
        assert f'maxlength="{SEARCH_MAX}"' in _input(admin.get(path).text, "q"), path
