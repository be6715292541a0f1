"""Every query string the API reads, declared once (pydantic, as the request bodies of
server/bodies.py): the routes read their query through these models, the pages their filters
(the end of this module), and the OpenAPI document's query parameters are generated from them
(server/openapi.py ``query_params``). ``read`` turns the first problem into the API's error JSON
as ``server.bodies.parse`` does.

A query value is text: a number is read from its digits, and an empty value is a filter not
given (a page's form sends its empty fields), except where a number is asked for. What needs
the database or the caller (whether an area or a node exists and may be seen) stays in the
routes, which receive the parsed model."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo

from device_agent.protocol import NAME_RE

from .alerts import Kind as AlertKind
from .alerts import State as AlertState
from .bodies import CATEGORIES, TIME, Body, Check, invalid, api_error, read_time
from .bulletins import BulletinStatus
from .models import MAX_DB_ID
from .nodes import NODE_STATUSES
from .retention import RESOLUTIONS

MAX_NODE_ID = 128  # ?after=: longer is no node id
ALERT_STATES = tuple(s.value for s in AlertState)
ALERT_KINDS = tuple(k.value for k in AlertKind)
BULLETIN_STATUSES = tuple(s.value for s in BulletinStatus)

# The parameters' schemas, as the OpenAPI document shows them.
ID = {"type": "integer", "minimum": 0, "maximum": MAX_DB_ID}
NODE_ID = {"type": "string", "pattern": NAME_RE.pattern}
# a query's node filter: a node id, or empty as a page's form sends it (no filter)
NODE_ID_OR_EMPTY = {"anyOf": [NODE_ID, {"type": "string", "maxLength": 0}]}
TIME_OR_EMPTY = {"anyOf": [TIME, {"const": ""}], "description": "ISO 8601; empty: no bound"}


def query_text(value: Any) -> str:
    """A query value: text (the field types below and the summary report's read it first)."""
    if not isinstance(value, str):  # a query value is always text; a test may pass another
        raise invalid("expected str")
    return value


def Id(*, blank: bool = False, detail: str = "an id") -> Check:
    """A row's id in digits (at most the largest id a column holds); with ``blank`` (a page's
    form), spaces around it are dropped and an empty value is no filter (None)."""
    def read(value: Any) -> int | None:
        value = query_text(value)
        if blank:
            value = value.strip()
            if not value:
                return None
        if not value.isdecimal() or int(value) > MAX_DB_ID:
            raise invalid(detail)
        return int(value)
    return Check(read, ID)


def Limit(most: int) -> Check:
    """How many rows at most: a whole number (a sign allowed), held to 1..most; other text is
    refused, never read as the default."""
    def read(value: Any) -> int:
        value = query_text(value).strip()
        if not (value.isascii() and value.lstrip("-").isdigit()):
            raise invalid("a number")
        return max(1, min(int(value), most))
    return Check(read, {"type": "integer", "description": f"at most this many (1-{most})"})


def Among(values: tuple[str, ...], detail: str | None = None) -> Check:
    """One of ``values``, or empty: none (None); anything else is refused naming them."""
    def read(value: Any) -> str | None:
        text = query_text(value)
        if not text:
            return None
        if text not in values:
            raise invalid(detail or " | ".join(values))
        return text
    return Check(read, {"type": "string", "enum": [*values, ""]})


def Several(values: tuple[str, ...]) -> Check:
    """One or more of ``values``, comma-separated; empty: all of them (an empty tuple)."""
    one = "|".join(values)

    def read(value: Any) -> tuple[str, ...]:
        value = query_text(value)
        chosen = tuple(value.split(",")) if value else ()
        if any(x not in values for x in chosen):  # ",open" too, as the pattern says
            raise invalid(" | ".join(values))
        return chosen
    return Check(read, {"type": "string", "pattern": f"^(({one})(,({one}))*)?$"})


def Filter(max_len: int | None = None, detail: str = "", schema: dict[str, Any] | None = None
           ) -> Check:
    """Text to filter by, or empty: no filter (None); longer than ``max_len`` is refused with
    ``detail``. ``schema``: what the document says the value is (the route checks that)."""
    def read(value: Any) -> str | None:
        value = query_text(value)
        if max_len is not None and len(value) > max_len:
            raise invalid(detail)
        return value or None
    return Check(read, schema or ({"type": "string"} if max_len is None else
                                  {"type": "string", "maxLength": max_len}))


def _time(value: Any, info: ValidationInfo) -> dt.datetime | None:
    """A bound in time (naive UTC), or empty: no bound. A time without an offset is in the
    zone ``read`` was given: a zone, or the zone of the parameters read before it."""
    value = query_text(value)
    if not value:
        return None
    zone = (info.context or {}).get("zone") or dt.UTC
    if callable(zone) and not isinstance(zone, dt.tzinfo):
        zone = zone(info.data)
    try:
        return read_time(value, zone)
    except ValueError as err:
        raise invalid(str(err)) from None


Time = Annotated[dt.datetime | None, Check(_time, TIME_OR_EMPTY)]


class Query(Body):
    """A query string: its parameters are optional, unknown ones are ignored (``lang``), and
    ``from`` and ``to`` are the fields ``start`` and ``end``."""
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)
    blank_is_missing: ClassVar[bool] = False


