"""The broadcast pipeline: every bulletin, spoken or uploaded, leaves here trimmed, at one
loudness (ITU-R BS.1770 integrated target, true peak under the ceiling), optionally framed by
the chime, encoded mono at a speech bitrate, measured, and stored by its sha256.

Passes over the audio (ffmpeg unless said otherwise):
  decode    an upload (or gTTS's MP3) to mono PCM at the output rate; espeak's WAV is used as is
  trim      pydub finds where sound starts and ends (reads only the ends and one peak scan)
  analyse   cut, resample and meter in one pass, writing the float work file
  trial     only when the peaks need a limiter: two limiter gains metered in one pass
  render    gain (+ limiter) + chime + encode in one pass
  verify    meter the encoded file itself; re-render with a corrected gain if it missed
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from audio import ff, loudness
from audio.cache import RenderCache, digest
from audio.files import write_atomic
from audio.chime import INTRO, OUTRO
from audio.probe import UploadError, UploadLimits, UploadProblem, check_decode, inspect
from audio.store import MediaStore, Stored, probe_duration_ms
from audio.tts import DEFAULT_ENGINES, Container, EngineChain, Speech, TTSError, build_chain

PIPELINE_VERSION = 1        # bump when a change makes old cached renders wrong


class AudioFormat(StrEnum):
    """What a rendered bulletin is encoded as."""
    MP3 = "mp3"
    OPUS = "opus"  # Ogg Opus


class Chime(StrEnum):
    """Where the chime frames a bulletin."""
    NONE = "none"
    INTRO = "intro"
    OUTRO = "outro"
    BOTH = "both"


FORMATS: dict[str, tuple[str, str, list[str], int, int]] = {
    # fmt: (file extension, ffmpeg muxer, codec args, sample rate, default kbps)
    AudioFormat.MP3: ("mp3", "mp3",
                      ["-c:a", "libmp3lame", "-id3v2_version", "0", "-write_id3v1", "0"],
                      24000, 48),
    AudioFormat.OPUS: ("opus", "ogg",
                       ["-c:a", "libopus", "-application", "audio", "-vbr", "constrained"],
                       48000, 32),
}
MAX_RENDERS = 3
DECODE_MARGIN_S = 1.0       # decoded past a limit by this much, to tell "over" from "at" it
_TEE_UNSAFE = re.compile(r"[|\[\]:=\\',;]")   # characters ffmpeg's tee muxer would need escaped


@dataclass(frozen=True)
class AudioSettings:
    """The pipeline's knobs (one per ward where the server wants it: target, chime)."""

    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    tolerance_lu: float = 0.5          # re-render when the measurement misses by more
    peak_margin_db: float = 1.0        # room kept under the ceiling for encoder overshoot
    fmt: str = AudioFormat.MP3         # an AudioFormat
    bitrate_kbps: int | None = None    # None: the format's own (FORMATS)
    chime: str = Chime.NONE            # a Chime
    chime_intro: str | None = None     # a file; None: the project's own chime
    chime_outro: str | None = None
    chime_gap_ms: int = 300            # silence between chime and speech
    trim: bool = True
    trim_floor_db: float = 40.0        # quieter than the loudest peak by this much is silence
    trim_keep_ms: int = 150            # silence kept at each end so onsets are not clipped
    max_upload_mb: float = 50.0
    max_upload_minutes: float = 30.0
    max_speech_minutes: float = 120.0  # what an engine said is decoded no further than this

    def __post_init__(self) -> None:
        checks = {
            "target_lufs": -40.0 <= self.target_lufs <= -5.0,
            "true_peak_dbtp": -12.0 <= self.true_peak_dbtp <= 0.0,
            "tolerance_lu": 0.05 <= self.tolerance_lu <= 3.0,
            "peak_margin_db": 0.0 <= self.peak_margin_db <= 6.0,
            "fmt": self.fmt in FORMATS,
            "bitrate_kbps": self.bitrate_kbps is None or 8 <= self.bitrate_kbps <= 320,
            "chime": self.chime in tuple(Chime),
            "chime_gap_ms": 0 <= self.chime_gap_ms <= 5000,
            "trim_floor_db": 10.0 <= self.trim_floor_db <= 90.0,
            "trim_keep_ms": 0 <= self.trim_keep_ms <= 5000,
            "max_upload_mb": self.max_upload_mb > 0,
            "max_upload_minutes": self.max_upload_minutes > 0,
            "max_speech_minutes": self.max_speech_minutes > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {getattr(self, name)!r} is out of range")
        for name in ("chime_intro", "chime_outro"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], prefix: str = "") -> AudioSettings:
        """Settings from a config mapping; ValueError naming the bad key (``prefix`` + key)."""
        known = {f.name: f for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"{prefix}{key}: unknown audio setting")
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise ValueError(f"{prefix}{err}") from None

    @property
    def ext(self) -> str:
        return FORMATS[self.fmt][0]

    @property
    def sample_rate(self) -> int:
        return FORMATS[self.fmt][3]

    @property
    def kbps(self) -> int:
        return self.bitrate_kbps or FORMATS[self.fmt][4]

    @property
    def limits(self) -> UploadLimits:
        return UploadLimits(int(self.max_upload_mb * 1024 * 1024), self.max_upload_minutes * 60)

    def chime_paths(self) -> tuple[Path | None, Path | None]:
        intro = Path(self.chime_intro or INTRO) if self.chime in (Chime.INTRO, Chime.BOTH) \
            else None
        outro = Path(self.chime_outro or OUTRO) if self.chime in (Chime.OUTRO, Chime.BOTH) \
            else None
        return intro, outro

    def render_fields(self) -> dict[str, Any]:
        """What changes the rendered audio (for cache keys); chimes by their content."""
        out = {k: v for k, v in asdict(self).items()
               if k not in ("max_upload_mb", "max_upload_minutes", "max_speech_minutes",
                            "chime_intro", "chime_outro")}
        out["chimes"] = [_file_digest(p) if p else None for p in self.chime_paths()]
        out["kbps"] = self.kbps
        return out


