"""Every request body the API takes, declared once (pydantic, strict mode): the routes parse with
these models, the pages validate their forms through them, and the OpenAPI document's request
schemas are generated from them. ``parse`` turns the first validation error into the API's error
codes and catalogue messages (the table ``ERRORS``), so the error JSON reads as it always has.

What needs the database, the user or the configuration (scoping, duplicates, whether an area is
a cluster, the configured speech engines, the shortest password) stays in the domain modules,
which receive the parsed model."""
from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self, TypeVar, get_args, get_origin
from collections.abc import Callable, Iterator, Mapping

import annotated_types as at

from pydantic import (BaseModel, ConfigDict, PlainValidator, RootModel, ValidationError,
                      ValidationInfo, WithJsonSchema, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from audio.pipeline import Chime
from audio.tts import Voice
from schedules.lunar import LunarHoliday

from device_agent.protocol import (NAME_RE, PRIORITY_NAMES, CommandType, PriorityName,
                                   priority_value, valid_name)
from device_agent.schemas import BODIES

from .auth import ROLES
from .errors import ApiError, ErrorCode, storable, unstorable
from .i18n import LANGUAGES
from .models import MAX_DB_ID, MAX_DB_INT
from .mosquitto import SERVER_ACCOUNT_PREFIX

# --- vocabularies a request may name --------------------------------------------------------------

class AreaKind(StrEnum):
    PROVINCE = "province"
    CITY = "city"
    DISTRICT = "district"
    WARD = "ward"
    COMMUNE = "commune"
    TOWN = "town"
    CLUSTER = "cluster"    # the loudspeakers of a street or a hamlet: nodes belong to one
    ZONE = "zone"


AREA_KINDS = tuple(k.value for k in AreaKind)


class Category(StrEnum):
    """What a bulletin is about (its catalogue entries: cat.<category>)."""
    ADMIN_REFORM = "admin_reform"
    TRAFFIC = "traffic"
    FLOODING = "flooding"
    ENVIRONMENT = "environment"
    HEALTH = "health"
    SECURITY = "security"
    URBAN = "urban"
    EMERGENCY = "emergency"
    OTHER = "other"


CATEGORIES = tuple(c.value for c in Category)
NODE_COMMANDS = tuple(t.value for t in (CommandType.SET_VOLUME, CommandType.AMP, CommandType.TEST,
                                        CommandType.STOP, CommandType.REBOOT))
VOICES = tuple(v.value for v in Voice)
CHIMES = tuple(c.value for c in Chime)
USERNAME_MAX = 80
USERNAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{USERNAME_MAX - 1}}}")  # fullmatch
MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
# Markers the served document replaces with this server's configuration (server/openapi.py).
CONFIGURED = "x-configured"


# --- errors ---------------------------------------------------------------------------------------

def invalid(detail: str) -> PydanticCustomError:
    """A field's problem, ``detail`` saying what was wanted: a 400 "invalid" naming the field
    (``ERRORS``); the field types here and in server/queries.py raise it."""
    return PydanticCustomError("invalid_field", "{detail}", {"detail": detail})


