"""The airplay report as a pure function: planned items, plays and acks in, a status and a reason
for every item and the totals per area out (server/reports.py)."""
import datetime as dt

import pytest

from server.reports import (Ack, AirStatus, MissReason, Play, PlannedItem, Presence, airplay,
                            reason_for, report_csv)

T0 = dt.datetime(2026, 12, 1, 23, 0, tzinfo=dt.UTC)  # 06:00 in Hà Nội
MEDIA_MS = 30_000
GRACE = dt.timedelta(minutes=5)
AFTER = T0 + dt.timedelta(hours=1)  # well past every item's end and the grace


def ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def slot(node="n1", area=7, repeat=1, sid="b1-20261201T230000Z") -> PlannedItem:
    return PlannedItem(node_id=node, area_id=area, broadcast_id=1, scheduled_at=T0,
                       end_at=T0 + dt.timedelta(milliseconds=MEDIA_MS * repeat),
                       media_ms=MEDIA_MS, repeat=repeat, slot_id=sid)


def one_off(node="n1", area=7, cmd="c1", server_reason=None) -> PlannedItem:
    return PlannedItem(node_id=node, area_id=area, broadcast_id=2, scheduled_at=T0,
                       end_at=T0 + dt.timedelta(milliseconds=MEDIA_MS), media_ms=MEDIA_MS,
                       cmd_id=cmd, server_reason=server_reason)


def played(result="completed", length=MEDIA_MS, node="n1", cmd=None,
           sid="b1-20261201T230000Z", reason=None, ran=True, offset=0) -> Play:
    start = ms(T0) + offset
    return Play(node_id=node, result=result, cmd_id=cmd, slot_id=None if cmd else sid,
                started_at_ms=start, ended_at_ms=start + length if ran else None,
                reason=reason)


def one(item, plays=(), acks=(), now=AFTER, presence=None):
    report = airplay([item], plays, acks, now=now, grace=GRACE, presence=presence)
    (line,) = report.lines
    return line.status, line.reason


def test_a_slot_played_to_its_end_aired():
    assert one(slot(), [played()]) == (AirStatus.AIRED, None)


def test_a_one_off_played_to_its_end_aired_matched_by_command_id():
    assert one(one_off(), [played(cmd="c1")], [Ack("n1", "c1", "finished")]) == \
        (AirStatus.AIRED, None)


def test_plays_of_other_nodes_commands_or_slots_do_not_count():
    assert one(slot(), [played(node="n2"), played(sid="b1-20261202T230000Z")])[1] == \
        MissReason.NO_REPORT
    assert one(one_off(), [played(cmd="c2"), played(node="n2", cmd="c1")])[1] == \
        MissReason.NO_REPORT


@pytest.mark.parametrize("result", ["preempted", "stopped"])
def test_a_play_cut_short_is_partial_with_why(result):
    line = airplay([slot()], [played(result, length=5000)], [], now=AFTER, grace=GRACE).lines[0]
    assert (line.status, line.reason) == (AirStatus.PARTIAL, MissReason(result))
    assert line.started_at == T0 and line.ended_at == T0 + dt.timedelta(seconds=5)


