"""Shared fixtures: a real Mosquitto on a free loopback port, started and stopped by each test;
the server with and without its broker; the short MP3s the agent tests play.

Each part has its own conftest.py beside its tests (server, schedules, agent, audio, e2e); the
end-to-end tests (tests/e2e) carry the ``e2e`` marker, so ``-m "not e2e"`` is the fast tier."""
from __future__ import annotations

import copy
import functools
import gc
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import settings
from werkzeug.routing import Rule
from werkzeug.security import generate_password_hash

import server.auth
from server.mosquitto import MosquittoProcess
from tests import database
from tests.brokers import start_broker, stop_later
from tests.fuzz_budget import FAST_EXAMPLES, FAST_PROFILE
from tests.render_cache import RunRenders, render_through

# `make test-fast` runs ``--hypothesis-profile=fast``: the property tests and the fuzzing run a
# fifth of their examples (tests/fuzz_budget.py); `make test` and a bare pytest run them all.
settings.register_profile(FAST_PROFILE, max_examples=FAST_EXAMPLES)

# The parts' helper modules (tests/<part>/helpers.py and the like) assert as the tests do: their
# asserts are rewritten too, so a failing one shows what it compared.
pytest.register_assert_rewrite("tests.server.helpers", "tests.audio.helpers",
                               "tests.schedules.helpers")


def pytest_collection_finish(session):
    """What the test process holds once its tests are collected (the modules of flask,
    sqlalchemy, hypothesis, schemathesis, ...: about a million objects) lives to its end:
    Python's cyclic garbage collector need not walk it again at every full collection
    while the tests run, nor at pytest's five collections when the process ends."""
    gc.collect()
    gc.freeze()


E2E_FIXTURES = {"system", "tls_broker"}  # the whole running system, or the broker's TLS set-up


def pytest_collection_modifyitems(config, items):
    """A test on the whole running system is end-to-end wherever it lives (tests/e2e marks all
    of its own). Under ``--dist loadgroup``, a test's group goes into its node id (this hook
    runs after those of tests/audio and tests/server, which mark groups)."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
    if getattr(config.option, "loadgroup", False) and NodeId is not None:
        _groups_in_node_ids(items)


try:  # pytest 9.2's node id type (private API): where pytest-xdist's group must go (below)
    from _pytest.nodeid import NodeId
except ImportError:  # another pytest: its ids as they are (the groups may then be ignored)
    NodeId = None  # type: ignore[misc,assignment]


def _groups_in_node_ids(items) -> None:
    """Each test's ``xdist_group`` in its node id (``...::test@group``), where pytest-xdist's
    scheduler looks for it, as its worker means to put it: that worker sets ``Node._nodeid``,
    which pytest 9.2 no longer reads (the id is ``Node._id``), so every group was ignored and
    a group's tests went to any worker, each building the module's fixtures again. Upstream:
    pytest-dev/pytest-xdist#1386 (open in December 2026), its fix #1388: once a release of
    pytest-xdist has it, this goes."""
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        nodeid = item.nodeid
        if names and nodeid.rfind("@") <= nodeid.rfind("]"):
            item._id = NodeId.parse(f"{nodeid}@{'_'.join(names)}")


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes():
    """Users' password hashes at a lower scrypt work factor (N=2^7, not werkzeug's 2^15): the
    tests log in and make users over a thousand times, at 70 ms a hash otherwise (4 ms at
    2^10, 0.9 ms at 2^7, the least werkzeug's memory bound for scrypt allows). The same kind
    of hash, checked the same way; only the servers these tests start in-process are
    affected."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server.auth, "generate_password_hash",
                   functools.partial(generate_password_hash, method="scrypt:128:8:1"))
        yield


@pytest.fixture(autouse=True, scope="session")
def url_builders_compiled_once():
    """Each URL rule's builders compiled once per test process, not at every app: werkzeug
    writes and compiles two Python functions for each of the app's ~120 rules whenever an app
    is made (a tenth of a second; the tests make hundreds of apps). A builder depends only on
    its rule's text and parts (the converters are looked up when it runs), so the same rule
    gets the same function; a rule whose default fills a part of the URL is compiled as
    before. Only the apps these tests make in-process are affected."""
    compile_builder = Rule._compile_builder
    builders: dict = {}

    def once(self, append_unknown=True):
        defaults = self.defaults or {}
        if defaults and any(dynamic and part in defaults for dynamic, part in self._trace):
            return compile_builder(self, append_unknown)
        key = (self.rule, tuple(self._trace), tuple(sorted(defaults)), append_unknown)
        if key not in builders:
            builders[key] = compile_builder(self, append_unknown)
        return builders[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Rule, "_compile_builder", once)
        yield