def _missing(field: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("missing_field", "missing", {"field": field} if field else None)


# pydantic error type -> (error code, catalogue key, detail when the error carries none). The
# field types below raise invalid_field with their own detail, so their messages read as the
# hand-written checks' did; the rest are pydantic's own.
ERRORS: dict[str, tuple[ErrorCode, str, str | None]] = {
    "missing": (ErrorCode.MISSING_FIELD, "err.missing_field", None),
    "missing_field": (ErrorCode.MISSING_FIELD, "err.missing_field", None),
    "no_targets": (ErrorCode.NO_TARGETS, "err.no_targets", None),
    "invalid_field": (ErrorCode.INVALID, "err.invalid_field", None),
    "invalid_null": (ErrorCode.INVALID, "err.invalid_field", None),  # null, not "not given"
    "extra_forbidden": (ErrorCode.INVALID, "err.invalid_field", "unknown field"),
    "model_type": (ErrorCode.INVALID, "err.invalid_field", "expected dict"),
}

M = TypeVar("M", bound="Body")


def parse(model: type[M], data: Any, *, tz: dt.tzinfo | None = None) -> M:
    """``data`` as ``model``, or the ApiError (400) of its first problem. ``tz``: the zone of a
    time written without one. Text no database could store (server.errors.storable) is then
    refused wherever it is, naming its field."""
    try:
        parsed = model.model_validate(data, strict=True, context={"tz": tz or dt.UTC})
    except ValidationError as err:
        raise api_error(model, err) from None
    field = unstorable_field(data)  # after the model's own checks, whose messages say more
    if field is not None:
        raise unstorable(field)
    return parsed


def unstorable_field(data: Any, path: str = "") -> str | None:
    """The dotted name of the first key or string in ``data`` that no database could store."""
    if isinstance(data, str):
        return None if storable(data) else (path or "-")
    if isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and not storable(key):
                return path or "-"
            found = unstorable_field(value, name)
            if found is not None:
                return found
    elif isinstance(data, (list, tuple)):
        for value in data:
            found = unstorable_field(value, path)
            if found is not None:
                return found
    return None


def api_error(model: type[Body], err: ValidationError) -> ApiError:
    """The first problem of ``err`` as the API has always named it: its code, catalogue entry,
    field (dotted when nested) and detail."""
    errors = err.errors()
    # An unknown field is named before anything else (the lowest name first), as it always was.
    unknown = sorted((e for e in errors if e["type"] == "extra_forbidden"),
                     key=lambda e: str(e["loc"]))
    first = (unknown or errors)[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    ctx = first.get("ctx") or {}
    field = ctx.get("field") or ".".join(loc) or "-"
    code, key, detail = ERRORS.get(first["type"], (ErrorCode.INVALID, "err.invalid_field", None))
    # A field given as null, or a required one given as blank text, is a missing field.
    top = len(first["loc"]) == 1 and loc[0] in model.model_fields
    if top and first["type"] != "invalid_null" and (first["input"] is None or (
            model.blank_is_missing and isinstance(first["input"], str)
            and not first["input"].strip() and model.model_fields[loc[0]].is_required())):
        code, key = ErrorCode.MISSING_FIELD, "err.missing_field"
    if key == "err.invalid_field":
        return ApiError(code, key, field=field,
                        detail=ctx.get("detail") or detail or first["msg"])
    if key == "err.missing_field":
        return ApiError(code, key, field=field)
    return ApiError(code, key)


# --- reusable field types -------------------------------------------------------------------------

def whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (as JSON Schema reads it): give it as an int, recursively;
    any other value is returned as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole(v) for v in value]
    if isinstance(value, dict):
        return {k: whole(v) for k, v in value.items()}
    return value


class Check(at.GroupedMetadata):
    """A field's validator and JSON schema as one piece of ``Annotated`` metadata (pydantic
    unpacks it): a model declares ``name: Annotated[str, Text(200)]``, a type a checker reads."""

    def __init__(self, read: Callable[..., Any], schema: dict[str, Any]) -> None:
        self.read, self.schema = read, schema

    def __iter__(self) -> Iterator[object]:
        yield PlainValidator(self.read)
        yield WithJsonSchema(self.schema)


def Int(lo: int, hi: int, detail: str = "number out of range", *,
        type_detail: str = "expected int", bool_detail: str = "bool",
        schema: dict[str, Any] | None = None) -> Check:
    """A whole number lo..hi (5.0 is 5; a bool is no number); one a database column cannot
    hold is "out of range" whatever the field's own range."""
    def read(value: Any) -> int:
        value = whole(value)
        if isinstance(value, bool):
            raise invalid(bool_detail)
        if not isinstance(value, int):
            raise invalid(type_detail)
        if not -MAX_DB_INT <= value <= MAX_DB_INT:
            raise invalid("number out of range")
        if not lo <= value <= hi:
            raise invalid(detail)
        return value
    return Check(read, schema or {"type": "integer", "minimum": lo, "maximum": hi})


def Float(lo: float, hi: float, detail: str) -> Check:
    def read(value: Any) -> float:
        if isinstance(value, bool):
            raise invalid("bool")
        if isinstance(value, int):
            try:
                value = float(value)
            except OverflowError:
                raise invalid("number out of range") from None
        if not isinstance(value, float):
            raise invalid("expected float")
        if not lo <= value <= hi:
            raise invalid(detail)
        return value
    return Check(read, {"type": "number", "minimum": lo, "maximum": hi})


# Python's strip() also takes U+001C-U+001F and U+0085 for spaces; ECMA's \s does not.
NOT_BLANK = r"[^\s\u001c-\u001f\u0085]"


def _text_reader(max_len: int | None, blank: bool, one_line: bool = False) -> Callable[[Any], str]:
    def read(value: object) -> str:
        if not isinstance(value, str):
            raise invalid("expected str")
        value = value.strip()
        if not value and not blank:
            raise _missing()
        if max_len is not None and len(value) > max_len:
            raise invalid(f"longer than {max_len}")
        if one_line and any(c in value for c in "\t\n"):
            raise invalid("one line")
        return value
    return read


def Text(max_len: int, *, blank: bool = False, one_line: bool = False,
         configured: str | None = None, **extra: Any) -> Check:
    """Text with spaces stripped, at most max_len long; blank is a missing field unless
    ``blank`` (then it is ""). ``configured``: the setting the served document fills in
    (server.openapi.document)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_len}
    if not blank:
        schema |= {"minLength": 1, "pattern": NOT_BLANK}
    if one_line:
        schema["pattern"] = r"^[^\t\n]*\S[^\t\n]*$"
    if configured:
        extra = {CONFIGURED: configured, **extra}
    return Check(_text_reader(max_len, blank, one_line), schema | extra)


def Choice(values: tuple[str, ...], max_len: int | None, detail: str, *, blank: bool = False
           ) -> Check:
    """One of ``values`` (spaces stripped; longer than max_len is refused as such); with
    ``blank``, "" too (a setting cleared)."""
    text = _text_reader(max_len, blank)

    def read(value: object) -> str:
        value = text(value)
        if value not in values and not (blank and value == ""):
            raise invalid(detail)
        return value
    return Check(read, {"type": "string", "enum": list(values) + ([""] if blank else [])})


def OneOf(values: tuple[str, ...], detail: str) -> Check:
    """Exactly one of ``values``; anything else, of any type, is refused with ``detail``."""
    def read(value: Any) -> str:
        if value not in values or not isinstance(value, str):
            raise invalid(detail)
        return value
    return Check(read, {"type": "string", "enum": list(values)})


def Flag(detail: str) -> Check:
    def read(value: Any) -> bool:
        if not isinstance(value, bool):
            raise invalid(detail)
        return value
    return Check(read, {"type": "boolean"})


def Pattern(regex: re.Pattern[str], detail: str, **extra: Any) -> Check:
    """Text that matches ``regex`` in full, as it is (no stripping)."""
    def read(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise invalid(detail)
        return value
    return Check(read, {"type": "string", "pattern": f"^{regex.pattern}$", **extra})


Username = Annotated[str, Pattern(USERNAME, f"1-{USERNAME_MAX} letters, digits, . _ @ -",
                                  maxLength=USERNAME_MAX)]

# A row's id in a body. Ids are never negative, but a negative one has always been looked up and
# not found (404) rather than refused as malformed: that stays.
DbId = Annotated[int, Int(-MAX_DB_ID, MAX_DB_ID)]
# A form writes a number in digits only: no sign (server.bodies.from_form). A field declared
# ``Annotated[str | None, ...] = None`` below is None when not given, yet refuses a null.
FormId = Annotated[int | None, Int(0, MAX_DB_ID)]  # None: not given (a form has no null)
Volume = Annotated[int, Int(0, 100, "0-100")]


def _priority(value: Any) -> int:
    detail = ", ".join(PRIORITY_NAMES) + " or 0-9"
    if value is None:  # refused, never the default
        raise PydanticCustomError("invalid_null", "{detail}", {"detail": detail})
    try:
        return priority_value(whole(value))
    except ValueError:
        raise invalid(detail) from None


Priority = Annotated[int, Check(_priority, {"oneOf": [
    {"type": "string", "enum": list(PRIORITY_NAMES)},
    {"type": "integer", "minimum": 0, "maximum": 9}]})]

TIME = {"type": "string", "format": "date-time",
        "description": "ISO 8601 (no zone: the configured zone)"}


def read_time(value: Any, tz: dt.tzinfo) -> dt.datetime:
    """ISO 8601 (a time without zone is in ``tz``) or epoch ms -> naive UTC; ValueError with
    the detail to show otherwise."""
    value = whole(value)
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_EPOCH_MS:
                raise ValueError("epoch ms out of range")
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)
        if not isinstance(value, str):
            raise TypeError
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        return parsed.astimezone(dt.UTC).replace(tzinfo=None)
    except TypeError:
        raise ValueError("ISO 8601 or epoch ms") from None
    except (ValueError, OverflowError, OSError):
        # not a time, or one out of the range a clock or a database column holds
        raise ValueError("ISO 8601") from None


def _api_time(value: Any, info: ValidationInfo) -> dt.datetime:
    try:
        return read_time(value, (info.context or {}).get("tz") or dt.UTC)
    except ValueError as err:
        raise invalid(str(err)) from None


API_TIME = {"description": "ISO 8601 (no zone: the configured zone) or epoch ms",
            "oneOf": [TIME, {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS}]}
ApiTime = Annotated[dt.datetime, Check(_api_time, API_TIME)]


def _node_name(value: object) -> str:
    value = _text_reader(63, blank=True)(value)
    if not valid_name(value):
        raise invalid(NAME_RE.pattern.strip("^$"))
    if value.startswith(SERVER_ACCOUNT_PREFIX):
        raise invalid(f"{SERVER_ACCOUNT_PREFIX}… is kept for the server's accounts")
    return value


NodeName = Annotated[str, Check(_node_name, {"type": "string", "pattern": NAME_RE.pattern})]
# A speech engine: the served document lists the engines this server is configured with (the
# domain checks the name against them); an area's setting is cleared with "".
Engine = Annotated[str, Text(20, blank=True, configured="tts_engines",
                             description="tried first; the next engine speaks when it fails")]
EngineSetting = Annotated[str, Text(20, blank=True, configured="tts_engines_or_blank",
                                    description="gtts, espeak, …; \"\" or null: inherit")]


def _command_body(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("expected dict")
    body: dict[str, Any] = whole(value)
    return body


CommandBody = Annotated[dict[Any, Any], Check(_command_body, {
    "type": "object", "description": "as in docs/protocol.md for the type"})]


def _area_ids(value: Any) -> list[int]:
    value = whole(value) or []  # any empty or false value is no areas
    if not isinstance(value, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 < a <= MAX_DB_ID for a in value):
        raise invalid("list of area ids")
    return value


def _node_ids(value: Any) -> list[str]:
    value = value or []
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise invalid("list of node ids")
    return value


# JSON's empty and false values all mean "none" here.
NONE_GIVEN = [{"enum": [None, False, 0, ""]}, {"type": "object", "maxProperties": 0}]
AreaIds = Annotated[list[Any], Check(_area_ids, {"anyOf": [{"type": "array", "items": {
    "type": "integer", "minimum": 1, "maximum": MAX_DB_ID}}, *NONE_GIVEN]})]
NodeIds = Annotated[list[Any], Check(_node_ids, {"anyOf": [
    {"type": "array", "items": {"type": "string"}}, *NONE_GIVEN]})]


# --- the bodies -----------------------------------------------------------------------------------

class Body(BaseModel):
    """A request body: strict types; a field the server does not know is ignored; null in an
    optional field is the field not given."""
    model_config = ConfigDict(strict=True, extra="ignore")
    # Whether a required field given as blank text (of whatever type) is a missing field.
    blank_is_missing: ClassVar[bool] = True

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


class TokenRequest(Body):
    username: Annotated[str, Text(80)]
    password: Annotated[str, Text(200)]


# The shape of an IANA zone name (Asia/Ho_Chi_Minh, Etc/GMT+7); whether the zone database knows
# it is the domain's check (server.areas.check_zone: a 422 unknown_time_zone naming it). "": none.
ZONE_NAME = re.compile(r"(?:[A-Za-z0-9_+-]{1,20}(?:/[A-Za-z0-9_+-]{1,20}){0,2})?")
TimeZone = Annotated[str, Pattern(
    ZONE_NAME, "an IANA time zone name such as Asia/Ho_Chi_Minh",
    examples=["Asia/Ho_Chi_Minh", "Europe/Berlin"],
    description="an IANA time zone: the area's series are expanded, its quiet hours judged and "
                "its times shown in it; \"\" or null: as the area above (at the top, the "
                "configured zone); a name the zone database does not know is a 422 "
                "unknown_time_zone")]


class AreaCreate(Body):
    name: Annotated[str, Text(200)]
    code: Annotated[str, Text(64)]
    kind: Annotated[str, Choice(AREA_KINDS, 32, f"one of {', '.join(AREA_KINDS)}")]
    parent_id: DbId | None = None
    tz: TimeZone | None = None


HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAX_QUIET = 8


def _quiet_hours(value: Any) -> list[dict[str, str]]:
    """PROTOCOL.md's quiet hours: [{"from": "HH:MM", "to": "HH:MM"}], each [from, to) in the
    area's zone, crossing midnight when to < from."""
    if not isinstance(value, list):
        raise invalid('list of {"from": "HH:MM", "to": "HH:MM"}')
    if len(value) > MAX_QUIET:
        raise invalid(f"at most {MAX_QUIET}")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"from", "to"} or not all(
                isinstance(item[k], str) and HHMM.fullmatch(item[k]) for k in ("from", "to")):
            raise invalid('list of {"from": "HH:MM", "to": "HH:MM"}')
        out.append({"from": item["from"], "to": item["to"]})
    return out


