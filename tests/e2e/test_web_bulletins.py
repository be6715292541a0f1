"""The bulletin pages in a real browser (Playwright on Debian's Chromium): an editor writes a
bulletin, hears and reads its preview and sends it for approval; an approver works through the
queue on a 360 px phone and approves it; a bulletin rejected with a comment shows that comment
in its history."""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

WAIT_MS = 30_000


def write_and_submit(web, system, size: str, title: str, text: str, category: str
                     ) -> tuple[Page, dict]:
    """An editor at ``size`` writes ``title`` and ``text`` on the form, previews it (reading and
    player shown) and sends it for approval: their page and the bulletin (API JSON)."""
    page = web.page(system, "staff", size)
    web.visit(page, "/bulletins/new", f"new-{category}")
    page.fill("input[name=title]", title)
    page.fill("textarea[name=text]", text)
    page.select_option("select[name=category]", category)
    page.click("[hx-post$='/partials/preview']")
    expect(page.locator("textarea[name=spoken_text]")).to_have_value(
        re.compile("ủy ban nhân dân"), timeout=WAIT_MS)
    player = page.locator("#preview audio")
    expect(player).to_have_attribute("src", re.compile(r"^/media/[0-9a-f]{64}\.mp3$"))
    web.shot(page, f"preview-{category}")
    page.click("button[value=submit]")
    page.wait_for_url("**/bulletins")
    expect(page.locator(".flash")).to_contain_text("Đã gửi bản tin chờ duyệt.")
    [b] = [b for b in system.ok("GET", "/api/v1/bulletins")["bulletins"] if b["title"] == title]
    return page, b


def queue_card(page: Page, title: str):
    return page.locator("ul.bul-queue > li", has=page.get_by_role("link", name=re.compile(title)))


def test_an_editor_submits_a_previewed_bulletin_and_an_approver_approves_it_on_a_phone(
        web_system, web):
    system = web_system
    editor, b = write_and_submit(web, system, "desktop", "Họp tổ dân phố số 3",
                                 "UBND phường mời bà con họp lúc 19h30 tại nhà văn hoá.",
                                 "admin_reform")
    assert b["status"] == "pending"

    phone = web.page(system, "approver", "phone")
    phone.click("header nav a[href='/bulletins/queue']")
    web.visit(phone, "/bulletins/queue", "queue")  # fits 360 px, labelled, one <h1>
    card = queue_card(phone, "Họp tổ dân phố số 3")
    expect(card).to_contain_text("mười chín giờ ba mươi")  # the reading, not "19h30"
    expect(card.locator("audio")).to_have_attribute("src", b["audio_url"])
    approve = card.locator("button[value=approve]")
    box = approve.bounding_box()
    assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= 360
    approve.click()
    expect(phone.locator(".flash")).to_contain_text("Đã duyệt bản tin.")
    expect(queue_card(phone, "Họp tổ dân phố số 3")).to_have_count(0)
    web.shot(phone, "queue-approved")
    assert system.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "approved"

    # the editor sees who approved it, and when, on the bulletin's page
    editor.click(f"a[href='/bulletins/{b['id']}']")
    expect(editor.locator("tr.bul-step-approve")).to_contain_text("approver-hc1")
    web.shot(editor, "approved-history")


def test_a_bulletin_rejected_with_a_comment_shows_it_in_its_history(web_system, web):
    system = web_system
    editor, b = write_and_submit(web, system, "phone", "Phun thuốc muỗi",
                                 "UBND phường phun thuốc diệt muỗi từ 8h đến 11h.", "health")

    phone = web.page(system, "approver", "phone")
    web.visit(phone, "/bulletins/queue", "queue-before-reject")
    card = queue_card(phone, "Phun thuốc muỗi")
    card.locator("input[name=comment]").fill("Ghi rõ tổ dân phố nào")
    card.locator("button[value=reject]").click()
    expect(phone.locator(".flash")).to_contain_text("Đã từ chối bản tin.")

    web.visit(editor, f"/bulletins/{b['id']}", "rejected-bulletin")
    step = editor.locator("tr.bul-step-reject")
    expect(step).to_contain_text("approver-hc1")
    expect(step).to_contain_text("Ghi rõ tổ dân phố nào")
    expect(editor.locator(".bul-status")).to_have_text("Bị từ chối")
    expect(editor.locator(".bul-reading")).to_contain_text("tám giờ đến mười một giờ")
    assert system.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "rejected"
