"""Alert notifications against real local servers on loopback: an SMTP server (aiosmtpd, also
with STARTTLS) and an HTTP server for the webhook. Sent when an alert opens and when it is
resolved, not on every pass; in Vietnamese, or English where an area's route asks; retried
with backoff; and a webhook that does not answer never holds up the dispatcher."""
from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from server import notify
from server.mosquitto import ensure_tls_files, free_port
from tests.server.helpers import (Clock, bridge_of, make_dispatcher, make_two_wards, node_ids,
                                  state)

SECRET = "bi-mat-webhook"


class Inbox:
    """aiosmtpd's handler: every message it is given, parsed."""

    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


class Hook:
    """A webhook receiver: records each POST; answers the statuses queued in ``answers`` (then
    200); holds every answer while ``gate`` is not set."""

    def __init__(self):
        self.posts: list[tuple[dict, dict]] = []
        self.answers: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.gate.wait(30)
                status = hook.answers.pop(0) if hook.answers else 200
                hook.posts.append((dict(self.headers), {"status": status, "body": body}))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[dict]:
        return [json.loads(p["body"]) for _h, p in self.posts if p["status"] == 200]

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return predicate()


def station(make_app, **settings):
    """A server whose alerts go to the webhook and e-mail, its dispatcher with a test clock
    and a running notifier, and the first ward's node connected: (app, wards, dispatcher,
    clock, bridge, node id)."""
    s = make_app(alert_notify_backoff_s=0.05, alert_notify_timeout_s=5, **settings)
    wards = make_two_wards(s)
    clock = Clock()
    dispatcher = make_dispatcher(s, clock)
    dispatcher.notifier.start()
    bridge = bridge_of(s)
    node = node_ids(s, wards["mine"]["id"])[0]
    state(bridge, node, True, clock)
    return s, wards, dispatcher, clock, bridge, node


def test_an_alert_is_sent_by_webhook_and_email_when_it_opens_and_when_it_resolves(
        make_app, smtp, hook):
    port, inbox = smtp
    s, wards, dispatcher, clock, bridge, node = station(
        make_app, alert_webhook_url=hook.url, alert_webhook_secret=SECRET,
        alert_email_to=["truc-ban@phuong.example"], smtp_host="127.0.0.1", smtp_port=port,
        smtp_starttls=False,
        alert_routes={"HP-LC": {"email_to": ["ky-thuat@lechan.example"], "language": "en"}})
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        assert dispatcher.evaluate_alerts() == 1
        wait_for(lambda: len(hook.delivered()) == 1 and len(inbox.messages) == 2,
                 what="the webhook and two e-mails")

        [sent] = hook.delivered()
        headers, raw = hook.posts[0][0], hook.posts[0][1]["body"]
        assert sent["event"] == "opened" and sent["language"] == "vi"
        assert sent["alert"]["kind"] == "node_offline" and sent["alert"]["node_id"] == node
        assert sent["alert"]["text"].startswith("Mất kết nối từ")
        assert sent["subject"] == f"[Loa Phường] Cảnh báo: Thiết bị mất kết nối - Loa ({node})"
        expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["X-Loa-Signature"] == f"sha256={expected}"

        mails = {tuple(to): msg for to, msg in inbox.messages}
        vi = mails[("truc-ban@phuong.example",)]
        assert vi["Subject"] == sent["subject"] and vi["From"] == "loaphuong@localhost"
        assert "Địa bàn: Cụm 1" in vi.get_content() and "Số lần: 1" in vi.get_content()
        en = mails[("ky-thuat@lechan.example",)]
        assert en["Subject"] == f"[LoaPhuong] Warning: Node offline - Loa ({node})"
        assert "Area: Cụm 1" in en.get_content()

        submitted: list[notify.Message] = []
        dispatcher.notifier.submit = submitted.append  # what later passes hand over
        for _ in range(3):
            clock.forward(minutes=5)
            dispatcher.evaluate_alerts()
        assert submitted == []  # found again and again: no repeat

        dispatcher.notifier.submit = notify.Notifier.submit.__get__(dispatcher.notifier)
        state(bridge, node, True, clock)
        clock.forward(seconds=30)
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(hook.delivered()) == 2 and len(inbox.messages) == 4,
                 what="the resolved notifications")
        resolved = hook.delivered()[1]
        assert resolved["event"] == "resolved" and resolved["alert"]["resolved"]["automatic"]
        assert resolved["text"].endswith("Tự động: tình trạng đã hết.")
        assert resolved["subject"].startswith("[Loa Phường] Đã xử lý: Thiết bị mất kết nối")
    finally:
        dispatcher.notifier.stop()


