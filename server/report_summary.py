"""The summary report (the Reports page, its CSV and PDF, GET /api/v1/reports/summary): for a
period of whole days (in the chosen area's zone) and the caller's areas, planned against aired
per area and per node (the airplay report, server/reports.py), broadcast hours by category and
area, and each node's uptime. The page is server/web/reports.py.

- A period may span up to MAX_DAYS (a six-monthly report is 181-184 days): the airplay report is
  built in windows of server.schedule.MAX_LISTING (92 days, what the API allows at once) and
  the counts added up, so no window is longer than the API's and memory holds one window's lines.
- A category is the bulletin's (Bulletin.category, server.bodies.Category); a programme's
  broadcast counts as "programme" (its items may be of several categories). Hours are what the
  nodes reported airing: each aired or partly aired item from its first start to its last end.
- Uptime is read from the telemetry a node sends every ``node_telemetry_s``: per hour, the
  reports it sent over the reports it should have sent (at most one), summed over the hours of
  the period it existed in (from its provisioning, until its revocation or now). Completed hours
  come from telemetry_hourly (kept a year, server/retention.py), the hours not rolled up yet from
  the raw rows. No telemetry kept for the period: uptime unknown ("—").
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from . import auth as access
from . import reports as airplay
from . import retention, schedule
from .config import Settings
from .errors import ApiError, ErrorCode
from .i18n import t
from .queries import ID, Query, query_text, read
from .bodies import Category, Check
from .models import (MAX_DB_ID, Area, Broadcast, Bulletin, Node, Telemetry, TelemetryHourly, User,
                     area_zone)

if TYPE_CHECKING:
    from fpdf import FPDF

MAX_DAYS = 366
DEFAULT_DAYS = 30
STATUSES = tuple(s.value for s in airplay.AirStatus)
PROGRAMME = "programme"
FONT_DIR = "/usr/share/fonts/truetype/dejavu"  # Debian's fonts-dejavu-core (install-deps.sh)
FONT, FONT_BOLD = "DejaVuSans.ttf", "DejaVuSans-Bold.ttf"


class ReportError(ApiError):
    """A period or area the report cannot be made for (shown on the page, in the user's
    language, with the form to correct it): 400 for a day that is no date, 422 for a period
    of real days the report refuses (backwards, too long), 404 for an area not the user's."""


def _zero() -> dict[str, int]:
    return {"planned": 0, **{s: 0 for s in STATUSES}}


@dataclass
class NodeRow:
    node_id: str
    name: str
    area_id: int
    counts: dict[str, int] = field(default_factory=_zero)
    uptime: float | None = None    # 0..1; None: no telemetry kept for the period


@dataclass
class Summary:
    start: dt.datetime               # aware UTC, the first day's local midnight
    end: dt.datetime                 # aware UTC, the midnight after the last day
    first_day: dt.date
    last_day: dt.date
    tz: str
    area_names: dict[int, str]
    by_area: dict[int, dict[str, int]] = field(default_factory=dict)
    nodes: dict[str, NodeRow] = field(default_factory=dict)
    hours: dict[tuple[str, int], float] = field(default_factory=dict)  # (category, area): h
    total: dict[str, int] = field(default_factory=_zero)
    # what uptime_of reads: when the report was made, its areas (None: all) and its nodes
    now: dt.datetime | None = None
    areas: set[int] | None = None
    facts: Mapping[str, airplay.ReportNode] = field(default_factory=dict, repr=False)

    def aired_share(self, counts: dict[str, int]) -> str:
        """Aired (fully) over planned, as a percentage people read; "—" with nothing planned."""
        return f"{100 * counts['aired'] / counts['planned']:.1f} %" if counts["planned"] \
            else "—"


# --- the period and the scope ------------------------------------------------------------------

