"""The bulletin pages without a browser: the list filters by status, category and words; a
bulletin's page shows its text, the reading that is spoken, its audio and who did what when; the
approval queue is the approvers' only, and an approval of a bulletin edited since the approver
heard it is refused; a recording uploaded through the form is checked like the API's."""
from __future__ import annotations

import html
import re

from device_agent.protocol import PRIORITY_NAMES
from server.cli import main as cli
from tests.server.helpers import wav
from tests.web_helpers import PageUser, found

PASSWORD = "mat-khau-123"


def _user(s, name: str, role: str, area_id: int) -> PageUser:
    assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                PASSWORD, "--area-id", str(area_id)]) == 0
    return PageUser(s, name, PASSWORD)


def _bulletin(s, title: str, text: str, area_id: int, category: str = "other",
              submit: bool = True, token: str = "default") -> dict:
    b = s.ok("POST", "/api/v1/bulletins", token=token, json={
        "title": title, "text": text, "category": category, "area_id": area_id})
    if submit:
        b = s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit", token=token)
    return b


def _titles(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'href="/bulletins/\d+">([^<]+)</a>', page)]


def test_the_list_filters_by_status_category_and_words(app_only, wards):
    s = app_only
    ward = wards["mine"]["id"]
    flood = _bulletin(s, "Cảnh báo ngập đường Trần Nguyên Hãn", "Nước lên cao.", ward, "flooding")
    _bulletin(s, "Tiêm chủng mở rộng", "Mời các cháu đi tiêm.", ward, "health")
    s.ok("POST", f"/api/v1/bulletins/{flood['id']}/approve")
    staff = _user(s, "bientap-lc", "staff", ward)
    assert set(_titles(staff.get("/bulletins").text)) == {
        "Cảnh báo ngập đường Trần Nguyên Hãn", "Tiêm chủng mở rộng"}
    assert _titles(staff.get("/bulletins?status=approved").text) == [
        "Cảnh báo ngập đường Trần Nguyên Hãn"]
    assert _titles(staff.get("/bulletins?category=health").text) == ["Tiêm chủng mở rộng"]
    # words of the title or of the text, every one of them
    assert _titles(staff.get("/bulletins", params={"q": "các cháu"}).text) == [
        "Tiêm chủng mở rộng"]
    assert _titles(staff.get("/bulletins", params={"q": "ngập cháu"}).text) == []
    none = staff.get("/bulletins", params={"q": "100%_"}).text
    assert _titles(none) == [] and "Không có bản tin nào khớp." in none
    # the filter form keeps what was chosen
    page = staff.get("/bulletins?status=pending&category=health").text
    assert '<option value="pending" selected>' in page and '<option value="health" selected>' \
        in page


def test_a_bulletins_page_shows_its_text_reading_audio_and_who_did_what(app_only, wards):
    s = app_only
    ward = wards["mine"]["id"]
    staff = _user(s, "bientap-lc", "staff", ward)
    token = s.login("bientap-lc", PASSWORD)
    b = _bulletin(s, "Họp tổ dân phố", "UBND phường họp lúc 7h30.", ward, token=token)
    approver = PageUser(s, "canbo-lc", PASSWORD)
    page = approver.get(f"/bulletins/{b['id']}").text
    sha = found(r'name="sha256" value="([0-9a-f]{64})"', page)
    r = approver.post(f"/bulletins/{b['id']}/review", data={
        "action": "reject", "comment": "Ghi rõ địa điểm họp", "sha256": sha,
        "next": f"/bulletins/{b['id']}"})
    assert r.status_code == 302 and r.headers["Location"] == f"/bulletins/{b['id']}"

    page = staff.get(f"/bulletins/{b['id']}").text
    assert "UBND phường họp lúc 7h30." in page            # the text as written
    assert "ủy ban nhân dân phường họp lúc bảy giờ ba mươi" in page  # what is spoken
    assert re.search(r'<audio controls[^>]* src="/media/[0-9a-f]{64}\.mp3"', page)
    history = page[page.index("bul-history"):]
    steps = re.findall(r'<tr class="bul-step-(\w+)">.*?<td data-label="Người thực hiện">(\S+)'
                       r'.*?class="bul-comment">([^<]*)</td>', history, re.S)
    assert steps == [("created", "bientap-lc", ""), ("submit", "bientap-lc", ""),
                     ("reject", "canbo-lc", "Ghi rõ địa điểm họp")]
    assert "Bị từ chối" in page and 'class="review"' not in page  # nothing left to review
    staff.get("/lang/en")
    page = staff.get(f"/bulletins/{b['id']}").text
    assert "History" in page and "Sent for approval" in page and "Rejected" in page
    # another ward's bulletin is not shown at all
    other = _bulletin(s, "Tin phường khác", "Nội dung.", wards["other"]["id"])
    assert staff.get(f"/bulletins/{other['id']}").status_code == 404


