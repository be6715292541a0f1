"""The fleet pages in a real browser (Playwright on Debian's Chromium, headless), with real agent
processes on a real Mosquitto: a technician on a phone finds the node that went offline, opens
it, sends a test tone, and sees the node's answer once it is back; the map draws the nodes and
the area's outline with no tile server at all, and no console error."""
import re
import signal

from playwright.sync_api import expect

from tests.system import AGENT_STOP_S

WAIT_MS = 30_000


def _online(system, node_id: str, online: bool) -> None:
    system.wait(lambda: system.ok("GET", f"/api/v1/nodes/{node_id}")["online"] is online,
                timeout=30, what=f"{node_id} online={online}")


def test_a_technician_on_a_phone_finds_an_offline_node_and_tests_its_horn(web_system, web):
    s = web_system
    market = s.ok("POST", "/api/v1/nodes", json={"cluster_id": s.cluster["id"],
                                                 "name": "Loa chợ Hàn", "lat": 16.068,
                                                 "lon": 108.224})
    school = s.ok("POST", "/api/v1/nodes", json={"cluster_id": s.cluster["id"],
                                                 "name": "Loa trường học", "lat": 16.071,
                                                 "lon": 108.219})
    procs = {p["id"]: s.start_agent(p)[0] for p in (market, school)}
    for p in (market, school):
        _online(s, p["id"], True)
    procs[market["id"]].send_signal(signal.SIGTERM)  # its power fails
    procs[market["id"]].wait(AGENT_STOP_S)
    _online(s, market["id"], False)

    page = web.page(s, "technician", "phone")
    web.visit(page, "/nodes", "fleet")
    page.select_option("#fleet-status", "offline")
    page.click(".fleet-filters button[type=submit]")
    rows = page.locator("table.fleet-list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Loa chợ Hàn")
    expect(rows.first.locator(".state")).to_have_text("Mất kết nối")
    web.shot(page, "fleet-offline")

    rows.first.locator("a").click()
    page.wait_for_url(f"**/nodes/{market['id']}")
    web.visit(page, f"/nodes/{market['id']}", "node")
    page.click("button[value=tone]")
    result = page.locator(".fleet-command").first
    expect(result).to_contain_text("Phát âm thử")
    expect(result).not_to_have_class(re.compile("fleet-final"))

    s.start_agent(market, name=f"{market['id']}-back")  # power back: the queued command arrives
    expect(result).to_have_attribute("data-status", "finished", timeout=WAIT_MS)
    expect(result).to_contain_text("đạt")
    expect(result).to_contain_text("Hz tone played")
    expect(page.locator("#fleet-facts [data-state]")).to_have_attribute(  # polled (web.POLL_S)
        "data-state", "online", timeout=WAIT_MS)
    web.shot(page, "node-tone-done")


def test_the_map_draws_the_nodes_without_a_tile_server(web_system, web):
    s = web_system
    for name, lat, lon in (("Loa cầu Rồng", 16.061, 108.227), ("Loa công viên", 16.064, 108.22),
                           ("Loa bến xe", 16.058, 108.215)):
        s.ok("POST", "/api/v1/nodes", json={"cluster_id": s.cluster["id"], "name": name,
                                            "lat": lat, "lon": lon})
    placed = sum(1 for n in s.ok("GET", "/api/v1/nodes")["nodes"] if n["lat"] is not None)
    for size in ("desktop", "phone"):
        page = web.page(s, "viewer", size)
        web.visit(page, "/nodes/map", "map")
        box = page.locator("#fleet-map")
        expect(box).to_have_attribute("data-markers", str(placed))
        expect(page.locator("path.fleet-marker")).to_have_count(placed)
        # the cluster's and the ward's outlines, and no tile was asked for
        assert page.locator("path.leaflet-interactive").count() >= placed + 2
        assert page.locator("img.leaflet-tile").count() == 0
        # each marker wears its state's colour in the legend, not Leaflet's own blue
        for fill, legend in page.evaluate(MARKER_AND_LEGEND_COLOURS):
            assert fill == legend and fill != LEAFLET_BLUE, (fill, legend)
        # the cluster's outline is solid, the ward's around it dashed
        dashes = page.evaluate(OUTLINE_DASHES)
        assert dashes["cluster"] == ["none"] and "none" not in dashes["ward"], dashes
        web.shot(page, "map-markers")


LEAFLET_BLUE = "rgb(51, 136, 255)"  # Leaflet's default path colour, #3388ff
MARKER_AND_LEGEND_COLOURS = """() => [...document.querySelectorAll("path.fleet-marker")].map(m => {
    const state = [...m.classList].find(c => c.startsWith("fleet-state-"));
    const dot = document.querySelector(".fleet-legend .fleet-dot." + state);
    return [getComputedStyle(m).fill, dot ? getComputedStyle(dot).backgroundColor : null];
})"""
OUTLINE_DASHES = """() => {
    const dashes = {};
    for (const p of document.querySelectorAll("path.fleet-area")) {
        const kind = [...p.classList].find(c => c.startsWith("fleet-area-")).slice(11);
        (dashes[kind] = dashes[kind] || []).push(getComputedStyle(p).strokeDasharray);
    }
    return dashes;
}"""
