"""Administration, part 1: users (the list of the actor's areas, create, edit, reset a password),
a ward's settings (speech engine and voice, chime, quiet hours, time zone, second-person
emergency, each shown with what it inherits) and the audit log (filtered, paged, newest first).

No rule lives here: a form is read by the API's own request models (server.bodies), saved by the
API's domain functions (server.users.save_user, server.bulletins.update_area_speech), which
check roles and areas and whose row changes the audit log records; the log is read through
server.audit.entries, as GET /api/v1/audit reads it."""
from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import flash, redirect, render_template, request, url_for

from .. import audit
from .. import bodies as B
from .. import queries
from .. import users as user_service
from ..auth import ROLES, caller
from ..bulletins import scoped_area, speech_defaults, update_area_speech
from ..context import settings
from ..errors import ApiError, ErrorCode
from ..i18n import CATALOGUE, LANGUAGES, Word, t, word
from ..models import Area, AuditEntry, User, area_zone, nearest_setting
from ..request_globals import g
from . import area_tree, bp, page

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

EVERY_AREA = "all"  # the area select's value for "every area" (area_id null in the API)
AUDIT_PAGE = 50
# a ward's quiet hours as a person writes them: "22:00-05:00, 12:00-13:30"
QUIET_SPLIT = re.compile(r"[,;\n]+")
CONFIRM = {"": None, "yes": True, "no": False}  # the second-person select


# --- users ----------------------------------------------------------------------------------------

def _user_body(model: type[B.UserWrite], form: dict[str, str], *, editing: bool
               ) -> B.UserWrite:
    """The user form as the API's UserCreate/UserWrite: an empty field is not given (so an empty
    password is no new password), "every area" is area_id null, and on the edit form the
    unticked "active" box is false."""
    data: dict[str, Any] = B.from_form(model, {k: v for k, v in form.items()
                                               if k not in ("area_id", "active")},
                                       blank_is_absent=True)
    area = (form.get("area_id") or "").strip()
    if area == EVERY_AREA:
        data["area_id"] = None
    elif area:
        data |= B.from_form(model, {"area_id": area})
    if editing:
        data["active"] = form.get("active") == "on"
    return B.parse(model, data, tz=settings().tz)


def _user_form(template: str, error: str | None = None, status: int = 200, **ctx: Any
               ) -> tuple[str, int]:
    """A user page with what the actor may choose: the roles it may grant, its areas."""
    actor = caller()
    return render_template(template, error=error,
                           roles=[r for r in ROLES if user_service.may_grant(actor, r)],
                           areas=area_tree(), every_area=actor.area_id is None,
                           languages=LANGUAGES, EVERY_AREA=EVERY_AREA,
                           password_min=settings().password_min_length, **ctx), status


def _save_user(person: User | None, form: dict[str, str]) -> Response:
    """Create (``person`` None) or change a user from the form, as the API does; the redirect
    to the list, or the ApiError of what was refused (nothing saved)."""
    body = _user_body(B.UserWrite if person else B.UserCreate, form, editing=person is not None)
    try:
        saved = user_service.save_user(g.db, caller(), person, body,
                                       password_min=settings().password_min_length)
        g.db.commit()
    except ApiError:
        g.db.rollback()
        raise
    flash(t("admin.user_saved" if person else "admin.user_created", name=saved.username))
    return redirect(url_for("web.admin_users"))


@bp.route("/admin/users", methods=["GET", "POST"])
@page("user.write")
def admin_users() -> Response | tuple[str, int]:
    form = request.form.to_dict() if request.method == "POST" else {}
    if request.method == "POST":
        try:
            return _save_user(None, form)
        except ApiError as err:
            return _user_listing(form, err.message(), err.status)
    return _user_listing(form)


def _user_listing(form: dict[str, str], error: str | None = None, status: int = 200
                  ) -> tuple[str, int]:
    names = {a.area.id: a.area.name for a in area_tree()}
    actor = caller()
    people = user_service.visible_users(g.db, actor)
    return _user_form("admin_users.html", error, status, form=form, people=people, person=None,
                      area_names=names,
                      may_manage=lambda u: user_service.may_grant(actor, u.role))


