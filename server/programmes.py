"""Programmes (chương trình): approved bulletins played back to back as one slot. Saving one
renders its items' approved media into one file (audio.programme), stored by sha256 like a
bulletin's, as a new revision; on the wire a programme is one item with one media, so nodes
know nothing of programmes. A one-off broadcast airs the revision it was made with; a series
follows the programme's edits for the slots built after them (its past play logs keep the
sha256 they played)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.programme import concat_media
from audio.store import AudioError, MediaStore

from . import auth
from .bodies import ProgrammeCreate, ProgrammeUpdate
from .bulletins import current_approval, media_for_stored, scoped_area, visible_bulletin
from .config import Settings
from .deliveries import HoldReason
from .errors import ApiError, ErrorCode, not_found
from .i18n import Word
from .models import (Broadcast, BulletinApproval, Media, Programme, ProgrammeRevision, User,
                     utcnow)
from .times import iso


def visible_programme(db: Session, user: User, programme_id: int) -> Programme:
    """The programme when the user may see it (404 otherwise): as for bulletins, a user scoped
    to an area sees that area's programmes and unscoped ones."""
    p = db.get(Programme, programme_id)
    allowed = auth.user_area_ids(db, user)
    if p is None or (allowed is not None and p.area_id is not None
                     and p.area_id not in allowed):
        raise not_found("programme")
    return p


def visible_programmes(db: Session, user: User, limit: int = 200) -> list[Programme]:
    """Newest first."""
    allowed = auth.user_area_ids(db, user)
    q = select(Programme).order_by(Programme.id.desc()).limit(limit)
    if allowed is not None:
        q = q.where(Programme.area_id.is_(None) | Programme.area_id.in_(allowed))
    return list(db.scalars(q))


def programme_json(p: Programme) -> dict[str, Any]:
    rev = p.current
    media = rev.media
    return {"id": p.id, "title": p.title, "area_id": p.area_id, "revision": rev.revision,
            "items": [{"bulletin_id": i["bulletin_id"], "approval_id": i["approval_id"],
                       "sha256": i["sha256"], "title": i.get("title"),
                       "duration_ms": i.get("duration_ms")} for i in rev.items],
            "sha256": media.sha256, "audio_url": f"/media/{media.sha256}.{media.ext}",
            "duration_ms": media.duration_ms, "bytes": media.bytes,
            "created_at": iso(p.created_at), "updated_at": iso(p.updated_at)}


def _items(db: Session, user: User, bulletin_ids: list[int]) -> list[BulletinApproval]:
    """Each bulletin's current approval, in order: 404 for one the user cannot see, 409 for one
    not approved as it stands."""
    out = []
    for bulletin_id in bulletin_ids:
        b = visible_bulletin(db, user, bulletin_id)
        approval = current_approval(b)
        if approval is None:
            raise ApiError(ErrorCode.NOT_APPROVED, "err.bulletin_not_approved", id=b.id,
                           status=Word("status", b.status))
        out.append(approval)
    return out


def _render(db: Session, s: Settings, approvals: list[BulletinApproval]) -> Media:
    """The approved media joined into one stored file (the same items give the same sha256)."""
    store = MediaStore(s.media_dir)
    paths = []
    for a in approvals:
        media = db.get(Media, a.media_sha256)
        path = store.path(a.media_sha256, media.ext) if media else None
        if path is None or not path.is_file():
            raise ApiError(ErrorCode.MEDIA_MISSING,
                           "err.programme_media_missing", id=a.bulletin_id)
        paths.append(path)
    try:
        stored, duration_ms = concat_media(paths, s.audio_settings(), store)
    except AudioError as err:
        raise ApiError(ErrorCode.AUDIO_FAILED,
                       "err.programme_render", detail=str(err)) from None
    return media_for_stored(db, stored, duration_ms)


def _revision(db: Session, s: Settings, user: User, p: Programme,
              approvals: list[BulletinApproval], number: int) -> ProgrammeRevision:
    media = _render(db, s, approvals)
    items = []
    for a in approvals:
        item_media = db.get(Media, a.media_sha256)
        items.append({"bulletin_id": a.bulletin_id, "approval_id": a.id,
                      "sha256": a.media_sha256, "title": a.title,
                      "duration_ms": item_media.duration_ms if item_media else None})
    rev = ProgrammeRevision(programme_id=p.id, revision=number, title=p.title, items=items,
                            media_sha256=media.sha256, created_by=user.id)
    db.add(rev)
    p.revisions.append(rev)
    db.flush()
    return rev