def parse_day(value: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ReportError(ErrorCode.BAD_DATE, "reports.err.bad_date", value=value,
                          field=t(f"reports.{name}")) from None


def period(first: dt.date | None, last: dt.date | None, today: dt.date
           ) -> tuple[dt.date, dt.date]:
    """The period's first and last day (inclusive) as asked; by default the last DEFAULT_DAYS
    days up to today."""
    last_day = last or today
    first_day = first or last_day - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first_day > last_day:
        raise ReportError(ErrorCode.BAD_PERIOD, "reports.err.order")
    if (last_day - first_day).days + 1 > MAX_DAYS:
        raise ReportError(ErrorCode.BAD_PERIOD, "reports.err.too_long", days=MAX_DAYS)
    if first_day < schedule.EARLIEST.date() or last_day >= schedule.LATEST.date():
        raise ReportError(ErrorCode.BAD_PERIOD, "reports.err.out_of_range",
                          first=schedule.EARLIEST.year, last=schedule.LATEST.year)
    return first_day, last_day


def scope(db: Session, user: User, area_id: int | None) -> tuple[int | None, set[int] | None]:
    """The chosen area (None: all the user's) and the areas the report covers (None: all),
    refused as the API refuses it: an area the user may not see does not exist for them."""
    if area_id is None:
        return None, access.user_area_ids(db, user)
    try:
        return area_id, access.area_scope(db, user, area_id)
    except ApiError:
        raise ReportError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id) from None


def _area(value: object) -> int | None:
    """?area=: an area id; empty: all the user's. Other text names no area (404)."""
    value = query_text(value)
    if not value:
        return None
    if not value.isdecimal() or int(value) > MAX_DB_ID:
        raise ReportError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=value)
    return int(value)


def _day(name: str) -> Check:
    def read_day(value: object) -> dt.date | None:
        value = query_text(value)
        return parse_day(value, name) if value else None
    return Check(read_day, {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}],
                            "description": "YYYY-MM-DD; empty: the default"})


class SummaryQuery(Query):
    """The report's query (the page's and GET /api/v1/reports/summary's). Its fields raise the
    report's own errors (ReportError), which the page shows beside its form."""
    area: Annotated[int | None, Check(_area, ID),
                    Field(description="only nodes under this area")] = None
    first: Annotated[dt.date | None, _day("from")] = Field(
        None, alias="from", description="the first day (default: 29 days before to)")
    last: Annotated[dt.date | None, _day("to")] = Field(
        None, alias="to", description="the last day (default: today)")


# --- the numbers -------------------------------------------------------------------------------

def _categories(db: Session, broadcast_ids: set[int]) -> dict[int, str]:
    rows = db.execute(select(Broadcast.id, Broadcast.programme_id, Bulletin.category)
                      .outerjoin(Bulletin, Bulletin.id == Broadcast.bulletin_id)
                      .where(Broadcast.id.in_(broadcast_ids or [-1])))
    return {bc_id: PROGRAMME if programme_id is not None else (category or Category.OTHER)
            for bc_id, programme_id, category in rows}


def _add_lines(db: Session, summary: Summary, report: airplay.Report) -> None:
    """One window's judged items added to the summary's counts and hours."""
    kinds = _categories(db, {line.item.broadcast_id for line in report.lines})
    for area_id, found in report.by_area.items():  # the report's own sums, per area and in all
        for into in (summary.by_area.setdefault(area_id, _zero()), summary.total):
            for column, n in found.items():
                into[column] += n
    nodes = summary.nodes
    for line in report.lines:
        item = line.item
        counts = nodes[item.node_id].counts
        counts["planned"] += 1
        counts[line.status.value] += 1
        if line.started_at and line.ended_at and line.status in (airplay.AirStatus.AIRED,
                                                                 airplay.AirStatus.PARTIAL):
            key = (kinds.get(item.broadcast_id, Category.OTHER), item.area_id)
            hours = (line.ended_at - line.started_at).total_seconds() / 3600
            summary.hours[key] = summary.hours.get(key, 0.0) + hours


