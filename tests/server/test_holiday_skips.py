"""Lunar holidays skipped by a series (issue 8): a series with skip_holidays has no slot on the
holiday's days (Tết: the days tet_days says around mùng 1) in the area's schedule, and slots the
days around; an unknown holiday is a 400 naming it; skipping holidays needs a recurrence."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.lunar import LunarDate, to_solar

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone
TET_2027 = dt.date(2027, 2, 6)


@pytest.fixture
def ward(app_only):
    s = app_only
    ward = s.area("Phường Lê Chân", "LC", "ward")
    cluster = s.area("Cụm 1", "LC-1", "cluster", ward["id"])
    s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa 1"})
    return {"s": s, "ward": ward, "bulletin": s.approved_bulletin()}


def at6(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(6), TZ)


def create(w, **extra):
    start = at6(dt.datetime.now(TZ).date() + dt.timedelta(days=1))
    return w["s"].call("POST", "/api/v1/broadcasts", json={
        "bulletin_id": w["bulletin"]["id"], "targets": {"areas": [w["ward"]["id"]]},
        "start_at": start.isoformat(), **extra})


def listed_days(w, first: dt.date, last: dt.date) -> list[dt.date]:
    got = w["s"].ok("GET", f"/api/v1/areas/{w['ward']['id']}/schedule", params={
        "from": at6(first).replace(hour=0).isoformat(),
        "to": at6(last + dt.timedelta(days=1)).replace(hour=0).isoformat()})
    return [dt.datetime.strptime(x["start_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            .astimezone(TZ).date() for x in got["slots"]]


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def test_tet_2027_is_the_sixth_of_february():
    assert to_solar(LunarDate(2027, 1, 1)) == TET_2027


def test_a_daily_series_skipping_tet_has_no_slot_on_its_days(ward):
    r = create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", skip_holidays=["tet"])
    assert r.status_code == 201, r.text
    assert r.json()["skip_holidays"] == ["tet"] and r.json()["tet_days"] is None
    # the default span: the last day of the old year through mùng 3
    first, last = TET_2027 - dt.timedelta(days=4), TET_2027 + dt.timedelta(days=4)
    skipped = days(TET_2027 - dt.timedelta(days=1), TET_2027 + dt.timedelta(days=2))
    assert listed_days(ward, first, last) == [d for d in days(first, last) if d not in skipped]
    assert TET_2027 - dt.timedelta(days=2) in listed_days(ward, first, last)


def test_tet_days_set_the_span(ward):
    r = create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", skip_holidays=["tet"],
               tet_days={"before": 0, "after": 0})
    assert r.status_code == 201, r.text
    assert r.json()["tet_days"] == {"before": 0, "after": 0}
    first, last = TET_2027 - dt.timedelta(days=2), TET_2027 + dt.timedelta(days=2)
    assert listed_days(ward, first, last) == [d for d in days(first, last) if d != TET_2027]


def test_a_series_without_skipped_holidays_plays_through_tet(ward):
    assert create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0").json()["skip_holidays"] == []
    first, last = TET_2027 - dt.timedelta(days=2), TET_2027 + dt.timedelta(days=2)
    assert listed_days(ward, first, last) == days(first, last)


def test_an_edit_adds_skipped_holidays(ward):
    bc = create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0").json()
    new = ward["s"].ok("PATCH", f"/api/v1/broadcasts/{bc['id']}",
                       json={"skip_holidays": ["tet"], "tet_days": {"before": 0, "after": 1}})
    assert new["skip_holidays"] == ["tet"] and new["tet_days"] == {"before": 0, "after": 1}
    first, last = TET_2027 - dt.timedelta(days=1), TET_2027 + dt.timedelta(days=2)
    assert listed_days(ward, first, last) == [first, last]


def test_an_unknown_holiday_is_a_400_naming_it(ward):
    r = create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
               skip_holidays=["tet", "halloween"])
    assert r.status_code == 400, r.text
    assert "halloween" in r.text


@pytest.mark.parametrize("extra", [{"skip_holidays": ["tet"]},
                                   {"tet_days": {"before": 1, "after": 2}}])
def test_skipping_holidays_needs_a_recurrence(ward, extra):
    r = create(ward, **extra)
    assert r.status_code == 400, r.text
    assert next(iter(extra)) in r.text


def test_tet_days_are_bounded(ward):
    r = create(ward, recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", skip_holidays=["tet"],
               tet_days={"before": 11, "after": 0})
    assert r.status_code == 400, r.text