Q = TypeVar("Q", bound=Query)
Zone = dt.tzinfo | Callable[[dict[str, Any]], dt.tzinfo]


def read(model: type[Q], args: Mapping[str, str], *, zone: Zone = dt.UTC) -> Q:
    """``args`` (a request's query: the first value of each name) as ``model``, or the ApiError
    (400) of its first problem. ``zone``: where a time without an offset is read, or what
    gives it from the parameters read before the times (``from`` and ``to`` come last)."""
    try:
        return model.model_validate(dict(args.items()), strict=True, context={"zone": zone})
    except ValidationError as err:
        raise api_error(model, err) from None


# --- the queries --------------------------------------------------------------------------------

def _start(description: str) -> Any:
    return Field(None, alias="from", description=description)


def _end(description: str) -> Any:
    return Field(None, alias="to", description=description)


NodeStatus = Annotated[str | None, Among(NODE_STATUSES), Field(
    description="never_connected: provisioned, never heard from (they raise no offline alert); "
                "maintenance: in a maintenance window")]


class NodeQuery(Query):
    """GET /nodes: a page of nodes in id order."""
    area: Annotated[int | None, Id(), Field(description="only nodes under this area")] = None
    limit: Annotated[int, Limit(1000)] = 100
    after: Annotated[str | None, Filter(
        MAX_NODE_ID, "a node id"),
        Field(description="the nodes after this node id (the previous page's next)")] = None
    status: NodeStatus = None


class AlertQuery(Query):
    """GET /alerts, newest first."""
    state: Annotated[tuple[str, ...], Several(ALERT_STATES), Field(
        description=f"{', '.join(ALERT_STATES)}; several comma-separated")] = ()
    area: Annotated[int | None, Id(), Field(description="only alerts under this area")] = None
    node: Annotated[str | None, Filter(schema=NODE_ID_OR_EMPTY), Field(
        description="only this node's (empty: every node)")] = None
    kind: Annotated[str | None, Among(ALERT_KINDS),
                    Field(description="empty: every kind")] = None
    limit: Annotated[int, Limit(5000)] = 500


class TelemetryQuery(Query):
    """GET /nodes/{node_id}/telemetry: a period and its resolution."""
    start: Time = _start("the period's start (default: a day before to)")
    end: Time = _end("its end (default: now)")
    resolution: Annotated[str | None, Among(RESOLUTIONS, "raw, hour or auto"),
                          Field(description="raw, hour or auto (default)")] = None


class ScheduleQuery(Query):
    """GET /areas/{area_id}/schedule and its iCalendar: a window in the area's zone."""
    start: Time = _start("the window's start (default: now; without an offset: in the "
                         "area's zone)")
    end: Time = _end("its end (default: a week after from; at most 92 days after)")


class SlotsQuery(Query):
    """GET /broadcasts/{broadcast_id}/slots: a window of a series' occurrences."""
    start: Time = _start("the window's start (default: a day ago)")
    end: Time = _end("its end (default: two days from now, or from from; at most 7 days after "
                     "from, and before the 201st occurrence: the answer's to says where it "
                     "ends)")


class BulletinQuery(Query):
    """GET /bulletins."""
    status: Annotated[str | None, Among(BULLETIN_STATUSES), Field(
        description="only bulletins in this status (empty: every status)")] = None


class PlayLogQuery(Query):
    """GET /playlogs, newest first."""
    node: Annotated[str | None, Filter(), Field(description="only this node's")] = None
    area: Annotated[int | None, Id(), Field(description="only nodes under this area")] = None
    start: Time = _start("plays started at or after this")
    end: Time = _end("plays started before this")
    limit: Annotated[int, Limit(10000)] = 1000


