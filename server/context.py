"""The Flask shell's view of the running app: its settings, database sessions and the audio
pipeline it keeps. Only request-time code (api, web, auth, i18n) calls these; the domain
modules take what they need as arguments."""
from __future__ import annotations

import threading

from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from .bulletins import Speech, make_pipeline
from .config import Settings

_pipeline_lock = threading.Lock()


def settings() -> Settings:
    s: Settings = current_app.config["SETTINGS"]
    return s


def sessions() -> sessionmaker[Session]:
    maker: sessionmaker[Session] = current_app.extensions["db_sessions"]
    return maker


def speech() -> Speech:
    """The app's settings and its one audio pipeline (made on first use; its engine chain
    remembers when gTTS last failed)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    with _pipeline_lock:
        p = app.extensions.get("audio_pipeline")
        if p is None:
            p = app.extensions["audio_pipeline"] = make_pipeline(app.config["SETTINGS"])
        return Speech(app.config["SETTINGS"], p)