QuietHours = Annotated[list[dict[str, str]], Check(_quiet_hours, {
    "type": "array", "maxItems": MAX_QUIET, "description": (
        "[from, to) in the area's zone, crossing midnight when to < from (22:00-05:00); "
        "[]: none here; null: as the area above"),
    "items": {"type": "object", "additionalProperties": False, "required": ["from", "to"],
              "properties": {k: {"type": "string", "pattern": f"^{HHMM.pattern}$"}
                             for k in ("from", "to")}}})]


class AreaUpdate(Body):
    """Only the fields given change; "" or null clears a speech setting."""
    tts_engine: EngineSetting | None = None
    tts_voice: Annotated[str, Choice(VOICES, 20, ", ".join(VOICES), blank=True)] | None = None
    chime: Annotated[str, Choice(CHIMES, 10, ", ".join(CHIMES), blank=True)] | None = None
    emergency_confirm: Annotated[bool, Flag("true, false or null")] | None = None
    quiet_hours: QuietHours | None = None
    tz: TimeZone | None = None
    name: Annotated[str | None, Text(200)] = None  # not null: an area keeps a name
    parent_id: DbId | None = None  # moves the area and all below it; null: to the top


class AreaMerge(Body):
    """Merge the area of the path into ``into`` (server.areas.merge_areas)."""
    into: DbId


