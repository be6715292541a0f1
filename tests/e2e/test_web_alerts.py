"""The alerts page and the emergency panel in a real browser (Playwright on Debian's Chromium):
an emergency in a ward that asks for a second person airs only after another approver confirms
it on their own phone (nothing reaches the node before), and a technician sees a node's
alert on the dashboard within a minute of its agent stopping, without a reload, and
acknowledges it."""
import signal
import subprocess
import time
from pathlib import Path

from playwright.sync_api import expect

from server.cli import main as cli
from tests.e2e.web import PASSWORD
from tests.system import AGENT_STOP_S

WAIT_MS = 30_000
# a node offline this long raises its alert (production: 5 minutes), judged every second
WEB_SETTINGS = {"alert_offline_after_s": 5, "alert_eval_s": 1}


def _node_with_agent(system, name: str) -> tuple[dict, subprocess.Popen, Path]:
    node = system.ok("POST", "/api/v1/nodes", json={"cluster_id": system.cluster["id"],
                                                    "name": name})
    proc, sink = system.start_agent(node)
    system.wait(lambda: system.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], 30,
                "the node online")
    return node, proc, sink


def _played(system, node_id: str) -> list[dict]:
    return system.ok("GET", f"/api/v1/playlogs?node={node_id}")["playlogs"]


def test_an_emergency_in_a_ward_asking_for_a_second_person_airs_only_once_confirmed(
        web_system, web):
    system = web_system
    system.ok("PATCH", f"/api/v1/areas/{system.ward['id']}", json={"emergency_confirm": True})
    node, _proc, sink = _node_with_agent(system, "Loa chợ Hàn")
    bulletin = system.approved_bulletin("Sơ tán khẩn cấp", "Đề nghị bà con sơ tán ngay.")
    assert cli(["--instance", str(system.instance), "user", "phochutich-hc1", "--role",
                "approver", "--password", PASSWORD, "--area-id", str(system.ward["id"])]) == 0

    first = web.page(system, "approver", "desktop")
    web.visit(first, "/emergency")
    first.select_option("select[name=bulletin_id]", str(bulletin["id"]))
    first.check(f"#e-area-{system.ward['id']}")
    first.click("button.emergency-go")
    expect(first.locator(".emergency-second")).to_contain_text("người thứ hai xác nhận")
    web.shot(first, "emergency-review")
    first.click("button.emergency-go")
    first.wait_for_url("**/emergency/*")
    expect(first.locator(".emergency-confirm")).to_contain_text("Chưa có loa nào nhận lệnh")
    expect(first.locator("form[action$='/confirm']")).to_have_count(0)  # not the sender's
    web.shot(first, "emergency-waiting")
    bc_id = int(first.url.rstrip("/").rsplit("/", 1)[1])

    waiting = system.ok("GET", f"/api/v1/broadcasts/{bc_id}")
    assert waiting["status"] == "awaiting_confirmation" and waiting["dispatched_at"] is None
    assert waiting["nodes"] == [] or all(n["status"] == "pending" for n in waiting["nodes"])
    assert _played(system, node["id"]) == [] and not any(sink.glob("*"))

    second = web.new_page("phone", system)
    web.login(second, "phochutich-hc1", PASSWORD)
    waiting_link = second.locator(f".emergency-awaiting a[href='/emergency/{bc_id}']")
    expect(waiting_link).to_contain_text("Sơ tán khẩn cấp")
    web.shot(second, "dashboard-awaiting")
    waiting_link.click()
    second.click("form[action$='/confirm'] button")
    expect(second.locator(".flash")).to_contain_text("Đã xác nhận")
    # live per-node progress, on both devices, until the node has played it
    for page in (second, first):
        expect(page.locator(".summary")).to_have_attribute("data-played", "1", timeout=WAIT_MS)
        expect(page.locator(f"#delivery-{node['id']}")).to_have_class("d-finished",
                                                                      timeout=WAIT_MS)
    web.shot(second, "emergency-confirmed")
    assert [p["broadcast_id"] for p in _played(system, node["id"])] == [bc_id]


def test_a_technician_sees_a_node_go_offline_within_a_minute_and_acknowledges_its_alert(
        web_system, web):
    system = web_system
    node, proc, _sink = _node_with_agent(system, "Loa nhà văn hoá")
    page = web.page(system, "technician", "phone")
    web.visit(page, "/")  # the dashboard, left open: what follows arrives without a reload
    expect(page.locator(".alarms li[data-kind='node_offline']")).to_have_count(0)
    stopped = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(AGENT_STOP_S)
    # the alert, raised by the dispatcher once the node has been offline for the hold-off
    expect(page.locator(".alarms li[data-kind='node_offline']")).to_contain_text(
        node["id"], timeout=60_000)
    assert time.monotonic() - stopped < 60
    web.shot(page, "dashboard-node-offline")

    web.visit(page, "/alerts")
    row = page.locator("tr[data-kind='node_offline']", has_text=node["id"])
    expect(row).to_contain_text("Thiết bị mất kết nối")
    row.locator("input[name=comment]").fill("Đang tới kiểm tra nguồn")
    row.locator("button", has_text="Tiếp nhận").click()
    expect(page.locator(".flash")).to_contain_text("Đã tiếp nhận cảnh báo")
    web.visit(page, "/alerts?state=acknowledged", "alerts-acknowledged")
    done = page.locator("tr[data-kind='node_offline']", has_text=node["id"])
    expect(done).to_contain_text("technician-hc1 tiếp nhận lúc")
    expect(done).to_contain_text("Đang tới kiểm tra nguồn")
    [alert] = system.ok("GET", f"/api/v1/alerts?node={node['id']}")["alerts"]
    assert alert["state"] == "acknowledged" and alert["acknowledged"]["by"] == "technician-hc1"
