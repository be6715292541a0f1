"""Telemetry retention (server/retention.py) through the dispatcher's pass at an injected clock:
completed hours folded into hourly aggregates (count, min/avg/max, amplifier share) across hour
boundaries and idempotently, raw rows kept telemetry_raw_days and aggregates
telemetry_hourly_days, deleted in bounded transactions, play logs and events never touched; a
setting that would prune the evidence refused at start; and the node's telemetry API answering
raw or hourly."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import event, func, select

from server import retention
from server.config import ConfigError, load_settings
from server.models import Event, PlayLog, Telemetry, TelemetryHourly, from_ms, now_ms
from server.times import iso
from tests import database
from tests.server.helpers import Clock, bridge_of, make_dispatcher, make_two_wards, node_ids

DATABASE_URL = database.POSTGRES_URL  # DATABASE_URL, or LOA_TEST_DATABASE_URL

HOUR = retention.HOUR_MS
DAY = retention.DAY_MS
T0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR  # an hour's start, November 2026


def report(bridge, node_id: str, ts: int, **fields) -> None:
    """A telemetry message as the node's agent publishes it, through the bridge."""
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/telemetry",
                  json.dumps({"v": 1, "ts": ts, **fields}).encode())


def add_raw(s, node_id: str, stamps: list[int]) -> None:
    with s.app.extensions["db_sessions"]() as db:
        db.add_all(Telemetry(node_id=node_id, ts_ms=ts, payload={"v": 1, "ts": ts,
                                                                  "cpu_temp_c": 40.0})
                   for ts in stamps)
        db.commit()


def hourly_rows(s) -> dict[tuple[str, int], TelemetryHourly]:
    with s.app.extensions["db_sessions"]() as db:
        return {(r.node_id, r.hour_ms): r for r in db.scalars(select(TelemetryHourly))}


def raw_stamps(s) -> list[int]:
    with s.app.extensions["db_sessions"]() as db:
        return sorted(db.scalars(select(Telemetry.ts_ms)))


def at(ms: int) -> Clock:
    clock = Clock()
    clock.ms = ms
    return clock


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite), "postgresql"])
def app_db(request, make_app, monkeypatch):
    """The server on SQLite, and on PostgreSQL too when DATABASE_URL points at one (a schema
    of its own, dropped afterwards): the aggregates and deletes are portable SQL."""
    if request.param == "sqlite":
        yield make_app()
        return
    if not DATABASE_URL.startswith("postgresql"):
        pytest.skip("DATABASE_URL does not point at PostgreSQL")
    url = request.getfixturevalue("pg_url")
    monkeypatch.setenv("LOA_DATABASE_URL", url)  # server.cli too (the wards' users)
    s = make_app(database_url=url)
    yield s
    s.app.extensions["db_sessions"].kw["bind"].dispose()  # before its schema is dropped


@pytest.fixture
def fleet(app_db):
    """Two wards with a node each, and the first ward's technician (tests/server/helpers.py)."""
    s = app_db
    wards = make_two_wards(s)
    return s, node_ids(s, wards["mine"]["id"])[0], node_ids(s, wards["other"]["id"])[0], wards


def test_each_completed_hour_is_aggregated_per_node_with_count_min_avg_max(fleet):
    s, a, b, _wards = fleet
    bridge = bridge_of(s)
    report(bridge, a, T0 - 1, cpu_temp_c=99.0)  # the hour before
    report(bridge, a, T0 + 600_000, cpu_temp_c=40.0, volume=80, load1=0.5, mem_used_pct=30.0,
           disk_free_mb=900, clock_offset_ms=-4, amp_on=True,
           net={"type": "4g", "signal_dbm": -90})
    report(bridge, a, T0 + HOUR - 1, cpu_temp_c=50.0, volume=60, load1=1.5, mem_used_pct=50.0,
           disk_free_mb=800, clock_offset_ms=10, amp_on=False,
           net={"type": "4g", "signal_dbm": -100})
    report(bridge, a, T0 + 1200_000, cpu_temp_c=45.0, amp_on=True)  # no volume, no net
    report(bridge, a, T0 + HOUR, cpu_temp_c=70.0)  # the next hour's first instant
    report(bridge, b, T0 + 60_000, amp_on=None)
    report(bridge, a, T0 + 2 * HOUR + 60_000, cpu_temp_c=20.0)  # an hour not over yet

    make_dispatcher(s, at(T0 + 2 * HOUR + 180_000)).retain_telemetry()

    rows = hourly_rows(s)
    assert set(rows) == {(a, T0 - HOUR), (a, T0), (b, T0), (a, T0 + HOUR)}
    hour = rows[(a, T0)]
    assert hour.count == 3
    assert (hour.cpu_temp_c_min, hour.cpu_temp_c_avg, hour.cpu_temp_c_max) == (40, 45, 50)
    assert (hour.volume_min, hour.volume_avg, hour.volume_max) == (60, 70, 80)
    assert (hour.signal_dbm_min, hour.signal_dbm_avg, hour.signal_dbm_max) == (-100, -95, -90)
    assert (hour.disk_free_mb_min, hour.disk_free_mb_max) == (800, 900)
    assert (hour.clock_offset_ms_min, hour.clock_offset_ms_avg) == (-4, 3)
    assert (hour.mem_used_pct_avg, hour.load1_min, hour.load1_max) == (40, 0.5, 1.5)
    assert hour.amp_on_share == pytest.approx(2 / 3)
    assert rows[(a, T0 - HOUR)].cpu_temp_c_max == 99
    assert rows[(a, T0 + HOUR)].count == 1 and rows[(a, T0 + HOUR)].cpu_temp_c_avg == 70
    quiet = rows[(b, T0)]
    assert quiet.count == 1 and quiet.cpu_temp_c_avg is None and quiet.amp_on_share is None