class NodeCreate(Body):
    cluster_id: DbId
    name: Annotated[str, Text(200)]
    lat: Annotated[float, Float(-90, 90, "-90..90")] | None = None
    lon: Annotated[float, Float(-180, 180, "-180..180")] | None = None
    id: NodeName | None = None


MAX_MAINTENANCE_DAYS = 90


class NodeUpdate(Body):
    """A technician's maintenance window: until then the node raises no alert (its alerts still
    resolve when their conditions clear); null or a past time ends it."""
    maintenance_until: ApiTime | None = None


class AlertAction(Body):
    """Acknowledging or resolving an alert, with an optional note."""
    comment: Annotated[str, Text(2000, blank=True)] | None = None


BULK_MAX_NODES = 10000  # the default of the bulk_max_nodes setting


class NodeList(RootModel[Annotated[list[NodeCreate], at.Len(1, BULK_MAX_NODES)]]):
    """POST /api/v1/nodes/bulk: nodes as POST /api/v1/nodes takes them, all provisioned or
    none (at most bulk_max_nodes, 10000 by default). Each row is read as a NodeCreate on its
    own, so that every bad row is named."""


class NodeCsv(RootModel[str]):
    """POST /api/v1/nodes/import (text/csv, UTF-8): a header row naming the columns name,
    cluster (its id or code), latitude, longitude and optionally id, in any order; then one
    node a line. An empty coordinate is none; a decimal comma is read as a point."""
    model_config = ConfigDict(json_schema_extra={
        "example": "name,cluster,latitude,longitude\n"
                   "Loa chợ Cột Đèn,HP-LECHAN-KP3,20.8449,106.6881\n"})


