"""Bulletins: text spoken through the ward's speech settings and lexicon, or an uploaded
recording, made broadcast-ready by audio.pipeline; previews; the approval lifecycle with who
and when for every step. Input is checked in full before anything is written."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from audio.pipeline import Pipeline, Rendered
from audio.probe import UploadError
from audio.store import AudioError, MediaStore, Stored
from audio.tts import TTSError, build_chain

from . import auth
from .areas import check_zone
from .bodies import (AreaUpdate, BulletinCreate, BulletinUpdate, BulletinUpload,
                     LexiconEntryCreate, PreviewCreate)
from .config import Settings
from .errors import ApiError, ErrorCode, bad_request, not_found
from .i18n import Word
from .models import (Area, Broadcast, Bulletin, BulletinApproval, BulletinEvent, LexiconEntry,
                     Media, Node, User, area_ancestors, area_subtree_ids, nearest_setting,
                     targets_zone, utcnow, zone_area)
from .times import iso


class BulletinStatus(StrEnum):
    """A bulletin's lifecycle (TRANSITIONS below): drafted, submitted for review (pending),
    approved or rejected, archived."""
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ARCHIVED = "archived"


class BulletinSource(StrEnum):
    """Where a bulletin's audio comes from."""
    TEXT = "text"          # spoken from its text
    UPLOAD = "upload"      # a recording


class BulletinStep(StrEnum):
    """A step of the lifecycle a person takes (POST /bulletins/{id}/{action})."""
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    ARCHIVE = "archive"


def visible_bulletin(db: Session, user: User, bulletin_id: int, *, manage: bool = False
                     ) -> Bulletin:
    """The bulletin when the user may see it (404 otherwise). A user scoped to an area sees
    that area's bulletins and unscoped ones; ``manage`` (edit, submit, approve, archive) needs
    the bulletin's own area inside the user's: an unscoped bulletin is only for unscoped users."""
    b = db.get(Bulletin, bulletin_id)
    allowed = auth.user_area_ids(db, user)
    if b is None or (allowed is not None and b.area_id is not None
                     and b.area_id not in allowed):
        raise not_found("bulletin")
    if manage and allowed is not None and b.area_id is None:
        raise ApiError(ErrorCode.FORBIDDEN_AREA, "err.forbidden_area", area="-")
    return b


def current_approval(b: Bulletin) -> BulletinApproval | None:
    """The approval of the bulletin's current revision, when it is approved as it stands."""
    if b.status != BulletinStatus.APPROVED:
        return None
    for a in reversed(b.approvals):
        if a.revoked_at is None and a.revision == b.revision \
                and a.media_sha256 == b.media_sha256:
            return a
    return None


def make_pipeline(s: Settings) -> Pipeline:
    """The audio pipeline the settings describe. Keep one per process: its engine chain
    remembers when gTTS last failed."""
    chain = build_chain(s.tts_engines, s.gtts_timeout_s, cache_dir=s.speech_cache_dir,
                        gtts_endpoint=s.gtts_endpoint or None, commands=s.tts_commands)
    return Pipeline(MediaStore(s.media_dir), chain, s.audio_settings(),
                    cache_dir=s.speech_cache_dir)


@dataclass(frozen=True)
class Speech:
    """What a bulletin's audio is made with: the server's settings and its pipeline."""
    settings: Settings
    pipeline: Pipeline


# --- ward speech settings and lexicon ------------------------------------------------------------

def speech_defaults(db: Session, s: Settings, area_id: int | None) -> dict[str, str | None]:
    """Engine, voice and chime for an area: its own, else the nearest ancestor's, else config."""
    out: dict[str, str | None] = {"engine": None, "voice": None, "chime": None}
    for area in area_ancestors(db, area_id) if area_id else []:
        for key, value in (("engine", area.tts_engine), ("voice", area.tts_voice),
                           ("chime", area.chime)):
            if out[key] is None and value:
                out[key] = value
    out["voice"] = out["voice"] or s.default_voice
    out["chime"] = out["chime"] or "none"
    return out


def lexicon_for(db: Session, area_id: int | None) -> dict[str, str]:
    """The lexicon entries of an area and those above it; the nearest area's entry wins."""
    merged: dict[str, str] = {}
    for area in reversed(area_ancestors(db, area_id)) if area_id else []:
        for e in db.scalars(select(LexiconEntry).where(LexiconEntry.area_id == area.id)):
            merged[e.term] = e.spoken
    return merged


