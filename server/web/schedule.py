"""Programmes and the schedule: the week calendar of an area (each slot by day and hour, coloured
by priority, a day list on a phone), a new broadcast with its recurrence chosen in plain words
and its conflicts shown before it is saved, cancelling one occurrence or a whole series, and
programmes built from approved bulletins. Every write is the API's own domain call."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from device_agent.protocol import PriorityName

from schedules.describe import describe
from schedules.lunar import LUNAR_FREQ, LunarHoliday
from schedules.recurrence import MAX_INTERVAL, WEEKDAYS, Freq, RecurrenceError

from .. import auth as access
from .. import bodies as B
from .. import programmes as programme_service
from .. import queries
from .. import schedule
from ..broadcasts import broadcast_visible, cancel_broadcast, change_occurrence, create_broadcast
from ..bulletins import BulletinStatus, visible_bulletins
from ..context import settings
from ..errors import ApiError, ErrorCode, not_found
from ..i18n import CATALOGUE, current_language, t
from ..models import Area, Broadcast, area_zone, targets_zone
from ..request_globals import g
from . import bp, local_path, page, tree_order, user_areas

if TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict
    from werkzeug.wrappers import Response

HOLIDAYS = tuple(str(h) for h in LunarHoliday)
KINDS = ("once", "daily", "weekly", "lunar")


def _areas() -> list[Area]:
    """The areas (not clusters) the user may see, in tree order: each after its parent, the
    children of one parent by id."""
    return [row.area for row in tree_order(user_areas(clusters=False))]


def rule_words(rule: str, start_at: dt.datetime, tz: str) -> str:
    """A rule in the user's language through the catalogue ("Hằng ngày lúc 06:00 và 17:00")."""
    lang = current_language()
    texts = {lang: {k[len("rule."):]: t(k) for k in CATALOGUE if k.startswith("rule.")}}
    try:
        return describe(rule, start_at, tz=tz, lang=lang, texts=texts)
    except RecurrenceError:
        return rule


# --- the week calendar -------------------------------------------------------------------------

def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


@bp.get("/schedule")
@page()
def schedule_week() -> str:
    areas = _areas()
    if not areas:
        return render_template("schedule_week.html", areas=[], area=None, days=[])
    asked = queries.read(queries.SchedulePageQuery, request.args)
    area_id = asked.area or access.caller().area_id or areas[0].id
    area = next((a for a in areas if a.id == area_id), None)
    if area is None:
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    tz = area_zone(g.db, area.id, settings().timezone)
    zone = ZoneInfo(tz)
    monday = _monday(asked.week or dt.datetime.now(zone).date())
    start = dt.datetime.combine(monday, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), zone).astimezone(dt.UTC)
    days: list[dict[str, Any]] = [{"date": monday + dt.timedelta(days=i), "slots": []}
                                  for i in range(7)]
    for slot, bc in schedule.area_slots(g.db, settings().timezone, area.id, start, end):
        local = slot.start_at.astimezone(zone)
        days[(local.date() - monday).days]["slots"].append({
            "slot": slot, "bc": bc, "title": schedule.title(bc), "start": local,
            "end": slot.end_at.astimezone(zone), "series": schedule.is_series(bc),
            "original": schedule.iso(slot.original_start)})
    return render_template(
        "schedule_week.html", areas=areas, area=area, days=days, tz=tz, monday=monday,
        prev=(monday - dt.timedelta(days=7)).isoformat(),
        next=(monday + dt.timedelta(days=7)).isoformat(),
        today=dt.datetime.now(zone).date(), weekdays=WEEKDAYS)


@bp.post("/broadcasts/<int:broadcast_id>/occurrences/cancel")
@page("broadcast.write")
def cancel_occurrence(broadcast_id: int) -> Response:
    bc = _broadcast(broadcast_id)
    change = B.parse(B.OccurrenceChange, {"original_start": request.form.get(
        "original_start", ""), "cancelled": True}, tz=settings().tz)
    change_occurrence(g.db, settings(), access.caller(), bc, change)
    g.db.commit()
    flash(t("sched.occurrence_cancelled"))
    return redirect(_back())


