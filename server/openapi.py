"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json (a test keeps it true
to the registered routes). Its request schemas are generated from the request models in
server/bodies.py (OpenAPI 3.1's schemas are JSON Schema 2020-12) and its query parameters from
the query models in server/queries.py; the answers are described here."""
from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from device_agent.protocol import CommandType, PlayResult

from . import queries as Q
from .auth import Role
from .bodies import CONFIGURED, MODELS, AreaKind
from .bridge import RefusedReason
from .broadcasts import BroadcastStatus
from .bulletins import BulletinSource, BulletinStatus, BulletinStep
from .errors import STATUS, ErrorCode
from .deliveries import DeliveryStatus, HoldReason, SlotState, UnsentReason
from .outbox import CommandStatus
from .releases import Progress, RolloutStatus
from .reports import FIELDS as AIRPLAY_FIELDS
from .report_summary import SummaryQuery
from .reports import AirStatus, MissReason
from .retention import FIELDS as TELEMETRY_FIELDS
from .retention import Resolution
from .alerts import Kind as AlertKind
from .alerts import Severity as AlertSeverity
from .alerts import State as AlertState

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _codes(status: str) -> str:
    """The error codes (server.errors.ErrorCode) that answer with ``status``."""
    return ", ".join(c for c, st in STATUS.items() if str(st) == status)


ERRORS = {code: {"description": f"{text} (codes: {_codes(code)})", **_json(_ref("Error"))}
          for code, text in (
    ("400", "bad input: the message says which field"), ("401", "no valid token or login"),
    ("403", "the caller's role or area does not allow it"), ("404", "not found"),
    ("409", "conflicts with the current state"), ("413", "the upload is too large"),
    ("415", "the upload is not a supported audio format"),
    ("410", "gone: the node is revoked"),
    ("422", "the content could not be processed (invalid_text: a text holding NUL or a lone "
            "surrogate, which no database stores, in any field or parameter)"),
    ("429", "too many failed logins: wait and retry"))}


def _op(summary: str, ok: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, status: str = "200", secure: bool = True,
        errors: tuple[str, ...] = ("400", "401", "403", "404")) -> dict[str, Any]:
    if (body is not None or params) and "422" not in errors:
        errors = (*errors, "422")  # invalid_text: a text no database stores (NUL, a surrogate)
    op: dict[str, Any] = {"summary": summary,
                          "responses": {status: ok, **{c: ERRORS[c] for c in errors}}}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    if not secure:
        op["security"] = []
    return op



def _alert_step(summary: str) -> dict[str, Any]:
    """An alert's acknowledge or resolve: the alert back, an optional comment."""
    return _op(summary, _ok(_ref("Alert")), params=[_path_param("alert_id")],
               errors=("400", "401", "403", "404", "409")) | {"requestBody": {
                   "required": False, **_json(_ref("AlertAction"))}}

# What a database integer column holds (ids are never negative); a node's id.
ID, NODE_ID = Q.ID, Q.NODE_ID
# the airplay counts of one area (the node's cluster), as both reports give them
AREA_TOTALS = {"allOf": [_ref("AirplayTotals"), {
    "type": "object", "properties": {"area_id": {"type": "integer"},
                                     "area_name": {"type": ["string", "null"]}}}]}


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID}


