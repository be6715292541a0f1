"""The content-addressed media store, and the duration of a stored file."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from audio.ff import AudioError, binary
from audio.files import write_atomic

__all__ = ["AudioError", "MediaStore", "Stored", "probe_duration_ms"]


def probe_duration_ms(path: str | os.PathLike[str]) -> int:
    """The duration ffprobe reads from a file, in milliseconds."""
    run = subprocess.run([binary("ffprobe"), "-v", "error", "-show_entries", "format=duration",
                          "-of", "json", str(path)], capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    try:
        return int(round(float(json.loads(run.stdout)["format"]["duration"]) * 1000))
    except (ValueError, KeyError, TypeError):
        raise AudioError(f"ffprobe could not read {path}") from None


@dataclass(frozen=True)
class Stored:
    sha256: str
    ext: str
    bytes: int
    path: Path


class MediaStore:
    """Immutable files named by their sha256, fanned out into two-character folders."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, data: bytes, ext: str) -> Stored:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.path(sha, ext)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data)
        return Stored(sha, ext, len(data), dest)
