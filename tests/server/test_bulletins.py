"""Bulletins that sound right: the approval lifecycle with who and when, speech through the
ward's settings and lexicon with a recorded fallback, previews, and checked uploads."""
import json
import subprocess

import pytest
from sqlalchemy import func, select

from audio.gtts_standin import StandIn
from audio.loudness import measure_loudness
from server.models import Base
from tests.server.helpers import wav


@pytest.fixture
def ward(app_only):
    s = app_only
    province = s.area("Thành phố Hồ Chí Minh", "HCM", "province")
    ward = s.area("Phường Tân Sơn Nhì", "HCM-TSN", "ward", province["id"])
    s.area("Cụm loa 1", "HCM-TSN-1", "cluster", ward["id"])
    other = s.area("Phường Tân Phú", "HCM-TP", "ward", province["id"])
    return {"ward": ward, "other": other, "province": province}


def _new(s, **extra):
    payload = {"title": "Thông báo", "text": "Ủy ban nhân dân phường thông báo.",
               "category": "health", **extra}
    return s.ok("POST", "/api/v1/bulletins", json=payload)


def _rows(s):
    with s.app.extensions["db_sessions"]() as db:
        return {t.name: db.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables if t.name != "api_tokens"}


def _media_files(s):
    return sorted(p.name for p in (s.instance / "media").rglob("*") if p.is_file())


def test_lifecycle_records_who_and_when_and_only_approved_is_broadcast(app_only, ward):
    s = app_only
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": ward["ward"]["id"] + 1, "name": "Loa"})
    b = _new(s)
    assert b["status"] == "draft"
    target = {"targets": {"areas": [ward["ward"]["id"]]}}
    assert s.call("POST", "/api/v1/broadcasts",
                  json={"bulletin_id": b["id"], **target}).status_code == 409
    assert s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")["status"] == "pending"
    r = s.call("POST", f"/api/v1/bulletins/{b['id']}/reject", json={})
    assert r.status_code == 400 and "comment" in r.json()["error"]["message"]
    rejected = s.ok("POST", f"/api/v1/bulletins/{b['id']}/reject",
                    json={"comment": "Sai giờ cắt điện"})
    assert rejected["status"] == "rejected" and rejected["review_comment"] == "Sai giờ cắt điện"
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")
    approved = s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve")
    assert approved["status"] == "approved" and approved["reviewed_at"]
    assert [(h["action"], h["status"], h["by"]) for h in approved["history"]] == [
        ("created", "draft", "admin"), ("submit", "pending", "admin"),
        ("reject", "rejected", "admin"), ("submit", "pending", "admin"),
        ("approve", "approved", "admin")]
    assert all(h["at"] for h in approved["history"])
    assert approved["history"][2]["comment"] == "Sai giờ cắt điện"
    assert s.call("POST", "/api/v1/broadcasts",
                  json={"bulletin_id": b["id"], **target}).status_code == 201

    # editing an approved bulletin sends it back to pending, with new speech
    edited = s.ok("PATCH", f"/api/v1/bulletins/{b['id']}",
                  json={"text": "Ủy ban nhân dân phường thông báo lịch tiêm chủng."})
    assert edited["status"] == "pending" and edited["sha256"] != approved["sha256"]
    assert s.call("POST", "/api/v1/broadcasts",
                  json={"bulletin_id": b["id"], **target}).status_code == 409
    archived = s.ok("POST", f"/api/v1/bulletins/{b['id']}/archive")
    assert archived["status"] == "archived"
    assert s.call("PATCH", f"/api/v1/bulletins/{b['id']}", json={"title": "x"}).status_code == 409
    assert s.call("POST", f"/api/v1/bulletins/{b['id']}/submit").status_code == 409