def _tidy(schema: Any) -> Any:
    """pydantic's ``anyOf: [X, null]`` of an optional field as ``type: [x, "null"]`` where X is
    one simple type (the form the document had by hand); a null default says nothing."""
    if isinstance(schema, list):
        return [_tidy(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: _tidy(v) for k, v in schema.items() if not (k == "default" and v is None)}
    branches = schema.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        (inner,) = [b for b in branches if b != {"type": "null"}]
        if isinstance(inner.get("type"), str) and "anyOf" not in inner:
            del schema["anyOf"]
            schema = {**inner, **schema, "type": [inner["type"], "null"]}
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
    return schema


def query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields (server/queries.py) as the operation's query parameters, by the
    names a request gives them: each optional, its description beside its schema."""
    schema = model.model_json_schema(by_alias=True)
    out = []
    for name, field in schema["properties"].items():
        # a default the query's text can write (a number): not the empty tuple of "all states"
        field = {k: v for k, v in field.items()
                 if k != "title" and not (k == "default" and not isinstance(v, int | str))}
        description = field.pop("description", "")
        out.append({"name": name, "in": "query", "required": False, "schema": _tidy(field),
                    "description": description})
    return out


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, **_json(schema)}


NULLABLE_STR = {"type": ["string", "null"]}


def _nullable_enum(words: type[StrEnum]) -> dict[str, Any]:
    """One of ``words``' values, or null."""
    return {"type": ["string", "null"], "enum": [*(w.value for w in words), None]}


SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "enum": [c.value for c in ErrorCode],
                                "description": "what a script branches on; never renamed"},
                       "message": {"type": "string"},
                       "problem": {"type": "string", "description": "invalid_recurrence: "
                                   "what is wrong with the rule (too_frequent, never_occurs, …)"},
                       "part": {**NULLABLE_STR, "description": "invalid_recurrence: the rule's "
                                "part at fault"},
                       "clashes": {"type": "array", "description": "schedule_conflict: the new "
                                   "slots that overlap others on the same node",
                                   "items": _ref("Clash")},
                       "rows": {"type": "array", "description": "invalid_rows: every bad row "
                                "of a bulk provisioning or CSV import", "items":
                                _ref("RowError")}}}}},
    "Slot": {"type": "object", "properties": {
        "slot_id": {"type": "string"}, "broadcast_id": {"type": "integer"},
        "bulletin_id": {"type": ["integer", "null"]},
        "programme_id": {"type": ["integer", "null"]},
        "start_at": {"type": "string", "format": "date-time"},
        "end_at": {"type": "string", "format": "date-time"}, "priority": {"type": "integer"},
        "targets": {"type": "object", "properties": {
            "areas": {"type": "array", "items": {"type": "integer"}},
            "nodes": {"type": "array", "items": {"type": "string"}}}}}},
    "Clash": {"type": "object", "properties": {
        "node_id": {"type": "string"}, "slot": _ref("Slot"), "existing": _ref("Slot")}},
    "Area": {"type": "object", "properties": {
        "id": {"type": "integer"}, "parent_id": {"type": ["integer", "null"]},
        "kind": {"type": "string", "enum": [k.value for k in AreaKind]},
        "name": {"type": "string"}, "code": {"type": "string"},
        "group": {"type": "string", "description": "the MQTT group name of the area"},
        "quiet_hours": {"type": ["array", "null"], "items": {"type": "object", "properties": {
            "from": {"type": "string"}, "to": {"type": "string"}}},
            "description": "HH:MM intervals in the area's zone; null: as the area above"},
        "tz": {"type": ["string", "null"], "description": "the area's own IANA time zone; "
               "null: as the area above"},
        "effective_tz": {"type": "string", "description": "the zone the area lives in: its "
                         "own, else the nearest area's above it, else the configured zone"},
        "merged_into_id": {"type": ["integer", "null"], "description": "the area it was merged "
                           "into (POST /areas/{id}/merge); null: in use"},
        "merged_at": {"type": ["string", "null"], "format": "date-time"}}},
    "AreaMerged": {"type": "object", "properties": {
        "area": _ref("Area"), "into": _ref("Area"),
        "moved": {"type": "object", "description": "the ids of what moved: areas (child "
                  "areas), nodes, broadcasts (retargeted), series_split ([old, new] pairs), "
                  "users, programmes, bulletins, lexicon, alerts; lexicon_dropped: terms the "
                  "kept area reads its own way"}}},
    "ProvisionedList": {"type": "object", "properties": {"nodes": {
        "type": "array", "items": _ref("Provisioned")}}},
    "RowError": {"type": "object", "required": ["row", "field", "code", "message"],
                 "properties": {"row": {"type": "integer", "description": "1-based; in a CSV "
                                        "import the line in the file"},
                                "field": {"type": "string"}, "code": {"type": "string"},
                                "message": {"type": "string"}}},
    "ProvisioningToken": {"type": "object", "required": ["token", "url", "expires_at"],
                          "properties": {
        "token": {"type": "string", "description": "shown once; only its sha256 is stored"},
        "url": {"type": "string", "description": "public_url + "
                "/api/v1/nodes/{node_id}/provisioning"},
        "expires_at": {"type": "string"}}},
    "Provisioned": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "cluster_id": {"type": "integer"},
        "mqtt": {"type": "object", "properties": {
            "host": {"type": "string"}, "port": {"type": "integer"},
            "username": {"type": "string"}, "password": {"type": "string"},
            "tls": {"type": "boolean"},
            "ca_pem": {"type": "string", "description": "when tls: the CA certificate (PEM) "
                       "the node verifies the broker with; the config expects it in ca_file"}}},
        "topic_prefix": {"type": "string"},
        "groups": {"type": "array", "items": {"type": "string"}},
        "server_keys": {"type": "array", "items": {"type": "object", "properties": {
            "kid": {"type": "string"},
            "public_key": {"type": "string", "description": "raw 32-byte Ed25519, base64"}}}},
        "config": {"type": "string", "description": "the agent's TOML config file"}}},
    "Node": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "cluster_id": {"type": "integer"},
        "lat": {"type": ["number", "null"]}, "lon": {"type": ["number", "null"]},
        "online": {"type": "boolean"}, "last_seen": NULLABLE_STR,
        "telemetry": {"type": ["object", "null"]}, "groups": {"type": "array"},
        "agent_version": {**NULLABLE_STR, "description": "the agent version the node last "
                          "reported (telemetry, else its online state)"},
        "desired_version": {"type": "integer"},
        "desired_applied_version": {"type": ["integer", "null"]},
        "alarms": {"type": "array", "items": {"type": "object"}},
        "never_connected": {"type": "boolean", "description": "provisioned, never heard from"},
        "maintenance_until": {**NULLABLE_STR, "description": "its maintenance window: no "
                              "alert until then"},
        "rejected": {"type": "object", "description": "messages from the node the server "
                     "refused (too large, malformed, for a command never sent to it)",
                     "properties": {"messages": {"type": "integer"},
                                    "last_reason": _nullable_enum(RefusedReason),
                                    "last_at": NULLABLE_STR}}}},
    "Alert": {"type": "object", "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": [k.value for k in AlertKind]},
        "kind_text": {"type": "string", "description": "the kind in the caller's language"},
        "node_id": NULLABLE_STR, "area_id": {"type": ["integer", "null"],
                                             "description": "the node's cluster"},
        "severity": {"type": "string", "enum": [x.value for x in AlertSeverity]},
        "state": {"type": "string", "enum": [x.value for x in AlertState]},
        "detail_class": {"type": "string", "description": "a change of it (or of severity) "
                         "notifies again"},
        "detail": {"type": "object", "description": "the detail's values"},
        "text": {"type": "string", "description": "the detail in the caller's language"},
        "count": {"type": "integer", "description": "alarms, missed slots or failed downloads "
                  "counted"},
        "first_seen": {"type": "string", "format": "date-time",
                       "description": "when the condition began"},
        "last_seen": {"type": "string", "format": "date-time"},
        "opened_at": {"type": "string", "format": "date-time"},
        "acknowledged": {"type": ["object", "null"], "properties": {
            "by": NULLABLE_STR, "at": NULLABLE_STR, "comment": NULLABLE_STR}},
        "resolved": {"type": ["object", "null"], "properties": {
            "by": {**NULLABLE_STR, "description": "null: resolved by the server"},
            "at": NULLABLE_STR, "automatic": {"type": "boolean"},
            "comment": NULLABLE_STR}}}},
    "Command": {"type": "object", "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": [t.value for t in CommandType]},
        "target": {"type": "string"}, "body": {"type": "object"}, "created_at": {"type": "string"},
        "published_at": NULLABLE_STR, "status": _nullable_enum(CommandStatus),
        "reason": NULLABLE_STR,
        "result": {"type": ["object", "null"]}}},
    "LexiconEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "area_id": {"type": "integer"}, "term": {"type": "string"},
        "spoken": {"type": "string"}}},
    "Preview": {"type": "object", "properties": {
        "normalized": {"type": "string"}, "audio_url": {"type": "string"},
        "sha256": {"type": "string"}, "duration_ms": {"type": "integer"},
        "engine": {"type": "string"}, "engine_note": NULLABLE_STR, "voice": {"type": "string"}}},
    "Bulletin": {"type": "object", "properties": {
        "id": {"type": "integer"}, "title": {"type": "string"}, "text": NULLABLE_STR,
        "category": {"type": "string"},
        "status": {"type": "string", "enum": [s.value for s in BulletinStatus]},
        "audio_url": NULLABLE_STR, "sha256": NULLABLE_STR,
        "duration_ms": {"type": ["integer", "null"]}, "engine": NULLABLE_STR,
        "engine_note": NULLABLE_STR, "review_comment": NULLABLE_STR,
        "spoken_text": NULLABLE_STR, "source": {"type": "string", "enum": [
            s.value for s in BulletinSource]},
        "lufs": {"type": ["number", "null"]}, "true_peak": {"type": ["number", "null"]},
        "revision": {"type": "integer", "description": "+1 on every edit; each revision needs "
                                                       "its own approval"},
        "approved_sha256": {**NULLABLE_STR, "description": "the audio the approval covers"},
        "history": {"type": "array", "items": {"type": "object", "properties": {
            "action": {"type": "string"}, "status": {"type": "string"},
            "by": {"type": "string"}, "at": {"type": "string"},
            "comment": NULLABLE_STR, "revision": {"type": ["integer", "null"]},
            "sha256": NULLABLE_STR}}}}},
    "Programme": {"type": "object", "properties": {
        "id": {"type": "integer"}, "title": {"type": "string"},
        "area_id": {"type": ["integer", "null"]},
        "revision": {"type": "integer", "description": "+1 on every edit; each revision has "
                                                       "its own media"},
        "items": {"type": "array", "description": "in playing order", "items": {
            "type": "object", "properties": {
                "bulletin_id": {"type": "integer"},
                "approval_id": {"type": "integer", "description": "the approval that airs"},
                "sha256": {"type": "string"}, "title": NULLABLE_STR,
                "duration_ms": {"type": ["integer", "null"]}}}},
        "sha256": {"type": "string", "description": "the items' approved media joined into "
                                                    "one file"},
        "audio_url": {"type": "string"}, "duration_ms": {"type": "integer"},
        "bytes": {"type": "integer"}, "created_at": {"type": "string"},
        "updated_at": {"type": "string"}}},
    "Broadcast": {"type": "object", "properties": {
        "id": {"type": "integer"}, "bulletin_id": {"type": ["integer", "null"]},
        "programme_id": {"type": ["integer", "null"]},
        "programme_revision": {"type": ["object", "null"], "description": "a programme's "
                               "revision that airs (a series: the newest, for future slots)",
                               "properties": {"id": {"type": "integer"},
                                              "revision": {"type": "integer"},
                                              "sha256": {"type": "string"}}},
        "priority": {"type": "integer"}, "status": {"type": "string", "enum": [
            s.value for s in BroadcastStatus]},
        "reason": {**_nullable_enum(HoldReason), "description": "why held or skipped"},
        "approval": {"type": "object", "description": "the approved revision that airs",
                     "properties": {"id": {"type": ["integer", "null"]}, "sha256": NULLABLE_STR,
                                    "revision": {"type": ["integer", "null"]}}},
        "confirmed_at": NULLABLE_STR,
        "start_at": {**NULLABLE_STR, "description": "a series: its anchor"},
        "recurrence": {**NULLABLE_STR, "description": "a series' rule; null: a one-off"},
        "tz": {"type": "string", "description": "the IANA zone a series' rule is expanded in: "
               "that of its first target area (lowest id), or with single nodes only of the "
               "first node's cluster, inherited down the area tree"},
        "exdates": {"type": "array", "items": {"type": "string"},
                    "description": "the series' skipped occurrences"},
        "skip_holidays": {"type": "array", "items": {"type": "string"},
                          "description": "the lunar holidays whose days the series skips"},
        "tet_days": {"type": ["object", "null"], "description": "the days around mùng 1 Tết "
                                                               "skipped; null: the default "
                                                               "(1 before, 2 after)",
                     "properties": {"before": {"type": "integer"},
                                    "after": {"type": "integer"}}},
        "begins_at": {**NULLABLE_STR, "description": "a series made by an edit: it plans "
                                                     "occurrences from here on"},
        "ends_at": {**NULLABLE_STR, "description": "a series ended by an edit: its "
                                                   "occurrences from here on are gone"},
        "previous_id": {"type": ["integer", "null"], "description": "the series this edit "
                                                                    "replaced from begins_at"},
        "next_id": {"type": ["integer", "null"], "description": "the series that replaced "
                                                                "this one from ends_at"},
        "occurrences": {"type": "array", "description": "a series' changed occurrences",
                        "items": {"type": "object", "properties": {
                            "original_start": {"type": "string"},
                            "cancelled": {"type": "boolean"}, "start_at": NULLABLE_STR,
                            "bulletin_id": {"type": ["integer", "null"]},
                            "sha256": NULLABLE_STR}}},
        "summary": {"type": "object", "properties": {k: {"type": "integer"} for k in (
            "total", "sent", "acked", "played", "failed")}},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "node_id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in DeliveryStatus]},
            "reason": {**NULLABLE_STR, "description": "why it was not sent (the broadcast's "
                       "reason, or the outbox's: " + ", ".join(UnsentReason) + ") or the node's "
                       "(its ack's or its play's)"},
            "played": _nullable_enum(PlayResult)}}}}},
    "User": {"type": "object", "description": "never includes the password", "properties": {
        "id": {"type": "integer"}, "username": {"type": "string"},
        "role": {"type": "string", "enum": [r.value for r in Role]},
        "area_id": {"type": ["integer", "null"], "description": "null: every area"},
        "language": {"type": "string"}, "active": {"type": "boolean"},
        "created_at": NULLABLE_STR}},
    "AirplayItem": {"type": "object", "required": list(AIRPLAY_FIELDS), "properties": {
        "node_id": {"type": "string"}, "area_id": {"type": "integer",
                                                   "description": "the node's cluster"},
        "broadcast_id": {"type": "integer"},
        "slot_id": {**NULLABLE_STR, "description": "a series' slot; null for a one-off"},
        "cmd_id": {**NULLABLE_STR, "description": "a one-off's play command; null for a "
                   "series slot, or a one-off never sent (held, skipped, cancelled)"},
        "scheduled_at": {"type": "string", "format": "date-time"},
        "planned_end_at": {"type": "string", "format": "date-time",
                           "description": "scheduled_at + the media's length x repeat"},
        "started_at": {**NULLABLE_STR, "description": "as the node reported it"},
        "ended_at": {**NULLABLE_STR, "description": "as the node reported it"},
        "status": {"type": "string", "enum": [x.value for x in AirStatus]},
        "reason": {**_nullable_enum(MissReason),
                   "description": "why it was missed or cut (partial); null when aired, "
                   "pending, or a partial play shorter than its media"}}},
    "AirplayTotals": {"type": "object", "properties": {
        k: {"type": "integer"} for k in ("planned", *(x.value for x in AirStatus))}},
    "SlotStates": {"type": "object", "properties": {
        "broadcast_id": {"type": "integer"}, "from": {"type": "string"},
        "to": {"type": "string"}, "generated_at": {"type": "string"},
        "grace_s": {"type": "integer"},
        "occurrences": {"type": "array", "items": {"type": "object", "properties": {
            "slot_id": {"type": "string"},
            "start_at": {"type": "string", "format": "date-time"},
            "end_at": {"type": "string", "format": "date-time"},
            "sha256": {**NULLABLE_STR, "description": "the media the occurrence airs"},
            "nodes": {"type": "array", "items": {"type": "object", "properties": {
                "node_id": {"type": "string"},
                "state": {"type": "string", "enum": [x.value for x in SlotState]},
                "reason": {**_nullable_enum(MissReason),
                           "description": "the airplay report's reason for an outcome"}}}},
            "counts": _ref("SlotStateCounts")}}},
        "counts": _ref("SlotStateCounts")}},
    "SlotStateCounts": {"type": "object", "description": "nodes at each state",
                        "properties": {x.value: {"type": "integer"} for x in SlotState}},
    "Release": {"type": "object", "description": "an agent release: the loaphuong-agent "
                "wheel nodes install", "properties": {
                    "id": {"type": "integer"}, "version": {"type": "string"},
                    "sha256": {"type": "string"}, "bytes": {"type": "integer"},
                    "url": {"type": "string", "description": "where nodes download it"},
                    "notes": NULLABLE_STR, "uploaded_by": {"type": "integer"},
                    "uploaded_at": {"type": "string"}}},
    "Rollout": {"type": "object", "properties": {
        "id": {"type": "integer"}, "release": _ref("Release"),
        "targets": {"type": "object", "properties": {
            "areas": {"type": "array", "items": {"type": "integer"}},
            "nodes": {"type": "array", "items": {"type": "string"}}}},
        "stages": {"type": "array", "items": {"type": "integer"},
                   "description": "the sizes of the first stages; the last is every node left"},
        "stage": {"type": "integer", "description": "the stage started last (from 1)"},
        "stage_count": {"type": "integer"}, "auto_advance": {"type": "boolean"},
        "status": {"type": "string", "enum": [x.value for x in RolloutStatus]},
        "created_by": {"type": "integer"}, "created_at": {"type": "string"},
        "finished_at": NULLABLE_STR,
        "progress": {"type": "object", "description": "nodes by progress",
                     "properties": {p.value: {"type": "integer"} for p in Progress}},
        "nodes": {"type": "array", "description": "the nodes the caller may see",
                  "items": {"type": "object", "properties": {
                      "node_id": {"type": "string"}, "stage": {"type": "integer"},
                      "progress": {"type": "string", "enum": [p.value for p in Progress]},
                      "reason": {**NULLABLE_STR, "description": "the node's failure reason: "
                                 "sha256_mismatch, download_failed, install_failed, "
                                 "rolled_back, …"},
                      "detail": NULLABLE_STR,
                      "running_version": {**NULLABLE_STR, "description": "the agent version "
                                          "the node last reported"},
                      "online": {"type": "boolean"},
                      "command_id": NULLABLE_STR}}}}},
    "PlayLog": {"type": "object", "properties": {k: NULLABLE_STR for k in (
        "node_id", "item_id", "cmd_id", "slot_id", "sha256", "scheduled_at", "started_at",
        "ended_at", "result", "reason")}},
    "TelemetryRawPoint": {"type": "object", "required": ["ts"], "properties": {
        "ts": {"type": "integer", "description": "the node's timestamp, epoch ms"},
        **{name: {"type": ["number", "null"]} for name in TELEMETRY_FIELDS},
        "amp_on": {"type": ["boolean", "null"]}}},
    "TelemetryHourPoint": {"type": "object", "required": ["ts", "count"], "properties": {
        "ts": {"type": "integer", "description": "the hour's start, epoch ms"},
        "count": {"type": "integer", "description": "reports in the hour"},
        **{name: {"type": "object", "properties": {
            stat: {"type": ["number", "null"]} for stat in ("min", "avg", "max")}}
           for name in TELEMETRY_FIELDS},
        "amp_on_share": {"type": ["number", "null"],
                         "description": "the share of reports with amp_on true"}}},
}