def lexicon_json(e: LexiconEntry) -> dict[str, Any]:
    return {"id": e.id, "area_id": e.area_id, "term": e.term, "spoken": e.spoken}


def add_lexicon_entry(db: Session, user: User, area_id: int, body: LexiconEntryCreate
                      ) -> LexiconEntry:
    area = scoped_area(db, user, area_id)
    term, spoken = body.term, body.spoken
    row = db.scalar(select(LexiconEntry).where(LexiconEntry.area_id == area.id,
                                               LexiconEntry.term == term))
    if row is None:
        row = LexiconEntry(area_id=area.id, term=term, spoken=spoken, created_by=user.id)
        db.add(row)
    else:
        row.spoken = spoken
    db.flush()
    return row


def update_area_speech(db: Session, s: Settings, user: User, area_id: int,
                       body: AreaUpdate) -> Area:
    area = scoped_area(db, user, area_id)
    _check_engine(s, "tts_engine", body.tts_engine or None)
    check_zone(body.tz)
    for key in ("tts_engine", "tts_voice", "chime", "emergency_confirm", "name"):
        if body.given(key):
            value = getattr(body, key)
            setattr(area, key, value if key == "emergency_confirm" else value or None)
    if body.given("quiet_hours") and body.quiet_hours != area.quiet_hours:
        area.quiet_hours = body.quiet_hours  # None: as the area above; []: none here
        mark_area_dirty(db, area.id)  # its nodes' desired states carry the quiet hours
    if body.given("tz") and (body.tz or None) != area.tz:
        change_zone(db, s, area, body.tz or None)  # None: as the area above
    return area


def mark_area_dirty(db: Session, area_id: int) -> None:
    """Every node in the area and below gets a new desired state on the dispatcher's next pass."""
    subtree = area_subtree_ids(db, [area_id])
    db.execute(update(Node).where(Node.cluster_id.in_(subtree)).values(desired_dirty=True))


def change_zone(db: Session, s: Settings, area: Area, tz: str | None) -> None:
    """Set the area's zone (None: as the area above). The nodes below get it in their desired
    states, and every series on air whose zone comes from there is split now
    (broadcasts.continue_series): its past keeps the zone it aired in, with its slot ids and its
    plays, and from now on it plans at the same local hours in the new zone, on every node it
    reaches (server.schedule.zone). Changed occurrences still to come go with it, at the times
    they were saved with."""
    from .broadcasts import continue_series  # broadcasts imports this module
    from .schedule import series_on_air, zone
    subtree = area_subtree_ids(db, [area.id])
    now = utcnow()
    moved = [(bc, zone(db, bc, s.timezone)) for bc in series_on_air(db)
             if (bc.ends_at is None or bc.ends_at > now)
             and zone_area(db, bc.target_areas, bc.target_nodes) in subtree]
    area.tz = tz
    db.flush()
    mark_area_dirty(db, area.id)
    for bc, old in moved:
        new = targets_zone(db, bc.target_areas, bc.target_nodes, s.timezone)
        if new != old:
            bc.tz = old  # a series from before revision 0007 followed its targets' zone
            continue_series(db, bc, now, tz=new)


def quiet_hours(db: Session, area_id: int) -> list[dict[str, str]]:
    """A node's quiet hours: its cluster's setting, else the nearest area's above it that has
    one; none when no area up the tree sets them."""
    return list(nearest_setting(db, area_id, "quiet_hours") or [])


def scoped_area(db: Session, user: User, area_id: int) -> Area:
    """The area, when it exists and the user may act on it (404 or 403 otherwise)."""
    area = db.get(Area, area_id)
    if area is None:
        raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
    auth.check_area(db, user, area_id)
    return area


# --- speech and uploads -----------------------------------------------------------------------

def _check_engine(s: Settings, field: str, engine: str | None) -> None:
    """A speech engine must be one this server is configured with."""
    known = s.tts_engines
    if engine is not None and engine not in known:
        raise bad_request("err.invalid_field", field=field, detail=", ".join(known))


def normalized_text(db: Session, text: str, area_id: int | None) -> str:
    from audio.pipeline import normalise_text
    return normalise_text(text, lexicon_for(db, area_id) or None)


