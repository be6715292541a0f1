"""Mosquitto as the project runs it: its config, password file and ACL, and the process itself.

The password file and ACL are rendered from the node registry and written atomically at start
and on revocation; provisioning appends the new nodes' lines to both. Mosquitto re-reads both on
SIGHUP, so provisioning a node changes the broker without restarting anything.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Mapping

from device_agent.protocol import TopicKind

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


def acl_patterns(prefix: str) -> list[str]:
    """What every node may do on topics named after itself (``%u``: its account, which is its
    node id), and read the command topic of group ``all``: one set of lines for the whole
    fleet. Mosquitto does not substitute a name holding ``+``, ``#`` or ``/`` (node ids never
    do), and the server's accounts can do all of it anyway."""
    lines = [f"pattern read {prefix}/nodes/%u/{kind}"
             for kind in (TopicKind.DESIRED, TopicKind.CMD)]
    lines.append(f"pattern read {prefix}/groups/all/cmd")
    lines += [f"pattern write {prefix}/nodes/%u/{kind}"
              for kind in (TopicKind.STATE, TopicKind.TELEMETRY, TopicKind.EVENTS)]
    return lines


def node_acl_lines(prefix: str, node: str, groups: Iterable[str]) -> list[str]:
    """What a node may do beyond ``acl_patterns``: read its groups' command topics (its
    cluster's and every area's above it). No lines when it has no group but ``all``.

    Few lines a node, because Mosquitto 2.0 reads each ``topic`` line of an ACL file by
    walking its list of users from the first: reading the file costs lines x users, and it
    reads it at start and on every SIGHUP (with the node's own topics written out too, nine
    lines a node, that was 1.7 s of the broker's CPU at 10,000 nodes, the broker answering
    nothing meanwhile)."""
    extra = sorted(set(groups) - {"all"})
    if not extra:
        return []
    return [f"user {node}", *(f"topic read {prefix}/groups/{group}/cmd" for group in extra)]


def bridge_accounts(server_user: str, workers: int) -> list[str]:
    """The broker accounts of the bridge-only workers 1..workers (each its own account, so
    its own client id and persistent session: use_username_as_clientid)."""
    return [f"{server_user}-bridge-{n}" for n in range(1, workers + 1)]


def bridge_acl_lines(prefix: str, user: str) -> list[str]:
    """A bridge worker reads what nodes report and nothing else; Mosquitto 2 checks a shared
    subscription ``$share/<group>/<filter>`` against ``<filter>``."""
    return [f"user {user}", *(f"topic read {prefix}/nodes/+/{kind}"
                              for kind in (TopicKind.TELEMETRY, TopicKind.EVENTS))]


def render_acl(prefix: str, server_user: str, nodes: Mapping[str, Iterable[str]],
               bridge_workers: int = 0) -> str:
    """The whole ACL file: the patterns every node shares, the server account, the bridge
    workers', then one block per node with a group of its own (node -> its groups)."""
    blocks = [acl_patterns(prefix), [f"user {server_user}", f"topic readwrite {prefix}/#"]]
    blocks += [bridge_acl_lines(prefix, user)
               for user in bridge_accounts(server_user, bridge_workers)]
    blocks += [node_acl_lines(prefix, node, groups) for node, groups in sorted(nodes.items())]
    return "\n\n".join("\n".join(b) for b in blocks if b) + "\n"


DEFAULT_MAX_PACKET = 1024 * 1024  # bytes; a desired state with a full schedule window fits

# Open files. Each connected client holds one descriptor in the broker; besides them it needs a
# few of its own (listeners, log, persistence, the password file and ACL read on reload).
# Under the common default of 1,024 a broker fills up at about 1,012 nodes and refuses the rest
# with a misleading "denied access by tcpd" log line, so the set-up raises the limit.
BROKER_OWN_FILES = 64
PROVINCE_NODES = 10_000  # what one server is sized for (issue 10)
MAX_QUEUED = 20 * PROVINCE_NODES  # messages the broker holds for one client (render_conf)
# what the broker may have sent one client unconfirmed: the server's bridge confirms a message
# once it is written, so this is a couple of batches on their way; past it the broker's queue
# is first in, first out. 20,000 (all of an emergency's receipts and starts in the bridge's
# queue, where a `received` ack goes first) was tried on 6 December: the broker then pushed
# every burst into the dispatcher at once, its network thread took the interpreter from the
# bridge and the desired-state publishing, and a 10,000-node run's telemetry lag p99 went from
# 3.6 to 9.0 s with the emergency's receipts no sooner (docs/benchmarks.md)
MAX_INFLIGHT = 1000


