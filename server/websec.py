"""The web app's defences against other sites and password guessing, set up in one place:
the session cookie's flags, CSRF tokens (Flask-WTF) on every cookie-authenticated write, login
rate limits (Flask-Limiter, counted in the database) and the security headers of every response."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flask import Flask, render_template, request, session
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from . import auth, ratelimit
from .config import Settings
from .errors import ErrorCode, error_body, wants_json
from .i18n import t

if TYPE_CHECKING:
    from flask import Response

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# writes that need no CSRF token: trading a password for a token logs no browser in, and a
# cross-site form cannot send it as JSON
CSRF_EXEMPT = frozenset({"api.token"})
LOGIN_ENDPOINTS = ("web.login", "api.token")
PROVISIONING_ENDPOINT = "api.node_provisioning"


def init_app(app: Flask, settings: Settings) -> None:
    https = settings.cookie_secure or settings.public_url.lower().startswith("https://")
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=https, WTF_CSRF_CHECK_DEFAULT=False,
                      WTF_CSRF_TIME_LIMIT=None)
    if settings.trusted_proxies:
        # behind a reverse proxy the login limits count the client's address, not the proxy's
        app.wsgi_app = ProxyFix(app.wsgi_app,  # type: ignore[method-assign]
                                x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)
    _init_csrf(app)
    _init_login_limits(app, settings)

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        for name, value in (("Content-Security-Policy", CSP),
                            ("X-Content-Type-Options", "nosniff"),
                            ("X-Frame-Options", "DENY"),
                            ("Referrer-Policy", "same-origin")):
            resp.headers.setdefault(name, value)
        if https:
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp


def _init_csrf(app: Flask) -> None:
    csrf = CSRFProtect(app)

    @app.before_request
    def _check_csrf() -> None:
        if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT:
            return
        if auth.bearer_token() is not None:
            return  # judged by the token alone, never by the cookie
        if request.path.startswith("/api/") and not session.get("sid"):
            return  # no cookie login either: the route answers 401
        csrf.protect()

    @app.errorhandler(CSRFError)
    def _csrf_error(_err: CSRFError) -> tuple[Response | str, int]:
        if wants_json():
            return error_body(ErrorCode.CSRF_FAILED, t("err.csrf"))
        return render_template("error.html", message=t("err.csrf")), 400


def _username_key() -> str:
    data = request.get_json(silent=True) if request.is_json else request.form
    name = data.get("username") if isinstance(data, Mapping) else None
    return "user:" + (name.strip().lower()[:80] if isinstance(name, str) else "")


def _failed(resp: Response) -> bool:
    return resp.status_code == 401


def _init_login_limits(app: Flask, settings: Settings) -> None:
    """Failed logins are counted per client address and per username, on the page and the API
    together; past the limit even the right password waits (429). They are counted in the
    database (server/ratelimit.py), so several web processes behind one address count the same
    attempts."""
    limiter = Limiter(get_remote_address, app=app, storage_uri=f"{ratelimit.SCHEME}://",
                      storage_options={"engine": app.extensions["db_engine"]},
                      strategy="moving-window", headers_enabled=True)
    per_ip = limiter.shared_limit(settings.login_limit_ip, scope="login-ip", methods=["POST"],
                                  deduct_when=_failed)
    per_user = limiter.shared_limit(settings.login_limit_user, scope="login-user",
                                    key_func=_username_key, methods=["POST"], deduct_when=_failed)
    for endpoint in LOGIN_ENDPOINTS:
        # flask-limiter types its wrapper as maybe async; these views are plain functions
        app.view_functions[endpoint] = per_ip(  # type: ignore[assignment]
            per_user(app.view_functions[endpoint]))

    # a one-time provisioning token is guessed no faster than a password
    per_ip_fetch = limiter.shared_limit(settings.login_limit_ip, scope="provisioning-ip",
                                        methods=["GET"], deduct_when=_failed)
    app.view_functions[PROVISIONING_ENDPOINT] = per_ip_fetch(  # type: ignore[assignment]
        app.view_functions[PROVISIONING_ENDPOINT])

    @app.errorhandler(RateLimitExceeded)
    def _too_many(_err: RateLimitExceeded) -> tuple[Response | str, int]:
        if wants_json():
            key = "err.rate_limited_provisioning" if request.endpoint == PROVISIONING_ENDPOINT \
                else "err.rate_limited"
            return error_body(ErrorCode.RATE_LIMITED, t(key))
        return render_template("login.html", error=t("err.rate_limited")), 429
