"""Writing files whole: the audio package's one way to replace a file, so that a crash or a
second process never leaves (or reads) half a file: the data goes to a temporary sibling that
is renamed over the target in one step."""
from __future__ import annotations

import os
import threading
from pathlib import Path

TEMP_SUFFIX = ".tmp"   # readers of a folder skip names ending so (cache.SpeechCache does)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path``'s content with ``data`` in one step; the folder must exist."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}{TEMP_SUFFIX}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
