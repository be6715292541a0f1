"""Who is calling: bearer tokens for scripts, a server-side session (its id in the cookie) for the
pages; roles and areas. A request that carries ``Authorization: Bearer`` is judged by that token
alone, never by a cookie it also carries."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Callable
from enum import StrEnum
from typing import ParamSpec, TypeGuard, TypeVar

from flask import current_app, request, session
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session, joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import ApiError, ErrorCode
from .models import ApiToken, Area, User, WebSession, area_subtree_ids, utcnow
from .request_globals import g

class Role(StrEnum):
    ADMIN = "admin"            # may do everything
    APPROVER = "approver"
    STAFF = "staff"
    TECHNICIAN = "technician"
    OPERATOR = "operator"
    VIEWER = "viewer"          # reads what its area holds, changes nothing


ROLES = tuple(r.value for r in Role)
LOGIN_TOKEN = "login"  # the name of tokens /auth/token issues (a password change revokes them)
# what each role but admin may do
PERMISSIONS: dict[str, set[Role]] = {
    "bulletin.write": {Role.APPROVER, Role.STAFF, Role.OPERATOR},
    "bulletin.approve": {Role.APPROVER, Role.OPERATOR},
    "broadcast.write": {Role.APPROVER, Role.STAFF, Role.OPERATOR},
    # live and emergency priority (they preempt everything): not for staff alone
    "broadcast.emergency": {Role.APPROVER, Role.OPERATOR},
    "node.write": {Role.TECHNICIAN},
    "node.command": {Role.TECHNICIAN, Role.APPROVER, Role.OPERATOR},
    "alert.write": {Role.TECHNICIAN, Role.OPERATOR},  # acknowledge and resolve alerts
    "area.write": {Role.OPERATOR},
    "user.write": {Role.OPERATOR},  # within its own area, roles no stronger than its own
    # agent releases and their rollouts change every node's software: admin only; a
    # technician follows a rollout's progress on the nodes of its area
    "release.write": set(),
    "rollout.read": {Role.TECHNICIAN},
}
P = ParamSpec("P")
R = TypeVar("R")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def verify_password(user: User | None, password: str) -> TypeGuard[User]:
    """True when ``password`` is the active user's. An unknown or inactive user costs one hash
    check all the same, so the answer's timing does not tell which usernames exist."""
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    matches = check_password_hash(stored, password)
    return bool(matches and user is not None and user.active)


def login_attempt(db: Session, username: str, password: str, via: str) -> User | None:
    """The user when the password is theirs, else None; either way an audit entry says who
    tried, from where and through what (``api`` or ``page``). A failure is committed at once so
    it stays on record whatever the caller does next."""
    from . import audit
    user = db.scalar(select(User).where(User.username == username))
    where = {"ip": request.remote_addr, "via": via}
    if not verify_password(user, password):
        audit.record(db, audit.Action.AUTH_LOGIN_FAILED,
                     (audit.Target.USER, user.id if user else None),
                     {"username": username, **where}, actor="anonymous")
        db.commit()
        return None
    audit.record(db, audit.Action.AUTH_LOGIN, (audit.Target.USER, user.id), where, actor=user)
    db.info["audit_actor"] = user  # what the login writes (its token or session) is the user's
    return user


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(db: Session, user: User, ttl_h: int | None, name: str = LOGIN_TOKEN) -> str:
    """A new random token for ``user``; only its hash is stored. ttl_h None: no expiry."""
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=ttl_h) if ttl_h else None
    db.add(ApiToken(user_id=user.id, token_hash=token_hash(token), name=name, expires_at=expires))
    return token


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer`` header ("" when empty); None without one."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def start_web_session(db: Session, user: User) -> None:
    """Log the browser in: a new random session id in the cookie, only its hash in the database.
    Whatever the cookie held before (a session id, a CSRF token) is dropped."""
    settings = current_app.config["SETTINGS"]
    now = utcnow()
    end_web_session(db)  # the browser's earlier login, if any, ends here too
    db.execute(delete(WebSession).where(WebSession.user_id == user.id,
                                        WebSession.expires_at <= now))
    sid = secrets.token_urlsafe(32)
    db.add(WebSession(token_hash=token_hash(sid), user_id=user.id, created_at=now, last_seen=now,
                      expires_at=now + dt.timedelta(hours=settings.session_ttl_h)))
    session["sid"] = sid


