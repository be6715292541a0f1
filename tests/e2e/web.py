"""What the browser tests share: Playwright for Python driving Debian's Chromium headless (never a
downloaded browser), one running system per test module, logged-in pages for any role at desktop
(1280x800) and phone (360x740) sizes, a watch that fails the test on any console error, page
error or failed request, and screenshots of the pages under test-output/screens/<test>/.

The fixtures are tests/e2e/conftest.py's, so a test there only names them::

    def test_something(web_system, web):
        page = web.page(web_system, "staff", "phone")  # logged in, Vietnamese
        web.visit(page, "/bulletins")  # 200, fits the width, screenshot bulletins-phone.png
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (Browser, BrowserContext, Page, Playwright, ViewportSize,
                                 expect, sync_playwright)

from server.auth import ROLES
from server.cli import main as cli
from tests.brokers import start_broker, stop_later
from tests.system import ADMIN_PASSWORD, ROOT, System

CHROMIUM = "/usr/bin/chromium"
SIZES: dict[str, ViewportSize] = {"desktop": {"width": 1280, "height": 800},
                                  "phone": {"width": 360, "height": 740}}
SCREENS = ROOT / "test-output" / "screens"
PASSWORD = "mat-khau-e2e-123"
TIMEOUT_MS = 20_000
WAIT_MS = 30_000  # for what the running system does behind a page (speech, a broadcast)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="session")
def chromium(playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("Debian's chromium is needed: run `make test-deps`")
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"])
    yield browser
    browser.close()


class WebSystem(System):
    """A running server with a ward, one of its clusters, and a user of every role."""
    ward: dict[str, Any]
    cluster: dict[str, Any]
    users: dict[str, tuple[str, str]]  # role: (username, password)


@pytest.fixture(scope="module")
def web_system(request, tmp_path_factory, _stopping_brokers):
    """One running server (web over HTTP, dispatcher, bridge, a real Mosquitto) for the whole
    test module, with a ward (``web_system.ward``) and one user of every role in it
    (``web_system.users[role]``, password PASSWORD; ``admin`` is the instance's own). A module
    may set ``WEB_SETTINGS`` (a dict) for its server's settings."""
    tmp = tmp_path_factory.mktemp("web")
    tb = start_broker(tmp, tls=False)
    s = WebSystem(tmp, tb, **getattr(request.module, "WEB_SETTINGS", {}))
    province = s.area("Thành phố Đà Nẵng", "DN", "province")
    s.ward = s.area("Phường Hải Châu 1", "DN-HC1", "ward", province["id"])
    s.cluster = s.area("Cụm loa chợ Hàn", "DN-HC1-1", "cluster", s.ward["id"])
    s.users = {"admin": ("admin", ADMIN_PASSWORD)}
    for role in ROLES:
        if role == "admin":
            continue
        name = f"{role}-hc1"
        assert cli(["--instance", str(s.instance), "user", name, "--role", role, "--password",
                    PASSWORD, "--area-id", str(s.ward["id"])]) == 0
        s.users[role] = (name, PASSWORD)
    yield s
    s.stop()
    stop_later(tb, _stopping_brokers)


@dataclass
class Watch:
    """Everything that went wrong in a page: console errors, uncaught errors, failed requests
    and HTTP errors, but those a test expects: the statuses in ``allow``, the console errors
    holding a text of ``allow_console`` (and the browser's own report of an allowed status)."""
    problems: list[str] = field(default_factory=list)
    allow: set[int] = field(default_factory=set)
    allow_console: list[str] = field(default_factory=list)

    def _console(self, message) -> None:
        expected = self.allow_console + [f"status of {status} " for status in self.allow]
        if message.type == "error" and not any(a in message.text for a in expected):
            self.problems.append(f"console {message.type}: {message.text}")

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # a request cut short because the page went elsewhere (a poll in flight) is no failure
        page.on("requestfailed", lambda r: self.problems.append(
            f"failed: {r.method} {r.url} {r.failure}") if r.failure != "net::ERR_ABORTED"
            else None)
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 and r.status not in self.allow else None)


