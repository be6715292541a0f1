"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json (a test keeps it true
to the registered routes)."""
from __future__ import annotations

import copy

from device_agent.schemas import BODIES

from .auth import ROLES
from .broadcasts import BroadcastStatus
from .bulletins import BulletinStatus
from .models import MAX_DB_INT


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


ERRORS = {code: {"description": text, **_json(_ref("Error"))} for code, text in (
    ("400", "bad input: the message says which field"), ("401", "no valid token or login"),
    ("403", "the caller's role or area does not allow it"), ("404", "not found"),
    ("409", "conflicts with the current state"), ("413", "the upload is too large"),
    ("415", "the upload is not a supported audio format"),
    ("422", "the content could not be processed"),
    ("429", "too many failed logins: wait and retry"))}


def _op(summary: str, ok: dict, *, body: dict | None = None, params: list | None = None,
        status: str = "200", secure: bool = True, errors=("400", "401", "403", "404")) -> dict:
    op: dict = {"summary": summary, "responses": {status: ok, **{c: ERRORS[c] for c in errors}}}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    if not secure:
        op["security"] = []
    return op


def _text(max_len: int) -> dict:
    """A required text field: not blank (the server strips spaces), at most max_len long."""
    # Python's strip() also takes U+001C-U+001F and U+0085 for spaces; ECMA's \s does not.
    return {"type": "string", "minLength": 1, "maxLength": max_len,
            "pattern": r"[^\s\u001c-\u001f\u0085]"}


# What a database integer column holds; ids are never negative.
DB_INT = {"type": "integer", "minimum": -MAX_DB_INT, "maximum": MAX_DB_INT}
ID = {"type": "integer", "minimum": 0, "maximum": MAX_DB_INT}
# A query filter from a page's form: an empty value is no filter.
NODE_ID = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,62}$"}
TIME = {"type": "string", "format": "date-time",
        "description": "ISO 8601 (no zone: the configured zone)"}
TIME_OR_EMPTY = {"anyOf": [TIME, {"const": ""}], "description": "ISO 8601; empty: no bound"}
VOICES = ["vi", "vi-north", "vi-central", "vi-south"]
CATEGORIES = ["admin_reform", "traffic", "flooding", "environment", "health", "security", "urban",
              "emergency", "other"]
# The speech engines this server is configured with; document() fills in their names.
ENGINE_FIELDS = (("AreaUpdate", "tts_engine"), ("PreviewCreate", "engine"),
                 ("BulletinCreate", "engine"), ("BulletinUpdate", "engine"))


def _path_param(name: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID}


def _query(name: str, schema: dict | None = None, description: str = "") -> dict:
    return {"name": name, "in": "query", "required": False,
            "schema": schema or {"type": "string"}, "description": description}


def _ok(schema: dict, description: str = "OK") -> dict:
    return {"description": description, **_json(schema)}


NULLABLE_STR = {"type": ["string", "null"]}
SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Area": {"type": "object", "properties": {
        "id": {"type": "integer"}, "parent_id": {"type": ["integer", "null"]},
        "kind": {"type": "string", "enum": ["province", "city", "district", "ward", "commune",
                                           "town", "cluster", "zone"]},
        "name": {"type": "string"}, "code": {"type": "string"},
        "group": {"type": "string", "description": "the MQTT group name of the area"}}},
    "AreaCreate": {"type": "object", "required": ["name", "code", "kind"], "properties": {
        "parent_id": {"oneOf": [DB_INT, {"type": "null"}]},
        "kind": {"type": "string", "enum": ["province", "city", "district", "ward", "commune",
                                           "town", "cluster", "zone"]},
        "name": _text(200), "code": _text(64)}},
    "NodeCreate": {"type": "object", "required": ["cluster_id", "name"], "properties": {
        "cluster_id": DB_INT, "name": _text(200), "id": NODE_ID,
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180}}},
    "Provisioned": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "cluster_id": {"type": "integer"},
        "mqtt": {"type": "object", "properties": {
            "host": {"type": "string"}, "port": {"type": "integer"},
            "username": {"type": "string"}, "password": {"type": "string"},
            "tls": {"type": "boolean"},
            "ca_pem": {"type": "string", "description": "when tls: the CA certificate (PEM) "
                       "the node verifies the broker with; the config expects it in ca_file"}}},
        "topic_prefix": {"type": "string"}, "groups": {"type": "array", "items": {"type": "string"}},
        "server_keys": {"type": "array", "items": {"type": "object", "properties": {
            "kid": {"type": "string"},
            "public_key": {"type": "string", "description": "raw 32-byte Ed25519, base64"}}}},
        "config": {"type": "string", "description": "the agent's TOML config file"}}},
    "Node": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "cluster_id": {"type": "integer"},
        "lat": {"type": ["number", "null"]}, "lon": {"type": ["number", "null"]},
        "online": {"type": "boolean"}, "last_seen": NULLABLE_STR,
        "telemetry": {"type": ["object", "null"]}, "groups": {"type": "array"},
        "desired_version": {"type": "integer"},
        "desired_applied_version": {"type": ["integer", "null"]},
        "alarms": {"type": "array", "items": {"type": "object"}},
        "rejected": {"type": "object", "description": "messages from the node the server "
                     "refused (too large, malformed, for a command never sent to it)",
                     "properties": {"messages": {"type": "integer"},
                                    "last_reason": NULLABLE_STR, "last_at": NULLABLE_STR}}}},
    "CommandCreate": {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string", "enum": ["set_volume", "amp", "test", "stop", "reboot"]},
        "body": {"type": "object", "description": "as in docs/protocol.md for the type"}},
        "oneOf": [{"properties": {"type": {"const": t}, "body": {
            k: v for k, v in BODIES[t].items() if k not in ("$id", "title")}},
            **({"required": ["body"]} if "required" in BODIES[t] or "anyOf" in BODIES[t]
               else {})} for t in ("set_volume", "amp", "test", "stop", "reboot")]},
    "Command": {"type": "object", "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "target": {"type": "string"},
        "body": {"type": "object"}, "created_at": {"type": "string"},
        "published_at": NULLABLE_STR, "status": NULLABLE_STR, "reason": NULLABLE_STR,
        "result": {"type": ["object", "null"]}}},
    "BulletinCreate": {"type": "object", "required": ["title", "text", "category"], "properties": {
        "title": _text(300), "text": _text(20000),
        "category": {"type": "string", "enum": CATEGORIES},
        "voice": {"type": "string", "enum": VOICES},
        "engine": {"type": "string", "description": "tried first; the next engine speaks when "
                                                    "it fails"},
        "spoken_text": {"type": "string", "maxLength": 40000,
                        "description": "the author's corrected spoken form"},
        "area_id": DB_INT}},
    "AreaUpdate": {"type": "object", "properties": {
        "name": _text(200),
        "tts_engine": {"type": ["string", "null"], "description": "gtts, espeak, …"},
        "tts_voice": {"type": ["string", "null"], "enum": ["vi-north", "vi-central", "vi-south",
                                                           None]},
        "chime": {"type": ["string", "null"], "enum": ["none", "intro", "outro", "both", None]},
        "emergency_confirm": {"type": ["boolean", "null"],
                              "description": "live and emergency broadcasts here wait for a "
                                             "second person's confirmation; null: inherit"}}},
    "LexiconEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "area_id": {"type": "integer"}, "term": {"type": "string"},
        "spoken": {"type": "string"}}},
    "PreviewCreate": {"type": "object", "required": ["text"], "properties": {
        "text": _text(20000), "spoken_text": {"type": "string", "maxLength": 40000},
        "voice": {"type": "string", "enum": VOICES}, "engine": {"type": "string"},
        "area_id": DB_INT, "audio": {"type": "boolean", "default": True}}},
    "Preview": {"type": "object", "properties": {
        "normalized": {"type": "string"}, "audio_url": {"type": "string"},
        "sha256": {"type": "string"}, "duration_ms": {"type": "integer"},
        "engine": {"type": "string"}, "engine_note": NULLABLE_STR, "voice": {"type": "string"}}},
    "BulletinUpload": {"type": "object", "required": ["file", "title", "category"],
                       "properties": {"file": {"type": "string", "format": "binary", "minLength": 1},
                                      "title": _text(300),
                                      "category": {"type": "string", "enum": CATEGORIES},
                                      "area_id": ID,
                                      "text": {"type": "string", "maxLength": 20000}}},
    "BulletinUpdate": {"type": "object", "properties": {
        "title": _text(300), "text": _text(20000),
        "spoken_text": {"type": ["string", "null"], "maxLength": 40000,
                        "description": "the author's corrected spoken form; null: normalise "
                                       "the text again"},
        "category": {"type": "string", "enum": CATEGORIES},
        "voice": {"type": "string", "enum": VOICES}, "engine": {"type": "string"}}},
    "Bulletin": {"type": "object", "properties": {
        "id": {"type": "integer"}, "title": {"type": "string"}, "text": NULLABLE_STR,
        "category": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in BulletinStatus]},
        "audio_url": NULLABLE_STR, "sha256": NULLABLE_STR,
        "duration_ms": {"type": ["integer", "null"]}, "engine": NULLABLE_STR,
        "engine_note": NULLABLE_STR, "review_comment": NULLABLE_STR,
        "spoken_text": NULLABLE_STR, "source": {"type": "string", "enum": ["text", "upload"]},
        "lufs": {"type": ["number", "null"]}, "true_peak": {"type": ["number", "null"]},
        "revision": {"type": "integer", "description": "+1 on every edit; each revision needs "
                                                       "its own approval"},
        "approved_sha256": {**NULLABLE_STR, "description": "the audio the approval covers"},
        "history": {"type": "array", "items": {"type": "object", "properties": {
            "action": {"type": "string"}, "status": {"type": "string"},
            "by": {"type": "string"}, "at": {"type": "string"},
            "comment": NULLABLE_STR, "revision": {"type": ["integer", "null"]},
            "sha256": NULLABLE_STR}}}}},
    "BulletinAction": {"type": "object", "properties": {
        "comment": {"type": "string", "description": "required to reject"},
        "sha256": {"type": "string", "description": "approve: the audio the approver heard; "
                                                    "409 stale_revision when it changed since"}}},
    "BroadcastCreate": {"type": "object", "required": ["bulletin_id", "targets"], "properties": {
        "bulletin_id": DB_INT,
        "targets": {"type": "object", "description": "at least one area or node", "properties": {
            "areas": {"type": "array", "items": {"type": "integer", "minimum": 1,
                                                 "maximum": MAX_DB_INT}},
            "nodes": {"type": "array", "items": {"type": "string"}}},
            "anyOf": [{"required": ["areas"], "properties": {"areas": {"minItems": 1}}},
                      {"required": ["nodes"], "properties": {"nodes": {"minItems": 1}}}]},
        "priority": {"oneOf": [{"type": "string", "enum": ["normal", "priority", "live",
                                                          "emergency"]},
                               {"type": "integer", "minimum": 0, "maximum": 9}]},
        "start_at": {"description": "ISO 8601 (no zone: the configured zone) or epoch ms; "
                                    "absent or past = now",
                     "oneOf": [TIME, {"type": "integer", "minimum": 0,
                                      "maximum": 253402300799999}]},
        "volume": {"type": "integer", "minimum": 0, "maximum": 100},
        "repeat": {"type": "integer", "minimum": 1, "maximum": 20}}},
    "Broadcast": {"type": "object", "properties": {
        "id": {"type": "integer"}, "bulletin_id": {"type": "integer"},
        "priority": {"type": "integer"}, "status": {"type": "string", "enum": [
            s.value for s in BroadcastStatus]},
        "reason": {**NULLABLE_STR, "description": "why held or skipped: approval_revoked, "
                                                  "approval_missing, media_missing, late, "
                                                  "expired, dispatch_failed"},
        "approval": {"type": "object", "description": "the approved revision that airs",
                     "properties": {"id": {"type": ["integer", "null"]}, "sha256": NULLABLE_STR,
                                    "revision": {"type": ["integer", "null"]}}},
        "confirmed_at": NULLABLE_STR, "start_at": NULLABLE_STR,
        "summary": {"type": "object", "properties": {k: {"type": "integer"} for k in (
            "total", "sent", "acked", "played", "failed")}},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "node_id": {"type": "string"}, "status": {"type": "string"},
            "reason": NULLABLE_STR, "played": NULLABLE_STR}}}}},
    "User": {"type": "object", "description": "never includes the password", "properties": {
        "id": {"type": "integer"}, "username": {"type": "string"}, "role": {"type": "string"},
        "area_id": {"type": ["integer", "null"], "description": "null: every area"},
        "language": {"type": "string"}, "active": {"type": "boolean"},
        "created_at": NULLABLE_STR}},
    "UserCreate": {"type": "object", "required": ["username", "role", "password"],
                   "additionalProperties": False,
                   "properties": {}},  # the properties of UserWrite, filled in below
    "UserWrite": {"type": "object", "additionalProperties": False, "description": "to create: username, role, password; to "
                  "change: only the fields given (a new password ends the user's sessions and "
                  "login tokens)", "properties": {
        "username": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$"},
        "role": {"type": "string", "enum": list(ROLES)},
        "password": {"type": "string",
                     "description": "at least password_min_length (default 10) characters"},
        "area_id": {"type": ["integer", "null"], "description": "null: every area"},
        "language": {"type": "string", "enum": ["vi", "en"]}, "active": {"type": "boolean"}}},
    "PlayLog": {"type": "object", "properties": {k: NULLABLE_STR for k in (
        "node_id", "item_id", "cmd_id", "slot_id", "sha256", "scheduled_at", "started_at",
        "ended_at", "result", "reason")}},
}

_LIST = {"type": "object"}
PATHS = {
    "/api/v1/openapi.json": {"get": _op("This document", _ok({"type": "object"}), secure=False,
                                        errors=())},
    "/api/v1/auth/token": {"post": _op(
        "Exchange a username and password for a bearer token",
        _ok({"type": "object", "properties": {"token": {"type": "string"}}}),
        body={"type": "object", "required": ["username", "password"], "properties": {
            "username": _text(80), "password": _text(200)}},
        secure=False, errors=("400", "401", "429"))},
    "/api/v1/auth/logout": {"post": _op(
        "Revoke the bearer token of this request (or end the cookie's session)",
        {"description": "Revoked"}, status="204", errors=("401",))},
    "/api/v1/users": {
        "get": _op("Users the caller may manage (admin, or user.write within its own area)",
                   _ok({"type": "object", "properties": {"users": {
                       "type": "array", "items": _ref("User")}}}), errors=("401", "403")),
        "post": _op("Create a user: only inside the caller's area, with a role no stronger "
                    "than the caller's", _ok(_ref("User"), "Created"), body=_ref("UserCreate"),
                    status="201", errors=("400", "401", "403", "404", "409"))},
    "/api/v1/users/{user_id}": {
        "get": _op("One user", _ok(_ref("User")), params=[_path_param("user_id")]),
        "patch": _op("Change the given fields of a user", _ok(_ref("User")),
                     body=_ref("UserWrite"), params=[_path_param("user_id")],
                     errors=("400", "401", "403", "404", "409"))},
    "/api/v1/areas": {
        "get": _op("The area tree as a flat list with parent ids", _ok(_LIST)),
        "post": _op("Create an area", _ok(_ref("Area"), "Created"), body=_ref("AreaCreate"),
                    status="201", errors=("400", "401", "403", "404", "409"))},
    "/api/v1/areas/{area_id}": {
        "get": _op("One area", _ok(_ref("Area")), params=[_path_param("area_id")]),
        "patch": _op("Rename an area or set its speech defaults for bulletins below it",
                     _ok(_ref("Area")), body=_ref("AreaUpdate"), params=[_path_param("area_id")])},
    "/api/v1/areas/{area_id}/lexicon": {
        "get": _op("The area's own lexicon entries, and the effective lexicon (with those of "
                   "areas above it)", _ok({"type": "object", "properties": {
                       "entries": {"type": "array", "items": _ref("LexiconEntry")},
                       "effective": {"type": "object"}}}), params=[_path_param("area_id")]),
        "post": _op("Add or change how a term is read in this area's bulletins",
                    _ok(_ref("LexiconEntry"), "Created"), status="201",
                    body={"type": "object", "required": ["term", "spoken"], "properties": {
                        "term": {**_text(100), "pattern": r"^[^\t\n]*\S[^\t\n]*$"},
                        "spoken": _text(300)}},
                    params=[_path_param("area_id")])},
    "/api/v1/areas/{area_id}/lexicon/{entry_id}": {"delete": _op(
        "Remove a lexicon entry", {"description": "Removed"}, status="204",
        params=[_path_param("area_id"), _path_param("entry_id")])},
    "/api/v1/normalize": {"post": _op(
        "The spoken form of a text (with the area's lexicon), before any speech is made",
        _ok({"type": "object", "properties": {"normalized": {"type": "string"}}}),
        body={"type": "object", "required": ["text"], "properties": {
            "text": _text(20000), "area_id": DB_INT}})},
    "/api/v1/previews": {"post": _op(
        "Hear a text before it is saved: normalised text plus broadcast-ready audio",
        _ok(_ref("Preview")), body=_ref("PreviewCreate"),
        errors=("400", "401", "403", "404", "422"))},
    "/api/v1/nodes": {
        "get": _op("Nodes with online state, last telemetry, last seen, alarms",
                   _ok({"type": "object", "properties": {"nodes": {
                       "type": "array", "items": _ref("Node")}}}),
                   params=[_query("area", ID, "only nodes under this area")]),
        "post": _op("Provision a node: broker account, ACL, keys and the agent's config",
                    _ok(_ref("Provisioned"), "Created"), body=_ref("NodeCreate"), status="201",
                    errors=("400", "401", "403", "404", "409"))},
    "/api/v1/nodes/{node_id}": {"get": _op("One node", _ok(_ref("Node")),
                                           params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/nodes/{node_id}/revoke": {"post": _op(
        "Revoke a node: its broker account and ACL go, its session is cut, its retained "
        "desired state is cleared and broadcasts no longer count it (technician, admin)",
        _ok({"type": "object", "properties": {"id": {"type": "string"},
                                              "revoked_at": {"type": "string"}}}),
        params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/nodes/{node_id}/commands": {"post": _op(
        "Send an immediate command to a node", _ok(_ref("Command"), "Queued"),
        body=_ref("CommandCreate"), status="202", params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/commands/{command_id}": {"get": _op(
        "A command and the node's last ack", _ok(_ref("Command")),
        params=[_path_param("command_id", {"type": "string"})])},
    "/api/v1/bulletins": {
        "get": _op("Bulletins, newest first", _ok(_LIST),
                   params=[_query("status")]),
        "post": {**_op("Write a text bulletin (its speech is made at once) or upload a "
                       "recording (multipart: file, title, category, area_id?, text?)",
                       _ok(_ref("Bulletin"), "Created"), body=_ref("BulletinCreate"),
                       status="201", errors=("400", "401", "403", "404", "409", "413", "415",
                                             "422")),
                 "requestBody": {"required": True, "content": {
                     "application/json": {"schema": _ref("BulletinCreate")},
                     "multipart/form-data": {"schema": _ref("BulletinUpload")}}}}},
    "/api/v1/bulletins/{bulletin_id}": {
        "get": _op("A bulletin: status, audio URL, duration, sha256, history",
                   _ok(_ref("Bulletin")), params=[_path_param("bulletin_id")]),
        "patch": _op("Edit a bulletin; speech is remade when what is spoken changed; an "
                     "approved bulletin goes back to pending", _ok(_ref("Bulletin")),
                     body=_ref("BulletinUpdate"), params=[_path_param("bulletin_id")],
                     errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/bulletins/{bulletin_id}/{action}": {"post": _op(
        "Approval workflow: submit, approve, reject (needs comment), archive",
        _ok(_ref("Bulletin")), params=[_path_param("bulletin_id"), {
            "name": "action", "in": "path", "required": True,
            "schema": {"type": "string", "enum": ["submit", "approve", "reject", "archive"]}}],
        errors=("400", "401", "403", "404", "409")) | {"requestBody": {
            "required": False, **_json(_ref("BulletinAction"))}}},
    "/api/v1/broadcasts": {
        "get": _op("Recent broadcasts", _ok(_LIST)),
        "post": _op("Broadcast an approved bulletin now or at a time; live and emergency "
                    "priority need the approver role, or wait for a second person where the "
                    "area asks for one (status awaiting_confirmation)",
                    _ok(_ref("Broadcast"), "Created"), body=_ref("BroadcastCreate"),
                    status="201", errors=("400", "401", "403", "404", "409"))},
    "/api/v1/broadcasts/{broadcast_id}": {"get": _op(
        "Per node: sent, acked, played, failed, with reasons", _ok(_ref("Broadcast")),
        params=[_path_param("broadcast_id")])},
    "/api/v1/broadcasts/{broadcast_id}/confirm": {"post": _op(
        "The second person confirms a live or emergency broadcast held for confirmation "
        "(another user than its creator, with the approver role over every target)",
        _ok(_ref("Broadcast")), params=[_path_param("broadcast_id")],
        errors=("401", "403", "404", "409"))},
    "/api/v1/broadcasts/{broadcast_id}/cancel": {"post": _op(
        "Cancel what has not played, stop what plays", _ok(_ref("Broadcast")),
        params=[_path_param("broadcast_id")], errors=("401", "403", "404", "409"))},
    "/api/v1/playlogs": {"get": _op(
        "Proof of play (as-run log); Accept: text/csv gives CSV",
        {"description": "OK", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "playlogs": {"type": "array", "items": _ref("PlayLog")}}}},
            "text/csv": {"schema": {"type": "string"}}}},
        params=[_query("node"), _query("area", ID), _query("from", TIME_OR_EMPTY),
                _query("to", TIME_OR_EMPTY),
                _query("limit", {"type": "integer"}, "at most this many (1-10000)")])},
    "/api/v1/audit": {"get": _op(
        "The audit log, newest first (admins only): every change, login, approval, broadcast",
        _ok({"type": "object", "properties": {"entries": {"type": "array", "items": {
            "type": "object", "properties": {
                "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                "actor_id": {"type": ["integer", "null"]}, "actor": {"type": "string"},
                "action": {"type": "string", "description": "table.insert|update|delete, "
                                                            "auth.login, auth.login_failed, keys.*"},
                "target": {"type": "object", "properties": {"type": NULLABLE_STR,
                                                            "id": NULLABLE_STR}},
                "detail": {"type": "object", "description": "new/old values or changed "
                           "[old, new]; secret_fields names secrets that changed, never values"},
                "hash": {"type": "string"}}}}}}),
        params=[_query("from", TIME_OR_EMPTY), _query("to", TIME_OR_EMPTY),
                _query("actor", None, "username, system or dispatcher"),
                _query("action", None, "an action, or its prefix (bulletins)"),
                _query("limit", {"type": "integer"}, "at most this many (1-10000)")], errors=("400", "401", "403"))},
}

SCHEMAS["UserCreate"]["properties"] = {
    k: v for k, v in SCHEMAS["UserWrite"]["properties"].items()}
SCHEMAS["UserCreate"]["properties"].update(
    username={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$"},
    password={**_text(200), "minLength": 10,
                                  "description": "at least password_min_length characters"})


def _null_means_absent(schema: dict) -> None:
    """The server reads null in an optional request field as the field not given: say so."""
    for name, prop in schema.get("properties", {}).items():
        if name in schema.get("required", ()) or "$ref" in prop or "anyOf" in prop:
            continue
        types = prop.get("type")
        if types is None or types == "null" or (isinstance(types, list) and "null" in types):
            continue
        prop = schema["properties"][name] = copy.deepcopy(prop)  # constants are shared
        prop["type"] = [types, "null"] if isinstance(types, str) else [*types, "null"]
        if "enum" in prop and None not in prop["enum"]:
            prop["enum"] = [*prop["enum"], None]


def _request_bodies(paths: dict):
    for ops in paths.values():
        for op in ops.values():
            json_body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if json_body:  # a form field is text: it has no null
                yield json_body["schema"]


for _body in _request_bodies(PATHS):
    _ref_name = _body.get("$ref", "").rpartition("/")[2]
    _null_means_absent(SCHEMAS[_ref_name] if _ref_name else _body)

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "LoaPhuong API", "version": "1",
             "description": "REST core of the ward loudspeaker system. Errors are "
                            "{\"error\": {\"code\", \"message\"}}; messages are Vietnamese by "
                            "default (Accept-Language: en or ?lang=en for English)."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                   "schemas": SCHEMAS},
    "paths": PATHS,
}


def document(engines: list[str], password_min: int = 10) -> dict:
    """The document as this server serves it: engine fields name the configured engines, a new
    user's password the configured shortest length."""
    doc = copy.deepcopy(OPENAPI)
    doc["components"]["schemas"]["UserCreate"]["properties"]["password"]["minLength"] = password_min
    for schema, field in ENGINE_FIELDS:
        prop = doc["components"]["schemas"][schema]["properties"][field]
        prop["enum"] = list(engines) + ([None] if "null" in prop["type"] else [])
    return doc
