"""Which database the servers the tests make run on.

SQLite in each instance folder by default, as the server's own default. When
``LOA_TEST_DATABASE_URL`` names a PostgreSQL server (``make test-postgres``), every instance
the tests make gets a fresh schema of its own there instead (``CREATE SCHEMA``, the URL's
``search_path`` set through libpq's ``options``), written into the instance's config.toml so
the CLI and the processes a test starts (dispatcher, web) read the same URL; the schemas are
dropped at the end of the test (or of the module or session whose fixture made them).

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

_admin: list[Engine] = []
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
    if not _admin:
        _admin.append(create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1),
                                    isolation_level="AUTOCOMMIT", pool_size=1))
    return _admin[0]


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


def drop_schema(base: str, schema: str) -> None:
    """Drop ``schema`` and end the sessions still in it first (a process a test killed, an
    engine a test left open), which would hold the drop up."""
    with _admin_engine(base).connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = :s AND pid <> pg_backend_pid()"),
                     {"s": schema})
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def instance_database(instance: Path) -> dict:
    """The settings that put ``instance``'s database on the PostgreSQL of the switch: a schema
    of its own, made on first use and written into the instance's config.toml; ``{}`` with the
    switch off (SQLite in the instance folder, the server's default)."""
    if not on_postgres():
        return {}
    instance = Path(instance).resolve()
    if instance not in _schemas:
        _schemas[instance], url = create_schema(TEST_DATABASE_URL)
        instance.mkdir(parents=True, exist_ok=True)
        config = instance / "config.toml"
        before = config.read_text(encoding="utf-8") if config.exists() else ""
        # a TOML basic string is a JSON string for these characters
        config.write_text(f"{before}database_url = {json.dumps(url)}\n", encoding="utf-8")
    return {"database_url": schema_url(TEST_DATABASE_URL, _schemas[instance])}


def made() -> int:
    """How many instance schemas exist so far (``drop_made_since`` takes it)."""
    return len(_schemas)


def drop_made_since(count: int) -> None:
    """Drop the schemas of the instances made after ``made()`` was ``count``."""
    for instance in list(_schemas)[count:]:
        drop_schema(TEST_DATABASE_URL, _schemas.pop(instance))


def dispose() -> None:
    for engine in _admin:
        engine.dispose()
    _admin.clear()
