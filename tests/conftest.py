"""Shared fixtures: a real Mosquitto on a free loopback port, started and stopped by each test."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pytest

from server.mosquitto import (MosquittoFiles, MosquittoProcess, free_port, mosquitto_binary,
                              password_hash)


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

    @property
    def port(self) -> int:
        return self.process.port

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


@pytest.fixture
def broker(tmp_path):
    try:
        mosquitto_binary()
    except RuntimeError as err:
        pytest.fail(str(err))
    directory = tmp_path / "mosquitto"
    files = MosquittoFiles(directory)
    process = MosquittoProcess(directory, free_port())
    tb = TestBroker(process, files)
    tb.write()
    process.start()
    yield tb
    process.stop()


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
