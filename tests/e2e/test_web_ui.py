"""The pages in a real browser (Playwright on Debian's Chromium, headless): log in, see the nodes
live, write a bulletin, approve and broadcast it at once, and watch it reach every node."""

from playwright.sync_api import expect

from tests.e2e.web import WAIT_MS, login, preview_reading
from tests.system import ADMIN_PASSWORD


def test_staff_logs_in_sees_nodes_and_broadcasts_a_bulletin_to_the_ward(web_system, web):
    system = web_system
    province = system.area("Thành phố Hải Phòng", "HP", "province")
    ward = system.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = system.area("Cụm loa 1", "HP-LC-1", "cluster", ward["id"])
    for i in (1, 2, 3):
        system.start_agent(system.ok("POST", "/api/v1/nodes",
                                     json={"cluster_id": cluster["id"], "name": f"Loa {i}"}))
    page = web.new_page("desktop", system)
    web.watch.allow.add(401)  # the wrong password below

    page.goto("/")
    assert "/login" in page.url
    assert "Đăng nhập" in page.content()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("Sai tên đăng nhập hoặc mật khẩu")
    web.shot(page, "login-refused")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")

    # the dashboard refreshes itself (htmx) until the three agents show as online
    summary = page.locator(".summary")
    expect(summary).to_have_attribute("data-online", "3", timeout=WAIT_MS)
    expect(summary).to_contain_text("3/3 thiết bị trực tuyến")
    expect(page.locator("tr.online")).to_have_count(3)
    web.shot(page, "dashboard")

    page.goto("/bulletins/new")
    page.fill("input[name=title]", "Thông báo tiêm chủng")
    page.fill("textarea[name=text]",
              "Trạm y tế phường tổ chức tiêm chủng cho trẻ em vào sáng thứ bảy.")
    page.select_option("select[name=category]", "health")
    page.select_option("select[name=area_id]", str(ward["id"]))
    web.shot(page, "bulletin-form")
    page.click("button[value=broadcast_now]")

    page.wait_for_url("**/broadcasts/**")
    expect(page.locator(".summary")).to_have_attribute("data-played", "3", timeout=WAIT_MS)
    expect(page.locator(".summary")).to_contain_text("3/3 thiết bị đã phát xong")
    # each node sends its `played` event, then its `finished` ack
    expect(page.locator("tr.d-finished")).to_have_count(3, timeout=WAIT_MS)
    web.shot(page, "broadcast")


def test_pages_switch_to_english(web_system, web):
    page = web.new_page("desktop", web_system)
    page.goto("/lang/en")
    page.goto("/login")
    assert "Log in" in page.content() and "Đăng nhập" not in page.content()
    web.shot(page, "login-en")


def test_author_previews_the_reading_fixes_it_and_an_approver_approves(web_system, web):
    system = web_system
    province = system.area("Thành phố Hồ Chí Minh", "HCM", "province")
    system.area("Phường Tân Sơn Nhì", "HCM-TSN", "ward", province["id"])
    page = web.new_page("desktop", system)
    login(page)
    spoken = preview_reading(page)
    assert "bảy giờ ba mươi" in spoken.input_value()
    assert page.locator("#preview audio").get_attribute("src").endswith(".mp3")
    web.shot(page, "preview")
    spoken.fill("ủy ban nhân dân phường họp lúc bảy rưỡi sáng.")
    page.click("button[value=submit]")
    page.wait_for_url("**/bulletins")
    b = system.ok("GET", "/api/v1/bulletins")["bulletins"][0]
    assert b["status"] == "pending" and \
        b["spoken_text"] == "ủy ban nhân dân phường họp lúc bảy rưỡi sáng."

    page.click("form.review button[value=approve]")
    expect(page.locator(".flash")).to_contain_text("Đã duyệt bản tin")
    web.shot(page, "approved")
    assert system.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "approved"
