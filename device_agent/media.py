"""The media cache: audio files in state_dir/media named by their sha256, downloaded over HTTP(S)
with a timeout, checked against the sha256 the signed command names, and a background fetcher.

A file enters the cache only after its hash matched, so a cached file is trusted; it is still
re-hashed once per run before its first play (SD cards do rot).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlparse

from .files import TEMP_SUFFIX, atomic_file
from .schemas import NodeReason

log = logging.getLogger(__name__)

SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,5}$")
CHUNK = 64 * 1024


class MediaError(Exception):
    """A media file that cannot be had; ``reason`` is media_mismatch or media_unavailable."""

    def __init__(self, reason: NodeReason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def suffix_for(url: str) -> str:
    """The file suffix to keep (players and the file sink like one): from the URL path."""
    suffix = PurePosixPath(urlparse(url).path).suffix.lower()
    return suffix if SUFFIX_RE.match(suffix) else ".audio"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_checked(source: BinaryIO, dest: BinaryIO, url: str, sha: str, limit: int) -> None:
    """Copy a download into ``dest``; MediaError ``media_mismatch`` when it is larger than
    ``limit`` bytes (0: no limit) or its sha256 is not ``sha`` (nothing is kept then)."""
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = source.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if limit and size > limit:
            raise MediaError(NodeReason.MEDIA_MISMATCH,
                             f"{url} is larger than the {limit} bytes named")
        h.update(chunk)
        dest.write(chunk)
    digest = h.hexdigest()
    if digest != sha:
        raise MediaError(NodeReason.MEDIA_MISMATCH, f"{url} has sha256 {digest}, expected {sha}")


class MediaCache:
    """Content-addressed files ``<sha256><suffix>`` in ``directory``."""

    def __init__(self, directory: str | Path, timeout_s: float = 30.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._verified: set[str] = set()
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path | None:
        """The cached file for ``sha256``, or None (a file that no longer matches is removed)."""
        for candidate in self.directory.glob(f"{sha256}.*"):
            if candidate.name.endswith(TEMP_SUFFIX):
                continue
            with self._lock:
                known = sha256 in self._verified
            if known:
                return candidate
            if sha256_file(candidate) == sha256:
                with self._lock:
                    self._verified.add(sha256)
                return candidate
            log.warning("cached %s no longer matches its hash; removed", candidate.name)
            candidate.unlink(missing_ok=True)
        return None

    def has(self, sha256: str) -> bool:
        return self.path(sha256) is not None

    def fetch(self, media: Mapping[str, Any]) -> Path:
        """Download ``media`` (``sha256``, ``url``, ``bytes``) unless cached; return its path.

        Raises MediaError: ``media_mismatch`` when the content's hash or size is not the one
        named, ``media_unavailable`` when it cannot be downloaded.
        """
        sha = media["sha256"]
        cached = self.path(sha)
        if cached:
            return cached
        url = media["url"]
        if urlparse(url).scheme not in ("http", "https"):
            raise MediaError(NodeReason.MEDIA_UNAVAILABLE, f"not an http(s) URL: {url}")
        limit = int(media.get("bytes") or 0)
        final = self.directory / f"{sha}{suffix_for(url)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as resp, \
                    atomic_file(final) as f:
                _copy_checked(resp, f, url, sha, limit)
        except MediaError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise MediaError(NodeReason.MEDIA_UNAVAILABLE, f"{url}: {err}") from None
        with self._lock:
            self._verified.add(sha)
        return final

    def total_bytes(self) -> int:
        total = 0
        for p in self.directory.iterdir():
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total

    def prune(self, keep: Iterable[str], max_bytes: int) -> list[str]:
        """Delete the least recently used files not in ``keep`` until the cache fits
        ``max_bytes``; return the removed hashes."""
        keep = set(keep)
        files = []
        for p in self.directory.iterdir():
            if p.name.endswith(TEMP_SUFFIX):
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            files.append((max(st.st_atime, st.st_mtime), st.st_size, p))
        total = sum(size for _, size, _ in files)
        removed = []
        for _, size, p in sorted(files, key=lambda f: f[0]):
            if total <= max_bytes:
                break
            sha = p.name.split(".")[0]
            if sha in keep:
                continue
            p.unlink(missing_ok=True)
            with self._lock:
                self._verified.discard(sha)
            total -= size
            removed.append(sha)
        return removed


class Fetcher:
    """One background thread that downloads into the cache, one request per hash at a time;
    ``on_done(sha256, error_or_None)`` is called from that thread when a download ends."""

    def __init__(self, cache: MediaCache, on_done: Callable[[str, MediaError | None], None]):
        self.cache = cache
        self._on_done = on_done
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="loa-fetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def request(self, media: Mapping[str, Any]) -> bool:
        """Queue a download; False when one for the same hash is already under way."""
        with self._lock:
            if media["sha256"] in self._inflight:
                return False
            self._inflight.add(media["sha256"])
        self._queue.put(dict(media))
        return True

    def _run(self) -> None:
        while True:
            media = self._queue.get()
            if media is None:
                return
            error = None
            try:
                self.cache.fetch(media)
            except MediaError as err:
                error = err
                log.warning("media %s: %s", media["sha256"][:12], err)
            except Exception as err:  # noqa: BLE001 - one bad download must not kill the thread
                error = MediaError(NodeReason.MEDIA_UNAVAILABLE, f"{media.get('url')}: {err}")
                log.exception("media download failed")
            with self._lock:
                self._inflight.discard(media["sha256"])
            self._on_done(media["sha256"], error)
