"""Accounts through /api/v1/users and the CLI, under the same rules: an admin manages anyone; a
ward's operator (user.write) only users of its own ward, with roles no stronger than its own and
never unscoped. Passwords are never shown; an update changes only what it was given."""
import pytest

from server.cli import main as cli
from tests.system import ADMIN_PASSWORD

PASSWORD = "mat-khau-123"


@pytest.fixture
def wards(app_only, two_wards):
    """Two wards (with a ward approver and technician) and an operator managing the first."""
    s, mine = app_only, two_wards["mine"]
    manager = s.ok("POST", "/api/v1/users", json={
        "username": "quanly-lc", "role": "operator", "password": PASSWORD, "area_id": mine["id"]})
    return {**two_wards, "manager": manager, "token": s.login("quanly-lc", PASSWORD)}


def _create(s, token, **fields):
    return s.call("POST", "/api/v1/users", token=token,
                  json={"username": "canbo", "role": "staff", "password": PASSWORD, **fields})


def _code(r):
    return r.json()["error"]["code"]


def test_admin_creates_lists_and_edits_users_and_never_sees_a_password(app_only, wards):
    s = app_only
    made = s.ok("POST", "/api/v1/users", json={"username": "canbo", "role": "staff",
                                                "password": PASSWORD, "language": "en"})
    assert made["area_id"] is None and made["language"] == "en" and made["active"] is True
    listed = s.ok("GET", "/api/v1/users")["users"]
    assert {"admin", "quanly-lc", "canbo"} <= {u["username"] for u in listed}
    assert not any("password" in key for u in listed for key in u)
    edited = s.ok("PATCH", f"/api/v1/users/{made['id']}",
                  json={"role": "approver", "area_id": wards["mine"]["id"]})
    assert (edited["role"], edited["area_id"], edited["language"]) == \
        ("approver", wards["mine"]["id"], "en")
    assert s.ok("GET", f"/api/v1/users/{made['id']}") == edited
    assert "password" not in str(s.call("GET", f"/api/v1/users/{made['id']}").text)


def test_a_ward_manager_creates_users_only_inside_its_ward(app_only, wards):
    s, tok = app_only, wards["token"]
    r = _create(s, tok, area_id=wards["mine_cluster"]["id"])
    assert r.status_code == 201 and r.json()["area_id"] == wards["mine_cluster"]["id"]
    assert _create(s, tok, username="kia").json()["area_id"] == wards["mine"]["id"]  # its own
    r = _create(s, tok, username="lac", area_id=wards["other"]["id"])
    assert r.status_code == 403 and _code(r) == "forbidden_area"
    r = _create(s, tok, username="khong-gioi-han", area_id=None)
    assert r.status_code == 403 and _code(r) == "forbidden_unscoped"
    names = {u["username"] for u in s.ok("GET", "/api/v1/users")["users"]}
    assert "lac" not in names and "khong-gioi-han" not in names


def test_a_ward_manager_cannot_grant_a_role_stronger_than_its_own(app_only, wards):
    s, tok = app_only, wards["token"]
    for role in ("admin", "technician"):  # technician may provision nodes; an operator may not
        r = _create(s, tok, username=f"x-{role}", role=role)
        assert r.status_code == 403 and _code(r) == "forbidden_role"
    for role in ("approver", "viewer", "operator"):
        assert _create(s, tok, username=f"x-{role}", role=role).status_code == 201
    staff = _create(s, tok).json()
    r = s.call("PATCH", f"/api/v1/users/{staff['id']}", token=tok, json={"role": "admin"})
    assert r.status_code == 403
    r = s.call("PATCH", f"/api/v1/users/{staff['id']}", token=tok, json={"area_id": None})
    assert r.status_code == 403 and _code(r) == "forbidden_unscoped"
    r = s.call("PATCH", f"/api/v1/users/{wards['manager']['id']}", token=tok,
               json={"area_id": wards["other"]["id"]})
    assert r.status_code == 403  # nor move itself out of its ward
    assert s.ok("GET", f"/api/v1/users/{staff['id']}")["role"] == "staff"