def test_the_approval_queue_is_the_approvers_and_lists_what_waits_with_its_reading(
        app_only, wards):
    s = app_only
    ward = wards["mine"]["id"]
    waiting = _bulletin(s, "Lịch cắt điện", "Cắt điện từ 7h đến 9h.", ward)
    done = _bulletin(s, "Đã duyệt rồi", "Nội dung.", ward)
    s.ok("POST", f"/api/v1/bulletins/{done['id']}/approve")
    staff = _user(s, "bientap-lc", "staff", ward)
    assert 'href="/bulletins/queue"' not in staff.get("/").text
    assert staff.get("/bulletins/queue").status_code == 403
    approver = PageUser(s, "canbo-lc", PASSWORD)
    assert 'href="/bulletins/queue"' in approver.get("/").text
    queue = approver.get("/bulletins/queue").text
    assert _titles(queue) == [f"#{waiting['id']} Lịch cắt điện"]
    assert "Cắt điện từ bảy giờ đến chín giờ" in queue  # the reading, not "7h"
    assert queue.count("<audio controls") == 1 and queue.count('class="review"') == 1

    r = approver.post(f"/bulletins/{waiting['id']}/review", data={
        "action": "approve", "sha256": waiting["sha256"], "next": "/bulletins/queue"})
    assert r.status_code == 302 and r.headers["Location"] == "/bulletins/queue"
    queue = approver.get("/bulletins/queue").text
    assert "Đã duyệt bản tin." in queue and "Không có bản tin nào chờ duyệt." in queue
    approver.get("/lang/en")
    assert "No bulletin is waiting for approval." in approver.get("/bulletins/queue").text
    assert s.ok("GET", f"/api/v1/bulletins/{waiting['id']}")["status"] == "approved"


def test_approving_is_refused_when_the_text_changed_since_the_approver_heard_it(
        app_only, wards):
    s = app_only
    ward = wards["mine"]["id"]
    b = _bulletin(s, "Thu gom rác", "Thu gom rác lúc 17h.", ward)
    approver = PageUser(s, "canbo-lc", PASSWORD)
    heard = found(r'name="sha256" value="([0-9a-f]{64})"', approver.get("/bulletins/queue").text)
    s.ok("PATCH", f"/api/v1/bulletins/{b['id']}", json={"text": "Thu gom rác lúc 18h."})
    r = approver.post(f"/bulletins/{b['id']}/review", data={
        "action": "approve", "sha256": heard, "next": "/bulletins/queue"})
    assert r.status_code == 302
    queue = approver.get("/bulletins/queue").text
    assert "Đã duyệt bản tin." not in queue
    assert f"Bản tin {b['id']} đã được sửa sau khi bạn mở nó" in queue
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"
    # the page now carries the new audio; a reject of it without a comment is refused too
    now = found(r'name="sha256" value="([0-9a-f]{64})"', approver.get("/bulletins/queue").text)
    assert now != heard
    approver.post(f"/bulletins/{b['id']}/review", data={"action": "reject", "sha256": now})
    assert "Thiếu trường bắt buộc: comment." in approver.get("/bulletins").text
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"


