"""Reading a request strictly: query parameters and the JSON body, refused with a message that names the fix.

ninja parses what an operation declares and ignores the rest; this API refuses an unknown or repeated
query parameter (a misspelt filter is never silently ignored), a body that is not JSON, JSON that is
not a standard number (NaN), and text the databases cannot store (NUL, lone surrogates).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest

from jobtower.web.api.errors import ApiError


def json_type(value: Any) -> str:
    """Return the JSON Schema type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check_query(request: HttpRequest, accepted: Iterable[str], repeatable: Iterable[str] = ()) -> None:
    """Refuse query parameters the operation does not take, repeated ones, and NUL characters."""
    known = list(accepted)
    unknown = sorted(set(request.GET) - set(known))
    if unknown:
        raise ApiError(
            400, f"unknown query parameter(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(known) or 'none'}"
        )
    many = set(repeatable)
    for name, values in request.GET.lists():
        if len(values) > 1 and name not in many:
            raise ApiError(400, f"query parameter {name!r} may be given only once")
        for value in values:
            if "\x00" in value:
                raise ApiError(400, f"query parameter {name!r} contains a NUL character")


def int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    """Return a whole-number query parameter within [low, high], or its default when absent."""
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, not {raw!r:.40}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, not {value}")
    return value


def values(request: HttpRequest, name: str) -> list[str]:
    """Return a repeatable parameter's values; each may also be a comma-separated list."""
    return [part.strip() for value in request.GET.getlist(name) for part in value.split(",") if part.strip()]


def json_body(request: HttpRequest) -> dict[str, Any]:
    """Return the body as a JSON object, or raise a 400/415 that says what is wrong with it."""
    content_type = request.content_type or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415, f"send the body as JSON with Content-Type: application/json, not {content_type or 'nothing'!r}"
        )
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "the body is empty: send a JSON object")
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {json_type(data)}")
    try:
        _check_text(data, "body")
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_text(value: Any, where: str) -> None:
    """Refuse strings the databases cannot store: NUL characters and lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, f"{where} contains a NUL character, which cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where} contains an unpaired surrogate (invalid Unicode)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"a key in {where}")
            _check_text(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")
