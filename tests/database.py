"""Which database the servers the tests make run on.

SQLite in each instance folder by default, as the server's own default. When
``LOA_TEST_DATABASE_URL`` names a PostgreSQL server (``make test-postgres``), every instance
the tests make gets a fresh schema of its own there instead (``CREATE SCHEMA``, the URL's
``search_path`` set through libpq's ``options``), written into the instance's config.toml so
the CLI and the processes a test starts (dispatcher, web) read the same URL. The schema is
built by the migrations once and then reused: at the end of the test (or of the module or
session whose fixture made it) its sessions are ended and every table is emptied back to what
the migrations left (``TRUNCATE ... RESTART IDENTITY``, then the rows of a pristine copy), so the
next instance starts as on a new database without paying a few hundred statements of DDL; a
schema a test changed the shape of is dropped instead. All are dropped when the run ends.

A test about SQLite itself carries ``@pytest.mark.sqlite`` and keeps SQLite with the switch on.
``POSTGRES_URL`` is the server the PostgreSQL-only tests use (``pg_url``): ``DATABASE_URL``, or
the switch's."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

TEST_DATABASE_URL = os.environ.get("LOA_TEST_DATABASE_URL", "")
POSTGRES_URL = os.environ.get("DATABASE_URL", "") or TEST_DATABASE_URL
if TEST_DATABASE_URL and not TEST_DATABASE_URL.startswith("postgresql://"):
    raise SystemExit(f"LOA_TEST_DATABASE_URL: a postgresql:// URL, not {TEST_DATABASE_URL!r}")

_admin: dict[str, Engine] = {}  # an AUTOCOMMIT engine per server URL
# the schema of each instance folder made while the switch is on, in the order they were made
_schemas: dict[Path, str] = {}
# off for a test marked ``sqlite`` (tests/conftest.py)
_state = {"on": bool(TEST_DATABASE_URL)}


def on_postgres() -> bool:
    """Whether the instances made now get a PostgreSQL schema."""
    return _state["on"]


def set_on(on: bool) -> None:
    _state["on"] = on and bool(TEST_DATABASE_URL)


def _admin_engine(base: str) -> Engine:
    if base not in _admin:
        _admin[base] = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                                     isolation_level="AUTOCOMMIT", pool_size=1)
    return _admin[base]


def schema_url(base: str, schema: str) -> str:
    """``base`` (a postgresql:// URL) with its search_path set to ``schema``; its sessions
    carry the schema's name as their application_name (``drop_schema`` finds them by it)."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}"


def create_schema(base: str) -> tuple[str, str]:
    """A new empty schema on ``base``'s server: (its name, its URL)."""
    schema = f"loa_test_{uuid.uuid4().hex[:12]}"
    with _admin_engine(base).connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return schema, schema_url(base, schema)


def _end_sessions(conn, schema: str) -> None:
    """End the sessions still in ``schema`` (a process a test killed, an engine a test left
    open), which would hold up its drop or truncation."""
    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = :s AND pid <> pg_backend_pid()"), {"s": schema})


def drop_schema(base: str, schema: str) -> None:
    """Drop ``schema``, its sessions ended first."""
    with _admin_engine(base).connect() as conn:
        _end_sessions(conn, schema)
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def instance_database(instance: Path) -> dict:
    """The settings that put ``instance``'s database on the PostgreSQL of the switch: a schema
    of its own at the newest revision, taken on first use and written into the instance's
    config.toml; ``{}`` with the switch off (SQLite in the instance folder, the default)."""
    if not on_postgres():
        return {}
    instance = Path(instance).resolve()
    if instance not in _schemas:
        _schemas[instance] = _fresh_schema()
        url = schema_url(TEST_DATABASE_URL, _schemas[instance])
        instance.mkdir(parents=True, exist_ok=True)
        config = instance / "config.toml"
        before = config.read_text(encoding="utf-8") if config.exists() else ""
        # a TOML basic string is a JSON string for these characters
        config.write_text(f"{before}database_url = {json.dumps(url)}\n", encoding="utf-8")
    return {"database_url": schema_url(TEST_DATABASE_URL, _schemas[instance])}


# schemas at the newest revision holding only what the migrations put there, ready for the
# next instance; and the pristine one they are reset from (never given out)
_free: list[str] = []
_pristine: dict = {}


def _migrated_schema() -> str:
    from server.models import init_db, make_engine
    schema, url = create_schema(TEST_DATABASE_URL)
    engine = make_engine(url)
    try:
        init_db(engine)
    finally:
        engine.dispose()
    return schema


def _shape(conn, schema: str) -> tuple[str, frozenset[str]]:
    """A schema's revision and its tables (Alembic's own but)."""
    tables = conn.scalars(text("SELECT table_name FROM information_schema.tables "
                               "WHERE table_schema = :s"), {"s": schema}).all()
    version = conn.scalar(text(f'SELECT version_num FROM "{schema}".alembic_version')) \
        if "alembic_version" in tables else ""
    return version, frozenset(tables) - {"alembic_version"}


def _fresh_schema() -> str:
    if not _pristine:
        schema = _migrated_schema()
        with _admin_engine(TEST_DATABASE_URL).connect() as conn:
            version, tables = _shape(conn, schema)
            seeded = [t for t in sorted(tables)
                      if conn.scalar(text(f'SELECT count(*) FROM "{schema}"."{t}"'))]
        _pristine.update(schema=schema, version=version, tables=tables, seeded=seeded)
    return _free.pop() if _free else _migrated_schema()


def _release(schema: str) -> None:
    """``schema`` emptied back to the migrations' rows and kept for the next instance, or
    dropped when a test changed its shape."""
    with _admin_engine(TEST_DATABASE_URL).connect() as conn:
        _end_sessions(conn, schema)
        if _shape(conn, schema) != (_pristine["version"], _pristine["tables"]):
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            return
        conn.execute(text("TRUNCATE " + ", ".join(
            f'"{schema}"."{t}"' for t in sorted(_pristine["tables"])) +
            " RESTART IDENTITY CASCADE"))
        for t in _pristine["seeded"]:
            conn.execute(text(f'INSERT INTO "{schema}"."{t}" '
                              f'SELECT * FROM "{_pristine["schema"]}"."{t}"'))
    _free.append(schema)


def made() -> int:
    """How many instance schemas are in use so far (``release_made_since`` takes it)."""
    return len(_schemas)


def release_made_since(count: int) -> None:
    """Give back the schemas of the instances made after ``made()`` was ``count``."""
    for instance in list(_schemas)[count:]:
        _release(_schemas.pop(instance))


def drop_all() -> None:
    """Drop every schema this process made (the end of the run)."""
    for schema in [*_schemas.values(), *_free, *([_pristine["schema"]] if _pristine else [])]:
        drop_schema(TEST_DATABASE_URL, schema)
    _schemas.clear()
    _free.clear()
    _pristine.clear()
    for engine in _admin.values():
        engine.dispose()
    _admin.clear()
