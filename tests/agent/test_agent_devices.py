"""The agent's device interfaces on their own: players (the file sink and a real ffplay
subprocess, both stoppable), the amplifier's recording double (the libgpiod relay has its own
file, test_agent_amp.py), the generated test tone, and the media cache."""
import hashlib
import json
import shutil
import threading
import time
import wave

import pytest

from device_agent.amp import AmpError, RecordingAmplifier
from device_agent.media import MediaCache, MediaError
from device_agent.player import (AplayPlayer, Cancel, FfplayPlayer, FileSinkPlayer, Interruption,
                                 MpvPlayer, PlayOutcome, PlayRequest, make_player, make_tone)


def request(path, item_id="item-1", volume=70, duration_ms=None):
    return PlayRequest(path, item_id, hashlib.sha256(path.read_bytes()).hexdigest(), volume,
                       duration_ms)


def play_in_thread(player, req, cancel):
    result: dict[str, PlayOutcome] = {}
    t = threading.Thread(target=lambda: result.setdefault("outcome", player.play(req, cancel)))
    t.start()
    return t, result


# --- players -------------------------------------------------------------------------------------

def test_file_sink_copies_media_and_appends_a_json_line(tmp_path, media_dir):
    sink = FileSinkPlayer(tmp_path / "sink", realtime=False)
    req = request(media_dir / "short.mp3", item_id="bản tin/1")
    assert sink.play(req, Cancel()).result == "completed"
    [copy] = list((tmp_path / "sink").glob("*.mp3"))
    assert copy.read_bytes() == (media_dir / "short.mp3").read_bytes()
    assert copy.name.endswith(f"-b_n_tin_1-{req.sha256}.mp3")
    [line] = [json.loads(raw) for raw in sink.log_path.read_text().splitlines()]
    assert line["item_id"] == "bản tin/1" and line["volume"] == 70
    assert line["result"] == "completed" and line["started_at"] <= line["ended_at"]


def test_realtime_file_sink_takes_the_duration_and_stops_when_cancelled(tmp_path, media_dir):
    sink = FileSinkPlayer(tmp_path / "sink", realtime=True)
    t0 = time.monotonic()
    assert sink.play(request(media_dir / "short.mp3", duration_ms=600), Cancel()).result \
        == "completed"
    assert time.monotonic() - t0 >= 0.6
    cancel = Cancel()
    t, result = play_in_thread(sink, request(media_dir / "long.mp3", duration_ms=30_000), cancel)
    cancel.set(Interruption.PREEMPTED)
    t.join(2)
    assert not t.is_alive() and result["outcome"].result == "stopped"
    assert json.loads(sink.log_path.read_text().splitlines()[-1])["result"] == "preempted"


@pytest.mark.skipif(not shutil.which("ffplay"), reason="ffplay not installed")
def test_ffplay_player_plays_in_real_time_and_stops_when_cancelled(monkeypatch, media_dir):
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")   # no sound card in CI
    player = FfplayPlayer()
    t0 = time.monotonic()
    assert player.play(request(media_dir / "short.mp3"), Cancel()).result == "completed"
    assert time.monotonic() - t0 >= 0.9
    cancel = Cancel()
    t, result = play_in_thread(player, request(media_dir / "long.mp3"), cancel)
    cancel.set(Interruption.STOPPED)
    t.join(3)
    assert not t.is_alive() and result["outcome"].result == "stopped"


def test_ffplay_player_reports_a_bad_file_as_failed(monkeypatch, tmp_path):
    if not shutil.which("ffplay"):
        pytest.skip("ffplay not installed")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all")
    assert FfplayPlayer().play(request(bad), Cancel()).result == "failed"


def test_real_players_build_the_documented_command_lines(tmp_path):
    req = PlayRequest(tmp_path / "a.mp3", "i", None, 40)
    assert "--volume=40" in MpvPlayer().pipeline(req)[0]
    assert FfplayPlayer().pipeline(req)[0][-3:] == ["-volume", "40", str(tmp_path / "a.mp3")]
    decode, play = AplayPlayer().pipeline(req)
    assert decode[0] == "ffmpeg" and "volume=0.40" in decode and decode[-3:] == ["-f", "wav", "-"]
    assert play[0] == "aplay"


def test_auto_player_picks_the_first_installed(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda cmd: None if cmd == "mpv" else f"/usr/bin/{cmd}")
    assert isinstance(make_player("auto"), FfplayPlayer)


def test_test_tone_is_a_real_wav(tmp_path):
    path = make_tone(tmp_path / "tone.wav", freq_hz=1000, seconds=0.5)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert w.getnframes() == int(w.getframerate() * 0.5)
        assert max(w.readframes(w.getnframes())) > 0


# --- amplifier -----------------------------------------------------------------------------------

def test_recording_amplifier_records_and_can_fail():
    amp = RecordingAmplifier()
    assert amp.state() is None
    amp.switch(True)
    assert amp.state() is True and amp.history == [True]
    with pytest.raises(AmpError):
        RecordingAmplifier(fail_with="stuck").switch(True)


# --- media cache ---------------------------------------------------------------------------------

def test_media_cache_keeps_only_verified_files(tmp_path, media_server):
    cache = MediaCache(tmp_path / "media", timeout_s=5)
    good = media_server.media("short")
    path = cache.fetch(good)
    assert path.name == f"{good['sha256']}.mp3" and cache.has(good["sha256"])
    wrong = dict(media_server.media("other"), sha256="a" * 64)
    with pytest.raises(MediaError) as err:
        cache.fetch(wrong)
    assert err.value.reason == "media_mismatch"
    too_big = dict(media_server.media("long"), bytes=100)
    with pytest.raises(MediaError) as err:
        cache.fetch(too_big)
    assert err.value.reason == "media_mismatch"
    assert [p.name for p in (tmp_path / "media").iterdir()] == [path.name]


def test_media_cache_drops_a_file_that_rotted(tmp_path, media_server):
    cache = MediaCache(tmp_path / "media", timeout_s=5)
    good = media_server.media("short")
    path = cache.fetch(good)
    path.write_bytes(b"corrupted")
    assert not MediaCache(tmp_path / "media").has(good["sha256"]) and not path.exists()


def test_media_cache_prunes_least_recently_used_but_keeps_what_is_needed(tmp_path, media_server):
    cache = MediaCache(tmp_path / "media", timeout_s=5)
    shas = [cache.fetch(media_server.media(n)).name.split(".")[0]
            for n in ("short", "other", "long")]
    removed = cache.prune(keep={shas[0]}, max_bytes=1)
    assert set(removed) == {shas[1], shas[2]} and cache.has(shas[0])
