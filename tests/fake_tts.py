"""A speech engine for server tests: the same ``TTSEngine`` interface as espeak and gTTS, and real
audio (a WAV tone) made in-process at once, so the pipeline (normalise, loudness, MP3, store)
still runs on every bulletin without a speech program in the loop.

Its audio follows its input: the length grows with the number of words (espeak speaks about
0.4 s a word), and the pitch and a short tail depend on the text and voice, so different texts
give different audio (and media files) and the same text the same bytes. The tail is quiet
(under -48 dBFS): a loud one peaked near full scale, so every render took the limiter's path,
with its trial pass and often a second encoding (a fifth of the server tests' ffmpeg time)."""
from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
import wave

from audio.tts import TTSEngine, register_engine

NAME = "fake"
RATE = 16000


@functools.lru_cache(maxsize=16)
def _tone(freq: int) -> bytes:
    """One second of a sine at ``freq`` Hz, 16-bit mono, about -12 dBFS."""
    amp = 0.25 * 32767
    return b"".join(struct.pack("<h", int(amp * math.sin(2 * math.pi * freq * i / RATE)))
                    for i in range(RATE))


class FakeEngine(TTSEngine):
    name = NAME
    voices = ("vi-north", "vi-central", "vi-south")

    def synthesize(self, text, voice=None):
        digest = hashlib.sha256(f"{self.resolve_voice(voice)}\n{text}".encode()).digest()
        seconds = min(max(0.4 * len(text.split()), 1.0), 6.0)
        second = _tone(220 + 20 * (digest[0] % 16))
        frames = (second * int(seconds) + second[:int(seconds % 1 * RATE) * 2]
                  + struct.pack(f"<{len(digest) * 4}h", *(b - 128 for b in digest * 4)))
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(frames)
        return out.getvalue(), "wav"


register_engine(NAME, FakeEngine)
