"""The fleet pages without a browser: the node list filters, searches and pages in the user's
areas only, the map's data places the nodes with their state and each area's outline, and a
node's page shows its telemetry as charts, its next day of slots, its plays and alerts, and
sends the remote actions as the API does (node.command), showing the ack when it arrives."""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

from sqlalchemy import update

from server.cli import main as cli
from server.models import Alert, Command, Event, Node, PlayLog, Telemetry, utcnow
from tests.server.helpers import desired_pass
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser, found

PASSWORD = "mat-khau-123"


def _user(s, name: str, role: str, area_id: int | None) -> PageUser:
    args = ["--instance", str(s.instance), "user", name, "--role", role, "--password", PASSWORD]
    assert cli(args + (["--area-id", str(area_id)] if area_id else [])) == 0
    return PageUser(s, name, PASSWORD)


def _db(s):
    return s.app.extensions["db_sessions"]()


def _node_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="node-([^"]+)"', page)


def _nodes(s, cluster_id: int, names: list[str], **coords) -> list[str]:
    return [s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster_id, "name": name,
                                                **coords})["id"] for name in names]


def test_the_node_list_filters_by_status_and_alarm_and_searches_by_name_or_id(app_only, wards):
    s = app_only
    mine = _nodes(s, wards["mine_cluster"]["id"], ["Loa chợ Hàn", "Loa trường học"])
    with _db(s) as db:
        db.execute(update(Node).where(Node.id == mine[0]).values(
            online=False, last_seen=utcnow() - dt.timedelta(hours=1)))
        db.execute(update(Node).where(Node.id == mine[1]).values(online=True,
                                                                 last_seen=utcnow()))
        db.add(Event(node_id=mine[1], event_id="a1", type="alarm", ts_ms=0, received_at=utcnow(),
                     payload={"type": "alarm", "id": "a1", "code": "overheat"}))
        db.commit()
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    assert _node_ids(admin.get("/nodes?status=offline").text) == [mine[0]]
    assert _node_ids(admin.get("/nodes?status=online").text) == [mine[1]]
    # the wards' fixture nodes never connected
    assert len(_node_ids(admin.get("/nodes?status=never_connected").text)) == 2
    assert _node_ids(admin.get("/nodes?alarm=1").text) == [mine[1]]
    assert _node_ids(admin.get("/nodes?q=chợ HÀN").text) == [mine[0]]
    assert _node_ids(admin.get(f"/nodes?q={mine[1][-6:]}").text) == [mine[1]]
    assert admin.get("/nodes?q=100%25").text.count('<tr id="node-') == 0  # % is no wildcard
    assert admin.get("/nodes?status=asleep").status_code == 400


def test_the_node_list_shows_only_the_users_areas_and_narrows_to_an_area(app_only, wards):
    s = app_only
    theirs = _nodes(s, wards["other_cluster"]["id"], ["Loa Ngô Quyền"])
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    page = tech.get("/nodes").text
    assert 'data-total="1"' in page and theirs[0] not in page
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    assert 'data-total="3"' in admin.get("/nodes").text
    narrowed = admin.get(f"/nodes?area={wards['other']['id']}").text
    assert 'data-total="2"' in narrowed and theirs[0] in narrowed


def test_the_node_list_pages_in_the_database_fifty_at_a_time(app_only, wards):
    s = app_only
    _nodes(s, wards["mine_cluster"]["id"], [f"Loa {i:02d}" for i in range(55)])
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    first = admin.get(f"/nodes?area={wards['mine']['id']}").text
    assert len(_node_ids(first)) == 50 and 'data-total="56"' in first
    assert f'href="/nodes?page=2&amp;area={wards["mine"]["id"]}"' in first
    second = admin.get(f"/nodes?area={wards['mine']['id']}&page=2").text
    assert len(_node_ids(second)) == 6 and not set(_node_ids(second)) & set(_node_ids(first))


