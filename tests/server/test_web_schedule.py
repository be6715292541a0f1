"""The programmes and schedule pages without a browser: a daily series made from the form's
plain choices airs at the chosen local times and is said back in words; a clash is shown before
anything is saved and an override saves it; the week calendar places each slot on its day with
its priority's colour and cancels one occurrence or the series; a programme is built, reordered
and saved with its total length."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from schedules.recurrence import MAX_INTERVAL
from server.cli import main as cli
from server.models import Broadcast
from tests.web_helpers import PageUser, found

PASSWORD = "mat-khau-123"


def _editor(s, area_id: int) -> PageUser:
    assert cli(["--instance", str(s.instance), "user", "bientap", "--role", "staff",
                "--password", PASSWORD, "--area-id", str(area_id)]) == 0
    return PageUser(s, "bientap", PASSWORD)


def _tomorrow() -> str:
    return (dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
            + dt.timedelta(days=1)).isoformat()


def _daily(bulletin_id: int, area_id: int, times: str, action: str, **more) -> dict:
    return {"content": f"bulletin:{bulletin_id}", "areas": str(area_id), "kind": "daily",
            "times": times, "interval": "1", "start_date": _tomorrow(), "priority": "normal",
            "action": action, **more}


def _broadcasts(s) -> int:
    with s.app.extensions["db_sessions"]() as db:
        return db.scalar(select(func.count(Broadcast.id)))


def test_a_daily_series_from_the_form_is_said_in_words_and_shows_on_the_calendar(
        app_only, wards):
    s = app_only
    b = s.approved_bulletin("Lịch tiêm chủng")
    editor = _editor(s, wards["mine"]["id"])
    form = editor.get("/schedule/new").text
    assert "Lịch tiêm chủng" in form and "Phường Lê Chân" in form
    assert "Phường Ngô Quyền" not in form  # only the editor's own areas are targets

    checked = editor.post("/schedule/new", data=_daily(b["id"], wards["mine"]["id"],
                                                        "06:00, 17:00", "check"))
    assert checked.status_code == 200
    assert "Hằng ngày lúc 06:00 và 17:00" in checked.text
    assert "Không trùng lịch" in checked.text and _broadcasts(s) == 0  # a check keeps nothing

    saved = editor.post("/schedule/new", data=_daily(b["id"], wards["mine"]["id"],
                                                      "06:00, 17:00", "save"))
    assert saved.status_code == 302
    bc = s.ok("GET", "/api/v1/broadcasts")["broadcasts"][0]
    assert bc["recurrence"] == "FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0"

    week = editor.get(f"/schedule?area={wards['mine']['id']}&week={_tomorrow()}").text
    day = dt.date.fromisoformat(_tomorrow()).strftime("%d/%m")
    column = week[week.index(day):]
    assert "06:00" in column and "17:00" in column and "Lịch tiêm chủng" in column
    assert "sch-p3" in week and "sch-h6" in week and "sch-h17" in week
    ics = found(r'href="(/api/v1/areas/[^"]+/schedule\.ics[^"]*)"', week)
    calendar = editor.get(ics.replace("&amp;", "&"))
    assert calendar.status_code == 200 and "text/calendar" in calendar.headers["Content-Type"]
    # the same week as the page shows
    assert calendar.text.count("BEGIN:VEVENT") == week.count('class="sch-slot')
    assert "Lịch tiêm chủng" in calendar.text


def test_a_clash_is_listed_before_saving_and_saves_only_with_an_override(app_only, wards):
    s = app_only
    first = s.approved_bulletin("Bản tin sáng")
    second = s.approved_bulletin("Thông báo thu thuế")
    editor = _editor(s, wards["mine"]["id"])
    assert editor.post("/schedule/new", data=_daily(first["id"], wards["mine"]["id"], "06:00",
                                                    "save")).status_code == 302
    clash = editor.post("/schedule/new", data=_daily(second["id"], wards["mine"]["id"], "06:00",
                                                     "check"))
    assert clash.status_code == 409
    assert "Các lượt trùng giờ" in clash.text and "Bản tin sáng" in clash.text
    assert 'name="override"' in clash.text and _broadcasts(s) == 1
    assert "Vẫn phát dù trùng giờ" in clash.text  # the page says how to save anyway
    assert "Hằng ngày lúc 06:00" in clash.text  # and what the new one would be
    assert editor.post("/schedule/new", data=_daily(second["id"], wards["mine"]["id"], "06:00",
                                                    "save")).status_code == 409
    assert _broadcasts(s) == 1
    forced = editor.post("/schedule/new", data=_daily(second["id"], wards["mine"]["id"],
                                                       "06:00", "save", override="1"))
    assert forced.status_code == 302 and _broadcasts(s) == 2


def test_weekly_and_lunar_choices_become_rules_said_back_in_english(app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    editor = _editor(s, wards["mine"]["id"])
    editor.get("/lang/en")
    weekly = editor.post("/schedule/new", data={
        **_daily(b["id"], wards["mine"]["id"], "07:30", "check"), "kind": "weekly",
        "weekdays": "MO", "until": "2099-12-31"}).text
    assert "Every week on Monday at 07:30, until 2099-12-31" in weekly
    lunar = editor.post("/schedule/new", data={
        **_daily(b["id"], wards["mine"]["id"], "06:00", "check"), "kind": "lunar",
        "lunar_days": ["1", "15"]}).text
    assert "Lunar day 1 and day 15 (full moon) of every lunar month at 06:00" in lunar


def test_the_form_repeats_a_series_as_far_apart_as_the_api_allows_and_no_further(
        app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    editor = _editor(s, wards["mine"]["id"])
    form = editor.get("/schedule/new").text
    assert f'name="interval" min="1" max="{MAX_INTERVAL}"' in form
    every = editor.post("/schedule/new", data={
        **_daily(b["id"], wards["mine"]["id"], "07:30", "save"), "interval": "60"})
    assert every.status_code == 302
    assert s.ok("GET", "/api/v1/broadcasts")["broadcasts"][0]["recurrence"] == \
        "FREQ=DAILY;INTERVAL=60;BYHOUR=7;BYMINUTE=30"
    beyond = editor.post("/schedule/new", data={
        **_daily(b["id"], wards["mine"]["id"], "07:30", "save"),
        "interval": str(MAX_INTERVAL + 1)})
    assert beyond.status_code == 400 and f"1-{MAX_INTERVAL}" in beyond.text
    assert _broadcasts(s) == 1


def test_the_calendar_cancels_one_occurrence_then_the_whole_series(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Phát thanh buổi sáng")
    editor = _editor(s, wards["mine"]["id"])
    editor.post("/schedule/new", data=_daily(b["id"], wards["mine"]["id"], "06:00", "save"))
    path = f"/schedule?area={wards['mine']['id']}&week={_tomorrow()}"
    week = editor.get(path).text
    before = week.count('class="sch-slot')
    occurrence = found(r'name="original_start" value="([^"]+)"', week)
    bc_id = s.ok("GET", "/api/v1/broadcasts")["broadcasts"][0]["id"]
    r = editor.post(f"/broadcasts/{bc_id}/occurrences/cancel",
                    data={"original_start": occurrence, "next": path})
    assert r.status_code == 302 and r.headers["Location"].endswith(path)
    assert editor.get(path).text.count('class="sch-slot') == before - 1
    assert editor.post(f"/broadcasts/{bc_id}/cancel", data={"next": path}).status_code == 302
    assert 'class="sch-slot' not in editor.get(path).text
    assert s.ok("GET", f"/api/v1/broadcasts/{bc_id}")["status"] == "cancelled"


def test_a_viewer_sees_the_calendar_without_cancel_buttons_and_may_not_schedule(app_only, wards):
    s = app_only
    assert cli(["--instance", str(s.instance), "user", "xem", "--role", "viewer", "--password",
                PASSWORD, "--area-id", str(wards["mine"]["id"])]) == 0
    viewer = PageUser(s, "xem", PASSWORD)
    assert viewer.get("/schedule").status_code == 200
    assert "sch-cancel" not in viewer.get("/schedule").text
    assert viewer.get("/schedule/new").status_code == 403
    assert viewer.get(f"/schedule?area={wards['other']['id']}").status_code == 404


def test_a_programme_is_built_reordered_and_saved_with_its_total_length(app_only, wards):
    s = app_only
    one = s.approved_bulletin("Mở đầu")
    two = s.approved_bulletin("Tin chính")
    editor = _editor(s, wards["mine"]["id"])
    page = editor.post("/programmes/new", data={"title": "Chương trình sáng", "add": str(one["id"]),
                                                "move": "add"}).text
    page = editor.post("/programmes/new", data={"title": "Chương trình sáng",
                                                "items": [str(one["id"])],
                                                "add": str(two["id"]), "move": "add"}).text
    assert page.index("Mở đầu") < page.index("Tin chính", page.index("prog-items"))
    page = editor.post("/programmes/new", data={"title": "Chương trình sáng",
                                                "items": [str(one["id"]), str(two["id"])],
                                                "move": "up:1"}).text
    items = page[page.index("prog-items"):page.index("prog-total")]
    assert items.index("Tin chính") < items.index("Mở đầu")
    assert "Tổng thời lượng" in page
    saved = editor.post("/programmes/new", data={"title": "Chương trình sáng",
                                                 "items": [str(two["id"]), str(one["id"])],
                                                 "move": "save"})
    assert saved.status_code == 302
    p = s.ok("GET", "/api/v1/programmes")["programmes"][0]
    assert [i["bulletin_id"] for i in p["items"]] == [two["id"], one["id"]]
    listing = editor.get("/programmes").text
    assert "Chương trình sáng" in listing
    edit = editor.get(saved.headers["Location"]).text
    sec = round(p["duration_ms"] / 1000)
    assert f"{sec // 60}:{sec % 60:02d}" in edit


def test_a_programme_is_edited_by_staff_and_only_read_by_a_viewer(app_only, wards):
    s = app_only
    one = s.approved_bulletin("Mở đầu")
    two = s.approved_bulletin("Tin chính")
    p = s.ok("POST", "/api/v1/programmes", json={"title": "Buổi sáng", "items": [one["id"]],
                                                 "area_id": wards["mine"]["id"]})
    editor = _editor(s, wards["mine"]["id"])
    page = editor.get(f"/programmes/{p['id']}").text
    assert 'value="Buổi sáng"' in page and "Mở đầu" in page and 'value="save"' in page
    saved = editor.post(f"/programmes/{p['id']}", data={
        "title": "Buổi sáng mới", "items": [str(one["id"]), str(two["id"])], "move": "save"})
    assert saved.status_code == 302
    after = s.ok("GET", f"/api/v1/programmes/{p['id']}")
    assert after["title"] == "Buổi sáng mới" and after["revision"] == 2
    assert [i["bulletin_id"] for i in after["items"]] == [one["id"], two["id"]]

    assert cli(["--instance", str(s.instance), "user", "xem", "--role", "viewer", "--password",
                PASSWORD, "--area-id", str(wards["mine"]["id"])]) == 0
    viewer = PageUser(s, "xem", PASSWORD)
    read = viewer.get(f"/programmes/{p['id']}").text
    assert "Buổi sáng mới" in read and 'value="save"' not in read
    assert viewer.post(f"/programmes/{p['id']}", data={
        "title": "x", "items": [str(one["id"])], "move": "save"}).status_code == 403
    assert s.ok("GET", f"/api/v1/programmes/{p['id']}")["revision"] == 2


def test_the_calendar_names_a_level_between_two_by_the_one_below(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Thông báo mức 6")
    editor = _editor(s, wards["mine"]["id"])
    start = dt.datetime.combine(dt.date.fromisoformat(_tomorrow()), dt.time(9, 0),
                                ZoneInfo("Asia/Ho_Chi_Minh"))
    s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [wards["mine"]["id"]]}, "priority": 6,
        "start_at": start.isoformat()})
    week = editor.get(f"/schedule?area={wards['mine']['id']}&week={_tomorrow()}").text
    slot = week[week.index("Thông báo mức 6"):]
    assert re.match(r"Thông báo mức 6</a>\s*<small>Ưu tiên</small>", slot), slot[:120]


def test_the_calendar_reads_in_english_one_click_away(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Morning news")
    editor = _editor(s, wards["mine"]["id"])
    editor.post("/schedule/new", data=_daily(b["id"], wards["mine"]["id"], "06:00", "save"))
    editor.get("/lang/en")
    week = editor.get(f"/schedule?area={wards['mine']['id']}&week={_tomorrow()}").text
    assert "Weekly schedule: Phường Lê Chân" in week and "Next week" in week
    assert "Cancel this one" in week and "Cancel the whole series" in week
    weekday = dt.date.fromisoformat(_tomorrow()).strftime("%A")
    assert f"{weekday} {dt.date.fromisoformat(_tomorrow()).strftime('%d/%m')}" in week


def test_a_one_off_airs_at_the_chosen_time_and_needs_one(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Họp tổ dân phố")
    editor = _editor(s, wards["mine"]["id"])
    once = {**_daily(b["id"], wards["mine"]["id"], "", "save"), "kind": "once"}
    missing = editor.post("/schedule/new", data=once)
    assert missing.status_code == 400 and "start_time" in missing.text and _broadcasts(s) == 0
    assert editor.post("/schedule/new", data={**once, "start_time": "19:00"}).status_code == 302
    bc = s.ok("GET", "/api/v1/broadcasts")["broadcasts"][0]
    assert bc["recurrence"] is None
    local = dt.datetime.fromisoformat(bc["start_at"].replace("Z", "+00:00")).astimezone(
        ZoneInfo("Asia/Ho_Chi_Minh"))
    assert (local.date().isoformat(), local.strftime("%H:%M")) == (_tomorrow(), "19:00")


def test_a_longer_programme_that_makes_its_series_clash_is_shown_and_saved_only_with_override(
        app_only, wards):
    s = app_only
    area = wards["mine"]["id"]
    one = s.approved_bulletin("Tin thứ nhất", "Ủy ban nhân dân phường thông báo lịch tiêm chủng.")
    two = s.approved_bulletin("Tin thứ hai", "Nhắc nhở bà con giữ gìn vệ sinh môi trường.")
    p = s.ok("POST", "/api/v1/programmes", json={"title": "Buổi sáng", "items": [one["id"]],
                                                 "area_id": area})
    anchor = dt.datetime.combine(dt.date.fromisoformat(_tomorrow()), dt.time(6),
                                 ZoneInfo("Asia/Ho_Chi_Minh"))
    s.ok("POST", "/api/v1/broadcasts", json={
        "programme_id": p["id"], "targets": {"areas": [area]}, "recurrence": "FREQ=DAILY",
        "start_at": anchor.isoformat()})
    # another series starting a second after the programme's slot ends as it stands
    right_after = anchor + dt.timedelta(seconds=-(-p["duration_ms"] // 1000) + 1)
    s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": two["id"], "targets": {"areas": [area]}, "recurrence": "FREQ=DAILY",
        "start_at": right_after.isoformat()})
    editor = _editor(s, area)
    longer = {"title": "Buổi sáng", "items": [str(one["id"]), str(two["id"])], "move": "save"}
    clash = editor.post(f"/programmes/{p['id']}", data=longer)
    assert clash.status_code == 409
    assert "Các lượt trùng giờ" in clash.text and "Tin thứ hai" in clash.text
    assert 'name="override"' in clash.text
    assert s.ok("GET", f"/api/v1/programmes/{p['id']}")["revision"] == 1  # nothing kept
    assert editor.post(f"/programmes/{p['id']}",
                       data={**longer, "override": "1"}).status_code == 302
    assert s.ok("GET", f"/api/v1/programmes/{p['id']}")["revision"] == 2


def test_the_targets_are_the_area_tree_each_area_under_its_parent_indented(app_only, wards):
    s = app_only
    province = s.ok("GET", f"/api/v1/areas/{wards['mine']['id']}")["parent_id"]
    late = s.area("Phường Lê Chân mới", "HP-LC-2", "ward", province)  # made last, id highest
    s.area("Tổ dân phố 5", "HP-LC-TDP5", "ward", wards["mine"]["id"])
    assert cli(["--instance", str(s.instance), "user", "op", "--role", "operator", "--password",
                PASSWORD]) == 0
    page = PageUser(s, "op", PASSWORD).get("/schedule/new").text
    names = re.findall(r'class="inline-choice sch-d(\d)"><input type="checkbox" name="areas" '
                       r'value="\d+" > ([^<]+)</label>', page)
    assert [(int(d), n.strip()) for d, n in names] == [
        (0, "Thành phố Hải Phòng"), (1, "Phường Lê Chân"), (2, "Tổ dân phố 5"),
        (1, "Phường Ngô Quyền"), (1, late["name"])]


def test_a_series_without_an_area_is_refused_before_anything_is_saved(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Lịch tiêm chủng")
    editor = _editor(s, wards["mine"]["id"])
    form = {k: v for k, v in _daily(b["id"], wards["mine"]["id"], "07:00", "save").items()
            if k != "areas"}
    r = editor.post("/schedule/new", data=form)
    assert r.status_code == 400 and "Chưa chọn địa bàn hoặc thiết bị nhận." in r.text
    assert _broadcasts(s) == 0