def test_aggregating_an_hour_again_gives_the_same_rows(fleet):
    s, a, b, _wards = fleet
    bridge = bridge_of(s)
    for i, temp in enumerate((41.0, 43.0, 48.0)):
        report(bridge, a, T0 + i * 1000, cpu_temp_c=temp, amp_on=i == 0)
        report(bridge, b, T0 + i * 1000, cpu_temp_c=temp + 10)
    dispatcher = make_dispatcher(s, at(T0 + 2 * HOUR))
    dispatcher.retain_telemetry()
    first = {k: (r.count, r.cpu_temp_c_min, r.cpu_temp_c_avg, r.cpu_temp_c_max, r.amp_on_share)
             for k, r in hourly_rows(s).items()}
    sessions = s.app.extensions["db_sessions"]
    with sessions() as db:
        assert retention.aggregate_hour(db, T0) == 2
        db.commit()
    dispatcher.retain_telemetry()
    again = {k: (r.count, r.cpu_temp_c_min, r.cpu_temp_c_avg, r.cpu_temp_c_max, r.amp_on_share)
             for k, r in hourly_rows(s).items()}
    assert again == first
    assert first[(a, T0)] == pytest.approx((3, 41, 44, 48, 1 / 3))


def test_prune_keeps_seven_days_raw_and_a_year_of_hours(fleet):
    s, a, _b, _wards = fleet
    now = T0 + 30 * 60_000
    add_raw(s, a, [now - 8 * DAY, now - 7 * DAY - 1, now - 7 * DAY + 1, now - HOUR])
    with s.app.extensions["db_sessions"]() as db:
        db.add_all(TelemetryHourly(node_id=a, hour_ms=h, count=1)
                   for h in (T0 - 366 * DAY, T0 - 364 * DAY))
        db.commit()

    pruned = make_dispatcher(s, at(now)).retain_telemetry()

    assert raw_stamps(s) == [now - 7 * DAY + 1, now - HOUR]
    assert (pruned.raw, pruned.hourly) == (2, 1)
    hours = sorted(h for _n, h in hourly_rows(s))
    # the year's oldest aggregate went; the raw rows pruned were aggregated first
    assert hours[0] == T0 - 364 * DAY
    assert retention.hour_of(now - 8 * DAY) in hours and T0 - HOUR in hours


def test_raw_rows_of_an_hour_not_aggregated_yet_are_not_pruned(fleet):
    s, a, _b, _wards = fleet
    add_raw(s, a, [T0 - 30 * DAY, T0 - 29 * DAY])
    # the dispatcher was down for a month: prune alone (before any aggregation) keeps them
    retention.prune(s.app.extensions["db_sessions"], s.settings, T0)
    assert raw_stamps(s) == [T0 - 30 * DAY, T0 - 29 * DAY]
    make_dispatcher(s, at(T0)).retain_telemetry()  # aggregated first, then pruned
    assert raw_stamps(s) == []
    assert {h for _n, h in hourly_rows(s)} == {T0 - 30 * DAY, T0 - 29 * DAY}


def test_a_large_prune_deletes_in_transactions_of_at_most_the_batch(make_app):
    s = make_app(telemetry_prune_batch=100)  # SQLite: the statement hooks are the driver's
    cluster = s.area("Cụm", "P-1", "cluster", s.area("Phường", "P", "ward")["id"])
    a = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa"})["id"]
    add_raw(s, a, [T0 - 9 * DAY + i * 1000 for i in range(350)])
    engine = s.app.extensions["db_sessions"].kw["bind"]
    deleted: list[int] = []
    commits: list[int] = []

    def on_execute(_conn, _cursor, statement, _params, _context, _many):
        if statement.lstrip().upper().startswith("DELETE FROM TELEMETRY "):
            deleted.append(_cursor.rowcount)

    event.listen(engine, "after_cursor_execute", on_execute)
    event.listen(engine, "commit", lambda _conn: commits.append(len(deleted)))
    try:
        retention.prune(s.app.extensions["db_sessions"], s.settings, T0)
        with s.app.extensions["db_sessions"]() as db:
            db.add(TelemetryHourly(node_id=a, hour_ms=T0 - 8 * DAY, count=1))
            db.commit()
        retention.prune(s.app.extensions["db_sessions"], s.settings, T0)
    finally:
        event.remove(engine, "after_cursor_execute", on_execute)
    assert raw_stamps(s) == []
    assert sum(deleted) == 350 and max(deleted) <= 100
    # every batch was committed before the next began
    assert all(commits.count(n) >= 1 for n in range(1, len(deleted) + 1))


