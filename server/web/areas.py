"""Administration: the area tree (add, rename, move, merge two wards: server.areas, the API's
own domain functions and checks) and provisioning nodes (one from a form, many from a CSV file:
server.nodes, as POST /api/v1/nodes and /nodes/import do).

A provisioning answer holds the node's broker password: its page is sent once, never stored
and never cached; the form carries a one-time mark (kept in the session), so sending it again
(a reload of the answer) provisions nothing and says the answer is gone."""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import flash, make_response, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from .. import areas as area_service
from .. import auth as access
from .. import bodies as B
from .. import nodes as node_service
from ..bodies import AREA_KINDS
from ..context import sessions, settings
from ..errors import ApiError, ErrorCode, bad_request
from ..i18n import t
from ..models import Area, Node, area_subtree_ids
from ..request_globals import g
from . import bp, page, read_form, tree_order, user_areas

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from werkzeug.wrappers import Response

ONCE_KEY = "provision_once"  # the session's one-time marks of the provisioning forms
OPEN_FORMS = 5  # how many of them it keeps


@dataclass(frozen=True)
class TreeRow:
    area: Area
    depth: int
    nodes: int  # in the area and below


def _scope() -> set[int] | None:
    return access.user_area_ids(g.db, access.caller())


def _live_areas() -> list[Area]:
    """The user's areas that are in use (not merged), by id."""
    return user_areas()


def area_tree(areas: list[Area]) -> list[TreeRow]:
    """``areas`` as a tree, depth first (siblings by name), each with its nodes counted below
    it (one query: the nodes per cluster)."""
    per_cluster = dict(g.db.execute(select(Node.cluster_id, func.count()).where(
        Node.revoked_at.is_(None)).group_by(Node.cluster_id)).all())
    rows = tree_order(sorted(areas, key=lambda a: (a.name.casefold(), a.id)))
    counts = {row.area.id: per_cluster.get(row.area.id, 0) for row in rows}
    for row in reversed(rows):  # children come after their parent: add them up bottom-up
        if row.area.parent_id in counts:
            counts[row.area.parent_id] += counts[row.area.id]
    return [TreeRow(row.area, row.depth, counts[row.area.id]) for row in rows]


@bp.get("/areas")
@page("area.write")
def areas() -> str:
    rows = area_tree(_live_areas())
    allowed = _scope()
    merged = [a for a in g.db.scalars(select(Area).where(Area.merged_into_id.is_not(None))
                                      .order_by(Area.merged_at.desc()))
              if allowed is None or a.merged_into_id in allowed]
    names = {r.area.id: r.area.name for r in rows}
    return render_template("areas.html", rows=rows, kinds=AREA_KINDS, merged=merged,
                           names=names, top_level=allowed is None)


@bp.post("/areas")
@page("area.write")
def add_area() -> Response:
    try:
        body = read_form(B.AreaCreate, request.form)
        area = area_service.create_area(g.db, access.caller(), body)
        g.db.commit()
        flash(t("areas.added", name=area.name))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.areas"))


def _area(area_id: int) -> Area:
    area = area_service.live_area(g.db, area_id)
    access.check_area(g.db, access.caller(), area.id)
    return area


@bp.get("/areas/<int:area_id>")
@page("area.write")
def area_page(area_id: int) -> str:
    area = _area(area_id)
    live = _live_areas()
    below = area_subtree_ids(g.db, [area.id])
    parents = [a for a in live if a.id not in below]
    parent = g.db.get(Area, area.parent_id) if area.parent_id else None
    if parent is not None and parent not in parents:
        parents.insert(0, parent)  # above the user's own areas: it stays where it is
    peers = [a for a in live if a.kind == area.kind and a.id not in below]
    counts = area_tree(live)
    return render_template("area.html", area=area, parents=parents, peers=peers,
                           kinds=AREA_KINDS, nodes=next((r.nodes for r in counts
                                                         if r.area.id == area.id), 0),
                           parent=parent,
                           top_level=_scope() is None)


@bp.post("/areas/<int:area_id>")
@page("area.write")
def edit_area(area_id: int) -> Response:
    """Rename and move (PATCH /api/v1/areas/{id}'s name and parent_id)."""
    form = {k: v for k, v in request.form.items() if k in ("name", "parent_id")}
    try:
        body = read_form(B.AreaUpdate, form)
        if "parent_id" in request.form and not request.form["parent_id"].strip():
            body = B.parse(B.AreaUpdate, {**body.model_dump(exclude_unset=True),
                                          "parent_id": None})  # "(top level)"
        area, moved = area_service.update_area(g.db, settings(), access.caller(), area_id, body)
        g.db.commit()
        if moved:
            node_service.sync_broker_accounts(settings(), sessions())
        flash(t("areas.saved", name=area.name))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
    return redirect(url_for("web.area_page", area_id=area_id))


def _into() -> int:
    """The area to merge into, as the API's merge body reads it (the review's link sends it
    in the query string, the confirmation in the form)."""
    return read_form(B.AreaMerge, request.values).into


@bp.get("/areas/<int:area_id>/merge")
@page("area.write")
def merge_review(area_id: int) -> str:
    """What a merge would move, worked out by the merge itself and rolled back: nothing is
    changed until the confirmation."""
    into = _into()
    gone, keep = _area(area_id), _area(into)
    names = (gone.name, keep.name)
    try:
        moved = area_service.merge_areas(g.db, settings().timezone, access.caller(), into, area_id)
    finally:
        g.db.rollback()
    return render_template("area_merge.html", gone_id=area_id, keep_id=into, gone_name=names[0],
                           keep_name=names[1], moved=moved)