def end_web_session(db: Session) -> None:
    """Log the browser out: its session row is deleted, so a copy of the cookie is worthless.
    The cookie keeps only the chosen language."""
    sid = session.get("sid")
    if isinstance(sid, str) and sid:
        db.execute(delete(WebSession).where(WebSession.token_hash == token_hash(sid)))
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def revoke_logins(db: Session, user: User) -> None:
    """End every browser session and every login token of ``user`` (after a password change or
    deactivation). Integration tokens made with ``cli token`` are kept: they do not come from
    the password; ``cli revoke-tokens`` or deactivating the user ends them."""
    db.execute(delete(WebSession).where(WebSession.user_id == user.id))
    db.execute(delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.name == LOGIN_TOKEN))


# Every request finds its caller by one of these, built once, with the user in the same query
# (the same profile: finding the caller was a seventh of the API requests' time, a quarter of
# it the second query for the user)
_TOKEN_ROW = select(ApiToken).where(ApiToken.token_hash == bindparam("token_hash")) \
    .options(joinedload(ApiToken.user))
_SESSION_ROW = select(WebSession).where(WebSession.token_hash == bindparam("token_hash")) \
    .options(joinedload(WebSession.user))


def _session_user(db: Session) -> User | None:
    sid = session.get("sid")
    if not isinstance(sid, str) or not sid:
        return None
    row = db.scalar(_SESSION_ROW, {"token_hash": token_hash(sid)})
    now = utcnow()
    idle = dt.timedelta(minutes=current_app.config["SETTINGS"].session_idle_min)
    if row is None or row.expires_at <= now or row.last_seen + idle <= now:
        return None
    if now - row.last_seen > dt.timedelta(seconds=60):  # not a write for every poll
        with current_app.extensions["db_sessions"]() as own:  # leaves the request's untouched
            own.execute(update(WebSession).where(WebSession.id == row.id).values(last_seen=now))
            own.commit()
    g.web_session = row
    return row.user


def current_user() -> User | None:
    """The caller: a bearer token's user, else the logged-in session's; cached per request."""
    if "user" in g:
        cached: User | None = g.user
        return cached
    user: User | None = None
    token = bearer_token()
    if token is not None:
        row = g.db.scalar(_TOKEN_ROW, {"token_hash": token_hash(token)}) if token else None
        if row and (row.expires_at is None or row.expires_at > utcnow()):
            user = row.user
            g.api_token = row
    else:
        user = _session_user(g.db)
    if user is not None and not user.active:
        user = None
    g.user = user
    if user:
        g.user_lang = user.language
    return user


def caller() -> User:
    """The logged-in caller of a view behind ``login_required``, ``require`` or the pages'
    ``page()``, from the request's cache (``current_user``), as the type checker can follow
    it; a 401 where nobody is logged in."""
    user = current_user()
    if user is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "err.unauthorized")
    return user


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_user() is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "err.unauthorized")
        return view(*args, **kwargs)
    return wrapper


def can(user: User, permission: str) -> bool:
    return user.role == Role.ADMIN or user.role in PERMISSIONS.get(permission, set())


def require(permission: str) -> User:
    user = current_user()
    if user is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "err.unauthorized")
    if not can(user, permission):
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    return user


def user_area_ids(db: Session, user: User) -> set[int] | None:
    """The areas a user may act on: their area and everything below it; None = all."""
    if user.area_id is None:
        return None
    return area_subtree_ids(db, [user.area_id])


def area_scope(db: Session, user: User, area_id: int | None) -> set[int] | None:
    """The areas a listing covers for ``user``: theirs (None: every area), narrowed to
    ``area_id`` and everything below it when given. An area the user may not see is answered
    as one that does not exist (404 unknown_area)."""
    allowed = user_area_ids(db, user)
    if area_id is None:
        return allowed
    if db.get(Area, area_id) is None or (allowed is not None and area_id not in allowed):
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    below = area_subtree_ids(db, [area_id])
    return below if allowed is None else below & allowed


def check_area(db: Session, user: User, area_id: int) -> None:
    allowed = user_area_ids(db, user)
    if allowed is not None and area_id not in allowed:
        raise ApiError(ErrorCode.FORBIDDEN_AREA, "err.forbidden_area", area=area_id)
