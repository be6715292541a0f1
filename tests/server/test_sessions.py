"""A login ends when it should: logout, a password change (CLI or API) or long disuse make the
browser's cookie and the login tokens worthless, even copies saved before."""
import datetime as dt

from sqlalchemy import update

from server.cli import main as cli
from server.models import WebSession
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser, cookie_session, login_form

PASSWORD = "mat-khau-cu-123"
NEW_PASSWORD = "mat-khau-moi-456"


def _refused_with_cookie(s, cookies) -> bool:
    """The copied cookie opens neither the pages nor the API."""
    http = cookie_session(s, cookies)
    page = http.get(f"{s.url}/", timeout=10, allow_redirects=False)
    api = http.get(f"{s.url}/api/v1/bulletins", timeout=10)
    return page.status_code == 302 and "/login" in page.headers["Location"] \
        and api.status_code == 401


def _staff(s) -> None:
    assert cli(["--instance", str(s.instance), "user", "canbo", "--role", "staff",
                "--password", PASSWORD]) == 0


def test_a_cookie_saved_before_logout_no_longer_works_after_it(app_only):
    s = app_only
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    saved = browser.cookies()
    assert not _refused_with_cookie(s, saved)
    assert browser.post("/logout").status_code == 302
    assert not browser.logged_in()
    assert _refused_with_cookie(s, saved)


def test_a_password_change_by_the_cli_ends_sessions_and_login_tokens(app_only):
    s = app_only
    _staff(s)
    token = s.login("canbo", PASSWORD)
    saved = PageUser(s, "canbo", PASSWORD).cookies()
    assert cli(["--instance", str(s.instance), "user", "canbo", "--password", NEW_PASSWORD]) == 0
    assert s.call("GET", "/api/v1/bulletins", token=token).status_code == 401
    assert _refused_with_cookie(s, saved)
    assert s.call("GET", "/api/v1/bulletins",
                  token=s.login("canbo", NEW_PASSWORD)).status_code == 200


def test_a_password_change_through_the_api_ends_sessions_and_login_tokens(app_only):
    s = app_only
    _staff(s)
    token = s.login("canbo", PASSWORD)
    saved = PageUser(s, "canbo", PASSWORD).cookies()
    uid = next(u["id"] for u in s.ok("GET", "/api/v1/users")["users"] if u["username"] == "canbo")
    s.ok("PATCH", f"/api/v1/users/{uid}", json={"password": NEW_PASSWORD})
    assert s.call("GET", "/api/v1/bulletins", token=token).status_code == 401
    assert _refused_with_cookie(s, saved)


def test_integration_tokens_survive_a_password_change_until_revoked(app_only, capsys):
    s = app_only
    _staff(s)
    capsys.readouterr()
    assert cli(["--instance", str(s.instance), "token", "canbo", "--name", "sms-gateway"]) == 0
    integration = capsys.readouterr().out.strip()
    assert cli(["--instance", str(s.instance), "user", "canbo", "--password", NEW_PASSWORD]) == 0
    assert s.call("GET", "/api/v1/bulletins", token=integration).status_code == 200
    assert cli(["--instance", str(s.instance), "revoke-tokens", "canbo",
                "--name", "sms-gateway"]) == 0
    assert s.call("GET", "/api/v1/bulletins", token=integration).status_code == 401


def test_a_deactivated_user_is_logged_out_everywhere(app_only):
    s = app_only
    _staff(s)
    token = s.login("canbo", PASSWORD)
    saved = PageUser(s, "canbo", PASSWORD).cookies()
    assert cli(["--instance", str(s.instance), "user", "canbo", "--deactivate"]) == 0
    assert s.call("GET", "/api/v1/bulletins", token=token).status_code == 401
    assert _refused_with_cookie(s, saved)


def test_api_logout_revokes_the_token_it_was_sent_with_only(app_only):
    s = app_only
    first, second = s.login("admin", ADMIN_PASSWORD), s.login("admin", ADMIN_PASSWORD)
    assert s.call("POST", "/api/v1/auth/logout", token=first).status_code == 204
    assert s.call("GET", "/api/v1/bulletins", token=first).status_code == 401
    assert s.call("POST", "/api/v1/auth/logout", token=first).status_code == 401
    assert s.call("GET", "/api/v1/bulletins", token=second).status_code == 200


def test_a_session_unused_for_too_long_is_refused(app_only):
    s = app_only
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    idle = dt.timedelta(minutes=s.settings.session_idle_min + 1)
    with s.app.extensions["db_sessions"]() as db:
        db.execute(update(WebSession).values(
            last_seen=dt.datetime.now(dt.UTC).replace(tzinfo=None) - idle))
        db.commit()
    assert not browser.logged_in()


def test_two_browsers_have_their_own_sessions_and_a_new_login_ends_the_old_one(app_only):
    s = app_only
    office, home = PageUser(s, "admin", ADMIN_PASSWORD), PageUser(s, "admin", ADMIN_PASSWORD)
    before = office.cookies()
    assert not _refused_with_cookie(s, before) and not _refused_with_cookie(s, home.cookies())
    r = login_form(office.http, s.url, "admin", ADMIN_PASSWORD)  # the same browser again
    assert r.status_code == 302 and office.logged_in()
    assert _refused_with_cookie(s, before)
    assert home.logged_in()