def _command_variants(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"properties": {"type": {"const": t}, "body": {
        k: v for k, v in BODIES[t].items() if k not in ("$id", "title")}},
        **({"required": ["body"]} if "required" in BODIES[t] or "anyOf" in BODIES[t] else {})}
        for t in NODE_COMMANDS]


class CommandCreate(Body):
    """An immediate command; its body is checked against the protocol when it is queued."""
    model_config = ConfigDict(json_schema_extra=_command_variants)
    type: Annotated[str, Choice(NODE_COMMANDS, None, ", ".join(NODE_COMMANDS))]
    body: CommandBody | None = None


class SpeechChoice(Body):
    voice: Annotated[str, Choice(VOICES + ("vi",), 40, ", ".join(VOICES))] | None = None
    engine: Engine | None = None


class BulletinCreate(SpeechChoice):
    title: Annotated[str, Text(300)]
    category: Annotated[str, Choice(CATEGORIES, 40, ", ".join(CATEGORIES))]
    text: Annotated[str, Text(20000)]
    spoken_text: Annotated[str, Text(40000, blank=True,
                                     description="the author's corrected spoken form")] \
        | None = None
    area_id: DbId | None = None


def _upload_file(schema: dict[str, Any]) -> None:
    schema["properties"] = {"file": {"type": "string", "format": "binary", "minLength": 1},
                            **schema["properties"]}
    schema["required"] = ["file", *schema.get("required", [])]


class BulletinUpload(Body):
    """The form fields of an uploaded recording (multipart, beside its ``file``): a form field
    is text, so it has no null."""
    model_config = ConfigDict(json_schema_extra=_upload_file)
    title: Annotated[str, Text(300)]
    category: Annotated[str, Choice(CATEGORIES, 40, ", ".join(CATEGORIES))]
    area_id: FormId = None
    text: Annotated[str | None, Text(20000, blank=True)] = None


class BulletinUpdate(SpeechChoice):
    """Only the fields given change; null voice or engine: the area's default again."""
    title: Annotated[str | None, Text(300)] = None
    category: Annotated[str | None, Choice(CATEGORIES, 40, ", ".join(CATEGORIES))] = None
    text: Annotated[str | None, Text(20000)] = None
    spoken_text: Annotated[str, Text(40000, blank=True,
                                     description="the author's corrected spoken form; "
                                                 "null: normalise the text again")] | None = None


class BulletinAction(Body):
    comment: Annotated[str, Text(2000, blank=True, description="required to reject")] | None = None
    sha256: Annotated[str, Text(64, blank=True, description="approve: the audio the approver "
                                                            "heard; 409 stale_revision when it "
                                                            "changed since")] | None = None


