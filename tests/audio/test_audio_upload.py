"""Uploaded recordings are checked before anything is stored: each kind of bad file is refused
with its own code and a message a person understands, and the media store stays empty."""
from __future__ import annotations

from pathlib import Path

import pytest

from audio.pipeline import AudioSettings, Pipeline
from audio.probe import UploadError, UploadLimits, inspect
from audio.store import MediaStore
from audio.tts import build_chain
from tests.audio.helpers import ffmpeg, media_files


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("uploads")
    # one ffmpeg writes them all (its start-up costs more than encoding seconds of a tone): the
    # 20 s tone, and its first 4 s in ten formats
    made = {"long_mp3": d / "long.mp3"}
    outputs = ["-b:a", "64k", str(made["long_mp3"])]
    for name, opts in {"mp3": ["-b:a", "64k"], "wav": [], "m4a": ["-c:a", "aac"],
                       "aac": ["-c:a", "aac"], "ogg": ["-c:a", "libvorbis"],
                       "opus": ["-c:a", "libopus"], "flac": [], "webm": ["-c:a", "libopus"],
                       "aiff": [], "wma": []}.items():
        made[name] = d / f"tone.{name}"
        outputs += ["-t", "4", *opts, str(made[name])]
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=20", *outputs)
    made["video"] = d / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-f", "lavfi", "-i", "testsrc=duration=2",
           "-shortest", str(made["video"]))
    made["image"] = d / "photo.mp3"
    ffmpeg("-f", "lavfi", "-i", "testsrc=duration=1", "-frames:v", "1", "-f", "image2",
           "-c:v", "png", str(made["image"]))
    made["text"] = d / "notice.mp3"
    made["text"].write_text("Thông báo: đây là một tệp văn bản, không phải âm thanh.\n" * 20,
                            encoding="utf-8")
    made["empty"] = d / "empty.mp3"
    made["empty"].write_bytes(b"")
    whole = made["long_mp3"].read_bytes()
    made["truncated"] = d / "truncated.mp3"
    made["truncated"].write_bytes(whole[: len(whole) * 2 // 3])
    damaged = bytearray(whole)
    damaged[30_000:60_000] = bytes((i * 97 + 13) % 256 for i in range(30_000))
    made["damaged"] = d / "damaged.mp3"
    made["damaged"].write_bytes(bytes(damaged))
    return made


def pipeline(media: Path, **settings) -> Pipeline:
    return Pipeline(MediaStore(media), build_chain(["espeak"]),
                    AudioSettings(**settings))


@pytest.mark.parametrize("name, code, words", [
    ("text", "not_audio", "not audio"),
    ("image", "not_audio", "no audio"),
    ("empty", "empty", "empty"),
    ("truncated", "corrupt", "cut short"),
    ("damaged", "corrupt", "damaged"),
    ("aiff", "unsupported_format", "mp3, wav, m4a/aac, ogg/opus, flac"),
    ("wma", "unsupported_format", "not taken"),
    ("video", "unsupported_format", "video"),
])
def test_bad_upload_is_refused_with_its_code_and_nothing_stored(files, media, name, code, words):
    with pytest.raises(UploadError) as err:
        pipeline(media).render_upload(files[name])
    assert err.value.code == code
    assert words in err.value.message
    assert media_files(media) == []


def test_upload_over_the_size_limit_is_refused(files, media):
    with pytest.raises(UploadError) as err:
        pipeline(media, max_upload_mb=0.01).render_upload(files["long_mp3"])
    assert err.value.code == "too_large"
    assert "the limit is" in err.value.message
    assert err.value.details["limit"] == int(0.01 * 1024 * 1024)
    assert media_files(media) == []


def test_upload_over_the_duration_limit_is_refused(files, media):
    with pytest.raises(UploadError) as err:
        pipeline(media, max_upload_minutes=0.1).render_upload(files["long_mp3"])
    assert err.value.code == "too_long"
    assert err.value.details["duration_s"] > 19
    assert media_files(media) == []


def test_upload_bytes_are_checked_the_same_way(files, media):
    with pytest.raises(UploadError) as err:
        pipeline(media).render_upload(files["text"].read_bytes())
    assert err.value.code == "not_audio"
    assert media_files(media) == []


@pytest.mark.parametrize("name, label", [("mp3", "mp3"), ("wav", "wav"), ("m4a", "m4a"),
                                         ("aac", "aac"), ("ogg", "ogg"), ("opus", "ogg"),
                                         ("flac", "flac"), ("webm", "webm")])
def test_accepted_formats_pass_the_checks(files, name, label):
    info = inspect(files[name], UploadLimits())
    assert info.format == label
    assert 3.9 <= info.duration_s <= 4.2


def test_accepted_upload_is_stored_once(files, media):
    p = pipeline(media)
    first = p.render_upload(files["flac"])
    again = p.render_upload(files["flac"])
    assert first.sha256 == again.sha256
    assert first.stored is not None and media_files(media) == [first.stored.path]


def test_default_limits_are_50_mb_and_30_minutes():
    limits = AudioSettings().limits
    assert limits.max_bytes == 50 * 1024 * 1024 and limits.max_duration_s == 1800