@bp.post("/broadcasts/<int:broadcast_id>/cancel")
@page("broadcast.write")
def cancel_series(broadcast_id: int) -> Response:
    bc = _broadcast(broadcast_id)
    cancel_broadcast(g.db, settings(), access.caller(), bc)
    g.db.commit()
    flash(t("sched.series_cancelled", id=bc.id))
    return redirect(_back())


def _broadcast(broadcast_id: int) -> Broadcast:
    bc: Broadcast | None = g.db.get(Broadcast, broadcast_id)
    if bc is None or not broadcast_visible(g.db, access.caller(), bc):
        raise not_found("broadcast")
    return bc


def _back() -> str:
    return local_path(request.form.get("next")) or url_for("web.schedule_week")


# --- a new broadcast ---------------------------------------------------------------------------

def _times(text: str) -> list[tuple[int, int]]:
    """ "06:00, 17:00" as [(6, 0), (17, 0)]; 400 for anything else."""
    out = []
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        if not part:
            continue
        try:
            when = dt.time.fromisoformat(part if len(part) > 2 else f"{part}:00")
        except ValueError:
            raise ApiError(ErrorCode.INVALID, "err.invalid_field", field="times",
                           detail="HH:MM") from None
        out.append((when.hour, when.minute))
    return sorted(set(out))


def build_rule(form: dict[str, str], lists: dict[str, list[str]]
               ) -> tuple[str | None, dt.time | None]:
    """The RRULE (or lunar rule) the form's plain choices make, and the first time of day;
    None for a one-off."""
    kind = form.get("kind", "once")
    if kind not in KINDS or kind == "once":
        return None, None
    times = _times(form.get("times", ""))
    if not times:
        raise ApiError(ErrorCode.MISSING_FIELD, "err.missing_field", field="times")
    if len({m for _h, m in times}) > 1:  # BYHOUR × BYMINUTE: every hour at every minute
        raise ApiError(ErrorCode.INVALID, "err.invalid_field", field="times",
                       detail=t("sched.same_minute"))
    hours = ",".join(str(h) for h in sorted({h for h, _m in times}))
    at = f"BYHOUR={hours};BYMINUTE={times[0][1]}"
    if kind == "lunar":
        days = [d for d in lists.get("lunar_days", []) if d in ("1", "15")] or ["1", "15"]
        return f"FREQ={LUNAR_FREQ};BYMONTHDAY={','.join(days)};{at}", dt.time(*times[0])
    interval = (form.get("interval") or "1").strip()
    if not interval.isdecimal() or not 1 <= int(interval) <= MAX_INTERVAL:
        raise ApiError(ErrorCode.INVALID, "err.invalid_field", field="interval",
                       detail=f"1-{MAX_INTERVAL}")
    parts = [f"FREQ={Freq.DAILY if kind == 'daily' else Freq.WEEKLY}"]
    if int(interval) > 1:
        parts.append(f"INTERVAL={interval}")
    if kind == "weekly":
        days = [d for d in WEEKDAYS if d in lists.get("weekdays", [])]
        if not days:
            raise ApiError(ErrorCode.MISSING_FIELD, "err.missing_field", field="weekdays")
        parts.append(f"BYDAY={','.join(days)}")
    parts.append(at)
    until = (form.get("until") or "").strip()
    if until:
        try:
            parts.append("UNTIL=" + dt.date.fromisoformat(until).strftime("%Y%m%d"))
        except ValueError:
            raise ApiError(ErrorCode.INVALID, "err.invalid_field", field="until",
                           detail="YYYY-MM-DD") from None
    return ";".join(parts), dt.time(*times[0])


