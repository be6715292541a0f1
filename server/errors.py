"""API errors as JSON ``{"error": {"code", "message"}}`` with a fitting 4xx status, and 503 while
the database is unavailable (``unavailable``: gone, locked past the busy timeout, no connection
free)."""
from __future__ import annotations

import time
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from flask import Flask, jsonify, request
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from .i18n import Word, t

if TYPE_CHECKING:
    from flask import Response
    from flask.typing import ResponseReturnValue


class ErrorCode(StrEnum):
    """Every API error's ``code`` (``{"error": {"code", "message"}}``): what a script branches
    on, so a code is never renamed. The OpenAPI document lists them (Zulip's ErrorCode is the
    model); the message says the same in the caller's language."""
    # the request itself
    INVALID = "invalid"                        # a field's value (the message names the field)
    MISSING_FIELD = "missing_field"
    INVALID_TEXT = "invalid_text"              # text no database stores (NUL, lone surrogate)
    NOT_JSON = "not_json"
    NOT_CSV = "not_csv"
    INVALID_CSV = "invalid_csv"
    INVALID_ROWS = "invalid_rows"              # bulk: the rows refused, each with its error
    TOO_MANY = "too_many"
    NO_TARGETS = "no_targets"
    NO_NODES = "no_nodes"                      # the targets reach no node
    NOT_CLUSTER = "not_cluster"
    INVALID_RECURRENCE = "invalid_recurrence"
    UNKNOWN_TIME_ZONE = "unknown_time_zone"
    CSRF_FAILED = "csrf_failed"
    BAD_REQUEST = "bad_request"                # a request the web server could not read
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"                  # any other HTTP error before the API's code
    # who asks
    UNAUTHORIZED = "unauthorized"
    BAD_CREDENTIALS = "bad_credentials"
    INVALID_PROVISIONING_TOKEN = "invalid_provisioning_token"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    FORBIDDEN_AREA = "forbidden_area"
    FORBIDDEN_ROLE = "forbidden_role"
    FORBIDDEN_UNSCOPED = "forbidden_unscoped"
    EMERGENCY_FORBIDDEN = "emergency_forbidden"
    SECOND_PERSON = "second_person"
    LAST_ADMIN = "last_admin"
    # what it names
    NOT_FOUND = "not_found"
    UNKNOWN_AREA = "unknown_area"
    UNKNOWN_NODE = "unknown_node"
    NODE_REVOKED = "node_revoked"
    DUPLICATE = "duplicate"
    # the state it finds
    BAD_TRANSITION = "bad_transition"
    STALE_REVISION = "stale_revision"
    NOT_APPROVED = "not_approved"
    MEDIA_MISSING = "media_missing"
    SCHEDULE_CONFLICT = "schedule_conflict"
    NOT_A_SERIES = "not_a_series"
    NOT_AN_OCCURRENCE = "not_an_occurrence"
    CANNOT_EDIT = "cannot_edit"
    CANNOT_CONFIRM = "cannot_confirm"
    CANNOT_CANCEL = "cannot_cancel"
    CANNOT_ADVANCE = "cannot_advance"
    CANNOT_CANCEL_ROLLOUT = "cannot_cancel_rollout"
    ALERT_STATE = "alert_state"
    AREA_CYCLE = "area_cycle"
    AREA_MERGED = "area_merged"
    MERGE_KIND = "merge_kind"
    ZONE_DIFFERS = "zone_differs"
    # a report's period or area (server.report_summary)
    BAD_DATE = "bad_date"
    BAD_PERIOD = "bad_period"
    # uploads and speech (an upload's are audio.probe.UploadProblem's words)
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_LONG = "too_long"
    NOT_AUDIO = "not_audio"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"
    SILENT = "silent"
    AUDIO_FAILED = "audio_failed"
    SPEECH_FAILED = "speech_failed"
    NOT_AGENT_WHEEL = "not_agent_wheel"
    # the server
    SERVER_ERROR = "server_error"
    DATABASE_UNAVAILABLE = "database_unavailable"
    NO_FONT = "no_font"                        # a PDF report without its font installed