def speak(db: Session, speech: Speech, area_id: int | None, text: str,
          spoken_text: str | None, voice: str | None, engine: str | None) -> Rendered:
    """Text (or the author's corrected spoken form) -> stored broadcast-ready audio."""
    s = speech.settings
    d = speech_defaults(db, s, area_id)
    try:
        if spoken_text:
            return speech.pipeline.render_text(spoken_text, voice or d["voice"],
                                               engine or d["engine"],
                                               settings=s.audio_settings(d["chime"]),
                                               normalised=True)
        return speech.pipeline.render_text(text, voice or d["voice"], engine or d["engine"],
                                           settings=s.audio_settings(d["chime"]),
                                           lexicon=lexicon_for(db, area_id) or None)
    except (TTSError, AudioError) as err:
        raise ApiError(ErrorCode.SPEECH_FAILED, "err.speech_failed", detail=str(err)) from None


def render_upload(db: Session, speech: Speech, area_id: int | None, data: bytes) -> Rendered:
    d = speech_defaults(db, speech.settings, area_id)
    try:
        return speech.pipeline.render_upload(
            data, settings=speech.settings.audio_settings(d["chime"]))
    except UploadError as err:
        raise ApiError(ErrorCode(err.code), f"err.upload.{err.code}",
                       detail=err.message) from None
    except AudioError as err:
        raise ApiError(ErrorCode.AUDIO_FAILED, "err.upload.corrupt", detail=str(err)) from None


def media_for(db: Session, r: Rendered) -> Media:
    media = db.get(Media, r.sha256)
    if media is None:
        media = Media(sha256=r.sha256, ext=r.ext, bytes=len(r.audio), duration_ms=r.duration_ms)
        db.add(media)
        db.flush()
    return media


def media_for_stored(db: Session, stored: Stored, duration_ms: int) -> Media:
    """The media row of a file in the store (made when it is new)."""
    media = db.get(Media, stored.sha256)
    if media is None:
        media = Media(sha256=stored.sha256, ext=stored.ext, bytes=stored.bytes,
                      duration_ms=duration_ms)
        db.add(media)
        db.flush()
    return media


def _apply_render(db: Session, b: Bulletin, r: Rendered) -> None:
    b.media_sha256 = media_for(db, r).sha256
    b.engine, b.engine_note = r.engine, "; ".join(r.notes) or None
    b.lufs, b.true_peak = round(r.lufs, 2), round(r.true_peak, 2)
    if r.text is not None and not b.spoken_text_edited:
        b.spoken_text = r.text


def preview(db: Session, speech: Speech, user: User, body: PreviewCreate) -> dict[str, Any]:
    """The normalised text and its audio, before anything is saved as a bulletin."""
    text, spoken_text, voice, engine = body.text, body.spoken_text, body.voice, body.engine
    _check_engine(speech.settings, "engine", engine)
    area_id = _bulletin_area(db, user, body.area_id)
    normalized = spoken_text or normalized_text(db, text, area_id)
    if not body.audio:
        return {"normalized": normalized}
    r = speak(db, speech, area_id, text, spoken_text, voice, engine)
    media = media_for(db, r)
    return {"normalized": r.text or normalized, "audio_url": f"/media/{media.sha256}.{media.ext}",
            "sha256": media.sha256, "duration_ms": media.duration_ms, "engine": r.engine,
            "engine_note": "; ".join(r.notes) or None, "voice": r.voice}


# --- bulletins --------------------------------------------------------------------------------

def bulletin_json(b: Bulletin) -> dict[str, Any]:
    media = b.media
    return {"id": b.id, "title": b.title, "text": b.text, "spoken_text": b.spoken_text,
            "spoken_text_edited": b.spoken_text_edited, "source": b.source,
            "category": b.category, "voice": b.voice, "engine_requested": b.engine_requested,
            "status": b.status, "area_id": b.area_id, "engine": b.engine,
            "engine_note": b.engine_note, "lufs": b.lufs, "true_peak": b.true_peak,
            "audio_url": f"/media/{media.sha256}.{media.ext}" if media else None,
            "sha256": media.sha256 if media else None,
            "duration_ms": media.duration_ms if media else None,
            "bytes": media.bytes if media else None,
            "created_at": iso(b.created_at), "updated_at": iso(b.updated_at),
            "submitted_at": iso(b.submitted_at), "reviewed_at": iso(b.reviewed_at),
            "review_comment": b.review_comment, "revision": b.revision,
            "approved_sha256": next((a.media_sha256 for a in reversed(b.approvals)
                                     if a.revoked_at is None and a.revision == b.revision),
                                    None) if b.status == BulletinStatus.APPROVED else None,
            "history": [{"action": e.action, "status": e.status, "by": e.user.username,
                         "at": iso(e.at), "comment": e.comment, "revision": e.revision,
                         "sha256": e.media_sha256} for e in b.history]}


