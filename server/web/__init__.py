"""Web pages (Jinja + htmx, Vietnamese by default), one module per page group: ``auth`` (login,
logout, language), ``dashboard``, ``bulletins``, ``broadcasts``. This module builds the one
blueprint and what every page shares: the current user, the role checks (the API's own:
server.auth.PERMISSIONS and check_area), the form reader and the navigation.

Adding a page: a view in its group's module, decorated ``@page(permission)``; a template that
extends base.html (one <h1>; ``may("perm")`` hides what the role may not do); and, when it
belongs in the menu, one ``NavEntry`` line in ``NAV``. An ApiError a domain module raises in a
page's view becomes that page's error page, with the API's status and message."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from device_agent.protocol import PriorityName, priority_name
from device_agent.schemas import BODIES, AckStatus, PlayResult

from .. import auth as access
from .. import bodies as B
from .. import queries
from ..alerts import AlertStep
from ..alerts import Severity as AlertSeverity
from ..alerts import State as AlertState
from ..broadcasts import BroadcastStatus
from ..bulletins import BulletinSource, BulletinStatus, BulletinStep
from ..context import settings
from ..deliveries import UnsentReason
from ..errors import ApiError
from ..i18n import LANGUAGES, current_language, local_time, t, word
from ..models import Area, Node
from ..nodes import NodeListStatus
from ..request_globals import g

if TYPE_CHECKING:
    from flask.blueprints import BlueprintSetupState
    from sqlalchemy import Select
    from werkzeug.wrappers import Response

    from ..models import User

bp = Blueprint("web", __name__)
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


@dataclass(frozen=True)
class NavEntry:
    """A menu entry: the page's endpoint, its label's catalogue key, and the permission
    (server.auth.PERMISSIONS) a user needs to see it; None: every logged-in user."""
    endpoint: str
    label: str
    permission: str | None = None


# The menu, in order. Only pages that exist are listed; a user sees the entries their role may
# use, and the page itself refuses the others (``page``) all the same.
NAV: list[NavEntry] = [
    NavEntry("web.dashboard", "nav.dashboard"),
    NavEntry("web.bulletins", "nav.bulletins"),
    NavEntry("web.new_bulletin", "nav.new_bulletin", "bulletin.write"),
    NavEntry("web.approval_queue", "nav.approval_queue", "bulletin.approve"),
    NavEntry("web.schedule_week", "nav.schedule"),
    NavEntry("web.programmes", "nav.programmes"),
    NavEntry("web.emergency", "nav.emergency", "broadcast.emergency"),
    NavEntry("web.fleet", "nav.fleet"),
    NavEntry("web.fleet_map", "nav.fleet_map"),
    NavEntry("web.alerts", "nav.alerts"),
    NavEntry("web.reports", "nav.reports"),
    NavEntry("web.admin_users", "nav.admin_users", "user.write"),
    NavEntry("web.admin_wards", "nav.admin_wards", "area.write"),
    NavEntry("web.admin_audit", "nav.admin_audit", "audit.read"),
    NavEntry("web.provision_form", "nav.provision", "node.write"),
    NavEntry("web.areas", "nav.areas", "area.write"),
]


def nav_for(user: User) -> list[NavEntry]:
    """The menu entries ``user`` may use."""
    return [e for e in NAV if e.permission is None or access.can(user, e.permission)]


@dataclass(frozen=True)
class TreeArea:
    """An area of the user's tree, with its depth (for indented lists and checkboxes)."""
    area: Area
    depth: int


def nodes_in_scope(query: S, allowed: set[int] | None) -> S:
    """``query`` over nodes, kept to those in the clusters ``allowed`` (None: every node)."""
    return query if allowed is None else query.where(Node.cluster_id.in_(allowed))


def user_areas(*, clusters: bool = True, by_name: bool = False,
               merged: bool = False) -> list[Area]:
    """The logged-in user's areas (their own and every one below it; every area for an
    unscoped user) that are in use: a ward merged into another is left out, as it takes
    nothing new (``merged``: kept, for what reports on the past). By id, or by name
    (case-folded) then id; clusters left out on request."""
    allowed = access.user_area_ids(g.db, access.caller())
    q = select(Area) if merged else select(Area).where(Area.merged_into_id.is_(None))
    if allowed is not None:
        q = q.where(Area.id.in_(allowed))
    if not clusters:
        q = q.where(Area.kind != B.AreaKind.CLUSTER)
    found = list(g.db.scalars(q.order_by(Area.id)))
    if by_name:
        found.sort(key=lambda a: (a.name.casefold(), a.id))
    return found


def tree_order(shown: list[Area]) -> list[TreeArea]:
    """``shown`` depth first, each after its parent (an area whose parent is not among them is
    a root), siblings in the order given."""
    ids = {a.id for a in shown}
    children: dict[int | None, list[Area]] = {}
    for a in shown:
        children.setdefault(a.parent_id if a.parent_id in ids else None, []).append(a)
    out: list[TreeArea] = []

    def walk(parent: int | None, depth: int) -> None:
        for a in children.get(parent, []):
            out.append(TreeArea(a, depth))
            walk(a.id, depth + 1)
    walk(None, 0)
    return out


def area_tree() -> list[TreeArea]:
    """The user's areas in use as a tree, siblings by name."""
    return tree_order(user_areas(by_name=True))


