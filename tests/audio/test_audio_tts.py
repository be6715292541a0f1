"""Speech engines and the chain: gTTS against a local stand-in for Google's endpoint (no test
reaches the internet), espeak-ng's three Vietnamese voices, fallback with reasons, the speech
cache, and the registry that lets a user add an engine by name."""
from __future__ import annotations

import io
import socket
import subprocess
import wave

import pytest

from audio.cache import SpeechCache
from audio.gtts_standin import StandIn
from audio.pipeline import Pipeline
from audio.store import MediaStore
from audio.tts import (CommandEngine, EngineChain, EspeakEngine, GTTSEngine, TTSEngine, TTSError,
                       build_chain, create_engine, register_engine, split_sentences)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """No test here may reach the internet: connections off loopback fail loudly."""
    # gTTS hands requests the environment's proxies; the stand-in is on loopback
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and \
                address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(sock, address)
    monkeypatch.setattr(socket.socket, "connect", connect)
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, f"tests do not look up {host}")
        return real_getaddrinfo(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def standin():
    with StandIn() as server:
        yield server


class CountingEngine(TTSEngine):
    """A real engine behind the same interface, counting how often it is asked to speak."""

    def __init__(self, inner: TTSEngine):
        self.inner = inner
        self.name = inner.name
        self.voices = inner.voices
        self.calls = 0

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def synthesize(self, text, voice=None):
        self.calls += 1
        return self.inner.synthesize(text, voice)


def duration_s(audio: bytes, fmt: str) -> float:
    """Seconds of sound, by decoding it all (a pipe has no duration to probe)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-f", fmt, "-i", "pipe:0", "-ac", "1",
                          "-ar", "16000", "-f", "s16le", "pipe:1"], input=audio,
                         capture_output=True, check=True, timeout=30)
    return len(out.stdout) / 32000


# --- gTTS through the stand-in ----------------------------------------------------------------

def test_gtts_speaks_through_local_standin(standin):
    audio, fmt = GTTSEngine(timeout_s=5, endpoint=standin.url).synthesize("Xin chào bà con.")
    assert fmt == "mp3"
    assert standin.texts == ["Xin chào bà con."]
    assert duration_s(audio, "mp3") > 0.5


def test_gtts_long_text_is_split_at_sentences_and_joined(standin):
    sentences = ["Ủy ban nhân dân phường thông báo lịch tiêm chủng mở rộng cho trẻ em dưới "
                 "năm tuổi trên địa bàn.",
                 "Thời gian từ tám giờ sáng đến mười một giờ trưa ngày thứ bảy tại trạm y tế.",
                 "Phụ huynh nhớ mang theo sổ tiêm chủng của con em mình."]
    audio, fmt = GTTSEngine(timeout_s=5, endpoint=standin.url).synthesize(" ".join(sentences))
    assert standin.texts == sentences          # one request per sentence, cut at the full stops
    assert fmt == "wav"                        # the parts decoded and joined into one audio
    with wave.open(io.BytesIO(audio)) as w:
        joined = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 1
    parts = sum(duration_s(GTTSEngine(5, endpoint=standin.url).synthesize(s)[0], "mp3")
                for s in sentences)
    assert abs(joined - parts) < 0.5


def test_sentences_are_packed_up_to_the_request_limit():
    assert split_sentences("Một. Hai! Ba?\nBốn", 100) == ["Một. Hai! Ba? Bốn"]
    assert split_sentences("Câu một dài. Câu hai dài.", 14) == ["Câu một dài.", "Câu hai dài."]
    assert split_sentences("  \n ") == []


# The stand-in answers "error" and "no_audio" at once; the client's timeout is short only where
# running out of it is what the test is about ("hang"), so that a loaded machine, where the
# stand-in's thread waits its turn, cannot turn another failure into a timeout.
@pytest.mark.parametrize("mode, timeout_s, reason", [
    ("error", 30, "500"), ("hang", 0.5, "no answer within 0.5 s"),
    ("no_audio", 30, "No audio stream")])
def test_failing_gtts_falls_back_to_espeak_and_says_why(standin, mode, timeout_s, reason):
    standin.mode = mode
    chain = build_chain(["gtts", "espeak"], gtts_timeout_s=timeout_s, gtts_endpoint=standin.url)
    speech = chain.speak("Mất điện từ tám giờ đến mười giờ.")
    assert speech.engine == "espeak" and speech.fmt == "wav"
    assert len(speech.notes) == 1 and speech.notes[0].startswith("gtts: ")
    assert reason in speech.notes[0]


def test_default_gtts_would_go_to_google_and_is_blocked_here():
    # proves the guard above works: the real endpoint is never reached from these tests
    speech = build_chain(["gtts", "espeak"], gtts_timeout_s=0.5).speak("Xin chào.")
    assert speech.engine == "espeak"
    assert speech.notes == ("gtts: cannot connect to the gTTS endpoint (offline?)",)


def test_unreachable_gtts_falls_back_to_espeak():
    chain = build_chain(["gtts", "espeak"], gtts_timeout_s=0.5,
                        gtts_endpoint="http://127.0.0.1:9/_/TranslateWebserverUi/data/batchexecute")
    speech = chain.speak("Xin chào.")
    assert speech.engine == "espeak"
    assert speech.notes == ("gtts: cannot connect to the gTTS endpoint (offline?)",)


def test_failed_online_engine_is_skipped_until_its_cooldown_ends(standin):
    now = [1000.0]
    # a timeout well beyond what the stand-in takes to speak (espeak-ng and ffmpeg) on a loaded
    # machine: the cooldown is what is tested, and a late answer would look like a failure
    gtts = CountingEngine(GTTSEngine(timeout_s=30, endpoint=standin.url))
    gtts.cooldown_s = 60
    chain = EngineChain([gtts, EspeakEngine()], clock=lambda: now[0])
    standin.mode = "error"
    assert chain.speak("Một.").engine == "espeak" and gtts.calls == 1
    now[0] += 30
    second = chain.speak("Hai.")
    assert second.engine == "espeak" and gtts.calls == 1
    assert "skipped" in second.notes[0] and "500" in second.notes[0]
    standin.mode = "ok"
    now[0] += 31
    assert chain.speak("Ba.").engine == "gtts" and gtts.calls == 2


def test_bulletin_choice_of_engine_goes_first(standin):
    chain = build_chain(["gtts", "espeak"], gtts_endpoint=standin.url)
    assert chain.speak("Xin chào.", engine="espeak").engine == "espeak"
    assert standin.texts == []
    with pytest.raises(TTSError, match="not configured"):
        chain.speak("Xin chào.", engine="piper")


def test_every_reason_is_reported_when_no_engine_speaks():
    chain = EngineChain([GTTSEngine(0.5, endpoint="http://127.0.0.1:9/x"),
                         EspeakEngine(binary="no-such-espeak")])
    with pytest.raises(TTSError) as err:
        chain.speak("Xin chào.")
    assert "gtts: cannot connect" in str(err.value)
    assert "espeak: espeak-ng is not installed" in str(err.value)


# --- espeak-ng ----------------------------------------------------------------------------------

def test_espeak_speaks_the_three_vietnamese_voices():
    engine = EspeakEngine()
    spoken = {}
    for voice in ("vi-north", "vi-central", "vi-south"):
        audio, fmt = engine.synthesize("Thành phố Hồ Chí Minh", voice)
        with wave.open(io.BytesIO(audio)) as w:     # the header's sizes are the real ones
            assert w.getnchannels() == 1 and w.getnframes() * 2 == len(audio) - 44
        spoken[voice] = audio
    assert len(set(spoken.values())) == 3
    assert engine.synthesize("Thành phố Hồ Chí Minh", "vi")[0] == spoken["vi-north"]
    with pytest.raises(TTSError, match="no voice"):
        engine.synthesize("Xin chào", "en-gb")


# --- cache --------------------------------------------------------------------------------------

def test_same_text_is_never_synthesised_twice(tmp_path):
    counting = CountingEngine(EspeakEngine())
    chain = EngineChain([counting], SpeechCache(tmp_path))
    first = chain.speak("Thông báo lịch cắt điện.", "vi-south")
    second = chain.speak("Thông báo lịch cắt điện.", "vi-south")
    assert counting.calls == 1
    assert not first.cached and second.cached
    assert second.audio == first.audio and second.key == first.key
    chain.speak("Thông báo lịch cắt điện.", "vi-central")     # another voice is another key
    chain.speak("Thông báo lịch cắt nước.", "vi-south")       # another text too
    assert counting.calls == 3


def test_rendered_text_is_served_from_cache_without_speaking(tmp_path):
    counting = CountingEngine(EspeakEngine())
    pipeline = Pipeline(MediaStore(tmp_path / "media"),
                        EngineChain([counting], SpeechCache(tmp_path / "cache")),
                        cache_dir=tmp_path / "cache")
    first = pipeline.render_text("Họp tổ dân phố lúc tám giờ.")
    again = pipeline.render_text("Họp tổ dân phố lúc tám giờ.")
    assert counting.calls == 1
    assert again.cached and not first.cached
    assert again.sha256 == first.sha256 and again.audio == first.audio
    assert again.timings.get("cache", 1.0) < 0.05


def test_cache_keys_hash_engine_voice_and_text():
    keys = {SpeechCache.key(e, v, t) for e in ("gtts", "espeak") for v in ("vi-north", "vi-south")
            for t in ("a", "b")}
    assert len(keys) == 8 and all(len(k) == 64 for k in keys)


# --- room for more engines ----------------------------------------------------------------------

def test_an_engine_can_be_added_by_name():
    register_engine("counting-espeak", lambda **kw: CountingEngine(EspeakEngine(**kw)))
    chain = build_chain(["counting-espeak"], options={"counting-espeak": {"speed_wpm": 170}})
    speech = chain.speak("Xin chào.")
    counting = chain.engines[0]
    assert isinstance(counting, CountingEngine)
    assert speech.engine == "espeak" and counting.calls == 1
    with pytest.raises(ValueError, match="unknown TTS engine 'nope'.*espeak"):
        create_engine("nope")


def test_a_local_program_can_be_an_engine():
    # any program that reads text and writes audio, e.g. a neural voice the ward installs
    engine = CommandEngine("local", ["espeak-ng", "-v", "{voice}", "--stdout"],
                           voices={"vi-north": "vi", "vi-south": "vi-vn-x-south"})
    chain = EngineChain([CommandEngine("broken", ["/nonexistent/tts"]), engine])
    speech = chain.speak("Xin chào.", "vi-south")
    assert speech.engine == "local" and speech.voice == "vi-south" and speech.fmt == "wav"
    assert speech.notes == ("broken: no voice 'vi-south' (has vi-north)",)
    assert CommandEngine("broken", ["/nonexistent/tts"]).resolve_voice(None) == "vi-north"
    with pytest.raises(TTSError, match="not installed"):
        CommandEngine("broken", ["/nonexistent/tts"]).synthesize("Xin chào.")


def test_rendered_bulletin_records_which_engine_spoke_and_why(standin, tmp_path):
    standin.mode = "error"
    pipeline = Pipeline(MediaStore(tmp_path / "media"),
                        build_chain(["gtts", "espeak"], 0.5, gtts_endpoint=standin.url))
    out = pipeline.render_text("Lịch cắt điện ngày mai.", "vi-central")
    assert (out.engine, out.voice) == ("espeak", "vi-central")
    assert len(out.notes) == 1 and out.notes[0].startswith("gtts: 500")
    assert out.stored is not None