@bp.post("/areas/<int:area_id>/merge")
@page("area.write")
def merge_area(area_id: int) -> Response:
    into = _into()
    moved = area_service.merge_areas(g.db, settings().timezone, access.caller(), into, area_id)
    gone, keep = g.db.get(Area, area_id), g.db.get(Area, into)
    assert gone is not None and keep is not None  # merge_areas found both
    message = t("areas.merged", name=gone.name, into=keep.name, areas=len(moved.areas),
                nodes=len(moved.nodes),
                broadcasts=len(moved.broadcasts) + len(moved.series_split),
                users=len(moved.users))
    g.db.commit()
    node_service.sync_broker_accounts(settings(), sessions())
    flash(message)
    return redirect(url_for("web.areas"))


# --- provisioning ---------------------------------------------------------------------------

def _once() -> str:
    """A new one-time mark for a provisioning form; the session keeps the last few (forms open
    in other tabs stay good)."""
    mark = secrets.token_urlsafe(16)
    session[ONCE_KEY] = [*(session.get(ONCE_KEY) or [])[-(OPEN_FORMS - 1):], mark]
    return mark


def _take_once() -> bool:
    """Whether the form's mark is one the session holds; it is used up then."""
    mark = request.form.get("once") or ""
    marks = [m for m in session.get(ONCE_KEY) or [] if isinstance(m, str)]
    if not mark or mark not in marks:
        return False
    marks.remove(mark)
    session[ONCE_KEY] = marks
    return True


def _clusters() -> list[Area]:
    return [a for a in _live_areas() if a.kind == B.AreaKind.CLUSTER]


def _form_page(status: int = 200, form: dict[str, str] | None = None,
               rows: list[dict[str, Any]] | None = None) -> tuple[str, int]:
    return render_template("provision.html", clusters=_clusters(), once=_once(),
                           form=form or {}, rows=rows or []), status


def _no_store(resp: ResponseReturnValue) -> Response:
    resp = make_response(resp)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/provisioning")
@page("node.write")
def provision_form() -> Response:
    return _no_store(_form_page())


def _number(form: Mapping[str, str], name: str) -> float | None:
    raw = (form.get(name) or "").strip().replace(",", ".")  # 21,0285 as a Vietnamese writes it
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise bad_request("err.invalid_field", field=name, detail="a number") from None


def _answers_page(answers: list[dict[str, Any]]) -> Response:
    return _no_store(render_template("provisioned.html", answers=answers,
                                     settings=settings()))


def _gone() -> Response:
    return _no_store((render_template("provisioned.html", answers=[], gone=True), 410))


@bp.post("/provisioning")
@page("node.write")
def provision() -> Response:
    """One node, as POST /api/v1/nodes: its answer (with the agent's config) shown once."""
    if not _take_once():
        return _gone()
    form = request.form
    try:
        data: dict[str, Any] = {"name": form.get("name", ""), "lat": _number(form, "lat"),
                                "lon": _number(form, "lon")}
        data.update(B.from_form(B.NodeCreate, {"cluster_id": form.get("cluster_id", "")},
                                blank_is_absent=True))
        answer, accounts = node_service.provision_node(
            g.db, settings(), access.caller(),
            B.parse(B.NodeCreate, {k: v for k, v in data.items() if v is not None}))
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
        return _no_store(_form_page(err.status, dict(form)))
    g.db.commit()
    node_service.add_broker_accounts(settings(), sessions(), accounts)
    return _answers_page([answer])


@bp.post("/provisioning/import")
@page("node.write")
def provision_import() -> Response:
    """Many nodes from a CSV file, as POST /api/v1/nodes/import: all or none, each bad row
    named by its line and column."""
    if not _take_once():
        return _gone()
    upload = request.files.get("file")
    try:
        raw = upload.read() if upload is not None else b""
        rows = node_service.read_node_csv(g.db, raw, settings().bulk_max_nodes)
        answers, accounts, errors = node_service.provision_nodes(
            g.db, settings(), access.caller(), rows)
    except ApiError as err:
        g.db.rollback()
        flash(err.message())
        return _no_store(_form_page(err.status))
    if errors:
        g.db.rollback()
        flash(t("err.invalid_rows", count=len(errors), total=len(rows)))
        return _no_store(_form_page(422, rows=[e.json(node_service.CSV_FIELDS)
                                                for e in errors]))
    g.db.commit()
    node_service.add_broker_accounts(settings(), sessions(), accounts)
    return _answers_page(answers)


@bp.post("/nodes/<node_id>/install-url")
@page("node.write")
def install_url(node_id: str) -> Response:
    """A one-time install URL for the node (POST /api/v1/nodes/{id}/provisioning-token): the
    token is shown on this answer only."""
    node = g.db.get(Node, node_id)
    allowed = _scope()
    if node is None or (allowed is not None and node.cluster_id not in allowed):
        raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
    answer = node_service.issue_provisioning_token(g.db, settings(), access.caller(), node)
    g.db.commit()
    return _no_store(render_template("install_url.html", node=node, answer=answer))
