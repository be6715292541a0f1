"""Alert notifications: a webhook (JSON POST) and e-mail (SMTP), sent by a worker thread so the
dispatcher never waits on them.

Who gets what (server.config):
- ``alert_webhook_url`` and ``alert_email_to``: every alert, in ``alert_language`` (else
  ``language``);
- ``alert_routes``: per area code, ``{webhook_url, email_to, language}`` for the alerts of that
  area and every area below it (a ward's technicians get their ward's alerts only).

What is sent: when an alert opens, when it changes (severity or detail class), and when it is
resolved (automatically or by hand); not on every pass. The dispatcher's pass takes the alerts
whose ``revision`` is ahead of their ``notified_revision`` (``take``), marks them notified and
hands the messages to the ``Notifier``'s queue; each message is tried ``1 +
alert_notify_retries`` times, waiting ``alert_notify_backoff_s``, then twice as long, and so on.
A message that fails every try is logged and dropped (the alert itself stays in the database
and the API). A full queue drops the new message with a log line rather than wait.

The webhook's body: ``{"event": "opened"|"changed"|"resolved", "alert": {...as the API...},
"subject", "text", "language"}``; with ``alert_webhook_secret`` set, the header
``X-Loa-Signature: sha256=<HMAC-SHA256 of the body>`` lets the receiver check it came from here.
E-mail: plain text, UTF-8, over SMTP with STARTTLS when ``smtp_starttls`` (verified against the
system's CAs or ``smtp_ca_file``), a login when ``smtp_user`` is set.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import queue
import smtplib
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import alerts
from .config import Settings
from .i18n import t
from .models import Alert, Node

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


class Channel(StrEnum):
    WEBHOOK = "webhook"    # the target is its URL
    EMAIL = "email"        # the target is the addresses, comma-separated


class AlertEvent(StrEnum):
    """What happened to the alert (the webhook body's ``event``, the mail's subject)."""
    OPENED = "opened"
    CHANGED = "changed"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Message:
    """One notification to one recipient."""

    channel: Channel
    target: str
    subject: str
    text: str
    payload: dict[str, Any]


# --- sending -------------------------------------------------------------------------------------

def post_webhook(url: str, payload: dict[str, Any], timeout: float, secret: str = "") -> None:
    """POST the JSON; an answer other than 2xx, or none in time, raises."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "LoaPhuong-alerts/1"}
    if secret:
        digest = hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()
        headers["X-Loa-Signature"] = f"sha256={digest}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - configured
        if not 200 <= answer.status < 300:
            raise OSError(f"webhook answered {answer.status}")


def send_email(settings: Settings, to: list[str], subject: str, text: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.smtp_from, ", ".join(to), subject
    msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid("loaphuong")
    msg.set_content(text, charset="utf-8")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                      timeout=settings.alert_notify_timeout_s) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
            smtp.starttls(context=context)
            smtp.ehlo()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)


class Notifier:
    """A queue and one worker thread that sends what the dispatcher hands it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.Queue[Message | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alert-notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker; a message waiting for its next try is dropped."""
        if self._thread is not None:
            self._stop.set()
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, message: Message) -> bool:
        """Queue a message without waiting; False (and a log line) when the queue is full."""
        try:
            self._queue.put_nowait(message)
            return True
        except queue.Full:
            log.error("alert notification dropped, the queue is full: %s", message.subject)
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._queue.get()
            if message is None:
                return
            self.deliver(message)

    def send(self, message: Message) -> None:
        s = self.settings
        if message.channel == Channel.WEBHOOK:
            post_webhook(message.target, message.payload, s.alert_notify_timeout_s,
                         s.alert_webhook_secret)
        else:
            send_email(s, message.target.split(","), message.subject, message.text)

    def deliver(self, message: Message) -> bool:
        """Try, and try again after a growing wait; True once it went."""
        s = self.settings
        tries = 1 + max(0, s.alert_notify_retries)
        for n in range(tries):
            try:
                self.send(message)
                return True
            except Exception as err:  # noqa: BLE001 - any failure is worth another try
                last = n == tries - 1
                log.log(logging.ERROR if last else logging.WARNING,
                        "alert %s to %s failed (try %d of %d): %s", message.channel,
                        message.target, n + 1, tries, err)
                if last or self._stop.wait(s.alert_notify_backoff_s * 2 ** n):
                    return False
        return False


# --- what to send --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Recipient:
    channel: Channel
    target: str
    language: str


def recipients(settings: Settings, codes: list[str]) -> list[Recipient]:
    """The global recipients and those of the areas ``codes`` (the alert's area and above)."""
    lang = settings.alert_language or settings.language
    out = []
    routes = [(settings.alert_webhook_url, settings.alert_email_to, lang)]
    for code in codes:
        route = settings.alert_routes.get(code)
        if route:
            routes.append((route.get("webhook_url", ""), route.get("email_to", []),
                           route.get("language", lang)))
    for url, to, language in routes:
        if url:
            out.append(Recipient(Channel.WEBHOOK, url, language))
        if to and settings.smtp_host:
            out.append(Recipient(Channel.EMAIL, ",".join(to), language))
    return list(dict.fromkeys(out))


def event_of(alert: Alert) -> AlertEvent:
    if alert.state == alerts.State.RESOLVED:
        return AlertEvent.RESOLVED
    return AlertEvent.OPENED if alert.revision <= 1 else AlertEvent.CHANGED


def message(db: Session, settings: Settings, alert: Alert, node: Node | None,
            to: Recipient) -> Message:
    lang, tz = to.language, alerts.zone(db, alert, settings.timezone)
    body = alerts.alert_json(alert, alerts.usernames(db, [alert]), lang, tz)
    event = event_of(alert)
    node_name = f"{node.name} ({node.id})" if node is not None else (alert.node_id or "-")
    kind, severity = body["kind_text"], t(f"alert.severity.{alert.severity}", lang)
    subject = t(f"alertmail.{event}", lang, severity=severity, kind=kind, node=node_name)
    text = t("alertmail.body", lang, kind=kind, severity=severity,
             state=t(f"alert.state.{alert.state}", lang), node=node_name,
             area=alerts.area_name(db, alert.area_id) or "-", text=body["text"],
             first_seen=alerts._local(body["first_seen"], tz),
             last_seen=alerts._local(body["last_seen"], tz), count=alert.count, id=alert.id,
             url=f"{settings.public_url.rstrip('/')}/api/v1/alerts/{alert.id}")
    if event == AlertEvent.RESOLVED:
        who = body["resolved"]["by"] if body["resolved"] else None
        text += "\n" + (t("alertmail.resolved_by", lang, who=who) if who
                        else t("alertmail.resolved_auto", lang))
    return Message(to.channel, to.target, subject, text,
                   {"event": event, "alert": body, "subject": subject, "text": text,
                    "language": lang})


def take(db: Session, settings: Settings) -> list[Message]:
    """The messages for every alert changed since it was last notified, which is marked
    notified (in the caller's transaction)."""
    out = []
    for alert in db.scalars(select(Alert).where(Alert.revision > Alert.notified_revision)
                            .order_by(Alert.id)):
        alert.notified_revision = alert.revision
        node = db.get(Node, alert.node_id) if alert.node_id else None
        for to in recipients(settings, alerts.area_codes(db, alert.area_id)):
            out.append(message(db, settings, alert, node, to))
    return out