def uptime(db: Session, nodes: Mapping[str, airplay.ReportNode], areas: set[int] | None,
           start: dt.datetime, end: dt.datetime, now: dt.datetime, telemetry_s: int, *,
           by_id: bool = False) -> dict[str, float | None]:
    """Each node's share of its hours in [start, end) it was heard from (the module's doc);
    ``nodes``: those in ``areas`` (None: every node), whose telemetry is summed in one statement
    per table whatever their number (not in batches of node ids); ``by_id``: ``nodes`` are a
    page's few, their telemetry read by their ids."""
    per_hour = 3600 / max(telemetry_s, 1)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    frontier = retention.frontier(db)
    rolled_to = min(end_ms, frontier) if frontier is not None else start_ms
    heard: dict[str, float] = {}
    in_scope = list(nodes) if by_id else select(Node.id).where(Node.cluster_id.in_(areas)) \
        if areas is not None else None

    def scoped(column: QueryableAttribute[str]) -> tuple[ColumnElement[bool], ...]:
        return (column.in_(in_scope),) if in_scope is not None else ()
    capped = case((TelemetryHourly.count > per_hour, per_hour), else_=TelemetryHourly.count)
    for node_id, reports in db.execute(
            select(TelemetryHourly.node_id, func.sum(capped)).where(
                *scoped(TelemetryHourly.node_id), TelemetryHourly.hour_ms >= start_ms,
                TelemetryHourly.hour_ms < rolled_to).group_by(TelemetryHourly.node_id)):
        heard[node_id] = heard.get(node_id, 0.0) + float(reports or 0)
    if rolled_to < end_ms:  # the hours the dispatcher has not rolled up yet
        hour = Telemetry.ts_ms - Telemetry.ts_ms % retention.HOUR_MS
        counted = (select(Telemetry.node_id, func.count().label("n"))
                   .where(*scoped(Telemetry.node_id),
                          Telemetry.ts_ms >= max(rolled_to, start_ms),
                          Telemetry.ts_ms < end_ms)
                   .group_by(Telemetry.node_id, hour).subquery())
        for node_id, reports in db.execute(select(
                counted.c.node_id, func.sum(case((counted.c.n > per_hour, per_hour),
                                                 else_=counted.c.n)))
                .group_by(counted.c.node_id)):
            heard[node_id] = heard.get(node_id, 0.0) + float(reports or 0)
    kept = bool(heard) or _kept(db, start_ms)
    out: dict[str, float | None] = {}
    for node in nodes.values():
        lo = max(start, schedule.aware(node.created_at))
        hi = min(end, now, schedule.aware(node.revoked_at) if node.revoked_at else end)
        hours = (hi - lo).total_seconds() / 3600
        if hours <= 0 or not kept:
            out[node.id] = None
        else:
            out[node.id] = min(1.0, heard.get(node.id, 0.0) / (hours * per_hour))
    return out


def _kept(db: Session, start_ms: int) -> bool:
    """Whether any telemetry is kept from the period on (else uptime is unknown, not 0)."""
    return db.scalar(select(func.count()).select_from(TelemetryHourly).where(
        TelemetryHourly.hour_ms >= start_ms)) or db.scalar(select(func.count()).select_from(
            Telemetry).where(Telemetry.ts_ms >= start_ms)) or False


