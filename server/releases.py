"""Agent updates over the air, the server's side: releases and staged rollouts.

An admin uploads a release, the ``loaphuong-agent`` wheel (agent/pyproject.toml) with a bumped
``device_agent.__version__``: it is stored by its sha256 in the media store and served, without
a token, at ``{public_url}/agent-releases/{sha256}.whl`` (nodes check the sha256 the signed
``update`` command names, so the file needs no secrecy).

A rollout offers one release to the nodes of some areas and/or named nodes, in stages: its
``stages`` are the sizes of the first stages (``[2]``: two nodes first, then every other one),
the nodes taken in id order. Each node of a started stage gets an ``update`` command (through
the outbox, signed by the dispatcher; valid ``update_ttl_s``, a week by default, so a node away
during the rollout gets it when it returns: the broker holds it in the node's session and the
outbox re-sends what a returning node has not acked). A node's progress is its command's acks
(``node_progress``). The next stage starts when an admin advances the rollout, or by itself
(``auto_advance``, the default) once every node of the current stage is healthy on the new
version; a node that failed or rolled back holds the automatic advance until an admin decides.
A rollout whose nodes are all healthy is ``completed``.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from enum import StrEnum
from io import BytesIO
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.store import MediaStore
from device_agent.protocol import CommandType, NodeReason

from . import auth
from .bodies import RolloutCreate
from .config import Settings
from .errors import ApiError, ErrorCode, bad_request, not_found
from .i18n import Word
from .models import (AgentRelease, Area, Command, Node, Rollout, RolloutNode, User,
                     area_subtree_ids, utcnow)
from .outbox import CommandStatus, give_up, queue_command
from .times import iso

MAX_RELEASE_BYTES = 50 * 1024 * 1024
WHEEL_EXT = "whl"
VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
PROTOCOL_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}$")  # body.update.version


class RolloutStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Progress(StrEnum):
    """One node's progress in a rollout, from its update command's acks."""
    PENDING = "pending"            # its stage has not started, or the command is not out yet
    SENT = "sent"                  # the broker has it; the node has not answered
    DOWNLOADING = "downloading"    # ack received
    INSTALLED = "installed"        # ack started: checked, installed, switching
    HEALTHY = "healthy"            # ack finished: the new version passed its health check
    ROLLED_BACK = "rolled_back"    # ack failed, rolled_back
    FAILED = "failed"              # any other failure, a refusal, or the outbox gave up


# --- releases -----------------------------------------------------------------------------------

def wheel_version(data: bytes) -> str:
    """The agent version a wheel holds; a 422 when it is not a ``loaphuong-agent`` wheel."""
    def refuse(detail: str) -> ApiError:
        return ApiError(ErrorCode.NOT_AGENT_WHEEL,
                        "err.release.not_agent_wheel", detail=detail)
    try:
        with zipfile.ZipFile(BytesIO(data)) as zf:
            names = set(zf.namelist())
            if "device_agent/__init__.py" not in names:
                raise refuse("no device_agent/__init__.py")
            found = VERSION_RE.search(zf.read("device_agent/__init__.py").decode("utf-8"))
    except (zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise refuse(f"not a wheel ({err})") from None
    if not found or not PROTOCOL_VERSION_RE.match(found.group(1)):
        raise refuse("no usable __version__ in device_agent/__init__.py")
    version = found.group(1)
    if not any(n.startswith(f"loaphuong_agent-{version}.dist-info/") for n in names):
        raise refuse(f"no loaphuong_agent-{version}.dist-info")
    return version


def store_release(db: Session, settings: Settings, user: User, data: bytes,
                  notes: str | None) -> AgentRelease:
    """Store an uploaded wheel as a release (the caller commits). Only an admin uploads."""
    if not data:
        raise bad_request("err.upload.empty", ErrorCode.EMPTY)
    if len(data) > MAX_RELEASE_BYTES:
        raise ApiError(ErrorCode.TOO_LARGE, "err.upload.too_large",
                       detail=f"{len(data)} > {MAX_RELEASE_BYTES} bytes")
    version = wheel_version(data)
    if db.scalar(select(AgentRelease).where(AgentRelease.version == version)):
        raise ApiError(ErrorCode.DUPLICATE, "err.duplicate", what=Word("thing", "release"))
    stored = MediaStore(settings.media_dir).put(data, WHEEL_EXT)
    release = AgentRelease(version=version, sha256=stored.sha256, bytes=stored.bytes,
                           notes=notes, uploaded_by=user.id, uploaded_at=utcnow())
    db.add(release)
    db.flush()
    return release


def release_url(settings: Settings, release: AgentRelease) -> str:
    return f"{settings.public_url.rstrip('/')}/agent-releases/{release.sha256}.{WHEEL_EXT}"


def release_json(settings: Settings, release: AgentRelease) -> dict[str, Any]:
    return {"id": release.id, "version": release.version, "sha256": release.sha256,
            "bytes": release.bytes, "url": release_url(settings, release),
            "notes": release.notes, "uploaded_by": release.uploaded_by,
            "uploaded_at": iso(release.uploaded_at)}


def get_release(db: Session, release_id: int) -> AgentRelease:
    release = db.get(AgentRelease, release_id)
    if release is None:
        raise not_found("release")
    return release


# --- stages (pure) ------------------------------------------------------------------------------

def split_stages(node_ids: Iterable[str], sizes: Sequence[int]) -> list[list[str]]:
    """The nodes (in id order) cut into stages: ``sizes`` of the first ones, then the rest;
    no stage is empty."""
    ordered = sorted(set(node_ids))
    stages, at = [], 0
    for size in sizes:
        if at >= len(ordered):
            break
        stages.append(ordered[at:at + size])
        at += size
    if at < len(ordered):
        stages.append(ordered[at:])
    return stages


def node_progress(cmd: Command | None) -> Progress:
    """What a node's update command's acks say about it."""
    if cmd is None:
        return Progress.PENDING
    if cmd.status is None:
        if cmd.failed_at is not None:
            return Progress.FAILED
        return Progress.SENT if cmd.published_at is not None else Progress.PENDING
    if cmd.status == CommandStatus.FAILED and cmd.reason == NodeReason.ROLLED_BACK:
        return Progress.ROLLED_BACK
    return {CommandStatus.RECEIVED: Progress.DOWNLOADING, CommandStatus.STARTED:
            Progress.INSTALLED, CommandStatus.FINISHED: Progress.HEALTHY}.get(
        CommandStatus(cmd.status), Progress.FAILED)


class RolloutStep(StrEnum):
    """What a running rollout does next (``next_step``)."""
    WAIT = "wait"
    ADVANCE = "advance"
    COMPLETE = "complete"


def next_step(stage: int, stages: int, progress: Sequence[Progress], auto: bool
              ) -> RolloutStep:
    """After stage ``stage`` (0-based) of ``stages`` with its nodes at ``progress``:
    ``complete`` (the last stage is all healthy), ``advance`` (all healthy and ``auto``), or
    ``wait`` (nodes still updating, a failure an admin must look at, or no auto advance)."""
    if not all(p == Progress.HEALTHY for p in progress):
        return RolloutStep.WAIT
    if stage + 1 >= stages:
        return RolloutStep.COMPLETE
    return RolloutStep.ADVANCE if auto else RolloutStep.WAIT


# --- rollouts -----------------------------------------------------------------------------------

def _target_nodes(db: Session, areas: list[int], nodes: list[str]) -> set[str]:
    found: set[str] = set()
    for area_id in areas:
        if db.get(Area, area_id) is None:
            raise ApiError(ErrorCode.UNKNOWN_AREA, "err.unknown_area", id=area_id)
        found |= set(db.scalars(select(Node.id).where(
            Node.cluster_id.in_(area_subtree_ids(db, [area_id])), Node.revoked_at.is_(None))))
    for node_id in nodes:
        node = db.get(Node, node_id)
        if node is None:
            raise ApiError(ErrorCode.UNKNOWN_NODE, "err.unknown_node", id=node_id)
        if node.revoked_at is None:
            found.add(node_id)
    return found


def create_rollout(db: Session, settings: Settings, user: User, body: RolloutCreate
                   ) -> Rollout:
    """A rollout of a release to its targets, its first stage started (the caller commits)."""
    release = get_release(db, body.release_id)
    targets = _target_nodes(db, body.targets.areas, body.targets.nodes)
    if not targets:
        raise bad_request("err.no_nodes", ErrorCode.NO_NODES)
    stages = split_stages(targets, body.stages)
    rollout = Rollout(release_id=release.id, target_areas=body.targets.areas,
                      target_nodes=body.targets.nodes, stages=list(body.stages), stage=0,
                      auto_advance=body.auto_advance, status=RolloutStatus.RUNNING,
                      created_by=user.id, created_at=utcnow())
    db.add(rollout)
    db.flush()
    for number, ids in enumerate(stages):
        for node_id in ids:
            db.add(RolloutNode(rollout_id=rollout.id, node_id=node_id, stage=number))
    db.flush()
    _start_stage(db, settings, user, rollout, 0)
    return rollout


def _stage_count(rollout: Rollout) -> int:
    return max((rn.stage for rn in rollout.nodes), default=0) + 1


def _start_stage(db: Session, settings: Settings, user: User | None, rollout: Rollout,
                 stage: int) -> None:
    release = rollout.release
    body = {"version": release.version,
            "media": {"sha256": release.sha256, "url": release_url(settings, release),
                      "bytes": release.bytes}}
    rollout.stage = stage
    for rn in rollout.nodes:
        if rn.stage == stage and rn.command_id is None:
            cmd = queue_command(db, settings, user, CommandType.UPDATE, f"node:{rn.node_id}", body,
                                node_id=rn.node_id, ttl_ms=settings.update_ttl_s * 1000)
            db.flush()
            rn.command_id = cmd.id


def get_rollout(db: Session, rollout_id: int) -> Rollout:
    rollout = db.get(Rollout, rollout_id)
    if rollout is None:
        raise not_found("rollout")
    return rollout


def advance(db: Session, settings: Settings, user: User, rollout: Rollout) -> Rollout:
    """An admin starts the next stage now, whatever the current one's state (a 409 when the
    rollout is not running or is at its last stage)."""
    if rollout.status != RolloutStatus.RUNNING or rollout.stage + 1 >= _stage_count(rollout):
        raise ApiError(ErrorCode.CANNOT_ADVANCE, "err.rollout.cannot_advance",
                       status=Word("rolloutstatus", rollout.status))
    _start_stage(db, settings, user, rollout, rollout.stage + 1)
    return rollout


def cancel(db: Session, rollout: Rollout) -> Rollout:
    """Stop a rollout: no further stage, and update commands not yet out are given up (a node
    that already has its command goes on with it)."""
    if rollout.status != RolloutStatus.RUNNING:
        raise ApiError(ErrorCode.CANNOT_CANCEL_ROLLOUT, "err.rollout.cannot_cancel",
                       status=Word("rolloutstatus", rollout.status))
    rollout.status, rollout.finished_at = RolloutStatus.CANCELLED, utcnow()
    for rn in rollout.nodes:
        cmd = rn.command
        if cmd is not None and cmd.published_at is None and cmd.failed_at is None:
            give_up(db, cmd, CommandStatus.FAILED, "rollout cancelled")
    return rollout


def advance_due(db: Session, settings: Settings) -> int:
    """The dispatcher's pass: start the next stage of each running rollout whose current
    stage is all healthy (``auto_advance``), and complete those whose last one is. Returns how
    many rollouts moved."""
    moved = 0
    for rollout in db.scalars(select(Rollout).where(Rollout.status == RolloutStatus.RUNNING)):
        progress = [node_progress(rn.command) for rn in rollout.nodes
                    if rn.stage == rollout.stage]
        step = next_step(rollout.stage, _stage_count(rollout), progress, rollout.auto_advance)
        if step == RolloutStep.ADVANCE:
            _start_stage(db, settings, None, rollout, rollout.stage + 1)
            moved += 1
        elif step == RolloutStep.COMPLETE:
            rollout.status, rollout.finished_at = RolloutStatus.COMPLETED, utcnow()
            moved += 1
    return moved


def running_version(node: Node) -> str | None:
    """The agent version a node last reported (telemetry, else its online state)."""
    for source in (node.last_telemetry, node.last_state):
        version = (source or {}).get("agent_version")
        if isinstance(version, str):
            return version
    return None


def rollout_json(db: Session, settings: Settings, user: User, rollout: Rollout
                 ) -> dict[str, Any]:
    """A rollout and the progress of each node the user may see (all, for an admin)."""
    allowed = auth.user_area_ids(db, user)
    nodes, counts = [], {p.value: 0 for p in Progress}
    for rn in rollout.nodes:
        node = db.get(Node, rn.node_id)
        if node is None or (allowed is not None and node.cluster_id not in allowed):
            continue
        progress = node_progress(rn.command)
        counts[progress] += 1
        cmd = rn.command
        nodes.append({"node_id": rn.node_id, "stage": rn.stage + 1, "progress": progress.value,
                      "reason": cmd.reason if cmd is not None else None,
                      "detail": (cmd.result or {}).get("detail") if cmd is not None else None,
                      "running_version": running_version(node), "online": node.online,
                      "command_id": rn.command_id})
    return {"id": rollout.id, "release": release_json(settings, rollout.release),
            "targets": {"areas": rollout.target_areas, "nodes": rollout.target_nodes},
            "stages": rollout.stages, "stage": rollout.stage + 1,
            "stage_count": _stage_count(rollout), "auto_advance": rollout.auto_advance,
            "status": rollout.status, "created_by": rollout.created_by,
            "created_at": iso(rollout.created_at), "finished_at": iso(rollout.finished_at),
            "progress": counts, "nodes": nodes}


def visible_rollouts(db: Session) -> list[Rollout]:
    return list(db.scalars(select(Rollout).order_by(Rollout.id.desc())))
