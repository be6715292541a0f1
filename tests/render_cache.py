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
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import audio.programme
from audio.pipeline import Pipeline


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


def _fields(settings) -> str:
    """What of ``settings`` changes a render, as text: the same for the same values, whether a
    field holds an enum's member (a default) or the string it stands for (from a config)."""
    return json.dumps(settings.render_fields(), sort_keys=True)


def render_through(renders: RunRenders, mp: pytest.MonkeyPatch) -> None:
    """The audio pipeline's renders and programme joins through ``renders`` while ``mp``
    holds (``render_each_input_once``; a module's fixtures with a MonkeyPatch of their own).
    Already so (a module's fixture did it): left as it is, as a render must not wait for
    itself."""
    if getattr(Pipeline._process, "renders", None) is renders:
        return
    process = Pipeline._process
    join = audio.programme.join

    def once(self, pcm, settings, tmp, timer):
        key = (hashlib.sha256(pcm.path.read_bytes()).hexdigest(), pcm.sample_fmt, pcm.width,
               pcm.rate, _fields(settings))
        return renders.get(key, lambda: process(self, pcm, settings, tmp, timer))

    def join_once(sources, settings, tmp_dir=None):
        key = ("join", tuple(hashlib.sha256(Path(src).read_bytes()).hexdigest()
                             for src in sources), _fields(settings))
        return renders.get(key, lambda: join(sources, settings, tmp_dir))

    once.renders = join_once.renders = renders  # type: ignore[attr-defined]
    mp.setattr(Pipeline, "_process", once)
    mp.setattr(audio.programme, "join", join_once)
