"""The administration pages without a browser: an admin creates a user who then logs in, edits
them and resets their password; an operator is offered only the roles it may grant and the
server refuses admin anyway; a staff user sees no administration entry and gets 403; a ward's
settings are saved through the API's domain path and shown with what they inherit; bad input is
refused with a Vietnamese message and nothing saved; the audit page lists those changes with
who and what, filtered and paged."""
from __future__ import annotations

import datetime as dt
import re

from server.cli import main as cli
from server.web import admin
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser

PASSWORD = "mat-khau-123"


def _user(s, name: str, role: str, area_id: int | None) -> PageUser:
    args = ["--instance", str(s.instance), "user", name, "--role", role, "--password", PASSWORD]
    assert cli(args + (["--area-id", str(area_id)] if area_id else [])) == 0
    return PageUser(s, name, PASSWORD)


def _users(s) -> dict[str, dict]:
    return {u["username"]: u for u in s.ok("GET", "/api/v1/users")["users"]}


def _error(html: str) -> str:
    found = re.search(r'<p class="error" role="alert">([^<]*)</p>', html)
    assert found, "the page shows no error"
    return found.group(1)


def _options(html: str, name: str) -> list[str]:
    select = html[html.index(f'<select name="{name}"'):]
    return re.findall(r'<option value="([^"]*)"', select[:select.index("</select>")])


def test_an_admin_creates_a_user_who_logs_in_and_is_then_edited_and_disabled(app_only, wards):
    s = app_only
    admin_page = PageUser(s, "admin", ADMIN_PASSWORD)
    listing = admin_page.get("/admin/users").text
    assert 'href="/admin/users"' in listing  # the menu entry
    assert "canbo-lc" in listing and "kythuat-lc" in listing
    r = admin_page.post("/admin/users", data={
        "username": "bientap-lc", "role": "staff", "area_id": str(wards["mine"]["id"]),
        "language": "vi", "password": "mot-mat-khau-dai"})
    assert r.status_code == 302
    assert "Đã tạo tài khoản bientap-lc." in admin_page.get("/admin/users").text
    made = _users(s)["bientap-lc"]
    assert (made["role"], made["area_id"], made["active"]) == ("staff", wards["mine"]["id"], True)
    editor = PageUser(s, "bientap-lc", "mot-mat-khau-dai")
    assert editor.logged_in()

    page = admin_page.get(f"/admin/users/{made['id']}").text
    assert 'name="active" checked' in page
    r = admin_page.post(f"/admin/users/{made['id']}", data={
        "role": "approver", "area_id": str(wards["mine"]["id"]), "language": "en",
        "password": "mat-khau-moi-123", "active": "on"})
    assert r.status_code == 302
    changed = _users(s)["bientap-lc"]
    assert (changed["role"], changed["language"]) == ("approver", "en")
    assert not editor.logged_in()  # a new password ends the user's sessions
    assert PageUser(s, "bientap-lc", "mat-khau-moi-123").logged_in()

    admin_page.post(f"/admin/users/{made['id']}", data={
        "role": "approver", "area_id": str(wards["mine"]["id"]), "language": "en"})
    assert _users(s)["bientap-lc"]["active"] is False
    assert f'id="user-{made["id"]}" class="inactive"' in admin_page.get("/admin/users").text
    assert s.call("POST", "/api/v1/auth/token", token=None, json={
        "username": "bientap-lc", "password": "mat-khau-moi-123"}).status_code == 401