def _bulletin_area(db: Session, user: User, area_id: int | None) -> int | None:
    """The area a bulletin is for: the one given when the user may act on it, else the user's."""
    if area_id is None:
        return user.area_id
    scoped_area(db, user, area_id)
    return area_id


def _log(db: Session, b: Bulletin, user: User, action: str, comment: str | None = None
         ) -> None:
    db.add(BulletinEvent(bulletin_id=b.id, action=action, status=b.status, user_id=user.id,
                         comment=comment, revision=b.revision, media_sha256=b.media_sha256))


def create_text_bulletin(db: Session, speech: Speech, user: User, body: BulletinCreate
                         ) -> Bulletin:
    text, spoken_text, voice, engine = body.text, body.spoken_text, body.voice, body.engine
    _check_engine(speech.settings, "engine", engine)
    area_id = _bulletin_area(db, user, body.area_id)
    r = speak(db, speech, area_id, text, spoken_text, voice, engine)
    b = Bulletin(title=body.title, category=body.category, text=text, spoken_text=spoken_text,
                 spoken_text_edited=bool(spoken_text),
                 voice=voice, engine_requested=engine, area_id=area_id, status=BulletinStatus.DRAFT,
                 source=BulletinSource.TEXT, created_by=user.id)
    db.add(b)
    db.flush()
    _apply_render(db, b, r)
    _log(db, b, user, "created")
    return b


def create_upload_bulletin(db: Session, speech: Speech, user: User, form: BulletinUpload,
                           data: bytes | None) -> Bulletin:
    if not data:
        raise ApiError(ErrorCode.EMPTY, "err.upload.empty", detail="")
    area_id = _bulletin_area(db, user, form.area_id)
    r = render_upload(db, speech, area_id, data)
    b = Bulletin(title=form.title, category=form.category, text=form.text, area_id=area_id,
                 status=BulletinStatus.DRAFT, source=BulletinSource.UPLOAD, created_by=user.id)
    db.add(b)
    db.flush()
    _apply_render(db, b, r)
    _log(db, b, user, "created")
    return b


def edit_bulletin(db: Session, speech: Speech, user: User, b: Bulletin,
                  body: BulletinUpdate) -> Bulletin:
    """Change a bulletin; its speech is made again when what is spoken changed. An approved
    bulletin that is edited goes back to pending: what airs is always what was approved."""
    if b.status == BulletinStatus.ARCHIVED:
        raise ApiError(ErrorCode.BAD_TRANSITION,
                       "err.bad_transition", action=Word("verb", "edit"),
                       status=Word("status", b.status))
    if not (auth.can(user, "bulletin.write") and (b.created_by == user.id or auth.can(
            user, "bulletin.approve"))):
        raise ApiError(ErrorCode.FORBIDDEN, "err.forbidden")
    text = body.text if body.given("text") else b.text
    spoken_text = body.spoken_text if body.given("spoken_text") else (
        b.spoken_text if b.spoken_text_edited else None)
    voice = body.voice if body.given("voice") else b.voice
    engine = body.engine if body.given("engine") else b.engine_requested
    _check_engine(speech.settings, "engine", engine)
    respeak = b.source == BulletinSource.TEXT and (
        text != b.text or voice != b.voice or engine != b.engine_requested
        or body.given("spoken_text"))
    # a text bulletin always has text: the None test is for the type only
    r = speak(db, speech, b.area_id, text, spoken_text, voice, engine) \
        if respeak and text is not None else None
    for key in ("title", "category"):
        if body.given(key):
            setattr(b, key, getattr(body, key))
    b.text, b.voice, b.engine_requested = text, voice, engine
    if body.given("spoken_text"):
        b.spoken_text, b.spoken_text_edited = spoken_text, bool(spoken_text)
    if r is not None:
        _apply_render(db, b, r)
    if b.status == BulletinStatus.APPROVED:
        b.status = BulletinStatus.PENDING
        b.reviewed_by = b.reviewed_at = None
    # a new revision: its own approval is needed before it airs; broadcasts already made keep
    # the approved revision they name (BulletinApproval), never this one
    b.revision = (b.revision or 1) + 1
    b.updated_at = utcnow()
    _log(db, b, user, "edited")
    return b


