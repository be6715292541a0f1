"""A recording's header proves nothing about its length: a small file that declares a second
(or nothing) but holds minutes is decoded only just past the duration limit, refused as
`too_long` (413 through the API), nothing is stored and no temporary file is left. Speech from
an engine is bounded the same way."""
from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from audio.ff import AudioError
from audio.pipeline import DECODE_MARGIN_S, AudioSettings, Pipeline
from audio.probe import UploadError
from audio.store import MediaStore
from audio.tts import CommandEngine, Speech, TTSError, build_chain
from tests.audio.helpers import ffmpeg, media_files

LIMIT_MIN = 0.1     # 6 s; every crafted file holds 60 s


def _minute(d: Path) -> tuple[Path, Path]:
    """A minute of a 440 Hz tone at 8 kHz mono: a VBR MP3 and a PCM WAV, by one ffmpeg."""
    mp3, wav = d / "minute.mp3", d / "minute.wav"
    mono = ["-ac", "1", "-ar", "8000"]
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=60",
           *mono, "-c:a", "libmp3lame", "-q:a", "9", "-id3v2_version", "0", str(mp3),
           *mono, "-c:a", "pcm_s16le", str(wav))
    return mp3, wav


def _xing_lies(mp3: Path, path: Path) -> Path:
    """The 60 s VBR MP3 with its Xing header saying it holds 20 frames (about 1.4 s)."""
    data = bytearray(mp3.read_bytes())
    at = data.find(b"Xing")
    assert at > 0 and struct.unpack(">I", data[at + 4:at + 8])[0] & 1, "no Xing frame count"
    data[at + 8:at + 12] = struct.pack(">I", 20)
    path.write_bytes(bytes(data))
    return path


def _wav_with_data_size(wav: Path, path: Path, size: int) -> Path:
    """The 60 s WAV's PCM behind a header whose data size is ``size`` (0, 0xFFFFFFFF)."""
    raw = wav.read_bytes()
    at = raw.index(b"data")
    header = raw[:at] + b"data" + struct.pack("<I", size)
    header = header[:4] + struct.pack("<I", (len(header) - 8 + size) & 0xFFFFFFFF) + header[8:]
    path.write_bytes(header + raw[at + 8:])
    return path


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("crafted")
    mp3, wav = _minute(d)
    return {"wav": wav,
            "xing": _xing_lies(mp3, d / "short.mp3"),
            "wav_zero": _wav_with_data_size(wav, d / "zero.wav", 0),
            "wav_ffff": _wav_with_data_size(wav, d / "ffff.wav", 0xFFFFFFFF)}


def _declared_s(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                          "default=nw=1:nk=1", str(path)], capture_output=True, text=True,
                         timeout=30)
    return float(out.stdout)


def _pipeline(tmp_path: Path, **settings) -> tuple[Pipeline, Path, Path]:
    media, work = tmp_path / "media", tmp_path / "work"
    work.mkdir()
    return (Pipeline(MediaStore(media), build_chain(["espeak"]), AudioSettings(**settings),
                     tmp_dir=work), media, work)


def test_mp3_claiming_a_second_but_holding_a_minute_is_decoded_only_to_the_limit(crafted,
                                                                                  tmp_path):
    assert _declared_s(crafted["xing"]) < 2      # the header alone would let it through
    p, media, work = _pipeline(tmp_path, max_upload_minutes=LIMIT_MIN)
    with pytest.raises(UploadError) as err:
        p.render_upload(crafted["xing"])
    assert err.value.code == "too_long" and "more than 0.1 min" in err.value.message
    # decoding stopped just past the limit, not after the whole minute
    assert LIMIT_MIN * 60 < err.value.details["duration_s"] <= LIMIT_MIN * 60 + DECODE_MARGIN_S
    assert media_files(media) == [] and list(work.iterdir()) == []


@pytest.mark.parametrize("name", ["wav_zero", "wav_ffff"])
def test_wav_with_a_bogus_length_header_is_refused_as_too_long(crafted, tmp_path, name):
    p, media, work = _pipeline(tmp_path, max_upload_minutes=LIMIT_MIN)
    with pytest.raises(UploadError) as err:
        p.render_upload(crafted[name].read_bytes())
    assert err.value.code == "too_long"
    assert media_files(media) == [] and list(work.iterdir()) == []


def test_api_refuses_a_recording_longer_than_its_header_with_413(crafted, tmp_path, monkeypatch):
    from tests.system import System
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    system = System(tmp_path, None, start_dispatcher=False, max_upload_minutes=LIMIT_MIN)
    try:
        r = system.call("POST", "/api/v1/bulletins",
                        data={"title": "Thông báo", "category": "other"},
                        files={"file": ("thong-bao.mp3", crafted["xing"].read_bytes(),
                                        "audio/mpeg")})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "too_long"
        assert r.json()["error"]["message"]
        assert media_files(Path(system.settings.media_dir)) == []
        assert system.ok("GET", "/api/v1/bulletins")["bulletins"] == []
    finally:
        system.stop()
    assert [p.name for p in scratch.iterdir() if p.name.startswith("loa-")] == []


def test_speech_longer_than_the_speech_limit_is_refused_without_decoding_it_all(crafted,
                                                                               tmp_path):
    long_mp3 = tmp_path / "speech.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:duration=60", "-ac", "1", "-b:a", "32k",
           str(long_mp3))
    p, media, work = _pipeline(tmp_path, max_speech_minutes=LIMIT_MIN)
    for fmt, audio in (("mp3", long_mp3.read_bytes()), ("wav", crafted["wav"].read_bytes())):
        with pytest.raises(AudioError, match="longer than the limit"):
            p.render_speech(Speech(audio, fmt, "test", "vi-north"))
    assert media_files(media) == [] and list(work.iterdir()) == []


def test_speech_program_that_writes_without_end_is_stopped(tmp_path):
    endless = [sys.executable, "-c",
               "import sys\nwhile True: sys.stdout.buffer.write(b'\\0' * 65536)"]
    engine = CommandEngine("runaway", endless, max_bytes=1024 * 1024, timeout_s=30)
    with pytest.raises(TTSError, match="more than 1 MB"):
        engine.synthesize("Xin chào")
