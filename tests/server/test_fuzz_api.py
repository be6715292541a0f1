"""Schemathesis against the API's own OpenAPI document, in-process (WSGI) as the admin.

For every documented operation: no server error, responses conform to the documented schema,
data the document calls valid is accepted (not 400) and data it calls invalid is refused with a
4xx. A fixed number of derandomised examples per operation keeps the run short and repeatable.
"""
from __future__ import annotations

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import converter

from sqlalchemy import select

from server import auth, create_app
from server.cli import init_instance
from server.models import User
from server.openapi import OPENAPI
from tests import database
from tests.render_cache import render_through
from tests.fuzz_budget import examples

ADMIN_PASSWORD = "admin-fuzz-password"
MAX_EXAMPLES = 25
# Operations that make speech for each example: fewer examples, each one costs a TTS render.
SPEECH_OPERATIONS = {"POST /api/v1/bulletins", "PATCH /api/v1/bulletins/{bulletin_id}",
                     "POST /api/v1/previews"}
SPEECH_EXAMPLES = 8


def _seed(client, headers) -> None:
    """Areas, a node, bulletins and a broadcast with small ids, so generated ids find rows."""
    def post(path, json):
        r = client.post(path, json=json, headers=headers)
        assert r.status_code < 300, (path, r.status_code, r.get_data(as_text=True))
        return r.get_json()

    province = post("/api/v1/areas", {"name": "Hải Phòng", "code": "HP", "kind": "province"})
    ward = post("/api/v1/areas", {"name": "Lê Chân", "code": "HP-LC", "kind": "ward",
                                  "parent_id": province["id"]})
    cluster = post("/api/v1/areas", {"name": "Cụm 1", "code": "HP-LC-1", "kind": "cluster",
                                     "parent_id": ward["id"]})
    post("/api/v1/nodes", {"cluster_id": cluster["id"], "name": "Loa chợ", "id": "cho-1"})
    post(f"/api/v1/areas/{ward['id']}/lexicon", {"term": "UBND", "spoken": "ủy ban nhân dân"})
    for title in ("Thông báo", "Lịch tiêm"):
        b = post("/api/v1/bulletins", {"title": title, "text": "UBND phường thông báo.",
                                       "category": "other"})
        post(f"/api/v1/bulletins/{b['id']}/submit", {})
        post(f"/api/v1/bulletins/{b['id']}/approve", {})
    post("/api/v1/bulletins", {"title": "Nháp", "text": "Bản nháp.", "category": "health"})
    post("/api/v1/broadcasts", {"bulletin_id": 1, "targets": {"areas": [ward["id"]]},
                                "start_at": "2099-01-01T08:00:00"})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory, _renders):
    with pytest.MonkeyPatch.context() as mp:
        # the seed's speech through the run's renders, as every server test's
        # (tests/conftest.py render_each_input_once)
        render_through(_renders, mp)
        yield from _fuzz_app(tmp_path_factory)


def _fuzz_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-api")
    config = {"tts_engines": ["espeak"], "mosquitto_dir": str(base / "mosquitto"),
              "public_url": "http://127.0.0.1:9", **database.instance_database(base / "instance")}
    init_instance(base / "instance", ADMIN_PASSWORD, config)
    app = create_app(config, instance_path=base / "instance")
    client = app.test_client()
    r = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    token = r.get_json()["token"]
    _seed(client, {"Authorization": f"Bearer {token}"})
    yield app, token
    app.extensions["db_engine"].dispose()


def _fresh_token(app) -> str:
    """A new login token for the admin, issued directly (a real login would count to the limit)."""
    with app.app_context():
        db = app.extensions["db_sessions"]()
        try:
            admin = db.scalar(select(User).where(User.username == "admin"))
            token = auth.issue_token(db, admin, ttl_h=1)
            db.commit()
            return token
        finally:
            db.close()


