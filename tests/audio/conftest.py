"""Audio tests: Vietnamese normalisation, the speech engines (espeak-ng, gTTS against a local
stand-in) and the pipeline (ffmpeg). The API upload test uses ``make_app`` (tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

# modules whose files (module-scoped fixtures: ten formats of a tone, a long MP3, damaged
# copies) take seconds of ffmpeg to make
WHOLE_MODULES = {"test_audio_upload.py", "test_upload_bounds.py"}


@pytest.fixture
def media(tmp_path) -> Path:
    """Where a test's media store keeps its files (made when the first is stored)."""
    return tmp_path / "media"


def pytest_collection_modifyitems(items):
    """Under ``--dist loadgroup`` each module of WHOLE_MODULES runs on one worker, which makes
    its files once, instead of on every worker that gets one of its tests."""
    for item in items:
        if item.path.parent.name == "audio" and item.path.name in WHOLE_MODULES:
            item.add_marker(pytest.mark.xdist_group(f"audio-{item.path.stem}"))
