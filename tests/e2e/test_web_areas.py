"""The administration pages in a real browser (Playwright on Debian's Chromium, headless) on the
real stack: an admin merges two wards from the area tree after reviewing what moves, and the
tree then counts the merged ward's node under the kept one; a technician on a phone provisions a
node from the fleet page, downloads its agent config once, and a reload shows it is gone."""
import tomllib
from pathlib import Path

from playwright.sync_api import expect


def test_an_admin_merges_two_wards_from_the_area_tree(web_system, web):
    s = web_system
    province = s.ok("GET", f"/api/v1/areas/{s.ward['id']}")["parent_id"]
    kept = s.area("Phường Thạch Thang", "DN-TT", "ward", province)
    gone = s.area("Phường Thanh Bình", "DN-TB", "ward", province)
    for ward, code in ((kept, "DN-TT-1"), (gone, "DN-TB-1")):
        cluster = s.area(f"Cụm {code}", code, "cluster", ward["id"])
        s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": f"Loa {code}"})

    page = web.page(s, "admin")
    web.visit(page, "/areas", "areas")
    expect(page.locator(f"#area-{gone['id']}")).to_have_attribute("data-nodes", "1")
    page.locator(f"#area-{gone['id']} a").click()
    page.wait_for_url(f"**/areas/{gone['id']}")
    web.visit(page, f"/areas/{gone['id']}", "area")
    page.select_option("#merge-into", str(kept["id"]))
    page.click("#area-merge-h ~ form button[type=submit]")
    page.wait_for_url(f"**/areas/{gone['id']}/merge?into={kept['id']}")
    expect(page.locator(".areas-merge-review")).to_contain_text(
        "Gộp Phường Thanh Bình vào Phường Thạch Thang")
    expect(page.locator(".areas-merge-review")).to_contain_text("1 thiết bị chuyển sang")
    web.shot(page, "area-merge-review")
    page.click(".areas-merge-review button[type=submit]")
    page.wait_for_url("**/areas")
    expect(page.locator(".flash")).to_contain_text("Đã gộp Phường Thanh Bình vào Phường Thạch "
                                                   "Thang")
    expect(page.locator(f"#area-{kept['id']}")).to_have_attribute("data-nodes", "2")
    expect(page.locator(f"#area-{gone['id']}")).to_have_count(0)
    expect(page.locator(f"#merged-{gone['id']}")).to_contain_text("đã gộp vào Phường Thạch Thang")
    web.shot(page, "areas-merged")
    assert s.ok("GET", f"/api/v1/areas/{gone['id']}")["merged_into_id"] == kept["id"]

    phone = web.page(s, "operator", "phone")
    web.visit(phone, "/areas", "areas")
    web.visit(phone, f"/areas/{s.ward['id']}", "area")


def test_a_technician_provisions_a_node_from_the_fleet_page_and_downloads_its_config(
        web_system, web):
    s = web_system
    web.watch.allow.add(410)  # the reload of the answer: gone, by design
    for size in ("desktop", "phone"):
        page = web.page(s, "technician", size)
        web.visit(page, "/nodes", "fleet")
        page.click(".fleet-links a.button")
        page.wait_for_url("**/provisioning")
        web.visit(page, "/provisioning", "provision")
        name = f"Loa cổng chợ ({size})"
        page.fill("#prov-name", name)
        page.select_option("#prov-cluster", str(s.cluster["id"]))
        page.fill("#prov-lat", "16,0680")
        page.fill("#prov-lon", "108.2240")
        page.click("#prov-one-h ~ form button[type=submit]")
        expect(page.locator(".prov-once")).to_be_visible()
        answer = page.locator(".prov-answer")
        expect(answer).to_contain_text(name)
        web.shot(page, "provisioned")
        with page.expect_download() as info:
            answer.locator("a.prov-download").click()
        download = info.value
        config = tomllib.loads(Path(download.path()).read_text(encoding="utf-8"))
        node = s.ok("GET", f"/api/v1/nodes/{config['node_id']}")
        assert node["name"] == name and (node["lat"], node["lon"]) == (16.068, 108.224)
        assert download.suggested_filename == f"{config['node_id']}.toml"
        assert config["mqtt"]["username"] == config["node_id"] and config["mqtt"]["password"]
        assert config["groups"] == node["groups"]

        page.reload()  # the browser sends the form again: nothing new, and no password
        expect(page.locator(".prov-gone")).to_be_visible()
        expect(page.locator(".prov-answer")).to_have_count(0)
        web.shot(page, "provision-reloaded")
        assert sum(n["name"] == name for n in s.ok("GET", "/api/v1/nodes")["nodes"]) == 1