def test_play_logs_and_events_are_never_pruned(fleet):
    s, a, _b, _wards = fleet
    old = T0 - 3 * 365 * DAY
    with s.app.extensions["db_sessions"]() as db:
        db.add(PlayLog(node_id=a, item_id="b1", started_at_ms=old, result="completed"))
        db.add(Event(node_id=a, event_id="e-old", type="alarm", ts_ms=old,
                     payload={"type": "alarm", "code": "overheat"}))
        db.commit()
    add_raw(s, a, [old])
    make_dispatcher(s, at(T0)).retain_telemetry()
    with s.app.extensions["db_sessions"]() as db:
        assert db.scalar(select(func.count(PlayLog.id))) == 1
        assert db.scalar(select(func.count(Event.id))) == 1
        assert db.scalar(select(func.count(Telemetry.id))) == 0


@pytest.mark.parametrize("values,environ", [
    ({"playlog_retention_days": 90}, {}),
    ({"events_days": 30}, {}),
    ({}, {"LOA_EVENT_PRUNE_DAYS": "30"}),
])
def test_a_setting_that_would_prune_play_logs_or_events_is_refused(tmp_path, values, environ):
    with pytest.raises(ConfigError, match="kept as evidence and never pruned"):
        load_settings(tmp_path, values, environ=environ)


def test_hourly_retention_shorter_than_raw_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="telemetry_raw_days"):
        load_settings(tmp_path, {"telemetry_raw_days": 30, "telemetry_hourly_days": 7},
                      environ={})
    s = load_settings(tmp_path, {"telemetry_raw_days": 3, "telemetry_hourly_days": 30},
                      environ={})
    assert (s.telemetry_raw_days, s.telemetry_hourly_days) == (3, 30)


def test_the_telemetry_api_answers_raw_recently_and_hourly_beyond(fleet):
    s, a, b, wards = fleet
    now = now_ms()
    bridge = bridge_of(s)
    report(bridge, a, now - 2 * HOUR, cpu_temp_c=41.5, amp_on=True,
           net={"type": "4g", "signal_dbm": -95})
    report(bridge, a, now - HOUR, cpu_temp_c=42.5)
    month_ago = retention.hour_of(now - 30 * DAY)
    with s.app.extensions["db_sessions"]() as db:
        db.add(TelemetryHourly(node_id=a, hour_ms=month_ago, count=120, cpu_temp_c_min=38.0,
                               cpu_temp_c_avg=40.0, cpu_temp_c_max=44.0, amp_on_share=0.25))
        db.commit()
    path = f"/api/v1/nodes/{a}/telemetry"

    recent = s.ok("GET", path, params={"from": iso(from_ms(now - 3 * HOUR))})
    assert recent["resolution"] == "raw"
    assert [(p["ts"], p["cpu_temp_c"]) for p in recent["points"]] == [
        (now - 2 * HOUR, 41.5), (now - HOUR, 42.5)]
    assert recent["points"][0]["signal_dbm"] == -95 and recent["points"][0]["amp_on"] is True

    older = s.ok("GET", path, params={"from": iso(from_ms(now - 31 * DAY)),
                                      "to": iso(from_ms(now - 29 * DAY))})
    assert older["resolution"] == "hour"
    assert older["points"] == [{**older["points"][0], "ts": month_ago, "count": 120,
                                "amp_on_share": 0.25}]
    assert older["points"][0]["cpu_temp_c"] == {"min": 38.0, "avg": 40.0, "max": 44.0}

    asked = s.ok("GET", path, params={"from": iso(from_ms(now - 3 * HOUR)),
                                      "resolution": "hour"})
    assert asked["resolution"] == "hour" and asked["points"] == []

    bad = s.call("GET", path, params={"resolution": "minute"})
    assert bad.status_code == 400 and "resolution" in bad.json()["error"]["message"]
    # scoped like the node: the first ward's technician does not see the other ward's node
    assert s.call("GET", f"/api/v1/nodes/{b}/telemetry", token=wards["technician"]).status_code \
        == 404
    assert s.call("GET", path, token=wards["technician"]).status_code == 200
