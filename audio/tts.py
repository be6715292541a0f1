"""Text-to-speech engines behind one small interface, a registry that names them (so a user can
add one, e.g. a local neural voice), and the chain that falls back from one to the next, caching
what each said and recording which engine spoke and why the others did not."""
from __future__ import annotations

import io
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from audio.cache import SpeechCache


class TTSError(RuntimeError):
    """An engine (or every engine of a chain) could not speak the text."""


MAX_SPEECH_BYTES = 256 * 1024 * 1024   # more audio than this from an engine is refused
MAX_SPEECH_S = 2 * 3600                 # joined speech is decoded no further than this


def run_capped(argv: Sequence[str], text: str, timeout_s: float,
               max_bytes: int = MAX_SPEECH_BYTES) -> tuple[int, bytes, bytes]:
    """Run a speech program with ``text`` on stdin; (exit code, stdout, end of stderr).

    Its output is read as it comes and the program killed once it passes ``max_bytes`` or
    ``timeout_s``, so a program gone wrong cannot fill the memory (TTSError then)."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err = bytearray()
    threads = [threading.Thread(target=_feed, args=(proc.stdin, text), daemon=True),
               threading.Thread(target=_drain_tail, args=(proc.stderr, err), daemon=True)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout_s
    try:
        out = _read_capped(proc.stdout, deadline, timeout_s, max_bytes)
        proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise TTSError(f"took longer than {timeout_s:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        for th in threads:
            th.join(1.0)
    return proc.returncode, bytes(out), bytes(err)


def _feed(stdin: IO[bytes], text: str) -> None:
    try:
        stdin.write(text.encode("utf-8"))
        stdin.close()
    except OSError:
        pass


def _drain_tail(stderr: IO[bytes], tail: bytearray) -> None:
    """Read ``stderr`` to its end, keeping only its last 4 KiB in ``tail``."""
    for chunk in iter(lambda: stderr.read(4096), b""):
        tail.extend(chunk)
        del tail[:-4096]


def _read_capped(stdout: IO[bytes], deadline: float, timeout_s: float,
                 max_bytes: int) -> bytearray:
    """All of ``stdout`` until its end; TTSError past ``deadline`` or ``max_bytes``."""
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TTSError(f"took longer than {timeout_s:g} s")
        ready, _, _ = select.select([stdout], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(stdout.fileno(), 1 << 16)
        if not chunk:
            return out
        out.extend(chunk)
        if len(out) > max_bytes:
            raise TTSError(f"wrote more than {max_bytes // (1024 * 1024)} MB of audio")


class Container(StrEnum):
    """What an engine hands its speech back in."""
    WAV = "wav"
    MP3 = "mp3"


@dataclass(frozen=True)
class Speech:
    audio: bytes
    fmt: str                 # container of ``audio``: a Container
    engine: str              # the engine that spoke
    voice: str               # the voice it spoke with (canonical name)
    notes: tuple[str, ...] = ()  # why earlier engines did not speak
    cached: bool = False     # True when the audio came from the speech cache
    key: str = ""            # sha256 of (engine, voice, text): the speech cache key


class Voice(StrEnum):
    """The canonical Vietnamese voices: one for each region's way of speaking."""
    NORTH = "vi-north"
    CENTRAL = "vi-central"
    SOUTH = "vi-south"


# the aliases users may give, and the canonical names themselves
VOICE_ALIASES: dict[str, Voice] = {"vi": Voice.NORTH, "north": Voice.NORTH,
                                   "central": Voice.CENTRAL, "south": Voice.SOUTH,
                                   **{voice.value: voice for voice in Voice}}
DEFAULT_VOICE = Voice.NORTH


def canonical_voice(voice: str | None) -> str:
    """"vi" and friends -> "vi-north"; names this module does not know are kept as given."""
    if not voice:
        return DEFAULT_VOICE
    return VOICE_ALIASES.get(voice.strip().lower(), voice.strip())


class TTSEngine(ABC):
    """One speech engine. Subclasses set ``name`` and ``voices`` and implement ``synthesize``."""

    name: str = ""
    voices: tuple[str, ...] = (DEFAULT_VOICE,)
    # After a failure the chain skips this engine for this long (online engines: no point
    # waiting for the same timeout on every bulletin while the 4G link is down).
    cooldown_s: float = 0.0

    def resolve_voice(self, voice: str | None) -> str:
        """The voice this engine will speak for a requested one; TTSError if it has none."""
        v = canonical_voice(voice)
        if v not in self.voices:
            raise TTSError(f"no voice {voice!r} (has {', '.join(self.voices)})")
        return v

    @property
    def fingerprint(self) -> str:
        """What distinguishes this engine's output in cache keys (name plus output settings)."""
        return self.name

    @abstractmethod
    def synthesize(self, text: str, voice: str | None = None) -> tuple[bytes, str]:
        """Speak ``text``; return (audio bytes, container: "wav" or "mp3"). Raise TTSError."""


