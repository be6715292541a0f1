"""Shared fixtures: a real Mosquitto on a free loopback port, started and stopped by each test."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

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


def _broker(tmp_path, tls: bool):
    try:
        mosquitto_binary()
    except RuntimeError as err:
        pytest.fail(str(err))
    directory = tmp_path / "mosquitto"
    files = MosquittoFiles(directory)
    listener, ca_file = None, ""
    if tls:
        made = ensure_tls_files(tmp_path / "tls", ["127.0.0.1", "localhost"])
        listener, ca_file = TlsListener(free_port(), made.cert, made.key, "127.0.0.1"), \
            str(made.ca_cert)
    process = MosquittoProcess(directory, free_port(), tls=listener)
    tb = TestBroker(process, files, ca_file=ca_file)
    tb.write()
    process.start()
    return tb


@pytest.fixture
def broker(tmp_path):
    tb = _broker(tmp_path, tls=False)
    yield tb
    tb.process.stop()


@pytest.fixture
def tls_broker(tmp_path):
    """The project's broker with its TLS listener for nodes too, on a test CA (tmp_path/tls)."""
    tb = _broker(tmp_path, tls=True)
    yield tb
    tb.process.stop()


@pytest.fixture
def system(tmp_path, broker):
    """A running server (web over HTTP, dispatcher, bridge) on the test's broker."""
    from tests.system import System
    s = System(tmp_path, broker)
    yield s
    s.stop()


@pytest.fixture
def app_only(tmp_path, broker):
    """The server without its dispatcher: for tests of what the API accepts and refuses."""
    from tests.system import System
    s = System(tmp_path, broker, start_dispatcher=False)
    yield s
    s.stop()