def test_the_map_data_places_the_nodes_with_their_state_and_outlines_each_area(app_only, wards):
    s = app_only
    placed = _nodes(s, wards["mine_cluster"]["id"], ["A"], lat=20.85, lon=106.68) \
        + _nodes(s, wards["mine_cluster"]["id"], ["B"], lat=20.86, lon=106.69) \
        + _nodes(s, wards["mine_cluster"]["id"], ["C"], lat=20.84, lon=106.70) \
        + _nodes(s, wards["mine_cluster"]["id"], ["D"], lat=20.85, lon=106.69)  # inside
    with _db(s) as db:
        db.execute(update(Node).where(Node.id == placed[0]).values(online=True))
        db.commit()
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    data = tech.get("/nodes/map.json").json()
    states = {n["id"]: n["state"] for n in data["nodes"]}
    assert states == {placed[0]: "online", placed[1]: "never_connected",
                      placed[2]: "never_connected", placed[3]: "never_connected"}
    outlines = {a["id"]: a["outline"] for a in data["areas"]}
    # the cluster and the ward above it: the hull's corners, not the node inside it
    assert set(outlines) == {wards["mine_cluster"]["id"], wards["mine"]["id"]}
    assert sorted(map(tuple, outlines[wards["mine"]["id"]])) == \
        [(20.84, 106.7), (20.85, 106.68), (20.86, 106.69)]
    page = tech.get("/nodes/map")
    assert page.status_code == 200 and "vendor/leaflet/leaflet.js" in page.text
    assert "<script>" not in page.text and "img-src 'self' data:;" in \
        page.headers["Content-Security-Policy"]


def test_a_tile_server_setting_reaches_the_map_and_only_its_origin_is_allowed(make_app):
    s = make_app(map_tile_url="https://tiles.example.vn/{z}/{x}/{y}.png")
    page = PageUser(s, "admin", ADMIN_PASSWORD).get("/nodes/map")
    assert 'data-tiles="https://tiles.example.vn/{z}/{x}/{y}.png"' in page.text
    assert "img-src 'self' data: https://tiles.example.vn;" in \
        page.headers["Content-Security-Policy"]


def test_a_node_page_charts_its_telemetry_and_lists_its_slots_plays_and_alerts(app_only, wards):
    s = app_only
    node = _nodes(s, wards["mine_cluster"]["id"], ["Loa chợ"])[0]
    b = s.approved_bulletin("Thông báo tiêm chủng")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"nodes": [node]},
        "recurrence": "FREQ=DAILY", "start_at": start.isoformat().replace("+00:00", "Z")})
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    with _db(s) as db:
        for i in range(10):
            db.add(Telemetry(node_id=node, ts_ms=now_ms - i * 600_000, payload={
                "v": 1, "ts": now_ms, "volume": 70, "cpu_temp_c": 40 + i,
                "net": {"signal_dbm": -80 - i}, "disk_free_mb": 900, "clock_offset_ms": 3}))
        db.add(PlayLog(node_id=node, item_id="bc-1", result="completed",
                       started_at_ms=now_ms - 3_600_000))
        db.add(PlayLog(node_id=node, item_id="bc-2", result="failed", reason="media_unavailable",
                       started_at_ms=now_ms - 1_800_000))
        db.add(Alert(kind="overheat", node_id=node, severity="warning", state="open",
                     detail_class="x", detail={}, first_seen=utcnow(), last_seen=utcnow(),
                     opened_at=utcnow()))
        db.commit()
    desired_pass(s)
    page = PageUser(s, "kythuat-lc", PASSWORD).get(f"/nodes/{node}").text
    assert page.count("<polyline") == 5  # volume, temperature, signal, disk, clock
    assert "Nhiệt độ CPU: <strong>40 °C</strong>" in page
    assert "thấp nhất 40, cao nhất 49 °C" in page
    assert "Đã phát xong" in page and "Thiết bị quá nóng" in page
    assert "thiết bị không tải được tệp âm thanh</td>" in page  # the failed play's reason
    slots = page[page.index('id="fleet-desired-h"'):page.index('id="fleet-plays-h"')]
    assert "Thông báo tiêm chủng" in slots
    assert '<td data-label="Mức ưu tiên">Thường</td>' in slots  # its level's name, not 3
    assert 'name="action" value="tone"' in page


def test_a_single_report_is_a_dot_and_a_flat_series_a_line_through_the_middle(app_only, wards):
    s = app_only
    node = _nodes(s, wards["mine_cluster"]["id"], ["Loa mới"])[0]
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    with _db(s) as db:
        db.add(Telemetry(node_id=node, ts_ms=now_ms, payload={"v": 1, "ts": now_ms,
                                                              "volume": 60}))
        db.add(Telemetry(node_id=node, ts_ms=now_ms - 3_600_000, payload={
            "v": 1, "ts": now_ms, "disk_free_mb": 500}))
        db.add(Telemetry(node_id=node, ts_ms=now_ms - 60_000, payload={
            "v": 1, "ts": now_ms, "disk_free_mb": 500}))
        db.commit()
    page = PageUser(s, "admin", ADMIN_PASSWORD).get(f"/nodes/{node}").text
    assert page.count("<circle") == 1 and page.count("<polyline") == 1
    line = found(r'<polyline points="([^"]+)"', page)
    assert {p.split(",")[1] for p in line.split()} == {"40.0"}  # half of the 80 px height
    assert page.count("Chưa có số liệu.") == 3


