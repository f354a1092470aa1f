"""Functions named by dotted paths ("pkg.module:function"), checked when they are stored."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast


def function_path(value: Callable[..., Any] | str) -> str:
    """Return an importable "module:name" path for a callable or a dotted path, checking it."""
    if callable(value) and not isinstance(value, str):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        if not module or "<" in qualname:
            raise ValueError(
                f"process_results_function {value!r} cannot be stored: use a module-level "
                "function (not a lambda or a nested function) or its dotted path 'pkg.module:func'"
            )
        path = f"{module}:{qualname}"
    elif isinstance(value, str):
        path = value.strip()
    else:
        raise TypeError(
            f"process_results_function must be a callable or a dotted path, not {type(value).__name__}"
        )
    resolve_function(path)
    return path


def resolve_function(path: str) -> Callable[..., Any]:
    """Import and return the callable that a "module:name" or "module.name" path names."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path; write it as 'pkg.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import process_results_function {path!r}: {exc}") from exc
    if not callable(target):
        raise ValueError(f"process_results_function {path!r} is not callable")
    return cast("Callable[..., Any]", target)
