"""LoaPhuong server: ``create_app()`` builds the Flask app (web pages, REST API, media)."""
from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from flask import Flask, jsonify, send_file
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from werkzeug.routing import IntegerConverter
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .config import Settings, load_settings
from .models import (MAX_DB_ID, AgentRelease, AppSecret, Media, WorkerStatus, init_db,
                     make_engine, make_sessionmaker, utcnow)
from .request_globals import g

if TYPE_CHECKING:
    from flask import Response
    from werkzeug.routing import Map

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None,
               instance_path: str | os.PathLike[str] | None = None) -> Flask:
    """Build the app. Settings: defaults < instance/config.toml < LOA_* env < ``test_config``."""
    instance = Path(instance_path or os.environ.get("LOA_INSTANCE") or "instance").resolve()
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    app.jinja_options = {**app.jinja_options, "bytecode_cache": _COMPILED_TEMPLATES}
    app.url_map.converters["int"] = _DatabaseInt
    settings = load_settings(instance, test_config)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = 60 * 1024 * 1024
    engine = make_engine(settings.database_url, settings.database_busy_timeout_s)
    init_db(engine)
    app.config["SECRET_KEY"] = settings.secret_key or _shared_secret(engine, instance)
    app.extensions["db_engine"] = engine
    app.extensions["db_sessions"] = make_sessionmaker(engine)
    from . import wake
    wake.install(app.extensions["db_sessions"], instance)  # "broadcast now" leaves at once

    @app.before_request
    def _open_session() -> None:
        g.db = app.extensions["db_sessions"]()

    @app.teardown_request
    def _close_session(_exc: BaseException | None) -> None:
        db = g.pop("db", None)
        if db is not None:
            db.close()

    from . import api, errors, web, websec
    errors.register(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(web.bp)
    websec.init_app(app, settings)  # cookie flags, CSRF, login limits, security headers

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return _health(app, settings)

    @app.get("/media/<sha256>.<ext>")
    def media(sha256: str, ext: str) -> Response:
        row = g.db.get(Media, sha256) if len(sha256) == 64 else None
        if row is None or row.ext != ext:
            from .errors import not_found
            raise not_found("media")
        resp = send_file(_stored_file(settings, sha256, ext, "media"),
                         mimetype="audio/mpeg" if ext == "mp3" else f"audio/{ext}",
                         conditional=True, etag=sha256, max_age=31536000)
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp

    @app.get("/agent-releases/<sha256>.whl")
    def agent_release(sha256: str) -> Response:
        """An agent release's wheel (server/releases.py), without a token: nodes check the
        sha256 their signed ``update`` command names."""
        row = g.db.scalar(select(AgentRelease).where(AgentRelease.sha256 == sha256)) \
            if len(sha256) == 64 else None
        if row is None:
            from .errors import not_found
            raise not_found("release")
        resp = send_file(_stored_file(settings, sha256, "whl", "release"),
                         mimetype="application/zip", conditional=True, etag=sha256,
                         max_age=31536000)
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return resp

    return app


def _stored_file(settings: Settings, sha256: str, ext: str, thing: str) -> Path:
    """The media store's file of a row the database has. Missing means this process does not
    see the folder the one that stored it wrote to (web processes on several machines need one
    shared ``media_dir``): a 404 for the caller and an error in the log, not a 500."""
    from audio.store import MediaStore
    path = MediaStore(settings.media_dir).path(sha256, ext)
    if not path.is_file():
        log.error("%s is in the database but not in media_dir %s: is media_dir shared by every "
                  "web process?", path.name, settings.media_dir)
        from .errors import not_found
        raise not_found(thing)
    return path


class _CompiledTemplates(BytecodeCache):
    """Compiled templates shared by every app this process builds, by template file and the
    checksum of its source (an edited template compiles again). Jinja parses and compiles a
    template once per environment, and every app has its own: a process that builds many apps
    (the tests build hundreds) compiled the same pages each time, 20 ms each."""

    def __init__(self) -> None:
        self._code: dict[str, tuple[str, Any]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self._code.get(bucket.key)
        if found is not None and found[0] == bucket.checksum:
            bucket.code = found[1]

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = (bucket.checksum, bucket.code)


_COMPILED_TEMPLATES = _CompiledTemplates()


class _DatabaseInt(IntegerConverter):
    """Ids in paths: only what a database integer can hold matches (a larger one is a 404)."""

    def __init__(self, url_map: Map, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = MAX_DB_ID, signed: bool = False) -> None:
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


SESSION_KEY = "web_session_key"


def _shared_secret(engine: Engine, instance: Path) -> str:
    """The key that signs session cookies and CSRF tokens when the config names none: one row
    in the database, so every web process behind one address accepts the others' cookies.
    The first process to start makes it (an instance's older ``secret_key`` file becomes it,
    so nobody is logged out by the upgrade); processes starting at once agree on the winner."""
    with Session(engine) as db:
        row = db.get(AppSecret, SESSION_KEY)
        if row is not None:
            return row.value
        old = instance / "secret_key"
        value = old.read_text().strip() if old.is_file() else ""
        db.add(AppSecret(name=SESSION_KEY, value=value or os.urandom(32).hex()))
        try:
            db.commit()
        except IntegrityError:  # another process made it first: theirs
            db.rollback()
        return db.execute(select(AppSecret.value).where(AppSecret.name == SESSION_KEY)).scalar_one()


def _outbox_check(status: WorkerStatus | None, settings: Settings) -> dict[str, Any]:
    """The outbox as the dispatcher last measured it, and as the database shows it now: a
    command waiting longer than outbox_stale_s means nothing is going out."""
    from sqlalchemy import func

    from .models import Command
    try:
        oldest = g.db.scalar(select(func.min(Command.created_at)).where(
            Command.published_at.is_(None), Command.failed_at.is_(None)))
        failed = g.db.scalar(select(func.count()).select_from(Command).where(
            Command.failed_at >= utcnow() - dt.timedelta(hours=1))) or 0
    except Exception as err:  # the database check above reports the cause
        return {"ok": False, "detail": str(err)[:200]}
    age = (utcnow() - oldest).total_seconds() if oldest else 0.0
    stuck = age > settings.outbox_stale_s
    return {"ok": not stuck, "oldest_unsent_age_s": round(age, 1), "failed_last_hour": failed,
            "detail": f"the oldest unsent command is {age:.0f} s old" if stuck else None}


def _health(app: Flask, settings: Settings) -> tuple[Response, int]:
    checks: dict[str, Any] = {}
    try:
        g.db.execute(text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as err:  # any driver error means the database is not usable
        checks["database"] = {"ok": False, "detail": str(err)[:200]}
    try:
        status = g.db.get(WorkerStatus, "dispatcher")
    except Exception:
        status = None
    if status is None:
        checks["broker"] = {"ok": False, "detail": "no dispatcher has reported"}
    else:
        fresh = utcnow() - status.heartbeat_at < dt.timedelta(seconds=settings.worker_stale_s)
        checks["broker"] = {"ok": bool(fresh and status.mqtt_connected),
                            "detail": None if fresh else "dispatcher heartbeat is stale",
                            "connected": status.mqtt_connected}
    checks["outbox"] = _outbox_check(status, settings)
    ok = all(c["ok"] for c in checks.values())
    return jsonify({"ok": ok, "checks": checks}), 200 if ok else 503