class PreviewCreate(SpeechChoice):
    text: Annotated[str, Text(20000)]
    spoken_text: Annotated[str, Text(40000, blank=True)] | None = None
    area_id: DbId | None = None
    # Read as JSON's truth: false, null, 0, "", [] or {} is the text only, no audio.
    audio: Annotated[Any, WithJsonSchema({"description": "a false value (false, null, 0, "
                                                         "\"\"): the text only, no audio"})] = True


class NormalizeRequest(Body):
    text: Annotated[str, Text(20000)]
    area_id: DbId | None = None


class LexiconEntryCreate(Body):
    term: Annotated[str, Text(100, one_line=True)]
    spoken: Annotated[str, Text(300)]


class Targets(Body):
    """At least one area or node."""
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["areas"], "properties": {"areas": {"type": "array", "minItems": 1}}},
        {"required": ["nodes"], "properties": {"nodes": {"type": "array", "minItems": 1}}}]})
    areas: AreaIds = []
    nodes: NodeIds = []

    @model_validator(mode="after")
    def _some(self) -> Self:
        if not self.areas and not self.nodes:
            raise PydanticCustomError("no_targets", "no targets")
        return self


def _api_times(value: Any, info: ValidationInfo) -> list[dt.datetime]:
    if not isinstance(value, list):
        raise invalid("list of times")
    if len(value) > MAX_EXDATES:
        raise invalid(f"at most {MAX_EXDATES}")
    return [_api_time(v, info) for v in value]


MAX_EXDATES = 1000
ApiTimes = Annotated[list[dt.datetime], Check(_api_times, {
    "type": "array", "maxItems": MAX_EXDATES, "items": API_TIME,
    "description": "skipped occurrences (their start)"})]
def _holidays(value: Any) -> list[LunarHoliday]:
    if not isinstance(value, list):
        raise invalid("list of holidays")
    known = {h.value for h in LunarHoliday}
    for name in value:
        if not isinstance(name, str) or name not in known:
            raise invalid(f"unknown holiday: {name}")
    return [LunarHoliday(name) for name in dict.fromkeys(value)]


SkipHolidays = Annotated[list[LunarHoliday], Check(_holidays, {
    "type": "array", "uniqueItems": True,
    "items": {"type": "string", "enum": [h.value for h in LunarHoliday]},
    "description": "lunar holidays whose days the series skips (tet: the days tet_days says)"})]
MAX_TET_DAYS = 10


class TetDays(Body):
    """The days around mùng 1 Tết a series skips when it skips "tet"; absent: the day before
    through mùng 3."""
    before: Annotated[int, Int(0, MAX_TET_DAYS, f"0-{MAX_TET_DAYS}", schema={
        "type": "integer", "minimum": 0, "maximum": MAX_TET_DAYS,
        "description": "days of the old year"})] = 1
    after: Annotated[int, Int(0, MAX_TET_DAYS, f"0-{MAX_TET_DAYS}", schema={
        "type": "integer", "minimum": 0, "maximum": MAX_TET_DAYS,
        "description": "days after mùng 1 (2: through mùng 3)"})] = 2


# The rule itself is checked against start_at and the zone by the domain (schedules.slots).
Recurrence = Annotated[str, Text(500, one_line=True, description=(
    "an RFC 5545 RRULE (FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0) or a lunar rule "
    "(FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6), anchored at start_at in the zone of the "
    "first target area (or of the first node's cluster)"))]


class BroadcastCreate(Body):
    """A one-off (now, or at start_at) or a series (recurrence, anchored at start_at). Whether
    the rule itself holds (in range, not too frequent, occurring at all) is checked against
    start_at and the zone: a 422 invalid_recurrence naming the problem."""
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"recurrence": {"type": "null"}, "exdates": {"type": "null"},
                        "skip_holidays": {"type": "null"}, "tet_days": {"type": "null"}}},
        {"required": ["recurrence", "start_at"],
         "properties": {"recurrence": {"type": "string"}, "start_at": {"not": {"type": "null"}}}}],
        "oneOf": [{"required": ["bulletin_id"], "properties": {
            "bulletin_id": {"type": "integer"}, "programme_id": {"type": "null"}}},
                  {"required": ["programme_id"], "properties": {
                      "programme_id": {"type": "integer"}, "bulletin_id": {"type": "null"}}}]})
    # what airs: exactly one of a bulletin and a programme
    bulletin_id: DbId | None = None
    programme_id: DbId | None = None
    targets: Targets
    priority: Priority = PRIORITY_NAMES[PriorityName.NORMAL]
    volume: Volume | None = None
    repeat: Annotated[int, Int(0, 20, "1-20", schema={
        "type": "integer", "minimum": 0, "maximum": 20,
        "description": "0 or absent: once"})] | None = 1
    recurrence: Recurrence | None = None
    exdates: ApiTimes | None = None
    skip_holidays: SkipHolidays | None = None
    tet_days: TetDays | None = None
    start_at: ApiTime | None = None
    override: Annotated[bool, Flag("true or false")] | None = None

    @field_validator("repeat", mode="after")
    @classmethod
    def _once(cls, value: int | None) -> int:
        return value or 1

    @model_validator(mode="before")
    @classmethod
    def _content(cls, data: Any) -> Any:
        # checked before the fields, so a body without either names bulletin_id first, as it
        # always did
        if isinstance(data, dict):
            given = [k for k in ("bulletin_id", "programme_id") if not _absent(data.get(k))]
            if not given:
                raise _missing("bulletin_id")
            if len(given) == 2:
                raise PydanticCustomError("invalid_field", "{detail}", {
                    "detail": "bulletin_id or programme_id, not both", "field": "programme_id"})
        return data

    @model_validator(mode="after")
    def _series(self) -> Self:
        if self.recurrence is not None and self.start_at is None:
            raise _missing("start_at")  # a series is anchored at its start
        for name in ("exdates", "skip_holidays", "tet_days"):
            if getattr(self, name) and self.recurrence is None:
                raise PydanticCustomError("invalid_field", "{detail}", {
                    "detail": "only with recurrence", "field": name})
        return self


