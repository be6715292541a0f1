"""A throwaway PostgreSQL server from Debian's package, for the tests (standard library only).

``scripts/ci-postgres.sh`` runs a command against one (``python3 tests/pg_server.py COMMAND``),
and a test that stops and starts the database itself (tests/e2e/test_faults_postgres.py) makes
its own with ``PostgresServer``. initdb and pg_ctl come from /usr/lib/postgresql/*/bin (the
newest version; ``scripts/install-deps.sh`` installs them with WITH_POSTGRES=1): a new data
folder under /tmp, a free port, listening on 127.0.0.1 only with trust authentication, run as
the ``postgres`` user when this runs as root (initdb refuses root). fsync is off, and so are
synchronous commits unless ``durable``: a server stopped as in a crash (``stop("immediate")``)
then loses the last commits it acknowledged, which the server's own processes cannot survive
without sending something twice (a broadcast whose dispatch was undone is dispatched again,
under a new command id). fsync only matters when the machine itself goes down. The server is
stopped by its PID and its folder removed at ``close()``."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Unavailable(Exception):
    """PostgreSQL's server cannot be run here (why, in words a person can act on)."""


def bindir() -> Path:
    """The newest installed server's bin folder (initdb, pg_ctl, postgres, psql)."""
    found = [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                     key=lambda d: int(d.split("/")[-2]) if
                                     d.split("/")[-2].isdigit() else 0)
             if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK)]
    if not found:
        raise Unavailable("PostgreSQL's server is not installed (Debian: the postgresql "
                          "package); run WITH_POSTGRES=1 scripts/install-deps.sh, or give "
                          "DATABASE_URL")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One server: ``start()`` (initdb the first time), ``stop(mode)``, ``close()``."""

    def __init__(self, durable: bool = False) -> None:
        self.bin = bindir()
        self.durable = durable
        self.run_as: list[str] = []
        owner = None
        if os.getuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root, and there is no postgres user to run the "
                                  "server as (Debian's postgresql package makes it)") from None
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = Path(tempfile.mkdtemp(prefix="loa-ci-postgres."))
        if owner is not None:
            os.chown(self.data, owner.pw_uid, owner.pw_gid)
        os.chmod(self.data, 0o700)
        self.port = _free_port()
        self.pid: int | None = None
        self._run("initdb", f"--pgdata={self.data}/db", "--username=postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", log="initdb.log")

    def _run(self, tool: str, *args: str, log: str) -> None:
        with open(self.data / log, "ab") as out:
            done = subprocess.run([*self.run_as, str(self.bin / tool), *args], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=90)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed:\n"
                               + (self.data / log).read_text(errors="replace")[-3000:])

    def start(self) -> None:
        """Start (again, on the same port and data) and wait until it takes connections."""
        self._run("pg_ctl", f"--pgdata={self.data}/db", f"--log={self.data}/server.log",
                  "--wait", "--timeout=60",
                  f"--options=-c listen_addresses=127.0.0.1 -p {self.port} "
                  f"-c unix_socket_directories={self.data} -c fsync=off "
                  f"-c synchronous_commit={'on' if self.durable else 'off'} "
                  "-c full_page_writes=off -c max_connections=200",
                  "start", log="pg_ctl.log")
        self.pid = int((self.data / "db" / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions ended, then exit; ``immediate``: gone at once, as in a crash (the
        next start recovers from the WAL)."""
        if self.pid is not None and self._running():
            self._run("pg_ctl", f"--pgdata={self.data}/db", "--wait", "--timeout=30",
                      f"--mode={mode}", "stop", log="pg_ctl.log")
        self.pid = None

    def _running(self) -> bool:
        try:
            os.kill(self.pid or 0, 0)
        except OSError:
            return False
        return bool(self.pid)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database on it: its URL."""
        subprocess.run([*self.run_as, str(self.bin / "psql"), "-h", "127.0.0.1", "-p",
                        str(self.port), "-U", "postgres", "-d", "postgres", "-qAt", "-c",
                        f'CREATE DATABASE "{name}"'], check=True, capture_output=True,
                       timeout=30)
        return self.url(name)

    def version(self) -> str:
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=30).stdout.split()
        return out[2] if len(out) > 2 else "?"

    def close(self) -> None:
        """Stop it (SIGINT, PostgreSQL's fast shutdown, by its PID; SIGKILL after 10 s) and
        remove its folder."""
        if self.pid is not None and self._running():
            os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 10
            while self._running() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._running():
                print(f"PostgreSQL ({self.pid}) did not stop within 10 s: killed",
                      file=sys.stderr)
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        shutil.rmtree(self.data, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Run ``argv`` with DATABASE_URL naming a new server's database ``loa_test``; its exit
    status is ours. The server is stopped and removed however the command ends."""
    if not argv:
        print("usage: tests/pg_server.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        server = PostgresServer()
    except Unavailable as err:
        print(err, file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        server.start()
        url = server.create_database("loa_test")
        print(f"PostgreSQL {server.version()} for the tests on 127.0.0.1:{server.port} "
              f"(data: {server.data})", flush=True)
        try:
            return subprocess.run(argv, env={**os.environ, "DATABASE_URL": url}).returncode
        except KeyboardInterrupt:
            return 130
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