@bp.route("/admin/users/<int:user_id>", methods=["GET", "POST"])
@page("user.write")
def admin_user(user_id: int) -> Response | tuple[str, int]:
    actor = caller()
    person = user_service.get_user(g.db, actor, user_id)  # 404 outside the actor's areas
    if not user_service.may_grant(actor, person.role):  # save_user's own refusal, up front
        raise ApiError(ErrorCode.FORBIDDEN_ROLE, "err.grant_role",
                       role=Word("role", person.role))
    if request.method == "GET":
        return _user_form("admin_user.html", person=person, form={})
    form = request.form.to_dict()
    try:
        return _save_user(person, form)
    except ApiError as err:
        g.db.refresh(person)
        return _user_form("admin_user.html", err.message(), err.status, person=person, form=form)


# --- ward settings --------------------------------------------------------------------------------

def quiet_hours_from_text(text: str) -> list[dict[str, str]]:
    """"22:00-05:00, 12:00-13:30" as the API's quiet hours; a piece that is not two times joined
    by a dash is passed on as it is, for the API's model to refuse (its rule, its message)."""
    out: list[dict[str, str]] = []
    for piece in (p.strip() for p in QUIET_SPLIT.split(text)):
        if not piece:
            continue
        start, dash, end = piece.replace("–", "-").partition("-")
        out.append({"from": start.strip(), "to": end.strip()} if dash else {"from": piece})
    return out


def quiet_hours_text(value: list[dict[str, Any]] | None) -> str:
    return ", ".join(f"{q['from']}-{q['to']}" for q in value or [])


def _ward_body(form: dict[str, str]) -> B.AreaUpdate:
    """The ward form as the API's PATCH /api/v1/areas/{id} body: every setting given, "" (or
    "inherit" ticked) clears it to the area above's."""
    data: dict[str, Any] = {k: form.get(k, "") for k in ("tts_engine", "tts_voice", "chime", "tz")}
    data["emergency_confirm"] = CONFIRM.get(form.get("emergency_confirm", ""), "?")
    data["quiet_hours"] = None if form.get("quiet_inherit") == "on" else \
        quiet_hours_from_text(form.get("quiet_hours", ""))
    try:
        return B.parse(B.AreaUpdate, data, tz=settings().tz)
    except ApiError as err:
        if err.params.get("field") in ("quiet_hours", "tz"):  # say it in the page's words
            raise ApiError(err.code, f"admin.err.{err.params['field']}",
                           http_status=err.status) from None
        raise


def inherited(area: Area) -> dict[str, Any]:
    """What each setting of ``area`` would be without its own: the nearest area's above it, else
    the server's configuration."""
    s = settings()
    parent = area.parent_id
    speech = speech_defaults(g.db, s, parent)
    confirm = nearest_setting(g.db, parent, "emergency_confirm") if parent else None
    return {"tts_engine": speech["engine"] or (s.tts_engines[0] if s.tts_engines else ""),
            "tts_voice": speech["voice"], "chime": speech["chime"],
            "tz": area_zone(g.db, parent, s.timezone) if parent else s.timezone,
            "quiet_hours": quiet_hours_text(nearest_setting(g.db, parent, "quiet_hours")
                                            if parent else None),
            "emergency_confirm": bool(confirm)}


@bp.get("/admin/wards")
@page("area.write")
def admin_wards() -> Response | str:
    chosen = queries.read(queries.AreaPageQuery, request.args).area
    if chosen is not None:
        return redirect(url_for("web.admin_ward", area_id=chosen))
    return render_template("admin_wards.html", areas=area_tree())


