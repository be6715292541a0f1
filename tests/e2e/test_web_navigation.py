"""The web app in a real browser for every role: each menu entry opens, in Vietnamese and in
English (one click away), on a desktop and on a 360 px phone, with no console error, no failed
request and no sideways scrolling; what a role may not do is not in its menu and the page refuses
it anyway. The dashboard shows a node going offline without a reload, and its poll costs a 304
while nothing changes."""
from __future__ import annotations

import time

import pytest
from flask import url_for
from playwright.sync_api import expect

from server.auth import ROLES
from server.i18n import t
from server.models import User
from server.web import NAV, nav_for

WAIT_MS = 45_000
TOUCH_PX = 44


def _menu(page) -> list[tuple[str, str]]:
    links = page.locator("header nav a")
    return [(links.nth(i).get_attribute("href"), links.nth(i).inner_text().strip())
            for i in range(links.count())]


def _check_touch_targets(page) -> None:
    for selector in ("header nav a", ".langs a", "form.logout button"):
        for box in (page.locator(selector).nth(i).bounding_box()
                    for i in range(page.locator(selector).count())):
            assert box is not None and box["height"] >= TOUCH_PX, (selector, box)


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_menu_entry_of_every_role_opens_in_both_languages(web_system, web, size):
    web.watch.allow.add(403)  # the pages outside a role's menu, asked for on purpose
    for role in ROLES:
        allowed = nav_for(User(role=role))  # a model instance needs no session
        page = web.page(web_system, role, size)
        # the first Tab reaches the skip link, shown when focused
        page.keyboard.press("Tab")
        expect(page.locator("a.skip")).to_be_focused()
        expect(page.locator("a.skip")).to_be_in_viewport()
        for lang in ("vi", "en"):
            if lang == "en":
                page.click("a[hreflang=en]")  # one click, back on the same page
                expect(page.locator("html")).to_have_attribute("lang", "en")
            menu = _menu(page)
            assert [label for _, label in menu] == [t(e.label, lang) for e in allowed]
            _check_touch_targets(page)
            for href, _label in menu:
                slug = href.strip("/").replace("/", "_") or "home"
                web.visit(page, href, f"{role}-{lang}-{slug}")
                expect(page.locator("html")).to_have_attribute("lang", lang)
                expect(page.locator("h1")).to_be_visible()
                expect(page.locator("header .who")).to_contain_text(web_system.users[role][0])
        for entry in NAV:
            if entry not in allowed:
                response = page.goto(_url_of(web_system, entry.endpoint))
                assert response is not None and response.status == 403, (role, entry)


def _wait(predicate, timeout_ms: int, what: str, page) -> None:
    """Let the page run until ``predicate()`` holds, failing after ``timeout_ms``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(200)  # Playwright's events arrive while the page is waited on


def _url_of(system, endpoint: str) -> str:
    with system.app.test_request_context():
        return url_for(endpoint)


def test_writing_bulletins_is_in_the_menu_of_those_who_may_only(web_system, web):
    viewer = web.page(web_system, "viewer", "phone")
    assert "Soạn bản tin" not in [label for _, label in _menu(viewer)]
    staff = web.page(web_system, "staff", "phone")
    assert "Soạn bản tin" in [label for _, label in _menu(staff)]


def test_the_dashboard_shows_a_node_going_offline_without_a_reload(web_system, web):
    s = web_system
    agents = [s.start_agent(s.ok("POST", "/api/v1/nodes", json={
        "cluster_id": s.cluster["id"], "name": f"Loa chợ Hàn {i}"}))[0] for i in (1, 2)]
    page = web.page(s, "technician", "phone")
    # what went over the wire: the status the server sent (devtools' raw view; the page, and
    # Playwright's own events, see a revalidated answer as the 200 it reads from the cache)
    polls: set[str] = set()
    wire: list[int] = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.requestWillBeSent", lambda e: polls.add(e["requestId"])
           if "/partials/dashboard" in e["request"]["url"] else None)
    cdp.on("Network.responseReceivedExtraInfo", lambda e: wire.append(e["statusCode"])
           if e["requestId"] in polls else None)
    cdp.send("Network.enable")
    summary = page.locator(".summary")
    expect(summary).to_have_attribute("data-online", "2", timeout=WAIT_MS)
    web.shot(page, "dashboard-online")

    # nothing it shows changes: the next poll is answered 304 Not Modified (the browser reuses
    # what it holds)
    _wait(lambda: 304 in wire, WAIT_MS, "a poll answered 304", page)
    page.evaluate("window.sameDocument = true")

    agents[0].terminate()
    expect(summary).to_have_attribute("data-offline", "1", timeout=WAIT_MS)
    expect(page.locator("tr.offline")).to_have_count(1)
    expect(summary).to_contain_text("1 mất kết nối")
    assert page.evaluate("window.sameDocument") is True  # updated in place, not reloaded
    web.shot(page, "dashboard-offline")
