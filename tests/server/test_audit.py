"""The audit log: who changed what, logins, approvals and broadcasts, in a hash chain that
``python -m server.cli audit-verify`` checks (an edited, deleted or truncated log fails)."""
from __future__ import annotations

import gc
import json
import threading

import pytest
import requests
from sqlalchemy import func, select, text

from server import audit
from server.cli import init_instance, main as cli
from server.models import Area, AuditEntry, init_db, make_engine, make_sessionmaker
from tests import database
from tests.web_helpers import login_form



def _user(system, name: str, role: str, password: str) -> str:
    assert cli(["--instance", str(system.instance), "user", name, "--role", role,
                "--password", password]) == 0
    return system.login(name, password)


def _entries(system, **params) -> list[dict]:
    return system.ok("GET", "/api/v1/audit", params=params)["entries"]


def _verify(instance, capsys, *extra) -> tuple[int, str, str]:
    code = cli(["--instance", str(instance), "audit-verify", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _db(system):
    """A transaction on the server's database (SQLite or PostgreSQL), committed at its end."""
    return system.app.extensions["db_engine"].begin()


def test_create_approve_and_broadcast_through_the_api_are_logged_with_who_did_it(app_only):
    s = app_only
    staff = _user(s, "nhanvien", "staff", "staff-pass-1")
    approver = _user(s, "duyet", "approver", "approver-pass-1")
    ward = s.area("Phường 1", "P1", "ward")
    cluster = s.area("Cụm 1", "P1-1", "cluster", ward["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    b = s.ok("POST", "/api/v1/bulletins", token=staff,
             json={"title": "Cắt điện", "text": "Thông báo cắt điện.", "category": "other"})
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit", token=staff)
    s.ok("POST", f"/api/v1/bulletins/{b['id']}/approve", token=approver)
    bc = s.ok("POST", "/api/v1/broadcasts", token=staff,
              json={"bulletin_id": b["id"], "targets": {"areas": [ward["id"]]}})

    created = _entries(s, action="bulletins.insert")
    assert [(e["actor"], e["target"]["id"]) for e in created] == [("nhanvien", str(b["id"]))]
    approvals = [e for e in _entries(s, action="bulletin_events.insert")
                 if e["detail"]["new"]["action"] == "approve"]
    assert [e["actor"] for e in approvals] == ["duyet"]
    broadcasts = _entries(s, action="broadcasts")
    assert [(e["action"], e["actor"], e["target"]["id"]) for e in broadcasts] == [
        ("broadcasts.insert", "nhanvien", str(bc["id"]))]
    assert {e["actor"] for e in _entries(s, action="auth.login")} >= {"admin", "nhanvien", "duyet"}
    assert {e["actor"] for e in _entries(s, actor="duyet")} == {"duyet"}
    assert all(e["actor"] == "admin" for e in _entries(s, action="nodes.insert"))
    assert "nhanvien" in {e["actor"] for e in _entries(s, action="api_tokens.insert")}

    r = s.call("GET", "/api/v1/audit", token=approver)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = s.call("GET", "/api/v1/audit", params={"from": "yesterday"})
    assert r.status_code == 400 and "from" in r.json()["error"]["message"]


def test_a_failed_login_is_logged_with_the_name_tried(app_only):
    r = app_only.call("POST", "/api/v1/auth/token", token=None,
                      json={"username": "admin", "password": "wrong-guess"})
    assert r.status_code == 401
    failed = _entries(app_only, action="auth.login_failed")
    assert [(e["actor"], e["detail"]["username"]) for e in failed] == [("anonymous", "admin")]
    assert "wrong-guess" not in json.dumps(failed)


def test_secrets_never_appear_in_the_log(app_only, capsys):
    s = app_only
    _user(s, "nhanvien", "staff", "first-secret-pass")
    assert cli(["--instance", str(s.instance), "user", "nhanvien", "--role", "staff",
                "--password", "second-secret-pass"]) == 0
    assert cli(["--instance", str(s.instance), "token", "nhanvien"]) == 0
    api_token = capsys.readouterr().out.strip()
    ward = s.area("Phường 1", "P1", "ward")
    cluster = s.area("Cụm 1", "P1-1", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    with _db(s) as conn:
        secrets = [v for row in conn.execute(text(
            "SELECT password_hash FROM users UNION ALL SELECT token_hash FROM api_tokens "
            "UNION ALL SELECT mqtt_password_hash FROM nodes")) for v in row]
        log = "\n".join(conn.scalars(text("SELECT CAST(detail AS TEXT) FROM audit_log")))
    assert len(secrets) >= 5
    for secret in secrets + ["first-secret-pass", "second-secret-pass", api_token, s.token,
                             node["mqtt"]["password"]]:
        assert secret not in log
    changed = [e for e in _entries(s, action="users.update")
               if e["target"]["id"] != "1"]
    assert changed and changed[-1]["detail"]["secret_fields"] == ["password_hash"]


def test_audit_verify_passes_on_an_untouched_log_and_prints_its_head(app_only, capsys):
    code, out, _ = _verify(app_only.instance, capsys)
    assert code == 0
    with _db(app_only) as conn:
        last_id, last_hash = conn.execute(
            text("SELECT id, hash FROM audit_log ORDER BY id DESC")).first()
    assert f"head: {last_id}:{last_hash}" in out


def _log_rows(system, n: int) -> None:
    for i in range(n):
        system.area(f"Phường {i}", f"W{i}", "ward")


def test_audit_verify_fails_naming_a_row_whose_detail_was_edited(app_only, capsys):
    _log_rows(app_only, 3)
    with _db(app_only) as conn:
        row = conn.execute(text("SELECT id FROM audit_log WHERE action = 'areas.insert' "
                                "ORDER BY id")).first()[0]
        conn.execute(text("UPDATE audit_log SET detail = :d WHERE id = :id"),
                     {"d": json.dumps({"new": {"name": "Phường giả"}}), "id": row})
    code, _, err = _verify(app_only.instance, capsys)
    assert code == 1 and f"row {row}:" in err and "edited" in err


def test_audit_verify_fails_naming_the_row_after_a_deleted_middle_row(app_only, capsys):
    _log_rows(app_only, 3)
    with _db(app_only) as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM audit_log ORDER BY id"))]
        middle = ids[len(ids) // 2]
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": middle})
    code, _, err = _verify(app_only.instance, capsys)
    assert code == 1 and f"row {middle + 1}:" in err and "deleted" in err


def test_audit_verify_fails_when_the_last_row_was_deleted(app_only, capsys):
    _log_rows(app_only, 2)
    with _db(app_only) as conn:
        last = conn.scalar(text("SELECT max(id) FROM audit_log"))
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": last})
    code, _, err = _verify(app_only.instance, capsys)
    assert code == 1 and f"row {last}:" in err and "deleted" in err


def test_a_written_down_head_catches_a_truncation_that_also_rewrote_the_head(app_only, capsys):
    code, out, _ = _verify(app_only.instance, capsys)
    anchor = out.split("head: ")[1].split()[0]
    with _db(app_only) as conn:  # drop the last row and move the head back: the chain holds
        last = conn.scalar(text("SELECT max(id) FROM audit_log"))
        prev = conn.scalar(text("SELECT hash FROM audit_log WHERE id = :id"),
                           {"id": last - 1})
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": last})
        conn.execute(text("UPDATE audit_head SET last_id = :id, last_hash = :h"),
                     {"id": last - 1, "h": prev})
    assert _verify(app_only.instance, capsys)[0] == 0
    code, _, err = _verify(app_only.instance, capsys, "--anchor", anchor)
    assert code == 1 and f"row {last}:" in err


def test_each_new_session_maker_records_changes_after_earlier_ones_were_freed(tmp_path):
    """A process may make session makers one after another (each app, each lease held): a new
    one often lands at the address of one garbage-collected, and it must be hooked all the
    same (SQLAlchemy's event.contains, keyed by id(), said it already was)."""
    engine = make_engine(f"sqlite:///{tmp_path}/loa.db")
    init_db(engine)
    recorded, addresses = [], set()
    for i in range(30):
        maker = make_sessionmaker(engine)
        addresses.add(id(maker))
        with maker.begin() as db:
            db.add(Area(kind="ward", name=f"Phường {i}", code=f"W{i}", group=f"W{i}"))
        with maker() as db:
            recorded.append(db.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "areas.insert")))
        del maker, db
        # the maker freed (its cycles are young: no need to walk the whole heap each time),
        # so the next one may take its address
        gc.collect(1)
    engine.dispose()
    assert len(addresses) < 30, "no new maker took a freed one's address: nothing was tried"
    assert recorded == list(range(1, 31))


# --- concurrency: the chain never forks ---------------------------------------------------------

def _write_concurrently(url: str) -> int:
    engine = make_engine(url)
    init_db(engine)
    sessions = make_sessionmaker(engine)
    web = make_sessionmaker(engine, actor="dispatcher")
    errors: list[BaseException] = []
    per_thread = 25

    def writer(maker, tag: str) -> None:
        try:
            for i in range(per_thread):
                with maker() as db:
                    db.add(Area(kind="ward", name=f"{tag} {i}", code=f"{tag}-{i}",
                                group=f"{tag}-{i}"))
                    db.commit()
                with maker() as db:
                    audit.record(db, audit.Action.AREA_MERGE, (audit.Target.AREA, tag), {"i": i})
                    db.commit()
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(m, t))
               for m, t in ((sessions, "a"), (web, "b"), (sessions, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with sessions() as db:
        count, last_id, _ = audit.verify(db)
        actors = set(db.scalars(select(AuditEntry.actor)))
    engine.dispose()
    assert actors == {"system", "dispatcher"}
    return count


def test_two_writers_at_once_on_sqlite_leave_one_unbroken_chain(tmp_path):
    assert _write_concurrently(f"sqlite:///{tmp_path}/loa.db") == 3 * 25 * 2


@pytest.mark.skipif(not database.POSTGRES_URL.startswith("postgresql"),
                    reason="DATABASE_URL does not point at PostgreSQL")
def test_two_writers_at_once_on_postgresql_leave_one_unbroken_chain(pg_url):
    assert _write_concurrently(pg_url) == 3 * 25 * 2


def test_init_leaves_a_verifiable_log(tmp_path, capsys):
    init_instance(tmp_path / "inst", "pw-for-admin",
                  {"tts_engines": ["espeak"], **database.instance_database(tmp_path / "inst")})
    code, out, _ = _verify(tmp_path / "inst", capsys)
    assert code == 0 and "entries" in out


def test_page_logins_are_logged_like_api_logins(app_only):
    with requests.Session() as http:
        login_form(http, app_only.url, "admin", "not-the-password")
        login_form(http, app_only.url, "admin", "admin-test-password")
    failed = _entries(app_only, action="auth.login_failed")
    assert [(e["detail"]["username"], e["detail"]["via"]) for e in failed] == [("admin", "page")]
    ok = [e for e in _entries(app_only, action="auth.login") if e["detail"].get("via") == "page"]
    assert [e["actor"] for e in ok] == ["admin"]
