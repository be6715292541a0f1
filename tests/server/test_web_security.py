"""What another site, a password guesser or a crafted link can do through the web app: nothing.
Cross-site writes without the CSRF token are refused, the session cookie is SameSite (and Secure
over https), failed logins are limited, every response carries the security headers, and no
redirect leaves the site."""
import datetime as dt

import pytest
import requests

from server import create_app
from tests.system import ADMIN_PASSWORD
from tests.web_helpers import PageUser, cookie_session, login_form


def _pending_bulletin(s) -> dict:
    b = s.ok("POST", "/api/v1/bulletins", json={"title": "Thông báo", "text": "Họp tổ dân phố.",
                                                "category": "other"})
    return s.ok("POST", f"/api/v1/bulletins/{b['id']}/submit")


def _scheduled_emergency(s) -> dict:
    province = s.area("Thành phố Hải Phòng", "HP", "province")
    cluster = s.area("Cụm 1", "HP-1", "cluster", province["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    b = s.approved_bulletin()
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()
    bc = s.ok("POST", "/api/v1/broadcasts", json={
        "bulletin_id": b["id"], "targets": {"areas": [province["id"]]},
        "priority": "emergency", "start_at": start})
    assert bc["status"] == "scheduled"
    return bc


def test_a_cross_site_form_cannot_approve_a_bulletin_with_the_users_cookie(app_only):
    s = app_only
    b = _pending_bulletin(s)
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    # what a form on another site makes the browser send: the cookie, but no token
    r = browser.post(f"/bulletins/{b['id']}/review", with_token=False, data={"action": "approve"})
    assert r.status_code == 400 and "tải lại trang" in r.text
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"

    r = browser.post(f"/bulletins/{b['id']}/review", data={"action": "approve"})
    assert r.status_code == 302
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "approved"


def test_a_cross_site_request_cannot_cancel_a_scheduled_emergency_broadcast(app_only):
    s = app_only
    bc = _scheduled_emergency(s)
    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    path = f"/api/v1/broadcasts/{bc['id']}/cancel"
    for form in (True, False):  # a plain form post, or a fetch with the cookie
        r = (browser.http.post(s.url + path, timeout=10, data={}) if form
             else browser.http.post(s.url + path, timeout=10, json={}))
        assert r.status_code == 400 and r.json()["error"]["code"] == "csrf_failed"
    assert s.ok("GET", f"/api/v1/broadcasts/{bc['id']}")["status"] == "scheduled"

    r = browser.http.post(s.url + path, headers={"X-CSRFToken": browser.csrf}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_bearer_token_calls_need_no_csrf_token_and_never_fall_back_to_the_cookie(app_only):
    s = app_only
    b = _pending_bulletin(s)
    r = s.call("POST", f"/api/v1/bulletins/{b['id']}/approve")  # bearer, no CSRF token
    assert r.status_code == 200 and r.json()["status"] == "approved"

    browser = PageUser(s, "admin", ADMIN_PASSWORD)
    r = browser.http.post(f"{s.url}/api/v1/bulletins/{b['id']}/archive", timeout=10,
                          headers={"Authorization": "Bearer not-a-token",
                                   "X-CSRFToken": browser.csrf})
    assert r.status_code == 401
    assert s.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "approved"


def test_the_session_cookie_is_samesite_lax_and_httponly(app_only):
    http = requests.Session()
    r = http.get(f"{app_only.url}/login", timeout=10)
    cookie = r.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie and "Secure" not in cookie


def test_the_session_cookie_is_secure_when_the_station_is_served_over_https(tmp_path):
    app = create_app({"tts_engines": ["espeak"], "public_url": "https://loa.example.vn"},
                     instance_path=tmp_path)
    r = app.test_client().get("/login", base_url="https://loa.example.vn")
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "SameSite=Lax" in cookie
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("path", ["/login", "/", "/api/v1/openapi.json", "/api/v1/bulletins",
                                  "/static/app.css", "/no-such-page"])
def test_every_response_carries_the_security_headers(app_only, path):
    r = requests.get(app_only.url + path, timeout=10, allow_redirects=False)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("referer", [
    "https://evil.example/phish", "//evil.example/phish", "/\\evil.example", "/\t/evil.example",
    "http://evil.example@127.0.0.1.evil.example/", "javascript:alert(1)"])
def test_switching_language_never_redirects_to_another_site(app_only, referer):
    r = requests.get(f"{app_only.url}/lang/en", headers={"Referer": referer}, timeout=10,
                     allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_switching_language_returns_to_the_page_it_came_from(app_only):
    r = requests.get(f"{app_only.url}/lang/en", timeout=10, allow_redirects=False,
                     headers={"Referer": f"{app_only.url}/bulletins?status=pending"})
    assert r.headers["Location"] == "/bulletins?status=pending"


@pytest.mark.parametrize("nxt,landing", [
    ("https://evil.example/", "/"), ("//evil.example/", "/"), ("/\\evil.example", "/"),
    ("/bulletins", "/bulletins")])
def test_login_next_only_leads_to_a_page_of_this_site(app_only, nxt, landing):
    r = login_form(requests.Session(), app_only.url, "admin", ADMIN_PASSWORD, next=nxt)
    assert r.status_code == 302 and r.headers["Location"] == landing


def _wrong_api_login(s, username):
    return s.http.post(f"{s.url}/api/v1/auth/token", timeout=10,
                       json={"username": username, "password": "sai-mat-khau"})


def test_the_sixth_wrong_password_for_a_user_is_refused_even_with_the_right_one(app_only):
    s = app_only  # default: 5 failed logins per username a minute
    for _ in range(5):
        assert _wrong_api_login(s, "admin").status_code == 401
    r = _wrong_api_login(s, "admin")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    r = s.http.post(f"{s.url}/api/v1/auth/token", timeout=10,
                    json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 429
    # the login page shares the count, and says so in Vietnamese
    r = login_form(requests.Session(), s.url, "admin", ADMIN_PASSWORD)
    assert r.status_code == 429 and "Đăng nhập sai quá nhiều lần" in r.text
    # other users are not locked out by it
    assert _wrong_api_login(s, "someone-else").status_code == 401


def test_successful_logins_are_not_counted(app_only):
    for _ in range(8):
        app_only.login("admin", ADMIN_PASSWORD)


def test_too_many_failed_logins_from_one_address_are_refused(tmp_path):
    from tests.system import System
    s = System(tmp_path, None, start_dispatcher=False, login_limit_ip="3/minute")
    try:
        for name in ("an", "binh", "chi"):
            assert _wrong_api_login(s, name).status_code == 401
        assert _wrong_api_login(s, "dung").status_code == 429
    finally:
        s.stop()


def _login_from(s, address: str, username: str):
    return s.http.post(f"{s.url}/api/v1/auth/token", timeout=10,
                       headers={"X-Forwarded-For": address},
                       json={"username": username, "password": "sai-mat-khau"})


def test_behind_a_trusted_proxy_failed_logins_count_per_client_not_per_proxy(make_app):
    s = make_app(login_limit_ip="3/minute", trusted_proxies=1)
    for name in ("an", "binh", "chi"):
        assert _login_from(s, "203.0.113.7", name).status_code == 401
    assert _login_from(s, "203.0.113.7", "dung").status_code == 429
    # another person behind the same proxy is not locked out by the guesser
    assert _login_from(s, "198.51.100.2", "dung").status_code == 401


def test_without_a_trusted_proxy_a_forged_forwarded_address_does_not_dodge_the_limit(make_app):
    s = make_app(login_limit_ip="3/minute")
    for i, name in enumerate(("an", "binh", "chi")):
        assert _login_from(s, f"203.0.113.{i}", name).status_code == 401
    assert _login_from(s, "203.0.113.99", "dung").status_code == 429


def test_unknown_and_known_usernames_both_cost_a_password_hash_check(app_only, monkeypatch):
    import server.auth
    from werkzeug.security import check_password_hash as real  # what server.auth calls
    checked = []

    def counting(stored, password):
        checked.append(stored)
        return real(stored, password)

    monkeypatch.setattr(server.auth, "check_password_hash", counting)
    unknown = _wrong_api_login(app_only, "no-such-user")
    known = _wrong_api_login(app_only, "admin")
    assert unknown.status_code == known.status_code == 401
    assert unknown.json() == known.json()
    assert len(checked) == 2 and checked[0] != checked[1]
    assert checked[0].split("$")[0] == checked[1].split("$")[0]  # the same kind of hash


def test_a_copied_cookie_does_not_outlive_the_csrf_token_of_another_session(app_only):
    """A CSRF token from one login is no good with another login's cookie."""
    first = PageUser(app_only, "admin", ADMIN_PASSWORD)
    second = PageUser(app_only, "admin", ADMIN_PASSWORD)
    b = _pending_bulletin(app_only)
    other = cookie_session(app_only, second.cookies())
    r = other.post(f"{app_only.url}/bulletins/{b['id']}/review", timeout=10, allow_redirects=False,
                   data={"action": "approve", "csrf_token": first.csrf})
    assert r.status_code == 400
    assert app_only.ok("GET", f"/api/v1/bulletins/{b['id']}")["status"] == "pending"


def test_a_bad_login_limit_setting_stops_the_server_naming_the_key(tmp_path):
    from server.config import ConfigError, load_settings
    with pytest.raises(ConfigError, match="login_limit_user"):
        load_settings(tmp_path, {"login_limit_user": "many"})