def read_form(model: type[B.M], form: Mapping[str, str]) -> B.M:
    """A page's form as ``model`` reads it: an empty field is one not given, numbers as numbers
    (server.bodies.from_form)."""
    return B.parse(model, B.from_form(model, form, blank_is_absent=True), tz=settings().tz)


@functools.cache
def _field_schema(source: str, field: str) -> tuple[tuple[str, Any], ...]:
    kind, _, name = source.rpartition(":")
    schema = BODIES[name] if kind == "command" else \
        getattr(queries if kind == "query" else B, name).model_json_schema()
    prop: dict[str, Any] = schema["properties"][field]
    for branch in prop.get("anyOf", ()):  # an optional field: what it is when given
        if branch.get("type") != "null":
            prop = {**branch, **prop}
    return tuple(prop.items())


INPUT_LIMITS = (("maxLength", "maxlength"), ("minimum", "min"), ("maximum", "max"))


@bp.app_template_global("limits")
def input_limits(source: str, field: str) -> Markup:
    """The form input attributes (maxlength, min, max) of a request body's field: ``source`` a
    model of server/bodies.py, ``query:<model>`` a query of server/queries.py, or
    ``command:<type>`` for a node command's body in the protocol. A page's input then holds the
    same limits its body does, from the one declaration."""
    prop = dict(_field_schema(source, field))
    return Markup(" ".join(f'{attr}="{prop[key]}"' for key, attr in INPUT_LIMITS
                           if key in prop))


UNSENT = frozenset(UnsentReason)


@bp.app_template_global("reason_text")
def said_reason(reason: str | None, status: str | None, sent: bool = True) -> str:
    """A delivery's or a command's reason as people read it: the dispatcher's when nothing was
    ever sent (``sent`` false: no command), the outbox's when it gave up on the command, else
    the node's, for refusing the command (``status`` rejected) or for not doing it."""
    if not reason:
        return ""
    kind = "bcreason" if not sent else "unsent" if reason in UNSENT else \
        "rejectreason" if status == AckStatus.REJECTED else "nodereason"
    return word(kind, reason)


def may(permission: str) -> bool:
    """Whether the logged-in user's role may do ``permission`` (the API's check); templates
    use it to show only what the user may do."""
    user = access.current_user() if g.get("db") else None
    return user is not None and access.can(user, permission)


def check_area(area_id: int) -> None:
    """The API's area check for the logged-in user: an ApiError (403) outside their areas,
    which a page shows as its error page."""
    access.check_area(g.db, access.caller(), area_id)


# The domain's words the templates compare with and send, each its one declaration
# (``b.status == BulletinStatus.PENDING``); tests/server/test_template_words.py fails on a
# member no vocabulary has, and on a status compared with a bare string.
TEMPLATE_WORDS: dict[str, type[StrEnum]] = {
    "AlertSeverity": AlertSeverity, "AlertState": AlertState, "AlertStep": AlertStep,
    "AreaKind": B.AreaKind, "BroadcastStatus": BroadcastStatus,
    "BulletinSource": BulletinSource, "BulletinStatus": BulletinStatus,
    "BulletinStep": BulletinStep, "NodeListStatus": NodeListStatus, "PlayResult": PlayResult}
# the levels a page's form offers: live is for a relay from a microphone, not a recording
FORM_PRIORITIES = tuple(p for p in PriorityName if p != PriorityName.LIVE)


@bp.record_once
def _words(state: BlueprintSetupState) -> None:
    state.app.jinja_env.globals.update(TEMPLATE_WORDS, priority_name=priority_name,
                                       form_priorities=FORM_PRIORITIES, word=word)


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    # csrf_token() comes from Flask-WTF (server/websec.py)
    user = access.current_user() if g.get("db") else None
    return {"t": t, "local_time": local_time, "user": user, "languages": LANGUAGES,
            "lang": current_language(), "nav": nav_for(user) if user else [],
            "endpoint": request.endpoint, "may": may}


@bp.errorhandler(ApiError)
def _page_error(err: ApiError) -> tuple[str, int]:
    """What a domain module refused (not found, forbidden, invalid) as a page, in the user's
    language, with the API's status."""
    g.db.rollback()
    return render_template("error.html", message=err.message()), err.status


def local_path(target: str | None) -> str | None:
    """``target`` as a path on this site ("/x?y"), or None when it leads anywhere else: another
    host, a scheme-relative "//host", a backslash or a control character browsers read as one."""
    if not target or any(c == "\\" or ord(c) < 33 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc) and (parts.scheme not in ("http", "https")
                                           or parts.netloc != request.host):
        return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def page(permission: str | None = None
         ) -> Callable[[Callable[P, R]], Callable[P, R | Response | tuple[str, int]]]:
    """A page for logged-in users (the others go to the login page); with ``permission``, only
    for the roles the API lets do that (403 otherwise), as the menu shows it."""
    def decorate(view: Callable[P, R]) -> Callable[P, R | Response | tuple[str, int]]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response | tuple[str, int]:
            user = access.current_user()
            if user is None:
                return redirect(url_for("web.login", next=request.path))
            if permission is not None and not access.can(user, permission):
                return render_template("error.html", message=t("err.forbidden")), 403
            return view(*args, **kwargs)
        return wrapper
    return decorate


from . import auth, broadcasts, bulletins, dashboard  # noqa: E402,F401  (their routes on bp)
from . import admin, alerts, areas, emergency, fleet, reports, schedule  # noqa: E402,F401