def create_programme(db: Session, s: Settings, user: User, body: ProgrammeCreate) -> Programme:
    area_id = body.area_id if body.area_id is not None else user.area_id
    if body.area_id is not None:
        scoped_area(db, user, body.area_id)
    approvals = _items(db, user, body.items)
    p = Programme(title=body.title, area_id=area_id, created_by=user.id)
    db.add(p)
    db.flush()
    _revision(db, s, user, p, approvals, 1)
    return p


def edit_programme(db: Session, s: Settings, user: User, p: Programme,
                   body: ProgrammeUpdate) -> Programme:
    """A new revision (new media) when the items or the title change; the series that air the
    programme take it for their slots from now on, one-offs keep theirs."""
    if p.area_id is not None:
        auth.check_area(db, user, p.area_id)
    elif auth.user_area_ids(db, user) is not None:
        raise ApiError(ErrorCode.FORBIDDEN_AREA, "err.forbidden_area", area="-")
    current = p.current
    ids = body.items if body.items is not None else [i["bulletin_id"] for i in current.items]
    if body.items is not None:
        approvals = _items(db, user, ids)
    else:  # the same approved revisions as before
        approvals = [a for a in (db.get(BulletinApproval, i["approval_id"])
                                 for i in current.items) if a is not None]
    title = body.title if body.title is not None else p.title
    same = title == p.title and [a.id for a in approvals] == [
        i["approval_id"] for i in current.items]
    if same:
        return p
    p.title, p.updated_at = title, utcnow()
    rev = _revision(db, s, user, p, approvals, current.revision + 1)
    follow(db, s, p, rev, override=bool(body.override))
    return p


def follow(db: Session, s: Settings, p: Programme, rev: ProgrammeRevision, *,
           override: bool = False) -> None:
    """The series airing ``p`` air ``rev`` from now on: their nodes' desired states are rebuilt,
    so only the slots not yet played change. A longer revision may make those slots overlap
    other broadcasts on the same nodes: checked as a new broadcast is (409 schedule_conflict
    with the clashes, unless ``override``), and on a 409 nothing of the edit is kept."""
    # broadcasts imports this module
    from .broadcasts import BroadcastStatus, check_changed_series, mark_desired_dirty
    series = list(db.scalars(select(Broadcast).where(
        Broadcast.programme_id == p.id, Broadcast.recurrence.is_not(None),
        Broadcast.status.in_((BroadcastStatus.SCHEDULED,
                              BroadcastStatus.AWAITING_CONFIRMATION)))))

    def air_it() -> None:
        for bc in series:
            bc.programme_revision_id, bc.media_sha256 = rev.id, rev.media_sha256
    check_changed_series(db, s, series, air_it, override, "err.programme_conflict")
    for bc in series:
        mark_desired_dirty(db, bc)


def revision_problem(db: Session, programme_id: int | None, revision_id: int | None,
                     media_sha256: str | None
                     ) -> tuple[HoldReason | None, ProgrammeRevision | None]:
    """(reason, revision): why a programme's revision cannot air (gone, or not the programme
    and media named; an item's approval revoked: its bulletin was archived), or (None, rev)."""
    rev = db.get(ProgrammeRevision, revision_id) if revision_id else None
    if rev is None or rev.programme_id != programme_id or rev.media_sha256 != media_sha256:
        return HoldReason.APPROVAL_MISSING, None
    for item in rev.items:
        a = db.get(BulletinApproval, item["approval_id"])
        if a is None or a.revoked_at is not None:
            return HoldReason.APPROVAL_REVOKED, None
    return None, rev


def series_shas(db: Session, bc: Broadcast) -> set[str]:
    """The media a series' slot may have played: its own, and for a programme every revision's
    (a node holding a desired state from before an edit plays the older one)."""
    shas = {bc.media_sha256} if bc.media_sha256 else set()
    if bc.programme_id is not None:
        shas |= set(db.scalars(select(ProgrammeRevision.media_sha256).where(
            ProgrammeRevision.programme_id == bc.programme_id)))
    return shas


def programmes_with(db: Session, bulletin_id: int) -> list[int]:
    """The programmes whose current revision plays the bulletin."""
    return [p.id for p in db.scalars(select(Programme))
            if any(i["bulletin_id"] == bulletin_id for i in p.current.items)]
