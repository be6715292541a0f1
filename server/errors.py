"""API errors as JSON ``{"error": {"code", "message"}}`` with a fitting 4xx status, and 503 while
the database is unavailable (``unavailable``: gone, locked past the busy timeout, no connection
free)."""
from __future__ import annotations

import time
import re
from typing import TYPE_CHECKING, Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .i18n import Word, t

if TYPE_CHECKING:
    from flask import Response
    from flask.typing import ResponseReturnValue


class ApiError(Exception):
    """An error a client caused; ``key`` is the catalogue entry of its message."""

    def __init__(self, http_status: int, code: str, key: str, /, **params: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.key, self.params = http_status, code, key, params
        # more members of the error object (e.g. a conflict's slots)
        self.extra: dict[str, Any] = {}

    def with_extra(self, **extra: Any) -> ApiError:
        self.extra.update(extra)
        return self

    def message(self) -> str:
        """The message in the reader's language, its words (``Word``, a "thing." key) too."""
        params = {k: v.text() if isinstance(v, Word) else
                  t(v) if isinstance(v, str) and v.startswith("thing.") else v
                  for k, v in self.params.items()}
        return t(self.key, **params)


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` says the database is unusable for now, not that a request or a message
    is bad: an operational error (SQLite ``database is locked``, PostgreSQL gone), a dropped
    connection, no connection free in the pool. SQLite also reports a statement it will not
    run as an operational error (``SQLITE_STATEMENT``): that is a fault of the statement,
    which waiting would never mend (the bridge would hold its batch for ever)."""
    if isinstance(err, OperationalError) and SQLITE_STATEMENT.search(str(err.orig)):
        return False
    return isinstance(err, (OperationalError, PoolTimeout)) or \
        isinstance(err, DBAPIError) and err.connection_invalidated


# what sqlite3 raises as OperationalError for the statement itself, not the database's state
SQLITE_STATEMENT = re.compile(r"syntax error|no such (table|column|function|index)|"
                              r"too many SQL variables|Expression tree is too large|"
                              r"too many terms|too many columns|incomplete input")


def first_line(err: BaseException) -> str:
    """What a log line says of a database error: the driver's first line, at most 300
    characters (not SQLAlchemy's statement and parameters)."""
    cause = str(err.orig if isinstance(err, DBAPIError) else err).strip()
    return cause.splitlines()[0][:300] if cause else repr(err)


RETRY_AFTER_S = 5  # what a 503 for an unavailable database asks a client to wait
LOG_UNAVAILABLE_EVERY_S = 60.0  # one line a minute while it lasts, not one a request
_logged_unavailable = [float("-inf")]  # monotonic: when this process last said so
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether every database the server runs on can store ``text``: PostgreSQL refuses NUL in
    text, and a lone surrogate (which JSON's \\ud800 can carry) is no UTF-8 at all."""
    return "\x00" not in text and (text.isascii() or not _SURROGATE.search(text))


def unstorable_input() -> str | None:
    """The first query, path or form field of this request whose text no database could store
    (``storable``), or None: such a value would reach the database as a filter or a row."""
    values = [*request.args.items(multi=True), *(request.view_args or {}).items()]
    # a multipart body (an upload) is left to the view, which reads its fields through the
    # request models (server.bodies.parse checks them): parsing it here would read a whole
    # upload before the view has even checked who sends it
    if request.mimetype == "application/x-www-form-urlencoded":
        values += list(request.form.items(multi=True))
    for name, value in values:
        name = name if isinstance(name, str) else ""  # a multipart part may come unnamed
        if not storable(name):
            return "?"
        if isinstance(value, str) and not storable(value):
            return name
    return None


def unstorable(field: str) -> ApiError:
    """The error of a field whose text no database could store (``storable``): 422, as the
    text is well-formed JSON or URL text, only not something the server can keep."""
    return ApiError(422, "invalid_text", "err.invalid_field", field=field,
                    detail=t("err.unstorable_text"))


def bad_request(key: str, code: str = "invalid", **params: Any) -> ApiError:
    return ApiError(400, code, key, **params)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", "err.not_found", what=what)


def error_body(code: str, message: str, status: int, extra: dict[str, Any] | None = None
               ) -> tuple[Response, int]:
    return jsonify({"error": {**(extra or {}), "code": code, "message": message}}), status


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/healthz" or \
        request.accept_mimetypes.best == "application/json"


def register(app: Flask) -> None:
    @app.before_request
    def _storable_input() -> tuple[str, int] | None:
        field = unstorable_input()
        if field is not None:
            err = unstorable(field)
            if not wants_json():
                return err.message(), err.status
            raise err
        return None

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> tuple[Response, int]:
        return error_body(err.code, err.message(), err.status, err.extra)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> HTTPException | tuple[Response, int]:
        if not wants_json():
            return err
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                400: "bad_request"}.get(err.code or 400, "http_error")
        key = {404: "err.route", 405: "err.method"}.get(err.code or 400)
        return error_body(code, t(key) if key else (err.description or code), err.code or 400)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> tuple[str | Response, int]:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if not wants_json():
            return t("err.server"), 500
        return error_body("server_error", t("err.server"), 500)

    @app.errorhandler(SQLAlchemyError)
    def _database(err: SQLAlchemyError) -> ResponseReturnValue:
        """The database gone, locked past the busy timeout or out of connections: a 503 that
        says so; anything else the database refused is the unexpected error it is."""
        return database_unavailable(app, err) if unavailable(err) else _unexpected(err)


def database_unavailable(app: Flask, err: BaseException
                         ) -> tuple[str | Response, int, dict[str, str]]:
    """A 503 that says the database is unavailable for now (and when to try again), in the
    caller's language; one ALARM line a minute in the log while it lasts, not a traceback a
    request."""
    now = time.monotonic()
    if now - _logged_unavailable[0] >= LOG_UNAVAILABLE_EVERY_S:
        _logged_unavailable[0] = now
        app.logger.error("ALARM database unavailable: requests answered 503 (%s %s): %s",
                         request.method, request.path, first_line(err))
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    if wants_json():
        body, status = error_body("database_unavailable", t("err.database_unavailable"), 503)
        return body, status, retry
    return t("err.database_unavailable"), 503, retry
