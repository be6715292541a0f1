"""Mosquitto as the project runs it: its config, password file and ACL, and the process itself.

The password file and ACL are rendered from the node registry and written atomically; Mosquitto
re-reads both on SIGHUP, so provisioning a node changes the broker without restarting anything.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

PBKDF2_ITERATIONS = 101  # Mosquitto 2's own default for mosquitto_passwd


def password_hash(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """A password-file hash in Mosquitto 2's PBKDF2-SHA512 format (``$7$``)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return "$7${}${}${}".format(iterations, base64.b64encode(salt).decode(),
                                base64.b64encode(digest).decode())


def render_passwd(accounts: Mapping[str, str]) -> str:
    """Password file lines ``user:hash`` from a mapping of user -> Mosquitto hash."""
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(accounts.items()))


def node_acl_lines(prefix: str, node: str, groups: Iterable[str]) -> list[str]:
    """What PROTOCOL.md lets a node do: read its own and its groups' topics, write its own."""
    lines = [f"user {node}"]
    lines += [f"topic read {prefix}/nodes/{node}/{kind}" for kind in ("desired", "cmd")]
    for group in sorted({"all", *groups}):
        lines.append(f"topic read {prefix}/groups/{group}/cmd")
    lines += [f"topic write {prefix}/nodes/{node}/{kind}"
              for kind in ("state", "telemetry", "events")]
    return lines


def render_acl(prefix: str, server_user: str, nodes: Mapping[str, Iterable[str]]) -> str:
    """The whole ACL file: the server account, then one block per node (node -> its groups)."""
    blocks = [[f"user {server_user}", f"topic readwrite {prefix}/#"]]
    blocks += [node_acl_lines(prefix, node, groups) for node, groups in sorted(nodes.items())]
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


def render_conf(*, port: int, directory: Path, bind: str = "127.0.0.1") -> str:
    """A mosquitto.conf that keeps everything under ``directory``."""
    d = Path(directory).resolve()
    return "\n".join([
        "# Written by LoaPhuong; regenerated at start. Passwords and ACL are in files beside it.",
        "per_listener_settings false",
        f"listener {port} {bind}",
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "autosave_interval 30",
        f"pid_file {d / 'mosquitto.pid'}",
        f"log_dest file {d / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "max_queued_messages 10000",
        "persistent_client_expiration 14d",
        f"user {getpass.getuser()}",
        "",
    ])


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class MosquittoFiles:
    """The password file and ACL in ``directory``; ``apply`` writes them and tells the broker."""

    directory: Path
    prefix: str = "loa/v1"

    @property
    def pid_file(self) -> Path:
        return Path(self.directory) / "mosquitto.pid"

    def write(self, accounts: Mapping[str, str], server_user: str,
              nodes: Mapping[str, Iterable[str]]) -> None:
        d = Path(self.directory)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / "passwd", render_passwd(accounts))
        _write_atomic(d / "acl", render_acl(self.prefix, server_user, nodes))

    def reload(self) -> bool:
        """SIGHUP the running broker so it re-reads both files; False when none runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True

    def apply(self, accounts: Mapping[str, str], server_user: str,
              nodes: Mapping[str, Iterable[str]]) -> bool:
        self.write(accounts, server_user, nodes)
        return self.reload()


def mosquitto_binary() -> str:
    """Mosquitto's path: on PATH, or /usr/sbin where Debian puts it (not on a user's PATH)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("mosquitto is not installed (run `make deps`)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class MosquittoProcess:
    """A Mosquitto we start ourselves on our own port, stopped by its PID."""

    directory: Path
    port: int
    binary: str = ""
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def conf_path(self) -> Path:
        return Path(self.directory) / "mosquitto.conf"

    def start(self, timeout: float = 10.0) -> None:
        d = Path(self.directory)
        (d / "data").mkdir(parents=True, exist_ok=True)
        for name in ("passwd", "acl"):
            if not (d / name).exists():
                _write_atomic(d / name, "")
        self.conf_path.write_text(render_conf(port=self.port, directory=d), encoding="utf-8")
        self.proc = subprocess.Popen([self.binary or mosquitto_binary(), "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = d / "mosquitto.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err}{tail}")
            if port_open("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} in {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