def test_a_ward_manager_neither_sees_nor_edits_users_outside_its_ward(app_only, wards):
    s, tok = app_only, wards["token"]
    theirs = s.ok("POST", "/api/v1/users", json={"username": "canbo-nq", "role": "staff",
                                                  "password": PASSWORD,
                                                  "area_id": wards["other"]["id"]})
    admin = next(u for u in s.ok("GET", "/api/v1/users")["users"] if u["username"] == "admin")
    seen = {u["username"] for u in s.ok("GET", "/api/v1/users", token=tok)["users"]}
    assert seen == {"quanly-lc", "canbo-lc", "kythuat-lc"}
    for target in (theirs, admin):
        assert s.call("GET", f"/api/v1/users/{target['id']}", token=tok).status_code == 404
        r = s.call("PATCH", f"/api/v1/users/{target['id']}", token=tok,
                   json={"password": "da-bi-chiem-quyen"})
        assert r.status_code == 404
    assert s.login("admin", ADMIN_PASSWORD)  # its password was left alone


def test_staff_and_viewers_cannot_manage_users(app_only, wards):
    s = app_only
    for role in ("staff", "viewer"):
        s.ok("POST", "/api/v1/users", json={"username": role, "role": role, "password": PASSWORD})
        tok = s.login(role, PASSWORD)
        assert s.call("GET", "/api/v1/users", token=tok).status_code == 403
        assert _create(s, tok, username=f"new-{role}").status_code == 403


def test_a_viewer_reads_but_changes_nothing(app_only, wards):
    s = app_only
    s.ok("POST", "/api/v1/users", json={"username": "xem", "role": "viewer", "password": PASSWORD,
                                        "area_id": wards["mine"]["id"]})
    tok = s.login("xem", PASSWORD)
    assert s.call("GET", "/api/v1/bulletins", token=tok).status_code == 200
    assert s.call("GET", "/api/v1/nodes", token=tok).status_code == 200
    r = s.call("POST", "/api/v1/bulletins", token=tok,
               json={"title": "T", "text": "x", "category": "other"})
    assert r.status_code == 403


@pytest.mark.parametrize("fields,status,code", [
    ({"password": "ngan"}, 400, "invalid"),
    ({"role": "chief"}, 400, "invalid"),
    ({"username": "a b"}, 400, "invalid"),
    ({"password": None}, 400, "missing_field"),
    ({"is_admin": True}, 400, "invalid"),
    ({"area_id": 999999}, 404, "unknown_area"),
    ({"username": "admin"}, 409, "duplicate"),
])
def test_bad_user_fields_are_refused_with_a_clear_error(app_only, fields, status, code):
    r = _create(app_only, "default", **fields)
    assert r.status_code == status and _code(r) == code, r.text
    assert r.json()["error"]["message"]


def test_the_last_admin_cannot_be_demoted_or_deactivated(app_only):
    s = app_only
    admin = next(u for u in s.ok("GET", "/api/v1/users")["users"] if u["username"] == "admin")
    for change in ({"active": False}, {"role": "staff"}):
        r = s.call("PATCH", f"/api/v1/users/{admin['id']}", json=change)
        assert r.status_code == 409 and _code(r) == "last_admin"
    assert s.ok("GET", f"/api/v1/users/{admin['id']}")["role"] == "admin"


def test_cli_password_update_keeps_the_users_role_and_area(app_only, wards, capsys):
    s = app_only
    inst = ["--instance", str(s.instance)]
    ward = str(wards["mine"]["id"])
    assert cli([*inst, "user", "canbo", "--role", "approver", "--password", PASSWORD,
                "--area-id", ward]) == 0
    assert cli([*inst, "user", "canbo", "--password", "mat-khau-moi-456"]) == 0
    user = next(u for u in s.ok("GET", "/api/v1/users")["users"] if u["username"] == "canbo")
    assert (user["role"], user["area_id"]) == ("approver", wards["mine"]["id"])
    assert cli([*inst, "user", "canbo", "--all-areas"]) == 0
    assert s.ok("GET", f"/api/v1/users/{user['id']}")["area_id"] is None
    capsys.readouterr()
    assert cli([*inst, "user", "moi", "--password", PASSWORD]) == 1  # a new user needs a role
    assert "role" in capsys.readouterr().err
    assert cli([*inst, "user", "moi", "--role", "staff", "--password", "ngan"]) == 1
