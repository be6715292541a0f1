"""The project's Mosquitto for tests: started on free loopback ports with the project's config
and accounts that can be added while it runs (the ``broker`` fixtures of tests/conftest.py,
the browser tests' systems, the Pi root check)."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.mosquitto import (MosquittoFiles, MosquittoProcess, TlsListener, ensure_tls_files,
                              free_port, mosquitto_binary, password_hash)


@dataclass
class TestBroker:
    """A running Mosquitto with the project's config; accounts can be added while it runs."""

    process: MosquittoProcess
    files: MosquittoFiles
    server_user: str = "loa-server"
    server_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    accounts: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    host: str = "127.0.0.1"
    ca_file: str = ""  # the test CA, when the broker has a TLS listener

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def tls_port(self) -> int:
        return self.process.tls.port if self.process.tls else 0

    @property
    def prefix(self) -> str:
        return self.files.prefix

    def write(self) -> None:
        accounts = dict(self.accounts)
        accounts[self.server_user] = password_hash(self.server_password)
        self.files.write(accounts, self.server_user, self.nodes)

    def add_node(self, node: str, password: str, groups=()) -> None:
        """Give a node its account and ACL, then make the running broker re-read them."""
        self.accounts[node] = password_hash(password)
        self.nodes[node] = list(groups)
        self.write()
        assert self.files.reload()


def start_broker(tmp_path: Path, tls: bool) -> TestBroker:
    """The project's Mosquitto on free ports in ``tmp_path`` (its TLS listener on a test CA
    too, with ``tls``), started again on other ports when one was taken first."""
    try:
        mosquitto_binary()
    except RuntimeError as err:
        pytest.fail(str(err))
    from tests.system import ADDRESS_IN_USE, START_TRIES
    directory = tmp_path / "mosquitto"
    files = MosquittoFiles(directory)
    made = ensure_tls_files(tmp_path / "tls", ["127.0.0.1", "localhost"]) if tls else None
    tries = 1
    while True:  # on other ports when one picked was taken before Mosquitto bound it
        listener = TlsListener(free_port(), made.cert, made.key, "127.0.0.1") if made else None
        process = MosquittoProcess(directory, free_port(), tls=listener)
        tb = TestBroker(process, files, ca_file=str(made.ca_cert) if made else "")
        tb.write()
        try:
            process.start()
        except RuntimeError as err:
            if ADDRESS_IN_USE not in str(err) or tries == START_TRIES:
                raise
            tries += 1
        else:
            return tb


def stop_later(tb: TestBroker, stopping: list[MosquittoProcess]) -> None:
    """Tell the broker to stop (SIGTERM) and leave the waiting for its exit to ``stopping``'s
    owner (tests/conftest.py ``_stopping_brokers``)."""
    proc = tb.process.proc
    if proc is not None and proc.poll() is None:
        proc.terminate()
    stopping.append(tb.process)