def broadcast_body(form: dict[str, str], lists: dict[str, list[str]]) -> dict[str, Any]:
    """The POST /broadcasts body the page's form describes."""
    what, _, ident = (form.get("content") or "").partition(":")
    if what not in ("bulletin", "programme") or not ident.isdecimal():
        raise ApiError(ErrorCode.MISSING_FIELD, "err.missing_field", field="bulletin_id")
    # read as the body's targets (none: no_targets) before the page's own fields
    areas = B.parse(B.Targets, {"areas": [int(a) for a in lists.get("areas", [])
                                          if a.isdecimal()]}).areas
    rule, first = build_rule(form, lists)
    body: dict[str, Any] = {f"{what}_id": int(ident), "targets": {"areas": areas},
                            "priority": form.get("priority") or PriorityName.NORMAL}
    day, clock = (form.get("start_date") or "").strip(), (form.get("start_time") or "").strip()
    if rule is not None:
        body["recurrence"] = rule
        day = day or dt.datetime.now(settings().tz).date().isoformat()
        clock = first.strftime("%H:%M") if first else clock
        holidays = [h for h in lists.get("skip_holidays", []) if h in HOLIDAYS]
        if holidays:
            body["skip_holidays"] = holidays
    if day and clock:
        body["start_at"] = f"{day}T{clock}:00"
    else:  # a one-off from this page airs at a time (broadcasting now: the bulletin page)
        raise ApiError(ErrorCode.MISSING_FIELD, "err.missing_field",
                       field="start_time" if day else "start_date")
    if form.get("override"):
        body["override"] = True
    return body


def _clash_rows(clashes: list[dict[str, Any]], tz: str) -> list[dict[str, Any]]:
    zone = ZoneInfo(tz)
    rows = []
    for c in clashes:
        other = g.db.get(Broadcast, c["existing"]["broadcast_id"])

        def local(value: str) -> str:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(
                zone).strftime("%H:%M %d/%m/%Y")
        rows.append({"node": c["node_id"], "start": local(c["slot"]["start_at"]),
                     "other_id": c["existing"]["broadcast_id"],
                     "other": schedule.title(other) if other else "",
                     "other_start": local(c["existing"]["start_at"]),
                     "other_end": local(c["existing"]["end_at"])})
    return rows


@bp.route("/schedule/new", methods=["GET", "POST"])
@page("broadcast.write")
def new_schedule() -> Response | tuple[str, int]:
    user = access.caller()
    areas = _areas()
    bulletins = visible_bulletins(g.db, user, status=BulletinStatus.APPROVED)
    programmes = programme_service.visible_programmes(g.db, user)
    form: dict[str, str] = {"kind": "daily", "times": "06:00", "interval": "1",
                            "priority": PriorityName.NORMAL}
    lists: dict[str, list[str]] = {"areas": [], "weekdays": [], "lunar_days": ["1", "15"],
                                   "skip_holidays": []}
    error, clashes, words, checked = None, None, None, False
    status = 200
    if request.method == "POST":
        form = request.form.to_dict()
        lists = {k: request.form.getlist(k) for k in lists}
        try:
            body = B.parse(B.BroadcastCreate, broadcast_body(form, lists), tz=settings().tz)
            if body.recurrence is not None and body.start_at is not None:
                zone = targets_zone(g.db, body.targets.areas, [], settings().timezone)
                words = rule_words(body.recurrence, schedule.aware(body.start_at), zone)
            bc = create_broadcast(g.db, settings(), user, body)
            if form.get("action") == "save":
                g.db.commit()
                flash(t("sched.saved", id=bc.id))
                week = (schedule.aware(bc.start_at).astimezone(ZoneInfo(
                    area_zone(g.db, bc.target_areas[0], settings().timezone))).date().isoformat()
                    if bc.start_at else None)
                return redirect(url_for("web.schedule_week", area=bc.target_areas[0], week=week))
            g.db.rollback()  # only a check: nothing is kept
            checked = True
        except ApiError as err:
            g.db.rollback()
            error, status = err.message(), err.status
            if err.code == ErrorCode.SCHEDULE_CONFLICT:
                tz = area_zone(g.db, int(lists["areas"][0]), settings().timezone)
                clashes = _clash_rows(err.extra.get("clashes", []), tz)
                error = t("sched.conflict", count=err.params.get("count", len(clashes)))
    return render_template(
        "schedule_new.html", areas=areas, bulletins=bulletins, programmes=programmes, form=form,
        lists=lists, error=error, clashes=clashes, words=words, checked=checked,
        weekdays=WEEKDAYS, holidays=HOLIDAYS, kinds=KINDS, interval_max=MAX_INTERVAL,
        depth=_depths(areas)), status