class Web:
    """Pages of one test, in as many browser contexts as it needs; ``check()`` at the end."""

    def __init__(self, browser: Browser, name: str):
        self.browser = browser
        self.name = re.sub(r"[^\w.-]+", "_", name).strip("_")
        self.watch = Watch()
        self.contexts: list[BrowserContext] = []
        self.sizes: dict[int, str] = {}

    def new_page(self, size: str = "desktop", system: System | None = None) -> Page:
        """A fresh browser (no cookies) at ``size``, Vietnamese like a ward office's."""
        ctx = self.browser.new_context(viewport=SIZES[size], locale="vi-VN",
                                       base_url=system.url if system else None)
        ctx.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(ctx)
        page = ctx.new_page()
        self.watch.attach(page)
        self.sizes[id(page)] = size
        return page

    def login(self, page: Page, username: str, password: str) -> None:
        page.goto("/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)

    def page(self, system: WebSystem, role: str, size: str = "desktop") -> Page:
        """A page logged in as ``system``'s user of ``role``, on its dashboard."""
        page = self.new_page(size, system)
        self.login(page, *system.users[role])
        return page

    def shot(self, page: Page, label: str) -> Path:
        """Save a screenshot of the whole page: screens/<test>/<label>-<size>.png."""
        path = SCREENS / self.name / f"{label}-{self.sizes.get(id(page), 'desktop')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    def visit(self, page: Page, path: str, label: str | None = None) -> None:
        """Go to ``path`` (a page of this site), check that it answered 200 and fits the screen's
        width (no horizontal scroll), and save its screenshot."""
        response = page.goto(path)
        assert response is not None and response.status == 200, \
            f"{path}: {response.status if response else 'no answer'}"
        page.wait_for_load_state("load")
        assert no_horizontal_scroll(page), \
            f"{path} scrolls sideways at {page.viewport_size}: {overflowing(page)}"
        assert unlabelled_fields(page) == [], f"{path}: form fields without a label"
        assert page.locator("h1").count() == 1, f"{path}: not one <h1>"
        self.shot(page, label or (path.strip("/").replace("/", "_") or "home"))

    def check(self) -> None:
        assert self.watch.problems == [], "\n".join(self.watch.problems)

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


def unlabelled_fields(page: Page) -> list[str]:
    """The visible form fields a screen reader could not name (no label, no aria-label)."""
    return page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')]
        .filter(el => el.offsetParent !== null && !el.labels.length
                && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML)""")


def no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def overflowing(page: Page, most: int = 5) -> list[str]:
    """What sticks out past the screen's right edge (tag, id or class, its right edge in px):
    said when a page scrolls sideways, so the failure names the culprit."""
    return page.evaluate("""(most) => {
        const width = document.documentElement.clientWidth;
        return [...document.querySelectorAll('body *')]
            .map(el => [el, el.getBoundingClientRect().right])
            .filter(([el, right]) => right > width + 1)
            .slice(-most)
            .map(([el, right]) => `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}`
                 + `${el.className && typeof el.className === 'string'
                      ? '.' + el.className.trim().split(/\\s+/).join('.') : ''}`
                 + ` right=${Math.round(right)}px of ${width}`);
    }""", most)


# how often the pages these tests open poll their live parts (the dashboard, a node's facts):
# production's 10 s made every test that waits for a page to update itself wait up to 10 s a
# time; what a page shows, and that it updates in place (a 304 while nothing changes), is the
# same at any period
POLL_S = 2


@pytest.fixture
def quick_polls(monkeypatch):
    """The in-process servers' pages poll every ``POLL_S`` seconds, not production's 10."""
    import server.web.dashboard
    import server.web.fleet
    monkeypatch.setattr(server.web.dashboard, "POLL_S", POLL_S)
    monkeypatch.setattr(server.web.fleet, "FACTS_POLL_S", POLL_S)


@pytest.fixture
def web(chromium, request, quick_polls):
    """This test's pages (``Web``); fails the test on any console error or failed request seen
    in any of them. The pages poll every ``POLL_S`` seconds (``quick_polls``)."""
    w = Web(chromium, request.node.name)
    yield w
    try:
        w.check()
    finally:
        w.close()


def login(page: Page, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def preview_reading(page: Page):
    """Write a bulletin's title and text, ask for the preview; its spoken-text box."""
    page.goto("/bulletins/new")
    page.fill("input[name=title]", "Họp tổ dân phố")
    page.fill("textarea[name=text]", "UBND phường họp lúc 7h30.")
    page.click("[hx-post$='/partials/preview']")
    spoken = page.locator("textarea[name=spoken_text]")
    expect(spoken).to_have_value(re.compile("ủy ban nhân dân"), timeout=WAIT_MS)
    return spoken
