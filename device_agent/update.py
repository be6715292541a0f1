"""Agent updates over the air, the node's side (docs/protocol.md, command ``update``).

A signed ``update`` envelope names a release: ``{"version", "media": {"sha256", "url",
"bytes"}}``; the server's Ed25519 signature over the envelope is what authenticates the wheel's
sha256. The node downloads the wheel, checks its sha256 and size, unpacks it beside the running
version in ``<state_dir>/releases/<version>/`` and, once nothing plays, writes a pending marker,
points ``current`` at it and exits with ``RESTART_EXIT`` (an update never cuts a bulletin). The
launcher (launcher.py, the process systemd starts) then starts the new version, which confirms
itself healthy once it is connected to the broker and the update envelope verifies under its own
code and the node's trusted keys; if it crashes on start or does not confirm in time, the
launcher restores the previous version, which reports ``rolled_back``.

Acks of an ``update``: ``received`` (downloading), ``started`` (verified and installed; it
switches once nothing plays; ``detail`` the version), ``finished`` (the new version passed its
health check; ``detail`` the version), or ``failed`` with a reason: ``sha256_mismatch``,
``download_failed``, ``install_failed``, ``rolled_back``, ``no_launcher`` (the agent was not
started through the launcher, so it could not come back), ``busy`` (another update is under
way). A version the node already runs is acked ``finished`` at once (nothing installs twice);
one it rolled back before is refused ``rolled_back`` without another try.

The release runs on the libraries of the installed agent's virtualenv (its wheel is unpacked
without dependencies): a release that needs a new library is installed by install-pi.sh.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .files import write_atomic
from .media import MediaCache, MediaError
from .protocol import (AckStatus, NodeReason, ProtocolError, command_topic, envelope_json,
                       verify_envelope)

log = logging.getLogger(__name__)

RESTART_EXIT = 75                  # EX_TEMPFAIL: "start me again, into the release `current` names"
LAUNCHER_ENV = "LOA_AGENT_LAUNCHER"  # set by the launcher for the agent it starts
VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
FAILURE_FOR_MEDIA = {NodeReason.MEDIA_MISMATCH: NodeReason.SHA256_MISMATCH,
                     NodeReason.MEDIA_UNAVAILABLE: NodeReason.DOWNLOAD_FAILED}


class InstallError(Exception):
    pass


@dataclass
class Pending:
    """An update switched to but not yet confirmed healthy (``releases/pending.json``)."""
    version: str
    previous: str | None          # the version to restore; None: the installed package
    cmd_id: str
    envelope: dict[str, Any]
    topic: str
    since_ms: int                 # when the switch was made (the confirmation window's start)
    attempts: int = 0             # starts of the new version so far (the launcher counts)


class Releases:
    """``<state_dir>/releases``: ``current`` (the version the launcher starts; absent: the
    installed package), ``<version>/`` (unpacked wheels), ``pending.json``, ``outcome.json``
    (a rollback for the restored version to report), ``failed.json`` (versions rolled back)."""

    def __init__(self, state_dir: str | Path):
        self.root = Path(state_dir) / "releases"
        self.root.mkdir(parents=True, exist_ok=True)

    def _read(self, name: str) -> Any:
        try:
            return json.loads((self.root / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("releases/%s is unreadable; ignored", name)
            return None

    def _write(self, name: str, value: Any) -> None:
        write_atomic(self.root / name, json.dumps(value).encode("utf-8"))

    def current(self) -> str | None:
        value = self._read("current")
        return value if isinstance(value, str) and (self.root / value).is_dir() else None

    def set_current(self, version: str | None) -> None:
        if version is None:
            (self.root / "current").unlink(missing_ok=True)
        else:
            self._write("current", version)

    def path(self, version: str) -> Path:
        return self.root / version

    def pending(self) -> Pending | None:
        value = self._read("pending.json")
        try:
            return Pending(**value) if isinstance(value, dict) else None
        except TypeError:
            log.error("releases/pending.json does not fit; ignored")
            return None

    def write_pending(self, pending: Pending) -> None:
        self._write("pending.json", asdict(pending))

    def clear_pending(self) -> None:
        (self.root / "pending.json").unlink(missing_ok=True)

    def outcome(self) -> dict[str, Any] | None:
        value = self._read("outcome.json")
        return value if isinstance(value, dict) else None

    def write_outcome(self, outcome: Mapping[str, Any]) -> None:
        self._write("outcome.json", dict(outcome))

    def clear_outcome(self) -> None:
        (self.root / "outcome.json").unlink(missing_ok=True)

    def failed(self) -> set[str]:
        value = self._read("failed.json")
        return set(value) if isinstance(value, list) else set()

    def add_failed(self, version: str) -> None:
        self._write("failed.json", sorted(self.failed() | {version}))

    def rollback(self, pending: Pending, detail: str) -> None:
        """Restore ``pending.previous`` and leave the rollback for it to report."""
        log.error("update to %s rolled back: %s", pending.version, detail)
        self.set_current(pending.previous)
        self.add_failed(pending.version)
        self.write_outcome({"cmd_id": pending.cmd_id, "version": pending.version,
                            "reason": NodeReason.ROLLED_BACK, "detail": detail})
        self.clear_pending()

    def install(self, wheel: Path, version: str) -> Path:
        """Unpack ``wheel`` into ``releases/<version>/``; InstallError when it is not an agent
        wheel of that version."""
        final = self.path(version)
        work = self.root / f".{version}.unpacking"
        shutil.rmtree(work, ignore_errors=True)
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = zf.namelist()
                for name in names:
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise InstallError(f"unsafe path in the wheel: {name}")
                if "device_agent/__init__.py" not in names:
                    raise InstallError("the wheel holds no device_agent package")
                found = VERSION_RE.search(zf.read("device_agent/__init__.py").decode("utf-8"))
                if not found or found.group(1) != version:
                    raise InstallError(f"the wheel is version {found.group(1) if found else '?'}"
                                       f", not {version}")
                zf.extractall(work)
        except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as err:
            shutil.rmtree(work, ignore_errors=True)
            raise InstallError(f"{type(err).__name__}: {err}") from None
        except InstallError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
        return final

    def prune(self, keep: set[str | None]) -> None:
        """Remove unpacked releases other than ``keep`` and the downloads."""
        for p in self.root.iterdir():
            if p.is_dir() and p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)


class Ack(Protocol):
    """The agent's ``_ack``: an ``ack`` event for a command."""

    def __call__(self, cmd_id: str, status: AckStatus, reason: str | None = None,
                 **extra: Any) -> None: ...