def _fold_anchored_only(fold):
    """schemathesis's ``update_quantifier`` as its converter uses it, for anchored patterns only.

    The converter folds a string's minLength/maxLength into its pattern (``[^\\s]`` with
    maxLength 20000 becomes ``^[^\\s]{1,20000}$``) and then compiles that in Rust for each of
    an operation's schemas (canonical form, satisfiability, validators): a third of a second
    each, 7 s of the module's 20 s of CPU. An unanchored pattern matches anywhere in the string,
    so such a fold also narrows it ("holds a non-blank character" to "holds no blank"); anchored
    ones are folded as before. What is generated is still checked against the document."""
    def update_quantifier(pattern, min_length, max_length):
        if not (pattern.startswith("^") and pattern.endswith("$")):
            return pattern
        return fold(pattern, min_length, max_length)
    return update_quantifier


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    """The document as the app serves it, with the generation bounded and repeatable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(converter, "update_quantifier",
                   _fold_anchored_only(converter.update_quantifier))  # type: ignore[attr-defined]
        yield _api_schema(fuzz_app)


def _api_schema(fuzz_app):
    app, token = fuzz_app
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {token}"},
        # Valid data may still be refused for what no schema can say: a text whose speech is
        # silent (422), a file that is no audio (415) or too large (413). All are documented.
        # Random logins fail, and failed logins are limited (429, documented): that is the
        # protection working, not valid data refused.
        "checks": {"positive_data_acceptance": {"expected-statuses": [
            "2xx", "401", "403", "404", "409", "413", "415", "422", "429"]}},
    })
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)


OPERATIONS = [(method.upper(), path) for path, ops in OPENAPI["paths"].items() for method in ops]
# Negative data needs something to make invalid: a parameter or a body.
NEGATABLE = {(method.upper(), path) for path, ops in OPENAPI["paths"].items()
             for method, op in ops.items() if op.get("parameters") or op.get("requestBody")}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_keeps_to_its_document(api_schema, fuzz_app, method, path, mode):
    if mode is GenerationMode.NEGATIVE and (method, path) not in NEGATABLE:
        pytest.skip("nothing in this operation can be made invalid")
    operation = api_schema[path][method]
    token = fuzz_app[1]
    count = examples(SPEECH_EXAMPLES if f"{method} {path}" in SPEECH_OPERATIONS else MAX_EXAMPLES)

    @settings(max_examples=count, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        # Logging out revokes the token it is called with: give it one of its own each time,
        # so the rest of the run keeps the admin's.
        used = _fresh_token(fuzz_app[0]) if path == "/api/v1/auth/logout" else token
        case.call_and_validate(headers={"Authorization": f"Bearer {used}"})

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("every value of this operation's inputs is valid")


# --- what the fuzzing found, kept as plain requests -------------------------------------------

@pytest.fixture
def api(fuzz_app):
    app, token = fuzz_app
    client = app.test_client()

    def call(method, path, **kw):
        return client.open(path, method=method, headers={"Authorization": f"Bearer {token}"},
                           **kw)
    return call


def _refused(r, field):
    assert r.status_code == 400, r.get_data(as_text=True)
    err = r.get_json()["error"]
    assert err["code"] == "invalid" and field in err["message"]


@pytest.mark.parametrize("start_at", [10**20, -1, "9999-12-31T23:59:59-05:00",
                                      "0001-01-01T00:00:00+05:00"])
def test_broadcast_time_out_of_range_is_refused_not_crashed(api, start_at):
    r = api("POST", "/api/v1/broadcasts", json={"bulletin_id": 1, "targets": {"nodes": ["cho-1"]},
                                                "start_at": start_at})
    _refused(r, "start_at")


def test_coordinate_too_large_for_a_float_is_refused_not_crashed(api):
    r = api("POST", "/api/v1/nodes", json={"cluster_id": 3, "name": "Loa", "lat": 10**400})
    _refused(r, "lat")


@pytest.mark.parametrize("query", ["area=%C2%B2", "limit=abc", "limit=%C2%B2", "limit=5.5"])
def test_query_number_that_is_not_a_number_is_refused(api, query):
    path = "/api/v1/playlogs" if query.startswith("limit") else "/api/v1/nodes"
    _refused(api("GET", f"{path}?{query}"), query.split("=")[0])


def test_upload_area_in_superscript_digits_is_refused_not_crashed(api):
    r = api("POST", "/api/v1/bulletins", content_type="multipart/form-data",
            data={"file": (io.BytesIO(b"ID3"), "a.mp3"), "title": "T", "category": "other",
                  "area_id": "²"})
    _refused(r, "area_id")


def test_whole_numbers_written_with_a_decimal_point_are_integers(api):
    """JSON Schema (and so the OpenAPI document) reads 5.0 as the integer 5."""
    area = api("POST", "/api/v1/areas", json={"name": "Tổ 7", "code": "HP-LC-T7",
                                              "kind": "zone", "parent_id": 2.0})
    assert area.status_code == 201 and area.get_json()["parent_id"] == 2
    r = api("POST", "/api/v1/nodes/cho-1/commands", json={"type": "set_volume",
                                                            "body": {"volume": 40.0}})
    assert r.status_code == 202 and r.get_json()["body"] == {"volume": 40}
    assert isinstance(r.get_json()["body"]["volume"], int)
    r = api("POST", "/api/v1/broadcasts", json={"bulletin_id": 1, "priority": 5.0,
                                                "targets": {"areas": [2.0]}})
    assert r.status_code == 201 and r.get_json()["priority"] == 5


def test_command_body_with_a_float_deep_inside_is_refused(api):
    """It used to be queued, and a signed envelope can never carry it."""
    r = api("POST", "/api/v1/nodes/cho-1/commands", json={"type": "reboot",
                                                            "body": {"why": [{"load": 1.5}]}})
    assert r.status_code == 400 and "floating-point" in r.get_json()["error"]["message"]


@pytest.mark.parametrize("method,path", [("PATCH", "/api/v1/bulletins/99999999999999999999"),
                                         ("POST", "/api/v1/areas/99999999999999999999/lexicon")])
def test_id_too_large_for_the_database_is_not_found_whatever_the_method(api, method, path):
    r = api(method, path, json={"term": "a", "spoken": "b"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


def test_served_document_names_the_configured_speech_engines(api):
    doc = api("GET", "/api/v1/openapi.json").get_json()
    engines = doc["components"]["schemas"]["BulletinCreate"]["properties"]["engine"]["enum"]
    assert [e for e in engines if e is not None] == ["espeak"]
