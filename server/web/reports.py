"""The Reports page (issue 9): a period (whole days, with the six-monthly periods one click
away) and an area of the user's, the summary report on the page (server/report_summary.py:
planned against aired per area and node, hours by category and area, node uptime), and the same
report downloaded as CSV or PDF. A wrong period or area is said on the page, in the user's
language, with the form kept to correct it.

At a province's size the page stays one a ward office's slow link can take: the areas' table (a
row per cluster, each linking to that area's own report) in full, the nodes' table a page of
NODE_PAGE rows at a time (?page=); every node's row stays in the CSV and the PDF. Its whole
table at 10,000 nodes was 5.4 MB of HTML and most of a 1.7 s render (docs/benchmarks.md)."""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from itertools import islice

from flask import Response, render_template, request

from .. import queries
from ..context import settings
from ..i18n import t
from ..models import Area
from ..report_summary import (STATUSES, ReportError, Summary, asked, csv_text, hour_rows,
                              pdf_bytes, percent, uptime_of)
from ..auth import caller
from ..request_globals import g
from . import bp, page, user_areas

NODE_PAGE = 50  # the nodes' table's rows a page


# --- the page and its downloads ----------------------------------------------------------------

def _asked(uptimes: bool = True) -> tuple[Summary, str, int | None]:
    return asked(g.db, settings(), caller(), request.args, uptimes)


def _choices() -> list[Area]:
    """The user's areas, merged wards included: their past broadcasts stay reportable."""
    return user_areas(merged=True)


def _halves(today: dt.date) -> list[tuple[str, dt.date, dt.date]]:
    """The six-monthly periods people report on: this year's halves so far and last year's."""
    out = []
    for year in (today.year, today.year - 1):
        for half, (a, b) in enumerate(((dt.date(year, 1, 1), dt.date(year, 6, 30)),
                                       (dt.date(year, 7, 1), dt.date(year, 12, 31))), 1):
            if a <= today:
                out.append((t(f"reports.half{half}", year=year), a, b))
    return out


@bp.get("/reports")
@page()
def reports() -> tuple[str, int]:
    try:
        summary, name, area_id = _asked(uptimes=False)  # the shown page's rows' only
        error = None
    except ReportError as err:
        summary, name, area_id, error = None, "", None, err
    today = dt.datetime.now(ZoneInfo(settings().timezone)).date()
    first = request.args.get("from") or (summary.first_day.isoformat() if summary else "")
    last = request.args.get("to") or (summary.last_day.isoformat() if summary else "")
    query = {"from": first, "to": last, "area": request.args.get("area") or None}
    body = render_template(
        "reports.html", summary=summary, scope_name=name, area_id=area_id, areas=_choices(),
        **_node_page(summary, query),
        error=error.message() if error else None, first=first, last=last, query=query,
        halves=_halves(today), statuses=STATUSES, hour_rows=hour_rows(summary) if summary
        else [], percent=percent)
    return body, error.status if error else 200


def _node_page(summary: Summary | None, query: dict[str, str | None]) -> dict[str, Any]:
    """The page of the nodes' table asked for (?page=, from 1; past the last: the last)."""
    total = len(summary.nodes) if summary else 0
    pages = max(1, -(-total // NODE_PAGE))
    number = min(pages, queries.read(queries.ListPageQuery, request.args).page)
    first = (number - 1) * NODE_PAGE
    rows = list(islice(summary.nodes.values(), first, first + NODE_PAGE)) if summary else []
    if summary and rows:
        uptime_of(g.db, settings(), summary, rows)
    return {"node_rows": rows, "node_total": total, "node_first": first + 1,
            "node_last": first + len(rows), "node_page": number, "node_pages": pages,
            "page_args": {k: v for k, v in query.items() if v}}


@bp.get("/reports/download.<any(csv, pdf):fmt>")
@page()
def reports_download(fmt: str) -> Response | tuple[str, int]:
    try:
        summary, name, _ = _asked()
        filename = f"bao-cao-{summary.first_day.isoformat()}-{summary.last_day.isoformat()}"
        if fmt == "csv":
            return Response(csv_text(summary), mimetype="text/csv",
                            headers={"Content-Disposition":
                                     f"attachment; filename={filename}.csv"})
        return Response(pdf_bytes(summary, name), mimetype="application/pdf",
                        headers={"Content-Disposition": f"attachment; filename={filename}.pdf"})
    except ReportError as err:
        return render_template("error.html", message=err.message()), err.status