_LIST = {"type": "object"}
SCHEDULE_WINDOW = query_params(Q.ScheduleQuery)
PATHS = {
    "/api/v1/openapi.json": {"get": _op("This document", _ok({"type": "object"}), secure=False,
                                        errors=())},
    "/api/v1/auth/token": {"post": _op(
        "Exchange a username and password for a bearer token",
        _ok({"type": "object", "properties": {"token": {"type": "string"}}}),
        body=_ref("TokenRequest"),
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
        "post": _op("Create an area (422 unknown_time_zone: a tz the zone database does not "
                    "know)", _ok(_ref("Area"), "Created"), body=_ref("AreaCreate"),
                    status="201", errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/areas/{area_id}": {
        "get": _op("One area", _ok(_ref("Area")), params=[_path_param("area_id")]),
        "patch": _op("Rename an area or set its speech defaults for bulletins below it, or "
                     "its quiet hours (the nearest area up the tree that sets them wins; they "
                     "reach its nodes' desired states at once; emergency ignores them), or its "
                     "time zone (inherited the same way; its nodes get the new zone and the "
                     "series expanded in it move their future slots to it at once; 422 "
                     "unknown_time_zone for a zone the zone database does not know), or move "
                     "it with all below it under another parent (parent_id; null: to the top; "
                     "422 area_cycle under itself or an area of its own, 422 zone_differs when "
                     "that would change its time zone, 409 area_merged under a merged area). A "
                     "move changes the MQTT groups of the nodes below: the broker's ACL is "
                     "rewritten and the nodes get a new desired state with their groups",
                     _ok(_ref("Area")), body=_ref("AreaUpdate"), params=[_path_param("area_id")],
                     errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/areas/{area_id}/merge": {"post": _op(
        "Merge the area into another of its kind (two wards that become one; area.write in "
        "both): its child areas, nodes, users, programmes, bulletins, lexicon entries and open "
        "alerts move to it; broadcasts not sent yet are retargeted and series on air split now "
        "(their future slots go to the kept area). The merged area stays, marked merged "
        "(merged_into_id), so its past broadcasts and reports still name it. One transaction: "
        "422 area_cycle (into an area of its own), merge_kind (areas of different kinds), "
        "zone_differs; 409 area_merged (either already merged); nothing changes then",
        _ok(_ref("AreaMerged")), body=_ref("AreaMerge"), params=[_path_param("area_id")],
        errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/areas/{area_id}/schedule": {"get": _op(
        "The expanded slots of the area and every area below it, from every planned broadcast "
        "(series and timed one-offs) reaching it, in start order; each slot's times also local "
        "to the area's zone (tz). A series is expanded in the zone of its first target area "
        "(or of its first node's cluster)",
        _ok({"type": "object", "properties": {"area_id": {"type": "integer"},
                                              "tz": {"type": "string"}, "slots": {
            "type": "array", "items": {"allOf": [_ref("Slot"), {
                "type": "object", "properties": {
                    "local_start_at": {"type": "string", "format": "date-time"},
                    "local_end_at": {"type": "string", "format": "date-time"}}}]}}}}),
        params=[_path_param("area_id"), *SCHEDULE_WINDOW])},
    "/api/v1/areas/{area_id}/schedule.ics": {"get": _op(
        "The same slots as an iCalendar document for staff calendars (one event per slot, "
        "its slot id as UID, times in UTC, the area's zone as X-WR-TIMEZONE)",
        {"description": "OK", "content": {"text/calendar": {"schema": {"type": "string"}}}},
        params=[_path_param("area_id"), *SCHEDULE_WINDOW])},
    "/api/v1/areas/{area_id}/lexicon": {
        "get": _op("The area's own lexicon entries, and the effective lexicon (with those of "
                   "areas above it)", _ok({"type": "object", "properties": {
                       "entries": {"type": "array", "items": _ref("LexiconEntry")},
                       "effective": {"type": "object"}}}), params=[_path_param("area_id")]),
        "post": _op("Add or change how a term is read in this area's bulletins",
                    _ok(_ref("LexiconEntry"), "Created"), status="201",
                    body=_ref("LexiconEntryCreate"),
                    params=[_path_param("area_id")])},
    "/api/v1/areas/{area_id}/lexicon/{entry_id}": {"delete": _op(
        "Remove a lexicon entry", {"description": "Removed"}, status="204",
        params=[_path_param("area_id"), _path_param("entry_id")])},
    "/api/v1/normalize": {"post": _op(
        "The spoken form of a text (with the area's lexicon), before any speech is made",
        _ok({"type": "object", "properties": {"normalized": {"type": "string"}}}),
        body=_ref("NormalizeRequest"))},
    "/api/v1/previews": {"post": _op(
        "Hear a text before it is saved: normalised text plus broadcast-ready audio",
        _ok(_ref("Preview")), body=_ref("PreviewCreate"),
        errors=("400", "401", "403", "404", "422"))},
    "/api/v1/nodes": {
        "get": _op("Nodes with online state, last telemetry, last seen, alarms: a page in id "
                   "order (limit, default 100); next is the after of the following page, null "
                   "on the last",
                   _ok({"type": "object", "properties": {"nodes": {
                       "type": "array", "items": _ref("Node")}, "next": NULLABLE_STR}}),
                   params=query_params(Q.NodeQuery)),
        "post": _op("Provision a node: broker account, ACL, keys and the agent's config",
                    _ok(_ref("Provisioned"), "Created"), body=_ref("NodeCreate"), status="201",
                    errors=("400", "401", "403", "404", "409"))},
    "/api/v1/nodes/bulk": {"post": _op(
        "Provision many nodes at once (a province's fleet): a JSON list of nodes as POST "
        "/api/v1/nodes takes them, all provisioned or none. A refusal (code invalid_rows, the "
        "status of the first bad row's error) lists every bad row: its number (1-based), "
        "field, code and message. The broker learns the nodes with one reload.",
        _ok(_ref("ProvisionedList"), "Created"), status="201",
        body=_ref("NodeList"),
        errors=("400", "401", "403", "404", "409"))},
    "/api/v1/nodes/import": {"post": _op(
        "Provision nodes from a CSV file (UTF-8; a header row naming the columns name, "
        "cluster (its id or code), latitude, longitude, optionally id), all or none. A file "
        "that cannot be read, or any bad row, is a 422; invalid_rows lists every bad row by "
        "its line in the file (the header is line 1) and column.",
        _ok(_ref("ProvisionedList"), "Created"), status="201",
        errors=("400", "401", "403", "415", "422")) | {"requestBody": {
            "required": True, "content": {"text/csv": {"schema": _ref("NodeCsv")}}}}},
    "/api/v1/nodes/{node_id}": {
        "get": _op("One node", _ok(_ref("Node")), params=[_path_param("node_id", NODE_ID)]),
        "patch": _op("Set the node's maintenance window (technician, admin): until "
                     "maintenance_until it raises no alert; null ends it; at most 90 days "
                     "ahead", _ok(_ref("Node")), body=_ref("NodeUpdate"),
                     params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/alerts": {"get": _op(
        "Alerts the server raised in the caller's areas, newest first: a node offline longer "
        "than alert_offline_after_s, its alarms (amplifier, disk, heat, clock, power, modem, "
        "player), missed slots, media downloads that keep failing",
        _ok({"type": "object", "properties": {"alerts": {"type": "array",
                                                         "items": _ref("Alert")}}}),
        params=query_params(Q.AlertQuery))},
    "/api/v1/alerts/{alert_id}": {"get": _op("One alert", _ok(_ref("Alert")),
                                             params=[_path_param("alert_id")])},
    "/api/v1/alerts/{alert_id}/ack": {"post": _alert_step(
        "Acknowledge an open alert (technician, operator, admin of its area): who and when are "
        "kept; 409 alert_state when it is acknowledged or resolved already")},
    "/api/v1/alerts/{alert_id}/resolve": {"post": _alert_step(
        "Resolve an alert by hand (technician, operator, admin of its area); while its "
        "condition still holds no new alert is raised for it until the condition clears; "
        "409 alert_state when it is resolved already")},
    "/api/v1/nodes/{node_id}/desired": {"get": _op(
        "What the node should hold now: the body of its newest desired state (version, tz, "
        "volume, groups, schedule of slots, prefetch; docs/protocol.md) and the version the "
        "node reported applying", _ok({"type": "object", "properties": {
            "node_id": {"type": "string"}, "version": {"type": ["integer", "null"]},
            "desired_applied": {"type": ["integer", "null"]}, "sent_at": NULLABLE_STR,
            "body": {"type": ["object", "null"]}}}),
        params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/nodes/{node_id}/telemetry": {"get": _op(
        "The node's telemetry for charts: every report (raw, kept telemetry_raw_days) or "
        "hourly aggregates (count, min/avg/max of each field, the share of reports with the "
        "amplifier on; kept telemetry_hourly_days). auto: raw while from lies within the raw "
        "retention, hourly beyond it. A span longer than the resolution keeps is cut to it",
        _ok({"type": "object", "properties": {
            "node_id": {"type": "string"}, "resolution": {"enum": [
                Resolution.RAW.value, Resolution.HOUR.value]},
            "from": {"type": "string"}, "to": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "string"}},
            "points": {"type": "array", "items": {"oneOf": [
                _ref("TelemetryRawPoint"), _ref("TelemetryHourPoint")]}}}}),
        params=[_path_param("node_id", NODE_ID), *query_params(Q.TelemetryQuery)])},
    "/api/v1/nodes/{node_id}/revoke": {"post": _op(
        "Revoke a node: its broker account and ACL go, its session is cut, its retained "
        "desired state is cleared and broadcasts no longer count it (technician, admin)",
        _ok({"type": "object", "properties": {"id": {"type": "string"},
                                              "revoked_at": {"type": "string"}}}),
        params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/nodes/{node_id}/provisioning-token": {"post": _op(
        "A one-time token that fetches the node's provisioning answer once (technician, admin "
        "of its area): hardware/install-pi.sh --provision URL --token TOKEN. Only its sha256 "
        "is stored; it expires after provision_token_ttl_s (a day by default) and replaces the "
        "node's earlier token. A revoked node: 410 (node_revoked).",
        _ok(_ref("ProvisioningToken"), "Created"), status="201",
        params=[_path_param("node_id", NODE_ID)], errors=("401", "403", "404", "410"))},
    "/api/v1/nodes/{node_id}/provisioning": {"get": _op(
        "The node's provisioning answer (as POST /api/v1/nodes gives it), for the bearer of its "
        "one-time token (Authorization: Bearer TOKEN; no login): the token is consumed, the "
        "node's broker password rotated (an answer handed out earlier no longer connects) and "
        "the broker synced. A used, expired, unknown or another node's token: 401 "
        "(invalid_provisioning_token), nothing changed; a revoked node: 410 (node_revoked). "
        "Failed tries are rate-limited per address as logins are (429).",
        _ok(_ref("Provisioned")), params=[_path_param("node_id", NODE_ID)],
        errors=("401", "410", "429")) | {"security": [{"provisioningToken": []}]}},
    "/api/v1/nodes/{node_id}/commands": {"post": _op(
        "Send an immediate command to a node", _ok(_ref("Command"), "Queued"),
        body=_ref("CommandCreate"), status="202", params=[_path_param("node_id", NODE_ID)])},
    "/api/v1/commands/{command_id}": {"get": _op(
        "A command and the node's last ack", _ok(_ref("Command")),
        params=[_path_param("command_id", {"type": "string"})])},
    "/api/v1/releases": {
        "get": _op("Agent releases, newest first (technician, admin)", _ok(
            {"type": "object", "properties": {"releases": {"type": "array",
                                                           "items": _ref("Release")}}})),
        "post": {**_op("Upload an agent release (multipart: file, the loaphuong-agent wheel; "
                       "notes?); stored by its sha256 (admin only)",
                       _ok(_ref("Release"), "Created"), status="201",
                       errors=("400", "401", "403", "409", "413", "422")),
                 "requestBody": {"required": True, "content": {
                     "multipart/form-data": {"schema": _ref("ReleaseUpload")}}}}},
    "/api/v1/releases/{release_id}": {"get": _op(
        "One agent release", _ok(_ref("Release")), params=[_path_param("release_id")])},
    "/api/v1/rollouts": {
        "get": _op("Rollouts, newest first, with each node's progress and running version "
                   "(technician: the nodes of its area; admin)", _ok(
                       {"type": "object", "properties": {"rollouts": {
                           "type": "array", "items": _ref("Rollout")}}})),
        "post": _op("Offer a release to areas and/or nodes in stages: the first stage's "
                    "nodes get an update command now; the next stage starts when an admin "
                    "advances it, or by itself (auto_advance) when every node of the stage is "
                    "healthy on the new version (admin only)", _ok(_ref("Rollout"), "Created"),
                    body=_ref("RolloutCreate"), status="201")},
    "/api/v1/rollouts/{rollout_id}": {"get": _op(
        "A rollout: its stages and each node's progress (pending, sent, downloading, "
        "installed, healthy, rolled_back, failed) and running version", _ok(_ref("Rollout")),
        params=[_path_param("rollout_id")])},
    "/api/v1/rollouts/{rollout_id}/advance": {"post": _op(
        "Start the next stage now, whatever the current one's state (admin only)",
        _ok(_ref("Rollout")), params=[_path_param("rollout_id")],
        errors=("401", "403", "404", "409"))},
    "/api/v1/rollouts/{rollout_id}/cancel": {"post": _op(
        "Cancel a rollout: no further stage; update commands not yet sent are dropped "
        "(admin only)", _ok(_ref("Rollout")), params=[_path_param("rollout_id")],
        errors=("401", "403", "404", "409"))},
    "/api/v1/bulletins": {
        "get": _op("Bulletins, newest first", _ok(_LIST),
                   params=query_params(Q.BulletinQuery)),
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
            "schema": {"type": "string", "enum": [s.value for s in BulletinStep]}}],
        errors=("400", "401", "403", "404", "409")) | {"requestBody": {
            "required": False, **_json(_ref("BulletinAction"))}}},
    "/api/v1/programmes": {
        "get": _op("The programmes the user may see, newest first", _ok({
            "type": "object", "properties": {
                "programmes": {"type": "array", "items": _ref("Programme")}}})),
        "post": _op("A programme: approved bulletins (each visible to the user; 409 "
                    "not_approved otherwise) played back to back as one slot, their media "
                    "joined into one file (the same items give the same sha256)",
                    _ok(_ref("Programme"), "Created"), body=_ref("ProgrammeCreate"),
                    status="201", errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/programmes/{programme_id}": {
        "get": _op("A programme: items, media, total duration", _ok(_ref("Programme")),
                   params=[_path_param("programme_id")]),
        "patch": _op("Edit a programme: new items make a new revision of its media; series "
                     "airing it take it for their future slots, one-offs keep theirs. A longer "
                     "revision that makes those slots overlap another broadcast's on the same "
                     "node is a 409 schedule_conflict with the clashes (nothing of the edit "
                     "kept), unless of higher priority or with override",
                     _ok(_ref("Programme")), body=_ref("ProgrammeUpdate"),
                     params=[_path_param("programme_id")],
                     errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/broadcasts": {
        "get": _op("Recent broadcasts", _ok(_LIST)),
        "post": _op("Broadcast an approved bulletin or a programme (exactly one of bulletin_id "
                    "and programme_id) now, at a time or as a series "
                    "(recurrence: 422 invalid_recurrence names what is wrong with the rule); "
                    "slots overlapping another broadcast's on the same node are a 409 "
                    "schedule_conflict with the clashes, unless of higher priority or with "
                    "override; live and emergency "
                    "priority need the approver role, or wait for a second person where the "
                    "area asks for one (status awaiting_confirmation)",
                    _ok(_ref("Broadcast"), "Created"), body=_ref("BroadcastCreate"),
                    status="201", errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/broadcasts/{broadcast_id}": {
        "get": _op("Per node: sent, acked, played, failed, with reasons", _ok(_ref("Broadcast")),
                   params=[_path_param("broadcast_id")]),
        "patch": _op(
            "Edit a series from now on (rule, skipped dates, priority, volume, targets; not the "
            "bulletin): the series ends now, its past slots unchanged, and a new series naming "
            "it in previous_id plans from now with the edit and its changed occurrences still "
            "to come; the answer is the new series. Checked as a new broadcast is (scope, "
            "approver rules, 422 invalid_recurrence, 409 schedule_conflict); 409 not_a_series, "
            "409 cannot_edit for a cancelled or already ended series",
            _ok(_ref("Broadcast"), "Created"), body=_ref("BroadcastEdit"), status="201",
            params=[_path_param("broadcast_id")],
            errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/broadcasts/{broadcast_id}/occurrences": {"post": _op(
        "Change one occurrence of a series, named by its original start (422 "
        "not_an_occurrence otherwise): cancelled (it leaves every desired state, listing and "
        "calendar), moved (start_at; its slot keeps its id) or airing another approved "
        "bulletin; a later change to the same occurrence replaces this one, one that changes "
        "nothing gives it back to the series. Its nodes get a new desired state at once. "
        "Scope and approver rules as for a new broadcast; a moved or changed occurrence "
        "overlapping another's slot is a 409 schedule_conflict unless of higher priority or "
        "with override",
        _ok(_ref("Broadcast")), body=_ref("OccurrenceChange"),
        params=[_path_param("broadcast_id")],
        errors=("400", "401", "403", "404", "409", "422"))},
    "/api/v1/broadcasts/{broadcast_id}/slots": {"get": _op(
        "A series' occurrences in the window and each targeted node's delivery state of each: "
        "scheduled (no desired state the node applied carries it yet), delivered (it applied "
        "one that does), ready (it verified the media in its cache, media_ready), then the "
        "outcome as the airplay report judges it: played, preempted, stopped, failed, skipped "
        "(quiet hours, late), cancelled, or missed (no report after its end plus the grace), "
        "with the report's reason; counts per state per occurrence and overall. Visible as "
        "the broadcast is; a one-off has no occurrences (its deliveries are in the broadcast)",
        _ok(_ref("SlotStates")),
        params=[_path_param("broadcast_id"), *query_params(Q.SlotsQuery)])},
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
        params=query_params(Q.PlayLogQuery))},
    "/api/v1/reports/airplay": {"get": _op(
        "Proof of play: every planned series slot and one-off delivery of the nodes in scope "
        "(the caller's area; area and node narrow it) in the period, against what the nodes "
        "reported playing (never what the server sent): aired, partial, missed with a reason, "
        "or pending until its end plus the grace (airplay_grace_s) has passed; totals per area "
        "(the node's cluster) and overall. Accept: text/csv gives one row per item, the item "
        "fields as columns, without the totals",
        {"description": "OK", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"},
                "generated_at": {"type": "string"}, "grace_s": {"type": "integer"},
                "tz": {"type": "string", "description": "the zone from and to without an "
                       "offset were read in: the area's (area, else the caller's)"},
                "items": {"type": "array", "items": _ref("AirplayItem")},
                "totals": {"type": "array", "items": AREA_TOTALS},
                "total": _ref("AirplayTotals")}}},
            "text/csv": {"schema": {"type": "string"}}}},
        params=query_params(Q.AirplayQuery))},
    "/api/v1/reports/summary": {"get": _op(
        "The Reports page's summary for whole days from..to (read in the zone of area, else "
        "the caller's; at most 366 days, so a six-monthly report fits): planned against "
        "aired per area (the node's cluster) and per node, hours aired by category (the "
        "bulletin's; a programme's is \"programme\") and area, and each node's uptime (the "
        "share of its telemetry reports received, 0-1; null when none is kept for the period). "
        "Accept: text/csv gives the page's CSV (one table; its first column names the section)",
        {"description": "OK", "content": {
            "application/json": {"schema": {"type": "object", "properties": {
                "from": {"type": "string", "format": "date"},
                "to": {"type": "string", "format": "date"}, "tz": {"type": "string"},
                "area_id": {"type": ["integer", "null"]},
                "areas": {"type": "array", "items": AREA_TOTALS},
                "nodes": {"type": "array", "items": {"allOf": [_ref("AirplayTotals"), {
                    "type": "object", "properties": {
                        "node_id": {"type": "string"}, "name": {"type": "string"},
                        "area_id": {"type": "integer"},
                        "uptime": {"type": ["number", "null"]}}}]}},
                "hours": {"type": "array", "items": {"type": "object", "properties": {
                    "category": {"type": "string"}, "area_id": {"type": "integer"},
                    "area_name": NULLABLE_STR, "hours": {"type": "number"}}}},
                "total": _ref("AirplayTotals")}}},
            "text/csv": {"schema": {"type": "string"}}}},
        params=query_params(SummaryQuery),
        errors=("400", "401", "403", "404", "422"))},
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
        params=query_params(Q.AuditQuery),
        errors=("400", "401", "403"))},
}

