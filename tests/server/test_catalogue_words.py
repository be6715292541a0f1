"""The system's words (statuses, reasons, roles, kinds) that pages and messages show read in
both languages, each from its vocabulary's one declaration; a word no catalogue entry holds
(another maker's node's reason) is shown as it is."""
from __future__ import annotations

from enum import StrEnum

import pytest
from flask import Flask

from device_agent.schemas import AlarmCode, NodeReason, RejectReason
from device_agent.telemetry import MM_REGISTRATIONS, MM_STATES, REGISTERED
from schedules.recurrence import WEEKDAYS, Freq
from server import audit
from server.auth import Role
from server.bodies import AreaKind, Category
from server.broadcasts import BroadcastStatus
from server.bulletins import BulletinStatus, BulletinStep
from server.deliveries import HoldReason, UnsentReason
from server.errors import ApiError, ErrorCode
from server.i18n import CATALOGUE, Word, word
from server.releases import RolloutStatus

# each vocabulary and the prefix of its catalogue entries (server.i18n.word)
VOCABULARIES: list[tuple[str, type[StrEnum] | tuple[str, ...]]] = [
    ("status", BulletinStatus), ("verb", BulletinStep), ("bcstate", BroadcastStatus),
    ("bcreason", HoldReason), ("unsent", UnsentReason), ("rejectreason", RejectReason),
    ("nodereason", NodeReason), ("rolloutstatus", RolloutStatus), ("role", Role),
    ("area.kind", AreaKind), ("cat", Category), ("alarmcode", AlarmCode),
    ("mmstate", MM_STATES), ("mmreg", MM_REGISTRATIONS), ("audit.action", audit.Action),
    ("audit.thing", audit.Target), ("audit.thing", tuple(audit.AUDITED)),
    # a repeating rule's frequency (once and every n) and weekdays, as the schedule says them
    ("rule", Freq), ("rule", tuple(f"{f}_n" for f in Freq)), ("rule", WEEKDAYS)]


@pytest.mark.parametrize(("kind", "words"), VOCABULARIES,
                         ids=[f"{k}-{getattr(w, '__name__', 'list')}" for k, w in VOCABULARIES])
def test_every_word_of_a_vocabulary_reads_in_both_languages(kind, words):
    for w in words:
        entry = CATALOGUE.get(f"{kind}.{w}")
        assert entry is not None and set(entry) == {"vi", "en"} and all(entry.values()), w
        assert word(kind, w, "vi") == entry["vi"] and word(kind, w, "en") == entry["en"]


def test_the_registrations_that_carry_data_are_among_those_the_catalogue_says():
    assert set(MM_REGISTRATIONS) >= REGISTERED


def test_a_word_the_catalogue_does_not_hold_is_shown_as_it_is():
    assert word("nodereason", "relay_stuck", "vi") == "relay_stuck"


def test_an_errors_words_are_said_in_the_language_it_is_read_in():
    app = Flask(__name__)
    err = ApiError(ErrorCode.CANNOT_CANCEL, "err.cannot_cancel",
                   status=Word("bcstate", BroadcastStatus.SKIPPED))
    with app.test_request_context("/api/v1/broadcasts/1?lang=vi"):
        assert err.message() == 'Không thể huỷ lượt phát đang ở trạng thái "bị bỏ qua".'
    with app.test_request_context("/api/v1/broadcasts/1?lang=en"):
        assert err.message() == "Cannot cancel a broadcast that is skipped."
