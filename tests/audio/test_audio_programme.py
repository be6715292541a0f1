"""A programme's media: broadcast-ready bulletins joined back to back into one broadcast-ready
file, as long as they are together, the same files in the same order giving the same bytes
(the store names it by its sha256), in mp3 as in opus."""
from __future__ import annotations

import pytest

from audio.ff import AudioError
from audio.pipeline import AudioSettings, Pipeline
from audio.programme import concat_media
from audio.store import MediaStore
from audio.tts import build_chain
from tests.audio.helpers import assert_broadcast_ready


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_bulletins_join_into_one_broadcast_ready_file(tmp_path, fmt):
    store = MediaStore(tmp_path / "media")
    settings = AudioSettings(fmt=fmt)
    pipeline = Pipeline(store, build_chain(["espeak"]), settings)
    one = pipeline.render_text("Phường thông báo lịch tiêm chủng cho trẻ em.")
    two = pipeline.render_text("Bà con giữ gìn vệ sinh môi trường khu phố.")
    assert one.stored is not None and two.stored is not None
    paths = [one.stored.path, two.stored.path]
    stored, duration_ms = concat_media(paths, settings, store)
    assert stored.path.is_file() and stored.path.suffix == f".{fmt}"
    assert abs(duration_ms - one.duration_ms - two.duration_ms) < 300
    assert_broadcast_ready(stored.path, codec=fmt)
    again, _ = concat_media(paths, settings, store)
    assert again.sha256 == stored.sha256
    swapped, _ = concat_media(list(reversed(paths)), settings, store)
    assert swapped.sha256 != stored.sha256


def test_nothing_to_join_is_an_error(tmp_path):
    with pytest.raises(AudioError):
        concat_media([], AudioSettings(), MediaStore(tmp_path))
