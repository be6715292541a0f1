"""Checks on an uploaded recording before anything is stored: is it audio, in a format we take,
whole, not empty, within the size and duration limits. Each refusal is an UploadError with a
machine code the API and the UI translate, and an English message for logs and scripts."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from audio import ff

MB = 1024 * 1024

# ffprobe's format name -> codecs we take in it; the label is what the user is told.
ACCEPTED = {
    "mp3": ("mp3", {"mp3"}),
    "wav": ("wav", {"pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8", "pcm_f64le",
                    "pcm_mulaw", "pcm_alaw"}),
    "mov,mp4,m4a,3gp,3g2,mj2": ("m4a", {"aac", "alac"}),
    "aac": ("aac", {"aac"}),
    "ogg": ("ogg", {"opus", "vorbis", "flac"}),
    "flac": ("flac", {"flac"}),
    # what browsers' MediaRecorder produces (audio/webm;codecs=opus)
    "matroska,webm": ("webm", {"opus", "vorbis"}),
}
ACCEPTED_LABELS = "mp3, wav, m4a/aac, ogg/opus, flac"


class UploadProblem(StrEnum):
    """Why a recording is refused (an UploadError's ``code``; the API's error code too)."""
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AUDIO = "not_audio"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"
    TOO_LONG = "too_long"
    SILENT = "silent"


class UploadError(ff.AudioError):
    """A recording refused before storing, and why."""

    def __init__(self, code: UploadProblem, message: str, **details: Any):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 50 * MB
    max_duration_s: float = 30 * 60.0

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes: must be positive")
        if self.max_duration_s <= 0:
            raise ValueError("max_duration_s: must be positive")


@dataclass(frozen=True)
class ProbeInfo:
    """What ffprobe says of an accepted upload."""

    path: Path
    size: int
    format: str            # our label: mp3, wav, m4a, aac, ogg, flac, webm
    codec: str
    duration_s: float      # declared by the container (checked against the decode later)
    sample_rate: int
    channels: int


def _ffprobe(path: Path) -> dict[str, Any] | None:
    argv = [ff.binary("ffprobe"), "-v", "error", "-show_entries",
            "format=format_name,duration:stream=index,codec_type,codec_name,sample_rate,"
            "channels,duration:stream_disposition=attached_pic", "-of", "json", str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    try:
        info = json.loads(done.stdout or b"{}")
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def inspect(path: str | os.PathLike[str], limits: UploadLimits = UploadLimits()) -> ProbeInfo:
    """The checks ffprobe can make without decoding; UploadError when one fails."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise UploadError(UploadProblem.EMPTY, "the file could not be read") from None
    if size == 0:
        raise UploadError(UploadProblem.EMPTY, "the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise UploadError(UploadProblem.TOO_LARGE, f"the file is {size / MB:.1f} MB; the limit is "
                          f"{limits.max_bytes / MB:.1f} MB", size=size, limit=limits.max_bytes)
    info = _ffprobe(path)
    if not info or not info.get("format"):
        raise UploadError(UploadProblem.NOT_AUDIO, "this file is not audio ffmpeg can read")
    streams = info.get("streams") or []
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    video = [s for s in streams if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    if not audio:
        raise UploadError(UploadProblem.NOT_AUDIO, "the file holds no audio")
    fmt_name = info["format"].get("format_name", "")
    stream = audio[0]
    codec = stream.get("codec_name", "")
    accepted = ACCEPTED.get(fmt_name)
    if video or accepted is None or codec not in accepted[1]:
        what = "a video" if video else f"{fmt_name}/{codec}"
        raise UploadError(UploadProblem.UNSUPPORTED_FORMAT, f"{what} is not taken; upload "
                          f"{ACCEPTED_LABELS}", format=fmt_name, codec=codec)
    duration = _float(stream.get("duration")) or _float(info["format"].get("duration")) or 0.0
    if duration > limits.max_duration_s:
        raise UploadError(UploadProblem.TOO_LONG,
                          f"the recording lasts {duration / 60:.1f} min; the limit is "
                          f"{limits.max_duration_s / 60:.1f} min", duration_s=duration,
                          limit_s=limits.max_duration_s)
    return ProbeInfo(path, size, accepted[0], codec, duration,
                     int(_float(stream.get("sample_rate")) or 0), int(stream.get("channels") or 0))


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def check_decode(info: ProbeInfo, stderr: bytes, decoded_s: float,
                 limits: UploadLimits = UploadLimits()) -> None:
    """Judge a full decode of an upload: decoder errors, or audio that stops well before the
    container said it would (a truncated file), mean corrupt; an empty decode means empty."""
    errors = stderr.decode("utf-8", errors="replace").count("Error while decoding")
    if decoded_s <= 0:
        raise UploadError(UploadProblem.EMPTY, "the file holds no sound")
    # Two glitches are forgiven: some encoders leave a broken last frame.
    if errors > 2:
        raise UploadError(UploadProblem.CORRUPT,
                          f"the audio is damaged ({errors} undecodable frames)", errors=errors)
    if info.duration_s > 1.0 and decoded_s < info.duration_s * 0.97 - 0.5:
        how = (f"the audio is damaged ({errors} undecodable frames)" if errors
               else "the file is cut short")
        raise UploadError(UploadProblem.CORRUPT,
                          f"{how}: {decoded_s:.1f} s of the {info.duration_s:.1f} s it declares",
                          errors=errors, decoded_s=decoded_s, declared_s=info.duration_s)
    if decoded_s > limits.max_duration_s:
        # the decode stopped just past the limit: the recording lasts at least this long
        raise UploadError(UploadProblem.TOO_LONG, f"the recording lasts more than "
                          f"{limits.max_duration_s / 60:.1f} min, the limit (its header "
                          f"declares {info.duration_s / 60:.1f} min)", duration_s=decoded_s,
                          limit_s=limits.max_duration_s)
