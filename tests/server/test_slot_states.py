"""A series' occurrence on one node moves scheduled -> delivered -> ready -> an outcome, never
back: the transitions of server.deliveries, on rows alone, and what staff see once the airplay
report has judged the slot."""
from __future__ import annotations

import datetime as dt

import pytest

from device_agent.protocol import PlayResult
from server import deliveries
from server.deliveries import SlotState
from server.models import SlotDelivery

SHA, OTHER = "a" * 64, "b" * 64


def row(version=3, sha=SHA, status=SlotState.SCHEDULED) -> SlotDelivery:
    return SlotDelivery(node_id="loa-1", broadcast_id=1, slot_id="b1-20270101T230000Z",
                        start_at=dt.datetime(2027, 1, 1, 23), sha256=sha, version=version,
                        status=status)


def test_a_slot_is_delivered_once_the_node_applies_the_version_that_first_carried_it():
    slot = row(version=3)
    deliveries.slots_applied([slot], 2)
    assert slot.status == SlotState.SCHEDULED
    deliveries.slots_applied([slot], 3)
    assert slot.status == SlotState.DELIVERED


def test_a_node_that_skipped_versions_catches_up_with_a_later_one():
    slot = row(version=3)
    deliveries.slots_applied([slot], 7)
    assert slot.status == SlotState.DELIVERED


def test_media_ready_makes_only_delivered_slots_airing_that_media_ready():
    waiting, delivered, other = row(version=5), row(), row(sha=OTHER)
    deliveries.slots_applied([delivered, other], 3)
    deliveries.slot_media_ready([waiting, delivered, other], SHA)
    assert (waiting.status, delivered.status, other.status) == (
        SlotState.SCHEDULED, SlotState.READY, SlotState.DELIVERED)


def test_a_media_ready_heard_before_delivery_does_not_count():
    slot = row()
    deliveries.slot_media_ready([slot], SHA)
    deliveries.slots_applied([slot], 3)
    assert slot.status == SlotState.DELIVERED


@pytest.mark.parametrize("result, state", [
    (PlayResult.COMPLETED, SlotState.PLAYED), (PlayResult.PREEMPTED, SlotState.PREEMPTED),
    (PlayResult.STOPPED, SlotState.STOPPED), (PlayResult.FAILED, SlotState.FAILED),
    (PlayResult.SKIPPED, SlotState.SKIPPED)])
def test_the_played_event_gives_the_outcome_from_any_earlier_state(result, state):
    for before in (SlotState.SCHEDULED, SlotState.DELIVERED, SlotState.READY):
        slot = row(status=before)
        deliveries.slot_played(slot, result, "quiet_hours" if result == "skipped" else None)
        assert slot.status == state
    assert slot.reason == ("quiet_hours" if result == "skipped" else None)


def test_a_state_never_moves_backward_and_an_outcome_stands():
    slot = row(status=SlotState.READY)
    deliveries.slots_applied([slot], 9)
    assert slot.status == SlotState.READY
    deliveries.slot_played(slot, PlayResult.COMPLETED, None)
    deliveries.slots_applied([slot], 9)
    deliveries.slot_media_ready([slot], SHA)
    deliveries.slot_played(slot, PlayResult.FAILED, "player_error")
    assert slot.status == SlotState.PLAYED and slot.reason is None
    assert not deliveries.slot_moves(SlotState.READY, SlotState.DELIVERED)
    assert not deliveries.slot_moves(SlotState.DELIVERED, SlotState.DELIVERED)
    assert deliveries.slot_moves(SlotState.SCHEDULED, SlotState.READY)


@pytest.mark.parametrize("stored, status, reason, shown", [
    (None, "pending", None, (SlotState.SCHEDULED, None)),
    ("delivered", "pending", None, (SlotState.DELIVERED, None)),
    ("ready", "pending", None, (SlotState.READY, None)),
    ("ready", "missed", "no_report", (SlotState.MISSED, "no_report")),
    ("scheduled", "missed", "offline", (SlotState.MISSED, "offline")),
    ("played", "aired", None, (SlotState.PLAYED, None)),
    ("played", "partial", None, (SlotState.PLAYED, None)),
    ("played", "partial", "preempted", (SlotState.PREEMPTED, "preempted")),
    ("stopped", "partial", "stopped", (SlotState.STOPPED, "stopped")),
    ("skipped", "missed", "quiet_hours", (SlotState.SKIPPED, "quiet_hours")),
    ("skipped", "missed", "late", (SlotState.SKIPPED, "late")),
    ("failed", "missed", "media_missing", (SlotState.FAILED, "media_missing")),
    ("failed", "missed", "failed", (SlotState.FAILED, "failed")),
])
def test_staff_see_the_reports_judgement_once_it_has_one_else_what_is_stored(
        stored, status, reason, shown):
    assert deliveries.slot_state(stored, status, reason) == shown


def test_counts_name_every_state():
    counts = deliveries.slot_counts(["ready", "ready", "played"])
    assert counts == {**dict.fromkeys((s.value for s in SlotState), 0), "ready": 2, "played": 1}


def test_every_slot_state_reads_in_both_languages():
    from server.i18n import CATALOGUE
    for state in SlotState:
        entry = CATALOGUE[f"slot.{state}"]
        assert set(entry) == {"vi", "en"} and all(entry.values()), state


def test_every_result_a_node_may_report_gives_a_slot_outcome():
    assert set(deliveries.PLAYED_STATE) == set(PlayResult)
    assert all(state in deliveries.SLOT_OUTCOMES for state in deliveries.PLAYED_STATE.values())