class Updater:
    """The agent's ``update`` handler. Every method runs on the agent's worker thread except
    the download, which runs on its own thread and hands its result back through ``post``."""

    def __init__(self, state_dir: str | Path, *, running: str, node_id: str, prefix: str,
                 ack: Ack, post: Callable[[Any], None],
                 keys: Callable[[], Mapping[str, Ed25519PublicKey]],
                 request_restart: Callable[[], None], clock_ms: Callable[[], int],
                 idle: Callable[[], bool] = lambda: True, timeout_s: float = 60.0):
        self.releases = Releases(state_dir)
        self.running = running
        self._node, self._prefix = node_id, prefix
        self._ack, self._post, self._keys = ack, post, keys
        self._request_restart, self._now, self._idle = request_restart, clock_ms, idle
        self._downloads = MediaCache(self.releases.root / "downloads", timeout_s)
        self._busy: str | None = None      # the version downloading or waiting to switch
        self._ready: tuple[dict[str, Any], str] | None = None  # installed, switch when idle
        self.launched = bool(os.environ.get(LAUNCHER_ENV))

    # --- the command -------------------------------------------------------------------------
    def command(self, env: Mapping[str, Any], now: int) -> None:
        cmd_id, version = env["id"], env["body"]["version"]
        if version == self.running:
            self._ack(cmd_id, AckStatus.RECEIVED)
            self._ack(cmd_id, AckStatus.FINISHED, detail=version)
            return
        if version in self.releases.failed():
            self._ack(cmd_id, AckStatus.FAILED, NodeReason.ROLLED_BACK,
                      detail=f"{version} was rolled back on this node before")
            return
        if not self.launched:
            self._ack(cmd_id, AckStatus.FAILED, NodeReason.NO_LAUNCHER,
                      detail="the agent was not started by loa-agent-launcher")
            return
        if self._busy is not None:
            self._ack(cmd_id, AckStatus.FAILED, NodeReason.BUSY, detail=f"updating to {self._busy}")
            return
        self._busy = version
        self._ack(cmd_id, AckStatus.RECEIVED)
        topic = command_topic(self._prefix, env["type"], env["to"])
        threading.Thread(target=self._fetch_and_install, args=(dict(env), topic),
                         name="loa-update", daemon=True).start()

    def _fetch_and_install(self, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        error: tuple[str, str] | None = None
        try:
            self._downloads.directory.mkdir(parents=True, exist_ok=True)
            wheel = self._downloads.fetch(body["media"])
            self.releases.install(wheel, body["version"])
        except MediaError as err:
            error = (FAILURE_FOR_MEDIA.get(err.reason, NodeReason.DOWNLOAD_FAILED), err.detail)
        except InstallError as err:
            error = (NodeReason.INSTALL_FAILED, str(err))
        except Exception as err:  # noqa: BLE001 - reported, never a dead agent
            log.exception("update failed")
            error = (NodeReason.INSTALL_FAILED, f"{type(err).__name__}: {err}")
        self._post((env, topic, error))

    def installed(self, result: tuple[dict[str, Any], str, tuple[str, str] | None]) -> None:
        """The download's end (worker thread): report the failure, or ack ``started`` and
        switch as soon as nothing plays (``switch_when_idle``)."""
        env, topic, error = result
        version = env["body"]["version"]
        if error is not None:
            self._busy = None
            log.error("update to %s failed: %s %s", version, *error)
            self._ack(env["id"], AckStatus.FAILED, error[0], detail=error[1][:1000])
            return
        self._ack(env["id"], AckStatus.STARTED, detail=version)
        self._ready = (env, topic)
        self.switch_when_idle()

    def switch_when_idle(self) -> None:
        """Called by the worker after each step: an installed version waits until nothing
        plays (an update never cuts a bulletin), then the node switches and restarts."""
        if self._ready is None or not self._idle():
            return
        env, topic = self._ready
        self._ready = None
        version = env["body"]["version"]
        self.releases.write_pending(Pending(
            version=version, previous=self.releases.current(), cmd_id=env["id"],
            envelope=env, topic=topic, since_ms=self._now()))
        self.releases.set_current(version)
        log.warning("update to %s installed: restarting into it", version)
        self._request_restart()

    # --- after a start -----------------------------------------------------------------------
    def report_outcome(self) -> None:
        """A rollback the launcher made before this start: report it (once)."""
        outcome = self.releases.outcome()
        if outcome and outcome.get("cmd_id"):
            self._ack(outcome["cmd_id"], AckStatus.FAILED, NodeReason.ROLLED_BACK,
                      detail=str(outcome.get("detail", ""))[:1000])
        self.releases.clear_outcome()

    def connected(self) -> None:
        """The health check of a version just switched to: connected to the broker, and the
        update's signed envelope verifies with this code and the trusted keys. Then confirmed."""
        pending = self.releases.pending()
        if pending is None or pending.version != self.running:
            return
        env = pending.envelope
        try:
            verify_envelope(envelope_json(env), pending.topic, prefix=self._prefix,
                            node_id=self._node, groups=[pending.topic.split("/")[-2]],
                            keys=self._keys(), now_ms=env["ts"])
        except ProtocolError as err:
            log.error("health check of %s failed: %s %s", self.running, err.reason, err.detail)
            return  # not confirmed: the launcher restores the previous version
        self.releases.clear_pending()
        self.releases.prune({self.running, pending.previous})
        log.warning("update to %s confirmed healthy", self.running)
        self._ack(pending.cmd_id, AckStatus.FINISHED, detail=self.running)
