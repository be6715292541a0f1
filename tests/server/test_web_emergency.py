"""The emergency panel without a browser: an approver picks an approved bulletin and areas from
their own tree, reviews what would air where (nothing is created by the review), and sends it;
in a ward that asks for a second person it waits, the creator cannot confirm it, another
approver sees it waiting on their dashboard and confirms it; anywhere else it is scheduled at
once and can be cancelled everywhere; staff may not use the panel."""
from __future__ import annotations

from server.cli import main as cli
from tests.web_helpers import PageUser, found

PASSWORD = "mat-khau-123"


def _approver(s, name: str, area_id: int) -> PageUser:
    assert cli(["--instance", str(s.instance), "user", name, "--role", "approver",
                "--password", PASSWORD, "--area-id", str(area_id)]) == 0
    return PageUser(s, name, PASSWORD)


def _broadcasts(s) -> list[dict]:
    return s.ok("GET", "/api/v1/broadcasts")["broadcasts"]


def _send(user: PageUser, bulletin_id: int, *areas: int, action: str = "send"):
    return user.post("/emergency", data={"action": action, "bulletin_id": str(bulletin_id),
                                         "areas": [str(a) for a in areas]})


def test_the_panel_offers_approved_bulletins_and_only_the_users_area_tree(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Cảnh báo bão số 3")
    page = PageUser(s, "canbo-lc", PASSWORD).get("/emergency").text
    assert "<h1>" in page and "Cảnh báo bão số 3" in page and f'value="{b["id"]}"' in page
    assert f'id="e-area-{wards["mine"]["id"]}"' in page
    assert f'id="e-area-{wards["mine_cluster"]["id"]}"' in page
    assert f'id="e-area-{wards["other"]["id"]}"' not in page
    assert '<label class="inline-choice" for="e-area-' in page


def test_in_a_ward_asking_for_a_second_person_it_waits_until_another_approver_confirms(
        app_only, wards):
    s = app_only
    s.ok("PATCH", f"/api/v1/areas/{wards['mine']['id']}", json={"emergency_confirm": True})
    b = s.approved_bulletin("Sơ tán khẩn cấp")
    first = PageUser(s, "canbo-lc", PASSWORD)
    second = _approver(s, "phochutich-lc", wards["mine"]["id"])

    review = _send(first, b["id"], wards["mine"]["id"], action="review")
    assert review.status_code == 200
    assert "người thứ hai xác nhận" in review.text and "trên 1 thiết bị" in review.text
    assert _broadcasts(s) == []  # the review creates nothing

    sent = _send(first, b["id"], wards["mine"]["id"])
    assert sent.status_code == 302
    bc_id = int(found(r"/emergency/(\d+)", sent.headers["Location"]))
    bc = s.ok("GET", f"/api/v1/broadcasts/{bc_id}")
    assert bc["status"] == "awaiting_confirmation" and bc["priority"] == 9
    panel = first.get(f"/emergency/{bc_id}").text
    assert "Chưa có loa nào nhận lệnh phát." in panel
    assert f"/emergency/{bc_id}/confirm" not in panel  # not for the one who sent it
    first.post(f"/emergency/{bc_id}/confirm")
    assert "phải là người khác" in first.get(f"/emergency/{bc_id}").text
    assert s.ok("GET", f"/api/v1/broadcasts/{bc_id}")["status"] == "awaiting_confirmation"

    home = second.get("/").text
    assert f'href="/emergency/{bc_id}"' in home and "Sơ tán khẩn cấp" in home
    assert f"/emergency/{bc_id}/confirm" in second.get(f"/emergency/{bc_id}").text
    assert second.post(f"/emergency/{bc_id}/confirm").status_code == 302
    confirmed = s.ok("GET", f"/api/v1/broadcasts/{bc_id}")
    assert confirmed["status"] == "scheduled"
    assert f'href="/emergency/{bc_id}"' not in second.get("/partials/dashboard").text


def test_without_the_ward_setting_it_is_sent_at_once_and_cancelled_everywhere(app_only, wards):
    s = app_only
    b = s.approved_bulletin("Mất điện diện rộng")
    approver = PageUser(s, "canbo-lc", PASSWORD)
    sent = _send(approver, b["id"], wards["mine"]["id"])
    bc_id = int(found(r"/emergency/(\d+)", sent.headers["Location"]))
    assert s.ok("GET", f"/api/v1/broadcasts/{bc_id}")["status"] == "scheduled"
    panel = approver.get(f"/emergency/{bc_id}").text
    assert "Đã phát lượt khẩn cấp" in panel and 'hx-get="/partials/broadcasts/' in panel
    approver.post(f"/emergency/{bc_id}/cancel")
    assert s.ok("GET", f"/api/v1/broadcasts/{bc_id}")["status"] == "cancelled"
    assert "Đã huỷ lượt khẩn cấp" in approver.get(f"/emergency/{bc_id}").text


def test_an_area_outside_the_users_scope_or_none_at_all_is_refused_and_nothing_sent(
        app_only, wards):
    s = app_only
    b = s.approved_bulletin()
    approver = PageUser(s, "canbo-lc", PASSWORD)
    r = _send(approver, b["id"], wards["other"]["id"])
    assert r.status_code == 403 and 'class="error"' in r.text
    r = approver.post("/emergency", data={"action": "send", "bulletin_id": str(b["id"])})
    assert r.status_code == 400 and "Chưa chọn địa bàn" in r.text
    assert _broadcasts(s) == []


def test_staff_see_no_emergency_panel_and_the_server_refuses_it(app_only, wards):
    s = app_only
    assert cli(["--instance", str(s.instance), "user", "bientap-lc", "--role", "staff",
                "--password", PASSWORD, "--area-id", str(wards["mine"]["id"])]) == 0
    staff = PageUser(s, "bientap-lc", PASSWORD)
    assert 'href="/emergency"' not in staff.get("/").text
    assert staff.get("/emergency").status_code == 403
    b = s.approved_bulletin()
    assert _send(staff, b["id"], wards["mine"]["id"]).status_code == 403
    assert _broadcasts(s) == []


def test_a_typed_text_is_read_approved_and_broadcast_in_one_step_and_the_review_keeps_none(
        app_only, wards):
    s = app_only
    approver = PageUser(s, "canbo-lc", PASSWORD)
    form = {"source": "text", "title": "Cháy chợ Cột Đèn",
            "text": "Đề nghị bà con tránh xa khu vực chợ.", "areas": [str(wards["mine"]["id"])]}
    review = approver.post("/emergency", data={**form, "action": "review"})
    assert review.status_code == 200
    assert "Cháy chợ Cột Đèn" in review.text and "tránh xa khu vực chợ" in review.text
    assert s.ok("GET", "/api/v1/bulletins")["bulletins"] == [] and _broadcasts(s) == []

    sent = approver.post("/emergency", data={**form, "action": "send"})
    assert sent.status_code == 302
    [bc] = _broadcasts(s)
    assert bc["priority"] == 9 and bc["status"] == "scheduled"
    bulletin = s.ok("GET", f"/api/v1/bulletins/{bc['bulletin_id']}")
    assert bulletin["status"] == "approved" and bulletin["category"] == "emergency"
    assert bulletin["title"] == "Cháy chợ Cột Đèn"
