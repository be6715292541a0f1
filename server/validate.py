"""Field checks for request bodies: a required or optional field of a type, JSON numbers read
as JSON Schema reads them. Each failure is a 400 with today's error code and message."""
from __future__ import annotations

from typing import Any, Mapping

from .errors import bad_request
from .models import MAX_DB_INT


def need(data: Mapping[str, Any], name: str, kind: type | tuple = str, *, max_len: int = 0):
    """A required field of the given type (strings stripped and non-empty)."""
    if name not in data or data[name] is None or (isinstance(data[name], str)
                                                  and not data[name].strip()):
        raise bad_request("err.missing_field", "missing_field", field=name)
    return check(data, name, kind, max_len=max_len)


def check(data: Mapping[str, Any], name: str, kind: type | tuple = str, *, max_len: int = 0):
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise bad_request("err.invalid_field", field=name, detail="bool")
    if kind is int:
        value = whole(value)
    if kind is float and isinstance(value, int):
        try:
            value = float(value)
        except OverflowError:
            raise bad_request("err.invalid_field", field=name,
                              detail="number out of range") from None
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise bad_request("err.invalid_field", field=name, detail=f"expected {expected}")
    if isinstance(value, int) and not -MAX_DB_INT <= value <= MAX_DB_INT:
        raise bad_request("err.invalid_field", field=name, detail="number out of range")
    if isinstance(value, str):
        value = value.strip()
        if max_len and len(value) > max_len:
            raise bad_request("err.invalid_field", field=name, detail=f"longer than {max_len}")
    return value


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