def test_a_step_the_status_does_not_allow_is_refused_in_the_readers_words(app_only, ward):
    s = app_only
    b = _new(s)
    r = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve")
    assert r.status_code == 409 and r.json()["error"]["code"] == "bad_transition"
    assert r.json()["error"]["message"] == 'Không thể duyệt bản tin đang ở trạng thái "Nháp".'
    en = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve?lang=en").json()["error"]
    assert en["message"] == 'Cannot approve a bulletin whose status is "Draft".'
    target = {"targets": {"areas": [ward["ward"]["id"]]}}
    r = s.call("POST", "/api/v1/broadcasts", json={"bulletin_id": b["id"], **target})
    assert r.status_code == 409 and '(trạng thái: "Nháp")' in r.json()["error"]["message"]


def test_approval_needs_an_approver_role(app_only, ward):
    s = app_only
    from server.cli import main as cli
    assert cli(["--instance", str(s.instance), "user", "canbo", "--role", "staff",
                "--password", "matkhau-canbo"]) == 0
    staff = s.login("canbo", "matkhau-canbo")
    b = s.ok("POST", "/api/v1/bulletins", token=staff,
             json={"title": "T", "text": "Thông báo.", "category": "other"})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit", token=staff)
    r = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve", token=staff)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"


def test_ward_lexicon_applies_to_that_wards_bulletins_only(app_only, ward):
    s = app_only
    s.ok("POST", f"/api/v1/areas/{ward['ward']['id']}/lexicon",
         json={"term": "TSN", "spoken": "Tân Sơn Nhì"})
    text = "Loa phường TSN thông báo."
    mine = _new(s, text=text, area_id=ward["ward"]["id"])
    theirs = _new(s, text=text, area_id=ward["other"]["id"])
    assert "tân sơn nhì" in mine["spoken_text"].lower()
    assert "tân sơn nhì" not in theirs["spoken_text"].lower()
    assert mine["sha256"] != theirs["sha256"]
    listed = s.ok("GET", f"/api/v1/areas/{ward['ward']['id']}/lexicon")
    assert listed["effective"] == {"TSN": "Tân Sơn Nhì"}
    norm = s.ok("POST", "/api/v1/normalize", json={"text": text, "area_id": ward["ward"]["id"]})
    assert norm["normalized"] == mine["spoken_text"]


def test_author_sees_normalised_text_and_can_correct_it_before_speech(app_only, ward):
    s = app_only
    norm = s.ok("POST", "/api/v1/normalize", json={"text": "UBND phường họp lúc 7h30."})
    assert "ủy ban nhân dân" in norm["normalized"] and "bảy giờ ba mươi" in norm["normalized"]
    pv = s.ok("POST", "/api/v1/previews", json={"text": "UBND phường họp lúc 7h30."})
    assert pv["normalized"] == norm["normalized"] and pv["duration_ms"] > 500
    audio = s.call("GET", pv["audio_url"], token=None)
    assert audio.status_code == 200 and audio.headers["Content-Type"] == "audio/mpeg"
    fixed = "ủy ban nhân dân phường họp lúc bảy rưỡi sáng."
    b = _new(s, text="UBND phường họp lúc 7h30.", spoken_text=fixed)
    assert b["spoken_text"] == fixed and b["spoken_text_edited"] is True
    assert b["sha256"] != pv["sha256"]


def test_same_text_is_stored_once_and_spoken_once(app_only, ward):
    first = _new(app_only)
    second = _new(app_only)
    assert first["sha256"] == second["sha256"]
    assert len(_media_files(app_only)) == 1


def test_bulletin_audio_is_broadcast_ready(app_only, ward, tmp_path):
    b = _new(app_only, text="Ủy ban nhân dân phường Tân Sơn Nhì thông báo lịch cắt điện.")
    path = tmp_path / "b.mp3"
    path.write_bytes(app_only.call("GET", b["audio_url"], token=None).content)
    lufs, peak = measure_loudness(path)
    assert abs(lufs - (-16)) <= 1 and peak <= -1
    assert abs(b["lufs"] - lufs) < 0.2
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json",
                                       str(path)], capture_output=True, check=True).stdout)
    stream = probe["streams"][0]
    assert stream["channels"] == 1 and int(stream["bit_rate"]) <= 64000


