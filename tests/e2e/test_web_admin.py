"""The administration pages in a real browser (Playwright on Debian's Chromium): an admin creates
a staff user on a desktop, who then logs in; on a phone the admin asks the ward for a second
person's confirmation of emergencies and the audit log shows both changes. Screenshots of each
page, desktop and phone."""
from __future__ import annotations

from playwright.sync_api import expect

from server.auth import ROLES

NEW_PASSWORD = "mat-khau-bien-tap-1"


def test_an_admin_creates_a_staff_user_and_sets_the_wards_second_person_emergency(
        web_system, web):
    system = web_system
    ward = system.ward
    desk = web.page(system, "admin", "desktop")
    desk.click("header nav a[href='/admin/users']")
    expect(desk.locator("h1")).to_have_text("Tài khoản người dùng")
    web.visit(desk, "/admin/users", "admin-users")
    # an admin may grant every role
    assert desk.locator("select[name=role] option").evaluate_all(
        "os => os.map(o => o.value)") == list(ROLES)
    desk.fill("input[name=username]", "bientap-moi")
    desk.select_option("select[name=role]", "staff")
    desk.select_option("select[name=area_id]", str(ward["id"]))
    desk.fill("input[name=password]", NEW_PASSWORD)
    desk.click("button:has-text('Tạo tài khoản')")
    expect(desk.locator(".flash")).to_contain_text("Đã tạo tài khoản bientap-moi.")
    row = desk.locator("tr", has_text="bientap-moi")
    expect(row).to_contain_text("cán bộ biên tập")
    expect(row).to_contain_text(ward["name"])
    web.shot(desk, "admin-users-created")

    newcomer = web.new_page("phone", system)
    web.login(newcomer, "bientap-moi", NEW_PASSWORD)
    expect(newcomer.locator("header .who")).to_contain_text("bientap-moi")
    expect(newcomer.locator("header nav a[href='/admin/users']")).to_have_count(0)

    phone = web.page(system, "admin", "phone")
    web.visit(phone, "/admin/wards", "admin-wards")
    phone.click(f"a[href='/admin/wards/{ward['id']}']")
    expect(phone.locator("#inh-emergency_confirm")).to_contain_text("Cấp trên: Không")
    web.visit(phone, f"/admin/wards/{ward['id']}", "admin-ward")
    phone.select_option("select[name=emergency_confirm]", "yes")
    phone.click("button:has-text('Lưu')")
    expect(phone.locator(".flash")).to_contain_text(f"Đã lưu cài đặt của {ward['name']}.")
    expect(phone.locator("select[name=emergency_confirm]")).to_have_value("yes")
    web.shot(phone, "admin-ward-saved")
    assert system.ok("GET", f"/api/v1/areas/{ward['id']}")["emergency_confirm"] is True
    cluster = phone.goto(f"/admin/wards/{system.cluster['id']}")
    assert cluster is not None and cluster.status == 200
    expect(phone.locator("#inh-emergency_confirm")).to_contain_text(
        "Cấp trên: Có, cần người thứ hai")

    for page in (desk, phone):
        web.visit(page, "/admin/audit", "admin-audit")
    phone.select_option("select[name=action]", "areas.update")
    phone.click("form.admin-audit-filter button")
    entry = phone.locator("tr[data-action='areas.update']").first
    expect(entry).to_contain_text("emergency_confirm: — → có")
    expect(entry).to_contain_text("admin")
    expect(phone.locator("tr[data-action='users.insert']")).to_have_count(0)
    web.shot(phone, "admin-audit-filtered")
    desk.goto("/admin/audit?action=users.insert")
    expect(desk.locator("tr[data-action='users.insert']", has_text="bientap-moi")).to_have_count(1)
