"""Writing the server's files (broker accounts and ACL, TLS keys, the signing key file): each
is replaced at once, so a reader never sees half a file and a crash leaves the old one."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o600) -> None:
    """Write ``text`` (UTF-8) to a new file beside ``path`` with ``mode``, flush it to disk,
    then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