# --- gTTS ---------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…;])\s+|\s*\n+\s*")


def split_sentences(text: str, max_chars: int = 100) -> list[str]:
    """Sentences of ``text``, short neighbours packed together up to ``max_chars``.

    A sentence longer than ``max_chars`` stays whole here; gTTS cuts it further at commas.
    """
    chunks: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
        if not sentence:
            continue
        if chunks and len(chunks[-1]) + 1 + len(sentence) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {sentence}"
        else:
            chunks.append(sentence)
    return chunks


def _gtts_class() -> Any:
    from gtts import gTTS

    class EndpointGTTS(gTTS):  # type: ignore[misc]  # gTTS ships no type information
        """gTTS aimed at another endpoint (a mirror, or a local stand-in in tests)."""

        def __init__(self, *args: Any, endpoint: str | None = None, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.endpoint = endpoint

        def _prepare_requests(self) -> Any:
            requests_ = super()._prepare_requests()
            if self.endpoint:
                for prepared in requests_:
                    prepared.prepare_url(self.endpoint, None)
            return requests_

    return EndpointGTTS


def _gtts_reason(err: BaseException, timeout_s: float) -> str:
    """One line on why gTTS failed, looking through gTTS's generic message at the cause."""
    import requests
    cause = err.__context__ or err.__cause__
    if isinstance(cause, requests.exceptions.Timeout):
        return f"no answer within {timeout_s:g} s"
    if isinstance(cause, requests.exceptions.ConnectionError):
        return "cannot connect to the gTTS endpoint (offline?)"
    return str(err).strip() or type(err).__name__


class GTTSEngine(TTSEngine):
    """Google Translate's speech (online). Long text is sent sentence by sentence and the
    parts joined into one audio; a request that does not answer within ``timeout_s`` fails."""

    name = "gtts"
    voices = tuple(Voice)   # Google has one Vietnamese voice
    cooldown_s = 60.0

    def __init__(self, timeout_s: float = 4.0, tld: str = "com", endpoint: str | None = None,
                 cooldown_s: float | None = None):
        self.timeout_s = timeout_s
        self.tld = tld
        self.endpoint = endpoint
        if cooldown_s is not None:
            self.cooldown_s = cooldown_s

    def resolve_voice(self, voice: str | None) -> str:
        super().resolve_voice(voice)
        return "vi"

    @property
    def fingerprint(self) -> str:
        return f"gtts/{self.tld}"

    def synthesize(self, text: str, voice: str | None = None) -> tuple[bytes, str]:
        from gtts import gTTSError
        cls = _gtts_class()
        parts: list[bytes] = []
        for chunk in split_sentences(text, cls.GOOGLE_TTS_MAX_CHARS):
            buf = io.BytesIO()
            try:
                cls(chunk, lang="vi", tld=self.tld, lang_check=False, timeout=self.timeout_s,
                    endpoint=self.endpoint).write_to_fp(buf)
            except gTTSError as err:
                raise TTSError(_gtts_reason(err, self.timeout_s)) from None
            except (AssertionError, ValueError) as err:
                raise TTSError(f"gTTS refused the text: {err}") from None
            except Exception as err:  # requests raises its own hierarchy; never let it escape
                raise TTSError(f"{type(err).__name__}: {err}") from None
            if not buf.getvalue():
                raise TTSError("gTTS returned no audio")
            parts.append(buf.getvalue())
        if not parts:
            raise TTSError("no text to speak")
        if len(parts) == 1:
            return parts[0], Container.MP3
        return join_audio(parts, Container.MP3), Container.WAV


def join_audio(parts: Sequence[bytes], fmt: str, rate: int = 24000) -> bytes:
    """Decode ``parts`` (each a whole file in ``fmt``) and join them into one mono WAV."""
    from audio import ff
    with tempfile.TemporaryDirectory(prefix="loa-join-") as tmp:
        listing = []
        for i, part in enumerate(parts):
            p = Path(tmp) / f"{i:04d}.{fmt}"
            p.write_bytes(part)
            listing.append(f"file '{p}'")
        (Path(tmp) / "list.txt").write_text("\n".join(listing) + "\n")
        try:
            done = ff.run(ff.ffmpeg_args("-loglevel", "error", "-f", "concat", "-safe", "0",
                                         "-i", str(Path(tmp) / "list.txt"), "-ac", "1",
                                         "-ar", str(rate), "-c:a", "pcm_s16le",
                                         "-t", str(MAX_SPEECH_S), "-f", "wav", "pipe:1"),
                               timeout=300, what="ffmpeg (join)")
        except ff.AudioError as err:
            raise TTSError(f"could not join the spoken parts: {err}") from None
    return fix_wav_sizes(done.stdout)      # written to a pipe: the header's sizes are guesses


# --- espeak-ng ----------------------------------------------------------------------------------

ESPEAK_VOICES: dict[str, str] = {Voice.NORTH: "vi", Voice.CENTRAL: "vi-vn-x-central",
                                  Voice.SOUTH: "vi-vn-x-south"}


def fix_wav_sizes(wav: bytes) -> bytes:
    """espeak-ng writing to a pipe cannot seek back, so its RIFF and data sizes are
    placeholders; put the real ones in so every reader agrees on the length."""
    if len(wav) < 44 or wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return wav
    pos = 12
    while pos + 8 <= len(wav):
        chunk, size = wav[pos:pos + 4], struct.unpack_from("<I", wav, pos + 4)[0]
        if chunk == b"data":
            data_len = len(wav) - pos - 8
            data_len -= data_len % 2
            out = bytearray(wav[:pos + 8 + data_len])
            struct.pack_into("<I", out, 4, len(out) - 8)
            struct.pack_into("<I", out, pos + 4, data_len)
            return bytes(out)
        pos += 8 + size + (size & 1)
    return wav


class EspeakEngine(TTSEngine):
    """espeak-ng's Vietnamese voices (offline, always there): Northern, Central, Southern.

    espeak's speed counts English-length words: 110 gives about 150 Vietnamese syllables a
    minute, the pace of a read bulletin (and slow enough to carry over outdoor horns).
    """

    name = "espeak"
    voices = tuple(ESPEAK_VOICES)

    def __init__(self, binary: str = "espeak-ng", speed_wpm: int = 110, timeout_s: float = 120):
        self.binary = binary
        self.speed_wpm = speed_wpm
        self.timeout_s = timeout_s

    @property
    def fingerprint(self) -> str:
        return f"espeak/{self.speed_wpm}"

    def synthesize(self, text: str, voice: str | None = None) -> tuple[bytes, str]:
        exe = shutil.which(self.binary)
        if exe is None:
            raise TTSError("espeak-ng is not installed")
        v = ESPEAK_VOICES[self.resolve_voice(voice)]
        try:
            code, out, err = run_capped([exe, "-v", v, "-s", str(self.speed_wpm), "--stdout"],
                                        text, self.timeout_s)
        except TTSError as why:
            raise TTSError(f"espeak-ng {why}") from None
        if code != 0 or len(out) <= 44:
            raise TTSError(f"exit {code}: {err.decode(errors='replace')[:200]}")
        return fix_wav_sizes(out), Container.WAV


# --- any local program (e.g. a neural voice such as Piper) ------------------------------------

class CommandEngine(TTSEngine):
    """A program that reads text on stdin and writes audio on stdout. ``argv`` may hold
    ``{voice}``, replaced by ``voice_args[voice]`` (or the voice name itself)."""

    def __init__(self, name: str, argv: Sequence[str], fmt: str = Container.WAV,
                 voices: Mapping[str, str] | None = None, timeout_s: float = 300,
                 max_bytes: int = MAX_SPEECH_BYTES):
        self.name = name
        self.max_bytes = max_bytes
        self.argv = list(argv)
        self.fmt = fmt
        self.voice_args = dict(voices or {DEFAULT_VOICE: DEFAULT_VOICE})
        self.voices = tuple(self.voice_args)
        self.timeout_s = timeout_s

    @property
    def fingerprint(self) -> str:
        return f"{self.name}/" + " ".join(self.argv)

    def synthesize(self, text: str, voice: str | None = None) -> tuple[bytes, str]:
        v = self.voice_args[self.resolve_voice(voice)]
        argv = [a.replace("{voice}", v) for a in self.argv]
        try:
            code, out, err = run_capped(argv, text, self.timeout_s, self.max_bytes)
        except FileNotFoundError:
            raise TTSError(f"{argv[0]} is not installed") from None
        if code != 0 or not out:
            raise TTSError(f"exit {code}: {err.decode(errors='replace')[:200]}")
        audio = fix_wav_sizes(out) if self.fmt == Container.WAV else out
        return audio, self.fmt


# --- registry -----------------------------------------------------------------------------------

EngineFactory = Callable[..., TTSEngine]
_REGISTRY: dict[str, EngineFactory] = {GTTSEngine.name: GTTSEngine,
                                       EspeakEngine.name: EspeakEngine}
# the chain when none is configured: Google's voice while it answers, espeak-ng offline
DEFAULT_ENGINES = (GTTSEngine.name, EspeakEngine.name)
ENTRY_POINT_GROUP = "loaphuong.tts_engines"


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``name`` usable in engine lists; ``factory(**options)`` builds the engine.
    Installed packages can do the same through the ``loaphuong.tts_engines`` entry points."""
    _REGISTRY[name] = factory


def engine_names() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def unknown_engines(names: Iterable[str]) -> set[str]:
    """Those of ``names`` no engine is registered as. The installed packages' entry points are
    read only when a name is not known yet (reading them costs milliseconds, at every start
    and every settings check)."""
    unknown = set(names) - set(_REGISTRY)
    if unknown:
        _load_entry_points()
        unknown -= set(_REGISTRY)
    return unknown


def _load_entry_points() -> None:
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTRY.setdefault(ep.name, ep.load())


def create_engine(name: str, **options: Any) -> TTSEngine:
    """The engine registered as ``name``; ValueError naming the known ones if there is none."""
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown TTS engine {name!r}; known: {', '.join(engine_names())}")
    return _REGISTRY[name](**options)


# --- the chain ----------------------------------------------------------------------------------

@dataclass
class EngineChain:
    """Tries each engine in order, each first through the speech cache; the first that speaks
    wins, and the Speech it returns notes why each engine before it did not."""

    engines: list[TTSEngine] = field(default_factory=list)
    cache: SpeechCache | None = None
    clock: Callable[[], float] = time.monotonic
    _failed: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def order(self, engine: str | None = None) -> list[TTSEngine]:
        """The engines in the order they will be tried; ``engine`` (a bulletin's choice) first."""
        if engine is None:
            return list(self.engines)
        chosen = [e for e in self.engines if e.name == engine]
        if not chosen:
            raise TTSError(f"engine {engine!r} is not configured "
                           f"(configured: {', '.join(e.name for e in self.engines)})")
        return chosen + [e for e in self.engines if e.name != engine]

    def first_ready(self, engine: str | None = None) -> TTSEngine | None:
        """The engine the chain would try first now (one cooling down after a failure is not)."""
        for e in self.order(engine):
            if self._cooling(e) is None:
                return e
        return None

    def key(self, engine: TTSEngine, voice: str | None, text: str) -> str:
        return SpeechCache.key(engine.fingerprint, engine.resolve_voice(voice), text)

    def _cooling(self, engine: TTSEngine) -> str | None:
        failed = self._failed.get(engine.name)
        if failed is None or engine.cooldown_s <= 0:
            return None
        ago = self.clock() - failed[0]
        if ago >= engine.cooldown_s:
            return None
        return f"skipped: failed {ago:.0f} s ago ({failed[1]})"

    def speak(self, text: str, voice: str | None = None, engine: str | None = None) -> Speech:
        """Speak ``text`` (already normalised); TTSError with every reason if no engine can."""
        text = text.strip()
        if not text:
            raise TTSError("no text to speak")
        notes: list[str] = []
        for eng in self.order(engine):
            try:
                resolved = eng.resolve_voice(voice)
            except TTSError as err:
                notes.append(f"{eng.name}: {err}")
                continue
            key = SpeechCache.key(eng.fingerprint, resolved, text)
            if self.cache is not None:
                hit = self.cache.get(key)
                if hit is not None:
                    return Speech(hit.audio, hit.fmt, eng.name, resolved, tuple(notes), True, key)
            skipped = self._cooling(eng)
            if skipped:
                notes.append(f"{eng.name}: {skipped}")
                continue
            try:
                audio, fmt = eng.synthesize(text, voice)
            except TTSError as err:
                reason = str(err)
                with self._lock:
                    self._failed[eng.name] = (self.clock(), reason)
                notes.append(f"{eng.name}: {reason}")
                continue
            with self._lock:
                self._failed.pop(eng.name, None)
            if self.cache is not None:
                self.cache.put(key, audio, fmt)
            return Speech(audio, fmt, eng.name, resolved, tuple(notes), False, key)
        raise TTSError("; ".join(notes) or "no engine configured")


def build_chain(names: Sequence[str], gtts_timeout_s: float = 4.0, *,
                cache_dir: str | os.PathLike[str] | None = None, gtts_endpoint: str | None = None,
                options: Mapping[str, Mapping[str, Any]] | None = None,
                commands: Mapping[str, Mapping[str, Any]] | None = None) -> EngineChain:
    """The chain for configured engine names, in order (ValueError for an unknown name).

    ``options`` maps an engine name to keyword arguments for its factory; ``commands`` names
    local programs (CommandEngine keyword arguments: argv, fmt, voices, timeout_s) usable as
    engines; ``cache_dir`` turns the speech cache on.
    """
    options = dict(options or {})
    options[GTTSEngine.name] = {"timeout_s": gtts_timeout_s, "endpoint": gtts_endpoint,
                                **options.get(GTTSEngine.name, {})}
    commands = commands or {}
    engines = [CommandEngine(n, **commands[n]) if n in commands
               else create_engine(n, **options.get(n, {})) for n in names]
    cache = SpeechCache(cache_dir) if cache_dir is not None else None
    return EngineChain(engines, cache)