def request_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the request models, by model name (nested models by theirs)."""
    out: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return {name: _tidy(schema) for name, schema in out.items()}


SCHEMAS.update(request_schemas())

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "LoaPhuong API", "version": "1",
             "description": "REST core of the ward loudspeaker system. Errors are "
                            "{\"error\": {\"code\", \"message\"}}; messages are Vietnamese by "
                            "default (Accept-Language: en or ?lang=en for English). Any "
                            "operation answers 503 database_unavailable, with Retry-After: 5, "
                            "while the database is gone or locked past its busy timeout; the "
                            "same request works once it is back."},
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "provisioningToken": {"type": "http", "scheme": "bearer", "description":
                              "a node's one-time token (POST "
                              "/api/v1/nodes/{node_id}/provisioning-token)"}},
                   "schemas": SCHEMAS},
    "paths": PATHS,
}


def document(engines: list[str], password_min: int = 10) -> dict[str, Any]:
    """The document as this server serves it: engine fields name the configured engines, a new
    user's password the configured shortest length."""
    doc = copy.deepcopy(OPENAPI)

    def configure(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                configure(item)
        elif isinstance(node, dict):
            setting = node.pop(CONFIGURED, None)
            if setting in ("tts_engines", "tts_engines_or_blank"):
                node["enum"] = list(engines) + [""] * (setting == "tts_engines_or_blank") + (
                    [None] if "null" in node["type"] else [])
            elif setting == "password_min_length":
                node["minLength"] = password_min
            for value in node.values():
                configure(value)
    configure(doc["components"]["schemas"])
    return doc
