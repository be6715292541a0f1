"""What the audio pipeline made in this test run, by its input, shared by the run's test
processes (tests/conftest.py ``render_each_input_once``).

Each pytest-xdist worker is a process of its own: with a cache per process, a sentence that
tests on both workers speak went through ffmpeg on both. Here the first process to need an
input makes it and writes it down in the run's base folder (pytest's, shared by its workers
and new for every run); the others read it, or wait for it while it is being made. Only what
was made is kept: an input the pipeline refused is refused again in every process."""
from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RunRenders:
    def __init__(self, folder: Path):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.here: dict[str, Any] = {}  # what this process already read or made

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        name = hashlib.sha256(repr(key).encode()).hexdigest()
        if name in self.here:
            return self.here[name]
        path = self.folder / f"{name}.pickle"
        with open(self.folder / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process making it: wait for it
            try:
                if path.exists():
                    value = pickle.loads(path.read_bytes())
                else:
                    value = make()
                    part = path.with_suffix(f".{os.getpid()}")
                    part.write_bytes(pickle.dumps(value))
                    os.replace(part, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self.here[name] = value
        return value