def _depths(areas: list[Area]) -> dict[int, int]:
    """How deep each area sits in the tree, to indent it."""
    by_id = {a.id: a for a in g.db.scalars(select(Area))}
    out = {}
    for a in areas:
        depth, parent = 0, a.parent_id
        while parent is not None and parent in by_id and depth < 10:
            depth, parent = depth + 1, by_id[parent].parent_id
        out[a.id] = depth
    return out


# --- programmes --------------------------------------------------------------------------------

@bp.get("/programmes")
@page()
def programmes() -> str:
    return render_template("programmes.html",
                           programmes=programme_service.visible_programmes(g.db, access.caller()))


def _edit_items(form: MultiDict[str, str]) -> list[int]:
    """The items list after the button the user pressed: add, remove, up or down."""
    items = [int(i) for i in form.getlist("items") if i.isdecimal()]
    move = form.get("move", "")
    op, _, index = move.partition(":")
    if op == "add" and (form.get("add") or "").isdecimal():
        items.append(int(form["add"]))
    elif index.isdecimal() and int(index) < len(items):
        i = int(index)
        if op == "remove":
            items.pop(i)
        elif op == "up" and i > 0:
            items[i - 1], items[i] = items[i], items[i - 1]
        elif op == "down" and i + 1 < len(items):
            items[i + 1], items[i] = items[i], items[i + 1]
    return items


def _programme_form(programme_id: int | None) -> Response | tuple[str, int]:
    user = access.caller()
    p = programme_service.visible_programme(g.db, user, programme_id) \
        if programme_id is not None else None
    approved = {b.id: b for b in visible_bulletins(g.db, user, status=BulletinStatus.APPROVED)}
    error, clashes, status = None, None, 200
    if request.method == "POST":
        title = request.form.get("title", "")
        items = _edit_items(request.form)
        if request.form.get("move", "") == "save":
            try:
                if p is None:
                    p = programme_service.create_programme(
                        g.db, settings(), user, B.parse(B.ProgrammeCreate, {
                            "title": title, "items": items,
                            **({"area_id": user.area_id} if user.area_id else {})}))
                else:
                    programme_service.edit_programme(
                        g.db, settings(), user, p, B.parse(B.ProgrammeUpdate, {
                            "title": title, "items": items,
                            **({"override": True} if request.form.get("override") else {})}))
                g.db.commit()
                flash(t("prog.saved"))
                return redirect(url_for("web.edit_programme", programme_id=p.id))
            except ApiError as err:
                g.db.rollback()
                error, status = err.message(), err.status
                if err.code == ErrorCode.SCHEDULE_CONFLICT:
                    clashes = _clash_rows(err.extra.get("clashes", []), settings().timezone)
                    error = t("prog.conflict", count=err.params.get("count", len(clashes)))
    elif p is not None:
        title, items = p.title, [i["bulletin_id"] for i in p.current.items]
    else:
        title, items = "", []
    stored = {i["bulletin_id"]: i for i in p.current.items} if p is not None else {}
    visible = {b.id: b for b in visible_bulletins(g.db, access.caller())}
    rows: list[dict[str, Any]] = []
    for b_id in items:
        b = visible.get(b_id)
        ms = (b.media.duration_ms if b is not None and b.media else
              stored.get(b_id, {}).get("duration_ms")) or 0
        name = b.title if b is not None else stored.get(b_id, {}).get("title") or f"#{b_id}"
        rows.append({"id": b_id, "title": name, "ms": ms})
    total = sum(int(r["ms"]) for r in rows)
    return render_template("programme_form.html", p=p, title=title, rows=rows,
                           approved=list(approved.values()), total=_length(total), error=error,
                           clashes=clashes), status


def _length(ms: int) -> str:
    seconds = round(ms / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


@bp.route("/programmes/new", methods=["GET", "POST"])
@page("broadcast.write")
def new_programme() -> Response | tuple[str, int]:
    return _programme_form(None)


@bp.route("/programmes/<int:programme_id>", methods=["GET", "POST"])
@page()
def edit_programme(programme_id: int) -> Response | tuple[str, int]:
    if request.method == "POST" and not access.can(access.caller(), "broadcast.write"):
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    return _programme_form(programme_id)
