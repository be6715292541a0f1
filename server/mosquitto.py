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
from collections.abc import Iterable, Mapping

from .files import write_atomic

# Broker accounts of the server's own processes start with this; node ids never do, so no node
# can ever hold a server account's name (which is also its client id, use_username_as_clientid).
SERVER_ACCOUNT_PREFIX = "loa-"
PBKDF2_ITERATIONS = 101  # Mosquitto 2's own default for mosquitto_passwd


def password_hash(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """A password-file hash in Mosquitto 2's PBKDF2-SHA512 format (``$7$``)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


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


DEFAULT_MAX_PACKET = 1024 * 1024  # bytes; a desired state with a full schedule window fits


@dataclass(frozen=True)
class TlsListener:
    """The broker's TLS listener for nodes: its port and bind address, its certificate and key."""

    port: int
    certfile: Path
    keyfile: Path
    bind: str = ""  # empty: every interface


def render_conf(*, port: int, directory: Path, bind: str = "127.0.0.1",
                max_packet_size: int = DEFAULT_MAX_PACKET, tls: TlsListener | None = None) -> str:
    """A mosquitto.conf that keeps everything under ``directory``.

    Every listener replaces the client id a client asks for by its username
    (``use_username_as_clientid``), so one account cannot take over another's session: a node
    always connects as its own id, each server process as its own account. ``max_packet_size``
    disconnects a client that sends a bigger packet before the broker stores or forwards it."""
    d = Path(directory).resolve()
    lines = [
        "# Written by LoaPhuong; regenerated at start. Passwords and ACL are in files beside it.",
        "per_listener_settings false",
        "# a command or event goes out at once, not held back (Nagle) until the previous packet's",
        "# delayed TCP ACK comes: tens of milliseconds for each step of a round trip",
        "set_tcp_nodelay true",
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        f"max_packet_size {int(max_packet_size)}",
        "# the server's own processes (and, without TLS, nodes)",
        f"listener {port} {bind}",
        "use_username_as_clientid true",
    ]
    if tls is not None:
        lines += [
            "# nodes, over TLS",
            f"listener {tls.port} {tls.bind}".rstrip(),
            f"certfile {Path(tls.certfile).resolve()}",
            f"keyfile {Path(tls.keyfile).resolve()}",
            "tls_version tlsv1.2",
            "use_username_as_clientid true",
        ]
    lines += [
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
    ]
    return "\n".join(lines)


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
        write_atomic(d / "passwd", render_passwd(accounts))
        write_atomic(d / "acl", render_acl(self.prefix, server_user, nodes))

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


@dataclass(frozen=True)
class TlsFiles:
    """A project CA (its certificate is what nodes trust) and the broker's key and certificate."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def ensure_tls_files(directory: Path, hosts: Iterable[str], days: int = 3650) -> TlsFiles:
    """Make (first call) or reuse a project CA and a broker certificate for ``hosts`` (names or
    IP addresses) under ``directory``; private keys are written 0600. A broker certificate that
    does not name every host is made again from the same CA."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(d / "ca.pem", d / "ca.key", d / "broker.crt", d / "broker.key")
    hosts = sorted(set(hosts))

    def write_key(path: Path, key) -> None:
        write_atomic(path, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode())

    def sans() -> list[x509.GeneralName]:
        out: list[x509.GeneralName] = []
        for h in hosts:
            try:
                out.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                out.append(x509.DNSName(h))
        return out

    now = dt.datetime.now(dt.UTC)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):  # what this function writes
            raise RuntimeError(f"{files.ca_key} is not an EC private key")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LoaPhuong broker CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        write_key(files.ca_key, ca_key)
        write_atomic(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM).decode(),
                      mode=0o644)
        files.cert.unlink(missing_ok=True)
    if files.cert.exists() and files.key.exists():
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        try:
            named = list(
                cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            named = []
        if cert.issuer == ca_cert.subject and set(named) >= set(sans()):
            return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans()), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_key(files.key, key)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM).decode(), mode=0o644)
    return files


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
    max_packet_size: int = DEFAULT_MAX_PACKET
    tls: TlsListener | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def conf_path(self) -> Path:
        return Path(self.directory) / "mosquitto.conf"

    def start(self, timeout: float = 10.0) -> None:
        d = Path(self.directory)
        (d / "data").mkdir(parents=True, exist_ok=True)
        for name in ("passwd", "acl"):
            if not (d / name).exists():
                write_atomic(d / name, "")
        self.conf_path.write_text(render_conf(port=self.port, directory=d, tls=self.tls,
                                              max_packet_size=self.max_packet_size),
                                  encoding="utf-8")
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
            if port_open("127.0.0.1", self.port) and (
                    self.tls is None or port_open("127.0.0.1", self.tls.port)):
                return
            time.sleep(0.01)  # it listens within tens of milliseconds
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} in {timeout}s")

    def kill(self) -> None:
        """End the broker at once (SIGKILL, as a power cut would): it saves nothing on the way
        out; what it holds since its last autosave is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stop()

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


def main(argv: list[str] | None = None) -> int:
    """``python -m server.mosquitto tls DIR HOST…``: make or reuse the project CA and the
    broker's certificate for HOSTs (the names and addresses nodes use) in DIR."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m server.mosquitto")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tls", help="project CA and broker certificate (keys 0600)")
    p.add_argument("directory")
    p.add_argument("hosts", nargs="+")
    args = ap.parse_args(argv)
    files = ensure_tls_files(Path(args.directory), args.hosts)
    print(f"CA certificate (nodes trust it; the server's ca_file): {files.ca_cert}\n"
          f"broker certificate and key (certfile, keyfile): {files.cert} {files.key}\n"
          f"keep {files.ca_key} offline or at least private: it can sign a broker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