def test_an_operator_is_not_offered_admin_and_the_server_refuses_to_grant_it(app_only, wards):
    s = app_only
    _user(s, "xem-nq", "viewer", wards["other"]["id"])
    operator = _user(s, "dieuhanh-lc", "operator", wards["mine"]["id"])
    page = operator.get("/admin/users").text
    assert "admin" not in _options(page, "role") and "operator" in _options(page, "role")
    assert "all" not in _options(page, "area_id")  # a scoped user makes no unscoped user
    assert str(wards["other"]["id"]) not in _options(page, "area_id")
    assert "canbo-lc" in page and "xem-nq" not in page  # users of its own area only
    assert 'href="/admin/users"' in page and 'href="/admin/audit"' not in page

    r = operator.post("/admin/users", data={"username": "sep", "role": "admin",
                                            "password": "mot-mat-khau-dai"})
    assert r.status_code == 403
    assert _error(r.text) == "Bạn không thể cấp hoặc sửa tài khoản có vai trò quản trị."
    assert "sep" not in _users(s)
    # a technician may change nodes, which an operator may not: the operator does not manage one
    assert "technician" not in _options(page, "role")
    tech = _users(s)["kythuat-lc"]
    assert f'href="/admin/users/{tech["id"]}"' not in page
    assert f'href="/admin/users/{_users(s)["canbo-lc"]["id"]}"' in page
    r = operator.get(f"/admin/users/{tech['id']}")
    assert r.status_code == 403
    assert "Bạn không thể cấp hoặc sửa tài khoản có vai trò kỹ thuật viên." in r.text
    r = operator.post(f"/admin/users/{tech['id']}", data={"role": "technician", "active": ""})
    assert r.status_code == 403 and _users(s)["kythuat-lc"]["active"] is True
    admin_id = _users(s)["admin"]["id"]
    assert operator.get(f"/admin/users/{admin_id}").status_code == 404  # not in its areas
    assert operator.get("/admin/audit").status_code == 403  # the API's audit.read: admin only


def test_a_staff_user_sees_no_administration_and_gets_403(app_only, wards):
    s = app_only
    staff = _user(s, "bientap-lc", "staff", wards["mine"]["id"])
    home = staff.get("/").text
    for path in ("/admin/users", "/admin/wards", "/admin/audit"):
        assert f'href="{path}"' not in home
        r = staff.get(path)
        assert r.status_code == 403 and "Bạn không có quyền" in r.text
    r = staff.post("/admin/users", data={"username": "x", "role": "viewer",
                                         "password": "mot-mat-khau-dai"})
    assert r.status_code == 403 and "x" not in _users(s)
    r = staff.post(f"/admin/wards/{wards['mine']['id']}", data={"emergency_confirm": "yes"})
    assert r.status_code == 403
    assert s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")["emergency_confirm"] is None


def _ward_form(**changes) -> dict:
    """The ward form as a person sends it when they change ``changes``: every other setting
    left as the area above's."""
    return {"tts_engine": "", "tts_voice": "", "chime": "", "tz": "", "emergency_confirm": "",
            "quiet_inherit": "on", "quiet_hours": ""} | changes


def test_ward_settings_are_saved_and_what_is_not_set_shows_as_the_area_above(app_only, wards):
    s = app_only
    admin_page = PageUser(s, "admin", ADMIN_PASSWORD)
    province = s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")["parent_id"]
    r = admin_page.post(f"/admin/wards/{province}", data=_ward_form(
        tts_voice="vi-south", emergency_confirm="yes", quiet_inherit="",
        quiet_hours="22:00-05:00"))
    assert r.status_code == 302
    assert "Đã lưu cài đặt" in admin_page.get(f"/admin/wards/{province}").text

    ward = admin_page.get(f"/admin/wards/{wards['mine']['id']}").text
    assert "Cấp trên: Miền Nam" in ward and "Cấp trên: 22:00-05:00" in ward
    assert "Cấp trên: Có, cần người thứ hai" in ward and "Cấp trên: Asia/Ho_Chi_Minh" in ward
    assert 'name="quiet_inherit" checked' in ward

    operator = _user(s, "dieuhanh-lc", "operator", wards["mine"]["id"])
    r = operator.post(f"/admin/wards/{wards['mine']['id']}", data=_ward_form(
        chime="intro", emergency_confirm="no", quiet_inherit="",
        quiet_hours="12:00-13:30, 21:30–05:30", tz="Asia/Bangkok"))
    assert r.status_code == 302
    saved = s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")
    assert saved["chime"] == "intro" and saved["emergency_confirm"] is False
    assert saved["quiet_hours"] == [{"from": "12:00", "to": "13:30"},
                                    {"from": "21:30", "to": "05:30"}]
    assert saved["tz"] == saved["effective_tz"] == "Asia/Bangkok"
    assert saved["tts_voice"] is None  # still the province's
    cluster = operator.get(f"/admin/wards/{wards['mine_cluster']['id']}").text
    assert "Cấp trên: Asia/Bangkok" in cluster and "Cấp trên: 12:00-13:30, 21:30-05:30" in cluster
    assert "Cấp trên: Không" in cluster and "Cấp trên: Miền Nam" in cluster
    # another ward is outside the operator's area: the API's answer
    assert operator.get(f"/admin/wards/{wards['other']['id']}").status_code == 403
    assert operator.post(f"/admin/wards/{wards['other']['id']}",
                         data=_ward_form(chime="both")).status_code == 403
    assert s.ok("GET", f"/api/v1/areas/{wards['other']['id']}")["chime"] is None