def test_a_completed_play_shorter_than_its_media_is_partial():
    assert one(slot(), [played(length=MEDIA_MS // 2)]) == (AirStatus.PARTIAL, None)
    assert one(slot(), [played(length=MEDIA_MS - 500)]) == (AirStatus.AIRED, None)  # jitter


def test_a_play_is_judged_against_the_media_it_played():
    """A slot that aired an older, shorter revision of its programme (or an occurrence's own
    bulletin) to its end aired; cut short of that media it is partial."""
    older = MEDIA_MS // 2
    full = Play("n1", "completed", slot_id="b1-20261201T230000Z", started_at_ms=ms(T0),
                ended_at_ms=ms(T0) + older, media_ms=older)
    assert one(slot(), [full]) == (AirStatus.AIRED, None)
    cut = Play("n1", "completed", slot_id="b1-20261201T230000Z", started_at_ms=ms(T0),
               ended_at_ms=ms(T0) + older // 2, media_ms=older)
    assert one(slot(), [cut]) == (AirStatus.PARTIAL, None)


def test_repetitions_all_reported_aired_some_cut_partial():
    two = [played(), played(offset=MEDIA_MS)]
    assert one(slot(repeat=2), two) == (AirStatus.AIRED, None)
    assert one(slot(repeat=2), two[:1]) == (AirStatus.PARTIAL, None)
    assert one(one_off(), [played(cmd="c1")], [Ack("n1", "c1", "preempted")]) == \
        (AirStatus.PARTIAL, MissReason.PREEMPTED)


@pytest.mark.parametrize("result,reason,expected", [
    ("skipped", "quiet_hours", MissReason.QUIET_HOURS),
    ("skipped", "late", MissReason.LATE),
    ("skipped", "expired", MissReason.LATE),
    ("skipped", "clock_unsynced", MissReason.CLOCK_UNSYNCED),
    ("failed", "media_unavailable", MissReason.MEDIA_MISSING),
    ("failed", "media_mismatch", MissReason.FAILED),
    ("failed", "sha256_mismatch", MissReason.FAILED),
    ("failed", "player_error", MissReason.FAILED),
    ("failed", None, MissReason.FAILED),
    ("preempted", None, MissReason.PREEMPTED),
    ("stopped", None, MissReason.STOPPED),
])
def test_a_play_that_never_ran_is_missed_with_the_nodes_reason(result, reason, expected):
    assert one(slot(), [played(result, reason=reason, ran=False)]) == (AirStatus.MISSED, expected)


@pytest.mark.parametrize("status,reason,expected", [
    ("rejected", "expired", MissReason.LATE),
    ("rejected", "bad_signature", MissReason.FAILED),
    ("skipped", "quiet_hours", MissReason.QUIET_HOURS),
    ("failed", "media_unavailable", MissReason.MEDIA_MISSING),
    ("preempted", None, MissReason.PREEMPTED),
    ("stopped", None, MissReason.STOPPED),
])
def test_a_command_ended_by_an_ack_without_a_play_is_missed(status, reason, expected):
    assert one(one_off(), acks=[Ack("n1", "c1", status, reason)], now=T0) == \
        (AirStatus.MISSED, expected)


@pytest.mark.parametrize("server_reason,expected", [
    ("cancelled", MissReason.CANCELLED), ("late", MissReason.LATE),
    ("expired", MissReason.LATE), ("media_missing", MissReason.MEDIA_MISSING),
    ("approval_revoked", MissReason.FAILED), ("dispatch_failed", MissReason.FAILED)])
def test_a_delivery_the_server_never_sent_is_missed_with_its_reason(server_reason, expected):
    item = one_off(cmd=None, server_reason=server_reason)
    assert one(item, now=T0) == (AirStatus.MISSED, expected)


def test_no_report_is_pending_until_the_end_and_the_grace_pass_then_missed():
    end = T0 + dt.timedelta(milliseconds=MEDIA_MS)
    assert one(slot(), now=T0 - dt.timedelta(hours=1)) == (AirStatus.PENDING, None)
    assert one(slot(), now=end + GRACE - dt.timedelta(seconds=1)) == (AirStatus.PENDING, None)
    assert one(slot(), now=end + GRACE) == (AirStatus.MISSED, MissReason.NO_REPORT)
    # acks are what the server heard, not proof of play: received and started are no report
    assert one(one_off(), acks=[Ack("n1", "c1", "started")]) == \
        (AirStatus.MISSED, MissReason.NO_REPORT)
    # what was sent but not reported is never aired
    assert one(one_off(), acks=[Ack("n1", "c1", "sent")]) == \
        (AirStatus.MISSED, MissReason.NO_REPORT)


def test_a_command_a_node_never_got_while_unheard_from_since_before_it_is_offline():
    gone = {"n1": Presence(online=False, last_seen=T0 - dt.timedelta(minutes=10))}
    assert one(one_off(), [], [Ack("n1", "c1", "sent")], presence=gone) == \
        (AirStatus.MISSED, MissReason.OFFLINE)
    never = {"n1": Presence(online=False, last_seen=None)}
    assert one(one_off(), presence=never) == (AirStatus.MISSED, MissReason.OFFLINE)
    # it had the command: being offline is no reason (it plays without a connection)
    assert one(one_off(), [], [Ack("n1", "c1", "received")], presence=gone)[1] == \
        MissReason.NO_REPORT
    # heard from after the item was due, or online now: no report
    back = {"n1": Presence(online=False, last_seen=T0 + dt.timedelta(minutes=1))}
    assert one(one_off(), presence=back)[1] == MissReason.NO_REPORT
    assert one(one_off(), presence={"n1": Presence(True, None)})[1] == MissReason.NO_REPORT
    # a series slot is in the node's desired state, played from its cache offline too
    assert one(slot(), presence=gone)[1] == MissReason.NO_REPORT


def test_a_late_report_turns_a_miss_into_aired():
    assert one(slot(), [played()], now=AFTER + dt.timedelta(days=1)) == (AirStatus.AIRED, None)


def test_totals_per_area_and_overall():
    items = [slot("n1", 7), slot("n2", 7), slot("n3", 8), one_off("n3", 8, "c3")]
    plays = [played(node="n1"), played("preempted", length=1000, node="n2"),
             played("skipped", node="n3", cmd="c3", reason="quiet_hours", ran=False)]
    report = airplay(items, plays, [], now=AFTER, grace=GRACE)
    assert report.by_area == {
        7: {"planned": 2, "aired": 1, "partial": 1, "missed": 0, "pending": 0},
        8: {"planned": 2, "aired": 0, "partial": 0, "missed": 2, "pending": 0}}
    assert report.total == {"planned": 4, "aired": 1, "partial": 1, "missed": 2, "pending": 0}
    # in time order, then by node and broadcast: the slot (broadcast 1) before the one-off
    assert [(ln.item.node_id, ln.reason) for ln in report.lines if ln.status == "missed"] == [
        ("n3", MissReason.NO_REPORT), ("n3", MissReason.QUIET_HOURS)]


def test_every_status_and_reason_is_reachable_and_named_on_the_wire():
    assert {s.value for s in AirStatus} == {"aired", "partial", "missed", "pending"}
    assert {r.value for r in MissReason} == {
        "offline", "media_missing", "preempted", "stopped", "cancelled", "failed",
        "quiet_hours", "late", "clock_unsynced", "no_report"}
    assert reason_for("cancelled", None) == MissReason.CANCELLED


def test_csv_has_one_row_per_item_and_no_totals():
    report = airplay([slot(), one_off()], [played()], [], now=AFTER, grace=GRACE)
    rows = report_csv(report).splitlines()
    assert rows[0] == ("node_id,area_id,broadcast_id,slot_id,cmd_id,scheduled_at,"
                       "planned_end_at,started_at,ended_at,status,reason")
    assert len(rows) == 3
    assert rows[1].endswith(",aired,") or rows[2].endswith(",aired,")
    assert any(r.endswith(",missed,no_report") for r in rows[1:])


def test_every_status_and_reason_reads_in_both_languages():
    from server.i18n import CATALOGUE
    for key in [f"airstatus.{s}" for s in AirStatus] + [f"airreason.{r}" for r in MissReason]:
        assert set(CATALOGUE[key]) == {"vi", "en"} and all(CATALOGUE[key].values()), key