def test_a_recording_uploaded_through_the_form_waits_for_approval_and_a_bad_one_is_refused(
        app_only, wards, tmp_path):
    s = app_only
    ward = wards["mine"]["id"]
    staff = _user(s, "bientap-lc", "staff", ward)
    form = {"source": "upload", "title": "Bản ghi của phường", "category": "other",
            "area_id": str(ward), "action": "submit"}
    bad = staff.post("/bulletins/new", data=form,
                     files={"file": ("ghi-chu.mp3", "Không phải âm thanh".encode(), "audio/mpeg")})
    assert bad.status_code == 400 and 'role="alert"' in bad.text
    assert s.ok("GET", "/api/v1/bulletins")["bulletins"] == []
    r = staff.post("/bulletins/new", data=form,
                   files={"file": ("ghi-am.wav", wav(tmp_path, -30), "audio/wav")})
    assert r.status_code == 302
    [b] = s.ok("GET", "/api/v1/bulletins")["bulletins"]
    assert b["source"] == "upload" and b["status"] == "pending" and b["sha256"]
    page = staff.get(f"/bulletins/{b['id']}").text
    assert "Bản ghi âm tải lên" in page and b["audio_url"] in page


def test_an_editor_broadcasts_an_approved_bulletin_now_from_its_page(app_only, wards):
    s = app_only
    mine, other = wards["mine"]["id"], wards["other"]["id"]
    approved = _bulletin(s, "Lịch thu gom rác", "Xe rác đến lúc sáu giờ.", mine)
    s.ok("POST", f"/api/v1/bulletins/{approved['id']}/approve")
    pending = _bulletin(s, "Họp tổ dân phố", "Họp lúc bảy giờ tối.", mine)
    staff = _user(s, "bientap-lc", "staff", mine)
    viewer = _user(s, "xem-lc", "viewer", mine)

    page = staff.get(f"/bulletins/{approved['id']}").text
    assert "Phát ngay tới địa bàn này" in page
    # only the editor's own ward and below: the other ward is not offered
    assert f'<option value="{mine}">' in page and f'<option value="{other}">' not in page
    assert "Phát ngay tới địa bàn này" not in staff.get(f"/bulletins/{pending['id']}").text
    assert "Phát ngay tới địa bàn này" not in viewer.get(f"/bulletins/{approved['id']}").text

    def broadcasts() -> list[dict]:
        return s.ok("GET", "/api/v1/broadcasts")["broadcasts"]
    refused = [
        (viewer.post(f"/bulletins/{approved['id']}/broadcast", data={"area_id": mine}), 403),
        (staff.post(f"/bulletins/{approved['id']}/broadcast", data={"area_id": other}), 403),
        (staff.post(f"/bulletins/{approved['id']}/broadcast", data={"area_id": ""}), 400),
        (staff.post(f"/bulletins/{pending['id']}/broadcast", data={"area_id": mine}), 409),
        (staff.post(f"/bulletins/{approved['id']}/broadcast", with_token=False,
                    data={"area_id": mine}), 400)]
    assert [r.status_code for r, _ in refused] == [status for _, status in refused]
    assert "Bạn không có quyền" in refused[1][0].text
    assert "Chưa chọn địa bàn hoặc thiết bị nhận." in refused[2][0].text
    assert broadcasts() == []

    r = staff.post(f"/bulletins/{approved['id']}/broadcast", data={"area_id": mine})
    assert r.status_code == 302
    [bc] = broadcasts()
    assert r.headers["Location"].endswith(f"/broadcasts/{bc['id']}")
    assert bc["bulletin_id"] == approved["id"] and bc["targets"]["areas"] == [mine]
    assert bc["priority"] == PRIORITY_NAMES["normal"] and bc["start_at"] is None
    assert "Đã gửi bản tin đi phát." in staff.get(r.headers["Location"]).text


def test_broadcasting_a_new_bulletin_now_without_an_area_is_refused_and_nothing_is_kept(
        app_only, wards):
    s = app_only
    approver = PageUser(s, "canbo-lc", PASSWORD)
    form = {"source": "text", "title": "Cắt điện", "category": "other", "area_id": "",
            "text": "Chiều nay cắt điện từ hai giờ.", "action": "broadcast_now"}
    r = approver.post("/bulletins/new", data=form)
    assert r.status_code == 400 and "Chưa chọn địa bàn hoặc thiết bị nhận." in r.text
    assert s.ok("GET", "/api/v1/bulletins")["bulletins"] == []
    assert s.ok("GET", "/api/v1/broadcasts")["broadcasts"] == []
    r = approver.post("/bulletins/new", data={**form, "area_id": str(wards["mine"]["id"])})
    assert r.status_code == 302 and "/broadcasts/" in r.headers["Location"]