def test_bad_input_is_refused_in_vietnamese_and_nothing_is_saved(app_only, wards):
    s = app_only
    admin_page = PageUser(s, "admin", ADMIN_PASSWORD)
    r = admin_page.post("/admin/users", data={"username": "ngan", "role": "staff",
                                              "password": "ngan"})
    assert r.status_code == 400
    assert _error(r.text) == "Mật khẩu phải có ít nhất 10 ký tự."
    assert 'value="ngan"' in r.text  # the form keeps what was typed (not the password)
    assert "ngan" not in _users(s)
    tech = _users(s)["kythuat-lc"]
    r = admin_page.post(f"/admin/users/{tech['id']}", data={
        "role": "technician", "area_id": str(wards["mine"]["id"]), "password": "ngan",
        "active": "on"})
    assert r.status_code == 400 and "ít nhất 10 ký tự" in _error(r.text)
    assert PageUser(s, "kythuat-lc", PASSWORD).logged_in()  # its password unchanged

    ward = f"/admin/wards/{wards['mine']['id']}"
    before = s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")
    r = admin_page.post(ward, data=_ward_form(tts_voice="vi-central", tz="Asia/Atlantis"))
    assert r.status_code == 422
    assert _error(r.text) == ("Không có múi giờ Asia/Atlantis (trường tz); hãy dùng tên IANA, "
                              "ví dụ Asia/Ho_Chi_Minh.")
    assert 'value="Asia/Atlantis"' in r.text
    r = admin_page.post(ward, data=_ward_form(tts_voice="vi-central", quiet_inherit="",
                                              quiet_hours="22h-5h"))
    assert r.status_code == 400
    assert _error(r.text).startswith("Giờ yên lặng không hợp lệ: viết mỗi khoảng dạng GG:PP-GG:PP")
    r = admin_page.post(ward, data=_ward_form(quiet_inherit="", quiet_hours="22:00"))
    assert r.status_code == 400 and "Giờ yên lặng không hợp lệ" in _error(r.text)
    admin_page.get("/lang/en")  # the same refusal in English, one click away
    r = admin_page.post(ward, data=_ward_form(quiet_inherit="", quiet_hours="22h-5h"))
    assert _error(r.text).startswith("Invalid quiet hours: write each span as HH:MM-HH:MM")
    assert s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}") == before