def test_a_failing_webhook_is_tried_again_with_backoff(make_app, hook):
    hook.answers = [500, 503]
    s, _wards, dispatcher, clock, bridge, node = station(make_app, alert_webhook_url=hook.url,
                                                         alert_notify_retries=3)
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(hook.delivered()) == 1, what="the third try")
        assert [p["status"] for _h, p in hook.posts] == [500, 503, 200]
    finally:
        dispatcher.notifier.stop()


def test_a_webhook_that_gives_up_is_dropped_after_its_tries(make_app, hook, caplog):
    hook.answers = [500, 500, 500]
    s, _wards, dispatcher, clock, bridge, node = station(make_app, alert_webhook_url=hook.url,
                                                         alert_notify_retries=2)
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(hook.posts) == 3, what="three tries")
        wait_for(lambda: any("try 3 of 3" in r.getMessage() for r in caplog.records),
                 what="the last failure logged")
        assert hook.delivered() == []
    finally:
        dispatcher.notifier.stop()


def test_a_webhook_that_does_not_answer_never_holds_up_the_dispatcher(make_app, hook):
    hook.gate.clear()  # the receiver takes the request and sits on it
    s, _wards, dispatcher, clock, bridge, node = station(make_app, alert_webhook_url=hook.url)
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        started = time.monotonic()
        assert dispatcher.evaluate_alerts() == 1
        assert dispatcher.tick() is True  # a whole pass ran, and returned
        assert time.monotonic() - started < 2.0  # the webhook's timeout is 5 s
        assert hook.posts == []
        hook.gate.set()
        wait_for(lambda: len(hook.delivered()) == 1, what="the held webhook")
    finally:
        dispatcher.notifier.stop()


def test_email_over_starttls_verified_against_the_configured_ca(make_app, tmp_path):
    tls = ensure_tls_files(tmp_path / "tls", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True)
    controller.start()
    s, _wards, dispatcher, clock, bridge, node = station(
        make_app, alert_email_to=["truc-ban@phuong.example"], smtp_host="127.0.0.1",
        smtp_port=controller.port, smtp_starttls=True, smtp_ca_file=str(tls.ca_cert))
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(inbox.messages) == 1, what="the e-mail over STARTTLS")
        [(to, msg)] = inbox.messages
        assert to == ["truc-ban@phuong.example"]
        assert msg["Subject"].startswith("[Loa Phường] Cảnh báo: Thiết bị mất kết nối")
    finally:
        dispatcher.notifier.stop()
        controller.stop()


def test_an_alert_resolved_by_hand_is_sent_with_who_resolved_it(make_app, hook):
    s, wards, dispatcher, clock, bridge, node = station(make_app, alert_webhook_url=hook.url)
    try:
        state(bridge, node, False, clock)
        clock.forward(minutes=6)
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(hook.delivered()) == 1, what="the opened alert")
        alert_id = hook.delivered()[0]["alert"]["id"]
        s.ok("POST", f"/api/v1/alerts/{alert_id}/ack", token=wards["technician"])
        clock.forward(minutes=1)
        dispatcher.evaluate_alerts()  # acknowledging is not notified
        s.ok("POST", f"/api/v1/alerts/{alert_id}/resolve", token=wards["technician"],
             json={"comment": "Đã thay nguồn"})
        dispatcher.evaluate_alerts()
        wait_for(lambda: len(hook.delivered()) == 2, what="the resolved alert")
        resolved = hook.delivered()[1]
        assert resolved["event"] == "resolved"
        assert resolved["alert"]["resolved"]["by"] == "kythuat-lc"
        assert resolved["alert"]["resolved"]["comment"] == "Đã thay nguồn"
        assert resolved["text"].endswith("Người xử lý: kythuat-lc")
        assert [p["event"] for p in hook.delivered()] == ["opened", "resolved"]
    finally:
        dispatcher.notifier.stop()


@pytest.mark.parametrize("setting,value", [
    ("alert_webhook_url", "ftp://hook.example"),
    ("alert_email_to", ["not an address"]),
    ("alert_routes", {"HP-LC": {"email": ["a@b.example"]}}),
    ("alert_routes", {"HP-LC": {"language": "fr"}}),
    ("alert_language", "fr"),
    ("smtp_port", 0),
])
def test_notification_settings_that_cannot_work_stop_the_start_naming_the_key(
        tmp_path, setting, value):
    from server.config import ConfigError, load_settings
    with pytest.raises(ConfigError, match=setting):
        load_settings(tmp_path, {setting: value}, environ={})