@dataclass(frozen=True)
class Rendered:
    """A broadcast-ready bulletin: the encoded audio and what was measured on it."""

    audio: bytes
    fmt: str                       # an AudioFormat
    ext: str
    duration_ms: int
    lufs: float                    # integrated loudness of the encoded file
    true_peak: float               # dBTP of the encoded file
    bitrate_kbps: int
    sample_rate: int
    channels: int = 1
    stored: Stored | None = None
    engine: str | None = None      # for speech: which engine spoke ...
    voice: str | None = None
    notes: tuple[str, ...] = ()    # ... and why the ones before it did not
    text: str | None = None        # the normalised text that was spoken
    cached: bool = False           # served from the render cache
    renders: int = 1               # render passes it took to land on the target
    limited: bool = False          # a peak limiter was needed
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def sha256(self) -> str | None:
        return self.stored.sha256 if self.stored else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (what ``python -m audio.render`` prints)."""
        return {"engine": self.engine, "voice": self.voice, "notes": list(self.notes),
                "format": self.fmt, "duration_ms": self.duration_ms,
                "lufs": round(self.lufs, 1), "true_peak": round(self.true_peak, 1),
                "bitrate": self.bitrate_kbps, "sample_rate": self.sample_rate,
                "channels": self.channels, "sha256": self.sha256, "bytes": len(self.audio),
                "cached": self.cached, "renders": self.renders, "limited": self.limited,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def normalise_text(text: str, lexicon: Mapping[str, str] | None = None) -> str:
    """Text in its spoken form, by audio.normalize when that module is installed."""
    try:
        from audio.normalize import normalize
    except ImportError as err:
        if err.name not in (None, "audio.normalize"):
            raise
        return text
    return normalize(text, lexicon=lexicon) if lexicon else normalize(text)


class _Timer:
    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.spent[stage] = self.spent.get(stage, 0.0) + now - since
        return now


@dataclass(frozen=True)
class _Pcm:
    """Headerless mono PCM in a file."""

    path: Path
    sample_fmt: str      # ffmpeg's name: s16le or s32le
    width: int
    rate: int

    @property
    def samples(self) -> int:
        return self.path.stat().st_size // self.width


class Pipeline:
    """Turns text or an uploaded recording into a stored, broadcast-ready file.

    ``store``: where finished audio goes (by sha256); ``chain``: the TTS engines;
    ``cache_dir``: turns on the speech and render caches (and is the store when none is given).
    """

    def __init__(self, store: MediaStore | None = None, chain: EngineChain | None = None,
                 settings: AudioSettings | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 tmp_dir: str | os.PathLike[str] | None = None):
        self.settings = settings or AudioSettings()
        self.cache = RenderCache(cache_dir) if cache_dir is not None else None
        if store is None and cache_dir is not None:
            store = MediaStore(Path(cache_dir) / "media")
        self.store = store
        self.chain = chain if chain is not None else build_chain(
            DEFAULT_ENGINES, cache_dir=cache_dir)
        self.tmp_dir = tmp_dir

    # --- entry points ---------------------------------------------------------------------------

    def render_text(self, text: str, voice: str | None = None, engine: str | None = None, *,
                    settings: AudioSettings | None = None, normalised: bool = False,
                    lexicon: Mapping[str, str] | None = None) -> Rendered:
        """Speak ``text`` (normalised first unless ``normalised``) and render it.

        Raises TTSError when no engine can speak, AudioError when processing fails.
        """
        s = settings or self.settings
        timer = _Timer()
        t = time.perf_counter()
        spoken = text.strip() if normalised else normalise_text(text, lexicon).strip()
        if not spoken:
            raise TTSError("no text to speak")
        t = timer.add("normalise", t)
        first = self.chain.first_ready(engine)
        if first is not None and self.cache is not None:
            try:
                key = self._render_key(self.chain.key(first, voice, spoken), s)
            except TTSError:
                key = None
            hit = self._from_cache(key, timer, t) if key else None
            if hit is not None:
                return replace(hit, text=spoken)
        speech = self.chain.speak(spoken, voice, engine)
        t = timer.add("synthesise", t)
        return replace(self.render_speech(speech, settings=s, _timer=timer), text=spoken)

    def render_speech(self, speech: Speech, *, settings: AudioSettings | None = None,
                      _timer: _Timer | None = None) -> Rendered:
        """Render what an engine said (the render cache answers when it can)."""
        s = settings or self.settings
        timer = _timer or _Timer()
        t = time.perf_counter()
        key = self._render_key(speech.key, s) if speech.key and self.cache is not None else None
        hit = self._from_cache(key, timer, t) if key else None
        if hit is not None:
            return replace(hit, engine=speech.engine, voice=speech.voice, notes=speech.notes)
        with tempfile.TemporaryDirectory(prefix="loa-audio-", dir=self.tmp_dir) as tmp_name:
            tmp = Path(tmp_name)
            try:
                pcm = _wav_pcm(speech.audio, tmp) if speech.fmt == Container.WAV else None
                limit_s = s.max_speech_minutes * 60
                if pcm is None:
                    src = tmp / f"speech.{speech.fmt}"
                    src.write_bytes(speech.audio)
                    pcm, _, _ = _decode(src, tmp, s.sample_rate, limit_s)
                    t = timer.add("decode", t)
                if pcm.samples / pcm.rate > limit_s:
                    raise ff.AudioError(f"the speech lasts longer than the limit of "
                                        f"{s.max_speech_minutes:g} min")
                out = self._process(pcm, s, tmp, timer)
            except UploadError as err:     # the checks speak of uploads; this is speech
                raise ff.AudioError(f"the speech is unusable: {err.message}") from None
        out = replace(out, engine=speech.engine, voice=speech.voice, notes=speech.notes)
        out = self._store(out, timer)
        if key and self.cache is not None:
            self.cache.put(key, out.summary() | {"ext": out.ext})
        return replace(out, timings=timer.spent)

    def render_upload(self, upload: str | os.PathLike[str] | bytes, *,
                      settings: AudioSettings | None = None) -> Rendered:
        """Check an uploaded recording and render it. UploadError (with ``.code``) when it is
        refused; nothing is stored then."""
        s = settings or self.settings
        timer = _Timer()
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="loa-upload-", dir=self.tmp_dir) as tmp_name:
            tmp = Path(tmp_name)
            if isinstance(upload, (bytes, bytearray)):
                src = tmp / "upload.bin"
                src.write_bytes(upload)
            else:
                src = Path(upload)
            info = inspect(src, s.limits)
            pcm, stderr, decoded_s = _decode(src, tmp, s.sample_rate, s.limits.max_duration_s)
            check_decode(info, stderr, decoded_s, s.limits)
            t = timer.add("decode", t)
            out = self._process(pcm, s, tmp, timer)
        out = self._store(out, timer)
        return replace(out, timings=timer.spent)

    # --- the work -------------------------------------------------------------------------------

    def _process(self, pcm: _Pcm, s: AudioSettings, tmp: Path, timer: _Timer) -> Rendered:
        t = time.perf_counter()
        span = find_sound(pcm, s.trim_floor_db, s.trim_keep_ms) if s.trim else (0, pcm.samples)
        if span is None:
            raise UploadError(UploadProblem.SILENT, "the recording is silent")
        t = timer.add("trim", t)

        work, measured = _analyse(pcm, span, s.sample_rate, tmp)
        if measured.silent:
            raise UploadError(UploadProblem.SILENT, "the recording is silent")
        duration_s = (span[1] - span[0]) / pcm.rate
        plan = loudness.plan_gain(measured, s.target_lufs, s.true_peak_dbtp, s.peak_margin_db)
        slope = 1.0
        if not plan.linear:
            trials = _trial(work, s.sample_rate, plan, duration_s)
            plan = loudness.GainPlan(loudness.solve_gain(trials, s.target_lufs), plan.limit_dbfs)
            (g0, o0), (g1, o1) = trials
            slope = (o1 - o0) / (g1 - g0)
        t = timer.add("loudness", t)

        chimes = [(p, _chime_gain(p, s.target_lufs, s.true_peak_dbtp, s.peak_margin_db))
                  if p else None for p in s.chime_paths()]
        t = timer.add("chime", t)

        out_path = tmp / f"out.{s.ext}"
        limited = not plan.linear
        total_s = duration_s + sum(_duration_s(c[0]) + s.chime_gap_ms / 1000
                                   for c in chimes if c)
        for attempt in range(1, MAX_RENDERS + 1):
            # the encoded file is metered while it is being encoded (see _render)
            result, duration_ms = _render(work, s, plan, chimes, out_path, total_s)
            t = timer.add("encode", t)
            if loudness.acceptable(result, s.target_lufs, s.true_peak_dbtp, s.tolerance_lu):
                break
            if attempt == MAX_RENDERS:
                raise ff.AudioError(
                    f"could not reach {s.target_lufs} LUFS / {s.true_peak_dbtp} dBTP: measured "
                    f"{result.integrated_lufs} LUFS, {result.true_peak_dbtp} dBTP")
            plan = loudness.correct(plan, result, s.target_lufs, s.true_peak_dbtp,
                                    slope if plan.limit_dbfs is not None else 1.0)
            limited = limited or not plan.linear
        if result.true_peak_dbtp is None:  # the meter runs with peak=true: it always has one
            raise ff.AudioError("ffmpeg (meter) reported no true peak")
        data = out_path.read_bytes()
        t = timer.add("encode", t)
        return Rendered(data, s.fmt, s.ext, duration_ms, result.integrated_lufs,
                        result.true_peak_dbtp, s.kbps, s.sample_rate, 1, renders=attempt,
                        limited=limited)

    def _store(self, out: Rendered, timer: _Timer) -> Rendered:
        if self.store is None:
            return out
        t = time.perf_counter()
        stored = self.store.put(out.audio, out.ext)
        timer.add("store", t)
        return replace(out, stored=stored)

    def _render_key(self, speech_key: str, s: AudioSettings) -> str:
        return digest("render", PIPELINE_VERSION, speech_key, s.render_fields())

    def _from_cache(self, key: str, timer: _Timer, since: float) -> Rendered | None:
        if self.cache is None or self.store is None:
            return None
        summary = self.cache.get(key)
        if not summary or not summary.get("sha256"):
            return None
        path = self.store.path(summary["sha256"], summary["ext"])
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        timer.add("cache", since)
        return Rendered(
            data, summary["format"], summary["ext"], summary["duration_ms"], summary["lufs"],
            summary["true_peak"], summary["bitrate"], summary["sample_rate"],
            summary["channels"], Stored(summary["sha256"], summary["ext"], len(data), path),
            summary["engine"], summary["voice"], tuple(summary["notes"]), None, True,
            summary["renders"], summary["limited"], dict(timer.spent))


# --- passes -------------------------------------------------------------------------------------

def _wav_pcm(wav: bytes, tmp: Path) -> _Pcm | None:
    """The samples of a mono 16-bit PCM WAV written to a raw file (no ffmpeg needed), or None
    when the WAV is anything else."""
    if len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        if chunk == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", wav, pos + 8)
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[1] != 1 or fmt[5] != 16:
                return None
            data = wav[pos + 8: pos + 8 + min(size, len(wav) - pos - 8)]
            path = tmp / "speech.s16"
            path.write_bytes(data[: len(data) - len(data) % 2])
            return _Pcm(path, "s16le", 2, fmt[2])
        pos += 8 + size + (size & 1)
    return None


def _decode(src: Path, tmp: Path, rate: int, max_s: float) -> tuple[_Pcm, bytes, float]:
    """Any audio -> mono 32-bit PCM at ``rate``; (pcm, decoder stderr, decoded seconds).

    Decoding stops just past ``max_s`` (by time and by output bytes): a container's declared
    length proves nothing, and a small file may hold hours, so the caller finds the result
    longer than ``max_s`` and refuses it without the temporary disk ever holding more."""
    path = tmp / "decoded.s32"
    cap_s = max_s + DECODE_MARGIN_S
    argv = ff.ffmpeg_args("-loglevel", "error", "-i", str(src), "-map", "0:a:0", "-vn",
                          "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s32le",
                          "-t", f"{cap_s:.3f}", "-fs", str(math.ceil(cap_s * rate) * 4 + 4096),
                          "-f", "s32le", str(path))
    try:
        done = subprocess.run(argv, capture_output=True, timeout=900, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UploadError(UploadProblem.CORRUPT, "decoding took too long") from None
    if done.returncode != 0 or not path.exists():
        raise UploadError(UploadProblem.CORRUPT,
                          f"the audio cannot be decoded: {ff.tail(done.stderr, 200)}")
    pcm = _Pcm(path, "s32le", 4, rate)
    return pcm, done.stderr, pcm.samples / rate


def find_sound(pcm: _Pcm, floor_db: float, keep_ms: int,
               window_s: float = 10.0) -> tuple[int, int] | None:
    """(first, last) sample of the sound in ``pcm``, keeping ``keep_ms`` of silence at each end;
    None when it is all silence. Silence is quieter than the loudest peak by ``floor_db``."""
    from pydub import AudioSegment
    from pydub.silence import detect_leading_silence

    n = pcm.samples
    if n == 0:
        return None

    def segment(start: int, count: int) -> AudioSegment:
        with open(pcm.path, "rb") as f:
            f.seek(start * pcm.width)
            data = f.read(count * pcm.width)
        return AudioSegment(data=data, sample_width=pcm.width, frame_rate=pcm.rate, channels=1)

    peak = 0
    step = 1 << 20
    for start in range(0, n, step):
        peak = max(peak, segment(start, step).max)
    full = float(1 << (8 * pcm.width - 1))
    if peak == 0 or 20 * math.log10(peak / full) < -70.0:
        return None
    threshold = max(20 * math.log10(peak / full) - floor_db, -80.0)

    window = int(window_s * pcm.rate)
    first = None
    for start in range(0, n, window):
        seg = segment(start, window)
        ms = detect_leading_silence(seg, threshold, 10)
        if ms < len(seg):
            first = start + int(ms * pcm.rate / 1000)
            break
    if first is None:
        return None
    last = first
    for end in range(n, first, -window):
        start = max(first, end - window)
        seg = segment(start, end - start).reverse()
        ms = detect_leading_silence(seg, threshold, 10)
        if ms < len(seg):
            last = end - int(ms * pcm.rate / 1000)
            break
    keep = int(keep_ms * pcm.rate / 1000)
    return max(0, first - keep), min(n, last + keep)


def _analyse(pcm: _Pcm, span: tuple[int, int], rate: int, tmp: Path
             ) -> tuple[Path, loudness.Loudness]:
    """Cut to ``span``, resample to ``rate`` and meter, in one pass; (float work file, loudness).
    A clip too short for the gated meter to be steady is metered looped (``loudness.loops``):
    the meter's branch repeats the samples the work file gets (aloop), as a second pass over
    that file with ``-stream_loop`` would, in the same process."""
    work = tmp / "work.f32"
    chain = [f"atrim=start_sample={span[0]}:end_sample={span[1]}", "asetpts=N/SR/TB"]
    if pcm.rate != rate:
        chain.append(f"aresample={rate}")
    duration_s = (span[1] - span[0]) / pcm.rate
    loops = loudness.loops(duration_s)
    if loops:
        # aloop repeats at most ``size`` samples; at the clip's end it repeats what it holds
        size = math.ceil(duration_s * rate) + rate
        graph = ["-filter_complex", f"[0:a]{','.join(chain)},asplit=2[work][m];"
                 f"[m]aloop=loop={loops}:size={size},{loudness.meter('m')}[metered]",
                 "-map", "[metered]", "-f", "null", "-", "-map", "[work]"]
    else:
        graph = ["-af", ",".join([*chain, loudness.meter("m")])]
    argv = ff.ffmpeg_args("-f", pcm.sample_fmt, "-ar", str(pcm.rate), "-ac", "1",
                          "-i", str(pcm.path), *graph,
                          "-c:a", "pcm_f32le", "-f", "f32le", str(work))
    done = ff.run(argv, what="ffmpeg (analyse)")
    found = loudness.parse_ebur128(done.stderr.decode("utf-8", errors="replace")).get("m")
    if found is None:
        raise ff.AudioError("ffmpeg printed no loudness summary")
    return work, found


def _trial(work: Path, rate: int, plan: loudness.GainPlan, duration_s: float
           ) -> list[tuple[float, float]]:
    """Meter the limiter at two input gains in one pass: [(gain, integrated LUFS), ...]."""
    gains = loudness.trial_gains(plan)
    graph = [f"[0:a]asplit={len(gains)}" + "".join(f"[in{i}]" for i in range(len(gains)))]
    outs = []
    for i, g in enumerate(gains):
        filters = loudness.GainPlan(g, plan.limit_dbfs).filters()
        graph.append(f"[in{i}]" + ",".join(filters + [loudness.meter(f"t{i}", False)])
                     + f"[out{i}]")
        outs += ["-map", f"[out{i}]", "-f", "null", "-"]
    argv = ff.ffmpeg_args(*loudness.input_args(work, duration_s, ("f32le", rate)),
                          "-filter_complex", ";".join(graph), *outs)
    done = ff.run(argv, what="ffmpeg (limiter trial)")
    found = loudness.parse_ebur128(done.stderr.decode("utf-8", errors="replace"))
    try:
        return [(g, found[f"t{i}"].integrated_lufs) for i, g in enumerate(gains)]
    except KeyError:
        raise ff.AudioError("ffmpeg printed no loudness summary for the limiter trial") from None


def _render(work: Path, s: AudioSettings, plan: loudness.GainPlan,
            chimes: list[tuple[Path, float] | None], out: Path,
            duration_s: float) -> tuple[loudness.Loudness, int]:
    """Gain (+ limiter), chimes and encoding in one ffmpeg pass; returns the loudness of the
    encoded file and its length in ms, counted as it was encoded (a player decodes exactly
    those samples; a container's duration, which ffprobe would read in one more process,
    holds the encoder's padding). ffmpeg's tee muxer hands the encoded stream to a second
    ffmpeg that meters it while the file is written, so the two run on two cores instead of
    one after the other.
    """
    rate = s.sample_rate
    fmt = f"aformat=sample_fmts=flt:sample_rates={rate}:channel_layouts=mono"
    inputs = ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(work)]
    graph = ["[0:a]" + ",".join(plan.filters() + [fmt]) + "[speech]"]
    parts = []
    intro, outro = chimes
    if intro:
        inputs += ["-i", str(intro[0])]
        graph.append(f"[1:a]aresample={rate},{fmt},volume={intro[1]:.3f}dB,"
                     f"apad=pad_dur={s.chime_gap_ms / 1000:.3f}[intro]")
        parts.append("[intro]")
    parts.append("[speech]")
    if outro:
        idx = 2 if intro else 1
        inputs += ["-i", str(outro[0])]
        graph.append(f"[{idx}:a]aresample={rate},{fmt},volume={outro[1]:.3f}dB,"
                     f"adelay={s.chime_gap_ms}[outro]")
        parts.append("[outro]")
    if len(parts) > 1:
        graph.append("".join(parts) + f"concat=n={len(parts)}:v=0:a=1[mix]")
    graph.append(f"{'[mix]' if len(parts) > 1 else '[speech]'}{loudness.counter()}[final]")
    _, muxer, codec, _, _ = FORMATS[s.fmt]
    encode = ff.ffmpeg_args(*inputs, "-filter_complex", ";".join(graph), "-map", "[final]",
                            "-ac", "1", "-ar", str(rate), *codec, "-b:a", f"{s.kbps}k",
                            "-map_metadata", "-1", "-fflags", "+bitexact",
                            "-flags:a", "+bitexact")
    if duration_s < loudness.MIN_MEASURE_S or _TEE_UNSAFE.search(str(out)):
        # short clips are metered looped, which needs a file; odd paths would need escaping
        done = ff.run([*encode, "-f", muxer, str(out)], what="ffmpeg (render)")
        return (loudness.measure(out, duration_s),
                loudness.counted_ms(done.stderr, rate, "ffmpeg (render)"))
    meter = ff.ffmpeg_args("-f", muxer, "-i", "pipe:0", "-af", loudness.meter("m"),
                           "-f", "null", "-")
    with tempfile.TemporaryFile() as encode_err:
        enc = subprocess.Popen([*encode, "-f", "tee", f"[f={muxer}]{out}|[f={muxer}]pipe:1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=encode_err)
        assert enc.stdout is not None  # stdout=PIPE
        try:
            met = subprocess.Popen(meter, stdin=enc.stdout, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        except OSError:
            enc.kill()
            enc.wait()
            raise
        finally:
            enc.stdout.close()
        try:
            _, met_err = met.communicate(timeout=900)
            enc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for proc in (enc, met):
                proc.kill()
                proc.wait()
            raise ff.AudioError("ffmpeg (render) took longer than 900 s") from None
        encode_err.seek(0)
        enc_err = encode_err.read()
        if enc.returncode != 0:
            raise ff.AudioError(f"ffmpeg (render) failed (exit {enc.returncode}): "
                                f"{ff.tail(enc_err)}")
    found = loudness.parse_ebur128(met_err.decode("utf-8", errors="replace")).get("m")
    if met.returncode != 0 or found is None:
        raise ff.AudioError(f"ffmpeg (meter) failed (exit {met.returncode}): "
                            f"{ff.tail(met_err)}")
    return found, loudness.counted_ms(enc_err, rate, "ffmpeg (render)")


@lru_cache(maxsize=32)
def _chime_measure(path: str, mtime: float, size: int) -> tuple[loudness.Loudness, float]:
    return loudness.measure(path), probe_duration_ms(path) / 1000.0


def _chime_info(path: Path) -> tuple[loudness.Loudness, float]:
    st = path.stat()
    return _chime_measure(str(path), st.st_mtime, st.st_size)


def _chime_gain(path: Path, target: float, ceiling: float, margin: float) -> float:
    """The gain that puts a chime at the target loudness without a limiter."""
    measured, _ = _chime_info(path)
    gain = target - measured.integrated_lufs
    if measured.true_peak_dbtp is not None:
        gain = min(gain, ceiling - margin - measured.true_peak_dbtp)
    return gain


def _duration_s(path: Path) -> float:
    return _chime_info(path)[1]


@lru_cache(maxsize=32)
def _digest_cached(path: str, mtime: float, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_digest(path: Path) -> str:
    st = path.stat()
    return _digest_cached(str(path), st.st_mtime, st.st_size)


def render_to_file(rendered: Rendered, dest: str | os.PathLike[str]) -> Path:
    """Write rendered audio to ``dest`` whole (temp file, then rename)."""
    return write_atomic(dest, rendered.audio)


__all__ = ["AudioSettings", "Pipeline", "Rendered", "UploadError", "find_sound",
           "normalise_text", "render_to_file"]
