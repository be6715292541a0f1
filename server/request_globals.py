"""Flask's ``g`` as the app fills it, for the type checker: ``g.db`` is the request's database
session (server/__init__.py opens it before each request and closes it after). The other names
the request keeps there (the caller's cache, the token or session row) stay untyped: a view
reads its caller as ``auth.caller()``, a User. At run time this is Flask's own ``g``."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask.ctx import _AppCtxGlobals
    from sqlalchemy.orm import Session

    class _RequestGlobals(_AppCtxGlobals):
        db: Session

    g: _RequestGlobals
else:
    from flask import g

__all__ = ["g"]