# Each code's HTTP status, declared once with it: a script may branch on either. A raise
# passes ``http_status`` only where one code answers with another (a bulk refusal takes
# its rows' status).
STATUS: dict[ErrorCode, int] = {
    **dict.fromkeys((
        ErrorCode.INVALID, ErrorCode.MISSING_FIELD, ErrorCode.NOT_JSON, ErrorCode.INVALID_ROWS,
        ErrorCode.TOO_MANY, ErrorCode.NO_TARGETS, ErrorCode.NO_NODES, ErrorCode.NOT_CLUSTER,
        ErrorCode.CSRF_FAILED, ErrorCode.BAD_REQUEST, ErrorCode.HTTP_ERROR, ErrorCode.BAD_DATE,
        ErrorCode.EMPTY, ErrorCode.CORRUPT, ErrorCode.SILENT), 400),
    **dict.fromkeys((ErrorCode.UNAUTHORIZED, ErrorCode.BAD_CREDENTIALS,
                     ErrorCode.INVALID_PROVISIONING_TOKEN), 401),
    **dict.fromkeys((
        ErrorCode.FORBIDDEN, ErrorCode.FORBIDDEN_AREA, ErrorCode.FORBIDDEN_ROLE,
        ErrorCode.FORBIDDEN_UNSCOPED, ErrorCode.EMERGENCY_FORBIDDEN, ErrorCode.SECOND_PERSON), 403),
    **dict.fromkeys((ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_AREA, ErrorCode.UNKNOWN_NODE), 404),
    **dict.fromkeys((ErrorCode.METHOD_NOT_ALLOWED,), 405),
    **dict.fromkeys((
        ErrorCode.LAST_ADMIN, ErrorCode.DUPLICATE, ErrorCode.BAD_TRANSITION,
        ErrorCode.STALE_REVISION, ErrorCode.NOT_APPROVED, ErrorCode.MEDIA_MISSING,
        ErrorCode.SCHEDULE_CONFLICT, ErrorCode.NOT_A_SERIES, ErrorCode.CANNOT_EDIT,
        ErrorCode.CANNOT_CONFIRM, ErrorCode.CANNOT_CANCEL, ErrorCode.CANNOT_ADVANCE,
        ErrorCode.CANNOT_CANCEL_ROLLOUT, ErrorCode.ALERT_STATE, ErrorCode.AREA_MERGED), 409),
    **dict.fromkeys((ErrorCode.NODE_REVOKED,), 410),
    **dict.fromkeys((ErrorCode.TOO_LARGE, ErrorCode.TOO_LONG), 413),
    **dict.fromkeys((ErrorCode.NOT_CSV, ErrorCode.NOT_AUDIO, ErrorCode.UNSUPPORTED_FORMAT), 415),
    **dict.fromkeys((
        ErrorCode.INVALID_TEXT, ErrorCode.INVALID_CSV, ErrorCode.INVALID_RECURRENCE,
        ErrorCode.UNKNOWN_TIME_ZONE, ErrorCode.NOT_AN_OCCURRENCE, ErrorCode.AREA_CYCLE,
        ErrorCode.MERGE_KIND, ErrorCode.ZONE_DIFFERS, ErrorCode.BAD_PERIOD, ErrorCode.AUDIO_FAILED,
        ErrorCode.SPEECH_FAILED, ErrorCode.NOT_AGENT_WHEEL), 422),
    **dict.fromkeys((ErrorCode.RATE_LIMITED,), 429),
    **dict.fromkeys((ErrorCode.SERVER_ERROR,), 500),
    **dict.fromkeys((ErrorCode.DATABASE_UNAVAILABLE, ErrorCode.NO_FONT), 503),
}


class ApiError(Exception):
    """An error a client caused; ``key`` is the catalogue entry of its message, its status the
    code's (STATUS) unless ``http_status`` says otherwise."""

    def __init__(self, code: ErrorCode, key: str, /, *, http_status: int | None = None,
                 **params: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.key, self.params = \
            http_status or STATUS[code], code, key, params
        # more members of the error object (e.g. a conflict's slots)
        self.extra: dict[str, Any] = {}

    def with_extra(self, **extra: Any) -> ApiError:
        self.extra.update(extra)
        return self

    def message(self) -> str:
        """The message in the reader's language, its words (``Word``) too."""
        params = {k: v.text() if isinstance(v, Word) else v for k, v in self.params.items()}
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
    return ApiError(ErrorCode.INVALID_TEXT, "err.invalid_field", field=field,
                    detail=t("err.unstorable_text"))


def bad_request(key: str, code: ErrorCode = ErrorCode.INVALID, **params: Any) -> ApiError:
    return ApiError(code, key, **params)


def not_found(thing: str) -> ApiError:
    """404 not_found naming ``thing`` (its catalogue entry: thing.<thing>)."""
    return ApiError(ErrorCode.NOT_FOUND, "err.not_found", what=Word("thing", thing))


def error_body(code: ErrorCode, message: str, status: int | None = None,
               extra: dict[str, Any] | None = None) -> tuple[Response, int]:
    """The error JSON with the code's status (STATUS), or ``status``."""
    return jsonify({"error": {**(extra or {}), "code": code, "message": message}}), \
        status or STATUS[code]


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
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                413: ErrorCode.TOO_LARGE, 400: ErrorCode.BAD_REQUEST}.get(err.code or 400,
                                                                        ErrorCode.HTTP_ERROR)
        key = {404: "err.route", 405: "err.method"}.get(err.code or 400)
        return error_body(code, t(key) if key else (err.description or code), err.code or 400)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> tuple[str | Response, int]:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if not wants_json():
            return t("err.server"), 500
        return error_body(ErrorCode.SERVER_ERROR, t("err.server"))

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
        body, status = error_body(ErrorCode.DATABASE_UNAVAILABLE, t("err.database_unavailable"))
        return body, status, retry
    return t("err.database_unavailable"), 503, retry
