"""Writing files whole: the agent's one way to replace a file so that a power cut or a crash
leaves either the old content or the new, never half of it (SD cards on a Pi lose power)."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".part"   # readers of a folder skip names ending so (media.MediaCache does)


def temp_path(path: Path) -> Path:
    """The temporary sibling ``path`` is written to: unique per process and thread."""
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}{TEMP_SUFFIX}")


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a binary file to write ``path``'s new content into. When the block ends normally
    the data is flushed to disk and the file takes ``path``'s place in one rename; when the block
    raises, the temporary file is removed and ``path`` is left as it was."""
    target = Path(path)
    tmp = temp_path(target)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path``'s content with ``data`` in one step (see ``atomic_file``)."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)
