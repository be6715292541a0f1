"""The Flask shell's view of the running app: its settings. Only request-time code calls this."""
from __future__ import annotations

from flask import current_app

from .config import Settings


def settings() -> Settings:
    return current_app.config["SETTINGS"]
