"""Accounts: the one set of rules for making and changing users, used by ``python -m server.cli
user`` and by /api/v1/users.

The CLI acts as the station's owner (``actor`` None). Through the API an admin may do anything;
a user with the ``user.write`` permission only inside its own area subtree, never granting a role
that can do what it cannot (so never admin), and never making a user unscoped (every area) unless
it is unscoped itself. An update changes only the fields given. A new password or deactivation
ends the user's browser sessions and login tokens."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from .areas import live_area
from .auth import PERMISSIONS, Role, hash_password, revoke_logins, user_area_ids
from .bodies import UserWrite
from .errors import ApiError, ErrorCode, bad_request, not_found
from .i18n import Word
from .models import User
from .times import iso


def user_json(u: User) -> dict[str, Any]:
    """What the API shows of a user: never the password or its hash."""
    return {"id": u.id, "username": u.username, "role": u.role, "area_id": u.area_id,
            "language": u.language, "active": u.active,
            "created_at": iso(u.created_at)}


def role_permissions(role: str) -> set[str]:
    if role == Role.ADMIN:
        return set(PERMISSIONS) | {Role.ADMIN}
    return {p for p, roles in PERMISSIONS.items() if role in roles}


def may_grant(actor: User | None, role: str) -> bool:
    """Whether ``actor`` may give (or manage a user holding) ``role``: only what it can do
    itself."""
    return actor is None or actor.role == Role.ADMIN or \
        role_permissions(role) <= role_permissions(actor.role)


def visible_users(db: Session, actor: User) -> list[User]:
    allowed = user_area_ids(db, actor)
    q = select(User).order_by(User.id)
    if allowed is not None:
        q = q.where(User.area_id.in_(allowed))
    return list(db.scalars(q))


def get_user(db: Session, actor: User, user_id: int) -> User:
    """A user the actor may see (its area subtree); others are a 404 as if they did not exist."""
    user = db.get(User, user_id)
    allowed = user_area_ids(db, actor)
    if user is None or (allowed is not None and user.area_id not in allowed):
        raise not_found("user")
    return user


def save_user(db: Session, actor: User | None, user: User | None, body: UserWrite, *,
              password_min: int) -> User:
    """Create a user (``user`` None: ``body`` is a UserCreate) or change the given fields of
    ``user``; ``area_id`` None means every area. Raises ApiError for what is refused."""
    data = body.changes()
    creating = user is None
    if user is not None and not may_grant(actor, user.role):
        raise ApiError(ErrorCode.FORBIDDEN_ROLE,
                       "err.grant_role", role=Word("role", user.role))
    allowed = user_area_ids(db, actor) if actor is not None else None
    if user is None:
        user = User(username="", password_hash="", role="",
                    area_id=actor.area_id if actor is not None else None)
    was_admin = not creating and user.role == Role.ADMIN and user.active
    _set_profile(db, actor, user, data, allowed)
    revoke = _set_access(user, data, creating, password_min)
    if was_admin and not (user.role == Role.ADMIN and user.active) and _other_admins(db, user) == 0:
        raise ApiError(ErrorCode.LAST_ADMIN, "err.last_admin")
    if creating:
        db.add(user)
    elif revoke:
        revoke_logins(db, user)
    db.flush()
    return user


def _set_profile(db: Session, actor: User | None, user: User, data: dict[str, Any],
                 allowed: set[int] | None) -> None:
    """Username, role, area and language from ``data``, each checked."""
    if "username" in data and data["username"] != user.username:
        if db.scalar(select(User.id).where(User.username == data["username"])) is not None:
            raise ApiError(ErrorCode.DUPLICATE, "err.duplicate", what=Word("thing", "user"))
        user.username = data["username"]
    if "role" in data:
        if not may_grant(actor, data["role"]):
            raise ApiError(ErrorCode.FORBIDDEN_ROLE, "err.grant_role",
                           role=Word("role", data["role"]))
        user.role = data["role"]
    if "area_id" in data:
        user.area_id = _area_id(db, data["area_id"], allowed)
    if "language" in data:
        user.language = data["language"]


def _set_access(user: User, data: dict[str, Any], creating: bool, password_min: int) -> bool:
    """Active flag and password from ``data``; whether the user's logins must end."""
    revoke = False
    if "active" in data:
        revoke = user.active and not data["active"]
        user.active = data["active"]
    if "password" in data:
        password = data["password"]
        if len(password) < password_min:
            raise bad_request("err.password_short", ErrorCode.INVALID, min=password_min)
        if creating or not check_password_hash(user.password_hash, password):
            user.password_hash = hash_password(password)
            revoke = True  # setting the same password again is no change
    return revoke


def _area_id(db: Session, value: int | None, allowed: set[int] | None) -> int | None:
    if value is None:
        if allowed is not None:
            raise ApiError(ErrorCode.FORBIDDEN_UNSCOPED, "err.unscoped_user")
        return None
    live_area(db, value)  # 404, or 409 for an area merged into another
    if allowed is not None and value not in allowed:
        raise ApiError(ErrorCode.FORBIDDEN_AREA, "err.forbidden_area", area=value)
    return value


def _other_admins(db: Session, user: User) -> int:
    return db.scalar(select(func.count()).select_from(User).where(
        User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)) or 0
