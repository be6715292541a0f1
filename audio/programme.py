"""A programme's media: broadcast-ready files (each already at the pipeline's loudness) played
back to back, re-encoded once into one file of the pipeline's output format and stored by its
sha256. The encoder runs bit-exact, so the same files in the same order give the same sha256."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from audio import ff, loudness
from audio.pipeline import FORMATS, AudioSettings
from audio.store import MediaStore, Stored

__all__ = ["concat_media", "join"]


def concat_media(sources: Sequence[str | os.PathLike[str]], settings: AudioSettings,
                 store: MediaStore, tmp_dir: str | os.PathLike[str] | None = None
                 ) -> tuple[Stored, int]:
    """The files in ``sources``, in order, as one stored file; (stored, duration in ms).
    AudioError when there is nothing to join or ffmpeg fails."""
    data, duration_ms = join(sources, settings, tmp_dir)
    return store.put(data, settings.ext), duration_ms


def join(sources: Sequence[str | os.PathLike[str]], settings: AudioSettings,
         tmp_dir: str | os.PathLike[str] | None = None) -> tuple[bytes, int]:
    """The files in ``sources``, in order, encoded as one file of the pipeline's output format:
    (its bytes, its duration in ms). AudioError when there is nothing to join or ffmpeg fails."""
    if not sources:
        raise ff.AudioError("a programme needs at least one file")
    rate = settings.sample_rate
    fmt = f"aresample={rate},aformat=sample_fmts=flt:sample_rates={rate}:channel_layouts=mono"
    inputs: list[str] = []
    graph = []
    for i, src in enumerate(sources):
        inputs += ["-i", str(src)]
        graph.append(f"[{i}:a]{fmt}[a{i}]")
    joined = "".join(f"[a{i}]" for i in range(len(sources)))
    graph.append(f"{joined}concat=n={len(sources)}:v=0:a=1,{loudness.counter()}[out]")
    _, muxer, codec, _, _ = FORMATS[settings.fmt]
    with tempfile.TemporaryDirectory(prefix="loa-programme-", dir=tmp_dir) as tmp_name:
        out = Path(tmp_name) / f"programme.{settings.ext}"
        # (at ffmpeg's default log level: the counter's line is an info line)
        done = ff.run(ff.ffmpeg_args(*inputs, "-filter_complex", ";".join(graph),
                                     "-map", "[out]", "-ac", "1", "-ar", str(rate), *codec,
                                     "-b:a", f"{settings.kbps}k", "-map_metadata", "-1",
                                     "-fflags", "+bitexact", "-flags:a", "+bitexact",
                                     "-f", muxer, str(out)), what="ffmpeg (programme)")
        return out.read_bytes(), loudness.counted_ms(done.stderr, rate, "ffmpeg (programme)")
