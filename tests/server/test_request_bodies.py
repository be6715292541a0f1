"""The request models (server/bodies.py) read JSON as the API always has, and parse() gives the
API's error codes and catalogue messages for the first problem. No app, broker or speech."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from server import bodies as B
from server.errors import ApiError


@pytest.fixture(autouse=True)
def _english():
    app = Flask(__name__)
    with app.test_request_context("/?lang=en"):
        yield


def _error(model, data):
    with pytest.raises(ApiError) as err:
        B.parse(model, data)
    return err.value.status, err.value.code, err.value.message()


def test_whole_floats_are_integers_and_bools_are_never_numbers():
    body = B.parse(B.BroadcastCreate, {"bulletin_id": 1.0, "priority": 5.0, "volume": 40.0,
                                       "targets": {"areas": [2.0]}})
    assert (body.bulletin_id, body.priority, body.volume, body.targets.areas) == (1, 5, 40, [2])
    assert isinstance(body.bulletin_id, int) and isinstance(body.targets.areas[0], int)
    assert B.parse(B.CommandCreate, {"type": "set_volume", "body": {"volume": 40.0}}).body == \
        {"volume": 40}
    status, code, message = _error(B.BroadcastCreate, {"bulletin_id": True, "targets": {}})
    assert (status, code) == (400, "invalid") and "bulletin_id" in message and "bool" in message


def test_null_is_a_field_not_given_and_a_missing_field_is_named():
    body = B.parse(B.NodeCreate, {"cluster_id": 3, "name": " Loa ", "lat": None, "id": None})
    assert (body.name, body.lat, body.id) == ("Loa", None, None)
    assert _error(B.NodeCreate, {"name": "Loa"})[1] == "missing_field"
    assert _error(B.AreaCreate, {"name": "   ", "code": "X", "kind": "ward"})[1:] == (
        "missing_field", "Missing required field: name.")
    assert _error(B.BulletinUpdate, {"title": None})[1] == "missing_field"
    assert _error(B.BroadcastCreate, {"bulletin_id": 1, "targets": {"areas": [1]},
                                      "priority": None})[1] == "invalid"


@pytest.mark.parametrize("model,data,message", [
    (B.BroadcastCreate, {"bulletin_id": 1, "targets": {"areas": [1]}, "volume": 150},
     "Invalid field volume: 0-100."),
    (B.BroadcastCreate, {"bulletin_id": 1, "targets": {"areas": [0]}},
     "Invalid field targets.areas: list of area ids."),
    (B.NodeCreate, {"cluster_id": 3, "name": "L", "lat": 10**400},
     "Invalid field lat: number out of range."),
    (B.NodeCreate, {"cluster_id": 3, "name": "L", "id": "Bad Id!"},
     "Invalid field id: [a-z0-9][a-z0-9-]{1,62}."),
    (B.AreaCreate, {"name": "X" * 201, "code": "X", "kind": "ward"},
     "Invalid field name: longer than 200."),
    (B.UserWrite, {"zeta": 1, "alpha": 2, "role": "chief"}, "Invalid field alpha: unknown field."),
    (B.LexiconEntryCreate, {"term": "a\tb", "spoken": "x"}, "Invalid field term: one line."),
])
def test_the_first_problem_reads_as_it_always_has(model, data, message):
    assert _error(model, data)[2] == message


def test_no_targets_keeps_its_own_code_and_any_empty_value_is_none():
    empty: object
    for empty in (None, [], False, 0, "", {}):
        assert _error(B.BroadcastCreate, {"bulletin_id": 1, "targets": {"areas": empty}})[1] == \
            "no_targets"


def test_a_new_user_names_its_missing_fields_first_but_an_unknown_field_before_them():
    assert _error(B.UserCreate, {"username": "a b", "password": ""})[2] == \
        "Missing required field: role."
    assert _error(B.UserCreate, {"zz": 1})[2] == "Invalid field zz: unknown field."


def test_a_time_without_zone_is_in_the_configured_zone():
    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    body = B.parse(B.BroadcastCreate, {"bulletin_id": 1, "targets": {"nodes": ["n1"]},
                                       "start_at": "2099-01-01T08:00:00"}, tz=tz)
    assert body.start_at == dt.datetime(2099, 1, 1, 1, 0)
    assert B.parse(B.BroadcastCreate, {"bulletin_id": 1, "targets": {"nodes": ["n1"]},
                                       "start_at": 0}).start_at == dt.datetime(1970, 1, 1)


def test_a_form_is_read_through_the_same_model():
    form = {"title": "T", "text": "x", "category": "other", "area_id": "2", "voice": "",
            "csrf_token": "t"}
    body = B.parse(B.BulletinCreate, B.from_form(B.BulletinCreate, form, blank_is_absent=True))
    assert (body.area_id, body.voice) == (2, None)
    with pytest.raises(ApiError) as err:
        B.from_form(B.BulletinUpload, {"title": "T", "category": "other", "area_id": "²"})
    assert err.value.message() == "Invalid field area_id: a number."
