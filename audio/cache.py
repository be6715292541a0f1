"""On-disk caches that keep the same text from being spoken or processed twice.

``SpeechCache`` holds what an engine said, keyed by sha256 of (engine, voice, normalised text);
``RenderCache`` remembers which stored, broadcast-ready file a given speech and set of pipeline
settings produced. Files are written whole then renamed, so a crash never leaves half an entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio.files import TEMP_SUFFIX, write_atomic


def digest(*parts: Any) -> str:
    """sha256 over a JSON list of ``parts`` (unambiguous: no separator can collide)."""
    blob = json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _write_entry(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


@dataclass(frozen=True)
class CachedSpeech:
    key: str
    audio: bytes
    fmt: str


class SpeechCache:
    """Engine output by key; ``key(engine, voice, text)`` makes the key."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    @staticmethod
    def key(engine: str, voice: str, text: str) -> str:
        return digest("speech", engine, voice, text)

    def _dir(self, key: str) -> Path:
        return self.root / "speech" / key[:2]

    def get(self, key: str) -> CachedSpeech | None:
        folder = self._dir(key)
        try:
            names = [n for n in os.listdir(folder) if n.startswith(key + ".")
                     and not n.endswith(TEMP_SUFFIX)]
        except FileNotFoundError:
            return None
        if not names:
            return None
        path = folder / names[0]
        try:
            return CachedSpeech(key, path.read_bytes(), path.suffix[1:])
        except FileNotFoundError:
            return None

    def put(self, key: str, audio: bytes, fmt: str) -> None:
        _write_entry(self._dir(key) / f"{key}.{fmt}", audio)


class RenderCache:
    """The summary (a JSON object) of a finished render, by key."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / "render" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            summary = json.loads(self._path(key).read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return summary if isinstance(summary, dict) else None

    def put(self, key: str, summary: dict[str, Any]) -> None:
        _write_entry(self._path(key), json.dumps(summary, ensure_ascii=False).encode("utf-8"))
