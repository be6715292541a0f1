"""Helpers for tests that act as a browser would without one: log in through the login page and
keep its cookie and the CSRF token the pages carry."""
from __future__ import annotations

import re

import requests

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_FIELD.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def found(pattern: str, text: str) -> str:
    """The first group of ``pattern``'s first match in ``text`` (a page, a header); fails the
    test, naming the pattern, where nothing matches."""
    match = re.search(pattern, text)
    assert match, f"nothing matches {pattern!r}"
    return match.group(1)


def login_form(http: requests.Session, url: str, username: str, password: str,
               **params) -> requests.Response:
    """Fill in and send the login page's form, as a person at the browser does."""
    token = csrf_from(http.get(f"{url}/login", timeout=10).text)
    return http.post(f"{url}/login", params=params, timeout=10, allow_redirects=False,
                     data={"username": username, "password": password, "csrf_token": token})


class PageUser:
    """A logged-in browser: its own cookie jar and the CSRF token of the last page read."""

    def __init__(self, system, username: str, password: str):
        self.url = system.url
        self.http = requests.Session()
        r = login_form(self.http, self.url, username, password)
        assert r.status_code == 302, r.text
        self.csrf = csrf_from(self.get("/bulletins").text)

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=30, allow_redirects=False, **kw)

    def post(self, path: str, with_token: bool = True, **kw) -> requests.Response:
        data = dict(kw.pop("data", {}))
        if with_token:
            data["csrf_token"] = self.csrf
        return self.http.post(self.url + path, data=data, timeout=30, allow_redirects=False, **kw)

    def cookies(self) -> dict:
        return self.http.cookies.get_dict()

    def logged_in(self) -> bool:
        return self.get("/").status_code == 200


def cookie_session(system, cookies: dict) -> requests.Session:
    """Another client presenting a copy of a browser's cookies (a stolen or saved cookie)."""
    http = requests.Session()
    for name, value in cookies.items():
        http.cookies.set(name, value)
    return http