@pytest.fixture(autouse=True, scope="session")
def url_rules_parsed_once():
    """Each URL rule's text parsed once per test process, not at every app: werkzeug parses
    the ~120 rules again for each app it makes (half of what registering the blueprints costs,
    a few milliseconds an app). What a parse yields (the rule's parts, its trace and its
    converters) depends only on the text and on the map's converter classes, so an app with
    the same ones gets the same results; the converters, which keep the map they were made
    for but never read it, are shared. Each app still builds its own map and matcher. Only the
    apps these tests make in-process are affected."""
    parse_rule = Rule._parse_rule
    parsed: dict = {}

    def once(self, rule):
        key = (rule, tuple(self.map.converters.items()))
        if key not in parsed:
            before = len(self._trace)
            parts = list(parse_rule(self, rule))
            trace = self._trace[before:]
            parsed[key] = (parts, trace, {name: self._converters[name]
                                          for dynamic, name in trace if dynamic})
            return iter(parts)
        parts, trace, converters = parsed[key]
        self._trace.extend(trace)
        self._converters.update(converters)
        self.arguments.update(converters)
        return iter(parts)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Rule, "_parse_rule", once)
        yield


@pytest.fixture(autouse=True, scope="session")
def sql_compiled_once():
    """The engines of the apps these tests make share one dialect and its compiled statements
    per kind of database: SQLAlchemy keeps what it compiled per engine (keyed by its dialect),
    so every new app compiled each query it ran again, though all speak the same SQL to the
    same SQLite library (or the same PostgreSQL server, each in its own schema through the
    search_path). The CLI's engine (``server.cli.main``: the tests make users through it
    hundreds of times) shares them too. What runs on each database is the same."""
    import server
    import server.cli
    from server.models import make_engine  # what server and server.cli call by that name
    first: dict = {}

    def shared(url, *args):
        engine = make_engine(url, *args)
        kind = engine.dialect.name
        if kind in ("sqlite", "postgresql"):
            if kind not in first:
                first[kind] = engine
            else:
                engine.dialect = first[kind].dialect
                engine._compiled_cache = first[kind]._compiled_cache
        return engine

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server, "make_engine", shared)
        mp.setattr(server.cli, "make_engine", shared)
        yield