@pytest.mark.parametrize("mode,engine,note", [
    ("error", "espeak", "gtts"),   # the online engine fails: espeak speaks and we say why
    ("ok", "gtts", None),          # the online engine answers: it speaks
])
def test_online_engine_speaks_when_it_answers_and_falls_back_with_a_reason(
        tmp_path, mode, engine, note):
    from tests.system import System
    with StandIn(mode) as google:
        s = System(tmp_path, None, start_dispatcher=False, tts_engines=["gtts", "espeak"],
                   gtts_endpoint=google.url)
        try:
            b = _new(s)
        finally:
            s.stop()
    assert b["engine"] == engine
    assert (note in b["engine_note"]) if note else b["engine_note"] is None


def test_ward_speech_defaults_choose_the_voice(app_only, ward):
    s = app_only
    area = s.ok("PATCH", f"/api/v1/areas/{ward['ward']['id']}",
                json={"tts_voice": "vi-south", "chime": "intro"})
    assert area["tts_voice"] == "vi-south" and area["chime"] == "intro"
    south = _new(s, area_id=ward["ward"]["id"])
    north = _new(s, area_id=ward["other"]["id"])
    assert south["sha256"] != north["sha256"]
    assert south["duration_ms"] > north["duration_ms"]  # the chime comes first
    bad = s.call("PATCH", f"/api/v1/areas/{ward['ward']['id']}", json={"tts_voice": "vi-hue"})
    assert bad.status_code == 400 and "tts_voice" in bad.json()["error"]["message"]


def test_uploaded_recording_becomes_a_broadcast_ready_bulletin(app_only, ward, tmp_path):
    s = app_only
    r = s.call("POST", "/api/v1/bulletins", data={"title": "Bản ghi", "category": "other"},
               files={"file": ("ghi-am.wav", wav(tmp_path, -35), "audio/wav")})
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["source"] == "upload" and b["status"] == "draft"
    assert abs(b["lufs"] + 16) <= 1 and b["true_peak"] <= -1
    assert 2500 <= b["duration_ms"] <= 3600


@pytest.mark.parametrize("name,content,code,status", [
    ("notes.mp3", "Đây không phải âm thanh".encode(), "not_audio", 415),
    ("empty.wav", b"", "empty", 400),
])
def test_bad_upload_is_refused_and_nothing_is_stored(app_only, ward, name, content, code, status):
    s = app_only
    before, files = _rows(s), _media_files(s)
    r = s.call("POST", "/api/v1/bulletins", data={"title": "Bản ghi", "category": "other"},
               files={"file": (name, content, "audio/mpeg")})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert _rows(s) == before and _media_files(s) == files


def test_upload_over_the_size_limit_is_refused(tmp_path):
    from tests.system import System
    s = System(tmp_path, None, start_dispatcher=False, max_upload_mb=0.01)
    try:
        r = s.call("POST", "/api/v1/bulletins", data={"title": "Dài", "category": "other"},
                   files={"file": ("dai.wav", wav(tmp_path, -20), "audio/wav")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        assert _media_files(s) == []
    finally:
        s.stop()


@pytest.mark.parametrize("argv,engine", [
    (["espeak-ng", "-v", "vi-vn-x-south", "--stdout"], "local"),  # the installed program speaks
    (["false"], "espeak"),                                         # it fails: the next speaks
])
def test_a_local_speech_program_can_be_configured_as_an_engine(tmp_path, argv, engine):
    from tests.system import System
    s = System(tmp_path, None, start_dispatcher=False, tts_engines=["local", "espeak"],
               tts_commands={"local": {"argv": argv, "voices": {"vi-north": "vi-north"}}})
    try:
        b = _new(s)
        assert b["engine"] == engine
        if engine == "espeak":
            assert "local" in b["engine_note"]
        r = s.call("POST", "/api/v1/bulletins", json={"title": "T", "text": "x",
                                                      "category": "other", "engine": "gtts"})
        assert r.status_code == 400 and "local" in r.json()["error"]["message"]
    finally:
        s.stop()