class BroadcastEdit(Body):
    """A series edited from now on: only the fields given change (the bulletin never: that is a
    new approval and a new broadcast). The series is split at now: past slots stay as they were."""
    model_config = ConfigDict(json_schema_extra={"not": {"required": ["bulletin_id"]}})
    targets: Targets | None = None
    priority: Priority | None = None
    volume: Volume | None = None
    recurrence: Recurrence | None = None
    exdates: ApiTimes | None = None
    skip_holidays: SkipHolidays | None = None
    tet_days: TetDays | None = None
    override: Annotated[bool, Flag("true or false")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _same_bulletin(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bulletin_id" in data:
            raise PydanticCustomError("invalid_field", "{detail}", {
                "detail": "another bulletin is a new broadcast", "field": "bulletin_id"})
        return data


class OccurrenceChange(Body):
    """One occurrence of a series, named by its original start: cancelled, moved (start_at) or
    airing another approved bulletin; a later change to the same occurrence replaces this one,
    and one that changes nothing gives the occurrence back to its series."""
    model_config = ConfigDict(json_schema_extra={"not": {  # cancelled: nothing else
        "required": ["cancelled"], "properties": {"cancelled": {"const": True}}, "anyOf": [
            {"required": [k], "properties": {k: {"not": {"type": "null"}}}}
            for k in ("start_at", "bulletin_id")]}})
    original_start: ApiTime
    cancelled: Annotated[bool, Flag("true or false")] | None = None
    start_at: ApiTime | None = None
    bulletin_id: DbId | None = None
    override: Annotated[bool, Flag("true or false")] | None = None

    @model_validator(mode="after")
    def _cancel_alone(self) -> Self:
        if self.cancelled and (self.start_at is not None or self.bulletin_id is not None):
            raise PydanticCustomError("invalid_field", "{detail}", {
                "detail": "cancelled: nothing else", "field": "cancelled"})
        return self
def _absent(value: Any) -> bool:
    return value is None or isinstance(value, str) and not value.strip()


MAX_PROGRAMME_ITEMS = 50


def _bulletin_ids(value: Any) -> list[int]:
    value = whole(value)
    if not isinstance(value, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and -MAX_DB_ID <= b <= MAX_DB_ID
            for b in value):
        raise invalid("list of bulletin ids")
    if not value:
        raise invalid("at least one bulletin")
    if len(value) > MAX_PROGRAMME_ITEMS:
        raise invalid(f"at most {MAX_PROGRAMME_ITEMS} bulletins")
    return value


BulletinIds = Annotated[list[int], Check(_bulletin_ids, {
    "type": "array", "minItems": 1, "maxItems": MAX_PROGRAMME_ITEMS,
    "items": {"type": "integer", "minimum": -MAX_DB_ID, "maximum": MAX_DB_ID},
    "description": "approved bulletins, in playing order (one may come more than once)"})]


MAX_STAGES = 10


def _stage_sizes(value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_STAGES:
        raise invalid(f"a list of at most {MAX_STAGES} stage sizes")
    sizes = [whole(v) for v in value]
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100000
           for v in sizes):
        raise invalid("each stage size is a whole number from 1")
    return sizes


StageSizes = Annotated[list[int], Check(_stage_sizes, {
    "type": "array", "maxItems": MAX_STAGES,
    "items": {"type": "integer", "minimum": 1, "maximum": 100000},
    "description": "the sizes of the first stages, nodes in id order; the last stage is every "
                   "node left ([]: one stage)"})]


class RolloutCreate(Body):
    """An agent release offered to the nodes of areas and/or named nodes, in stages."""
    release_id: DbId
    targets: Targets
    stages: StageSizes = []
    auto_advance: Annotated[bool, Flag("true or false")] = True


class ReleaseUpload(Body):
    """The form fields of an uploaded agent release (multipart, beside its ``file``: the
    ``loaphuong-agent`` wheel)."""
    model_config = ConfigDict(json_schema_extra=_upload_file)
    notes: Annotated[str | None, Text(2000, blank=True)] = None


class ProgrammeCreate(Body):
    """A programme: approved bulletins the user may see, played back to back as one slot."""
    title: Annotated[str, Text(300)]
    items: BulletinIds
    area_id: DbId | None = None


class ProgrammeUpdate(Body):
    """Only the fields given change; new items make a new revision of the programme's media.
    A longer one that makes the series airing it overlap other broadcasts is a 409
    schedule_conflict unless ``override`` is true."""
    title: Annotated[str | None, Text(300)] = None
    items: BulletinIds | None = None
    override: Annotated[bool, Flag("true or false")] | None = None


def _password(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200:
        raise invalid("text")
    return value


# Not stripped: spaces are characters of a password. Its shortest length is the configuration's.
PASSWORD_SCHEMA = {"type": "string", "maxLength": 200,
                   "description": "at least password_min_length characters"}
Password = Annotated[str, Check(_password, PASSWORD_SCHEMA)]


class UserWrite(Body):
    """To change a user: only the fields given (a new password ends the user's sessions and
    login tokens); null is a field not given, but area_id null is every area."""
    model_config = ConfigDict(extra="forbid")
    blank_is_missing: ClassVar[bool] = False  # only null or "" (UserCreate)
    username: Username | None = None
    role: Annotated[str, OneOf(ROLES, " | ".join(ROLES))] | None = None
    area_id: Annotated[int, Int(-MAX_DB_ID, MAX_DB_ID, type_detail="an area id or null",
                                bool_detail="an area id or null")] | None = None
    language: Annotated[str, OneOf(LANGUAGES, " | ".join(LANGUAGES))] | None = None
    active: Annotated[bool, Flag("true or false")] | None = None
    password: Password | None = None

    def changes(self) -> dict[str, Any]:
        """The fields given: a null is no change, except area_id's (every area)."""
        return {k: getattr(self, k) for k in self.model_fields_set
                if getattr(self, k) is not None or k == "area_id"}


class UserCreate(UserWrite):
    """A new user: username, role and password required."""
    username: Username
    role: Annotated[str, OneOf(ROLES, " | ".join(ROLES))]
    password: Annotated[str, Check(_password, {**PASSWORD_SCHEMA,
                                               CONFIGURED: "password_min_length"})]

    @model_validator(mode="before")
    @classmethod
    def _required_first(cls, data: Any) -> Any:
        """The three required fields are named before any other problem (after an unknown
        field, which the model itself refuses first); null or "" is not given."""
        if isinstance(data, dict) and not set(data) - set(cls.model_fields):
            for name in ("username", "role", "password"):
                if data.get(name) in (None, ""):
                    raise _missing(name)
        return data


# Every body the API reads, by the name the OpenAPI document gives its schema.
MODELS: tuple[type[BaseModel], ...] = (
    TokenRequest, AreaCreate, AreaUpdate, AreaMerge, NodeCreate, NodeList, NodeCsv, CommandCreate,
    BulletinCreate,
    BulletinUpload, BulletinUpdate, BulletinAction, PreviewCreate, NormalizeRequest,
    LexiconEntryCreate, BroadcastCreate, BroadcastEdit, OccurrenceChange, ProgrammeCreate,
    ProgrammeUpdate, UserCreate, UserWrite, RolloutCreate, ReleaseUpload, NodeUpdate, AlertAction)


# --- forms ----------------------------------------------------------------------------------------

def _takes_int(annotation: Any) -> bool:
    """Whether a field's type is a whole number (under Annotated, or one of a union's)."""
    if annotation is int:
        return True
    if get_origin(annotation) is Annotated:
        return _takes_int(get_args(annotation)[0])
    return any(_takes_int(a) for a in get_args(annotation))


def from_form(model: type[Body], form: Mapping[str, str], *, blank_is_absent: bool = False
              ) -> dict[str, Any]:
    """A form's text fields as the JSON body ``model`` reads: whole numbers where the model
    takes a number (other text there is a 400); with ``blank_is_absent`` an empty field is a
    field not given, as a page's empty select or text box means."""
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = form.get(name)
        if value is None or (blank_is_absent and not value.strip()):
            continue
        out[name] = form_int(name, value) if _takes_int(field.annotation) else value
    return out


def form_int(name: str, value: str) -> int:
    """A form's number field as the whole number the body takes (its range is the body's to
    check); other text is a 400 naming the field."""
    if not value.strip().isdecimal():
        raise ApiError(ErrorCode.INVALID, "err.invalid_field", field=name, detail="a number")
    return int(value)

