"""The schedule in a real browser: the editor schedules an approved bulletin daily at a time and
the week calendar shows it on its day (desktop and phone); a second bulletin at the same time
shows the clash before anything is saved."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from playwright.sync_api import expect


def _tomorrow() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date() + dt.timedelta(days=1)


def _fill(page, title: str, ward: str, at: str) -> None:
    page.select_option("select[name=content]", label=title)
    page.get_by_label(ward).check()
    page.check("input[name=kind][value=daily]")
    page.fill("input[name=start_date]", _tomorrow().isoformat())
    page.fill("input[name=times]", at)


def test_the_editor_schedules_a_bulletin_daily_and_a_clash_shows_before_saving(web_system,
                                                                                  web):
    s = web_system
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": s.cluster["id"], "name": "Loa chợ Hàn"})
    s.approved_bulletin("Phát thanh buổi sáng")
    s.approved_bulletin("Thông báo thu phí vệ sinh")
    ward = s.ward["name"]

    page = web.page(s, "staff", "desktop")
    web.visit(page, "/schedule/new", "schedule-new")
    _fill(page, "Phát thanh buổi sáng", ward, "06:30")
    page.click("button[value=check]")
    expect(page.locator(".sch-words")).to_contain_text("Hằng ngày lúc 06:30")
    expect(page.locator(".sch-ok")).to_be_visible()
    page.click("button[value=save]")
    page.wait_for_url("**/schedule?**")
    day = page.locator(".sch-day", has_text=_tomorrow().strftime("%d/%m"))
    expect(day.locator(".sch-slot")).to_contain_text("06:30")
    expect(day.locator(".sch-slot")).to_contain_text("Phát thanh buổi sáng")
    web.shot(page, "schedule-week")

    web.watch.allow.add(409)  # the clash, shown on purpose
    web.visit(page, "/schedule/new", "schedule-new-2")
    _fill(page, "Thông báo thu phí vệ sinh", ward, "06:30")
    page.click("button[value=check]")
    clashes = page.locator(".sch-clashes")
    expect(clashes).to_contain_text("Phát thanh buổi sáng")
    expect(page.locator("input[name=override]")).to_be_visible()
    web.shot(page, "schedule-clash")
    assert len(s.ok("GET", "/api/v1/broadcasts")["broadcasts"]) == 1  # nothing saved

    phone = web.page(s, "staff", "phone")
    web.visit(phone, f"/schedule?area={s.ward['id']}&week={_tomorrow().isoformat()}",
              "schedule-week")
    expect(phone.locator(".sch-slot", has_text="Phát thanh buổi sáng").first).to_be_visible()
    web.visit(phone, "/schedule/new", "schedule-new")  # the form fits a phone, every field named


def test_the_editor_builds_a_programme_on_a_phone_reorders_it_and_sees_its_length(web_system,
                                                                                   web):
    s = web_system
    s.approved_bulletin("Tin đầu giờ")
    s.approved_bulletin("Tin cuối giờ")
    page = web.page(s, "staff", "phone")
    web.visit(page, "/programmes/new", "programme-new")
    page.fill("input[name=title]", "Chương trình buổi sáng")
    for title in ("Tin đầu giờ", "Tin cuối giờ"):
        page.select_option("select[name=add]", label=title)
        page.click("button[value=add]")
    items = page.locator(".prog-items li .prog-name")
    expect(items).to_have_text(["Tin đầu giờ", "Tin cuối giờ"])
    page.click("button[value='up:1']")
    expect(items).to_have_text(["Tin cuối giờ", "Tin đầu giờ"])
    page.press("input[name=title]", "Enter")  # Enter in the title saves, never moves an item
    expect(page.locator("h1")).to_contain_text("Chương trình buổi sáng")
    expect(page.locator(".prog-total")).to_contain_text("Tổng thời lượng")
    web.shot(page, "programme-saved")
    programme = s.ok("GET", "/api/v1/programmes")["programmes"][0]
    assert [i["title"] for i in programme["items"]] == ["Tin cuối giờ", "Tin đầu giờ"]