class AirplayQuery(Query):
    """GET /reports/airplay: times without an offset are read in the zone of ``area``, else of
    the caller's area."""
    area: Annotated[int | None, Id(), Field(description="only nodes under this area")] = None
    node: Annotated[str | None, Filter(schema=NODE_ID_OR_EMPTY), Field(
        description="only this node (empty: every node)")] = None
    start: Time = _start("the period's start (default: a day before to)")
    end: Time = _end("its end (default: now; at most 92 days after from)")


class AuditQuery(Query):
    """GET /audit, newest first."""
    start: Time = _start("entries at or after this")
    end: Time = _end("entries before this")
    actor: Annotated[str | None, Filter(), Field(
        description="username, system or dispatcher")] = None
    action: Annotated[str | None, Filter(), Field(
        description="an action, or its prefix (bulletins)")] = None
    limit: Annotated[int, Limit(10000)] = 1000


# --- the pages' filters -------------------------------------------------------------------------
# What a page's links and GET forms send (server/web/). An empty field is no filter. A value the
# page never offers is refused with the API's error, which the error page shows naming the
# parameter: read as no filter, a mistyped link would show the whole list as if it were the
# filtered one.

SEARCH_MAX = 100  # a list's search words: the field's maxlength, and what is searched


def _words(value: Any) -> str:
    return query_text(value).strip()[:SEARCH_MAX]


def _text(value: Any) -> str | None:
    return query_text(value).strip() or None


def _flag(value: Any) -> bool:
    return query_text(value) == "1"


_PAGE_ID = Id(blank=True, detail="a number")


def _page_no(value: Any) -> int:
    return max(1, _PAGE_ID.read(value) or 1)


def _day(value: Any) -> dt.date | None:
    value = query_text(value).strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise invalid("YYYY-MM-DD") from None


# words in a list's search field; longer is cut to what the field admits
Words = Annotated[str, Check(_words, {"type": "string", "maxLength": SEARCH_MAX})]
# one of a list's choices as a select sends it (an actor, an action), or empty: any
Option = Annotated[str | None, Check(_text, {"type": "string"})]
# an area or a row as a select or a link sends its id, or empty: none
PageId = Annotated[int | None, _PAGE_ID]
# a page of a list, from 1 (empty or 0: the first); past the last, the view shows the last
PageNo = Annotated[int, Check(_page_no, {"type": "integer", "minimum": 0})]
# a day as a date field sends it, or empty: none
Day = Annotated[dt.date | None, Check(_day, {"type": "string", "format": "date"})]


class NodePageQuery(Query):
    """The node list page (server/web/fleet.py): the API's status, an area, in alarm only (1),
    words in the name or id, a page."""
    area: PageId = None
    status: NodeStatus = None
    alarm: Annotated[bool, Check(_flag, {"enum": ["1", ""]})] = False
    q: Words = ""
    page: PageNo = 1


class AlertPageQuery(Query):
    """The alerts page (server/web/alerts.py): a tab (empty: open alerts), an area and a kind
    (empty: all), a page; also the place an acknowledging form comes back to."""
    state: Annotated[str | None, Among(ALERT_STATES)] = None
    area: PageId = None
    kind: Annotated[str | None, Among(ALERT_KINDS)] = None
    page: PageNo = 1


class BulletinPageQuery(Query):
    """The bulletin list page (server/web/bulletins.py): a status and a category (empty: all),
    words of the title or text."""
    status: Annotated[str | None, Among(BULLETIN_STATUSES)] = None
    category: Annotated[str | None, Among(CATEGORIES)] = None
    q: Words = ""


class AuditPageQuery(Query):
    """The audit log page (server/web/admin.py): an actor, an action and a kind of thing
    changed (empty: all), the first and last day (in the server's zone), the entries before
    an entry's id (the next page)."""
    actor: Option = None
    action: Option = None
    target: Option = None
    start: Day = Field(None, alias="from")
    end: Day = Field(None, alias="to")
    before: PageId = None


class AreaPageQuery(Query):
    """A page about one area, chosen in a list (the ward settings' picker, server/web/admin.py):
    its id, or empty: none chosen."""
    area: PageId = None


class SchedulePageQuery(AreaPageQuery):
    """The week calendar (server/web/schedule.py): an area (empty: the user's own) and a day of
    the week shown (empty: this week)."""
    week: Day = None


class ListPageQuery(Query):
    """A page of a table below a page's own form (the reports' nodes)."""
    page: PageNo = 1