def test_the_audit_page_shows_who_changed_what_and_filters_and_pages_it(
        app_only, wards, monkeypatch):
    s = app_only
    admin_page = PageUser(s, "admin", ADMIN_PASSWORD)
    admin_page.post("/admin/users", data={"username": "bientap-lc", "role": "staff",
                                          "area_id": str(wards["mine"]["id"]),
                                          "password": "mot-mat-khau-dai"})
    operator = _user(s, "dieuhanh-lc", "operator", wards["mine"]["id"])
    operator.post(f"/admin/wards/{wards['mine']['id']}",
                  data=_ward_form(emergency_confirm="yes"))

    page = admin_page.get("/admin/audit").text
    assert 'href="/admin/audit"' in page
    # the filters offer what the log holds
    assert {"admin", "dieuhanh-lc"} <= set(_options(page, "actor"))
    assert {"areas.update", "users.insert", "auth.login"} <= set(_options(page, "action"))
    assert {"areas", "users", "user"} <= set(_options(page, "target"))
    assert _options(page, "action") == sorted(_options(page, "action"))
    rows = re.findall(r'<tr id="audit-(\d+)" data-action="([^"]+)">', page)
    assert [int(i) for i, _ in rows] == sorted((int(i) for i, _ in rows), reverse=True)
    ward_row = _row(page, "areas.update")
    assert "dieuhanh-lc" in ward_row and f"địa bàn #{wards['mine']['id']}" in ward_row
    assert "Sửa địa bàn" in ward_row  # the action in words, its code beside it
    assert ">Thêm tài khoản<" in page and ">Đăng nhập<" in page  # the filter's options
    assert "emergency_confirm</strong>: — → có" in ward_row
    user_row = _row(page, "users.insert", "bientap-lc")
    assert ">admin<" in user_row and "bientap-lc" in user_row and "staff" in user_row
    assert "password_hash</strong>: (bí mật" in user_row and "pbkdf2" not in page
    login_row = _row(page, "auth.login", "dieuhanh-lc")  # a named entry: its kind of thing too
    assert ">Đăng nhập <code" in login_row and "tài khoản #" in login_row
    today = dt.datetime.now(s.app.config["SETTINGS"].tz).date()
    assert re.search(r"\d\d:\d\d:\d\d " + today.strftime("%d/%m/%Y"), ward_row)  # local time

    kinds = set(_actions(admin_page.get("/admin/audit?action=areas").text))
    assert "areas.update" in kinds and all(a.startswith("areas.") for a in kinds)
    assert set(_actions(admin_page.get("/admin/audit?action=areas.update").text)) \
        == {"areas.update"}
    assert set(_actions(admin_page.get("/admin/audit?actor=dieuhanh-lc").text)) \
        == {"areas.update", "auth.login"}
    users_only = set(_actions(admin_page.get("/admin/audit?target=users").text))
    assert "users.insert" in users_only and "areas.update" not in users_only
    day = today.isoformat()
    assert "areas.update" in _actions(admin_page.get(f"/admin/audit?from={day}&to={day}").text)
    yesterday = (today - dt.timedelta(days=1)).isoformat()
    none = admin_page.get(f"/admin/audit?to={yesterday}").text
    assert _actions(none) == [] and "Không có mục nào khớp bộ lọc." in none
    assert admin_page.get("/admin/audit?from=hom-qua").status_code == 400

    monkeypatch.setattr(admin, "AUDIT_PAGE", 2)
    first = admin_page.get("/admin/audit?target=users").text
    shown = [int(i) for i in re.findall(r'<tr id="audit-(\d+)"', first)]
    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+[^"]*)" rel="next"', first)
    assert len(shown) == 2 and older
    second = admin_page.get(older.group(1).replace("&amp;", "&")).text
    rest = [int(i) for i in re.findall(r'<tr id="audit-(\d+)"', second)]
    assert rest and max(rest) < min(shown)
    assert "users.insert" in _actions(first) + _actions(second)


def _actions(page: str) -> list[str]:
    """The actions of the entries the page lists, in its order."""
    return re.findall(r'<tr id="audit-\d+" data-action="([^"]+)">', page)


def _row(page: str, action: str, holding: str = "") -> str:
    """The first (newest) row of ``action`` that holds the text ``holding``."""
    rows = [r for r in page.split("<tr ")[1:] if f'data-action="{action}"' in r and holding in r]
    assert rows, f"no {action} row holding {holding!r}"
    return rows[0][:rows[0].index("</tr>")]