@pytest.fixture(scope="session")
def _renders(tmp_path_factory) -> RunRenders:
    """What the audio pipeline made, by its input (the samples and the render settings), and
    the programmes it joined, by their files and settings, for ``render_each_input_once``:
    shared by the run's test processes (tests/render_cache.py), in the folder of the run that
    holds each worker's own."""
    base = tmp_path_factory.getbasetemp()
    return RunRenders((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
                      / "renders")


@pytest.fixture
def render_each_input_once(_renders, monkeypatch):
    """The audio pipeline's work (trim, loudness, chimes, encoding: ffmpeg) done once per test
    run for each input, then handed out again: the server tests speak the same sentences
    with the same settings hundreds of times, on every worker, and the pipeline makes the same
    file from them each time (its own tests, tests/audio, always run it). A programme's join
    (audio.programme: one ffmpeg encode, bit-exact) likewise, once per run for the same files
    in the same order with the same settings. What is stored, cached and answered around them
    runs as before. The server and worker tests use it (their conftest.py)."""
    render_through(_renders, monkeypatch)



@pytest.fixture(scope="session")
def _stopping_brokers():
    """Brokers told to stop (SIGTERM) at the end of their test, waited for at the end of the
    run: Mosquitto takes a tenth of a second to exit, and the next test need not wait for it
    (each broker has its own port and folder)."""
    stopping: list[MosquittoProcess] = []
    yield stopping
    for process in stopping:
        process.stop()


@pytest.fixture
def broker(tmp_path, _stopping_brokers):
    tb = start_broker(tmp_path, tls=False)
    yield tb
    stop_later(tb, _stopping_brokers)


@pytest.fixture
def tls_broker(tmp_path, _stopping_brokers):
    """The project's broker with its TLS listener for nodes too, on a test CA (tmp_path/tls)."""
    tb = start_broker(tmp_path, tls=True)
    yield tb
    stop_later(tb, _stopping_brokers)


@pytest.fixture
def system(tmp_path, broker):
    """A running server (web over HTTP, dispatcher, bridge) on the test's broker."""
    from tests.system import System
    s = System(tmp_path, broker)
    yield s
    s.stop()


# How old a prepared instance may be when a test gets a copy of it: its rows (the admin's login,
# areas, nodes, users and their logins in the audit log and the rate limiter) are that much
# older than if the test had made them, and no test's time window (a minute at the least)
# should see a difference.
PREPARED_MAX_AGE_S = 20.0


@pytest.fixture(scope="session")
def prepared_instances(tmp_path_factory):
    """``prepared(build)``: an instance (database, signing key, admin and the admin's login)
    where ``build(system)`` then ran, what it returned kept as the snapshot's data, for
    ``make_app(prepare=build)`` to copy; ``prepared()`` one where nothing more ran. Making one
    costs a schema, a key, a hash, a login and the build's API calls; a test process makes each
    again when it is older than PREPARED_MAX_AGE_S. None on PostgreSQL, where every instance
    has a schema of its own (tests/database.py)."""
    from tests.system import Snapshot, System
    made: dict = {}  # build: (its snapshot, when it was made: time.monotonic())

    def prepared(build=None):
        if database.on_postgres():
            return None
        if build not in made or time.monotonic() - made[build][1] > PREPARED_MAX_AGE_S:
            base = None if build is None else prepared()
            name = "template" if build is None else build.__name__
            s = System(tmp_path_factory.mktemp(name), None, start_dispatcher=False,
                       template=base)
            try:
                data = build(s) if build is not None else None
            finally:
                s.stop()
            made[build] = (Snapshot(s.tmp, s.token, data), time.monotonic())
        return made[build][0]

    return prepared


@pytest.fixture
def make_app(tmp_path, prepared_instances):
    """Factory: ``make_app(**settings)`` is the server without a broker, dispatcher or socket
    (Flask's test client behind its URL, the fake speech engine unless ``tts_engines`` says
    otherwise), stopped after the test. ``make_app(prepare=build)`` is one where ``build(app)``
    has run, its answer in the app's ``prepared``: a copy of an instance where it ran for
    tests before when the settings allow (``build`` must then give the same for every test:
    areas, nodes, users and their tokens; ``prepared_instances``), else ``build`` run on this
    one."""
    from tests.system import System
    made = []

    def factory(prepare=None, **overrides):
        template = prepared_instances(prepare)
        s = System(tmp_path, None, start_dispatcher=False, template=template, **overrides)
        made.append(s)
        if prepare is not None:
            s.prepared = copy.deepcopy(template.data) if s.copied else prepare(s)
        return s

    yield factory
    for s in made:
        s.stop()


@pytest.fixture
def app_only(tmp_path, broker):
    """The server without its dispatcher, over real HTTP on the test's broker. The server and
    worker tests (tests/server, tests/schedules) have their own: in-process, without a broker."""
    from tests.system import System
    s = System(tmp_path, broker, start_dispatcher=False)
    yield s
    s.stop()


# --- media for the agents ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Short mono MP3s: ``short`` (1 s), ``other`` (1 s, another tone), ``long`` (3 s), and
    ``blip`` (0.3 s) for the real-time sink's plays whose length nothing depends on."""
    if not shutil.which("ffmpeg"):
        pytest.fail("ffmpeg is not installed")
    d = tmp_path_factory.mktemp("media")
    for name, freq, seconds in (("short", 440, 1), ("other", 880, 1), ("long", 330, 3),
                                ("blip", 660, 0.3)):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={freq}:duration={seconds}", "-ac", "1", "-b:a", "32k",
                        str(d / f"{name}.mp3")], check=True)
    return d


@pytest.fixture(scope="session")
def media_server(media_dir):
    from tests.agent_harness import MediaServer
    server = MediaServer(media_dir)
    yield server
    server.close()


@pytest.fixture
def pg_url():
    """A schema of its own on the PostgreSQL that DATABASE_URL (or LOA_TEST_DATABASE_URL)
    names, as a database URL whose search_path is that schema; dropped afterwards (tests that
    use it skip without one)."""
    if not database.POSTGRES_URL.startswith("postgresql"):
        pytest.skip("DATABASE_URL does not point at PostgreSQL")
    schema, url = database.create_schema(database.POSTGRES_URL)
    yield url
    database.drop_schema(database.POSTGRES_URL, schema)


@pytest.fixture(autouse=True, scope="session")
def _test_database_schemas():
    """The schemas left at the end of the run (a module's or the session's fixtures made them,
    or kept for reuse) dropped, with LOA_TEST_DATABASE_URL set (tests/database.py)."""
    yield
    if database.POSTGRES_URL:
        database.drop_all()


@pytest.fixture(autouse=True)
def _test_database(request):
    """With LOA_TEST_DATABASE_URL set, the instances a test makes are on PostgreSQL, each in a
    schema of its own, emptied after the test for the next one; a test marked ``sqlite`` keeps
    SQLite."""
    if not database.TEST_DATABASE_URL:
        yield
        return
    database.set_on(request.node.get_closest_marker("sqlite") is None)
    count = database.made()
    yield
    database.release_made_since(count)
    database.set_on(True)