@dataclass(frozen=True)
class OpenFiles:
    """The open-files limit to give the broker, and how many nodes it lets connect."""

    limit: int  # RLIMIT_NOFILE (soft) for the broker
    hard: int
    nodes: int  # connections left for nodes (and the server's own few) under ``limit``
    wanted: int  # nodes asked for
    message: str  # one line for the operator: the limit and the node count it allows

    @property
    def enough(self) -> bool:
        return self.nodes >= self.wanted


def broker_open_files(wanted: int, soft: int, hard: int) -> OpenFiles:
    """The open-files limit for a broker that should take ``wanted`` nodes, given the limits
    its parent has (``soft``, ``hard``; ``resource.RLIM_INFINITY`` for none): what it needs,
    never below ``soft`` (nothing is lowered), never above ``hard`` (only root may raise that).
    The message says the limit and the nodes it allows, and when that is too few, what to do."""
    need = wanted + BROKER_OWN_FILES
    top = hard if hard != resource.RLIM_INFINITY and hard >= 0 else max(need, soft)
    limit = min(max(need, soft if soft != resource.RLIM_INFINITY else need), top)
    nodes = max(limit - BROKER_OWN_FILES, 0)
    if nodes >= wanted:
        message = (f"broker open files limit {limit}: room for {nodes} node connections "
                   f"({wanted} wanted)")
    else:
        message = (f"broker open files limit {limit} (the hard limit): only about {nodes} nodes "
                   f"can connect, {wanted} wanted; the broker refuses the rest (its log may say "
                   f"\"denied access by tcpd\"). Raise the hard limit to at least {need}: "
                   f"LimitNOFILE={need} in its systemd unit, or `ulimit -Hn {need}` as root, or "
                   f"nofile in /etc/security/limits.conf")
    return OpenFiles(limit, hard, nodes, wanted, message)


@dataclass(frozen=True)
class TlsListener:
    """The broker's TLS listener for nodes: its port and bind address, its certificate and key."""

    port: int
    certfile: Path
    keyfile: Path
    bind: str = ""  # empty: every interface


def render_conf(*, port: int, directory: Path, bind: str = "127.0.0.1",
                max_packet_size: int = DEFAULT_MAX_PACKET, tls: TlsListener | None = None,
                max_connections: int = -1) -> str:
    """A mosquitto.conf that keeps everything under ``directory``.

    Every listener replaces the client id a client asks for by its username
    (``use_username_as_clientid``), so one account cannot take over another's session: a node
    always connects as its own id, each server process as its own account. ``max_packet_size``
    disconnects a client that sends a bigger packet before the broker stores or forwards it.
    ``max_connections`` (each listener's; -1: none) keeps the nodes' listener below the
    broker's open-files limit, so a client past it is refused as such (the loopback listener
    of the server's own few processes gets the same figure)."""
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
        f"max_connections {int(max_connections)}",
    ]
    if tls is not None:
        lines += [
            "# nodes, over TLS",
            f"listener {tls.port} {tls.bind}".rstrip(),
            f"certfile {Path(tls.certfile).resolve()}",
            f"keyfile {Path(tls.keyfile).resolve()}",
            "tls_version tlsv1.2",
            "use_username_as_clientid true",
            f"max_connections {int(max_connections)}",
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
        # per client: the server's session holds what a province reports at once (an emergency
        # to 10,000 nodes brings 40,000 acks and played events within seconds, more than the
        # bridge writes in that time) and what waits while its process is down (a dispatcher's
        # takeover, a bridge worker's restart: Mosquitto keeps a dead member's share of a shared
        # subscription for it), ten minutes of a 10,000-node fleet's telemetry; past it the
        # broker drops them silently
        f"max_queued_messages {MAX_QUEUED}",
        # the dispatcher's bridge confirms a node's message only once it is written, a batch
        # at a time (server/transport.py): let a batch's worth be on its way (MAX_INFLIGHT)
        f"max_inflight_messages {MAX_INFLIGHT}",
        "persistent_client_expiration 14d",
        f"user {getpass.getuser()}",
        "",
    ]
    return "\n".join(lines)