def test_a_node_pages_state_answers_not_modified_until_the_node_comes_back(app_only, wards):
    s = app_only
    node = _nodes(s, wards["mine_cluster"]["id"], ["Loa chợ"])[0]
    admin = PageUser(s, "admin", ADMIN_PASSWORD)
    first = admin.get(f"/partials/nodes/{node}/facts")
    assert first.status_code == 200 and 'data-state="never_connected"' in first.text
    etag = first.headers["ETag"]
    assert admin.get(f"/partials/nodes/{node}/facts",
                     headers={"If-None-Match": etag}).status_code == 304
    with _db(s) as db:
        db.execute(update(Node).where(Node.id == node).values(online=True, last_seen=utcnow()))
        db.commit()
    back = admin.get(f"/partials/nodes/{node}/facts", headers={"If-None-Match": etag})
    assert back.status_code == 200 and 'data-state="online"' in back.text


def test_a_viewer_sees_a_node_but_no_actions_and_cannot_send_one(app_only, wards):
    s = app_only
    viewer = _user(s, "xem-lc", "viewer", wards["mine"]["id"])
    mine = [n["id"] for n in s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"]]
    page = viewer.get(f"/nodes/{mine[0]}").text
    assert "Điều khiển từ xa" not in page and 'value="reboot"' not in page
    assert viewer.post(f"/nodes/{mine[0]}/commands", data={"action": "tone"}).status_code == 403
    with _db(s) as db:
        assert db.query(Command).filter(Command.type == "test").count() == 0
    theirs = s.ok("GET", f"/api/v1/nodes?area={wards['other']['id']}")["nodes"][0]["id"]
    assert viewer.get(f"/nodes/{theirs}").status_code == 404


def test_a_test_tone_is_queued_and_its_ack_shows_when_it_arrives(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    node = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    r = tech.post(f"/nodes/{node}/commands", data={"action": "acoustic"},
                  headers={"HX-Request": "true"})
    assert r.status_code == 200 and "đang chờ gửi" in r.text and "hx-trigger" in r.text
    assert "Kiểm tra loa bằng micro" in r.text
    cmd_id = found(r'id="command-([^"]+)"', r.text)
    with _db(s) as db:
        cmd = db.get(Command, cmd_id)
        assert (cmd.type, cmd.body, cmd.node_id) == ("test", {"kind": "acoustic"}, node)
        cmd.status, cmd.result = "finished", {"result": "fail",
                                              "detail": "3000Hz missing (-71.3dBFS)"}
        db.commit()
    done = tech.get(f"/partials/commands/{cmd_id}").text
    assert "đã xong" in done and "không đạt: 3000Hz missing (-71.3dBFS)" in done
    assert "hx-trigger" not in done  # final: the page stops asking
    other = s.ok("GET", f"/api/v1/nodes?area={wards['other']['id']}")["nodes"][0]["id"]
    assert tech.post(f"/nodes/{other}/commands", data={"action": "tone"}).status_code == 404


def test_why_a_command_failed_reads_in_the_users_language(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    node = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    said = {  # (status, reason, failed by the outbox) -> what the page says after the status
        ("rejected", "bad_signature", False): "bị từ chối (chữ ký của lệnh không hợp lệ)",
        ("failed", "amp_fault", False): "thất bại (lỗi bộ khuếch đại)",
        ("skipped", "expired", False): "bỏ qua (lệnh hết hạn trước khi thiết bị kịp phát)",
        ("rejected", "expired", False): "bị từ chối (lệnh đã hết hạn khi đến thiết bị)",
        # another maker's node may give a reason of its own: shown as it is
        ("failed", "relay_stuck", False): "thất bại (relay_stuck)",
        ("expired", "expired_unsent", True):
            "không gửi được (quá hạn trước khi máy chủ gửi được lệnh)"}
    for (status, reason, unsent), text in said.items():
        r = tech.post(f"/nodes/{node}/commands", data={"action": "amp_on"},
                      headers={"HX-Request": "true"})
        cmd_id = found(r'id="command-([^"]+)"', r.text)
        with _db(s) as db:
            cmd = db.get(Command, cmd_id)
            cmd.status, cmd.reason = status, reason
            cmd.failed_at = utcnow() if unsent else None
            db.commit()
        shown = " ".join(tech.get(f"/partials/commands/{cmd_id}").text.split())
        assert f"Bật khuếch đại</strong>: {text}" in shown, (status, reason, shown)
    english = " ".join(tech.get(f"/partials/commands/{cmd_id}?lang=en").text.split())
    assert "could not be sent (expired before the server could send the command)" in english


def test_each_action_of_the_node_page_sends_its_command_and_an_unknown_one_is_refused(
        app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    node = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    sent: dict[str, tuple[str, dict[str, object]]] = {
        "amp_on": ("amp", {"on": True}), "amp_off": ("amp", {"on": False}),
        "tone": ("test", {"kind": "tone"}), "acoustic": ("test", {"kind": "acoustic"}),
        "stop": ("stop", {"max_priority": 9}), "reboot": ("reboot", {}),
        "set_volume": ("set_volume", {"volume": 35})}
    for action, (kind, body) in sent.items():
        r = tech.post(f"/nodes/{node}/commands", data={"action": action, "volume": "35"},
                      headers={"HX-Request": "true"})
        assert r.status_code == 200, (action, r.text)
        with _db(s) as db:
            cmd = db.get(Command, found(r'id="command-([^"]+)"', r.text))
            assert cmd.type == kind and body.items() <= cmd.body.items(), (action, cmd.body)
    with _db(s) as db:
        before = db.query(Command).count()
    for action in ("explode", ""):
        r = tech.post(f"/nodes/{node}/commands", data={"action": action})
        assert r.status_code == 400 and "action" in r.text and "amp_on" in r.text, action
    with _db(s) as db:
        assert db.query(Command).count() == before


def test_a_volume_out_of_range_is_refused_with_the_apis_message(app_only, wards):
    s = app_only
    tech = PageUser(s, "kythuat-lc", PASSWORD)
    node = s.ok("GET", f"/api/v1/nodes?area={wards['mine']['id']}")["nodes"][0]["id"]
    for typed in ("150", "to"):
        r = tech.post(f"/nodes/{node}/commands", data={"action": "set_volume", "volume": typed})
        assert r.status_code == 400 and "volume" in r.text, typed
    ok = tech.post(f"/nodes/{node}/commands", data={"action": "set_volume", "volume": "35"})
    assert ok.status_code == 302 and f"/nodes/{node}?command=" in ok.headers["Location"]
    target = urlsplit(ok.headers["Location"])
    shown = tech.get(f"{target.path}?{target.query}").text
    assert 'class="fleet-command' in shown
    assert re.search(r"Đặt âm lượng</strong>:\s+đang chờ gửi", shown)


def test_a_node_page_shows_its_link_its_modem_and_the_4g_data_it_used(app_only, wards):
    s = app_only
    wifi, modem, silent = _nodes(s, wards["mine_cluster"]["id"], ["Loa Wi-Fi", "Loa 4G", "Loa im"])
    with _db(s) as db:
        db.execute(update(Node).where(Node.id == wifi).values(last_telemetry={
            "net": {"type": "wifi", "iface": "wlan0", "carrier": True, "link_mbps": 72.2,
                    "ssid": "UBND Lê Chân", "wifi_signal_dbm": -58}}))
        db.execute(update(Node).where(Node.id == modem).values(last_telemetry={
            "net": {"type": "4g", "iface": "wwan0", "modem_state": "connected",
                    "access_tech": "lte", "registration": "home", "operator": "Viettel",
                    "signal_pct": 67, "signal_dbm": -71, "rsrp_dbm": -98, "rsrq_db": -11,
                    "sinr_db": 7.5, "rx_bytes": 152_300_000, "tx_bytes": 8_400_000,
                    "bytes_since": "connected"}}))
        db.commit()
    tech = PageUser(s, "kythuat-lc", PASSWORD)

    def network(node_id: str) -> str:
        page = tech.get(f"/nodes/{node_id}").text
        return page[page.index('id="fleet-net-h"'):page.index("</section>",
                                                              page.index('id="fleet-net-h"'))]

    shown = network(wifi)
    assert "Wi-Fi" in shown and "<code>wlan0</code>" in shown and "72.2 Mbit/s" in shown
    assert "UBND Lê Chân · -58 dBm" in shown and "Modem 4G" not in shown
    shown = network(modem)
    assert "Viettel · LTE · mạng nhà · -71 dBm (67%)" in shown  # registration: home
    assert "RSRP -98 dBm · RSRQ -11 dB · SINR 7.5 dB" in shown
    assert "↓ 152.3 MB · ↑ 8.4 MB (từ lần kết nối này)" in shown
    assert "Nút chưa gửi thông tin mạng." in network(silent)