def summarise(db: Session, s: Settings, *, areas: set[int] | None, first_day: dt.date,
              last_day: dt.date, tz: str, now: dt.datetime, uptimes: bool = True) -> Summary:
    """The report for the nodes in ``areas`` (None: all) over [first_day, last_day] in ``tz``;
    ``s``: the server's settings (its zone, the airplay grace, the telemetry period).
    ``uptimes`` False: no node's uptime yet (the page asks uptime_of for the rows it shows)."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(first_day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), zone
                              ).astimezone(dt.UTC)
    nodes = airplay.scoped_nodes(db, areas, None)
    names = {a.id: a.name for a in db.scalars(select(Area))}
    summary = Summary(start, end, first_day, last_day, tz, names, now=now, areas=areas,
                      facts=nodes)
    summary.nodes = {n.id: NodeRow(n.id, n.name, n.cluster_id) for n in
                     sorted(nodes.values(), key=lambda n: (names.get(n.cluster_id, ""), n.id))}
    grace = dt.timedelta(seconds=s.airplay_grace_s)
    lo = start
    while lo < end:  # in the API's windows: one window's lines in memory at a time
        hi = min(end, lo + schedule.MAX_LISTING)
        items = airplay.planned_items(db, s.timezone, nodes, lo, hi)
        plays, acks = airplay.reported_rows(db, items)
        # read for one-off commands only (a series' slot is never missed as offline)
        presence = {n.id: airplay.Presence(bool(n.online), schedule.aware(n.last_seen)
                                           if n.last_seen else None)
                    for n in (nodes[i] for i in {i.node_id for i in items if i.cmd_id})}
        _add_lines(db, summary, airplay.airplay(items, plays, acks, now=now, grace=grace,
                                                presence=presence))
        lo = hi
    if uptimes:
        uptime_of(db, s, summary, list(summary.nodes.values()))
    return summary


def uptime_of(db: Session, s: Settings, summary: Summary, rows: list[NodeRow]) -> None:
    """The uptime of these rows of the summary's (all of them: by its areas, else by their
    ids: a page of them costs a page's telemetry, not the fleet's)."""
    every = len(rows) == len(summary.nodes)
    nodes = summary.facts if every else {r.node_id: summary.facts[r.node_id] for r in rows}
    assert summary.now is not None
    for node_id, share in uptime(db, nodes, summary.areas, summary.start, summary.end,
                                 summary.now, s.node_telemetry_s, by_id=not every).items():
        summary.nodes[node_id].uptime = share


# --- what people read --------------------------------------------------------------------------

def category_name(category: str) -> str:
    return t("reports.programme") if category == PROGRAMME else t(f"cat.{category}")


def percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f} %"


def hour_rows(summary: Summary) -> list[tuple[str, str, float]]:
    """(category, area, hours) by category then area, for the page, the CSV and the PDF."""
    return sorted(((category_name(c), summary.area_names.get(a, str(a)), h)
                   for (c, a), h in summary.hours.items()), key=lambda r: (r[0], r[1]))


def csv_text(summary: Summary) -> str:
    """One table, a row per area, per node, per category and area, and the total; its first
    column says which. A byte order mark first, so a spreadsheet reads the diacritics."""
    out = io.StringIO()
    out.write("\ufeff")
    w = csv.writer(out)
    w.writerow([t("reports.csv.section"), t("alerts.area"), t("col.node"),
                t("form.category"), t("reports.planned"),
                *(t(f"airstatus.{st}") for st in STATUSES), t("reports.hours"),
                t("reports.uptime")])
    w.writerow([t("reports.period"), f"{summary.first_day.isoformat()} — "
                f"{summary.last_day.isoformat()}", summary.tz, "", "", "", "", "", "", "", ""])

    def counts(c: dict[str, int]) -> list[int]:
        return [c["planned"], *(c[st] for st in STATUSES)]

    for area_id, c in sorted(summary.by_area.items(),
                             key=lambda kv: summary.area_names.get(kv[0], "")):
        w.writerow([t("reports.csv.area"), summary.area_names.get(area_id, area_id), "", "",
                    *counts(c), "", ""])
    for row in summary.nodes.values():
        w.writerow([t("reports.csv.node"), summary.area_names.get(row.area_id, row.area_id),
                    f"{row.name} ({row.node_id})", "", *counts(row.counts), "",
                    "" if row.uptime is None else f"{100 * row.uptime:.1f}"])
    for category, area, hours in hour_rows(summary):
        w.writerow([t("reports.csv.hours"), area, "", category, "", "", "", "", "",
                    f"{hours:.2f}", ""])
    w.writerow([t("reports.total"), "", "", "", *counts(summary.total),
                f"{sum(summary.hours.values()):.2f}", ""])
    return out.getvalue()


def pdf_bytes(summary: Summary, scope_name: str) -> bytes:
    """The report as a PDF: a heading, a bar chart of planned against aired per area, then the
    tables (per area, per node with its uptime, hours by category and area)."""
    from fpdf import FPDF  # imported here: only a download needs it
    fonts = [os.path.join(FONT_DIR, name) for name in (FONT, FONT_BOLD)]
    missing = [f for f in fonts if not os.path.isfile(f)]
    if missing:
        raise ReportError(ErrorCode.NO_FONT, "reports.err.no_font", path=missing[0])
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(t("reports.title"))
    pdf.add_font("DejaVu", "", fonts[0])
    pdf.add_font("DejaVu", "B", fonts[1])
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 15)
    pdf.cell(0, 9, t("reports.title"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    for text in (t("reports.pdf.period", first=summary.first_day.strftime("%d/%m/%Y"),
                   last=summary.last_day.strftime("%d/%m/%Y"), tz=summary.tz),
                 t("reports.pdf.scope", area=scope_name),
                 t("reports.pdf.total", planned=summary.total["planned"],
                   aired=summary.total["aired"], partial=summary.total["partial"],
                   missed=summary.total["missed"], share=summary.aired_share(summary.total))):
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    areas = sorted(summary.by_area.items(), key=lambda kv: summary.area_names.get(kv[0], ""))
    _chart(pdf, [(summary.area_names.get(a, str(a)), c["planned"], c["aired"])
                 for a, c in areas])
    _table(pdf, t("reports.by_area"),
           [t("alerts.area"), t("reports.planned"), *(t(f"airstatus.{st}") for st in STATUSES),
            t("reports.aired_share")],
           [[summary.area_names.get(a, str(a)), c["planned"], *(c[st] for st in STATUSES),
             summary.aired_share(c)] for a, c in areas], (40, 18, 18, 22, 18, 22, 22))
    _table(pdf, t("reports.by_node"),
           [t("col.node"), t("alerts.area"), t("reports.planned"), t("airstatus.aired"),
            t("airstatus.missed"), t("reports.uptime")],
           [[f"{r.name} ({r.node_id})", summary.area_names.get(r.area_id, ""),
             r.counts["planned"], r.counts["aired"], r.counts["missed"], percent(r.uptime)]
            for r in summary.nodes.values()], (56, 36, 22, 22, 22, 22))
    _table(pdf, t("reports.by_category"),
           [t("form.category"), t("alerts.area"), t("reports.hours")],
           [[c, a, f"{h:.2f}"] for c, a, h in hour_rows(summary)], (70, 70, 40))
    return bytes(pdf.output())


BAR_PLANNED, BAR_AIRED = (176, 190, 197), (46, 125, 50)


def _chart(pdf: FPDF, bars: list[tuple[str, int, int]]) -> None:
    """Planned (grey) and aired (green) side by side per area, with a legend and the numbers."""
    pdf.ln(3)
    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(0, 7, t("reports.chart"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 8)
    if not bars:
        pdf.cell(0, 6, t("reports.nothing"), new_x="LMARGIN", new_y="NEXT")
        return
    bars = bars[:12]
    height, label_h = 50.0, 13.0  # a name takes three lines at most
    if pdf.get_y() + height + label_h + 10 > pdf.h - pdf.b_margin:
        pdf.add_page()
    left, top = pdf.l_margin, pdf.get_y() + 2
    width = pdf.w - pdf.l_margin - pdf.r_margin
    top_value = max(max(p, a) for _, p, a in bars) or 1
    group = width / len(bars)
    bar_w = min(12.0, group * 0.35)
    pdf.set_draw_color(120, 120, 120)
    pdf.line(left, top + height, left + width, top + height)
    for n, (name, planned, aired) in enumerate(bars):
        x = left + n * group + group / 2 - bar_w
        for k, (value, colour) in enumerate(((planned, BAR_PLANNED), (aired, BAR_AIRED))):
            h = height * value / top_value
            pdf.set_fill_color(*colour)
            pdf.rect(x + k * bar_w, top + height - h, bar_w, h, style="F")
            pdf.set_xy(x + k * bar_w - 2, top + height - h - 4)
            pdf.cell(bar_w + 4, 4, str(value), align="C")
        pdf.set_xy(left + n * group, top + height + 1)
        pdf.multi_cell(group, 4, name if len(name) <= 40 else name[:39] + "…", align="C",
                       max_line_height=4)
    y = top + height + label_h + 2
    for k, (label, colour) in enumerate(((t("reports.planned"), BAR_PLANNED),
                                         (t("airstatus.aired"), BAR_AIRED))):
        pdf.set_fill_color(*colour)
        pdf.rect(left + k * 45, y, 4, 4, style="F")
        pdf.set_xy(left + k * 45 + 5, y)
        pdf.cell(38, 4, label)
    pdf.set_xy(left, y + 8)


def _table(pdf: FPDF, title: str, head: list[str], rows: list[list[Any]],
           widths: tuple[int, ...]) -> None:
    from fpdf.fonts import FontFace
    pdf.ln(2)
    pdf.set_font("DejaVu", "B", 11)
    pdf.cell(0, 7, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 8)
    if not rows:
        pdf.cell(0, 6, t("reports.nothing"), new_x="LMARGIN", new_y="NEXT")
        return
    pdf.set_fill_color(255, 255, 255)  # the rows: white; the heading row: its own fill
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=5, align="LEFT",
                   cell_fill_mode="NONE", headings_style=FontFace(emphasis="BOLD",
                                                                  fill_color=(236, 239, 241)),
                   width=min(sum(widths), pdf.w - pdf.l_margin - pdf.r_margin)) as table:
        for cells in [head, *rows]:
            row = table.row()
            for cell in cells:
                row.cell(str(cell))
    pdf.ln(2)


# --- as asked: by the page, its downloads and the API ------------------------------------------

def asked(db: Session, s: Settings, user: User, args: Mapping[str, str], uptimes: bool = True
          ) -> tuple[Summary, str, int | None]:
    """The report the query (from, to: YYYY-MM-DD; area) asks for within the user's areas, the
    name of what it covers, and the chosen area; a ReportError for a wrong period or area."""
    query = read(SummaryQuery, args)
    area_id, areas = scope(db, user, query.area)
    home = area_id if area_id is not None else user.area_id
    tz = area_zone(db, home, s.timezone) if home is not None else s.timezone
    now = dt.datetime.now(dt.UTC)
    first_day, last_day = period(query.first, query.last, now.astimezone(ZoneInfo(tz)).date())
    summary = summarise(db, s, areas=areas, first_day=first_day, last_day=last_day, tz=tz,
                        now=now, uptimes=uptimes)
    named = area_id if area_id is not None else user.area_id
    name = summary.area_names.get(named, "") if named is not None else t("reports.all_areas")
    return summary, name, area_id


def summary_json(summary: Summary, area_id: int | None) -> dict[str, Any]:
    names = summary.area_names
    return {"from": summary.first_day.isoformat(), "to": summary.last_day.isoformat(),
            "tz": summary.tz, "area_id": area_id,
            "areas": [{"area_id": a, "area_name": names.get(a), **c}
                      for a, c in sorted(summary.by_area.items())],
            "nodes": [{"node_id": r.node_id, "name": r.name, "area_id": r.area_id, **r.counts,
                       "uptime": None if r.uptime is None else round(r.uptime, 4)}
                      for r in summary.nodes.values()],
            "hours": [{"category": c, "area_id": a, "area_name": names.get(a),
                       "hours": round(h, 4)} for (c, a), h in sorted(summary.hours.items())],
            "total": summary.total}
