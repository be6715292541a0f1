"""Who is calling: bearer tokens for scripts, a session cookie for the pages; roles and areas."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets

from flask import g, request, session
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import ApiError
from .models import ApiToken, User, area_subtree_ids, utcnow

ROLES = ("admin", "approver", "staff", "technician", "operator")
# what each role may do; admin may do everything
PERMISSIONS = {
    "bulletin.write": {"approver", "staff", "operator"},
    "bulletin.approve": {"approver", "operator"},
    "broadcast.write": {"approver", "staff", "operator"},
    # live and emergency priority (they preempt everything): not for staff alone
    "broadcast.emergency": {"approver", "operator"},
    "node.write": {"technician"},
    "node.command": {"technician", "approver", "operator"},
    "area.write": {"operator"},
}


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def verify_password(user: User | None, password: str) -> bool:
    return bool(user and user.active and check_password_hash(user.password_hash, password))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(db, user: User, ttl_h: int | None, name: str = "login") -> str:
    """A new random token for ``user``; only its hash is stored. ttl_h None: no expiry."""
    token = secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(hours=ttl_h) if ttl_h else None
    db.add(ApiToken(user_id=user.id, token_hash=token_hash(token), name=name, expires_at=expires))
    return token


def current_user() -> User | None:
    """The caller: a bearer token's user, else the logged-in session's; cached per request."""
    if "user" in g:
        return g.user
    user = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        row = g.db.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash(header[7:])))
        if row and (row.expires_at is None or row.expires_at > utcnow()) and row.user.active:
            user = row.user
    elif session.get("user_id"):
        user = g.db.get(User, session["user_id"])
        if user and not user.active:
            user = None
    g.user = user
    if user:
        g.user_lang = user.language
    return user


def login_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            raise ApiError(401, "unauthorized", "err.unauthorized")
        return view(*args, **kwargs)
    return wrapper


def can(user: User, permission: str) -> bool:
    return user.role == "admin" or user.role in PERMISSIONS.get(permission, set())


def require(permission: str) -> User:
    user = current_user()
    if user is None:
        raise ApiError(401, "unauthorized", "err.unauthorized")
    if not can(user, permission):
        raise ApiError(403, "forbidden", "err.forbidden")
    return user


def user_area_ids(db, user: User) -> set[int] | None:
    """The areas a user may act on: their area and everything below it; None = all."""
    if user.area_id is None:
        return None
    return area_subtree_ids(db, [user.area_id])


def check_area(db, user: User, area_id: int) -> None:
    allowed = user_area_ids(db, user)
    if allowed is not None and area_id not in allowed:
        raise ApiError(403, "forbidden_area", "err.forbidden_area", area=area_id)
