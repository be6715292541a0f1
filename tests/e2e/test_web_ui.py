"""The pages in a real browser (Debian's Chromium, headless): log in, see the nodes live, write a
bulletin, approve and broadcast it at once, and watch it reach every node."""
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.system import ADMIN_PASSWORD


def _text(browser, css):
    return browser.find_element(By.CSS_SELECTOR, css).text


def test_staff_logs_in_sees_nodes_and_broadcasts_a_bulletin_to_the_ward(system, browser):
    province = system.area("Thành phố Hải Phòng", "HP", "province")
    ward = system.area("Phường Lê Chân", "HP-LC", "ward", province["id"])
    cluster = system.area("Cụm loa 1", "HP-LC-1", "cluster", ward["id"])
    for i in (1, 2, 3):
        system.start_agent(system.ok("POST", "/api/v1/nodes",
                                     json={"cluster_id": cluster["id"], "name": f"Loa {i}"}))
    wait = WebDriverWait(browser, 20, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])

    browser.get(f"{system.url}/")
    assert "/login" in browser.current_url
    assert "Đăng nhập" in browser.page_source
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("wrong password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert "Sai tên đăng nhập hoặc mật khẩu" in _text(browser, ".error")
    browser.find_element(By.NAME, "username").clear()
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # the dashboard refreshes itself (htmx) until the three agents show as online
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".summary")
               .get_attribute("data-online") == "3")
    assert wait.until(lambda b: "3/3 thiết bị trực tuyến" in _text(b, ".summary"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.online")) == 3

    browser.get(f"{system.url}/bulletins/new")
    browser.find_element(By.NAME, "title").send_keys("Thông báo tiêm chủng")
    browser.find_element(By.NAME, "text").send_keys(
        "Trạm y tế phường tổ chức tiêm chủng cho trẻ em vào sáng thứ bảy.")
    Select(browser.find_element(By.NAME, "category")).select_by_value("health")
    Select(browser.find_element(By.NAME, "area_id")).select_by_value(str(ward["id"]))
    browser.find_element(By.CSS_SELECTOR, "button[value=broadcast_now]").click()

    wait.until(lambda b: "/broadcasts/" in b.current_url)
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".summary")
               .get_attribute("data-played") == "3")
    assert wait.until(lambda b: "3/3 thiết bị đã phát xong" in _text(b, ".summary"))
    # each node sends its `played` event, then its `finished` ack
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "tr.d-finished")) == 3)


def test_pages_switch_to_english(system, browser):
    browser.get(f"{system.url}/lang/en")
    browser.get(f"{system.url}/login")
    assert "Log in" in browser.page_source and "Đăng nhập" not in browser.page_source


def _login(system, browser):
    browser.get(f"{system.url}/login")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "/login" not in b.current_url)


def preview_reading(system, browser, wait):
    """Write a bulletin's title and text, ask for the preview; its spoken-text box."""
    browser.get(f"{system.url}/bulletins/new")
    browser.find_element(By.NAME, "title").send_keys("Họp tổ dân phố")
    browser.find_element(By.NAME, "text").send_keys("UBND phường họp lúc 7h30.")
    browser.find_element(By.CSS_SELECTOR, "[hx-post$='/partials/preview']").click()
    spoken = wait.until(lambda b: b.find_elements(By.NAME, "spoken_text"))[0]
    assert "ủy ban nhân dân" in spoken.get_attribute("value")
    return spoken


def test_author_previews_the_reading_fixes_it_and_an_approver_approves(system, browser):
    province = system.area("Thành phố Hồ Chí Minh", "HCM", "province")
    system.area("Phường Tân Sơn Nhì", "HCM-TSN", "ward", province["id"])
    wait = WebDriverWait(browser, 20, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])
    _login(system, browser)
    spoken = preview_reading(system, browser, wait)
    assert "bảy giờ ba mươi" in spoken.get_attribute("value")
    assert browser.find_element(By.CSS_SELECTOR, "#preview audio") \
        .get_attribute("src").endswith(".mp3")
    spoken.clear()
    spoken.send_keys("ủy ban nhân dân phường họp lúc bảy rưỡi sáng.")
    browser.find_element(By.CSS_SELECTOR, "button[value=submit]").click()
    wait.until(lambda b: b.current_url.endswith("/bulletins"))
    b = system.ok("GET", "/api/v1/bulletins")["bulletins"][0]
    assert b["status"] == "pending" and \
        b["spoken_text"] == "ủy ban nhân dân phường họp lúc bảy rưỡi sáng."

    browser.find_element(By.CSS_SELECTOR, "form.review button[value=approve]").click()
    wait.until(lambda b: "Đã duyệt bản tin" in b.page_source)
    assert system.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "approved"
