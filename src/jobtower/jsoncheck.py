"""Check that a value is plain JSON before it reaches the database, naming where it is not."""

from __future__ import annotations

import math
from typing import Any


class NotJSON(TypeError):
    """A value that cannot be stored as JSON."""


def check_json(value: Any, where: str) -> None:
    """Raise NotJSON naming the first part of `value` that is not a JSON type."""
    _check(value, where)


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSON(f"{path} is {value!r}, which JSON cannot store; use None or a string")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSON(
                    f"{path} has the key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            _check(item, f"{path}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise NotJSON(
        f"{path} is a {type(value).__name__} ({value!r:.80}), which is not JSON; "
        "store only dicts, lists, strings, numbers, booleans and None (convert sets to lists, "
        "datetimes and paths to strings)"
    )