@bp.route("/admin/wards/<int:area_id>", methods=["GET", "POST"])
@page("area.write")
def admin_ward(area_id: int) -> Response | tuple[str, int]:
    actor = caller()
    area = scoped_area(g.db, actor, area_id)  # 404 or 403, as the API answers
    error, status, form = None, 200, request.form.to_dict()
    if request.method == "POST":
        try:
            update_area_speech(g.db, settings(), actor, area.id, _ward_body(form))
            g.db.commit()
            flash(t("admin.ward_saved", name=area.name))
            return redirect(url_for("web.admin_ward", area_id=area.id))
        except ApiError as err:
            g.db.rollback()
            g.db.refresh(area)
            error, status = err.message(), err.status
    return render_template("admin_ward.html", area=area, areas=area_tree(), error=error,
                           form=form, voices=B.VOICES,
                           # an engine set before the configuration dropped it stays shown
                           engines=list(dict.fromkeys([*settings().tts_engines,
                                                       *filter(None, [area.tts_engine])])),
                           chimes=B.CHIMES, from_parent=inherited(area),
                           quiet_text=quiet_hours_text(area.quiet_hours)), status


# --- the audit log --------------------------------------------------------------------------------

def _utc(day: dt.date | None, tz: ZoneInfo, days: int = 0) -> dt.datetime | None:
    """The start of ``day`` (in the server's zone; ``days`` later) as naive UTC, or None."""
    if day is None:
        return None
    local = dt.datetime.combine(day + dt.timedelta(days=days), dt.time(), tz)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def change_lines(entry: AuditEntry) -> list[tuple[str, str]]:
    """What an entry changed, as (field, text) lines: "old → new" for a change, the values of a
    row made or removed, and only the name of a secret."""
    detail = entry.detail or {}
    lines: list[tuple[str, str]] = []
    for key, (old, new) in (detail.get("changed") or {}).items():
        lines.append((key, f"{_shown(old)} → {_shown(new)}"))
    for part in ("new", "old"):
        for key, value in (detail.get(part) or {}).items():
            if value not in (None, "", [], {}) and key not in ("created_at",):
                lines.append((key, _shown(value)))
    for key in detail.get("secret_fields") or []:
        lines.append((key, t("admin.secret_changed")))
    for key, value in detail.items():
        if key not in ("changed", "new", "old", "secret_fields"):
            lines.append((key, _shown(value)))
    return lines


def action_text(action: str) -> str:
    """An audit action in the user's language: "users.update" as "Sửa tài khoản", a named one
    ("auth.login") from the catalogue; one the catalogue does not know stays as it is."""
    if f"audit.action.{action}" in CATALOGUE:
        return word("audit.action", action)
    table, _, op = action.rpartition(".")
    if f"audit.op.{op}" not in CATALOGUE:
        return action
    return t(f"audit.op.{op}", thing=target_text(table))


def target_text(target_type: str) -> str:
    """A target type (a table's name) in the user's language, or as it is."""
    return word("audit.thing", target_type)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return t("admin.yes") if value else t("admin.no")
    if isinstance(value, list) and all(isinstance(v, dict) and set(v) == {"from", "to"}
                                       for v in value):
        return quiet_hours_text(value) or "[]"
    return str(value)


@bp.get("/admin/audit")
@page("audit.read")  # GET /api/v1/audit's permission: no role but admin has it
def admin_audit() -> str:
    tz = settings().tz
    asked = queries.read(queries.AuditPageQuery, request.args)
    found = audit.entries(g.db, actor=asked.actor, action=asked.action,
                          target_type=asked.target, start=_utc(asked.start, tz),
                          end=_utc(asked.end, tz, days=1), before=asked.before,
                          limit=AUDIT_PAGE + 1)
    # the filters as the form and the next page's link give them again
    args = {"actor": asked.actor or "", "action": asked.action or "",
            "target": asked.target or "",
            "from": asked.start.isoformat() if asked.start else "",
            "to": asked.end.isoformat() if asked.end else ""}
    older = found[AUDIT_PAGE - 1].id if len(found) > AUDIT_PAGE else None
    rows = [{"entry": e, "changes": change_lines(e)} for e in found[:AUDIT_PAGE]]
    return render_template("admin_audit.html", rows=rows, args=args, older=older,
                           newer=asked.before is not None, actors=audit.values(g.db, "actor"),
                           actions=audit.values(g.db, "action"),
                           targets=audit.values(g.db, "target_type"),
                           page_args={k: v for k, v in args.items() if v},
                           action_text=action_text, target_text=target_text)