def _append(path: Path, text: str) -> None:
    data = memoryview(text.encode("utf-8"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class MosquittoFiles:
    """The password file and ACL in ``directory``; ``apply`` writes them and tells the broker."""

    directory: Path
    prefix: str = "loa/v1"

    @property
    def pid_file(self) -> Path:
        return Path(self.directory) / "mosquitto.pid"

    def write(self, accounts: Mapping[str, str], server_user: str,
              nodes: Mapping[str, Iterable[str]], bridge_workers: int = 0) -> None:
        d = Path(self.directory)
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / "passwd", render_passwd(accounts))
        write_atomic(d / "acl", render_acl(self.prefix, server_user, nodes, bridge_workers))

    def complete(self) -> bool:
        """Whether both files were written whole (by ``write``) and may be appended to."""
        d = Path(self.directory)
        return (d / "passwd").is_file() and (d / "acl").is_file()

    def append(self, accounts: Mapping[str, str], nodes: Mapping[str, Iterable[str]]) -> None:
        """Add accounts (user -> hash) and node ACL blocks (node -> its groups) at the end of
        the files, leaving every line already there: the cost is the new lines', not the
        fleet's. Each file gets one write, flushed to disk before the caller signals the
        broker; a user is never appended twice by the server (ids are unique)."""
        d = Path(self.directory)
        if not accounts and not nodes:
            return
        _append(d / "passwd", render_passwd(accounts))
        blocks = [node_acl_lines(self.prefix, node, groups)
                  for node, groups in sorted(nodes.items())]
        _append(d / "acl", "".join("\n" + "\n".join(b) + "\n" for b in blocks if b))

    def reload(self) -> bool:
        """SIGHUP the running broker so it re-reads both files; False when none runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True

    def apply(self, accounts: Mapping[str, str], server_user: str,
              nodes: Mapping[str, Iterable[str]], bridge_workers: int = 0) -> bool:
        self.write(accounts, server_user, nodes, bridge_workers)
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

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
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
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def listens(pid: int, port: int) -> bool:
    """Whether the process ``pid`` itself listens on TCP ``port``, by Linux's /proc (its
    sockets' inodes among the listening ones'): a port another process took before this one
    bound it answers a connection too (port_open) while this one exits. Where there is no
    /proc, port_open on loopback."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return port_open("127.0.0.1", port)
    sockets = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:  # sl local_address rem_address st ... inode
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                sockets.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


@dataclass
class MosquittoProcess:
    """A Mosquitto we start ourselves on our own port, stopped by its PID."""

    directory: Path
    port: int
    binary: str = ""
    max_packet_size: int = DEFAULT_MAX_PACKET
    tls: TlsListener | None = None
    # how many nodes it should take: its open-files limit is raised for them (``open_files``)
    max_nodes: int = PROVINCE_NODES
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    open_files: OpenFiles | None = field(default=None, init=False)

    @property
    def conf_path(self) -> Path:
        return Path(self.directory) / "mosquitto.conf"

    @property
    def pid(self) -> int:
        """The running broker's PID (a RuntimeError before ``start`` or after ``stop``)."""
        if self.proc is None:
            raise RuntimeError("mosquitto is not running")
        return self.proc.pid

    def start(self, timeout: float = 10.0) -> None:
        d = Path(self.directory)
        (d / "data").mkdir(parents=True, exist_ok=True)
        for name in ("passwd", "acl"):
            if not (d / name).exists():
                write_atomic(d / name, "")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        files = self.open_files = broker_open_files(self.max_nodes, soft, hard)
        # below its open-files limit, so one listener's clients past it are refused cleanly
        # (the TLS listener's, when there is one, are the nodes; the other is the server's)
        self.conf_path.write_text(render_conf(port=self.port, directory=d, tls=self.tls,
                                              max_packet_size=self.max_packet_size,
                                              max_connections=files.nodes),
                                  encoding="utf-8")

        def raise_open_files() -> None:  # in the child, before it runs Mosquitto
            resource.setrlimit(resource.RLIMIT_NOFILE, (files.limit, hard))

        self.proc = subprocess.Popen([self.binary or mosquitto_binary(), "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True, preexec_fn=raise_open_files)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = d / "mosquitto.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err}{tail}")
            ports = [self.port] + ([self.tls.port] if self.tls else [])
            if all(port_open("127.0.0.1", p) and listens(self.proc.pid, p) for p in ports):
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