def visible_bulletins(db: Session, user: User, status: str | None = None,
                      limit: int = 200, *, category: str | None = None,
                      search: str | None = None) -> list[Bulletin]:
    """Newest first; a user scoped to an area sees that area's bulletins and unscoped ones.
    ``search``: words found in the title or the text (case aside), every one of them."""
    allowed = auth.user_area_ids(db, user)
    q = select(Bulletin).order_by(Bulletin.id.desc()).limit(limit)
    if status:
        q = q.where(Bulletin.status == status)
    if category:
        q = q.where(Bulletin.category == category)
    for word in (search or "").split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(Bulletin.title.ilike(pattern, escape="\\")
                    | Bulletin.text.ilike(pattern, escape="\\"))
    if allowed is not None:
        q = q.where(Bulletin.area_id.is_(None) | Bulletin.area_id.in_(allowed))
    return list(db.scalars(q))


def get_bulletin(db: Session, user: User, bulletin_id: int, *, manage: bool = False) -> Bulletin:
    return visible_bulletin(db, user, bulletin_id, manage=manage)


_S, _A = BulletinStatus, BulletinStep
TRANSITIONS = {_A.SUBMIT: ({_S.DRAFT, _S.REJECTED}, _S.PENDING),
               _A.APPROVE: ({_S.PENDING}, _S.APPROVED),
               _A.REJECT: ({_S.PENDING}, _S.REJECTED),
               _A.ARCHIVE: ({_S.DRAFT, _S.PENDING, _S.APPROVED, _S.REJECTED}, _S.ARCHIVED)}
# the steps that review a bulletin (the approver's)
REVIEW = (_A.APPROVE, _A.REJECT)


def transition(db: Session, user: User, b: Bulletin, action: BulletinStep,
               comment: str | None = None, seen_sha256: str | None = None) -> None:
    """One lifecycle step. ``seen_sha256``: the audio the reviewer heard; when it is not the
    bulletin's audio any more (edited meanwhile) the approval is refused, never given blind."""
    allowed_from, to = TRANSITIONS[action]
    if b.status not in allowed_from:
        raise ApiError(ErrorCode.BAD_TRANSITION,
                       "err.bad_transition", action=Word("verb", action),
                       status=Word("status", b.status))
    if seen_sha256 is not None and seen_sha256 != b.media_sha256:
        raise ApiError(ErrorCode.STALE_REVISION, "err.stale_revision", id=b.id)
    if action == _A.REJECT and not (comment and comment.strip()):
        raise bad_request("err.missing_field", ErrorCode.MISSING_FIELD, field="comment")
    now = utcnow()
    if action == _A.SUBMIT:
        b.submitted_by, b.submitted_at = user.id, now
    elif action in REVIEW:
        b.reviewed_by, b.reviewed_at, b.review_comment = user.id, now, comment
    b.status, b.updated_at = to, now
    if action == _A.APPROVE:
        if b.media_sha256 is None:
            raise ApiError(ErrorCode.BAD_TRANSITION, "err.bad_transition",
                           action=Word("verb", action), status=Word("status", b.status))
        db.add(BulletinApproval(bulletin_id=b.id, revision=b.revision or 1,
                                media_sha256=b.media_sha256, title=b.title, approved_by=user.id,
                                approved_at=now))
    elif action == _A.ARCHIVE:
        for a in b.approvals:  # nothing of an archived bulletin airs any more
            if a.revoked_at is None:
                a.revoked_at, a.revoked_reason = now, "bulletin_archived"
        from .broadcasts import mark_desired_dirty  # broadcasts imports this module
        from .programmes import programmes_with
        for bc in db.scalars(select(Broadcast).where(
                (Broadcast.bulletin_id == b.id)
                | Broadcast.programme_id.in_(programmes_with(db, b.id)),
                Broadcast.recurrence.is_not(None))):
            mark_desired_dirty(db, bc)  # its slots leave the nodes' desired states
    _log(db, b, user, action, comment)
