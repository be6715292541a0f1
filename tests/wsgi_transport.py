"""Serve a Flask app to ``requests`` in-process: calls to a mounted base URL go through Flask's
test client instead of a socket, and come back as ordinary ``requests`` responses (status,
headers, cookies, redirects), so tests written against the HTTP server run unchanged."""
from __future__ import annotations

import io
import threading
from http.client import HTTPMessage
from types import SimpleNamespace

import requests
from requests.adapters import BaseAdapter
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

_mounted: dict[str, WsgiAdapter] = {}
_lock = threading.Lock()
_original_get_adapter = requests.Session.get_adapter


class _Raw(io.BytesIO):
    """What requests reads a response's cookies from (``_original_response.msg``)."""

    def __init__(self, headers: list[tuple[str, str]]):
        super().__init__(b"")
        msg = HTTPMessage()
        for name, value in headers:
            msg[name] = value
        self._original_response = SimpleNamespace(msg=msg)

    def release_conn(self) -> None:
        pass


class WsgiAdapter(BaseAdapter):
    """A transport adapter that hands each prepared request to the app's test client."""

    def __init__(self, app):
        super().__init__()
        self.client = app.test_client(use_cookies=False)  # the requests session keeps cookies

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif body is not None and not isinstance(body, bytes):
            body = b"".join(body)
        answer = self.client.open(request.url, method=request.method,
                                  headers=list(request.headers.items()), data=body)
        raw_headers = list(answer.headers.items())
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp.reason = answer.status.partition(" ")[2]
        merged: dict[str, str] = {}
        for name, value in raw_headers:  # as urllib3 does: repeated headers joined by ", "
            key = next((k for k in merged if k.lower() == name.lower()), name)
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        resp.headers = CaseInsensitiveDict(merged)
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp._content = answer.get_data()
        answer.close()
        resp._content_consumed = True
        resp.raw = _Raw(raw_headers)
        resp.url = request.url
        resp.request = request
        resp.connection = self  # type: ignore[assignment]  # what answered it, as requests does
        extract_cookies_to_jar(resp.cookies, request, resp.raw)
        return resp

    def close(self) -> None:
        pass


def _get_adapter(self, url):
    for base, adapter in list(_mounted.items()):
        if url == base or url.startswith(base + "/") or url.startswith(base + "?"):
            return adapter
    return _original_get_adapter(self, url)


def mount(base_url: str, app) -> None:
    """Route every requests call (any session, also ``requests.get``) under ``base_url`` to
    ``app`` in this process."""
    with _lock:
        requests.Session.get_adapter = _get_adapter  # type: ignore[method-assign]
        _mounted[base_url.rstrip("/")] = WsgiAdapter(app)


def unmount(base_url: str) -> None:
    with _lock:
        _mounted.pop(base_url.rstrip("/"), None)
