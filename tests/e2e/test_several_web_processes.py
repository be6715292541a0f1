"""Several web processes behind one address share nothing but the database (issue 10): two real
``python -m server`` processes on one instance, a round-robin proxy in front (a new backend for
every connection, the next one when a backend refuses, as a reverse proxy does), and a person
and a script that cannot tell which process answered."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import tomli_w

from server.cli import init_instance
from server.mosquitto import free_port
from tests.mqtt_helpers import wait_until_accepted
from tests.system import ADMIN_PASSWORD, ROOT, start_listening, web_serving
from tests.web_helpers import csrf_from, login_form


class RoundRobinProxy:
    """A TCP proxy on loopback: each connection goes to the next backend in turn; a backend that
    refuses the connection is passed over for the next."""

    def __init__(self, backends: list[int]):
        self.backends = backends
        self.port = free_port()
        self.served = {port: 0 for port in backends}
        self._turn = itertools.cycle(range(len(backends)))
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        tasks = asyncio.all_tasks(self._loop)  # connections still open: closed with the loop
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = next(self._turn)
        for i in range(len(self.backends)):
            port = self.backends[(first + i) % len(self.backends)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.served[port] += 1
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


def _start_web(instance: Path, port: int, log: Path) -> subprocess.Popen:
    return _spawn(["server", "--instance", str(instance), "--port", str(port), "--threads", "4"],
                  log)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _client() -> requests.Session:
    """A client that opens a new connection for every request, so the proxy spreads them."""
    http = requests.Session()
    http.headers["Connection"] = "close"
    return http


@pytest.fixture
def database(request) -> str:
    """The database both processes share: SQLite (one file), or PostgreSQL when a test asks
    for it and DATABASE_URL names one (skipped otherwise)."""
    kind = getattr(request, "param", "sqlite")
    return request.getfixturevalue("pg_url") if kind == "postgresql" else ""


BOTH_DATABASES = pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def two_webs(tmp_path, broker, database):
    instance = tmp_path / "instance"
    config = {"mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
              "mqtt_username": broker.server_user, "mqtt_password": broker.server_password,
              "mosquitto_dir": str(broker.files.directory), "login_limit_user": "4/minute",
              "login_limit_ip": "100/minute"}
    if database:
        config["database_url"] = database
    init_instance(instance, ADMIN_PASSWORD, config)
    # what both processes read: one instance, one config
    (instance / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")

    def start(port: int) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"web-{port}.log"
        return _start_web(instance, port, log), log

    started = start_listening(start, web_serving, count=2)  # each on a port of its own
    procs, ports = [proc for proc, _ in started], [port for _, port in started]
    try:
        proxy = RoundRobinProxy(ports)
        try:
            yield proxy, procs, ports
        finally:
            proxy.stop()
    finally:
        _stop(procs)


def _provision_and_connect(url: str, token: str, broker, timeout: float) -> None:
    """A cluster and a node made through ``url``; the broker accepts the node within
    ``timeout`` seconds."""
    auth = {"Authorization": f"Bearer {token}"}
    cluster = _client().post(f"{url}/api/v1/areas", headers=auth, timeout=10, json={
        "name": "Cụm 1", "code": "C1", "kind": "cluster"}).json()
    node = _client().post(f"{url}/api/v1/nodes", headers=auth, timeout=30, json={
        "cluster_id": cluster["id"], "name": "Loa mới"})
    assert node.status_code == 201, node.text
    wait_until_accepted(broker.host, broker.port, node.json()["id"],
                        node.json()["mqtt"]["password"], timeout=timeout)


def _api_login(url: str, username: str, password: str) -> requests.Response:
    return _client().post(f"{url}/api/v1/auth/token", timeout=10,
                          json={"username": username, "password": password})


@BOTH_DATABASES
def test_a_browser_login_and_an_api_token_work_on_every_process(two_webs):
    proxy, _procs, ports = two_webs
    browser = _client()
    # the login page comes from one process and its form goes to the other
    assert login_form(browser, proxy.url, "admin", ADMIN_PASSWORD).status_code == 302
    for port in ports:  # the same cookie, straight to each process
        assert browser.get(f"http://127.0.0.1:{port}/", timeout=10,
                           allow_redirects=False).status_code == 200
    # the dashboard's polled part, unchanged, is "304 Not Modified" from the other process too
    first = browser.get(f"http://127.0.0.1:{ports[0]}/partials/dashboard", timeout=10)
    assert first.status_code == 200 and first.headers["ETag"]
    again = browser.get(f"http://127.0.0.1:{ports[1]}/partials/dashboard", timeout=10,
                        headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    token = _api_login(proxy.url, "admin", ADMIN_PASSWORD).json()["token"]
    for port in ports:
        r = _client().get(f"http://127.0.0.1:{port}/api/v1/nodes", timeout=10,
                          headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    assert all(n > 0 for n in proxy.served.values()), proxy.served


@BOTH_DATABASES
def test_nodes_provisioned_at_once_through_both_processes_all_connect(two_webs, broker):
    proxy, _procs, ports = two_webs
    token = _api_login(proxy.url, "admin", ADMIN_PASSWORD).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}

    def call(port: int, path: str, body) -> dict:
        r = _client().post(f"http://127.0.0.1:{port}{path}", json=body, headers=auth, timeout=30)
        assert r.status_code < 300, r.text
        return r.json()

    province = call(ports[0], "/api/v1/areas", {"name": "Tỉnh Quảng Ninh", "code": "QN",
                                                "kind": "province", "parent_id": None})
    cluster = call(ports[1], "/api/v1/areas", {"name": "Cụm 1", "code": "QN-1", "kind": "cluster",
                                               "parent_id": province["id"]})

    def provision(i: int) -> dict:
        if i % 4 == 3:  # a few in bulk as well
            return call(ports[i % 2], "/api/v1/nodes/bulk", [
                {"cluster_id": cluster["id"], "name": f"Loa {i}-{j}"} for j in range(3)])
        return call(ports[i % 2], "/api/v1/nodes", {"cluster_id": cluster["id"],
                                                    "name": f"Loa {i}"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(provision, range(16)))
    nodes = [n for a in answers for n in a.get("nodes", [a])]
    assert len({n["id"] for n in nodes}) == len(nodes) == 12 + 4 * 3
    for n in nodes:
        wait_until_accepted(broker.host, broker.port, n["id"], n["mqtt"]["password"])


def test_a_provisioning_form_from_one_process_is_sent_once_through_the_other(two_webs):
    proxy, _procs, ports = two_webs
    token = _api_login(proxy.url, "admin", ADMIN_PASSWORD).json()["token"]
    r = _client().post(f"{proxy.url}/api/v1/areas", headers={"Authorization": f"Bearer {token}"},
                       timeout=10, json={"name": "Cụm 1", "code": "C1", "kind": "cluster"})
    assert r.status_code == 201, r.text
    browser = _client()
    assert login_form(browser, proxy.url, "admin", ADMIN_PASSWORD).status_code == 302
    form = browser.get(f"http://127.0.0.1:{ports[0]}/provisioning", timeout=10).text
    once = re.search(r'name="once" value="([^"]+)"', form)
    assert once
    data = {"csrf_token": csrf_from(form), "once": once.group(1), "name": "Loa chợ",
            "cluster_id": str(r.json()["id"])}
    sent = browser.post(f"http://127.0.0.1:{ports[1]}/provisioning", data=data, timeout=30)
    assert sent.status_code == 200 and "Loa chợ" in sent.text
    again = browser.post(f"http://127.0.0.1:{ports[0]}/provisioning", data=data, timeout=30)
    assert again.status_code == 410  # a reload of the answer provisions nothing


@BOTH_DATABASES
def test_failed_logins_spread_over_both_processes_still_trip_the_limit(two_webs):
    proxy, _procs, ports = two_webs
    for _ in range(4):  # the limit: 4 a minute for one username, through the proxy
        assert _api_login(proxy.url, "binh", "wrong-password").status_code == 401
    for port in ports:  # refused by each process, even with the right password's shape
        assert _api_login(f"http://127.0.0.1:{port}", "binh", "wrong-password").status_code == 429
    browser = _client()
    token = csrf_from(browser.get(f"http://127.0.0.1:{ports[1]}/login", timeout=10).text)
    page = browser.post(f"http://127.0.0.1:{ports[1]}/login", timeout=10, allow_redirects=False,
                        data={"username": "binh", "password": "x", "csrf_token": token})
    assert page.status_code == 429  # the login page counts the same attempts
    assert _api_login(proxy.url, "admin", ADMIN_PASSWORD).status_code == 200  # others go on


def test_a_killed_web_process_leaves_the_other_serving(two_webs, broker):
    proxy, procs, ports = two_webs
    browser = _client()
    assert login_form(browser, proxy.url, "admin", ADMIN_PASSWORD).status_code == 302
    token = _api_login(proxy.url, "admin", ADMIN_PASSWORD).json()["token"]
    procs[0].kill()  # kill -9
    procs[0].wait(5)
    for _ in range(4):  # every request answered, whichever process the proxy tries first
        assert browser.get(f"{proxy.url}/", timeout=10, allow_redirects=False).status_code == 200
    _provision_and_connect(proxy.url, token, broker, timeout=5)


def test_a_web_process_without_the_broker_files_gets_its_nodes_in_through_sync_broker(
        tmp_path, broker):
    """A web process on another machine (no ``mosquitto_dir``: it can neither write the broker's
    files nor signal it) provisions a node; ``sync-broker --every`` on the broker's machine sees
    the registry change in the database and the node can connect."""
    home, elsewhere = tmp_path / "instance", tmp_path / "elsewhere"
    mqtt = {"mqtt_host": "127.0.0.1", "mqtt_port": broker.port,
            "mqtt_username": broker.server_user, "mqtt_password": broker.server_password}
    home_config = {**mqtt, "mosquitto_dir": str(broker.files.directory)}
    init_instance(home, ADMIN_PASSWORD, home_config)
    (home / "config.toml").write_text(tomli_w.dumps(home_config), encoding="utf-8")
    elsewhere.mkdir()
    (elsewhere / "config.toml").write_text(tomli_w.dumps({
        **mqtt, "mosquitto_dir": "", "database_url": f"sqlite:///{home / 'loa.db'}"}),
        encoding="utf-8")
    procs = [_spawn(["server.cli", "--instance", str(home), "sync-broker", "--every", "0.2"],
                    tmp_path / "sync-broker.log")]
    try:
        log = tmp_path / "web.log"
        [(web, port)] = start_listening(lambda port: (_start_web(elsewhere, port, log), log),
                                        web_serving)
        procs.append(web)
        url = f"http://127.0.0.1:{port}"
        token = _api_login(url, "admin", ADMIN_PASSWORD).json()["token"]
        _provision_and_connect(url, token, broker, timeout=15)
        assert procs[0].poll() is None, (tmp_path / "sync-broker.log").read_text()
    finally:
        _stop(procs)
