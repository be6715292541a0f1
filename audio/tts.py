"""Text-to-speech engines behind one small interface, and the chain that falls back from one
to the next (gTTS online, espeak-ng offline) recording which engine spoke and why."""
from __future__ import annotations

import io
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class TTSError(RuntimeError):
    """An engine could not speak the text."""


@dataclass(frozen=True)
class Speech:
    audio: bytes
    fmt: str                 # container of ``audio``: "mp3" or "wav"
    engine: str              # the engine that spoke
    voice: str
    notes: tuple[str, ...] = ()  # why earlier engines did not speak


class TTSEngine(ABC):
    name: str = ""

    @abstractmethod
    def synthesize(self, text: str, voice: str | None = None) -> tuple[bytes, str]:
        """Speak ``text``; return (audio bytes, container). Raise TTSError on failure."""


class GTTSEngine(TTSEngine):
    """Google Translate's speech (online). Fails fast when the network does not answer."""

    name = "gtts"

    def __init__(self, timeout_s: float = 4.0, tld: str = "com"):
        self.timeout_s = timeout_s
        self.tld = tld

    def synthesize(self, text, voice=None):
        from gtts import gTTS, gTTSError
        buf = io.BytesIO()
        try:
            gTTS(text, lang="vi", tld=self.tld, lang_check=False,
                 timeout=self.timeout_s).write_to_fp(buf)
        except (gTTSError, OSError, ValueError, AssertionError) as err:
            raise TTSError(f"gtts: {err}") from None
        except Exception as err:  # requests raises its own hierarchy; never let it escape
            raise TTSError(f"gtts: {type(err).__name__}: {err}") from None
        if not buf.getvalue():
            raise TTSError("gtts: empty audio")
        return buf.getvalue(), "mp3"


ESPEAK_VOICES = {"vi": "vi", "vi-north": "vi", "vi-central": "vi-vn-x-central",
                 "vi-south": "vi-vn-x-south"}


class EspeakEngine(TTSEngine):
    """espeak-ng's Vietnamese voices (offline, always there)."""

    name = "espeak"

    def __init__(self, binary: str = "espeak-ng", speed_wpm: int = 150):
        self.binary = binary
        self.speed_wpm = speed_wpm

    def synthesize(self, text, voice=None):
        exe = shutil.which(self.binary)
        if exe is None:
            raise TTSError("espeak: espeak-ng is not installed")
        v = ESPEAK_VOICES.get(voice or "vi", "vi")
        run = subprocess.run([exe, "-v", v, "-s", str(self.speed_wpm), "--stdout"],
                             input=text.encode("utf-8"), capture_output=True, timeout=120)
        if run.returncode != 0 or len(run.stdout) < 100:
            raise TTSError(f"espeak: exit {run.returncode}: "
                           f"{run.stderr.decode(errors='replace')[:200]}")
        return run.stdout, "wav"


@dataclass
class EngineChain:
    """Tries each engine in order; the first that speaks wins."""

    engines: list[TTSEngine] = field(default_factory=list)

    def speak(self, text: str, voice: str | None = None) -> Speech:
        if not text.strip():
            raise TTSError("no text to speak")
        notes = []
        for engine in self.engines:
            try:
                audio, fmt = engine.synthesize(text, voice)
            except TTSError as err:
                notes.append(str(err))
                continue
            return Speech(audio, fmt, engine.name, voice or "vi", tuple(notes))
        raise TTSError("; ".join(notes) or "no engine configured")


def build_chain(names: list[str], gtts_timeout_s: float = 4.0) -> EngineChain:
    """The chain for configured engine names, in order."""
    known = {"gtts": lambda: GTTSEngine(gtts_timeout_s), "espeak": EspeakEngine}
    return EngineChain([known[n]() for n in names])
