"""Logging in and out, and the language switch (Vietnamese by default, English one click away)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from flask import redirect, render_template, request, session, url_for

from .. import auth as access
from ..i18n import LANGUAGES, t
from ..request_globals import g
from . import bp, local_path

if TYPE_CHECKING:
    from werkzeug.wrappers import Response


@bp.route("/lang/<code>")
def set_language(code: str) -> Response:
    if code in LANGUAGES:
        session["lang"] = code
    return redirect(local_path(request.referrer) or url_for("web.dashboard"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    error = None
    if request.method == "POST":
        user = access.login_attempt(g.db, request.form.get("username", ""),
                                    request.form.get("password", ""), via="page")
        if user is not None:
            access.start_web_session(g.db, user)
            g.db.commit()
            return redirect(local_path(request.args.get("next")) or url_for("web.dashboard"))
        error = t("err.bad_credentials")
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> Response:
    access.end_web_session(g.db)
    g.db.commit()
    return redirect(url_for("web.login"))
