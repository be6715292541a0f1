"""The editor broadcasts an approved bulletin now from its page, the demo nodes play it, and the
dashboards open elsewhere (an office PC, an approver's phone) say so as it plays, without a
reload. The nodes are `make run`'s three demo nodes (scripts/run.py): real agent processes with
file-sink players, here connected to the test's Mosquitto without TLS."""
from __future__ import annotations

from playwright.sync_api import expect

from run import DEMO_NODES
from tests.system import played_events, sink_files

WAIT_MS = 30_000
# long enough to be seen playing: the agents report every 2 s (web_system), the dashboard
# polls every 10 s in production (server/web/dashboard.py POLL_S; 2 s here, tests/e2e/web.py)
TEXT = ("Ủy ban nhân dân phường thông báo: từ ngày mười lăm tháng mười hai, xe thu gom rác "
        "thải đi qua các tổ dân phố lúc năm giờ ba mươi sáng và mười tám giờ chiều hằng ngày. "
        "Đề nghị bà con để rác đúng nơi quy định. Xin cảm ơn.")


def test_the_editor_broadcasts_a_bulletin_now_and_the_dashboard_shows_the_nodes_playing_it(
        web_system, web):
    s = web_system
    nodes, sinks = [], {}
    for name in DEMO_NODES:
        node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": s.cluster["id"], "name": name})
        _proc, sinks[node["id"]] = s.start_agent(node)
        nodes.append(node)
    s.wait(lambda: all(s.ok("GET", f"/api/v1/nodes/{n['id']}")["online"] for n in nodes), 30,
           "the demo nodes online")
    bulletin = s.approved_bulletin("Lịch thu gom rác thải", TEXT)
    assert bulletin["duration_ms"] >= 15_000, "too short to be seen playing"
    played_ms = bulletin["duration_ms"] + WAIT_MS  # from its start to every node's report

    # the dashboards, open before anything airs: an office PC and an approver's phone
    watching = [web.page(s, "staff", "desktop"), web.page(s, "approver", "phone")]
    for dash in watching:
        expect(dash.locator(".summary")).to_have_attribute("data-online", "3", timeout=WAIT_MS)
        expect(dash.locator(".now")).to_contain_text("Không có loa nào đang phát")
        dash.evaluate("window.sameDocument = true")

    editor = web.page(s, "staff", "desktop")
    web.visit(editor, "/bulletins", "bulletins")
    editor.click(f"a[href='/bulletins/{bulletin['id']}']")
    form = editor.locator("section.bul-broadcast")
    expect(form).to_contain_text("Phát ngay")
    form.get_by_label("Phát tới địa bàn").select_option(str(s.ward["id"]))
    web.shot(editor, "bulletin-approved")
    form.get_by_role("button", name="Phát ngay tới địa bàn này").click()
    editor.wait_for_url("**/broadcasts/*")
    expect(editor.locator(".flash")).to_contain_text("Đã gửi bản tin đi phát.")
    bc_id = int(editor.url.rstrip("/").rsplit("/", 1)[1])

    # both dashboards show it playing on the three nodes, updated in place
    for dash in watching:
        playing = dash.locator(".now li.playing", has_text="Lịch thu gom rác thải")
        expect(playing).to_have_attribute("data-nodes", "3", timeout=WAIT_MS)
        for name in DEMO_NODES:
            expect(playing).to_contain_text(name)
        for node in nodes:
            expect(dash.locator(f"#node-{node['id']}")).to_contain_text(f"bc-{bc_id}")
        assert dash.evaluate("window.sameDocument") is True, "the dashboard was reloaded"
        web.shot(dash, "dashboard-playing")

    # from the phone's dashboard to the broadcast, whose page follows it to the end
    phone = watching[1]
    phone.locator(".now li.playing a").click()
    phone.wait_for_url(f"**/broadcasts/{bc_id}")
    for page in (phone, editor):
        expect(page.locator(".summary")).to_have_attribute("data-played", "3",
                                                           timeout=played_ms)
        expect(page.locator(".summary")).to_contain_text("3/3 thiết bị đã phát xong")
        web.shot(page, "broadcast-played")

    # each node played the bulletin's audio once, in full, into its sink
    sha = bulletin["sha256"]
    for node in nodes:
        sink = sinks[node["id"]]
        assert [e["result"] for e in played_events(sink) if e["sha256"] == sha] == ["completed"]
        assert len(sink_files(sink, sha)) == 1
    # and the office's dashboard is back to nothing playing, still without a reload
    office = watching[0]
    expect(office.locator(".now")).to_contain_text("Không có loa nào đang phát",
                                                   timeout=WAIT_MS)
    assert office.evaluate("window.sameDocument") is True
    web.shot(office, "dashboard-after")
